//! A small shutdown signal shared by every task: set once, observed by all.

use tokio::sync::watch;

/// The sending side: call [`ShutdownTrigger::trigger`] on SIGINT/SIGTERM.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The receiving side, cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first receiver.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown is requested (at once if it already was). Cancel-safe.
    pub async fn requested(&mut self) {
        // An error means the trigger is gone: nobody can ask any more, so stop too.
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}

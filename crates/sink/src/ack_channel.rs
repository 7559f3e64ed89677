//! [`AckChannel`]: acknowledgements coming back from a sink's own task (the one that
//! owns the connection), and how many records are still waiting for theirs.

use tokio::sync::mpsc;

use crate::sink::Ack;

/// The receiving end of a sink task's acknowledgements, counting what is outstanding
/// (for [`crate::SendOutcome::Blocked`]).
#[derive(Debug)]
pub struct AckChannel {
    acks: mpsc::UnboundedReceiver<Ack>,
    /// Sent and not yet acknowledged.
    outstanding: u64,
}

impl AckChannel {
    /// A channel: the sender goes to the sink's task.
    pub fn new() -> (mpsc::UnboundedSender<Ack>, Self) {
        let (sender, acks) = mpsc::unbounded_channel();
        (sender, Self { acks, outstanding: 0 })
    }

    /// A record was handed to the task.
    pub fn on_sent(&mut self) {
        self.outstanding += 1;
    }

    /// Whether `limit` records (at least one) are waiting for acknowledgements.
    pub fn is_full(&self, limit: u64) -> bool {
        self.outstanding >= limit.max(1)
    }

    /// The next acknowledgement, waiting for it; cancel-safe. If the task is gone (it
    /// only ends when the sink is dropped), nothing more comes: waits forever.
    pub async fn next(&mut self) -> Ack {
        match self.acks.recv().await {
            Some(ack) => self.took(ack),
            None => std::future::pending().await,
        }
    }

    /// An acknowledgement if one already arrived.
    pub fn try_next(&mut self) -> Option<Ack> {
        let ack = self.acks.try_recv().ok()?;
        Some(self.took(ack))
    }

    fn took(&mut self, ack: Ack) -> Ack {
        self.outstanding = self.outstanding.saturating_sub(1);
        ack
    }
}

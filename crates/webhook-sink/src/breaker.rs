//! The circuit breaker: after `threshold` consecutive failed attempts (connection
//! errors, timeouts, 408, 429, 5xx) no request goes out for `cooldown`; then exactly one
//! probe does. Its success closes the breaker, its failure opens it again. Permanent
//! refusals (other 4xx) are answers from a healthy receiver and do not count.
//!
//! While the breaker is open events wait in their lanes, nothing is acknowledged, and
//! the slot holds: an outage of the receiver costs WAL on the server, never an event.
//! Pure: the caller passes the time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// The breaker's state as `/readyz` and `/metrics` show it (`tailbox_webhook_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Requests flow.
    Closed = 0,
    /// Cooling down after one probe is out or due.
    HalfOpen = 1,
    /// No request goes out until the cool-down ends.
    Open = 2,
}

impl BreakerState {
    /// From the gauge's value.
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::HalfOpen,
            2 => BreakerState::Open,
            _ => BreakerState::Closed,
        }
    }

    /// `closed`, `half-open`, `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }
}

/// Where the breaker publishes its state (shared with the metrics endpoint).
pub type BreakerGauge = Arc<AtomicU8>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
    gauge: BreakerGauge,
}

impl Breaker {
    /// A closed breaker; `threshold` 0 never opens.
    pub fn new(threshold: u32, cooldown: Duration, gauge: BreakerGauge) -> Self {
        gauge.store(BreakerState::Closed as u8, Ordering::Relaxed);
        Self { threshold, cooldown, state: State::Closed { failures: 0 }, gauge }
    }

    /// Whether a request may go out now; in the half-open state this says yes once (the
    /// probe) until the probe's outcome is reported.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.set(State::HalfOpen { probing: true });
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing: true } => false,
            State::HalfOpen { probing: false } => {
                self.set(State::HalfOpen { probing: true });
                true
            }
        }
    }

    /// A request got a 2xx (or a permanent answer): the receiver is up.
    pub fn on_success(&mut self) {
        self.set(State::Closed { failures: 0 });
    }

    /// A request failed in a way that counts.
    pub fn on_failure(&mut self, now: Instant) {
        let open = State::Open { until: now + self.cooldown };
        match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    tracing::warn!(
                        failures,
                        cooldown_ms = self.cooldown.as_millis() as u64,
                        "webhook circuit breaker opened"
                    );
                    self.set(open);
                } else {
                    self.set(State::Closed { failures });
                }
            }
            State::HalfOpen { .. } => {
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "webhook probe failed; circuit breaker open again"
                );
                self.set(open);
            }
            // Requests sent before it opened: the cool-down already runs.
            State::Open { .. } => {}
        }
    }

    /// When the breaker wants to be asked again (the end of the cool-down).
    pub fn wake_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// The state as shown.
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn set(&mut self, state: State) {
        self.state = state;
        self.gauge.store(self.state() as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_and_closes_on_success() {
        let gauge = BreakerGauge::default();
        let mut breaker = Breaker::new(3, Duration::from_secs(10), Arc::clone(&gauge));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(breaker.allow(t0));
            breaker.on_failure(t0);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "two failures are below three");
        breaker.on_failure(t0);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.load(Ordering::Relaxed), BreakerState::Open as u8);
        assert!(!breaker.allow(t0 + Duration::from_secs(9)), "cooling down");
        assert_eq!(breaker.wake_at(), Some(t0 + Duration::from_secs(10)));
        let later = t0 + Duration::from_secs(10);
        assert!(breaker.allow(later), "the probe");
        assert!(!breaker.allow(later), "only one probe at a time");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.on_failure(later);
        assert_eq!(breaker.state(), BreakerState::Open, "a failed probe opens it again");
        assert!(!breaker.allow(later + Duration::from_secs(5)));
        let again = later + Duration::from_secs(10);
        assert!(breaker.allow(again));
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(gauge.load(Ordering::Relaxed), BreakerState::Closed as u8);
        assert!(breaker.allow(again) && breaker.allow(again), "closed: no limit");
    }

    #[test]
    fn a_success_resets_the_count_and_zero_never_opens() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(1), BreakerGauge::default());
        breaker.on_failure(t0);
        breaker.on_success();
        breaker.on_failure(t0);
        assert_eq!(breaker.state(), BreakerState::Closed, "failures must be consecutive");
        let mut never = Breaker::new(0, Duration::from_secs(1), BreakerGauge::default());
        for _ in 0..100 {
            never.on_failure(t0);
        }
        assert!(never.allow(t0));
    }
}

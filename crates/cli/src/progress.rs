//! Progress: on a terminal a live line (events/s, lag, in flight, confirmed LSN) redrawn
//! every second at the bottom of stderr; otherwise an `info` log line with the same
//! numbers every `progress_interval_secs`. Also takes the end-to-end lag samples.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tailbox_pgoutput::Lsn;
use tokio::time::MissedTickBehavior;
use tracing::info;

use crate::{
    logging,
    ops::{Ops, SAMPLE_INTERVAL, now_us},
};

/// How the numbers are shown.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Redraw a line on the terminal every second.
    Terminal,
    /// Log a line this often.
    Log(Duration),
    /// Only sample the lag.
    Off,
}

/// The numbers of one progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub published: u64,
    pub events_per_sec: f64,
    pub lag_seconds: f64,
    pub in_flight: u64,
    pub confirmed_lsn: Lsn,
    pub streaming: bool,
    pub retained_wal_bytes: Option<u64>,
}

impl Snapshot {
    /// The terminal line.
    pub fn line(&self, dry_run: bool) -> String {
        let retained = self
            .retained_wal_bytes
            .map(|b| format!(" · WAL retained {}", human_bytes(b)))
            .unwrap_or_default();
        format!(
            "tailbox{}: {} events · {:.1}/s · lag {:.1} s · in flight {} · confirmed {}{retained} · {}",
            if dry_run { " (dry run)" } else { "" },
            self.published,
            self.events_per_sec,
            self.lag_seconds,
            self.in_flight,
            self.confirmed_lsn,
            if self.streaming { "streaming" } else { "not streaming" },
        )
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Events per second over a sliding window.
struct Rate {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn new(window: Duration) -> Self {
        Self { window, samples: VecDeque::new() }
    }

    fn push(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while let Some((t, _)) = self.samples.front() {
            if now.duration_since(*t) > self.window && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Runs until dropped.
pub async fn run(ops: Arc<Ops>, mode: Mode) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let report_every = match mode {
        Mode::Terminal => Duration::from_secs(1),
        Mode::Log(every) => every,
        Mode::Off => Duration::MAX,
    };
    // The rate window: 10 s on the terminal, the log interval otherwise.
    let mut rate = Rate::new(match mode {
        Mode::Log(every) => every,
        _ => Duration::from_secs(10),
    });
    let mut last_report = Instant::now();
    loop {
        ticker.tick().await;
        ops.sample(now_us());
        let now = Instant::now();
        if matches!(mode, Mode::Off) || now.duration_since(last_report) < report_every {
            continue;
        }
        last_report = now;
        let m = &ops.pipeline;
        let published = m.published_total();
        let snapshot = Snapshot {
            published,
            events_per_sec: rate.push(now, published),
            lag_seconds: ops.replication_lag_seconds(now_us()),
            in_flight: m.in_flight.load(Ordering::Relaxed),
            confirmed_lsn: Lsn::new(m.confirmed_lsn.load(Ordering::Relaxed)),
            streaming: m.streaming.load(Ordering::Relaxed),
            retained_wal_bytes: ops.slot_report().and_then(|s| s.retained_wal_bytes),
        };
        match mode {
            Mode::Terminal => logging::show_progress(&snapshot.line(ops.dry_run)),
            Mode::Log(_) => info!(
                published = snapshot.published,
                events_per_sec = format!("{:.1}", snapshot.events_per_sec),
                lag_seconds = format!("{:.3}", snapshot.lag_seconds),
                in_flight = snapshot.in_flight,
                lsn = %snapshot.confirmed_lsn,
                retained_wal_bytes = snapshot.retained_wal_bytes,
                streaming = snapshot.streaming,
                dry_run = ops.dry_run,
                "progress"
            ),
            Mode::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_window() {
        let mut rate = Rate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rate.push(t0, 0), 0.0);
        assert_eq!(rate.push(t0 + Duration::from_secs(1), 100), 100.0);
        assert_eq!(rate.push(t0 + Duration::from_secs(2), 300), 150.0);
    }

    #[test]
    fn sizes_and_line() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        let line = Snapshot {
            published: 10,
            events_per_sec: 2.0,
            lag_seconds: 1.5,
            in_flight: 1,
            confirmed_lsn: Lsn::new(0x16B_3748),
            streaming: true,
            retained_wal_bytes: Some(2048),
        }
        .line(true);
        assert_eq!(
            line,
            "tailbox (dry run): 10 events · 2.0/s · lag 1.5 s · in flight 1 · confirmed 0/16B3748 · WAL retained 2.0 KiB · streaming"
        );
    }
}

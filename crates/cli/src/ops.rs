//! What operators see of a running tailbox: the `/status` JSON, health and readiness,
//! the progress numbers and the values of the Prometheus exposition
//! ([`crate::metrics`]) — all read from the pipeline's [`PipelineMetrics`] plus a few
//! gauges kept here (the slot's retained WAL from a periodic query, the sampled
//! end-to-end lag).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::json;
use tailbox_pgoutput::Lsn;
use tailbox_pipeline::PipelineMetrics;
use tailbox_replication::{ControlClient, PgConnectionConfig};
use tailbox_webhook_sink::BreakerState;

use crate::catalog::{self, SlotReport};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

/// How often the slot's retained WAL is queried.
pub const SLOT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Longest a slot query may take before it counts as failed.
const SLOT_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the end-to-end lag is sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Shared state of the operations side.
#[derive(Debug)]
pub struct Ops {
    /// The pipeline's own metrics.
    pub pipeline: Arc<PipelineMetrics>,
    /// Slot name (for labels and `/status`).
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Dry run: nothing is published, the slot is never confirmed.
    pub dry_run: bool,
    /// Process start, µs since the epoch.
    pub started_us: i64,
    /// The supervisor loop is running (set before it starts, cleared when it returns).
    pub loop_alive: AtomicBool,
    /// The last slot query's result.
    slot_report: Mutex<Option<SlotReport>>,
    /// When the last slot query succeeded, µs since the epoch (0: never).
    pub slot_polled_us: AtomicI64,
    /// Failed slot queries.
    pub slot_poll_errors: AtomicU64,
    /// Sampled end-to-end lag: commit → acknowledged by Kafka, µs (-1: no sample).
    pub end_to_end_lag_us: AtomicI64,
    last_acked_seen_us: AtomicI64,
    /// Destination topics: which are missing (`/status`, `/readyz`).
    pub topics: Arc<tailbox_kafka_sink::TopicRegistry>,
}

impl Ops {
    /// New state around the pipeline's metrics.
    pub fn new(
        pipeline: Arc<PipelineMetrics>,
        slot: &str,
        publication: &str,
        dry_run: bool,
    ) -> Self {
        Self {
            pipeline,
            slot: slot.to_owned(),
            publication: publication.to_owned(),
            dry_run,
            started_us: now_us(),
            loop_alive: AtomicBool::new(false),
            slot_report: Mutex::new(None),
            slot_polled_us: AtomicI64::new(0),
            slot_poll_errors: AtomicU64::new(0),
            end_to_end_lag_us: AtomicI64::new(-1),
            last_acked_seen_us: AtomicI64::new(0),
            topics: Arc::default(),
        }
    }

    /// The last slot query's result.
    pub fn slot_report(&self) -> Option<SlotReport> {
        self.slot_report.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn set_slot_report(&self, report: Option<SlotReport>) {
        if let Ok(mut slot) = self.slot_report.lock() {
            *slot = report;
        }
        self.slot_polled_us.store(now_us(), Ordering::Relaxed);
    }

    /// Replication lag in seconds: how long ago the newest transaction whose events
    /// Kafka fully acknowledged committed, while tailbox has read something not yet
    /// acknowledged; 0 when caught up (everything read is acknowledged), so an idle
    /// outbox does not look like a growing lag.
    pub fn replication_lag_seconds(&self, now_us: i64) -> f64 {
        let m = &self.pipeline;
        let acked = m.last_acked_commit_us.load(Ordering::Relaxed);
        let read = m.last_read_commit_us.load(Ordering::Relaxed);
        let in_flight = m.in_flight.load(Ordering::Relaxed);
        if in_flight == 0 && read <= acked {
            return 0.0;
        }
        let reference = if acked > 0 { acked } else { read };
        if reference <= 0 {
            return 0.0;
        }
        (now_us - reference).max(0) as f64 / 1e6
    }

    /// The sampled end-to-end lag in seconds, if any transaction was acknowledged
    /// since start.
    pub fn end_to_end_lag_seconds(&self) -> Option<f64> {
        let us = self.end_to_end_lag_us.load(Ordering::Relaxed);
        (us >= 0).then(|| us as f64 / 1e6)
    }

    /// Takes one end-to-end lag sample: if a newer transaction was acknowledged since
    /// the last sample, its lag is now − its commit time (overstated by at most one
    /// sample interval).
    pub fn sample(&self, now_us: i64) {
        let acked = self.pipeline.last_acked_commit_us.load(Ordering::Relaxed);
        let seen = self.last_acked_seen_us.swap(acked, Ordering::Relaxed);
        if acked > 0 && acked != seen {
            self.end_to_end_lag_us.store((now_us - acked).max(0), Ordering::Relaxed);
        }
    }

    /// `/healthz`: the process answers and the pipeline loop runs.
    pub fn healthy(&self) -> bool {
        self.loop_alive.load(Ordering::Relaxed)
    }

    /// `/readyz`: streaming from the slot, the sink reachable, no record waiting for a
    /// missing topic, and (webhook sink) the circuit breaker not open.
    pub fn ready(&self) -> bool {
        self.pipeline.streaming.load(Ordering::Relaxed)
            && self.pipeline.kafka_ok.load(Ordering::Relaxed)
            && self.topics.missing().is_empty()
            && self.breaker() != BreakerState::Open
    }

    fn breaker(&self) -> BreakerState {
        BreakerState::from_u8(self.pipeline.webhook_breaker.load(Ordering::Relaxed))
    }

    /// Why not ready, for the `/readyz` body.
    pub fn readiness_text(&self) -> String {
        let streaming = self.pipeline.streaming.load(Ordering::Relaxed);
        let kafka_ok = self.pipeline.kafka_ok.load(Ordering::Relaxed);
        let missing = self.topics.missing();
        let breaker = self.breaker();
        if streaming && kafka_ok && missing.is_empty() && breaker != BreakerState::Open {
            return "ready
"
            .into();
        }
        let mut text = format!("not ready: streaming={streaming} kafka_ok={kafka_ok}");
        if breaker == BreakerState::Open {
            text.push_str("; webhook circuit breaker open (the receiver keeps failing)");
        }
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|m| m.topic.as_str()).collect();
            text.push_str(&format!(
                "; waiting for missing Kafka topics: {} (see /status for how to create them)",
                names.join(", ")
            ));
        }
        // Say why: the last error names the sink or PostgreSQL and what failed.
        if let Some(error) = self.pipeline.last_error() {
            text.push_str(&format!("; last error: {error}"));
        }
        text.push('\n');
        text
    }

    /// The `/status` JSON.
    pub fn status_json(&self, now_us: i64) -> serde_json::Value {
        let m = &self.pipeline;
        let topics: serde_json::Map<String, serde_json::Value> = m
            .published_by_topic()
            .iter()
            .map(|(t, c)| (t.clone(), json!({"events": c.events, "bytes": c.bytes})))
            .collect();
        let errors: serde_json::Map<String, serde_json::Value> =
            m.errors().iter().map(|(k, n)| ((*k).to_owned(), json!(n))).collect();
        let timestamp = |us: i64| (us > 0).then(|| us as f64 / 1e6);
        let slot = self.slot_report().map(|s| {
            json!({
                "active": s.active,
                "active_pid": s.active_pid,
                "confirmed_flush_lsn": s.confirmed_flush_lsn.map(|lsn| lsn.to_string()),
                "restart_lsn": s.restart_lsn.map(|lsn| lsn.to_string()),
                "current_wal_lsn": s.current_wal_lsn.to_string(),
                "retained_wal_bytes": s.retained_wal_bytes,
                "lag_bytes": s.lag_bytes,
                "wal_status": s.wal_status,
                "queried_at": timestamp(self.slot_polled_us.load(Ordering::Relaxed)),
            })
        });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "slot": self.slot,
            "publication": self.publication,
            "dry_run": self.dry_run,
            "healthy": self.healthy(),
            "ready": self.ready(),
            "streaming": m.streaming.load(Ordering::Relaxed),
            "kafka_ok": m.kafka_ok.load(Ordering::Relaxed),
            "uptime_seconds": (now_us - self.started_us).max(0) as f64 / 1e6,
            "published_events": m.published_total(),
            "published_by_topic": topics,
            "in_flight": m.in_flight.load(Ordering::Relaxed),
            "dead_lettered": m.dead_lettered.load(Ordering::Relaxed),
            "reconnects": m.reconnects.load(Ordering::Relaxed),
            "errors": errors,
            "last_error": m.last_error(),
            "missing_topics": self.topics.missing().iter().map(|t| json!({
                "topic": t.topic,
                "lsn": t.lsn,
                "xid": t.xid,
                "reason": t.reason,
                "fix": t.fix,
            })).collect::<Vec<_>>(),
            "confirmed_lsn": Lsn::new(m.confirmed_lsn.load(Ordering::Relaxed)).to_string(),
            "server_wal_end": Lsn::new(m.server_wal_end.load(Ordering::Relaxed)).to_string(),
            "replication_lag_seconds": self.replication_lag_seconds(now_us),
            "end_to_end_lag_seconds": self.end_to_end_lag_seconds(),
            "last_acked_commit_time": timestamp(m.last_acked_commit_us.load(Ordering::Relaxed)),
            "last_read_commit_time": timestamp(m.last_read_commit_us.load(Ordering::Relaxed)),
            "slot_status": slot,
        })
    }
}

/// Queries the slot every [`SLOT_POLL_INTERVAL`] on a control connection of its own
/// (reconnecting after a failure) and keeps the result in `ops`. Runs until dropped.
pub async fn poll_slot(ops: Arc<Ops>, pg: PgConnectionConfig) {
    let mut ticker = tokio::time::interval(SLOT_POLL_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut client: Option<ControlClient> = None;
    let mut failing = false;
    loop {
        ticker.tick().await;
        let result = tokio::time::timeout(SLOT_POLL_TIMEOUT, async {
            if client.is_none() {
                client = Some(ControlClient::connect(&pg).await?);
            }
            match &client {
                Some(c) => catalog::slot_report(c, &ops.slot).await,
                None => Ok(None),
            }
        })
        .await;
        match result {
            Ok(Ok(report)) => {
                if failing {
                    info!(slot = %ops.slot, "slot query works again");
                    failing = false;
                }
                if report.is_none() {
                    warn!(slot = %ops.slot, "slot not found while querying its retained WAL");
                }
                ops.set_slot_report(report);
            }
            Ok(Err(err)) => {
                ops.slot_poll_errors.fetch_add(1, Ordering::Relaxed);
                client = None;
                if !failing {
                    warn!(slot = %ops.slot, error = %err, "querying the slot's retained WAL failed; retrying every 10 s");
                    failing = true;
                }
            }
            Err(_elapsed) => {
                ops.slot_poll_errors.fetch_add(1, Ordering::Relaxed);
                client = None;
                if !failing {
                    warn!(slot = %ops.slot, "querying the slot's retained WAL timed out; retrying every 10 s");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tailbox_pipeline::metrics::ErrorKind;

    use super::*;

    fn ops() -> Ops {
        Ops::new(Arc::new(PipelineMetrics::default()), "s", "p", false)
    }

    #[test]
    fn lag_is_zero_when_caught_up_and_grows_while_pending() {
        let ops = ops();
        let m = &ops.pipeline;
        assert_eq!(ops.replication_lag_seconds(10_000_000), 0.0);
        m.last_acked_commit_us.store(4_000_000, Ordering::Relaxed);
        m.last_read_commit_us.store(4_000_000, Ordering::Relaxed);
        assert_eq!(ops.replication_lag_seconds(10_000_000), 0.0, "caught up");
        m.last_read_commit_us.store(9_000_000, Ordering::Relaxed);
        m.in_flight.store(3, Ordering::Relaxed);
        assert_eq!(ops.replication_lag_seconds(10_000_000), 6.0);
    }

    #[test]
    fn end_to_end_lag_is_sampled_on_new_acks() {
        let ops = ops();
        ops.sample(1_000_000);
        assert_eq!(ops.end_to_end_lag_seconds(), None);
        ops.pipeline.last_acked_commit_us.store(2_000_000, Ordering::Relaxed);
        ops.sample(2_500_000);
        assert_eq!(ops.end_to_end_lag_seconds(), Some(0.5));
        ops.sample(9_000_000);
        assert_eq!(ops.end_to_end_lag_seconds(), Some(0.5), "no new ack, no new sample");
    }

    #[test]
    fn status_reports_lsns_in_postgres_form() {
        let ops = ops();
        let m = &ops.pipeline;
        m.add_published("outbox.event.a", 3, 300);
        m.record_error(ErrorKind::Kafka, "down");
        m.confirmed_lsn.store(0x1_0000_0010, Ordering::Relaxed);
        let status = ops.status_json(now_us());
        assert_eq!(status["last_error"], "down");
        assert_eq!(status["confirmed_lsn"], "1/10");
        assert_eq!(status["published_events"], 3);
    }

    #[test]
    fn a_missing_topic_makes_tailbox_unready_and_is_listed_in_status() {
        let ops = ops();
        ops.pipeline.streaming.store(true, Ordering::Relaxed);
        ops.pipeline.kafka_ok.store(true, Ordering::Relaxed);
        assert!(ops.ready());
        ops.topics.report_missing(tailbox_kafka_sink::MissingTopic {
            topic: "outbox.event.Order".into(),
            lsn: "0/16B3748".into(),
            xid: "755".into(),
            reason: "tailbox could not create it (TopicAuthorizationFailed)".into(),
            fix: "create it: kafka-topics.sh …".into(),
        });
        assert!(!ops.ready());
        assert!(ops.readiness_text().contains("missing Kafka topics: outbox.event.Order"));
        let status = ops.status_json(now_us());
        assert_eq!(status["missing_topics"][0]["topic"], "outbox.event.Order");
        assert_eq!(status["missing_topics"][0]["xid"], "755");
        ops.topics.found(|| "outbox.event.Order");
        assert!(ops.ready());
        assert_eq!(ops.status_json(now_us())["missing_topics"], serde_json::json!([]));
    }
}

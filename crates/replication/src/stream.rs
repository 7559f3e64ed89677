//! [`PgWalStream`]: the logical replication stream on `pgwire-replication`.
//!
//! Why this transport (see docs/architecture.md): it already runs standby status
//! feedback on its own task, keeps it flowing while we apply backpressure (so the
//! walsender is not killed by `wal_sender_timeout` while Kafka is slow), reads are
//! cancel-safe, and progress is only ever reported from what we hand to
//! [`WalSource::confirm`]. It splits out Begin/Commit/Message and hands every other
//! pgoutput message over as raw bytes, which our own decoder parses.
//!
//! # Invariants enforced here
//! - Streaming starts at the slot's `confirmed_flush_lsn`, and the position reported
//!   back before we confirm anything is that same LSN: a restart never reports more
//!   than was durably published.
//! - Status updates carry write = flush = apply = the last confirmed LSN, are
//!   monotonic, and go out at most once per `status_interval`.
//! - On a clean stop the last confirmed LSN is sent before the stream is closed, so a
//!   restart does not republish what was already acknowledged.

use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tracing::{debug, warn};

use crate::{
    connection::PgConnectionConfig,
    error::ReplicationError,
    source::{WalEvent, WalSource},
    tls,
};

/// Settings of one replication session.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Logical slot (plugin `pgoutput`).
    pub slot: String,
    /// Publication(s) to stream.
    pub publication: String,
    /// Where to start and what to report as flushed until we confirm more: the slot's
    /// `confirmed_flush_lsn` as read just before starting.
    pub start_lsn: u64,
    /// How often standby status updates go out (at most).
    pub status_interval: Duration,
    /// Events buffered between the socket reader and the pipeline.
    pub buffer_events: usize,
}

/// A running logical replication stream.
pub struct PgWalStream {
    client: ReplicationClient,
    confirmed: u64,
}

impl PgWalStream {
    /// Connects, authenticates and sends START_REPLICATION; returns once the server
    /// accepted it, so the slot is held by this session from then on.
    pub async fn start(
        conn: &PgConnectionConfig,
        settings: &StreamSettings,
    ) -> Result<Self, ReplicationError> {
        let config = conn
            .replication_config(&settings.slot, &settings.publication)
            .await?
            .with_start_lsn(Lsn(settings.start_lsn))
            .with_ack_lsn(Lsn(settings.start_lsn))
            .with_status_interval(settings.status_interval)
            .with_wakeup_interval(settings.status_interval)
            .with_buffer_size(settings.buffer_events)
            .with_application_name(format!("tailbox/{}", settings.slot));
        let mut client = ReplicationClient::connect(config).await.map_err(|e| {
            tls::replication_connect_problem(conn, &e)
                .unwrap_or_else(|| ReplicationError::from_wire("connecting for replication", e))
        })?;
        client.wait_started().await.map_err(|e| {
            tls::replication_connect_problem(conn, &e)
                .unwrap_or_else(|| classify_start_error(&settings.slot, e))
        })?;
        debug!(slot = %settings.slot, start_lsn = settings.start_lsn, "replication started");
        Ok(Self { client, confirmed: settings.start_lsn })
    }
}

/// "Slot is active for another PID" is worth retrying (an old session is going away);
/// a missing slot or publication is not.
fn classify_start_error(slot: &str, err: pgwire_replication::PgWireError) -> ReplicationError {
    let text = err.to_string();
    if text.contains("does not exist") && text.contains("replication slot") {
        return ReplicationError::startup(
            format!("replication slot {slot:?} does not exist"),
            format!(
                "create it with sql/03_slot.sql (SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput'))"
            ),
        );
    }
    if let Some(at) = text.find("is active for PID ") {
        let pid = text[at + "is active for PID ".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|p| p.parse().ok());
        return ReplicationError::SlotInUse { slot: slot.to_owned(), pid };
    }
    if text.contains("can no longer get changes") || text.contains("has been invalidated") {
        return crate::control::slot_lost(slot);
    }
    ReplicationError::from_wire("starting replication", err)
}

impl WalSource for PgWalStream {
    async fn recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        loop {
            let event =
                self.client.recv().await.map_err(|e| {
                    ReplicationError::from_wire("reading the replication stream", e)
                })?;
            let Some(event) = event else { return Ok(None) };
            let mapped = match event {
                ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                    WalEvent::Begin { final_lsn: final_lsn.0, xid, commit_ts: commit_time_micros }
                }
                ReplicationEvent::XLogData { data, .. } => WalEvent::Change(data),
                ReplicationEvent::Commit { lsn, end_lsn, commit_time_micros } => WalEvent::Commit {
                    commit_lsn: lsn.0,
                    end_lsn: end_lsn.0,
                    commit_ts: commit_time_micros,
                },
                ReplicationEvent::Message { transactional, lsn, prefix, content } => {
                    WalEvent::Message { transactional, lsn: lsn.0, prefix, content }
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    WalEvent::KeepAlive { wal_end: wal_end.0 }
                }
                // Only produced with a stop LSN, which we never set.
                ReplicationEvent::StoppedAt { .. } => continue,
            };
            return Ok(Some(mapped));
        }
    }

    fn confirm(&mut self, lsn: u64) {
        if lsn > self.confirmed {
            self.confirmed = lsn;
            self.client.update_applied_lsn(Lsn(lsn));
        }
    }

    async fn stop(mut self, timeout: Duration) -> Result<(), ReplicationError> {
        // The worker sends a raised position within one status interval; wait for it so
        // the final confirm is not lost when the stream closes.
        let metrics = self.client.metrics();
        let deadline = Instant::now() + timeout;
        while metrics.last_applied_lsn().0 < self.confirmed && self.client.is_running() {
            if Instant::now() >= deadline {
                warn!(
                    lsn = self.confirmed,
                    "final status update not confirmed sent before the timeout"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .shutdown()
            .await
            .map_err(|e| ReplicationError::from_wire("stopping replication", e))
    }
}

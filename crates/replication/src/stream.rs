//! [`PgWalStream`]: the logical replication stream of one slot, on our own CopyBoth
//! client ([`crate::wire`]).
//!
//! The stream is read by the pipeline's own task: there is no reader task and no
//! channel between the socket and the pipeline. [`WalSource::try_recv`] hands out every
//! event already in the read buffer without waiting, so one wake-up of the pipeline
//! handles everything one socket read brought (hundreds of events during a catch-up).
//! Each event's payload is a [`Bytes`] slice of the read buffer.
//!
//! # Invariants enforced here
//! - Streaming starts at the slot's `confirmed_flush_lsn`, and every status update
//!   carries write = flush = apply = the highest LSN passed to [`WalSource::confirm`],
//!   never less than that start: PostgreSQL 15 takes a lower flush position as the
//!   slot's new `confirmed_flush_lsn`, so reporting less would replay published events.
//!   Nothing is reported before a position is known (0 is "none", which the server
//!   ignores).
//! - Status updates go out when the pipeline calls [`WalSource::send_status`] (its
//!   status timer, which keeps running while it applies backpressure and does not
//!   read, so `wal_sender_timeout` never fires because Kafka is slow), and at once when
//!   a keepalive asks for a reply.
//! - On a clean stop the last confirmed position goes out before CopyDone, on the same
//!   connection, so the server applies it before it ends the stream.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use tailbox_pgoutput::Lsn;
use tracing::{debug, warn};

use crate::{
    connection::PgConnectionConfig,
    error::ReplicationError,
    identity::ServerIdentity,
    source::{WalEvent, WalSource},
    wire::{CommandFailure, PgWire, ReadBatch, ServerError, protocol},
};

/// A status update goes out at least this often even if nothing new was confirmed: a
/// sign of life well inside any sensible `wal_sender_timeout` (default 60 s), also
/// while the pipeline does not read and so never sees the walsender's keepalives.
const STATUS_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// XLogData header after the `w`: dataStart, walEnd, sendTime.
const XLOG_DATA_HEADER: usize = 1 + 8 + 8 + 8;
/// A transaction sent this long after it committed means we are catching up...
const CATCHING_UP_LAG_MICROS: i64 = 100_000;
/// ...and then a read waits for 256 KiB or 5 ms: a thousand events per wake-up, and a
/// quarter of the receive calls (and of the window updates each sends back) of 64 KiB.
const CATCHING_UP_READS: ReadBatch =
    ReadBatch { bytes: 256 * 1024, wait: Duration::from_millis(5) };
/// Live, a read waits for 16 KiB or 1 ms: a millisecond of latency at most, for a
/// fraction of the wake-ups (and of the walsender's cost of waking us).
const LIVE_READS: ReadBatch = ReadBatch { bytes: 16 * 1024, wait: Duration::from_millis(1) };

/// Settings of one replication session.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Logical slot (plugin `pgoutput`).
    pub slot: String,
    /// Publication(s) to stream.
    pub publication: String,
    /// Where to start and what to report as flushed until we confirm more: the slot's
    /// `confirmed_flush_lsn` as read just before starting.
    pub start_lsn: Lsn,
}

/// A running logical replication stream.
pub struct PgWalStream {
    wire: PgWire,
    /// The server we stream from, asked on this connection before streaming.
    identity: ServerIdentity,
    /// Highest LSN the pipeline confirmed (or the start position).
    confirmed: Lsn,
    /// The position in the last status update sent.
    reported: Lsn,
    /// When the last status update was queued.
    last_status: Instant,
    /// The last transaction began more than [`CATCHING_UP_LAG_MICROS`] before the
    /// server sent it.
    catching_up: bool,
}

impl PgWalStream {
    /// Connects, authenticates and sends START_REPLICATION; returns once the server
    /// accepted it, so the slot is held by this session from then on.
    pub async fn start(
        conn: &PgConnectionConfig,
        settings: &StreamSettings,
    ) -> Result<Self, ReplicationError> {
        crate::control::validate_identifier("slot", &settings.slot)?;
        let mut wire = PgWire::connect(conn, &format!("tailbox/{}", settings.slot)).await?;
        let identity = match ServerIdentity::query(&mut wire).await {
            Ok(identity) => identity,
            Err(error) => {
                wire.close().await;
                return Err(error);
            }
        };
        let command = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names '{}'{})",
            settings.slot,
            settings.start_lsn,
            // pgoutput splits publication_names like SQL identifiers (folding unquoted
            // ones), so each name goes in double quotes, then the list in a literal.
            crate::control::quote_identifier(&settings.publication).replace('\'', "''"),
            crate::server_version::extra_pgoutput_options(wire.server_version()),
        );
        match wire.start_copy_both(&command).await {
            Ok(()) => {}
            Err(failure) => {
                wire.close().await;
                return Err(match failure {
                    CommandFailure::Refused(error) => classify_start_error(&settings.slot, error),
                    CommandFailure::Connection(error) => error,
                });
            }
        }
        debug!(slot = %settings.slot, start_lsn = %settings.start_lsn, "replication started");
        Ok(Self {
            wire,
            identity,
            confirmed: settings.start_lsn,
            reported: settings.start_lsn,
            last_status: Instant::now(),
            catching_up: false,
        })
    }

    /// The server this stream comes from: system identifier, database, timeline and its
    /// history, as they were when the stream started.
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// Queues a standby status update for the confirmed position.
    fn queue_status(&mut self, reply_requested: bool) {
        if self.confirmed == Lsn::ZERO {
            return;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
        let pg_now = (now as u64).saturating_sub(tailbox_pgoutput::PG_EPOCH_OFFSET_MICROS as u64);
        let mut update = [0u8; 34];
        update[0] = b'r';
        for field in 0..3 {
            update[1 + field * 8..9 + field * 8]
                .copy_from_slice(&self.confirmed.as_u64().to_be_bytes());
        }
        update[25..33].copy_from_slice(&pg_now.to_be_bytes());
        update[33] = u8::from(reply_requested);
        self.wire.queue_copy_data(&update);
        self.reported = self.confirmed;
        self.last_status = Instant::now();
    }

    /// Turns one CopyData payload into an event (`None` for messages we skip).
    fn on_copy_data(&mut self, mut body: BytesMut) -> Result<Option<WalEvent>, ReplicationError> {
        match body.first() {
            Some(b'w') => {
                if body.len() <= XLOG_DATA_HEADER {
                    return Err(protocol("XLogData shorter than its header"));
                }
                let send_time = i64::from_be_bytes(body[17..25].try_into().unwrap_or_default());
                body.advance(XLOG_DATA_HEADER);
                if let Some(commit_ts) = begin_commit_ts(&body) {
                    self.catching_up = send_time.saturating_sub(commit_ts) > CATCHING_UP_LAG_MICROS;
                }
                Ok(Some(WalEvent::Data(body.freeze())))
            }
            Some(b'k') => {
                let Some(fields) = body.get(1..18) else {
                    return Err(protocol("keepalive shorter than its fields"));
                };
                let wal_end =
                    Lsn::new(u64::from_be_bytes(fields[..8].try_into().unwrap_or_default()));
                if fields[16] != 0 {
                    self.queue_status(false);
                }
                Ok(Some(WalEvent::KeepAlive { wal_end }))
            }
            _ => Ok(None),
        }
    }
}

/// The commit time of a pgoutput Begin message (`B`, final LSN, commit time, xid),
/// read in place: the only field the stream itself looks at.
fn begin_commit_ts(payload: &[u8]) -> Option<i64> {
    if payload.first() != Some(&b'B') {
        return None;
    }
    Some(i64::from_be_bytes(payload.get(9..17)?.try_into().ok()?))
}

/// "Slot is active for another PID" is worth retrying (an old session is going away);
/// a missing slot or publication is not.
fn classify_start_error(slot: &str, error: ServerError) -> ReplicationError {
    // By SQLSTATE, not by message text: `lc_messages` may translate the text.
    match error.code.as_str() {
        // undefined_object: the slot named in START_REPLICATION does not exist.
        "42704" => ReplicationError::startup(
            format!("replication slot {slot:?} does not exist"),
            format!(
                "create it with sql/03_slot.sql (SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput'))"
            ),
        ),
        // object_in_use: another walsender holds it. The PID is only in the text; a
        // translated message just loses it.
        "55006" => {
            let pid = error
                .message
                .split(|c: char| !c.is_ascii_digit())
                .find(|part| !part.is_empty())
                .and_then(|p| p.parse().ok());
            ReplicationError::SlotInUse { slot: slot.to_owned(), pid }
        }
        // object_not_in_prerequisite_state: an invalidated slot (the detail names the
        // cause), unless it is the wait for a synchronized standby, which passes.
        "55000" if !error.is_transient() => {
            crate::control::slot_invalidated_by_detail(slot, error.detail.as_deref())
        }
        _ => error.into_error("starting replication"),
    }
}

impl WalSource for PgWalStream {
    async fn recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        loop {
            if let Some(event) = self.try_recv()? {
                return Ok(Some(event));
            }
            if self.wire.has_pending_writes() {
                self.wire.flush().await?;
            }
            let batch = if self.catching_up { CATCHING_UP_READS } else { LIVE_READS };
            self.wire.read_more_batched("reading the replication stream", Some(batch)).await?;
        }
    }

    fn try_recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        while let Some((tag, body)) = self.wire.buffered_frame()? {
            match tag {
                b'd' => {
                    if let Some(event) = self.on_copy_data(body)? {
                        return Ok(Some(event));
                    }
                }
                b'E' => {
                    return Err(
                        ServerError::parse(&body).into_error("reading the replication stream")
                    );
                }
                b'N' => ServerError::parse(&body).log_as_notice(),
                b'c' => {
                    return Err(protocol("the server ended the replication stream (CopyDone)"));
                }
                // ParameterStatus and the like.
                _ => {}
            }
        }
        Ok(None)
    }

    fn confirm(&mut self, lsn: Lsn) {
        self.confirmed = self.confirmed.max(lsn);
    }

    async fn send_status(&mut self) -> Result<(), ReplicationError> {
        if self.confirmed > self.reported || self.last_status.elapsed() >= STATUS_AT_LEAST_EVERY {
            self.queue_status(false);
        }
        if self.wire.has_pending_writes() {
            self.wire.flush().await?;
        }
        Ok(())
    }

    async fn stop(mut self, timeout: Duration) -> Result<(), ReplicationError> {
        let confirmed = self.confirmed;
        let ended = tokio::time::timeout(timeout, async {
            self.queue_status(false);
            self.wire.queue_copy_done();
            self.wire.flush().await?;
            // The server answers with CopyDone, CommandComplete and ReadyForQuery; data
            // it sent before that is dropped (it was not confirmed).
            loop {
                while let Some((tag, body)) = self.wire.buffered_frame()? {
                    match tag {
                        b'Z' => return Ok(()),
                        b'E' => {
                            return Err(
                                ServerError::parse(&body).into_error("stopping replication")
                            );
                        }
                        _ => {}
                    }
                }
                self.wire.read_more("stopping replication").await?;
            }
        })
        .await;
        self.wire.close().await;
        match ended {
            Ok(result) => result,
            Err(_) => {
                warn!(
                    lsn = %confirmed,
                    "the server did not end the stream before the timeout; the last confirmed position may not have reached it"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str, message: &str, detail: Option<&str>) -> ServerError {
        ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn start_refusals_are_classified_by_sqlstate_whatever_the_language() {
        // German messages (lc_messages = de_DE): the SQLSTATE decides.
        let missing = classify_start_error(
            "s",
            refused("42704", "Replikations-Slot »s« existiert nicht", None),
        );
        assert!(matches!(missing, ReplicationError::Startup(_)), "{missing}");
        let busy = classify_start_error(
            "s",
            refused("55006", "Replikations-Slot »s« ist aktiv für PID 4242", None),
        );
        assert!(matches!(busy, ReplicationError::SlotInUse { pid: Some(4242), .. }), "{busy:?}");
        let lost = classify_start_error(
            "s",
            refused(
                "55000",
                "kann keine Änderungen mehr erhalten",
                Some("This slot has been invalidated due to \"wal_removed\"."),
            ),
        );
        assert!(matches!(lost, ReplicationError::Startup(_)), "{lost}");
        let waiting = classify_start_error(
            "s",
            refused(
                "55000",
                "replication slot \"standby_1\" specified in parameter \"synchronized_standby_slots\" does not have active_pid",
                Some(
                    "Logical replication is waiting on the standby associated with replication slot \"standby_1\".",
                ),
            ),
        );
        assert!(waiting.is_transient(), "{waiting}");
        let other = classify_start_error("s", refused("42501", "permission denied", None));
        assert!(!other.is_transient(), "{other}");
    }
}

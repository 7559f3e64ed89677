//! The [`Sink`] trait and what travels through it.

use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, UNIX_EPOCH},
};

use tailbox_outbox::{MetaHeaders, OutboxRecord, headers};
use tailbox_pgoutput::Lsn;

use crate::error::{DeliveryError, SinkError, TransactionError};

/// The last checkpoint record of each key, as the sink stores them.
pub type CheckpointRecords = BTreeMap<Vec<u8>, Vec<u8>>;

/// The outcome of one record.
#[derive(Debug)]
pub struct Ack {
    /// The sequence number [`Sink::send`] returned.
    pub seq: u64,
    /// Delivered, or why not.
    pub result: Result<(), DeliveryError>,
    /// For a record refused for good after it was enqueued: a copy of it, for the
    /// dead letters.
    pub refused: Option<Box<RefusedRecord>>,
}

/// A copy of a record the destination refused, taken when the refusal came back (rare,
/// so the copy costs nothing on the hot path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusedRecord {
    /// The topic (stream, URL) it was meant for.
    pub topic: String,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Per-transaction facts that go into every record's headers. Built once per
/// transaction, borrowed by each record.
#[derive(Debug, Clone, Default)]
pub struct EventMeta {
    /// Commit LSN of the transaction.
    pub commit_lsn: Lsn,
    /// Commit LSN in PostgreSQL's `X/X` form (header `lsn`).
    pub lsn: String,
    /// Transaction id (header `xid`).
    pub xid: String,
    /// Commit time, µs since the Unix epoch (header `commit_ts`).
    pub commit_ts: String,
    /// Commit time, ms since the Unix epoch: the record's timestamp.
    pub timestamp_ms: i64,
    /// Commit time in RFC 3339, UTC, µs (header `ce_time` of CloudEvents).
    pub time: String,
}

impl EventMeta {
    /// Fills in a new transaction's facts, reusing the strings' buffers (no allocation
    /// per transaction once they have grown).
    pub fn reset(&mut self, commit_lsn: Lsn, xid: u32, commit_unix_micros: i64) {
        use std::fmt::Write;
        self.commit_lsn = commit_lsn;
        self.lsn.clear();
        let _ = write!(self.lsn, "{commit_lsn}");
        self.xid.clear();
        let _ = write!(self.xid, "{xid}");
        self.commit_ts.clear();
        let _ = write!(self.commit_ts, "{commit_unix_micros}");
        self.timestamp_ms = commit_unix_micros / 1000;
        self.time.clear();
        write_rfc3339(&mut self.time, commit_unix_micros);
    }

    /// The per-transaction headers `which` selects, as `(name, value)`, in a fixed
    /// order: `lsn`, `xid`, `commit_ts`, `ce_time`.
    pub fn headers(&self, which: MetaHeaders) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (MetaHeaders::LSN, headers::LSN, self.lsn.as_str()),
            (MetaHeaders::XID, headers::XID, self.xid.as_str()),
            (MetaHeaders::COMMIT_TS, headers::COMMIT_TS, self.commit_ts.as_str()),
            (MetaHeaders::CE_TIME, headers::cloudevents::TIME, self.time.as_str()),
        ]
        .into_iter()
        .filter(move |(bit, _, _)| which.contains(*bit))
        .map(|(_, name, value)| (name, value))
    }
}

/// `1970-01-01T00:00:00.000000Z` for µs since the Unix epoch (UTC; a time before the
/// epoch, which no commit has, is written as the epoch).
pub fn write_rfc3339(out: &mut String, unix_micros: i64) {
    use std::fmt::Write;
    let since_epoch = std::time::Duration::from_micros(u64::try_from(unix_micros).unwrap_or(0));
    let _ = write!(out, "{}", humantime::format_rfc3339_micros(UNIX_EPOCH + since_epoch));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(micros: i64) -> String {
        let mut out = String::new();
        write_rfc3339(&mut out, micros);
        out
    }

    #[test]
    fn commit_times_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339(1_795_000_000_123_456), "2026-11-18T11:06:40.123456Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000000Z", "no commit is older");
    }

    #[test]
    fn meta_headers_follow_the_selection() {
        let mut meta = EventMeta::default();
        meta.reset(0x16B3748.into(), 42, 0);
        let all: Vec<_> = meta.headers(MetaHeaders::default()).collect();
        assert_eq!(all, [("lsn", "0/16B3748"), ("xid", "42"), ("commit_ts", "0")]);
        assert_eq!(meta.headers(MetaHeaders::NONE).count(), 0);
        let ce: Vec<_> = meta.headers(MetaHeaders::XID.with(MetaHeaders::CE_TIME)).collect();
        assert_eq!(ce, [("xid", "42"), ("ce_time", "1970-01-01T00:00:00.000000Z")]);
    }
}

/// What happened to a record handed to [`Sink::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Enqueued with this sequence number; its [`Ack`] follows.
    Enqueued(u64),
    /// The sink's buffer is full: offer the same record again once an acknowledgement
    /// arrived. Nothing was enqueued and no sequence number was used.
    Blocked,
}

/// [`Sink::checkpoint_every_records`] unless a sink says otherwise: a fault then makes
/// tailbox republish about this many at most (plus what is in flight), however fast it
/// was catching up, where one status interval of catch-up can hold tens of thousands.
pub const DEFAULT_CHECKPOINT_EVERY_RECORDS: u64 = 10_000;

/// A destination of outbox records. See the crate docs for the contract.
pub trait Sink {
    /// Enqueues one record; with `meta`, the destination also carries the
    /// transaction's `lsn`, `xid` and `commit_ts` (as headers or fields) and its commit
    /// time. Never waits.
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError>;

    /// Enqueues a checkpoint record under `key` (acknowledged like any record).
    fn send_checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<SendOutcome, DeliveryError>;

    /// The next acknowledgement, waiting for it. Must be cancel-safe: the pipeline
    /// polls it in a `select!`.
    fn next_ack(&mut self) -> impl Future<Output = Ack>;

    /// An acknowledgement if one already arrived.
    fn try_next_ack(&mut self) -> Option<Ack>;

    /// Reads the checkpoint records (creating their store if needed).
    fn read_checkpoints(&mut self) -> impl Future<Output = Result<CheckpointRecords, SinkError>>;

    /// Whether an acknowledgement means the destination holds the record durably. A
    /// sink that is not durable (the dry run) never lets the slot move.
    fn is_durable(&self) -> bool {
        true
    }

    /// At-least-once: the pipeline also writes a checkpoint record once this many
    /// records were acknowledged since the last one, not only on its status timer. What
    /// a crash sends again includes up to this many records, so a sink whose checkpoint
    /// is cheap to write (one database row) asks for it more often.
    fn checkpoint_every_records(&self) -> u64 {
        DEFAULT_CHECKPOINT_EVERY_RECORDS
    }

    /// Whether [`Sink::begin_transaction`] and friends work (exactly-once mode).
    fn supports_transactions(&self) -> bool {
        false
    }

    /// Opens a transaction: what is sent until the commit becomes visible atomically.
    fn begin_transaction(&mut self) -> Result<(), TransactionError> {
        Err(TransactionError::Fatal("this sink has no transactions".into()))
    }

    /// Commits the open transaction: once `Ok`, every record sent in it is durable and
    /// visible.
    fn commit_transaction(
        &mut self,
        _timeout: Duration,
    ) -> impl Future<Output = Result<(), TransactionError>> {
        std::future::ready(Err(TransactionError::Fatal("this sink has no transactions".into())))
    }

    /// Aborts the open transaction.
    fn abort_transaction(
        &mut self,
        _timeout: Duration,
    ) -> impl Future<Output = Result<(), TransactionError>> {
        std::future::ready(Err(TransactionError::Fatal("this sink has no transactions".into())))
    }
}

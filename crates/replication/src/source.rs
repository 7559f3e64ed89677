//! What the pipeline reads: a stream of WAL events from one logical slot, and a way to
//! confirm how far it may be released.

use bytes::Bytes;

use crate::error::ReplicationError;

/// One event of the logical replication stream, in WAL order.
///
/// `Begin`, `Commit` and `Message` are the pgoutput messages of the same names, already
/// split out by the transport; every other pgoutput message (`Relation`, `Insert`, …)
/// arrives as [`WalEvent::Change`] with its raw bytes for the pgoutput decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEvent {
    /// A transaction starts; its commit record is at `final_lsn`.
    Begin {
        /// LSN of the commit record (equals the commit's `commit_lsn`).
        final_lsn: u64,
        /// Transaction id.
        xid: u32,
        /// Commit time, µs since 2000-01-01.
        commit_ts: i64,
    },
    /// Any other pgoutput message (`R`, `I`, `U`, `D`, `T`, `Y`, `O`), undecoded.
    Change(Bytes),
    /// A `pg_logical_emit_message` message.
    Message {
        /// Emitted inside a transaction (delivered at its commit) or not (delivered at once).
        transactional: bool,
        /// LSN of the message.
        lsn: u64,
        /// The prefix given to `pg_logical_emit_message`.
        prefix: String,
        /// The content.
        content: Bytes,
    },
    /// The transaction that began last commits.
    Commit {
        /// LSN of the commit record.
        commit_lsn: u64,
        /// LSN just past the commit record: the position to confirm once it is published.
        end_lsn: u64,
        /// Commit time, µs since 2000-01-01.
        commit_ts: i64,
    },
    /// The server's keepalive: everything before `wal_end` has been sent to us.
    KeepAlive {
        /// The last WAL position the walsender has sent.
        wal_end: u64,
    },
}

/// A source of WAL events that can be told what is durably published.
///
/// The pipeline is generic over this trait so that its checkpoint logic can be tested
/// without a server; [`crate::PgWalStream`] is the real implementation.
pub trait WalSource {
    /// The next event; `Ok(None)` once the stream ended after [`WalSource::stop`].
    fn recv(&mut self) -> impl Future<Output = Result<Option<WalEvent>, ReplicationError>>;

    /// The next event if it is already received, without waiting: lets the pipeline
    /// handle a whole socket read per wake-up. `Ok(None)` when nothing is buffered.
    fn try_recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        Ok(None)
    }

    /// Report `lsn` as flushed: the server may release WAL before it and will never
    /// send transactions that committed before it again. Monotonic; lower values are
    /// ignored.
    fn confirm(&mut self, lsn: u64);

    /// Send a standby status update with the last confirmed position if it moved (or
    /// now and then anyway, as a sign of life). The pipeline calls this on its status
    /// timer, also while it does not read.
    fn send_status(&mut self) -> impl Future<Output = Result<(), ReplicationError>> {
        std::future::ready(Ok(()))
    }

    /// Send the last confirmed position to the server (bounded by `timeout`) and end the
    /// stream.
    fn stop(
        self,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<(), ReplicationError>>;
}

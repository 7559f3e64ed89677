//! What the pipeline reads: a stream of WAL events from one logical slot, and a way to
//! confirm how far it may be released.

use bytes::Bytes;
use tailbox_pgoutput::Lsn;

use crate::error::ReplicationError;

/// One event of the logical replication stream, in WAL order.
///
/// The stream does not decode pgoutput: each message arrives whole, as a [`Bytes`]
/// slice of the read buffer, and the pipeline decodes it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEvent {
    /// One pgoutput message (`B`, `C`, `R`, `I`, `M`, …), undecoded.
    Data(Bytes),
    /// The server's keepalive: everything before `wal_end` has been sent to us.
    KeepAlive {
        /// The last WAL position the walsender has sent.
        wal_end: Lsn,
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
    fn confirm(&mut self, lsn: Lsn);

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

//! Pipeline errors: transient ones restart the session from the slot, definite ones stop
//! tailbox with a message a person can act on.

use tailbox_outbox::MappingError;
use tailbox_pgoutput::DecodeError;
use tailbox_replication::ReplicationError;
use tailbox_sink::{DeliveryError, SinkError, TransactionError};

use crate::resume::Divergence;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// PostgreSQL side.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The sink, before or outside deliveries.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A record could not be delivered.
    #[error("{error} (lsn {lsn}, xid {xid})")]
    Delivery {
        /// Why.
        #[source]
        error: Box<DeliveryError>,
        /// Commit LSN of the transaction the record belongs to, if known.
        lsn: String,
        /// Its transaction id.
        xid: String,
    },
    /// The replication stream carried bytes we cannot decode.
    #[error("cannot decode pgoutput message at wal position {lsn}: {source}")]
    Decode {
        /// Commit LSN of the transaction being read.
        lsn: String,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An outbox row cannot become a record.
    #[error("outbox row in transaction {xid} (commit lsn {lsn}) cannot be published: {source}")]
    Mapping {
        /// Commit LSN of its transaction.
        lsn: String,
        /// Its transaction id.
        xid: String,
        /// Why.
        #[source]
        source: MappingError,
    },
    /// The slot stands ahead of what we published: events would be skipped.
    #[error(
        "replication slot {slot:?} is at {slot_lsn}, ahead of the last position tailbox published ({checkpoint_lsn}): \
         the slot was dropped and recreated or advanced by another client, and events in between were never published; \
         fix: backfill the outbox rows committed between those positions, then start once with `accept_slot_position`"
    )]
    SlotAhead {
        /// The slot.
        slot: String,
        /// Its confirmed_flush_lsn.
        slot_lsn: String,
        /// Our checkpoint.
        checkpoint_lsn: String,
    },
    /// Our checkpoint lies beyond the WAL this server shares with it (restore, promotion).
    #[error(transparent)]
    CheckpointDiverged(Box<Divergence>),
    /// A sink transaction call failed (exactly-once mode).
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The replication stream ended without being asked to.
    #[error("the replication stream ended unexpectedly")]
    StreamEnded,
}

impl PipelineError {
    /// A [`PipelineError::Delivery`].
    pub fn delivery(error: DeliveryError, lsn: impl Into<String>, xid: impl Into<String>) -> Self {
        PipelineError::Delivery { error: Box::new(error), lsn: lsn.into(), xid: xid.into() }
    }

    /// Whether restarting the session (with backoff) may help.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Replication(e) => e.is_transient(),
            PipelineError::Sink(e) => e.is_transient(),
            PipelineError::Delivery { error, .. } => error.is_transient(),
            PipelineError::StreamEnded => true,
            PipelineError::Transaction(e) => !matches!(e, TransactionError::Fatal(_)),
            PipelineError::Decode { .. }
            | PipelineError::Mapping { .. }
            | PipelineError::SlotAhead { .. }
            | PipelineError::CheckpointDiverged(_) => false,
        }
    }
}

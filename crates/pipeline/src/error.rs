//! Pipeline errors: transient ones restart the session from the slot, definite ones stop
//! tailbox with a message a person can act on.

use std::fmt;

use tailbox_outbox::MappingError;
use tailbox_pgoutput::{DecodeError, Lsn};
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
    #[error("{error} ({origin})")]
    Delivery {
        /// Why.
        #[source]
        error: Box<DeliveryError>,
        /// Which record.
        origin: RecordOrigin,
    },
    /// The replication stream carried bytes we cannot decode.
    #[error("cannot decode pgoutput message at wal position {lsn}: {source}")]
    Decode {
        /// Commit LSN of the transaction being read.
        lsn: Lsn,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An outbox row cannot become a record.
    #[error("outbox row in transaction {xid} (commit lsn {lsn}) cannot be published: {source}")]
    Mapping {
        /// Commit LSN of its transaction.
        lsn: Lsn,
        /// Its transaction id.
        xid: u32,
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
        slot_lsn: Lsn,
        /// Our checkpoint.
        checkpoint_lsn: Lsn,
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

/// Which record a delivery failed for, in terms an operator can look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOrigin {
    /// A record of PostgreSQL transaction `xid`, which committed at `lsn`.
    Transaction {
        /// Its commit LSN.
        lsn: Lsn,
        /// Its transaction id.
        xid: u32,
    },
    /// The checkpoint record for `lsn`.
    Checkpoint {
        /// The position it records.
        lsn: Lsn,
    },
    /// A row `tailbox backfill` copied from the snapshot taken at `lsn`.
    Backfill {
        /// The snapshot's consistent point.
        lsn: Lsn,
        /// The row's `xmin`, where known.
        xmin: Option<u32>,
    },
}

impl fmt::Display for RecordOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordOrigin::Transaction { lsn, xid } => write!(f, "lsn {lsn}, xid {xid}"),
            RecordOrigin::Checkpoint { lsn } => write!(f, "checkpoint record for lsn {lsn}"),
            RecordOrigin::Backfill { lsn, xmin: Some(xmin) } => {
                write!(f, "backfilled row, snapshot lsn {lsn}, xmin {xmin}")
            }
            RecordOrigin::Backfill { lsn, xmin: None } => {
                write!(f, "a backfilled row, snapshot lsn {lsn}")
            }
        }
    }
}

impl PipelineError {
    /// A [`PipelineError::Delivery`].
    pub fn delivery(error: DeliveryError, origin: RecordOrigin) -> Self {
        PipelineError::Delivery { error: Box::new(error), origin }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_errors_name_the_record() {
        let error = || DeliveryError::Failed { source: "broker down".into() };
        let lsn = Lsn::new(0x1_0000_0010);
        let text = |origin| PipelineError::delivery(error(), origin).to_string();
        assert_eq!(
            text(RecordOrigin::Transaction { lsn, xid: 742 }),
            "delivery failed: broker down (lsn 1/10, xid 742)"
        );
        assert_eq!(
            text(RecordOrigin::Checkpoint { lsn }),
            "delivery failed: broker down (checkpoint record for lsn 1/10)"
        );
        assert_eq!(
            text(RecordOrigin::Backfill { lsn, xmin: Some(9) }),
            "delivery failed: broker down (backfilled row, snapshot lsn 1/10, xmin 9)"
        );
    }
}

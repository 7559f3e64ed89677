//! The destination side of tailbox, independent of any one destination: what the
//! pipeline asks of a sink, and what a sink hands back.
//!
//! Place in the data path:
//!
//! ```text
//! outbox mapping ──record──▶ [THIS CRATE: Sink] ──ack(seq)──▶ pipeline checkpoint → slot confirm
//!                                  ▲ implemented by tailbox-kafka-sink, DryRunSink, …
//! ```
//!
//! # The contract
//! - **Order.** The pipeline calls [`Sink::send`] one record at a time, in commit order,
//!   from one task. A sink must deliver records of one key in the order it was given
//!   them, also across its own retries.
//! - **Sequence numbers.** Every enqueued record (checkpoint records included) gets the
//!   next sequence number, starting at 0; its [`Ack`] carries it back. Acknowledgements
//!   may arrive in any order: the pipeline only advances over the acknowledged prefix.
//! - **Durability.** `Ok` in an [`Ack`] means the destination holds the record durably
//!   (for [`Sink::is_durable`] sinks): the pipeline then lets the slot release it.
//! - **Backpressure.** [`SendOutcome::Blocked`] means the sink's buffer is full: the
//!   pipeline stops reading WAL and offers the same record again after an
//!   acknowledgement arrived.
//! - **Checkpoints.** The sink stores checkpoint records (opaque key and value, written
//!   through [`Sink::send_checkpoint`], acknowledged like records) and reads back the
//!   last value of each key ([`Sink::read_checkpoints`]). What they mean is the
//!   pipeline's business.
//!
//! # Layout
//! - [`sink`]: the [`Sink`] trait, [`Ack`], [`SendOutcome`], [`EventMeta`] (with the
//!   commit LSN as an [`Lsn`], re-exported from `tailbox-pgoutput`).
//! - [`error`]: [`SinkError`], [`DeliveryError`], [`TransactionError`]: transient vs
//!   definite, whatever the destination.
//! - [`ack_channel`]: [`AckChannel`], acknowledgements from a sink's own task.
//! - [`dry_run`]: [`DryRunSink`], which logs what would be published and stores nothing.

pub mod ack_channel;
pub mod dry_run;
pub mod error;
pub mod sink;

pub use ack_channel::{AckChannel, AckSender};
pub use dry_run::DryRunSink;
pub use error::{DeliveryError, SinkError, TransactionError};
pub use sink::{
    Ack, CheckpointRecords, DEFAULT_CHECKPOINT_EVERY_RECORDS, EventMeta, RefusedRecord,
    SendOutcome, Sink,
};
/// WAL positions ([`EventMeta::commit_lsn`]).
pub use tailbox_pgoutput::Lsn;

//! The tailbox pipeline: replication → decode → outbox mapping → Kafka, and the
//! checkpoint that ties Kafka's acknowledgements back to the replication slot.
//!
//! ```text
//! PostgreSQL slot ─▶ tailbox-replication ─▶ tailbox-pgoutput ─▶ tailbox-outbox ─▶ tailbox-kafka-sink ─▶ Kafka
//!        ▲                                                                              │ acks
//!        └──────────── confirm(lsn) ◀── [THIS CRATE: checkpoint] ◀──────────────────────┘
//! ```
//!
//! # The guarantee, and where it is enforced
//! An LSN is confirmed to the slot only after Kafka acknowledged every record of every
//! transaction committed before it ([`checkpoint::AckTracker`]), and after the
//! checkpoint record for it is in Kafka too. After any crash PostgreSQL resends from
//! the last confirmed LSN: nothing is lost, order is kept, and at most the records
//! between that LSN and the crash are published twice.
//!
//! # Layout
//! - [`backfill`]: publish the rows already in the table, then stream on.
//! - [`settings`]: the validated [`PipelineSettings`].
//! - [`supervisor`]: startup checks, the slot-position check, restarts with backoff.
//! - [`session`]: one replication session's event loop.
//! - [`checkpoint`]: [`checkpoint::AckTracker`], the durable and confirmable LSNs.
//! - [`resume`]: whose checkpoint a record is, and how much of the WAL it may skip.
//! - [`metrics`]: [`metrics::PipelineMetrics`], counters and gauges for the exporters.
//! - [`shutdown`]: the shutdown signal.
//! - [`error`]: [`PipelineError`], transient vs definite; LSNs and xids in it are typed
//!   (`Lsn`, `u32`), and a delivery error names its record ([`RecordOrigin`]).

pub mod backfill;
pub mod checkpoint;
pub mod error;
pub mod metrics;
pub mod resume;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod supervisor;

pub use error::{PipelineError, RecordOrigin};
pub use metrics::PipelineMetrics;
pub use settings::PipelineSettings;
pub use shutdown::{Shutdown, ShutdownTrigger};

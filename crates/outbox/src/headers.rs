//! The header names tailbox writes, in one place: the mapper, the sinks, the pipeline's
//! dead-letter paths and backfill all use these.

/// Commit LSN of the record's transaction, `X/X`.
pub const LSN: &str = "lsn";
/// The record's transaction id.
pub const XID: &str = "xid";
/// Commit time, µs since the Unix epoch.
pub const COMMIT_TS: &str = "commit_ts";
/// The outbox row's event id column.
pub const ID: &str = "id";
/// The outbox row's event type column.
pub const TYPE: &str = "type";
/// Dead letters: why the record could not be published.
pub const ERROR: &str = "error";
/// Dead letters: the commit LSN of the transaction the event came from.
pub const SOURCE_LSN: &str = "source_lsn";
/// Dead letters: the outbox table, `schema.table`.
pub const SOURCE_TABLE: &str = "source_table";
/// Dead letters: the topic the record was meant for, when it had one.
pub const SOURCE_TOPIC: &str = "source_topic";
/// Backfilled records: `true`.
pub const BACKFILL: &str = "backfill";

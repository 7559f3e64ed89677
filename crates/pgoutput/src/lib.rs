//! Zero-copy decoder for PostgreSQL's `pgoutput` logical replication
//! messages, protocol version 1. This crate does no I/O.
//!
//! # Place in the data path
//!
//! ```text
//! replication stream ──► pgoutput decoder ──► outbox mapping ──► Kafka sink ──► checkpoint
//! (XLogData payloads)    (THIS CRATE)         (row → record)     (produce)      (confirm LSN)
//! ```
//!
//! The replication client strips the `'w'` XLogData header and hands the
//! remaining payload, as [`bytes::Bytes`], to [`Message::decode`]. The result
//! is a typed [`Message`]. Row images ([`TupleData`]) are validated once at
//! decode time but keep referring to the input buffer, so decoding an
//! `Insert` does not allocate; column values come out as [`bytes::Bytes`]
//! slices of the original payload.
//!
//! Malformed input (truncation, unknown tags, negative or oversized lengths,
//! missing NUL terminators, invalid UTF-8 in names, trailing bytes) yields a
//! [`DecodeError`]; decoding never panics and never allocates based on an
//! unchecked length field.
//!
//! Wire format reference:
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>
//!
//! # Layout
//!
//! - [`error`]: [`DecodeError`], what can be wrong with a message.
//! - [`lsn`]: [`Lsn`], a WAL position (a `u64` at run time) that prints and parses
//!   PostgreSQL's `X/X` text form.
//! - [`message`]: the [`Message`] enum, one struct per message kind, and the
//!   per-tag decoding.
//! - [`tuple`](mod@tuple): [`TupleData`] (a validated, borrowed row image) and its
//!   column iterator.
//! - `reader` (private): a bounds-checked big-endian cursor over [`bytes::Bytes`].
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use tailbox_pgoutput::{ColumnValue, Message};
//!
//! // 'I', relation 16390, 'N', 1 column: text "hi"
//! let payload = Bytes::from_static(b"I\x00\x00\x40\x06N\x00\x01t\x00\x00\x00\x02hi");
//! let Message::Insert(insert) = Message::decode(&payload)? else { unreachable!() };
//! assert_eq!(insert.relation_oid, 16390);
//! let values: Vec<_> = insert.new_tuple.columns().collect();
//! assert_eq!(values, [ColumnValue::Text(Bytes::from_static(b"hi"))]);
//! # Ok::<(), tailbox_pgoutput::DecodeError>(())
//! ```

pub mod error;
pub mod lsn;
pub mod message;
mod reader;
pub mod tuple;

pub use error::DecodeError;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01), from which
/// pgoutput's commit times and the replication protocol's clocks count.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
pub use lsn::{Lsn, ParseLsnError};
pub use message::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, MessageKind, OldTuple, Origin,
    Relation, RelationColumn, Truncate, TypeMessage, Update,
};
pub use tuple::{ColumnSpans, ColumnValue, TupleColumns, TupleData};

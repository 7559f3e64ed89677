//! The record the mapper fills: one Kafka record, reused from event to event so the hot
//! path does not allocate.

use std::sync::Arc;

use bytes::Bytes;

/// A Kafka record made from one outbox row. Values are zero-copy slices of the
/// replication message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Destination topic (shared with the mapper's topic cache).
    pub topic: Arc<str>,
    /// Record key: the aggregate id.
    pub key: Bytes,
    /// Record value: the payload as PostgreSQL printed it (jsonb text, …).
    pub value: Bytes,
    /// Headers from the row's other columns; names are shared with the relation layout.
    pub headers: Vec<(Arc<str>, Bytes)>,
}

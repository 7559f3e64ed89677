//! The record the mapper fills: one Kafka record, reused from event to event so the hot
//! path does not allocate.

use std::sync::Arc;

use bytes::Bytes;

use crate::headers::MetaHeaders;

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
    /// Which per-transaction headers (`lsn`, `xid`, `commit_ts`, `ce_time`) the sink
    /// adds, when it is given the transaction's facts.
    pub meta: MetaHeaders,
}

impl OutboxRecord {
    /// Drops the key, value and header values (keeping the header list's capacity).
    ///
    /// They are slices of the replication read buffer: once the record is handed to
    /// Kafka (which copies it), holding them would keep that buffer from being reused
    /// and make the next socket read allocate a fresh one.
    pub fn release(&mut self) {
        self.key = Bytes::new();
        self.value = Bytes::new();
        self.headers.clear();
    }
}

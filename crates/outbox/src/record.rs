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
    /// Drops the key, value and header values, keeping the header names (for the next
    /// record of the same shape, see [`HeaderSlots`]).
    ///
    /// The values are slices of the replication read buffer: once the record is handed
    /// to Kafka (which copies it), holding them would keep that buffer from being reused
    /// and make the next socket read allocate a fresh one.
    pub fn release(&mut self) {
        self.key = Bytes::new();
        self.value = Bytes::new();
        for (_, value) in &mut self.headers {
            *value = Bytes::new();
        }
    }
}

/// Writes a record's headers over those of the record before it, in order.
///
/// Rows of one table carry the same header names in the same order, so a name that is
/// the very `Arc` already in its place stays: no reference count is taken, and later
/// dropped, per header and record (atomic operations that were a tenth of the mapper's
/// time). Whatever the previous record had beyond the last header written is cut off
/// when the writer is dropped, on an early return too.
pub(crate) struct HeaderSlots<'r> {
    headers: &'r mut Vec<(Arc<str>, Bytes)>,
    len: usize,
}

impl<'r> HeaderSlots<'r> {
    /// Starts writing `headers` from the first.
    pub(crate) fn new(headers: &'r mut Vec<(Arc<str>, Bytes)>) -> Self {
        Self { headers, len: 0 }
    }

    /// The next header.
    pub(crate) fn push(&mut self, name: &Arc<str>, value: Bytes) {
        match self.headers.get_mut(self.len) {
            Some(slot) => {
                if !Arc::ptr_eq(&slot.0, name) {
                    slot.0 = Arc::clone(name);
                }
                slot.1 = value;
            }
            None => self.headers.push((Arc::clone(name), value)),
        }
        self.len += 1;
    }
}

impl Drop for HeaderSlots<'_> {
    fn drop(&mut self) {
        self.headers.truncate(self.len);
    }
}

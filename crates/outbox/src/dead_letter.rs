//! Dead-letter records, built in one place: whatever refused an event (the mapper, the
//! destination before or after enqueueing it), its dead-letter record is the original's
//! key, value and headers, sent to the dead-letter topic, plus why and where from.

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    headers::{self, MetaHeaders},
    record::OutboxRecord,
};

/// Why an event is dead-lettered, and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterReason<'a> {
    /// The error, for header [`headers::ERROR`].
    pub error: &'a str,
    /// The commit LSN of its transaction, `X/X` (header [`headers::SOURCE_LSN`]).
    pub source_lsn: &'a str,
    /// The outbox table (header [`headers::SOURCE_TABLE`]).
    pub source_table: &'a str,
}

/// Turns `record` into its dead-letter record on `dlq_topic`: the topic it was meant for
/// (if any, and not the dead-letter topic already) goes to [`headers::SOURCE_TOPIC`],
/// then the reason headers are added. Key, value and headers are kept.
pub fn mark(record: &mut OutboxRecord, dlq_topic: &Arc<str>, why: DeadLetterReason<'_>) {
    if !record.topic.is_empty() && !Arc::ptr_eq(&record.topic, dlq_topic) {
        let topic = Bytes::copy_from_slice(record.topic.as_bytes());
        record.headers.push((Arc::from(headers::SOURCE_TOPIC), topic));
    }
    record.topic = Arc::clone(dlq_topic);
    // Dead letters always say where they came from, whatever the table's choice.
    record.meta = MetaHeaders::default();
    let reason = [
        (headers::ERROR, why.error),
        (headers::SOURCE_LSN, why.source_lsn),
        (headers::SOURCE_TABLE, why.source_table),
    ];
    for (name, value) in reason {
        record.headers.push((Arc::from(name), Bytes::copy_from_slice(value.as_bytes())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_original_and_says_why_and_where_from() {
        let dlq: Arc<str> = Arc::from("outbox.dlq");
        let mut record = OutboxRecord {
            topic: Arc::from("outbox.event.Order"),
            key: Bytes::from_static(b"o-1"),
            value: Bytes::from_static(b"{}"),
            headers: vec![(Arc::from("id"), Bytes::from_static(b"7"))],
            meta: MetaHeaders::NONE,
        };
        let why = DeadLetterReason {
            error: "too large",
            source_lsn: "0/10",
            source_table: "public.outbox",
        };
        mark(&mut record, &dlq, why);
        assert!(Arc::ptr_eq(&record.topic, &dlq));
        assert_eq!(record.key, Bytes::from_static(b"o-1"));
        let names: Vec<&str> = record.headers.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["id", "source_topic", "error", "source_lsn", "source_table"]);
        // Already on the dead-letter topic (the mapper put it there): no source_topic.
        let mut again = OutboxRecord { topic: Arc::clone(&dlq), ..OutboxRecord::default() };
        mark(&mut again, &dlq, why);
        assert_eq!(again.headers.len(), 3);
    }
}

//! Live counters and gauges of the pipeline, shared (behind an `Arc`) with whatever
//! exports them (`/metrics`, `/readyz`, the status JSON, the progress line).
//!
//! Updated on the pipeline's own thread with relaxed atomics; per-topic counters take a
//! short uncontended lock once per acknowledged batch, never per event.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering},
    },
};

/// Error kinds counted in `tailbox_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// PostgreSQL connection or replication stream failed (transient).
    Postgres,
    /// Kafka unavailable or a delivery failed (transient).
    Kafka,
    /// A row that cannot become a record (dead-lettered).
    Mapping,
    /// A record Kafka refused for good (dead-lettered).
    Refused,
    /// A definite error that stopped tailbox.
    Fatal,
}

impl ErrorKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Postgres => "postgres",
            ErrorKind::Kafka => "kafka",
            ErrorKind::Mapping => "mapping",
            ErrorKind::Refused => "refused",
            ErrorKind::Fatal => "fatal",
        }
    }

    const ALL: [ErrorKind; 5] = [
        ErrorKind::Postgres,
        ErrorKind::Kafka,
        ErrorKind::Mapping,
        ErrorKind::Refused,
        ErrorKind::Fatal,
    ];
}

/// Published events and bytes of one topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicCounts {
    /// Records acknowledged.
    pub events: u64,
    /// Key + value bytes acknowledged.
    pub bytes: u64,
}

impl TopicCounts {
    fn add(&mut self, other: TopicCounts) {
        self.events += other.events;
        self.bytes += other.bytes;
    }
}

/// A session's own count of records per topic between two metrics updates. The last
/// topic's count is kept aside, found by pointer: most records go where the last one
/// went, and then counting one hashes nothing.
#[derive(Debug, Default)]
pub(crate) struct TopicTally {
    last: Option<(Arc<str>, TopicCounts)>,
    others: HashMap<Arc<str>, TopicCounts>,
}

impl TopicTally {
    /// Counts one record of `bytes` for `topic`.
    pub(crate) fn add(&mut self, topic: &Arc<str>, bytes: u64) {
        let one = TopicCounts { events: 1, bytes };
        match &mut self.last {
            Some((last, counts)) if Arc::ptr_eq(last, topic) => counts.add(one),
            last => {
                if let Some((previous, counts)) = last.replace((Arc::clone(topic), one)) {
                    self.others.entry(previous).or_default().add(counts);
                }
            }
        }
    }

    /// Everything counted since the last call, by topic.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = (Arc<str>, TopicCounts)> + '_ {
        if let Some((topic, counts)) = self.last.take() {
            self.others.entry(topic).or_default().add(counts);
        }
        self.others.drain()
    }
}

/// The pipeline's metrics.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    topics: Mutex<BTreeMap<String, TopicCounts>>,
    errors: [AtomicU64; 5],
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Commit time (µs since the Unix epoch) of the newest transaction whose records
    /// are all acknowledged; 0 before the first.
    pub last_acked_commit_us: AtomicI64,
    /// Commit time (µs since the Unix epoch) of the newest transaction read.
    pub last_read_commit_us: AtomicI64,
    /// The LSN last confirmed to the slot.
    pub confirmed_lsn: AtomicU64,
    /// The last WAL position the server reported sending.
    pub server_wal_end: AtomicU64,
    /// Records awaiting acknowledgement.
    pub in_flight: AtomicU64,
    /// Sessions started after a failure.
    pub reconnects: AtomicU64,
    /// A session is streaming.
    pub streaming: AtomicBool,
    /// The last acknowledgement or checkpoint write succeeded and is recent.
    pub kafka_ok: AtomicBool,
    /// The webhook sink's circuit breaker ([`tailbox_webhook_sink::BreakerState`] as a
    /// number: 0 closed, 1 half-open, 2 open); 0 with other sinks.
    pub webhook_breaker: Arc<AtomicU8>,
    last_error: Mutex<Option<String>>,
}

impl PipelineMetrics {
    /// Counts an error of `kind` and remembers its message as the last error.
    pub fn record_error(&self, kind: ErrorKind, message: &str) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.to_owned());
        }
    }

    /// Errors by kind.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str(), self.errors[*k as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// The message of the last error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }

    /// Adds acknowledged records of `topic`.
    pub fn add_published(&self, topic: &str, events: u64, bytes: u64) {
        if let Ok(mut topics) = self.topics.lock() {
            let counts = match topics.get_mut(topic) {
                Some(counts) => counts,
                None => topics.entry(topic.to_owned()).or_default(),
            };
            counts.events += events;
            counts.bytes += bytes;
        }
    }

    /// Published counts by topic.
    pub fn published_by_topic(&self) -> BTreeMap<String, TopicCounts> {
        self.topics.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Total published records.
    pub fn published_total(&self) -> u64 {
        self.published_by_topic().values().map(|c| c.events).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_every_topic_whatever_the_order() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut tally = TopicTally::default();
        for (topic, bytes) in [(&a, 1), (&a, 2), (&b, 10), (&a, 4), (&b, 20)] {
            tally.add(topic, bytes);
        }
        let mut counts: Vec<(String, TopicCounts)> =
            tally.take().map(|(t, c)| (t.to_string(), c)).collect();
        counts.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            counts,
            [
                ("a".to_owned(), TopicCounts { events: 3, bytes: 7 }),
                ("b".to_owned(), TopicCounts { events: 2, bytes: 30 }),
            ]
        );
        assert_eq!(tally.take().count(), 0, "taken once");
    }
}

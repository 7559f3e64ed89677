//! Reading records back from Kafka.

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use tailbox_pgoutput::Lsn;
use tokio::time::Instant;

use tailbox_pg_support::unique_name;

/// One record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// In record order; a header with a null value has an empty value here.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch, if the record has a timestamp.
    pub timestamp_ms: Option<i64>,
}

impl ConsumedRecord {
    /// The `lsn` header (the transaction's commit LSN), if it is one.
    pub fn lsn(&self) -> Option<Lsn> {
        std::str::from_utf8(self.header("lsn")?).ok()?.parse().ok()
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    /// The payload as UTF-8 (lossy), or "" without a payload.
    pub fn payload_str(&self) -> String {
        self.payload.as_deref().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default()
    }

    /// The key as UTF-8 (lossy), or "" without a key.
    pub fn key_str(&self) -> String {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
    }
}

/// What to subscribe to.
#[derive(Debug, Clone, Copy)]
pub enum Subscription<'a> {
    /// These topics; they may not exist yet.
    Topics(&'a [String]),
    /// Every topic matching this regex (librdkafka syntax; must start with `^`),
    /// including topics created after the subscription.
    Pattern(&'a str),
}

/// When [`consume`] stops.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeOptions {
    /// How many records are awaited.
    pub expected: usize,
    /// Give up (and return what came) after this long in all.
    pub timeout: Duration,
    /// Once `expected` records came, keep reading until no record came for this
    /// long, so that extra records (duplicates) show up in the result.
    pub quiet: Duration,
}

/// The `quiet` of [`consume_all`] and [`consume_pattern`].
pub const DEFAULT_QUIET: Duration = Duration::from_secs(2);

/// How long after the quiet spell [`consume`] goes on reading while a partition still
/// holds records it has not read (e.g. fetches slowed by a loaded machine).
const UNREAD_GRACE: Duration = Duration::from_secs(20);

/// Reads `topics` from the beginning (a fresh consumer group, read_committed)
/// until `expected` records came and then none for [`DEFAULT_QUIET`], or until
/// `timeout`. Returns the records in the order received (ordered per partition,
/// not across partitions). Returns `Ok` with fewer records on timeout: assert
/// on the length.
pub async fn consume_all(
    bootstrap: &str,
    topics: &[String],
    expected: usize,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>> {
    let opts = ConsumeOptions { expected, timeout, quiet: DEFAULT_QUIET };
    consume(bootstrap, Subscription::Topics(topics), opts).await
}

/// [`consume_all`] over every topic matching `regex` (e.g. `^outbox\.event\..*`),
/// including topics created while it runs (seen within about a second).
pub async fn consume_pattern(
    bootstrap: &str,
    regex: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>> {
    let opts = ConsumeOptions { expected, timeout, quiet: DEFAULT_QUIET };
    consume(bootstrap, Subscription::Pattern(regex), opts).await
}

/// The general form of [`consume_all`]. With `expected: 0` it reads for `quiet`
/// (from the start), which suits asserting that nothing arrives, though the
/// first second or so goes to joining the group.
pub async fn consume(
    bootstrap: &str,
    subscription: Subscription<'_>,
    opts: ConsumeOptions,
) -> Result<Vec<ConsumedRecord>> {
    let group = unique_name("tailbox_test_group");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("allow.auto.create.topics", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .context("creating a Kafka consumer")?;
    match subscription {
        Subscription::Topics(topics) => {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics).with_context(|| format!("subscribing to {topics:?}"))?;
        }
        Subscription::Pattern(regex) => {
            let pattern =
                if regex.starts_with('^') { regex.to_owned() } else { format!("^{regex}") };
            consumer.subscribe(&[&pattern]).with_context(|| format!("subscribing to {pattern}"))?;
        }
    }

    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut last_record = start;
    let mut records = Vec::new();
    // A rebalance (a topic matching the pattern appears, the group's assignment changes)
    // hands partitions back from the start, as no offsets are committed: the same
    // record (topic, partition, offset) is then delivered again. That is the reader's
    // repetition, not a duplicate tailbox published, which has an offset of its own.
    let mut seen_offsets: std::collections::HashSet<(String, i32, i64)> =
        std::collections::HashSet::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let until = if records.len() >= opts.expected {
            let quiet_end = last_record + opts.quiet;
            // Enough records and a quiet spell are not proof that everything was read:
            // duplicates count towards `expected`, and a rebalance or a slow fetch can
            // be quieter than `quiet` while a partition still holds unread records.
            if now >= quiet_end {
                if read_to_the_end(&consumer) {
                    break;
                }
                if now >= quiet_end + UNREAD_GRACE {
                    eprintln!(
                        "tailbox-e2e: reader stops with partitions not read to their end ({} records)",
                        records.len()
                    );
                    break;
                }
                (now + Duration::from_millis(500)).min(deadline)
            } else {
                quiet_end.min(deadline)
            }
        } else {
            deadline
        };
        let msg = match tokio::time::timeout_at(until, consumer.recv()).await {
            Err(_elapsed) => continue,
            Ok(Ok(msg)) => msg,
            Ok(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::PartitionEOF,
            ))) => continue,
            Ok(Err(e)) => {
                eprintln!("tailbox-e2e: consumer error (continuing): {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A record read again is activity too: a rebalance re-reading thousands of
        // records must not pass for a quiet spell.
        last_record = Instant::now();
        if !seen_offsets.insert((msg.topic().to_owned(), msg.partition(), msg.offset())) {
            continue;
        }
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(ConsumedRecord {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: msg.timestamp().to_millis(),
        });
    }
    Ok(records)
}

/// Whether `consumer` has read every partition the group assigned it up to the end
/// that was there when asked (with `read_committed`, librdkafka answers the last stable
/// offset, so records of an open transaction are not waited for).
fn read_to_the_end(consumer: &StreamConsumer) -> bool {
    const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
    let (Ok(assignment), Ok(positions)) = (consumer.assignment(), consumer.position()) else {
        return false;
    };
    assignment.elements().iter().all(|e| {
        let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), QUERY_TIMEOUT)
        else {
            return false;
        };
        match positions.find_partition(e.topic(), e.partition()).map(|p| p.offset()) {
            Some(rdkafka::Offset::Offset(position)) => position >= high,
            _ => low >= high,
        }
    })
}

//! The checkpoint topic: a compacted Kafka topic holding, per slot, the last LSN whose
//! events are all in Kafka.
//!
//! Why it exists: the slot's `confirmed_flush_lsn` alone cannot tell us whether the slot
//! is still the one we published from. A dropped-and-recreated slot starts at its
//! creation point, silently skipping everything in between. We write the checkpoint
//! *before* confirming the same LSN to the slot, so at any moment
//! `checkpoint >= confirmed_flush_lsn` for a healthy slot. On startup, a slot that
//! stands *ahead* of the checkpoint has moved without us, and tailbox refuses to run.

use std::time::Duration;

use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
    types::RDKafkaErrorCode,
};
use tailbox_pgoutput::{format_lsn, parse_lsn};

use crate::{config::SinkConfig, error::SinkError};

/// How long one metadata or fetch round trip may take before we call Kafka unavailable.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpoint record of one slot in one topic.
#[derive(Debug, Clone)]
pub struct CheckpointTopic {
    topic: String,
    slot: String,
}

impl CheckpointTopic {
    /// The checkpoint of `slot` in `topic`.
    pub fn new(topic: impl Into<String>, slot: impl Into<String>) -> Self {
        Self { topic: topic.into(), slot: slot.into() }
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The record key: the slot name.
    pub fn key(&self) -> &[u8] {
        self.slot.as_bytes()
    }

    /// The record value for `lsn`.
    pub fn encode(&self, lsn: u64) -> Vec<u8> {
        serde_json::json!({ "slot": self.slot, "lsn": format_lsn(lsn) }).to_string().into_bytes()
    }

    fn decode(value: &[u8]) -> Option<u64> {
        let value: serde_json::Value = serde_json::from_slice(value).ok()?;
        parse_lsn(value.get("lsn")?.as_str()?)
    }

    /// Creates the topic if it is missing (compacted, one partition) and returns the last
    /// checkpoint written for this slot, if any.
    pub async fn ensure_and_read(&self, config: &SinkConfig) -> Result<Option<u64>, SinkError> {
        self.ensure_topic(config).await?;
        let (this, config) = (self.clone(), config.clone());
        // The consumer API blocks; keep it off the pipeline's thread.
        tokio::task::spawn_blocking(move || this.read_last(&config)).await.unwrap_or_else(|join| {
            Err(SinkError::Transient {
                context: format!("checkpoint reader task failed: {join}"),
                source: KafkaError::Canceled,
            })
        })
    }

    async fn ensure_topic(&self, config: &SinkConfig) -> Result<(), SinkError> {
        let admin: AdminClient<DefaultClientContext> =
            config.shared_client_config().create().map_err(SinkError::Config)?;
        let topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(ROUND_TRIP_TIMEOUT));
        let results = admin.create_topics([&topic], &options).await.map_err(|source| {
            SinkError::Transient { context: "creating the checkpoint topic".into(), source }
        })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(SinkError::Transient {
                        context: format!("creating checkpoint topic {name}"),
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
        Ok(())
    }

    fn read_last(&self, config: &SinkConfig) -> Result<Option<u64>, SinkError> {
        let transient = |context: &str| {
            let context = context.to_owned();
            move |source| SinkError::Transient { context, source }
        };
        let consumer: BaseConsumer<ReaderContext> = config
            .shared_client_config()
            .set("group.id", "tailbox-checkpoint-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // At the end of the partition the broker would hold the fetch for 500 ms
            // (the default) before answering "no more": startup would wait for it.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(ReaderContext)
            .map_err(SinkError::Config)?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, ROUND_TRIP_TIMEOUT)
            .map_err(transient("reading the checkpoint topic's offsets"))?;
        if high <= low {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, 0, Offset::Offset(low))
            .map_err(transient("assigning the checkpoint topic"))?;
        consumer.assign(&assignment).map_err(transient("assigning the checkpoint topic"))?;
        let mut last = None;
        let deadline = std::time::Instant::now() + ROUND_TRIP_TIMEOUT * 3;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(SinkError::Transient {
                    context: "reading the checkpoint topic timed out".into(),
                    source: KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
                });
            }
            // Read to the end of the partition (for read_committed: the last stable
            // offset). With exactly-once the log ends in transaction markers, which are
            // never delivered, so the end is signalled, not inferred from offsets.
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
                Some(Err(err)) => return Err(transient("reading the checkpoint topic")(err)),
                Some(Ok(message)) => {
                    if message.key() == Some(self.key()) {
                        last = message.payload().and_then(Self::decode).or(last);
                    }
                    // The last record before the high watermark read at the start: done.
                    // (After a Kafka transaction the last offset is a commit marker,
                    // which is never delivered; then the end-of-partition event ends it.)
                    if message.offset() + 1 >= high {
                        return Ok(last);
                    }
                }
            }
        }
    }
}

/// The checkpoint reader's librdkafka callbacks: logs through `tracing` like the
/// producer's, and the end-of-partition event it asks for is not an error.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::sink::log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::debug!("checkpoint topic read to its end: {reason}");
        } else {
            tracing::warn!(error = %error, "Kafka client error (checkpoint reader): {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips() {
        let cp = CheckpointTopic::new("tailbox.checkpoints", "slot_a");
        assert_eq!(CheckpointTopic::decode(&cp.encode(0x1_0000_00A0)), Some(0x1_0000_00A0));
        assert_eq!(CheckpointTopic::decode(b"garbage"), None);
    }
}

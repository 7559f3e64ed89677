//! The checkpoint topic: a compacted Kafka topic holding, per key, the last checkpoint
//! record written under it.
//!
//! This module stores and reads records; what a key and a value mean (whose checkpoint,
//! which LSN on which timeline) and when a record may be trusted is the pipeline's
//! business (`tailbox_pipeline::resume`). The pipeline writes a checkpoint *before*
//! confirming the same LSN to the slot, so for a healthy slot the checkpoint is never
//! behind `confirmed_flush_lsn`.

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

use tailbox_sink::{CheckpointRecords, SinkError};

use crate::{
    config::SinkConfig,
    error::{config_error, transient},
};

/// How long one metadata or fetch round trip may take before we call Kafka unavailable.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpoint topic.
#[derive(Debug, Clone)]
pub struct CheckpointTopic {
    topic: String,
}

impl CheckpointTopic {
    /// The checkpoint topic `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self { topic: topic.into() }
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the topic if it is missing (compacted, one partition) and returns the last
    /// record of each key (as compaction would leave them).
    pub async fn ensure_and_read(
        &self,
        config: &SinkConfig,
    ) -> Result<CheckpointRecords, SinkError> {
        self.ensure_topic(config).await?;
        self.read(config).await
    }

    /// The last record of each key, without creating the topic (for `tailbox status`).
    pub async fn read(&self, config: &SinkConfig) -> Result<CheckpointRecords, SinkError> {
        let (this, config) = (self.clone(), config.clone());
        // The consumer API blocks; keep it off the pipeline's thread.
        tokio::task::spawn_blocking(move || this.read_last(&config)).await.unwrap_or_else(|join| {
            Err(transient(format!("checkpoint reader task failed: {join}"), KafkaError::Canceled))
        })
    }

    async fn ensure_topic(&self, config: &SinkConfig) -> Result<(), SinkError> {
        let admin: AdminClient<DefaultClientContext> =
            config.shared_client_config().create().map_err(config_error)?;
        let topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(ROUND_TRIP_TIMEOUT));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .map_err(|source| transient("creating the checkpoint topic", source))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                // A principal that may not create topics: the broker answers so even
                // for a topic that exists; reading it tells.
                Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))
                | Err((_, RDKafkaErrorCode::ClusterAuthorizationFailed)) => {}
                Err((name, code)) => {
                    return Err(transient(
                        format!("creating checkpoint topic {name}"),
                        KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        Ok(())
    }

    fn read_last(&self, config: &SinkConfig) -> Result<CheckpointRecords, SinkError> {
        let failed = |context: &'static str| move |source| transient(context, source);
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
            .map_err(config_error)?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, ROUND_TRIP_TIMEOUT)
            .map_err(failed("reading the checkpoint topic's offsets"))?;
        let mut last = CheckpointRecords::new();
        if high <= low {
            return Ok(last);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, 0, Offset::Offset(low))
            .map_err(failed("assigning the checkpoint topic"))?;
        consumer.assign(&assignment).map_err(failed("assigning the checkpoint topic"))?;
        let deadline = std::time::Instant::now() + ROUND_TRIP_TIMEOUT * 3;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(transient(
                    "reading the checkpoint topic timed out",
                    KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
                ));
            }
            // Read to the end of the partition (for read_committed: the last stable
            // offset). With exactly-once the log ends in transaction markers, which are
            // never delivered, so the end is signalled, not inferred from offsets.
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
                Some(Err(err)) => return Err(transient("reading the checkpoint topic", err)),
                Some(Ok(message)) => {
                    if let Some(key) = message.key() {
                        // A tombstone (no value) deletes the key, as compaction does.
                        match message.payload() {
                            Some(value) => last.insert(key.to_vec(), value.to_vec()),
                            None => last.remove(key),
                        };
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

//! Everything a pipeline run needs to know, already validated.

use std::time::Duration;

use tailbox_kafka_sink::SinkConfig;
use tailbox_outbox::OutboxConfig;
use tailbox_replication::PgConnectionConfig;

/// Settings of one tailbox pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// PostgreSQL connection.
    pub pg: PgConnectionConfig,
    /// Logical replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
    /// The outbox table and mapping.
    pub outbox: OutboxConfig,
    /// Kafka producer.
    pub kafka: SinkConfig,
    /// Compacted topic holding each slot's last published LSN.
    pub checkpoint_topic: String,
    /// How often the checkpoint is written and the slot confirmed (at most).
    pub status_interval: Duration,
    /// Records in flight before we stop reading WAL.
    pub max_in_flight: u64,
    /// How long a clean shutdown waits for in-flight acknowledgements.
    pub shutdown_timeout: Duration,
    /// Start even if the slot stands ahead of our checkpoint (after a deliberate
    /// slot recreation and backfill).
    pub accept_slot_position: bool,
    /// First delay before reconnecting after a transient error.
    pub backoff_initial: Duration,
    /// Longest delay between reconnects.
    pub backoff_max: Duration,
}

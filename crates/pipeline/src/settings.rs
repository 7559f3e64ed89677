//! Everything a pipeline run needs to know, already validated.

use std::{sync::Arc, time::Duration};

use tailbox_kafka_sink::SinkConfig;
use tailbox_outbox::{OutboxConfig, TableMapping};
use tailbox_redis_sink::RedisSinkConfig;
use tailbox_replication::{OutboxTableSpec, PgConnectionConfig, RequiredColumn};
use tailbox_webhook_sink::WebhookSinkConfig;

use crate::metrics::PipelineMetrics;

/// Settings of one tailbox pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// PostgreSQL connection.
    pub pg: PgConnectionConfig,
    /// Logical replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
    /// The outbox table and mapping (the first table; table-less envelopes use its
    /// topic template and headers).
    pub outbox: OutboxConfig,
    /// More outbox tables of the same publication, each with its own mapping.
    pub more_tables: Vec<OutboxConfig>,
    /// Map every other table of the publication with this mapping (its `table` is
    /// ignored); `None`: other tables are not outbox tables.
    pub all_tables: Option<TableMapping>,
    /// Where records go.
    pub destination: Destination,
    /// Where checkpoint records go: the compacted Kafka topic, or the Redis hash.
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
    /// Start even though our checkpoint lies beyond the WAL this server shares with it
    /// (after a restore or promotion, once the operator dealt with the orphaned events).
    pub accept_checkpoint_divergence: bool,
    /// First delay before reconnecting after a transient error.
    pub backoff_initial: Duration,
    /// Longest delay between reconnects.
    pub backoff_max: Duration,
    /// Prefix of `pg_logical_emit_message` messages that carry table-less outbox events.
    pub message_prefix: String,
    /// Topic for rows that cannot be published (poison events).
    pub dlq_topic: String,
    /// Publish in Kafka transactions, confirming the slot only after each commit, and
    /// skip on restart what the checkpoint says is committed.
    pub exactly_once: bool,
    /// Exactly-once `transactional.id`; `None`: derived from the checkpoint's owner
    /// (system identifier, slot, database).
    pub transactional_id: Option<String>,
    /// Decode and log what would be published; publish nothing, never confirm the slot.
    pub dry_run: bool,
    /// Emit a heartbeat this often so a quiet database's slot keeps advancing.
    pub heartbeat_interval: Option<Duration>,
    /// The heartbeat statement (default: a non-transactional
    /// `pg_logical_emit_message`).
    pub heartbeat_sql: Option<String>,
    /// Live metrics, shared with the exporters.
    pub metrics: Arc<PipelineMetrics>,
}

impl PipelineSettings {
    /// What the startup checks look for in the outbox table.
    pub fn table_spec(&self) -> OutboxTableSpec {
        table_spec(&self.outbox)
    }

    /// The mapper for every configured table (and the catch-all).
    pub fn mapper(&self) -> tailbox_outbox::OutboxMapper {
        let tables = std::iter::once(&self.outbox).chain(&self.more_tables).cloned().collect();
        tailbox_outbox::OutboxMapper::with_tables(tables, self.all_tables.clone())
    }
}

/// What the startup checks look for in one outbox table: the columns its mapping
/// reads, each with the field that names it.
pub fn table_spec(outbox: &OutboxConfig) -> OutboxTableSpec {
    OutboxTableSpec {
        schema: outbox.schema.clone(),
        table: outbox.table.clone(),
        required_columns: outbox
            .required()
            .into_iter()
            .map(|c| RequiredColumn { name: c.name, field: c.field.to_owned(), json: c.json })
            .collect(),
    }
}

/// The sink records go to, with its settings.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Kafka (the default).
    Kafka(SinkConfig),
    /// Redis Streams.
    Redis(Box<RedisSinkConfig>),
    /// HTTP webhooks (checkpoints and dead letters in PostgreSQL tables).
    Webhook(Box<WebhookSinkConfig>),
}

/// The default heartbeat: a non-transactional logical message. It writes WAL in this
/// database (so the walsender has something to send and the slot can advance) without
/// touching any table.
pub const DEFAULT_HEARTBEAT_SQL: &str =
    "SELECT pg_logical_emit_message(false, 'tailbox.heartbeat', now()::text)";

//! Command-line definition. Every option can also come from the environment variable
//! named beside it (`TAILBOX_*`); a flag wins over the environment.

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

/// Publishes transactional-outbox events from PostgreSQL to Kafka by tailing the WAL.
#[derive(Debug, Parser)]
#[command(name = "tailbox", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "TAILBOX_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream outbox events to Kafka until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
}

/// Options of `tailbox run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// PostgreSQL URL, e.g. postgres://tailbox:secret@db:5432/app (the role needs
    /// LOGIN REPLICATION and SELECT on the outbox table).
    #[arg(long, env = "TAILBOX_PG_URL", hide_env_values = true)]
    pub pg_url: String,
    /// Logical replication slot (plugin pgoutput), created by sql/03_slot.sql.
    #[arg(long, env = "TAILBOX_SLOT", default_value = "tailbox")]
    pub slot: String,
    /// Publication carrying the outbox table, created by sql/02_publication.sql.
    #[arg(long, env = "TAILBOX_PUBLICATION", default_value = "tailbox")]
    pub publication: String,
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "TAILBOX_KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Any librdkafka producer property, KEY=VALUE; repeatable (env: comma-separated).
    #[arg(long = "kafka-prop", env = "TAILBOX_KAFKA_PROPS", value_delimiter = ',')]
    pub kafka_props: Vec<String>,
    /// The outbox table, SCHEMA.TABLE.
    #[arg(long, env = "TAILBOX_OUTBOX_TABLE", default_value = "public.outbox")]
    pub outbox_table: String,
    /// Topic for each event; {aggregatetype} is replaced by the row's aggregate type.
    #[arg(long, env = "TAILBOX_TOPIC_TEMPLATE", default_value = "outbox.event.{aggregatetype}")]
    pub topic_template: String,
    /// Column holding the event id (header `id`).
    #[arg(long, env = "TAILBOX_COLUMN_ID", default_value = "id")]
    pub column_id: String,
    /// Column holding the aggregate type (the topic).
    #[arg(long, env = "TAILBOX_COLUMN_AGGREGATE_TYPE", default_value = "aggregatetype")]
    pub column_aggregate_type: String,
    /// Column holding the aggregate id (the record key).
    #[arg(long, env = "TAILBOX_COLUMN_AGGREGATE_ID", default_value = "aggregateid")]
    pub column_aggregate_id: String,
    /// Column holding the event type (header `type`).
    #[arg(long, env = "TAILBOX_COLUMN_TYPE", default_value = "type")]
    pub column_type: String,
    /// Column holding the payload (the record value).
    #[arg(long, env = "TAILBOX_COLUMN_PAYLOAD", default_value = "payload")]
    pub column_payload: String,
    /// Compacted topic where tailbox keeps each slot's last published LSN.
    #[arg(long, env = "TAILBOX_CHECKPOINT_TOPIC", default_value = "tailbox.checkpoints")]
    pub checkpoint_topic: String,
    /// How often (ms) the checkpoint is written and the slot confirmed, at most.
    #[arg(long, env = "TAILBOX_STATUS_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub status_interval_ms: u64,
    /// Records awaiting Kafka's acknowledgement before tailbox stops reading WAL.
    #[arg(long, env = "TAILBOX_MAX_IN_FLIGHT", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_in_flight: u64,
    /// Seconds a clean shutdown waits for in-flight acknowledgements.
    #[arg(long, env = "TAILBOX_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// Start even though the slot stands ahead of tailbox's checkpoint (only after a
    /// deliberate slot recreation and a backfill).
    #[arg(long, env = "TAILBOX_ACCEPT_SLOT_POSITION")]
    pub accept_slot_position: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

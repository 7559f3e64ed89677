//! Command-line definition. Every option can also come from the environment variable
//! named beside it (`TAILBOX_*`) and from the TOML file given with `--config` (key =
//! the option's name with `_`): a flag wins over the environment, the environment over
//! the file, the file over the default. Values are read as text here and checked in
//! [`crate::config`], so every invalid value, wherever it came from, gets the same
//! one-line message naming it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Publishes transactional-outbox events from PostgreSQL to Kafka by tailing the WAL.
#[derive(Debug, Parser)]
#[command(name = "tailbox", version)]
pub struct Cli {
    /// Log format: text or json [default: text].
    #[arg(long, env = "TAILBOX_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// TOML configuration file; keys are the option names with '_' (pg_url, slot,
    /// kafka_brokers, kafka_props = { "linger.ms" = "10" }, …).
    #[arg(long, env = "TAILBOX_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream outbox events to Kafka until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Create the slot with an exported snapshot, publish the rows already in the outbox
    /// table as of that snapshot, then stream on (no gap, no duplicate at the boundary).
    Backfill(Box<BackfillArgs>),
    /// Delete outbox rows older than an age, in batches (for users who keep rows; the
    /// publication carries inserts only, so this never affects publishing).
    Cleanup(CleanupArgs),
    /// Show the slot and publication (LSNs, retained WAL, lag, holder), the server's
    /// identity and, with Kafka settings, whether the checkpoint is this server's.
    Status(Box<StatusArgs>),
    /// Create the publication and the slot unless they exist (sql/02 and sql/03).
    Setup(SetupArgs),
    /// Drop the slot and the publication if they exist (sql/99_teardown.sql).
    Teardown(PgArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The webhook sink's dead letters (table tailbox_dead_letter).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
}

/// `tailbox dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters not replayed yet (or those named with --id), oldest first.
    List(Box<DeadLettersArgs>),
    /// POST dead letters again (same body and webhook-id, fresh signature), one attempt
    /// each; a 2xx marks the row replayed.
    Replay(Box<DeadLettersArgs>),
}

/// Options of `tailbox dead-letters list|replay`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Only this dead letter (repeatable) [default: every one not replayed yet].
    #[arg(long = "id")]
    pub ids: Vec<i64>,
    /// Print JSON lines instead of a table (list).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub destination: DestinationArgs,
}

/// Options of `tailbox backfill`: those of `run`, and the order of the rows.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// SQL ORDER BY expression for the backfilled rows [default: "timestamp" when the
    /// table has that column, else the table's physical order].
    #[arg(long)]
    pub order_by: Option<String>,
    /// SQL condition: publish only the rows matching it, e.g. "NOT published" when
    /// taking over from a polling relay (docs/schemas.md) [default: every row].
    #[arg(long = "where", value_name = "CONDITION")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of `tailbox cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Delete rows older than this PostgreSQL interval, e.g. "7 days" or "12 hours".
    #[arg(long)]
    pub older_than: String,
    /// The column holding the row's time.
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Rows deleted per statement.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub batch_size: i64,
    #[command(flatten)]
    pub pg: PgArgs,
}

/// Options of `tailbox setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Create a failover slot (PostgreSQL 17+): standbys with sync_replication_slots = on
    /// keep a copy of it that survives their promotion (see docs/runbook.md).
    #[arg(long)]
    pub failover: bool,
    #[command(flatten)]
    pub pg: PgArgs,
}

/// `tailbox config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (flags, environment, file) and print the effective
    /// values with their sources, secrets redacted.
    Check(Box<RunArgs>),
}

/// Options of `tailbox status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pg: PgArgs,
    /// With Kafka settings, status also reads the checkpoint topic and says whether the
    /// checkpoint there is this server's.
    #[command(flatten)]
    pub destination: DestinationArgs,
}

/// Where records go: the sink, and each sink's options in a group of its own.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// Destination: kafka, redis (Redis Streams) or webhook (HTTP POST per event)
    /// [default: kafka].
    #[arg(long, env = "TAILBOX_SINK")]
    pub sink: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The webhook sink's options (`--sink webhook`).
#[derive(Debug, Args)]
#[command(next_help_heading = "HTTP webhooks (--sink webhook)")]
pub struct WebhookArgs {
    /// URL each event is POSTed to (required with --sink webhook); {aggregatetype} is
    /// replaced by the event's aggregate type (recovered from the topic that
    /// topic_template made), {topic} by the event's topic (from topic_template over any
    /// columns, or topic_column). Checkpoints and dead letters go to PostgreSQL tables
    /// (sql/05_webhook_tables.sql).
    #[arg(long, env = "TAILBOX_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// File holding the Standard Webhooks signing secret (whsec_<base64>); without it
    /// requests are not signed.
    #[arg(long, env = "TAILBOX_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<String>,
    /// File of extra request headers, one "Name: value" per line (e.g. Authorization);
    /// values are never logged or shown.
    #[arg(long, env = "TAILBOX_WEBHOOK_HEADERS_FILE")]
    pub webhook_headers_file: Option<String>,
    /// Request body: payload (the payload column as stored, with webhook_content_type)
    /// or envelope (JSON: id, type, aggregatetype, aggregateid, payload, metadata)
    /// [default: payload].
    #[arg(long, env = "TAILBOX_WEBHOOK_BODY")]
    pub webhook_body: Option<String>,
    /// Content-Type of payload bodies [default: application/json].
    #[arg(long, env = "TAILBOX_WEBHOOK_CONTENT_TYPE")]
    pub webhook_content_type: Option<String>,
    /// Requests in flight at most; each aggregate has at most one [default: 16].
    #[arg(long, env = "TAILBOX_WEBHOOK_CONCURRENCY")]
    pub webhook_concurrency: Option<String>,
    /// Attempts per event before it is dead-lettered; 0: retry until delivered or
    /// refused [default: 0].
    #[arg(long, env = "TAILBOX_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<String>,
    /// Time limit of one request, connecting included [default: 10000].
    #[arg(long, env = "TAILBOX_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<String>,
    /// Wait after an event's first failed attempt; doubles per attempt, with jitter
    /// [default: 500].
    #[arg(long, env = "TAILBOX_WEBHOOK_BACKOFF_MS")]
    pub webhook_backoff_ms: Option<String>,
    /// Longest wait between attempts [default: 60000].
    #[arg(long, env = "TAILBOX_WEBHOOK_BACKOFF_MAX_MS")]
    pub webhook_backoff_max_ms: Option<String>,
    /// Consecutive failed attempts that open the circuit breaker; 0: never [default: 5].
    #[arg(long, env = "TAILBOX_WEBHOOK_BREAKER_FAILURES")]
    pub webhook_breaker_failures: Option<String>,
    /// How long an open breaker sends nothing before one probe [default: 30000].
    #[arg(long, env = "TAILBOX_WEBHOOK_BREAKER_COOLDOWN_MS")]
    pub webhook_breaker_cooldown_ms: Option<String>,
    /// PEM file of the CA certificates to trust for https (instead of the public roots).
    #[arg(long, env = "TAILBOX_WEBHOOK_CA")]
    pub webhook_ca: Option<String>,
}

/// The Redis Streams sink's options (`--sink redis`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Redis Streams (--sink redis)")]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], rediss://… for TLS (required
    /// with --sink redis). Streams are named by topic_template, the dead letters go to
    /// dlq_topic, the checkpoint to the hash checkpoint_topic.
    #[arg(long, env = "TAILBOX_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// File holding the Redis password (e.g. a mounted secret); redis_url must then
    /// carry none.
    #[arg(long, env = "TAILBOX_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<String>,
    /// PEM file of the CA that signed the Redis server's certificate (rediss://);
    /// without it the system's trust store is used. Verification is always on.
    #[arg(long, env = "TAILBOX_REDIS_CA")]
    pub redis_ca: Option<String>,
    /// What an acknowledgement waits for: reply (Redis's reply; what survives a crash
    /// is up to appendfsync), replicas:N[:MS] (WAIT for N replicas), aof[:N[:MS]]
    /// (WAITAOF: fsynced locally and on N replicas; Redis 7.2+); MS defaults to 1000
    /// [default: reply].
    #[arg(long, env = "TAILBOX_REDIS_DURABILITY")]
    pub redis_durability: Option<String>,
    /// Stream trimming: none, maxlen:N (XADD MAXLEN ~ N) or minid-behind:BYTES (drop
    /// entries more than BYTES of WAL older than the newest) [default: none].
    #[arg(long, env = "TAILBOX_REDIS_TRIM")]
    pub redis_trim: Option<String>,
}

/// What every command that talks to Kafka needs.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…] (required with --sink kafka).
    #[arg(long, env = "TAILBOX_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Any librdkafka producer property, KEY=VALUE; repeatable (env: comma-separated).
    /// Merged per key over the file's kafka_props table.
    #[arg(
        long = "kafka-prop",
        id = "kafka_props",
        env = "TAILBOX_KAFKA_PROPS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub kafka_props: Vec<String>,
    /// File holding the Kafka SASL password (e.g. a mounted secret); becomes the
    /// librdkafka property sasl.password, which kafka_props must then not set.
    #[arg(long, env = "TAILBOX_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<String>,
    /// Compacted topic where tailbox keeps each slot's last published LSN, keyed by
    /// the server's system identifier, the slot and the database
    /// [default: tailbox.checkpoints].
    #[arg(long, env = "TAILBOX_CHECKPOINT_TOPIC")]
    pub checkpoint_topic: Option<String>,
}

/// What every command that talks to PostgreSQL needs.
#[derive(Debug, Args)]
pub struct PgArgs {
    /// PostgreSQL URL, e.g. postgres://tailbox:secret@db:5432/app (for `run`, the role
    /// needs LOGIN REPLICATION and SELECT on the outbox table; `setup`/`teardown` need
    /// the table's owner or a superuser). Several hosts (postgres://h1,h2:5433/app) are
    /// tried in order; ?target_session_attrs=read-write passes over standbys.
    #[arg(long, env = "TAILBOX_PG_URL", hide_env_values = true)]
    pub pg_url: Option<String>,
    /// File holding the PostgreSQL password (e.g. a mounted secret); pg_url must then
    /// carry none.
    #[arg(long, env = "TAILBOX_PG_PASSWORD_FILE")]
    pub pg_password_file: Option<String>,
    /// Logical replication slot (plugin pgoutput) [default: tailbox].
    #[arg(long, env = "TAILBOX_SLOT")]
    pub slot: Option<String>,
    /// Publication carrying the outbox table [default: tailbox].
    #[arg(long, env = "TAILBOX_PUBLICATION")]
    pub publication: Option<String>,
    /// The outbox table, SCHEMA.TABLE or TABLE as in SQL: unquoted parts fold to lower
    /// case, "Quoted"."Parts" are exact [default: public.outbox].
    #[arg(long, env = "TAILBOX_OUTBOX_TABLE")]
    pub outbox_table: Option<String>,
    /// Column holding the event id (header `id`) [default: id].
    #[arg(long, env = "TAILBOX_COLUMN_ID")]
    pub column_id: Option<String>,
    /// Column holding the aggregate type (the topic) [default: aggregatetype].
    #[arg(long, env = "TAILBOX_COLUMN_AGGREGATE_TYPE")]
    pub column_aggregate_type: Option<String>,
    /// Column holding the aggregate id (the record key) [default: aggregateid].
    #[arg(long, env = "TAILBOX_COLUMN_AGGREGATE_ID")]
    pub column_aggregate_id: Option<String>,
    /// Column holding the event type (header `type`) [default: type].
    #[arg(long, env = "TAILBOX_COLUMN_TYPE")]
    pub column_type: Option<String>,
    /// Column holding the payload (the record value) [default: payload].
    #[arg(long, env = "TAILBOX_COLUMN_PAYLOAD")]
    pub column_payload: Option<String>,
    /// Column holding each row's topic (stream), used as is instead of topic_template;
    /// a row whose value is no valid topic goes to the dead-letter topic.
    #[arg(long, env = "TAILBOX_TOPIC_COLUMN")]
    pub topic_column: Option<String>,
    /// Column holding the record key; where it is NULL, the aggregate id is the key
    /// [default: the aggregate id].
    #[arg(long, env = "TAILBOX_KEY_COLUMN")]
    pub key_column: Option<String>,
    /// Comma-separated columns that become headers (besides id and type) [default: every
    /// column without another role].
    #[arg(long, env = "TAILBOX_HEADER_COLUMNS")]
    pub header_columns: Option<String>,
    /// Comma-separated columns that never become headers, e.g. status,published,attempts.
    #[arg(long, env = "TAILBOX_EXCLUDE_COLUMNS")]
    pub exclude_columns: Option<String>,
    /// A json/jsonb column whose object keys become one header each.
    #[arg(long, env = "TAILBOX_HEADERS_COLUMN")]
    pub headers_column: Option<String>,
    /// tailbox's own headers: any of lsn,xid,commit_ts, or none [default:
    /// lsn,xid,commit_ts].
    #[arg(long, env = "TAILBOX_META_HEADERS")]
    pub meta_headers: Option<String>,
    /// Event format: debezium (headers id, type, one per column) or cloudevents (binary
    /// mode: ce_* headers, ce-* for webhooks) [default: debezium].
    #[arg(long, env = "TAILBOX_FORMAT")]
    pub format: Option<String>,
    /// CloudEvents source, {column} placeholders allowed [default:
    /// /tailbox/<schema>.<table>].
    #[arg(long, env = "TAILBOX_CLOUDEVENTS_SOURCE")]
    pub cloudevents_source: Option<String>,
    /// CloudEvents type, {column} placeholders allowed [default: the event type column].
    #[arg(long, env = "TAILBOX_CLOUDEVENTS_TYPE")]
    pub cloudevents_type: Option<String>,
    /// Every table of the publication is an outbox table, each mapped with these options
    /// (the file's [[tables]] map tables of their own). --all-tables=false turns it off.
    #[arg(long, env = "TAILBOX_ALL_TABLES", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub all_tables: Option<String>,
}

/// Options of `tailbox run` (and `tailbox config check`).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Topic for each event; {aggregatetype} is replaced by the row's aggregate type,
    /// {column} by that column's value [default: outbox.event.{aggregatetype}].
    #[arg(long, env = "TAILBOX_TOPIC_TEMPLATE")]
    pub topic_template: Option<String>,
    /// Topic for events that cannot be published (poison rows) [default: outbox.dlq].
    #[arg(long, env = "TAILBOX_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// How often (ms) the checkpoint is written and the slot confirmed, at most; 10 to
    /// 60000 [default: 1000].
    #[arg(long, env = "TAILBOX_STATUS_INTERVAL_MS")]
    pub status_interval_ms: Option<String>,
    /// Records awaiting Kafka's acknowledgement before tailbox stops reading WAL; 1 to
    /// 1000000 [default: 10000].
    #[arg(long, env = "TAILBOX_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<String>,
    /// Seconds a clean shutdown waits for in-flight acknowledgements [default: 30].
    #[arg(long, env = "TAILBOX_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<String>,
    /// Start even though the slot stands ahead of tailbox's checkpoint (only after a
    /// deliberate slot recreation and a backfill; not accepted in the config file).
    #[arg(long, env = "TAILBOX_ACCEPT_SLOT_POSITION", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub accept_slot_position: Option<String>,
    /// Start even though tailbox's checkpoint lies beyond the WAL this server shares with
    /// it (after a restore to an earlier point or a promotion, once the events published
    /// past that point were dealt with); skips only the shared part. Not accepted in the
    /// config file.
    #[arg(long, env = "TAILBOX_ACCEPT_CHECKPOINT_DIVERGENCE", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub accept_checkpoint_divergence: Option<String>,
    /// Prefix of transactional pg_logical_emit_message messages that carry table-less
    /// outbox events (JSON envelopes) [default: outbox].
    #[arg(long, env = "TAILBOX_MESSAGE_PREFIX")]
    pub message_prefix: Option<String>,
    /// What the payload must be: raw (published as stored) or json (a payload that is
    /// not valid JSON goes to the dead-letter topic) [default: raw].
    #[arg(long, env = "TAILBOX_PAYLOAD_FORMAT")]
    pub payload_format: Option<String>,
    /// Publish in Kafka transactions, confirm the slot only after each commit, and skip
    /// on restart what the checkpoint says is committed. --exactly-once=false turns it off.
    #[arg(long, env = "TAILBOX_EXACTLY_ONCE", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub exactly_once: Option<String>,
    /// Kafka transactional.id of exactly-once mode [default: tailbox-<system
    /// identifier>-<slot>-<database>, unique to this slot of this database].
    #[arg(long, env = "TAILBOX_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Decode and log what would be published; publish nothing and never confirm the
    /// slot (a dark launch beside an old relay). --dry-run=false turns it off.
    #[arg(long, env = "TAILBOX_DRY_RUN", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub dry_run: Option<String>,
    /// Emit a heartbeat (heartbeat_sql) this often so a quiet database's slot keeps
    /// advancing; 0 = off, else 100 to 86400000 [default: 0].
    #[arg(long, env = "TAILBOX_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<String>,
    /// The heartbeat statement [default: a non-transactional pg_logical_emit_message].
    #[arg(long, env = "TAILBOX_HEARTBEAT_SQL")]
    pub heartbeat_sql: Option<String>,
    /// Address of the HTTP endpoint for /metrics, /healthz, /readyz and /status;
    /// '' disables it [default: 0.0.0.0:8245].
    #[arg(long, env = "TAILBOX_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Seconds between progress log lines when stderr is not a terminal (on a terminal
    /// a live line is redrawn every second instead); 0 = off [default: 30].
    #[arg(long, env = "TAILBOX_PROGRESS_INTERVAL_SECS")]
    pub progress_interval_secs: Option<String>,
    #[command(flatten)]
    pub topics: TopicArgs,
}

/// Topics on demand: how `run` creates a missing destination or dead-letter topic.
#[derive(Debug, Args)]
pub struct TopicArgs {
    /// Create a missing destination or dead-letter topic through the admin API (needs
    /// the Create ACL); without it, or without the ACL, tailbox waits for the topic and
    /// says once, at ERROR, how to create it. --create-topics=false turns it off
    /// [default: true].
    #[arg(long, env = "TAILBOX_CREATE_TOPICS", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub create_topics: Option<String>,
    /// Partitions of a topic tailbox creates; 0 = the broker's num.partitions
    /// [default: 0].
    #[arg(long, env = "TAILBOX_TOPIC_PARTITIONS")]
    pub topic_partitions: Option<String>,
    /// Replication factor of a topic tailbox creates; 0 = the broker's
    /// default.replication.factor [default: 0].
    #[arg(long, env = "TAILBOX_TOPIC_REPLICATION_FACTOR")]
    pub topic_replication_factor: Option<String>,
    /// A topic config of a topic tailbox creates, KEY=VALUE (e.g. retention.ms=604800000);
    /// repeatable (env and file: comma-separated).
    #[arg(
        long = "topic-config",
        id = "topic_config",
        env = "TAILBOX_TOPIC_CONFIG",
        value_delimiter = ','
    )]
    pub topic_config: Vec<String>,
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

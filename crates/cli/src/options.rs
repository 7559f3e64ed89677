//! Every configuration option, defined once: a typed field whose doc comment is its
//! help, whose `#[arg]` gives its flag and default, and whose name is its config-file
//! key (`status_interval_ms`), its flag (`--status-interval-ms`) and, through
//! [`crate::cli::command`], its environment variable (`TAILBOX_STATUS_INTERVAL_MS`).
//!
//! The same structs are parsed by clap (flags and environment) and deserialised by serde
//! from the TOML file ([`Settings`], `deny_unknown_fields`). Every field is an `Option`
//! here, so each layer says only what it sets; [`crate::load`] merges the layers per
//! field and [`crate::config`] validates the result into a [`crate::config::Config`].
//!
//! Adding an option: one field in the group it belongs to, then its check in
//! `Config::validate`. A file-only setting (a nested table such as `[[tables]]`) is a
//! field with `#[arg(skip)]`; the file's tables deserialise like any serde struct.

use std::sync::LazyLock;

use clap::{Arg, Args, ValueEnum, builder::BoolishValueParser};
use serde::{Deserialize, Serialize};
use tailbox_pipeline::settings::DEFAULT_HEARTBEAT_SQL;

use crate::logging::LogFormat;

/// The default address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`,
/// `/status`). Prometheus' exporter port range (9100–9999) is fully allocated, so we
/// stay out of it; 8245 spells "TAIL" on a phone keypad.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:8245";

/// Every key of the config file: each group of options, one level deep (serde's
/// `deny_unknown_fields` sees through one level of `flatten`, not more).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(flatten)]
    pub global: GlobalOptions,
    #[serde(flatten)]
    pub pg: PgOptions,
    #[serde(flatten)]
    pub sink: SinkOptions,
    #[serde(flatten)]
    pub kafka: KafkaOptions,
    #[serde(flatten)]
    pub redis: RedisOptions,
    #[serde(flatten)]
    pub webhook: WebhookOptions,
    #[serde(flatten)]
    pub pipeline: PipelineOptions,
    #[serde(flatten)]
    pub one_start: OneStartOptions,
    #[serde(flatten)]
    pub topics: TopicOptions,
}

impl Settings {
    /// The settings of `options`, with `global`.
    pub fn new(global: GlobalOptions, options: Options) -> Settings {
        let Options { pg, destination, pipeline, one_start, topics } = options;
        let DestinationOptions { sink, kafka, redis, webhook } = destination;
        Settings { global, pg, sink, kafka, redis, webhook, pipeline, one_start, topics }
    }
}

/// Options every subcommand takes (besides `--config`, which names the file).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct GlobalOptions {
    /// Log format: text or json.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: Option<LogFormat>,
}

/// Options of `tailbox run` (and `backfill`, `config check`): every setting of the
/// pipeline. Other subcommands take some of its groups.
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
    #[command(flatten)]
    pub pg: PgOptions,
    #[command(flatten)]
    pub destination: DestinationOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub one_start: OneStartOptions,
    #[command(flatten)]
    pub topics: TopicOptions,
}

/// How the pipeline maps, paces and reports.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct PipelineOptions {
    /// Topic for each event; {aggregatetype} is replaced by the row's aggregate type.
    #[arg(long, default_value = "outbox.event.{aggregatetype}")]
    pub topic_template: Option<String>,
    /// Topic for events that cannot be published (poison rows).
    #[arg(long, default_value = "outbox.dlq")]
    pub dlq_topic: Option<String>,
    /// How often (ms) the checkpoint is written and the slot confirmed, at most; 10 to
    /// 60000.
    #[arg(long, default_value = "1000")]
    pub status_interval_ms: Option<u64>,
    /// Records awaiting Kafka's acknowledgement before tailbox stops reading WAL; 1 to
    /// 1000000.
    #[arg(long, default_value = "10000")]
    pub max_in_flight: Option<u64>,
    /// Seconds a clean shutdown waits for in-flight acknowledgements.
    #[arg(long, default_value = "30")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Prefix of transactional pg_logical_emit_message messages that carry table-less
    /// outbox events (JSON envelopes).
    #[arg(long, default_value = "outbox")]
    pub message_prefix: Option<String>,
    /// What the payload must be: raw (published as stored) or json (a payload that is
    /// not valid JSON goes to the dead-letter topic).
    #[arg(long, default_value = "raw")]
    pub payload_format: Option<String>,
    /// Publish in Kafka transactions, confirm the slot only after each commit, and skip
    /// on restart what the checkpoint says is committed. --exactly-once=false turns it off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new())]
    pub exactly_once: Option<bool>,
    /// Kafka transactional.id of exactly-once mode [default: tailbox-<system
    /// identifier>-<slot>-<database>, unique to this slot of this database].
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Decode and log what would be published; publish nothing and never confirm the
    /// slot (a dark launch beside an old relay). --dry-run=false turns it off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new())]
    pub dry_run: Option<bool>,
    /// Emit a heartbeat (heartbeat_sql) this often so a quiet database's slot keeps
    /// advancing; 0 = off, else 100 to 86400000.
    #[arg(long, default_value = "0")]
    pub heartbeat_interval_ms: Option<u64>,
    /// The heartbeat statement (by default a non-transactional pg_logical_emit_message).
    #[arg(long, default_value = DEFAULT_HEARTBEAT_SQL)]
    pub heartbeat_sql: Option<String>,
    /// Address of the HTTP endpoint for /metrics, /healthz, /readyz and /status;
    /// '' disables it.
    #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: Option<String>,
    /// Seconds between progress log lines when stderr is not a terminal (on a terminal
    /// a live line is redrawn every second instead); 0 = off.
    #[arg(long, default_value = "30")]
    pub progress_interval_secs: Option<u64>,
}

/// Options that apply to one start: flags or environment only, never the config file
/// (a file would repeat them on every start).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct OneStartOptions {
    /// Start even though the slot stands ahead of tailbox's checkpoint (only after a
    /// deliberate slot recreation and a backfill; not accepted in the config file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new())]
    pub accept_slot_position: Option<bool>,
    /// Start even though tailbox's checkpoint lies beyond the WAL this server shares with
    /// it (after a restore to an earlier point or a promotion, once the events published
    /// past that point were dealt with); skips only the shared part. Not accepted in the
    /// config file.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new())]
    pub accept_checkpoint_divergence: Option<bool>,
}

/// What every command that talks to PostgreSQL needs.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct PgOptions {
    /// PostgreSQL URL, e.g. postgres://tailbox:secret@db:5432/app (for `run`, the role
    /// needs LOGIN REPLICATION and SELECT on the outbox table; `setup`/`teardown` need
    /// the table's owner or a superuser). Several hosts (postgres://h1,h2:5433/app) are
    /// tried in order; ?target_session_attrs=read-write passes over standbys.
    #[arg(long, hide_env_values = true)]
    pub pg_url: Option<String>,
    /// File holding the PostgreSQL password (e.g. a mounted secret); pg_url must then
    /// carry none.
    #[arg(long)]
    pub pg_password_file: Option<String>,
    /// Logical replication slot (plugin pgoutput).
    #[arg(long, default_value = "tailbox")]
    pub slot: Option<String>,
    /// Publication carrying the outbox table.
    #[arg(long, default_value = "tailbox")]
    pub publication: Option<String>,
    /// The outbox table, SCHEMA.TABLE or TABLE as in SQL: unquoted parts fold to lower
    /// case, "Quoted"."Parts" are exact.
    #[arg(long, default_value = "public.outbox")]
    pub outbox_table: Option<String>,
    /// Column holding the event id (header `id`).
    #[arg(long, default_value = "id")]
    pub column_id: Option<String>,
    /// Column holding the aggregate type (the topic).
    #[arg(long, default_value = "aggregatetype")]
    pub column_aggregate_type: Option<String>,
    /// Column holding the aggregate id (the record key).
    #[arg(long, default_value = "aggregateid")]
    pub column_aggregate_id: Option<String>,
    /// Column holding the event type (header `type`).
    #[arg(long, default_value = "type")]
    pub column_type: Option<String>,
    /// Column holding the payload (the record value).
    #[arg(long, default_value = "payload")]
    pub column_payload: Option<String>,
}

/// Which sink records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Kafka.
    Kafka,
    /// Redis Streams.
    Redis,
    /// HTTP POST per event.
    Webhook,
}

/// Where records go: the sink, and each sink's options in a group of its own.
#[derive(Debug, Clone, Default, Args)]
pub struct DestinationOptions {
    #[command(flatten)]
    pub sink: SinkOptions,
    #[command(flatten)]
    pub kafka: KafkaOptions,
    #[command(flatten)]
    pub redis: RedisOptions,
    #[command(flatten)]
    pub webhook: WebhookOptions,
}

/// The choice of sink.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct SinkOptions {
    /// Destination: kafka, redis (Redis Streams) or webhook (HTTP POST per event).
    #[arg(long, value_enum, default_value = "kafka")]
    pub sink: Option<SinkKind>,
}

/// What every command that talks to Kafka needs.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct KafkaOptions {
    /// Kafka bootstrap servers, host:port[,host:port…] (required with --sink kafka).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Any librdkafka producer property, KEY=VALUE; repeatable (env: comma-separated).
    /// Merged per key over the file's kafka_props table.
    #[arg(
        long = "kafka-prop",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = key_value
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "props_table")]
    pub kafka_props: Vec<(String, String)>,
    /// File holding the Kafka SASL password (e.g. a mounted secret); becomes the
    /// librdkafka property sasl.password, which kafka_props must then not set.
    #[arg(long)]
    pub kafka_sasl_password_file: Option<String>,
    /// Compacted topic where tailbox keeps each slot's last published LSN, keyed by
    /// the server's system identifier, the slot and the database.
    #[arg(long, default_value = "tailbox.checkpoints")]
    pub checkpoint_topic: Option<String>,
}

/// The Redis Streams sink's options (`--sink redis`).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Redis Streams (--sink redis)")]
pub struct RedisOptions {
    /// Redis URL: redis://[user:password@]host:port[/db], rediss://… for TLS (required
    /// with --sink redis). Streams are named by topic_template, the dead letters go to
    /// dlq_topic, the checkpoint to the hash checkpoint_topic.
    #[arg(long, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// File holding the Redis password (e.g. a mounted secret); redis_url must then
    /// carry none.
    #[arg(long)]
    pub redis_password_file: Option<String>,
    /// PEM file of the CA that signed the Redis server's certificate (rediss://);
    /// without it the system's trust store is used. Verification is always on.
    #[arg(long)]
    pub redis_ca: Option<String>,
    /// What an acknowledgement waits for: reply (Redis's reply; what survives a crash
    /// is up to appendfsync), replicas:N[:MS] (WAIT for N replicas), aof[:N[:MS]]
    /// (WAITAOF: fsynced locally and on N replicas; Redis 7.2+); MS defaults to 1000.
    #[arg(long, default_value = "reply")]
    pub redis_durability: Option<String>,
    /// Stream trimming: none, maxlen:N (XADD MAXLEN ~ N) or minid-behind:BYTES (drop
    /// entries more than BYTES of WAL older than the newest).
    #[arg(long, default_value = "none")]
    pub redis_trim: Option<String>,
}

/// The webhook sink's options (`--sink webhook`).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[command(next_help_heading = "HTTP webhooks (--sink webhook)")]
pub struct WebhookOptions {
    /// URL each event is POSTed to (required with --sink webhook); {aggregatetype} is
    /// replaced by the event's aggregate type (recovered from the topic that
    /// topic_template made). Checkpoints and dead letters go to PostgreSQL tables
    /// (sql/05_webhook_tables.sql).
    #[arg(long, hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// File holding the Standard Webhooks signing secret (whsec_<base64>); without it
    /// requests are not signed.
    #[arg(long)]
    pub webhook_secret_file: Option<String>,
    /// File of extra request headers, one "Name: value" per line (e.g. Authorization);
    /// values are never logged or shown.
    #[arg(long)]
    pub webhook_headers_file: Option<String>,
    /// Request body: payload (the payload column as stored, with webhook_content_type)
    /// or envelope (JSON: id, type, aggregatetype, aggregateid, payload, metadata).
    #[arg(long, default_value = "payload")]
    pub webhook_body: Option<String>,
    /// Content-Type of payload bodies.
    #[arg(long, default_value = "application/json")]
    pub webhook_content_type: Option<String>,
    /// Requests in flight at most; each aggregate has at most one.
    #[arg(long, default_value = "16")]
    pub webhook_concurrency: Option<u64>,
    /// Attempts per event before it is dead-lettered; 0: retry until delivered or
    /// refused.
    #[arg(long, default_value = "0")]
    pub webhook_max_attempts: Option<u64>,
    /// Time limit of one request, connecting included.
    #[arg(long, default_value = "10000")]
    pub webhook_timeout_ms: Option<u64>,
    /// Wait after an event's first failed attempt; doubles per attempt, with jitter.
    #[arg(long, default_value = "500")]
    pub webhook_backoff_ms: Option<u64>,
    /// Longest wait between attempts.
    #[arg(long, default_value = "60000")]
    pub webhook_backoff_max_ms: Option<u64>,
    /// Consecutive failed attempts that open the circuit breaker; 0: never.
    #[arg(long, default_value = "5")]
    pub webhook_breaker_failures: Option<u64>,
    /// How long an open breaker sends nothing before one probe.
    #[arg(long, default_value = "30000")]
    pub webhook_breaker_cooldown_ms: Option<u64>,
    /// PEM file of the CA certificates to trust for https (instead of the public roots).
    #[arg(long)]
    pub webhook_ca: Option<String>,
}

/// Topics on demand: how `run` creates a missing destination or dead-letter topic.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct TopicOptions {
    /// Create a missing destination or dead-letter topic through the admin API (needs
    /// the Create ACL); without it, or without the ACL, tailbox waits for the topic and
    /// says once, at ERROR, how to create it. --create-topics=false turns it off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = BoolishValueParser::new())]
    pub create_topics: Option<bool>,
    /// Partitions of a topic tailbox creates; 0 = the broker's num.partitions.
    #[arg(long, default_value = "0")]
    pub topic_partitions: Option<u64>,
    /// Replication factor of a topic tailbox creates; 0 = the broker's
    /// default.replication.factor.
    #[arg(long, default_value = "0")]
    pub topic_replication_factor: Option<u64>,
    /// A topic config of a topic tailbox creates, KEY=VALUE (e.g. retention.ms=604800000);
    /// repeatable (env and file: comma-separated).
    #[arg(long = "topic-config", value_delimiter = ',', value_parser = key_value)]
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "comma_list")]
    pub topic_config: Vec<(String, String)>,
}

/// One `KEY=VALUE` item of `--kafka-prop` or `--topic-config`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    tailbox_kafka_sink::config::parse_property(text).map_err(|_| "expected KEY=VALUE".to_owned())
}

/// `kafka_props`: a table in the file (`"linger.ms" = 10`; numbers and booleans are
/// librdkafka text too), a list of `KEY=VALUE` on the command line.
mod props_table {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(props: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        // Later entries win, as for repeated flags.
        let map: BTreeMap<&str, &str> =
            props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        s.collect_map(map)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        let table = toml::Table::deserialize(d)?;
        table
            .into_iter()
            .map(|(key, value)| match value {
                toml::Value::String(text) => Ok((key, text)),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    Ok((key, value.to_string()))
                }
                other => Err(D::Error::custom(format!(
                    "\"{key}\" = {other} is not a string, number or boolean; give the librdkafka value as a string, e.g. \"{key}\" = \"10\""
                ))),
            })
            .collect()
    }
}

/// `topic_config`: `KEY=VALUE` items; one comma-separated string in the file.
mod comma_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.serialize_str(&items.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        String::deserialize(d)?
            .split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                super::key_value(item.trim())
                    .map_err(|reason| D::Error::custom(format!("{item:?}: {reason}")))
            })
            .collect()
    }
}

/// What the definitions say about one key (derived from them, never written twice).
#[derive(Debug, Clone)]
pub struct Key {
    /// The field's name: the config-file key and the clap id.
    pub name: String,
    /// `--status-interval-ms`.
    pub flag: String,
    /// `TAILBOX_STATUS_INTERVAL_MS`.
    pub env: String,
    /// Whether the config file may set it ([`OneStartOptions`] may not).
    pub in_file: bool,
    /// Whether its value is a secret (the options whose environment value is hidden).
    pub secret: bool,
}

/// Every key, in definition order (the order `config check` prints them).
pub fn keys() -> &'static [Key] {
    static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let one_start: Vec<String> = ids(OneStartOptions::augment_args(clap::Command::new("k")));
        let command = Options::augment_args(GlobalOptions::augment_args(clap::Command::new("k")));
        command
            .get_arguments()
            .map(|arg| {
                let name = arg.get_id().as_str().to_owned();
                Key {
                    flag: format!("--{}", arg.get_long().unwrap_or(&name)),
                    env: env_name(&name),
                    in_file: !one_start.contains(&name),
                    secret: arg.is_hide_env_values_set(),
                    name,
                }
            })
            .collect()
    });
    &KEYS
}

/// The key named `name`, if there is one.
pub fn key(name: &str) -> Option<&'static Key> {
    keys().iter().find(|k| k.name == name)
}

/// The environment variable of the option named `name`.
pub fn env_name(name: &str) -> String {
    format!("TAILBOX_{}", name.to_ascii_uppercase())
}

/// Adds its `TAILBOX_*` variable to an argument that is a configuration option.
pub fn with_env(arg: Arg) -> Arg {
    let name = arg.get_id().as_str();
    if name == "config" || key(name).is_some() {
        let env = env_name(name);
        arg.env(env)
    } else {
        arg
    }
}

fn ids(command: clap::Command) -> Vec<String> {
    command.get_arguments().map(|a| a.get_id().as_str().to_owned()).collect()
}

/// The built-in defaults: what clap fills in when neither a flag nor a variable is set.
pub fn defaults() -> Settings {
    use clap::FromArgMatches;
    let command = Options::augment_args(GlobalOptions::augment_args(clap::Command::new("d")));
    let Ok(matches) = command.try_get_matches_from(["d"]) else {
        return Settings::default();
    };
    Settings::new(
        GlobalOptions::from_arg_matches(&matches).unwrap_or_default(),
        Options::from_arg_matches(&matches).unwrap_or_default(),
    )
}

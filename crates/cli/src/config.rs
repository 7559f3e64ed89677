//! Configuration: flags, environment (`TAILBOX_*`), a TOML file, defaults — in that
//! order of precedence — resolved into one validated [`Config`].
//!
//! Every option has one name: `--status-interval-ms` on the command line,
//! `TAILBOX_STATUS_INTERVAL_MS` in the environment, `status_interval_ms` in the file.
//! Values from all three are read as text and checked by the same code, so an invalid
//! value gives the same one-line message (field, value, where it came from, fix)
//! wherever it was set. `kafka_props` merges per property: file table first, then the
//! `--kafka-prop`/`TAILBOX_KAFKA_PROPS` list on top.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{ArgMatches, parser::ValueSource};
use secrecy::{ExposeSecret, SecretString};
use tailbox_kafka_sink::SinkConfig;
use tailbox_outbox::{
    ColumnNames, EventFormat, MetaHeaders, OutboxConfig, PayloadFormat, TableMapping, TopicTemplate,
};
use tailbox_pipeline::settings::DEFAULT_HEARTBEAT_SQL;
use tailbox_pipeline::settings::Destination;
use tailbox_redis_sink::{Durability, RedisSinkConfig, Trim};
use tailbox_replication::{OutboxTableSpec, PgConnectionConfig};
use tailbox_webhook_sink::{
    Backoff, BodyFormat, SigningKey, UrlTemplate, WebhookSinkConfig, parse_header,
};

use crate::logging::LogFormat;

/// The default address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`,
/// `/status`). Prometheus' exporter port range (9100–9999) is fully allocated, so we
/// stay out of it; 8245 spells "TAIL" on a phone keypad.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:8245";

/// What kind of value a key holds (for checking and printing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    Props,
}

/// One configuration key.
#[derive(Debug)]
struct Key {
    name: &'static str,
    default: Option<&'static str>,
    kind: Kind,
}

const fn key(name: &'static str, default: Option<&'static str>, kind: Kind) -> Key {
    Key { name, default, kind }
}

/// The default of config-file key `name`: `None` if there is no such key, `Some(None)`
/// if it has no default. (Used by the generated configuration reference.)
#[cfg(test)]
pub fn key_default(name: &str) -> Option<Option<&'static str>> {
    KEYS.iter().find(|k| k.name == name).map(|k| k.default)
}

/// Every key, in the order `config check` prints them.
const KEYS: &[Key] = &[
    key("pg_url", None, Kind::Text),
    key("pg_password_file", None, Kind::Text),
    key("slot", Some("tailbox"), Kind::Text),
    key("publication", Some("tailbox"), Kind::Text),
    key("outbox_table", Some("public.outbox"), Kind::Text),
    key("column_id", Some("id"), Kind::Text),
    key("column_aggregate_type", Some("aggregatetype"), Kind::Text),
    key("column_aggregate_id", Some("aggregateid"), Kind::Text),
    key("column_type", Some("type"), Kind::Text),
    key("column_payload", Some("payload"), Kind::Text),
    key("topic_column", None, Kind::Text),
    key("key_column", None, Kind::Text),
    key("header_columns", None, Kind::Text),
    key("exclude_columns", None, Kind::Text),
    key("headers_column", None, Kind::Text),
    key("meta_headers", Some("lsn,xid,commit_ts"), Kind::Text),
    key("format", Some("debezium"), Kind::Text),
    key("cloudevents_source", None, Kind::Text),
    key("cloudevents_type", None, Kind::Text),
    key("all_tables", Some("false"), Kind::Bool),
    key("sink", Some("kafka"), Kind::Text),
    key("kafka_brokers", None, Kind::Text),
    key("kafka_sasl_password_file", None, Kind::Text),
    key("topic_template", Some("outbox.event.{aggregatetype}"), Kind::Text),
    key("checkpoint_topic", Some("tailbox.checkpoints"), Kind::Text),
    key("dlq_topic", Some("outbox.dlq"), Kind::Text),
    key("message_prefix", Some("outbox"), Kind::Text),
    key("payload_format", Some("raw"), Kind::Text),
    key("exactly_once", Some("false"), Kind::Bool),
    key("transactional_id", None, Kind::Text),
    key("status_interval_ms", Some("1000"), Kind::Int),
    key("max_in_flight", Some("10000"), Kind::Int),
    key("shutdown_timeout_secs", Some("30"), Kind::Int),
    key("accept_slot_position", Some("false"), Kind::Bool),
    key("accept_checkpoint_divergence", Some("false"), Kind::Bool),
    key("dry_run", Some("false"), Kind::Bool),
    key("heartbeat_interval_ms", Some("0"), Kind::Int),
    key("heartbeat_sql", Some(DEFAULT_HEARTBEAT_SQL), Kind::Text),
    key("metrics_addr", Some(DEFAULT_METRICS_ADDR), Kind::Text),
    key("progress_interval_secs", Some("30"), Kind::Int),
    key("log_format", Some("text"), Kind::Text),
    key("redis_url", None, Kind::Text),
    key("redis_password_file", None, Kind::Text),
    key("redis_ca", None, Kind::Text),
    key("redis_durability", Some("reply"), Kind::Text),
    key("redis_trim", Some("none"), Kind::Text),
    key("webhook_url", None, Kind::Text),
    key("webhook_secret_file", None, Kind::Text),
    key("webhook_headers_file", None, Kind::Text),
    key("webhook_body", Some("payload"), Kind::Text),
    key("webhook_content_type", Some("application/json"), Kind::Text),
    key("webhook_concurrency", Some("16"), Kind::Int),
    key("webhook_max_attempts", Some("0"), Kind::Int),
    key("webhook_timeout_ms", Some("10000"), Kind::Int),
    key("webhook_backoff_ms", Some("500"), Kind::Int),
    key("webhook_backoff_max_ms", Some("60000"), Kind::Int),
    key("webhook_breaker_failures", Some("5"), Kind::Int),
    key("webhook_breaker_cooldown_ms", Some("30000"), Kind::Int),
    key("webhook_ca", None, Kind::Text),
    key("kafka_props", None, Kind::Props),
    // Topics on demand (see TopicOptions).
    key("create_topics", Some("true"), Kind::Bool),
    key("topic_partitions", Some("0"), Kind::Int),
    key("topic_replication_factor", Some("0"), Kind::Int),
    key("topic_config", None, Kind::Text),
];

/// Keys refused in the file, with the reason and fix.
const NOT_IN_FILE: &[(&str, &str)] = &[
    (
        "accept_slot_position",
        "it must be given once, deliberately, after a slot recreation and backfill; pass --accept-slot-position on the command line for one start",
    ),
    (
        "accept_checkpoint_divergence",
        "it must be given once, deliberately, after a restore or promotion left published events the server no longer has; pass --accept-checkpoint-divergence on the command line for one start",
    ),
];

/// Property keys whose values are secrets (matched case-insensitively, as substrings):
/// every property librdkafka itself treats as sensitive (`sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `ssl.key.pem`,
/// `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config`, …) and the Java
/// client's `sasl.jaas.config`. File paths (`*.location`) are shown.
const SECRET_PROP_PARTS: &[&str] =
    &["password", "secret", "sasl.jaas", "ssl.key", "private.key", "oauthbearer.config", "ssl_key"];

/// The librdkafka property `kafka_sasl_password_file` sets.
const SASL_PASSWORD_PROP: &str = "sasl.password";

/// Shown instead of a secret.
pub use tailbox_replication::connection::REDACTED;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `TAILBOX_*` environment variable.
    Env,
    /// The config file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl Source {
    /// How to refer to `key` as set from this source, e.g. `--max-in-flight`,
    /// `TAILBOX_MAX_IN_FLIGHT`, `max_in_flight in /etc/tailbox.toml`.
    pub fn label(&self, key: &str) -> String {
        match self {
            Source::Flag if key == "kafka_props" => "--kafka-prop".into(),
            Source::Flag => format!("--{}", key.replace('_', "-")),
            Source::Env => format!("TAILBOX_{}", key.to_ascii_uppercase()),
            Source::File(path) => format!("{key} in {}", path.display()),
            Source::Default => format!("{key} (default)"),
        }
    }

    /// Short form for `config check`: `flag`, `env TAILBOX_X`, `file`, `default`.
    fn short(&self, key: &str) -> String {
        match self {
            Source::Flag => format!("flag {}", Source::Flag.label(key)),
            Source::Env => format!("env {}", Source::Env.label(key)),
            Source::File(path) => format!("file {}", path.display()),
            Source::Default => "default".into(),
        }
    }
}

/// Invalid configuration: one line per problem, each naming the field, the value,
/// where it came from and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Raw values (text) with their sources, before checking.
#[derive(Debug, Default)]
struct Raw {
    file: Option<PathBuf>,
    values: BTreeMap<&'static str, (String, Source)>,
    /// librdkafka properties, in order, later entries winning.
    props: BTreeMap<String, (String, Source)>,
    /// `[[tables]]` of the file.
    tables: Vec<TableMapping>,
}

/// The file's values, as text.
#[derive(Debug, Default)]
struct FileValues {
    path: Option<PathBuf>,
    values: BTreeMap<String, String>,
    props: Vec<(String, String)>,
    /// `[[tables]]`: more outbox tables, each with its whole mapping.
    tables: Vec<TableMapping>,
}

/// The validated, effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// The PostgreSQL connection, parsed once from `pg_url` (with the password from
    /// `pg_password_file`), if set.
    pub pg: Option<PgConnectionConfig>,
    /// Whether `sasl.password` in `kafka_props` came from `kafka_sasl_password_file`.
    pub kafka_sasl_password_from_file: bool,
    pub slot: String,
    pub publication: String,
    /// The outbox table's whole mapping (columns, routing, headers, format).
    pub mapping: TableMapping,
    /// More outbox tables (the file's `[[tables]]`), each with its whole mapping.
    pub more_tables: Vec<OutboxConfig>,
    /// Every other table of the publication is an outbox table mapped like `mapping`.
    pub all_tables: bool,
    /// Which sink records go to.
    pub sink: SinkKind,
    pub kafka_brokers: Option<String>,
    /// The Redis sink's settings (with `sink = redis`; the password from
    /// `redis_password_file` already in).
    pub redis: Option<RedisSinkConfig>,
    /// The webhook sink's settings (with `sink = webhook` and `webhook_url` set).
    pub webhook: Option<WebhookSinkConfig>,
    /// librdkafka properties; secret ones (see [`is_secret_prop`]) held as secrets.
    pub kafka_props: Vec<(String, PropValue)>,
    pub checkpoint_topic: String,
    pub dlq_topic: String,
    pub message_prefix: String,
    pub exactly_once: bool,
    /// `None`: derived from the checkpoint's owner.
    pub transactional_id: Option<String>,
    pub status_interval_ms: u64,
    pub max_in_flight: u64,
    pub shutdown_timeout_secs: u64,
    pub accept_slot_position: bool,
    pub accept_checkpoint_divergence: bool,
    pub dry_run: bool,
    /// 0 = off.
    pub heartbeat_interval_ms: u64,
    pub heartbeat_sql: String,
    /// `None`: the endpoint is off.
    pub metrics_addr: Option<SocketAddr>,
    /// 0 = off.
    pub progress_interval_secs: u64,
    pub log_format: LogFormat,
    pub topics: TopicOptions,
    raw: RawView,
}

/// How missing destination and dead-letter topics are created (`create_topics`,
/// `topic_partitions`, `topic_replication_factor`, `topic_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOptions {
    pub create: bool,
    /// 0 = the broker's default.
    pub partitions: u64,
    /// 0 = the broker's default.
    pub replication_factor: u64,
    pub configs: Vec<(String, String)>,
}

impl TopicOptions {
    fn check(c: &mut Checker<'_>) -> TopicOptions {
        let create = c.bool("create_topics");
        let partitions = c.int("topic_partitions", 1, 100_000, true);
        let replication_factor = c.int("topic_replication_factor", 1, 32_767, true);
        let mut configs = Vec::new();
        let text = c.text("topic_config").unwrap_or_default();
        for item in text.split(',').filter(|i| !i.trim().is_empty()) {
            match item.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    configs.push((key.trim().to_owned(), value.trim().to_owned()));
                }
                _ => c.fail(
                    "topic_config",
                    item,
                    "expected KEY=VALUE",
                    "e.g. --topic-config retention.ms=604800000 (repeatable; in the file, comma-separated)",
                ),
            }
        }
        TopicOptions { create, partitions, replication_factor, configs }
    }

    /// The sink's topic settings (with a registry of its own).
    fn settings(&self) -> tailbox_kafka_sink::TopicSettings {
        let positive = |n: u64| (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX));
        tailbox_kafka_sink::TopicSettings {
            create: self.create,
            partitions: positive(self.partitions),
            replication_factor: positive(self.replication_factor),
            configs: self.configs.clone(),
            registry: Default::default(),
        }
    }
}

/// A librdkafka property's value: secrets are zeroed on drop and never in `Debug`.
#[derive(Debug, Clone)]
pub enum PropValue {
    Plain(String),
    Secret(SecretString),
}

impl PropValue {
    fn new(key: &str, value: String) -> Self {
        if is_secret_prop(key) {
            PropValue::Secret(SecretString::from(value))
        } else {
            PropValue::Plain(value)
        }
    }

    fn expose(&self) -> &str {
        match self {
            PropValue::Plain(text) => text,
            PropValue::Secret(secret) => secret.expose_secret(),
        }
    }
}

/// What `config check` prints: every key's effective text (secrets already redacted)
/// and source.
#[derive(Debug, Clone, Default)]
struct RawView {
    values: BTreeMap<&'static str, (String, Source)>,
    props: BTreeMap<String, (String, Source)>,
}

/// Reads the config file (if `--config`/`TAILBOX_CONFIG` names one) and resolves
/// every key from `matches` (the subcommand's), the file and the defaults.
pub fn load(matches: &ArgMatches) -> Result<Config, ConfigErrors> {
    let file = match raw_arg(matches, "config") {
        Some((path, _)) => read_file(Path::new(&path))?,
        None => FileValues::default(),
    };
    resolve(matches, &file).and_then(Config::from_raw)
}

/// A value of `id` given on the command line or in the environment.
fn raw_arg(matches: &ArgMatches, id: &str) -> Option<(String, Source)> {
    // try_get_raw first: it answers Err for an option this command does not have,
    // where value_source would panic (in debug builds).
    let values = matches.try_get_raw(id).ok()??;
    let source = match matches.value_source(id)? {
        ValueSource::CommandLine => Source::Flag,
        ValueSource::EnvVariable => Source::Env,
        _ => return None,
    };
    let text: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
    Some((text.join(","), source))
}

fn raw_list(matches: &ArgMatches, id: &str) -> Option<(Vec<String>, Source)> {
    let values = matches.try_get_raw(id).ok()??;
    let source = match matches.value_source(id)? {
        ValueSource::CommandLine => Source::Flag,
        ValueSource::EnvVariable => Source::Env,
        _ => return None,
    };
    let items =
        values.map(|v| v.to_string_lossy().into_owned()).filter(|v| !v.trim().is_empty()).collect();
    Some((items, source))
}

/// Reads and checks the TOML file: unknown keys and values of the wrong shape are
/// refused here, naming the key.
fn read_file(path: &Path) -> Result<FileValues, ConfigErrors> {
    let fail = |line: String| ConfigErrors(vec![line]);
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(format!(
            "cannot read config file {}: {e}; fix: check --config/TAILBOX_CONFIG and the file's permissions",
            path.display()
        ))
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileValues, ConfigErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
            .map(|n| format!(", line {n}"))
            .unwrap_or_default();
        ConfigErrors(vec![format!(
            "config file {}{line} is not valid TOML: {}; fix: write key = value lines, strings in quotes (see docs/operations.md)",
            path.display(),
            e.message().trim()
        )])
    })?;
    let mut errors = Vec::new();
    let mut out = FileValues { path: Some(path.to_owned()), ..FileValues::default() };
    for (name, value) in table {
        if name == "tables" {
            // [[tables]]: one outbox table's mapping each (TableMapping, serde).
            match value.try_into::<Vec<TableMapping>>() {
                Ok(tables) => out.tables = tables,
                Err(e) => errors.push(format!(
                    "config file {}: tables: {}; fix: write [[tables]] sections with the per-table keys (table = \"customer.outbox\", topic_template = …; see docs/schemas.md)",
                    path.display(),
                    e.to_string().trim()
                )),
            }
            continue;
        }
        if let Some((_, why)) = NOT_IN_FILE.iter().find(|(k, _)| *k == name) {
            errors.push(format!(
                "config file {}: {name} is not accepted in a config file: {why}",
                path.display()
            ));
            continue;
        }
        let Some(spec) = KEYS.iter().find(|k| k.name == name) else {
            let hint =
                closest_key(&name).map(|k| format!("did you mean {k}? ")).unwrap_or_default();
            errors.push(format!(
                "config file {}: unknown key {name:?}; fix: {hint}remove it or use one of: {}",
                path.display(),
                KEYS.iter()
                    .filter(|k| !NOT_IN_FILE.iter().any(|(n, _)| n == &k.name))
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        if spec.kind == Kind::Props {
            let toml::Value::Table(props) = value else {
                errors.push(format!(
                    "config file {}: kafka_props must be a table; fix: kafka_props = {{ \"linger.ms\" = \"10\" }}",
                    path.display()
                ));
                continue;
            };
            for (prop, value) in props {
                match scalar_text(&value) {
                    Some(text) => out.props.push((prop, text)),
                    None => errors.push(format!(
                        "config file {}: kafka_props.{prop:?} = {value} is not a string, number or boolean; fix: give the librdkafka value as a string, e.g. \"{prop}\" = \"10\"",
                        path.display()
                    )),
                }
            }
            continue;
        }
        match scalar_text(&value) {
            Some(text) => {
                out.values.insert(name, text);
            }
            None => errors.push(format!(
                "config file {}: {name} = {value} must be a single {}; fix: e.g. {name} = {}",
                path.display(),
                match spec.kind {
                    Kind::Int => "number",
                    Kind::Bool => "boolean",
                    _ => "string",
                },
                example(spec)
            )),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(ConfigErrors(errors)) }
}

fn example(spec: &Key) -> String {
    let default = spec.default.unwrap_or("...");
    match spec.kind {
        Kind::Int | Kind::Bool => default.to_owned(),
        _ => toml::Value::String(default.to_owned()).to_string(),
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The known key closest to a misspelt one (edit distance ≤ 3).
fn closest_key(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::levenshtein(name, k.name), k.name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

/// Flag > environment > file > default, per key; `kafka_props` per property.
fn resolve(matches: &ArgMatches, file: &FileValues) -> Result<Raw, ConfigErrors> {
    let file_source = || Source::File(file.path.clone().unwrap_or_default());
    let mut raw = Raw { file: file.path.clone(), tables: file.tables.clone(), ..Raw::default() };
    for spec in KEYS {
        if spec.kind == Kind::Props {
            continue;
        }
        let value = raw_arg(matches, spec.name)
            .or_else(|| file.values.get(spec.name).map(|v| (v.clone(), file_source())))
            .or_else(|| spec.default.map(|d| (d.to_owned(), Source::Default)));
        if let Some(value) = value {
            raw.values.insert(spec.name, value);
        }
    }
    for (key, value) in &file.props {
        raw.props.insert(key.clone(), (value.clone(), file_source()));
    }
    if let Some((items, source)) = raw_list(matches, "kafka_props") {
        let mut errors = Vec::new();
        for item in items {
            match tailbox_kafka_sink::config::parse_property(&item) {
                Ok((key, value)) => {
                    raw.props.insert(key, (value, source.clone()));
                }
                Err(_) => errors.push(format!(
                    "invalid {} {item:?}: expected KEY=VALUE; fix: e.g. --kafka-prop linger.ms=10 (values with commas go in the config file's kafka_props table)",
                    source.label("kafka_props")
                )),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
    }
    Ok(raw)
}

/// Checks values one by one, collecting every problem.
struct Checker<'a> {
    raw: &'a Raw,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn text(&self, key: &str) -> Option<String> {
        self.raw.values.get(key).map(|(v, _)| v.clone())
    }

    fn label(&self, key: &str) -> String {
        self.raw.values.get(key).map(|(_, s)| s.label(key)).unwrap_or_else(|| key.to_owned())
    }

    fn fail(&mut self, key: &str, value: &str, reason: &str, fix: &str) {
        let line = format!("invalid {} {value:?}: {reason}; fix: {fix}", self.label(key));
        self.errors.push(line);
    }

    fn string(&mut self, key: &str) -> String {
        self.text(key).unwrap_or_default()
    }

    fn int(&mut self, key: &str, min: u64, max: u64, zero_ok: bool) -> u64 {
        let text = self.string(key);
        match text.trim().parse::<u64>() {
            Ok(n) if (n == 0 && zero_ok) || (min..=max).contains(&n) => n,
            Ok(_) | Err(_) => {
                let range = if zero_ok {
                    format!("0 (off) or {min} to {max}")
                } else {
                    format!("{min} to {max}")
                };
                self.fail(
                    key,
                    &text,
                    &format!("expected a whole number, {range}"),
                    &format!("set {key} to a number in that range"),
                );
                0
            }
        }
    }

    fn bool(&mut self, key: &str) -> bool {
        let text = self.string(key);
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" | "" => false,
            _ => {
                self.fail(
                    key,
                    &text,
                    "expected true or false",
                    &format!("set {key} to true or false"),
                );
                false
            }
        }
    }

    /// A slot or publication name as written in SQL (`pub`, `"Pub-1"`): the name it
    /// stands for. Slot names are further limited by PostgreSQL to a-z, 0-9 and _.
    fn identifier(&mut self, key: &str) -> String {
        let text = self.string(key);
        let name = match tailbox_outbox::identifier::parse_name(&text) {
            Ok(name) => name,
            Err(reason) => {
                self.fail(key, &text, &reason, "e.g. tailbox, or \"Pub-1\" (quoted as in SQL)");
                return text;
            }
        };
        if name.len() > 63 {
            self.fail(key, &text, "longer than 63 bytes", "use a shorter name");
        } else if key == "slot"
            && tailbox_replication::control::validate_identifier(key, &name).is_err()
        {
            self.fail(
                key,
                &text,
                "not a valid slot name",
                "use 1 to 63 characters of a-z, 0-9 and _",
            );
        }
        name
    }

    fn topic(&mut self, key: &str) -> String {
        let text = self.string(key);
        if let Err(reason) = tailbox_outbox::topic::validate_topic(&text) {
            self.fail(key, &text, &reason, "use letters, digits, '.', '_', '-'");
        }
        text
    }
}

/// The outbox table's mapping from the per-table keys (`topic_column`, `key_column`,
/// `header_columns`, `exclude_columns`, `headers_column`, `meta_headers`, `format`,
/// `cloudevents_*`), each checked here.
fn table_mapping(
    c: &mut Checker<'_>,
    table: &str,
    columns: &ColumnNames,
    topic_template: &str,
) -> TableMapping {
    let list = |c: &mut Checker<'_>, key: &str| {
        c.text(key).map(|text| {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        })
    };
    let meta_text = c.string("meta_headers");
    let meta_headers = MetaHeaders::parse(&meta_text).unwrap_or_else(|reason| {
        c.fail("meta_headers", &meta_text, &reason, "use any of lsn,xid,commit_ts, or none");
        MetaHeaders::default()
    });
    let format_text = c.string("format");
    let format = EventFormat::parse(&format_text).unwrap_or_else(|| {
        c.fail("format", &format_text, "unknown format", "use debezium or cloudevents");
        EventFormat::Debezium
    });
    TableMapping {
        table: table.to_owned(),
        column_id: columns.id.clone(),
        column_type: columns.event_type.clone(),
        column_aggregate_type: columns.aggregate_type.clone(),
        column_aggregate_id: columns.aggregate_id.clone(),
        column_payload: columns.payload.clone(),
        topic_template: topic_template.to_owned(),
        topic_column: c.text("topic_column"),
        key_column: c.text("key_column"),
        header_columns: list(c, "header_columns"),
        exclude_columns: list(c, "exclude_columns").unwrap_or_default(),
        headers_column: c.text("headers_column"),
        meta_headers,
        format,
        cloudevents_source: c.text("cloudevents_source"),
        cloudevents_type: c.text("cloudevents_type"),
        ..TableMapping::default()
    }
}

impl Config {
    fn from_raw(raw: Raw) -> Result<Config, ConfigErrors> {
        let mut c = Checker { raw: &raw, errors: Vec::new() };
        let slot = c.identifier("slot");
        let publication = c.identifier("publication");
        let columns = ColumnNames {
            id: c.string("column_id"),
            aggregate_type: c.string("column_aggregate_type"),
            aggregate_id: c.string("column_aggregate_id"),
            event_type: c.string("column_type"),
            payload: c.string("column_payload"),
        };
        let outbox_table = c.string("outbox_table");
        let topic_template = c.string("topic_template");
        let mapping = table_mapping(&mut c, &outbox_table, &columns, &topic_template);
        if let Err(e) = OutboxConfig::from_mapping(&mapping) {
            // The outbox crate names the flag; name the key as it was given.
            let key = e.field.trim_start_matches("--").replace('-', "_");
            let key = KEYS.iter().find(|k| k.name == key).map_or("outbox_table", |k| k.name);
            c.fail(key, &e.value, &e.reason, &e.fix);
        }
        let checkpoint_topic = c.topic("checkpoint_topic");
        let dlq_topic = c.topic("dlq_topic");
        let message_prefix = c.string("message_prefix");
        if message_prefix.is_empty() {
            c.fail(
                "message_prefix",
                &message_prefix,
                "empty",
                "use the prefix your application passes to pg_logical_emit_message, e.g. outbox",
            );
        }
        let payload_format_text = c.string("payload_format");
        let payload_format = PayloadFormat::parse(&payload_format_text).unwrap_or_else(|| {
            c.fail("payload_format", &payload_format_text, "unknown format", "use raw or json");
            PayloadFormat::Raw
        });
        let mapping = TableMapping { payload_format, ..mapping };
        let all_tables = c.bool("all_tables");
        let mut more_tables = Vec::new();
        for table in &raw.tables {
            match OutboxConfig::from_mapping(table) {
                Ok(config) => more_tables.push(config),
                Err(e) => c.errors.push(format!("[[tables]] {:?}: {e}", table.table)),
            }
        }
        let exactly_once = c.bool("exactly_once");
        let transactional_id = c.text("transactional_id");
        if let Some(id) = &transactional_id
            && id.trim().is_empty()
        {
            c.fail(
                "transactional_id",
                id,
                "empty",
                "leave it unset (derived from the system identifier, slot and database) or give a name unique to this slot",
            );
        }
        let status_interval_ms = c.int("status_interval_ms", 10, 60_000, false);
        let max_in_flight = c.int("max_in_flight", 1, 1_000_000, false);
        let shutdown_timeout_secs = c.int("shutdown_timeout_secs", 0, 86_400, true);
        let accept_slot_position = c.bool("accept_slot_position");
        let accept_checkpoint_divergence = c.bool("accept_checkpoint_divergence");
        let dry_run = c.bool("dry_run");
        let heartbeat_interval_ms = c.int("heartbeat_interval_ms", 100, 86_400_000, true);
        let heartbeat_sql = c.string("heartbeat_sql");
        if heartbeat_sql.trim().is_empty() {
            c.fail(
                "heartbeat_sql",
                &heartbeat_sql,
                "empty",
                "leave heartbeat_sql unset for the default pg_logical_emit_message, or give a statement",
            );
        }
        let metrics_text = c.string("metrics_addr");
        let metrics_addr = if metrics_text.trim().is_empty() {
            None
        } else {
            match metrics_text.trim().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    c.fail(
                        "metrics_addr",
                        &metrics_text,
                        "expected IP:PORT",
                        "e.g. 0.0.0.0:8245 or 127.0.0.1:9000; '' turns the endpoint off",
                    );
                    None
                }
            }
        };
        let progress_interval_secs = c.int("progress_interval_secs", 1, 86_400, true);
        let log_text = c.string("log_format");
        let log_format = match log_text.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                c.fail(
                    "log_format",
                    &log_text,
                    "expected text or json",
                    "set log_format to text or json",
                );
                LogFormat::Text
            }
        };
        let kafka_brokers = c.text("kafka_brokers");
        if let Some(brokers) = &kafka_brokers
            && brokers.trim().is_empty()
        {
            c.fail("kafka_brokers", brokers, "empty", "give host:port of at least one broker");
        }
        let pg = pg_connection(&mut c);
        let sink_text = c.string("sink");
        let sink = match sink_text.trim().to_ascii_lowercase().as_str() {
            "kafka" => SinkKind::Kafka,
            "redis" => SinkKind::Redis,
            "webhook" => SinkKind::Webhook,
            _ => {
                c.fail("sink", &sink_text, "unknown sink", "use kafka, redis or webhook");
                SinkKind::Kafka
            }
        };
        let redis = redis_config(&mut c, sink, &checkpoint_topic, max_in_flight);
        let webhook =
            webhook_config(&mut c, sink, pg.as_ref(), &topic_template, &dlq_topic, max_in_flight);
        if sink == SinkKind::Webhook && exactly_once {
            c.fail(
                "exactly_once",
                "true",
                "the webhook sink delivers at least once",
                "drop exactly_once; receivers deduplicate by the webhook-id header",
            );
        }
        let mut kafka_props: Vec<(String, PropValue)> =
            raw.props.iter().map(|(k, (v, _))| (k.clone(), PropValue::new(k, v.clone()))).collect();
        let kafka_sasl_password_from_file = match sasl_password_from_file(&mut c) {
            Some(password) => {
                kafka_props.push((SASL_PASSWORD_PROP.to_owned(), PropValue::Secret(password)));
                true
            }
            None => false,
        };
        // What `config check` shows: the parsed URL, redacted; secret properties never.
        let mut shown_values = raw.values.clone();
        if let Some((text, _)) = shown_values.get_mut("pg_url") {
            *text = pg.as_ref().map(PgConnectionConfig::redacted).unwrap_or_default();
        }
        if let Some((text, _)) = shown_values.get_mut("webhook_url") {
            // A query string may carry a token.
            if let Some((base, _)) = text.split_once('?') {
                *text = format!("{base}?{REDACTED}");
            }
        }
        if let Some((text, _)) = shown_values.get_mut("redis_url") {
            *text = match &redis {
                Some(r) => tailbox_redis_sink::redacted_url(&r.connection, REDACTED),
                None => REDACTED.to_owned(),
            };
        }
        let shown_props = raw
            .props
            .iter()
            .map(|(k, (v, source))| {
                let shown = if is_secret_prop(k) { REDACTED.to_owned() } else { v.clone() };
                (k.clone(), (shown, source.clone()))
            })
            .collect();
        let topics = TopicOptions::check(&mut c);
        if !c.errors.is_empty() {
            return Err(ConfigErrors(c.errors));
        }
        Ok(Config {
            file: raw.file.clone(),
            pg,
            kafka_sasl_password_from_file,
            slot,
            publication,
            mapping,
            more_tables,
            all_tables,
            sink,
            kafka_brokers,
            redis,
            webhook,
            kafka_props,
            checkpoint_topic,
            dlq_topic,
            message_prefix,
            exactly_once,
            transactional_id,
            status_interval_ms,
            max_in_flight,
            shutdown_timeout_secs,
            accept_slot_position,
            accept_checkpoint_divergence,
            dry_run,
            heartbeat_interval_ms,
            heartbeat_sql,
            metrics_addr,
            progress_interval_secs,
            log_format,
            topics,
            raw: RawView { values: shown_values, props: shown_props },
        })
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Source {
        self.raw.values.get(key).map_or(Source::Default, |(_, s)| s.clone())
    }

    /// The PostgreSQL connection, or the line saying how to give one.
    pub fn pg(&self) -> Result<PgConnectionConfig, ConfigErrors> {
        self.pg.clone().ok_or_else(|| {
            ConfigErrors(vec![
                "pg_url is not set; fix: pass --pg-url, set TAILBOX_PG_URL, or pg_url in the config file (e.g. postgres://tailbox:SECRET@db:5432/app)".into(),
            ])
        })
    }

    /// The outbox table and mapping (already checked).
    pub fn outbox(&self) -> Result<OutboxConfig, ConfigErrors> {
        OutboxConfig::from_mapping(&self.mapping).map_err(|e| ConfigErrors(vec![e.to_string()]))
    }

    /// What the startup checks look for in the outbox table.
    pub fn table_spec(&self) -> Result<OutboxTableSpec, ConfigErrors> {
        Ok(tailbox_pipeline::settings::table_spec(&self.outbox()?))
    }

    /// The Kafka producer configuration, or the line saying kafka_brokers is missing.
    pub fn kafka(&self) -> Result<SinkConfig, ConfigErrors> {
        match &self.kafka_brokers {
            Some(brokers) => Ok(SinkConfig {
                brokers: brokers.clone(),
                properties: self
                    .kafka_props
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
                topics: self.topics.settings(),
            }),
            None => Err(ConfigErrors(vec![
                "kafka_brokers is not set; fix: pass --kafka-brokers, set TAILBOX_KAFKA_BROKERS, or kafka_brokers in the config file (host:port[,host:port…])".into(),
            ])),
        }
    }

    /// Where records go, with that sink's settings.
    pub fn destination(&self) -> Result<Destination, ConfigErrors> {
        match self.sink {
            SinkKind::Kafka => {
                let kafka = self.kafka()?;
                check_kafka_props(&kafka)?;
                Ok(Destination::Kafka(kafka))
            }
            SinkKind::Redis => self.redis.clone().map(|r| Destination::Redis(Box::new(r))).ok_or_else(|| {
                ConfigErrors(vec![
                    "redis_url is not set; fix: pass --redis-url, set TAILBOX_REDIS_URL, or redis_url in the config file (redis://[user:password@]host:port[/db])".into(),
                ])
            }),
            SinkKind::Webhook => self.webhook().map(|w| Destination::Webhook(Box::new(w))),
        }
    }

    /// The webhook sink's settings, or the line saying what is missing.
    pub fn webhook(&self) -> Result<WebhookSinkConfig, ConfigErrors> {
        self.webhook.clone().ok_or_else(|| {
            ConfigErrors(vec![
                "webhook_url is not set (or pg_url is missing); fix: pass --webhook-url, set TAILBOX_WEBHOOK_URL, or webhook_url in the config file (https://host/path/{aggregatetype})".into(),
            ])
        })
    }

    /// How often the checkpoint is written and the slot confirmed.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }

    /// The heartbeat interval, if heartbeats are on.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat_interval_ms > 0).then(|| Duration::from_millis(self.heartbeat_interval_ms))
    }

    /// Whether `metrics_addr` is the built-in default (a busy default port is a
    /// warning; a busy configured one is an error).
    pub fn metrics_addr_is_default(&self) -> bool {
        self.source("metrics_addr") == Source::Default
    }

    /// The effective configuration as TOML (usable as a config file), secrets
    /// redacted, each line commented with its source.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# tailbox: effective configuration (secrets redacted)\n");
        out.push_str("# precedence: flag > environment (TAILBOX_*) > config file > default\n");
        match &self.file {
            Some(path) => out.push_str(&format!("# config file: {}\n", path.display())),
            None => out.push_str("# config file: none (--config / TAILBOX_CONFIG)\n"),
        }
        for spec in KEYS {
            if spec.kind == Kind::Props {
                continue;
            }
            let Some((text, source)) = self.raw.values.get(spec.name) else {
                out.push_str(&format!("# {} is not set\n", spec.name));
                continue;
            };
            let shown = match spec.name {
                // Already the parsed URL, redacted.
                "pg_url" | "redis_url" => toml_string(text),
                _ => match spec.kind {
                    Kind::Int => text.trim().to_owned(),
                    Kind::Bool => {
                        let on = matches!(
                            text.trim().to_ascii_lowercase().as_str(),
                            "true" | "yes" | "on" | "1"
                        );
                        on.to_string()
                    }
                    _ => toml_string(text),
                },
            };
            // Keys a file may not hold are shown commented out, so the output stays a
            // valid config file.
            let comment = if NOT_IN_FILE.iter().any(|(k, _)| *k == spec.name) { "# " } else { "" };
            out.push_str(&format!(
                "{comment}{} = {shown}  # {}\n",
                spec.name,
                source.short(spec.name)
            ));
        }
        out.push_str("\n[kafka_props]\n");
        if self.raw.props.is_empty() && !self.kafka_sasl_password_from_file {
            out.push_str("# none (tailbox's producer defaults apply)\n");
        }
        if self.kafka_sasl_password_from_file {
            out.push_str(&format!(
                "# {} = {}  # from kafka_sasl_password_file\n",
                toml_string(SASL_PASSWORD_PROP),
                toml_string(REDACTED)
            ));
        }
        for (key, (shown, source)) in &self.raw.props {
            out.push_str(&format!(
                "{} = {}  # {}\n",
                toml_string(key),
                toml_string(shown),
                source.short("kafka_props")
            ));
        }
        out
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Lets librdkafka judge every property as it is set (without connecting anywhere);
/// the message names the property and never shows a secret value.
pub fn check_kafka_props(kafka: &SinkConfig) -> Result<(), ConfigErrors> {
    match kafka.producer_config().create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, desc, key, value)) => {
            let shown = if is_secret_prop(&key) { REDACTED.to_owned() } else { value };
            Err(ConfigErrors(vec![format!(
                "invalid kafka_props {key:?} = {shown:?}: {desc}; fix: correct or remove that property (librdkafka's CONFIGURATION.md lists them)"
            )]))
        }
        Err(e) => Err(ConfigErrors(vec![format!(
            "invalid kafka_props: {e}; fix: correct or remove the property it names"
        )])),
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret_prop(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.ends_with(".location") && SECRET_PROP_PARTS.iter().any(|part| key.contains(part))
}

/// Reads `kafka_sasl_password_file`, if set: the password for librdkafka's
/// `sasl.password`, which `kafka_props` must then not set too.
/// Which sink records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Kafka (the default).
    Kafka,
    /// Redis Streams.
    Redis,
    /// HTTP webhooks.
    Webhook,
}

/// The Redis sink's settings, when `sink = redis` and `redis_url` is set.
fn redis_config(
    c: &mut Checker<'_>,
    sink: SinkKind,
    checkpoint_key: &str,
    max_in_flight: u64,
) -> Option<RedisSinkConfig> {
    let url = c.text("redis_url")?;
    let password =
        c.text("redis_password_file").and_then(|file| match std::fs::read_to_string(&file) {
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => {
                c.fail(
                    "redis_password_file",
                    &file,
                    &format!("cannot read it: {e}"),
                    "point redis_password_file at a readable file holding only the password",
                );
                None
            }
        });
    let connection = match tailbox_redis_sink::parse_url(&url, password.as_deref()) {
        Ok(connection) => Some(connection),
        Err(reason) => {
            c.fail("redis_url", REDACTED, &reason, "e.g. redis://tailbox:SECRET@cache:6379/0");
            None
        }
    };
    let ca_pem = c.text("redis_ca").and_then(|file| match std::fs::read(&file) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
            Some(pem)
        }
        Ok(_) => {
            c.fail(
                "redis_ca",
                &file,
                "not a PEM certificate",
                "give the CA certificate in PEM form",
            );
            None
        }
        Err(e) => {
            c.fail(
                "redis_ca",
                &file,
                &format!("cannot read it: {e}"),
                "point redis_ca at a readable PEM file",
            );
            None
        }
    });
    let durability_text = c.string("redis_durability");
    let durability = parse_durability(&durability_text).unwrap_or_else(|| {
        c.fail(
            "redis_durability",
            &durability_text,
            "expected reply, replicas:N[:MS] or aof[:N[:MS]]",
            "e.g. replicas:1:1000 (WAIT for one replica, up to a second)",
        );
        Durability::Reply
    });
    let trim_text = c.string("redis_trim");
    let trim = parse_trim(&trim_text).unwrap_or_else(|| {
        c.fail(
            "redis_trim",
            &trim_text,
            "expected none, maxlen:N or minid-behind:BYTES",
            "e.g. maxlen:1000000",
        );
        None
    });
    (sink == SinkKind::Redis).then_some(())?;
    Some(RedisSinkConfig {
        connection: connection?,
        ca_pem,
        checkpoint_key: checkpoint_key.to_owned(),
        max_buffered: max_in_flight,
        durability,
        trim,
    })
}

/// The webhook sink's settings, when `sink = webhook`, `webhook_url` and `pg_url` are
/// set; every webhook key is checked either way.
fn webhook_config(
    c: &mut Checker<'_>,
    sink: SinkKind,
    pg: Option<&PgConnectionConfig>,
    topic_template: &str,
    dlq_topic: &str,
    max_in_flight: u64,
) -> Option<WebhookSinkConfig> {
    let body_text = c.string("webhook_body");
    let content_type = c.string("webhook_content_type");
    if reqwest_header_value_ok(&content_type).is_none() {
        c.fail(
            "webhook_content_type",
            &content_type,
            "not a header value",
            "e.g. application/json",
        );
    }
    let body = BodyFormat::parse(&body_text, &content_type).or_else(|| {
        c.fail(
            "webhook_body",
            &body_text,
            "expected payload or envelope",
            "use payload or envelope",
        );
        None
    });
    let concurrency = c.int("webhook_concurrency", 1, 1024, false) as usize;
    let max_attempts = c.int("webhook_max_attempts", 1, 1_000_000, true);
    let timeout = Duration::from_millis(c.int("webhook_timeout_ms", 100, 600_000, false));
    let initial = Duration::from_millis(c.int("webhook_backoff_ms", 1, 3_600_000, false));
    let max = Duration::from_millis(c.int("webhook_backoff_max_ms", 1, 3_600_000, false));
    let breaker_failures = c.int("webhook_breaker_failures", 1, 1_000_000, true) as u32;
    let breaker_cooldown =
        Duration::from_millis(c.int("webhook_breaker_cooldown_ms", 1, 3_600_000, false));
    let signing_key =
        c.text("webhook_secret_file").and_then(|file| {
            match std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|t| SigningKey::parse(&t))
            {
                Ok(key) => Some(key),
                Err(reason) => {
                    c.fail(
                        "webhook_secret_file",
                        &file,
                        &reason,
                        "point webhook_secret_file at a file holding only whsec_<base64>",
                    );
                    None
                }
            }
        });
    let mut headers = tailbox_webhook_sink::config::HeaderMap::new();
    if let Some(file) = c.text("webhook_headers_file") {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() || line.trim_start().starts_with('#') {
                        continue;
                    }
                    match parse_header(line) {
                        Ok((name, value)) => {
                            headers.append(name, value);
                        }
                        Err(reason) => c.fail(
                            "webhook_headers_file",
                            &file,
                            &format!("line {}: {reason}", n + 1),
                            "one \"Name: value\" per line",
                        ),
                    }
                }
            }
            Err(e) => c.fail(
                "webhook_headers_file",
                &file,
                &format!("cannot read it: {e}"),
                "point webhook_headers_file at a readable file",
            ),
        }
    }
    let url = c.text("webhook_url").and_then(|text| match UrlTemplate::parse(&text) {
        Ok(url) => Some(url),
        Err(reason) => {
            c.fail(
                "webhook_url",
                REDACTED,
                &reason,
                "e.g. https://hooks.example/outbox/{aggregatetype}",
            );
            None
        }
    });
    let topic_template = TopicTemplate::parse(topic_template).ok();
    if let (Some(url), Some(template)) = (&url, &topic_template)
        && url.has_placeholder()
        && !template.has_placeholder()
    {
        c.fail(
            "webhook_url",
            REDACTED,
            "uses {aggregatetype} but topic_template has none to recover it from",
            "put {aggregatetype} in topic_template too, or drop it from webhook_url",
        );
    }
    (sink == SinkKind::Webhook).then_some(())?;
    Some(WebhookSinkConfig {
        url: url?,
        topic_template: topic_template?,
        body: body?,
        signing_key,
        headers,
        ca_file: c.text("webhook_ca").map(Into::into),
        concurrency,
        max_attempts: (max_attempts > 0).then_some(max_attempts as u32),
        request_timeout: timeout,
        backoff: Backoff { initial, max: max.max(initial) },
        breaker_failures,
        breaker_cooldown,
        max_buffered: max_in_flight,
        dlq_topic: dlq_topic.to_owned(),
        pg: pg?.clone(),
    })
}

fn reqwest_header_value_ok(text: &str) -> Option<()> {
    tailbox_webhook_sink::config::HeaderValue::from_str(text).ok().map(|_| ())
}

/// `reply`, `replicas:N[:MS]`, `aof[:N[:MS]]`.
fn parse_durability(text: &str) -> Option<Durability> {
    let mut parts = text.trim().split(':');
    let kind = parts.next()?.to_ascii_lowercase();
    let replicas = parts.next().map(|n| n.parse::<u32>().ok()).unwrap_or(Some(0))?;
    let timeout =
        Duration::from_millis(parts.next().map(|n| n.parse().ok()).unwrap_or(Some(1000))?);
    if parts.next().is_some() {
        return None;
    }
    match kind.as_str() {
        "reply" if replicas == 0 => Some(Durability::Reply),
        "replicas" if replicas > 0 => Some(Durability::Replicas { replicas, timeout }),
        "aof" => Some(Durability::Aof { replicas, timeout }),
        _ => None,
    }
}

/// `none`, `maxlen:N`, `minid-behind:BYTES`; `Some(None)` is "no trimming".
fn parse_trim(text: &str) -> Option<Option<Trim>> {
    let text = text.trim().to_ascii_lowercase();
    if text == "none" || text.is_empty() {
        return Some(None);
    }
    let (kind, n) = text.split_once(':')?;
    let n = n.parse::<u64>().ok().filter(|n| *n > 0)?;
    match kind {
        "maxlen" => Some(Some(Trim::MaxLen(n))),
        "minid-behind" => Some(Some(Trim::MinIdBehind(n))),
        _ => None,
    }
}

fn sasl_password_from_file(c: &mut Checker<'_>) -> Option<SecretString> {
    let file = c.text("kafka_sasl_password_file")?;
    if let Some((_, source)) = c.raw.props.get(SASL_PASSWORD_PROP) {
        let given = source.label("kafka_props");
        c.fail(
            "kafka_sasl_password_file",
            &file,
            &format!("{given} sets {SASL_PASSWORD_PROP} too"),
            "give the SASL password in one place only: either kafka_sasl_password_file or kafka_props' sasl.password",
        );
        return None;
    }
    match std::fs::read_to_string(&file) {
        Ok(text) if text.trim_end_matches(['\r', '\n']).is_empty() => {
            c.fail(
                "kafka_sasl_password_file",
                &file,
                "the file is empty",
                "write the SASL password into the file (a trailing newline is ignored)",
            );
            None
        }
        Ok(text) => Some(SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned())),
        Err(e) => {
            c.fail(
                "kafka_sasl_password_file",
                &file,
                &format!("cannot read it: {e}"),
                "point kafka_sasl_password_file at a readable file holding only the password",
            );
            None
        }
    }
}

/// Parses `pg_url` once and sets the password from `pg_password_file`, if given.
fn pg_connection(c: &mut Checker<'_>) -> Option<PgConnectionConfig> {
    let url = c.text("pg_url")?;
    let mut pg = match PgConnectionConfig::parse(&url) {
        Ok(pg) => pg,
        Err(e) => {
            // Never echo the URL: it may carry the password.
            let label = c.label("pg_url");
            c.errors.push(format!("{} (from {label})", name_fields(&e.to_string())));
            return None;
        }
    };
    let Some(file) = c.text("pg_password_file") else {
        return Some(pg);
    };
    let password = match std::fs::read_to_string(&file) {
        Ok(text) => SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => {
            c.fail(
                "pg_password_file",
                &file,
                &format!("cannot read it: {e}"),
                "point pg_password_file at a readable file holding only the password",
            );
            return Some(pg);
        }
    };
    if pg.set_password(password).is_err() {
        let shown = pg.redacted();
        c.fail(
            "pg_url",
            &shown,
            "pg_url already carries a password and pg_password_file is set",
            "give the password in one place only: either in pg_url or in pg_password_file",
        );
    }
    Some(pg)
}

/// A library message with each configuration field it names in backticks
/// (`` `pg_password_file` ``) replaced by its flag, environment variable and file key,
/// so the operator reads what to type. Library crates name fields, never flags; this is where a field becomes a flag.
pub fn name_fields(text: &str) -> String {
    let mut out = text.to_owned();
    for spec in KEYS {
        let quoted = format!("`{}`", spec.name);
        if out.contains(&quoted) {
            let file = if NOT_IN_FILE.iter().any(|(k, _)| *k == spec.name) {
                String::new()
            } else {
                format!(", {} in the config file", spec.name)
            };
            let named = format!(
                "{} ({}{file})",
                Source::Flag.label(spec.name),
                Source::Env.label(spec.name)
            );
            out = out.replace(&quoted, &named);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::{Cli, Command};

    /// Parses `args` as `tailbox …` with `env` as the only environment (clap reads
    /// the process environment, so tests use names no one sets and restore them).
    fn load_with(args: &[&str], file: Option<&str>) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["tailbox".to_owned()];
        let dir = std::env::temp_dir().join(format!(
            "tailbox-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if let Some(text) = file {
            std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
            let path = dir.join("tailbox.toml");
            std::fs::write(&path, text).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
            argv.push("--config".into());
            argv.push(path.to_string_lossy().into_owned());
        }
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let sub = match (&cli.command, matches.subcommand()) {
            (Command::Run(_), Some((_, sub))) => sub.clone(),
            (Command::Config(_), Some((_, sub))) => match sub.subcommand() {
                Some((_, leaf)) => leaf.clone(),
                None => sub.clone(),
            },
            (_, Some((_, sub))) => sub.clone(),
            _ => matches.clone(),
        };
        let result = load(&sub);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn errors(result: Result<Config, ConfigErrors>) -> Vec<String> {
        match result {
            Ok(_) => vec![],
            Err(e) => e.0,
        }
    }

    #[test]
    fn every_key_is_a_run_option_with_its_env_variable() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").cloned();
        let Some(run) = run else {
            panic!("no run subcommand");
        };
        for spec in KEYS {
            let arg = run
                .get_arguments()
                .chain(cli.get_arguments())
                .find(|a| a.get_id().as_str() == spec.name);
            let Some(arg) = arg else {
                panic!("key {} has no option", spec.name);
            };
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(
                env,
                Some(format!("TAILBOX_{}", spec.name.to_ascii_uppercase())),
                "{}",
                spec.name
            );
        }
        for arg in run.get_arguments() {
            let id = arg.get_id().as_str();
            assert!(
                KEYS.iter().any(|k| k.name == id) || ["config", "log_format", "help"].contains(&id),
                "option {id} is not a config key"
            );
        }
    }

    #[test]
    fn defaults_apply() -> Result<(), ConfigErrors> {
        let c = load_with(&["run", "--pg-url", "postgres://u@h/db"], None)?;
        assert_eq!(c.slot, "tailbox");
        assert_eq!(c.max_in_flight, 10_000);
        assert_eq!(c.status_interval_ms, 1000);
        assert!(!c.dry_run);
        assert_eq!(c.heartbeat_interval(), None);
        assert_eq!(c.heartbeat_sql, DEFAULT_HEARTBEAT_SQL);
        assert_eq!(c.metrics_addr, DEFAULT_METRICS_ADDR.parse().ok());
        assert!(c.metrics_addr_is_default());
        assert_eq!(c.source("slot"), Source::Default);
        assert!(c.kafka().is_err(), "kafka_brokers has no default");
        Ok(())
    }

    #[test]
    fn flag_beats_file_beats_default() -> Result<(), ConfigErrors> {
        let file = r#"
            pg_url = "postgres://u@h/db"
            slot = "from_file"
            publication = "pub_file"
            max_in_flight = 10
            dry_run = true
            metrics_addr = "127.0.0.1:9999"
            kafka_brokers = "k:9092"
            kafka_props = { "linger.ms" = 10, "acks" = "all" }
        "#;
        let c = load_with(
            &["run", "--slot", "from_flag", "--kafka-prop", "linger.ms=20", "--dry-run=false"],
            Some(file),
        )?;
        assert_eq!(c.slot, "from_flag");
        assert_eq!(c.source("slot"), Source::Flag);
        assert_eq!(c.publication, "pub_file");
        assert!(matches!(c.source("publication"), Source::File(_)));
        assert_eq!(c.max_in_flight, 10);
        assert!(!c.dry_run, "--dry-run=false beats the file");
        assert_eq!(c.metrics_addr, "127.0.0.1:9999".parse().ok());
        assert!(!c.metrics_addr_is_default());
        assert_eq!(c.status_interval_ms, 1000, "default");
        let props: BTreeMap<_, _> = c.kafka_props.iter().cloned().collect();
        assert_eq!(props.get("linger.ms").map(PropValue::expose), Some("20"), "flag wins per key");
        assert_eq!(props.get("acks").map(PropValue::expose), Some("all"), "file key kept");
        Ok(())
    }

    /// The environment sits between flags and the file. Uses variables no one else
    /// sets; tests in this crate do not read them concurrently.
    #[test]
    fn env_beats_file_and_flag_beats_env() -> Result<(), ConfigErrors> {
        let file = "pg_url = \"postgres://u@h/db\"\ncheckpoint_topic = \"file.cp\"\ndlq_topic = \"file.dlq\"\n";
        // Setting variables is unsafe in edition 2024 (other threads read the
        // environment), so point two options at a variable that is always set instead:
        // it stands in for a TAILBOX_* variable.
        let Some(value) = std::env::var_os("PATH") else {
            return Ok(());
        };
        let cmd = Cli::command().mut_subcommand("run", |run| {
            run.mut_arg("checkpoint_topic", |a| a.env("PATH"))
                .mut_arg("dlq_topic", |a| a.env("PATH"))
        });
        let dir = std::env::temp_dir().join(format!("tailbox-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let path = dir.join("t.toml");
        std::fs::write(&path, file).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let matches = cmd
            .try_get_matches_from([
                "tailbox",
                "--config",
                &path.to_string_lossy(),
                "run",
                "--dlq-topic",
                "flag.dlq",
            ])
            .map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let Some((_, sub)) = matches.subcommand() else {
            return Err(ConfigErrors(vec!["no subcommand".into()]));
        };
        let file_values = read_file(&path)?;
        let raw = resolve(sub, &file_values)?;
        let _ = std::fs::remove_dir_all(&dir);
        let (cp, cp_source) = raw.values.get("checkpoint_topic").cloned().unwrap_or_default_pair();
        assert_eq!(cp, value.to_string_lossy(), "env beats the file");
        assert_eq!(cp_source, Source::Env);
        let (dlq, dlq_source) = raw.values.get("dlq_topic").cloned().unwrap_or_default_pair();
        assert_eq!(dlq, "flag.dlq", "flag beats env");
        assert_eq!(dlq_source, Source::Flag);
        Ok(())
    }

    trait OrDefaultPair {
        fn unwrap_or_default_pair(self) -> (String, Source);
    }

    impl OrDefaultPair for Option<(String, Source)> {
        fn unwrap_or_default_pair(self) -> (String, Source) {
            self.unwrap_or((String::new(), Source::Default))
        }
    }

    #[test]
    fn unknown_file_keys_are_named_with_a_fix() {
        let errs = errors(load_with(
            &["run"],
            Some("pg_url = \"postgres://u@h/db\"\nkafka_broker = \"k:9092\"\n"),
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("unknown key \"kafka_broker\""), "{}", errs[0]);
        assert!(errs[0].contains("did you mean kafka_brokers?"), "{}", errs[0]);
        assert!(errs[0].contains("fix:"), "{}", errs[0]);
        let errs = errors(load_with(&["run"], Some("accept_slot_position = true\n")));
        assert!(
            errs[0].contains("accept_slot_position") && errs[0].contains("--accept-slot-position"),
            "{errs:?}"
        );
        let errs = errors(load_with(&["run"], Some("slot = [1, 2]\n")));
        assert!(errs[0].contains("slot") && errs[0].contains("fix:"), "{errs:?}");
        let errs = errors(load_with(&["run"], Some("slot = \n")));
        assert!(errs[0].contains("not valid TOML") && errs[0].contains("line 1"), "{errs:?}");
    }

    #[test]
    fn every_invalid_value_gets_one_line_naming_field_value_and_fix() {
        let errs = errors(load_with(
            &[
                "run",
                "--pg-url",
                "postgres://u@h/db",
                "--max-in-flight",
                "lots",
                "--status-interval-ms",
                "5",
                "--slot",
                "Bad-Slot",
                "--metrics-addr",
                "nowhere",
                "--heartbeat-interval-ms",
                "50",
            ],
            Some("dlq_topic = \"bad topic\"\nlog_format = \"yaml\"\n"),
        ));
        assert_eq!(errs.len(), 7, "{errs:#?}");
        for (needle, value) in [
            ("--max-in-flight", "\"lots\""),
            ("--status-interval-ms", "\"5\""),
            ("--slot", "\"Bad-Slot\""),
            ("--metrics-addr", "\"nowhere\""),
            ("--heartbeat-interval-ms", "\"50\""),
            ("dlq_topic in ", "\"bad topic\""),
            ("log_format in ", "\"yaml\""),
        ] {
            let line = errs.iter().find(|l| l.contains(needle));
            assert!(
                line.is_some_and(|l| l.contains(value) && l.contains("fix:") && !l.contains('\n')),
                "{needle}: {errs:#?}"
            );
        }
    }

    #[test]
    fn metrics_addr_empty_disables() -> Result<(), ConfigErrors> {
        let c = load_with(&["run", "--metrics-addr", ""], None)?;
        assert_eq!(c.metrics_addr, None);
        Ok(())
    }

    #[test]
    fn per_table_mappings_from_flags_and_the_files_tables() -> Result<(), ConfigErrors> {
        let file = r#"
            outbox_table = "customer.outbox"
            exclude_columns = "status, published"
            meta_headers = "lsn"
            [[tables]]
            table = "product.outbox"
            column_payload = "body"
            topic_column = "destination_topic"
            format = "cloudevents"
        "#;
        let c = load_with(&["config", "check", "--key-column", "partition_key"], Some(file))?;
        assert_eq!(c.mapping.key_column.as_deref(), Some("partition_key"));
        assert_eq!(c.mapping.exclude_columns, ["status", "published"]);
        assert_eq!(c.mapping.meta_headers, MetaHeaders::LSN);
        let [product] = c.more_tables.as_slice() else { panic!("one more table") };
        assert_eq!((product.schema.as_str(), product.table.as_str()), ("product", "outbox"));
        assert!(product.cloudevents.is_some());
        let err = load_with(&["config", "check"], Some("[[tables]]\ntabel = \"x\"\n"))
            .expect_err("unknown key in [[tables]]")
            .to_string();
        assert!(err.contains("tabel") && err.contains("[[tables]]"), "{err}");
        let err = load_with(&["config", "check", "--meta-headers", "lsn,id"], None)
            .expect_err("unknown meta header")
            .to_string();
        assert!(err.contains("--meta-headers") && err.contains("\"id\""), "{err}");
        Ok(())
    }

    #[test]
    fn redacts_secrets() -> Result<(), ConfigErrors> {
        let file = r#"
            pg_url = "postgres://app:hunter2@db:5432/shop?password=also&sslmode=disable"
            kafka_brokers = "k:9092"
            [kafka_props]
            "sasl.password" = "s3cr3t"
            "sasl.jaas.config" = "org.apache... password=\"x\";"
            "ssl.key.pem" = "-----BEGIN"
            "client.secret.value" = "abc"
            "linger.ms" = "10"
        "#;
        let c = load_with(&["config", "check"], Some(file))?;
        let text = c.render();
        for secret in ["hunter2", "also", "s3cr3t", "BEGIN", "abc", "org.apache"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("postgres://app:REDACTED@db:5432/shop?sslmode=disable"), "{text}");
        assert!(!format!("{c:?}").contains("s3cr3t"), "Debug shows no secret");
        assert!(text.contains("\"linger.ms\" = \"10\""), "{text}");
        assert!(text.contains("slot = \"tailbox\"  # default"), "{text}");
        // The rendered config is itself a valid config file.
        let reparsed = parse_file(Path::new("rendered.toml"), &text.replace(REDACTED, "x"));
        assert!(reparsed.is_ok(), "{reparsed:?}");
        Ok(())
    }

    #[test]
    fn shows_tls_paths_and_every_host_but_no_password() -> Result<(), ConfigErrors> {
        let url = "postgres://app:pw@db1:5432,db2:5433/shop?target_session_attrs=read-write&sslmode=prefer&sslrootcert=/etc/ca.crt";
        let c = load_with(&["config", "check", "--pg-url", url], None)?;
        let text = c.render();
        assert!(
            text.contains(&format!(
                "pg_url = \"postgres://app:{REDACTED}@db1:5432,db2:5433/shop?target_session_attrs=read-write&sslmode=prefer&sslrootcert=/etc/ca.crt\""
            )),
            "{text}"
        );
        let c = load_with(&["run", "--pg-url", "host=db user=app password='a b' dbname=x"], None)?;
        let text = c.render();
        assert!(!text.contains("a b") && text.contains("app:REDACTED@db/x"), "{text}");
        let errs = errors(load_with(
            &["run", "--pg-url", "postgres://u:hunter2@h/db?sslpassword=k3y"],
            None,
        ));
        assert!(
            errs.len() == 1 && errs[0].contains("--pg-url") && errs[0].contains("fix:"),
            "{errs:?}"
        );
        assert!(!errs[0].contains("hunter2") && !errs[0].contains("k3y"), "{errs:?}");
        Ok(())
    }

    #[test]
    fn library_fields_become_flags() {
        assert_eq!(
            name_fields("then start once with `accept_slot_position`; `slot` and `nonesuch`"),
            "then start once with --accept-slot-position (TAILBOX_ACCEPT_SLOT_POSITION); \
             --slot (TAILBOX_SLOT, slot in the config file) and `nonesuch`"
        );
    }

    #[test]
    fn password_file_goes_into_the_url() -> Result<(), ConfigErrors> {
        let dir = std::env::temp_dir().join(format!("tailbox-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let pw = dir.join("pw");
        std::fs::write(&pw, "p@ss:w/rd\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let pw = pw.to_string_lossy().into_owned();
        let c = load_with(
            &["run", "--pg-url", "postgres://app@db:5432/shop", "--pg-password-file", &pw],
            None,
        )?;
        assert!(c.pg()?.has_password(), "the file's password is set");
        assert!(!c.render().contains("p@ss") && !c.render().contains("p%40ss"));
        assert!(!format!("{c:?}").contains("p@ss"), "Debug shows no secret");
        let errs = errors(load_with(
            &["run", "--pg-url", "postgres://app:x@db/shop", "--pg-password-file", &pw],
            None,
        ));
        assert!(errs.len() == 1 && errs[0].contains("one place"), "{errs:?}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn kafka_sasl_password_file_sets_sasl_password_and_is_never_shown() -> Result<(), ConfigErrors>
    {
        let dir = std::env::temp_dir().join(format!("tailbox-kpw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let pw = dir.join("pw");
        std::fs::write(&pw, "k@fka,pa=ss\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let pw = pw.to_string_lossy().into_owned();
        let args = [
            "run",
            "--kafka-brokers",
            "k:9093",
            "--kafka-prop",
            "security.protocol=SASL_SSL",
            "--kafka-prop",
            "sasl.mechanism=SCRAM-SHA-256",
            "--kafka-prop",
            "sasl.username=tailbox",
            "--kafka-sasl-password-file",
            &pw,
        ];
        let c = load_with(&args, None)?;
        let kafka = c.kafka()?;
        assert!(
            kafka.properties.contains(&("sasl.password".into(), "k@fka,pa=ss".into())),
            "{:?}",
            kafka.properties.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        assert!(c.kafka_sasl_password_from_file);
        assert!(check_kafka_props(&kafka).is_ok());
        let text = c.render();
        assert!(!text.contains("k@fka"), "{text}");
        assert!(text.contains(&format!("kafka_sasl_password_file = \"{pw}\"")), "{text}");
        assert!(
            text.contains("# \"sasl.password\" = \"REDACTED\"  # from kafka_sasl_password_file"),
            "{text}"
        );
        // In the file too, and both places at once is refused without echoing either.
        let c = load_with(
            &["run", "--kafka-brokers", "k:9093"],
            Some(&format!("kafka_sasl_password_file = \"{pw}\"\n")),
        )?;
        assert!(c.kafka()?.properties.iter().any(|(k, _)| k == "sasl.password"));
        let errs = errors(load_with(
            &[&args[..], &["--kafka-prop", "sasl.password=other-S3cret"]].concat(),
            None,
        ));
        assert!(errs.len() == 1 && errs[0].contains("one place"), "{errs:?}");
        assert!(!errs[0].contains("k@fka") && !errs[0].contains("S3cret"), "{errs:?}");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let errs = errors(load_with(
            &["run", "--kafka-sasl-password-file", &empty.to_string_lossy()],
            None,
        ));
        assert!(errs.len() == 1 && errs[0].contains("empty"), "{errs:?}");
        let errs =
            errors(load_with(&["run", "--kafka-sasl-password-file", "/nonexistent/pw"], None));
        assert!(errs.len() == 1 && errs[0].contains("cannot read"), "{errs:?}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn kafka_secret_props_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "ssl_key",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.jaas.config",
        ] {
            assert!(is_secret_prop(key), "{key}");
        }
        for key in [
            "sasl.username",
            "sasl.mechanism",
            "security.protocol",
            "ssl.ca.location",
            "ssl.key.location",
            "ssl.keystore.location",
            "ssl.certificate.location",
            "ssl.endpoint.identification.algorithm",
        ] {
            assert!(!is_secret_prop(key), "{key}");
        }
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(strsim::levenshtein("slto", "slot"), 2);
        assert_eq!(closest_key("kafka_broker"), Some("kafka_brokers"));
        assert_eq!(closest_key("zzzzzzzzzz"), None);
    }
}

//! The validated configuration: [`load`](crate::load) merges flags, environment
//! (`TAILBOX_*`), the TOML file and the defaults per key; [`Config::validate`] checks
//! the result and builds what the rest of the binary uses.
//!
//! Every problem, wherever its value came from, is one line naming the key as it was
//! given (`--max-in-flight`, `TAILBOX_MAX_IN_FLIGHT`, `max_in_flight in FILE`), the
//! value and the fix; all of them are reported at once. Secrets are held as
//! `SecretString` and shown as [`REDACTED`]: `pg_url`'s password, secret `kafka_props`
//! ([`is_secret_prop`]), the Redis password and a webhook URL's query string.

mod sinks;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fmt::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::ArgMatches;
use secrecy::{ExposeSecret, SecretString};
use tailbox_kafka_sink::SinkConfig;
use tailbox_outbox::{ColumnNames, OutboxConfig, PayloadFormat};
use tailbox_pipeline::settings::Destination;
use tailbox_redis_sink::RedisSinkConfig;
use tailbox_replication::{OutboxTableSpec, PgConnectionConfig};
use tailbox_webhook_sink::WebhookSinkConfig;

pub use crate::load::{ConfigErrors, Source};
use crate::{
    load::Loaded,
    logging::LogFormat,
    options::{Settings, SinkKind, keys},
};

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
    pub outbox_table: String,
    pub columns: ColumnNames,
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
    pub topic_template: String,
    pub checkpoint_topic: String,
    pub dlq_topic: String,
    pub message_prefix: String,
    pub payload_format: PayloadFormat,
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
    pub topics: TopicCreation,
    shown: Shown,
}

/// How missing destination and dead-letter topics are created (`create_topics`,
/// `topic_partitions`, `topic_replication_factor`, `topic_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicCreation {
    pub create: bool,
    /// 0 = the broker's default.
    pub partitions: u64,
    /// 0 = the broker's default.
    pub replication_factor: u64,
    pub configs: Vec<(String, String)>,
}

impl TopicCreation {
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

/// What `config check` prints: every key's effective value as TOML (secrets already
/// redacted) and where it came from.
#[derive(Debug, Clone, Default)]
struct Shown {
    values: BTreeMap<String, String>,
    props: BTreeMap<String, String>,
    sources: BTreeMap<String, Source>,
}

/// Reads the config file (if `--config`/`TAILBOX_CONFIG` names one), merges it with
/// `given` (what clap parsed; `matches` tells flags from variables) and validates.
pub fn load(
    file: Option<&Path>,
    given: &Settings,
    matches: &ArgMatches,
) -> Result<Config, ConfigErrors> {
    Config::validate(crate::load::load(file, given, matches)?)
}

/// Checks values one by one, collecting every problem.
pub(crate) struct Checker<'a> {
    sources: &'a BTreeMap<String, Source>,
    errors: Vec<String>,
}

impl Checker<'_> {
    /// `key` as it was given: `--slot`, `TAILBOX_SLOT`, `slot in FILE`.
    fn label(&self, key: &str) -> String {
        debug_assert!(crate::options::key(key).is_some(), "{key} is not an option");
        self.sources.get(key).map_or_else(|| key.to_owned(), |s| s.label(key))
    }

    fn fail(&mut self, key: &str, value: &str, reason: &str, fix: &str) {
        let line = format!("invalid {} {value:?}: {reason}; fix: {fix}", self.label(key));
        self.errors.push(line);
    }

    /// A whole number in `min..=max` (or 0 where that means off).
    fn int(&mut self, key: &str, value: Option<u64>, min: u64, max: u64, zero_ok: bool) -> u64 {
        let n = value.unwrap_or_default();
        if (n == 0 && zero_ok) || (min..=max).contains(&n) {
            return n;
        }
        let range =
            if zero_ok { format!("0 (off) or {min} to {max}") } else { format!("{min} to {max}") };
        self.fail(
            key,
            &n.to_string(),
            &format!("expected a whole number, {range}"),
            &format!("set {key} to a number in that range"),
        );
        0
    }

    /// A slot or publication name as written in SQL (`pub`, `"Pub-1"`): the name it
    /// stands for. Slot names are further limited by PostgreSQL to a-z, 0-9 and _.
    fn identifier(&mut self, key: &str, text: &str) -> String {
        let name = match tailbox_outbox::identifier::parse_name(text) {
            Ok(name) => name,
            Err(reason) => {
                self.fail(key, text, &reason, "e.g. tailbox, or \"Pub-1\" (quoted as in SQL)");
                return text.to_owned();
            }
        };
        if name.len() > 63 {
            self.fail(key, text, "longer than 63 bytes", "use a shorter name");
        } else if key == "slot"
            && tailbox_replication::control::validate_identifier(key, &name).is_err()
        {
            self.fail(
                key,
                text,
                "not a valid slot name",
                "use 1 to 63 characters of a-z, 0-9 and _",
            );
        }
        name
    }

    fn topic(&mut self, key: &str, text: &str) -> String {
        if let Err(reason) = tailbox_outbox::topic::validate_topic(text) {
            self.fail(key, text, &reason, "use letters, digits, '.', '_', '-'");
        }
        text.to_owned()
    }

    /// A value that must not be blank.
    fn non_empty(&mut self, key: &str, text: &str, fix: &str) {
        if text.trim().is_empty() {
            self.fail(key, text, "empty", fix);
        }
    }
}

impl Config {
    /// Checks the merged settings; every problem (the file's too) in one error.
    fn validate(loaded: Loaded) -> Result<Config, ConfigErrors> {
        let Loaded { settings, values, sources, file, errors } = loaded;
        let mut c = Checker { sources: &sources, errors };
        let o = &settings.pipeline;
        let (pg_options, topic_options) = (&settings.pg, &settings.topics);
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let slot = c.identifier("slot", &text(&pg_options.slot));
        let publication = c.identifier("publication", &text(&pg_options.publication));
        let columns = ColumnNames {
            id: text(&pg_options.column_id),
            aggregate_type: text(&pg_options.column_aggregate_type),
            aggregate_id: text(&pg_options.column_aggregate_id),
            event_type: text(&pg_options.column_type),
            payload: text(&pg_options.column_payload),
        };
        let outbox_table = text(&pg_options.outbox_table);
        let topic_template = text(&o.topic_template);
        if let Err(e) = OutboxConfig::new(&outbox_table, columns.clone(), &topic_template) {
            // The outbox crate names the flag; name the key as it was given.
            let name = e.field.trim_start_matches("--").replace('-', "_");
            let key = crate::options::key(&name).map_or("outbox_table", |k| k.name.as_str());
            c.fail(key, &e.value, &e.reason, &e.fix);
        }
        let checkpoint_topic = c.topic("checkpoint_topic", &text(&settings.kafka.checkpoint_topic));
        let dlq_topic = c.topic("dlq_topic", &text(&o.dlq_topic));
        let message_prefix = text(&o.message_prefix);
        c.non_empty(
            "message_prefix",
            &message_prefix,
            "use the prefix your application passes to pg_logical_emit_message, e.g. outbox",
        );
        let payload_text = text(&o.payload_format);
        let payload_format = PayloadFormat::parse(&payload_text).unwrap_or_else(|| {
            c.fail("payload_format", &payload_text, "unknown format", "use raw or json");
            PayloadFormat::Raw
        });
        let exactly_once = o.exactly_once.unwrap_or_default();
        if let Some(id) = &o.transactional_id {
            c.non_empty(
                "transactional_id",
                id,
                "leave it unset (derived from the system identifier, slot and database) or give a name unique to this slot",
            );
        }
        let status_interval_ms =
            c.int("status_interval_ms", o.status_interval_ms, 10, 60_000, false);
        let max_in_flight = c.int("max_in_flight", o.max_in_flight, 1, 1_000_000, false);
        let shutdown_timeout_secs =
            c.int("shutdown_timeout_secs", o.shutdown_timeout_secs, 0, 86_400, true);
        let heartbeat_interval_ms =
            c.int("heartbeat_interval_ms", o.heartbeat_interval_ms, 100, 86_400_000, true);
        let heartbeat_sql = text(&o.heartbeat_sql);
        c.non_empty(
            "heartbeat_sql",
            &heartbeat_sql,
            "leave heartbeat_sql unset for the default pg_logical_emit_message, or give a statement",
        );
        let metrics_text = text(&o.metrics_addr);
        let metrics_addr = match metrics_text.trim() {
            "" => None,
            addr => addr.parse::<SocketAddr>().ok().or_else(|| {
                c.fail(
                    "metrics_addr",
                    &metrics_text,
                    "expected IP:PORT",
                    "e.g. 0.0.0.0:8245 or 127.0.0.1:9000; '' turns the endpoint off",
                );
                None
            }),
        };
        let progress_interval_secs =
            c.int("progress_interval_secs", o.progress_interval_secs, 1, 86_400, true);
        let kafka_brokers = settings.kafka.kafka_brokers.clone();
        if let Some(brokers) = &kafka_brokers {
            c.non_empty("kafka_brokers", brokers, "give host:port of at least one broker");
        }
        let pg = sinks::pg_connection(&mut c, pg_options);
        let sink = settings.sink.sink.unwrap_or(SinkKind::Kafka);
        let redis =
            sinks::redis_config(&mut c, sink, &settings.redis, &checkpoint_topic, max_in_flight);
        let webhook = sinks::webhook_config(
            &mut c,
            sink,
            &settings.webhook,
            pg.as_ref(),
            &topic_template,
            &dlq_topic,
            max_in_flight,
        );
        if sink == SinkKind::Webhook && exactly_once {
            c.fail(
                "exactly_once",
                "true",
                "the webhook sink delivers at least once",
                "drop exactly_once; receivers deduplicate by the webhook-id header",
            );
        }
        // Merged per property already (one entry each, file first, flags on top).
        let mut kafka_props: Vec<(String, PropValue)> = (settings.kafka.kafka_props.iter())
            .map(|(k, v)| (k.clone(), PropValue::new(k, v.clone())))
            .collect();
        let kafka_sasl_password_from_file =
            match sinks::sasl_password_from_file(&mut c, &settings.kafka) {
                Some(password) => {
                    kafka_props.push((SASL_PASSWORD_PROP.to_owned(), PropValue::Secret(password)));
                    true
                }
                None => false,
            };
        let topics = TopicCreation {
            create: topic_options.create_topics.unwrap_or(true),
            partitions: c.int("topic_partitions", topic_options.topic_partitions, 1, 100_000, true),
            replication_factor: c.int(
                "topic_replication_factor",
                topic_options.topic_replication_factor,
                1,
                32_767,
                true,
            ),
            configs: topic_options.topic_config.clone(),
        };
        if !c.errors.is_empty() {
            return Err(ConfigErrors(c.errors));
        }
        let shown = Shown::new(values, &sources, pg.as_ref(), redis.as_ref());
        Ok(Config {
            file,
            pg,
            kafka_sasl_password_from_file,
            slot,
            publication,
            outbox_table,
            columns,
            sink,
            kafka_brokers,
            redis,
            webhook,
            kafka_props,
            topic_template,
            checkpoint_topic,
            dlq_topic,
            message_prefix,
            payload_format,
            exactly_once,
            transactional_id: o.transactional_id.clone(),
            status_interval_ms,
            max_in_flight,
            shutdown_timeout_secs,
            accept_slot_position: settings.one_start.accept_slot_position.unwrap_or_default(),
            accept_checkpoint_divergence: settings
                .one_start
                .accept_checkpoint_divergence
                .unwrap_or_default(),
            dry_run: o.dry_run.unwrap_or_default(),
            heartbeat_interval_ms,
            heartbeat_sql,
            metrics_addr,
            progress_interval_secs,
            log_format: settings.global.log_format.unwrap_or(LogFormat::Text),
            topics,
            shown,
        })
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Source {
        self.shown.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// The PostgreSQL connection, or the line saying how to give one.
    pub fn pg(&self) -> Result<PgConnectionConfig, ConfigErrors> {
        self.pg
            .clone()
            .ok_or_else(|| missing("pg_url", "e.g. postgres://tailbox:SECRET@db:5432/app"))
    }

    /// The outbox table and mapping (already checked).
    pub fn outbox(&self) -> Result<OutboxConfig, ConfigErrors> {
        let mut outbox =
            OutboxConfig::new(&self.outbox_table, self.columns.clone(), &self.topic_template)
                .map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        outbox.payload_format = self.payload_format;
        Ok(outbox)
    }

    /// What the startup checks look for in the outbox table.
    pub fn table_spec(&self) -> Result<OutboxTableSpec, ConfigErrors> {
        let outbox = self.outbox()?;
        Ok(OutboxTableSpec {
            schema: outbox.schema.clone(),
            table: outbox.table.clone(),
            required_columns: outbox.required_columns(),
        })
    }

    /// The Kafka producer configuration, or the line saying kafka_brokers is missing.
    pub fn kafka(&self) -> Result<SinkConfig, ConfigErrors> {
        let brokers = self
            .kafka_brokers
            .clone()
            .ok_or_else(|| missing("kafka_brokers", "host:port[,host:port…]"))?;
        Ok(SinkConfig {
            brokers,
            properties: self
                .kafka_props
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            topics: self.topics.settings(),
        })
    }

    /// Where records go, with that sink's settings.
    pub fn destination(&self) -> Result<Destination, ConfigErrors> {
        match self.sink {
            SinkKind::Kafka => {
                let kafka = self.kafka()?;
                check_kafka_props(&kafka)?;
                Ok(Destination::Kafka(kafka))
            }
            SinkKind::Redis => self
                .redis
                .clone()
                .map(|r| Destination::Redis(Box::new(r)))
                .ok_or_else(|| missing("redis_url", "redis://[user:password@]host:port[/db]")),
            SinkKind::Webhook => self.webhook().map(|w| Destination::Webhook(Box::new(w))),
        }
    }

    /// The webhook sink's settings, or the line saying what is missing.
    pub fn webhook(&self) -> Result<WebhookSinkConfig, ConfigErrors> {
        self.webhook.clone().ok_or_else(|| match &self.pg {
            // The webhook sink keeps its checkpoint and dead letters in PostgreSQL.
            None if self.sink == SinkKind::Webhook => {
                self.pg().err().unwrap_or_else(|| missing("pg_url", ""))
            }
            _ => missing("webhook_url", "https://host/path/{aggregatetype}"),
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
            Some(path) => _ = writeln!(out, "# config file: {}", path.display()),
            None => out.push_str("# config file: none (--config / TAILBOX_CONFIG)\n"),
        }
        for key in keys().iter().filter(|k| k.name != "kafka_props") {
            let Some(shown) = self.shown.values.get(&key.name) else {
                _ = writeln!(out, "# {} is not set", key.name);
                continue;
            };
            // Keys a file may not hold are shown commented out, so the output stays a
            // valid config file.
            let comment = if key.in_file { "" } else { "# " };
            let source = self.source(&key.name).short(&key.name);
            _ = writeln!(out, "{comment}{} = {shown}  # {source}", key.name);
        }
        // Settings only the file can give (nested tables), after the options.
        for (name, shown) in &self.shown.values {
            if crate::options::key(name).is_none() {
                _ = writeln!(out, "{name} = {shown}  # {}", self.source(name).short(name));
            }
        }
        out.push_str("\n[kafka_props]\n");
        if self.shown.props.is_empty() && !self.kafka_sasl_password_from_file {
            out.push_str("# none (tailbox's producer defaults apply)\n");
        }
        if self.kafka_sasl_password_from_file {
            _ = writeln!(
                out,
                "# {} = {}  # from kafka_sasl_password_file",
                toml_string(SASL_PASSWORD_PROP),
                toml_string(REDACTED)
            );
        }
        for (prop, shown) in &self.shown.props {
            let source = self.source(&format!("kafka_props.{prop}")).short("kafka_props");
            _ = writeln!(out, "{} = {shown}  # {source}", toml_string(prop));
        }
        out
    }
}

impl Shown {
    /// The merged values as `config check` shows them: the parsed URLs redacted,
    /// secret properties never.
    fn new(
        mut values: toml::Table,
        sources: &BTreeMap<String, Source>,
        pg: Option<&PgConnectionConfig>,
        redis: Option<&RedisSinkConfig>,
    ) -> Shown {
        let props = match values.remove("kafka_props") {
            Some(toml::Value::Table(props)) => props
                .into_iter()
                .map(|(prop, value)| {
                    let shown = match value {
                        _ if is_secret_prop(&prop) => toml_string(REDACTED),
                        toml::Value::String(text) => toml_string(&text),
                        other => toml_string(&other.to_string()),
                    };
                    (prop, shown)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut shown: BTreeMap<String, String> =
            values.into_iter().map(|(key, value)| (key, value.to_string())).collect();
        if let Some(text) = shown.get_mut("pg_url") {
            *text = toml_string(&pg.map(PgConnectionConfig::redacted).unwrap_or_default());
        }
        if let Some(text) = shown.get_mut("redis_url") {
            *text = toml_string(&match redis {
                Some(r) => tailbox_redis_sink::redacted_url(&r.connection, REDACTED),
                None => REDACTED.to_owned(),
            });
        }
        if let Some(text) = shown.get_mut("webhook_url") {
            // A query string may carry a token.
            if let Some((base, _)) = text.trim_matches('"').split_once('?') {
                *text = toml_string(&format!("{base}?{REDACTED}"));
            }
        }
        Shown { values: shown, props, sources: sources.clone() }
    }
}

/// The line saying a required key is not set and how to set it.
fn missing(name: &str, example: &str) -> ConfigErrors {
    let (flag, env) = match crate::options::key(name) {
        Some(key) => (key.flag.clone(), key.env.clone()),
        None => (name.to_owned(), crate::options::env_name(name)),
    };
    ConfigErrors(vec![format!(
        "{name} is not set; fix: pass {flag}, set {env}, or {name} in the config file ({example})"
    )])
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

/// A library message with each configuration field it names in backticks
/// (`` `pg_password_file` ``) replaced by its flag, environment variable and file key,
/// so the operator reads what to type. Library crates name fields, never flags; this is
/// where a field becomes a flag.
pub fn name_fields(text: &str) -> String {
    let mut out = text.to_owned();
    for key in keys() {
        let quoted = format!("`{}`", key.name);
        if out.contains(&quoted) {
            let file = if key.in_file {
                format!(", {} in the config file", key.name)
            } else {
                String::new()
            };
            out = out.replace(&quoted, &format!("{} ({}{file})", key.flag, key.env));
        }
    }
    out
}

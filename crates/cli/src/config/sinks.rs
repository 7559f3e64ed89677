//! The checks that build a connection or a sink's settings: `pg_url` with
//! `pg_password_file`, the Redis and webhook sinks, the Kafka SASL password file.
//! Each reads the files it names and reports problems through the [`Checker`].

use std::time::Duration;

use secrecy::SecretString;
use tailbox_outbox::TopicTemplate;
use tailbox_redis_sink::{Durability, RedisSinkConfig, Trim};
use tailbox_replication::PgConnectionConfig;
use tailbox_webhook_sink::{
    Backoff, BodyFormat, SigningKey, UrlTemplate, WebhookSinkConfig, parse_header,
};

use super::{Checker, REDACTED, SASL_PASSWORD_PROP, name_fields};
use crate::options::{KafkaOptions, PgOptions, RedisOptions, SinkKind, WebhookOptions};

/// Reads the file of a secret: its text without the trailing newline.
fn read_secret(c: &mut Checker<'_>, key: &str, file: &str, what: &str) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => {
            c.fail(
                key,
                file,
                &format!("cannot read it: {e}"),
                &format!("point {key} at a readable file holding only the {what}"),
            );
            None
        }
    }
}

/// Parses `pg_url` once and sets the password from `pg_password_file`, if given.
pub(super) fn pg_connection(c: &mut Checker<'_>, o: &PgOptions) -> Option<PgConnectionConfig> {
    let url = o.pg_url.as_deref()?;
    let mut pg = match PgConnectionConfig::parse(url) {
        Ok(pg) => pg,
        Err(e) => {
            // Never echo the URL: it may carry the password.
            let label = c.label("pg_url");
            c.errors.push(format!("{} (from {label})", name_fields(&e.to_string())));
            return None;
        }
    };
    let Some(file) = &o.pg_password_file else {
        return Some(pg);
    };
    let password = read_secret(c, "pg_password_file", file, "password")?;
    if pg.set_password(SecretString::from(password)).is_err() {
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

/// Reads `kafka_sasl_password_file`, if set: the password for librdkafka's
/// `sasl.password`, which `kafka_props` must then not set too.
pub(super) fn sasl_password_from_file(
    c: &mut Checker<'_>,
    o: &KafkaOptions,
) -> Option<SecretString> {
    let file = o.kafka_sasl_password_file.as_deref()?;
    if o.kafka_props.iter().any(|(k, _)| k == SASL_PASSWORD_PROP) {
        let given = c
            .sources
            .get(&format!("kafka_props.{SASL_PASSWORD_PROP}"))
            .map_or_else(|| "kafka_props".to_owned(), |s| s.label("kafka_props"));
        c.fail(
            "kafka_sasl_password_file",
            file,
            &format!("{given} sets {SASL_PASSWORD_PROP} too"),
            "give the SASL password in one place only: either kafka_sasl_password_file or kafka_props' sasl.password",
        );
        return None;
    }
    let password = read_secret(c, "kafka_sasl_password_file", file, "password")?;
    if password.is_empty() {
        c.fail(
            "kafka_sasl_password_file",
            file,
            "the file is empty",
            "write the SASL password into the file (a trailing newline is ignored)",
        );
        return None;
    }
    Some(SecretString::from(password))
}

/// The Redis sink's settings, when `sink = redis` and `redis_url` is set; every Redis
/// key is checked either way.
pub(super) fn redis_config(
    c: &mut Checker<'_>,
    sink: SinkKind,
    o: &RedisOptions,
    checkpoint_key: &str,
    max_in_flight: u64,
) -> Option<RedisSinkConfig> {
    let url = o.redis_url.as_deref()?;
    let password = o
        .redis_password_file
        .as_deref()
        .and_then(|file| read_secret(c, "redis_password_file", file, "password"));
    let connection = match tailbox_redis_sink::parse_url(url, password.as_deref()) {
        Ok(connection) => Some(connection),
        Err(reason) => {
            c.fail("redis_url", REDACTED, &reason, "e.g. redis://tailbox:SECRET@cache:6379/0");
            None
        }
    };
    let ca_pem = o.redis_ca.as_deref().and_then(|file| match std::fs::read(file) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
            Some(pem)
        }
        Ok(_) => {
            c.fail(
                "redis_ca",
                file,
                "not a PEM certificate",
                "give the CA certificate in PEM form",
            );
            None
        }
        Err(e) => {
            c.fail(
                "redis_ca",
                file,
                &format!("cannot read it: {e}"),
                "point redis_ca at a readable PEM file",
            );
            None
        }
    });
    let durability_text = o.redis_durability.clone().unwrap_or_default();
    let durability = parse_durability(&durability_text).unwrap_or_else(|| {
        c.fail(
            "redis_durability",
            &durability_text,
            "expected reply, replicas:N[:MS] or aof[:N[:MS]]",
            "e.g. replicas:1:1000 (WAIT for one replica, up to a second)",
        );
        Durability::Reply
    });
    let trim_text = o.redis_trim.clone().unwrap_or_default();
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
pub(super) fn webhook_config(
    c: &mut Checker<'_>,
    sink: SinkKind,
    o: &WebhookOptions,
    pg: Option<&PgConnectionConfig>,
    topic_template: &str,
    dlq_topic: &str,
    max_in_flight: u64,
) -> Option<WebhookSinkConfig> {
    let body_text = o.webhook_body.clone().unwrap_or_default();
    let content_type = o.webhook_content_type.clone().unwrap_or_default();
    if tailbox_webhook_sink::config::HeaderValue::from_str(&content_type).is_err() {
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
    let concurrency = c.int("webhook_concurrency", o.webhook_concurrency, 1, 1024, false) as usize;
    let max_attempts = c.int("webhook_max_attempts", o.webhook_max_attempts, 1, 1_000_000, true);
    let ms = |n: u64| Duration::from_millis(n);
    let timeout = ms(c.int("webhook_timeout_ms", o.webhook_timeout_ms, 100, 600_000, false));
    let initial = ms(c.int("webhook_backoff_ms", o.webhook_backoff_ms, 1, 3_600_000, false));
    let max = ms(c.int("webhook_backoff_max_ms", o.webhook_backoff_max_ms, 1, 3_600_000, false));
    let breaker_failures =
        c.int("webhook_breaker_failures", o.webhook_breaker_failures, 1, 1_000_000, true) as u32;
    let breaker_cooldown = ms(c.int(
        "webhook_breaker_cooldown_ms",
        o.webhook_breaker_cooldown_ms,
        1,
        3_600_000,
        false,
    ));
    let signing_key = o.webhook_secret_file.as_deref().and_then(|file| {
        match std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|t| SigningKey::parse(&t))
        {
            Ok(key) => Some(key),
            Err(reason) => {
                c.fail(
                    "webhook_secret_file",
                    file,
                    &reason,
                    "point webhook_secret_file at a file holding only whsec_<base64>",
                );
                None
            }
        }
    });
    let mut headers = tailbox_webhook_sink::config::HeaderMap::new();
    if let Some(file) = &o.webhook_headers_file {
        match std::fs::read_to_string(file) {
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
                            file,
                            &format!("line {}: {reason}", n + 1),
                            "one \"Name: value\" per line",
                        ),
                    }
                }
            }
            Err(e) => c.fail(
                "webhook_headers_file",
                file,
                &format!("cannot read it: {e}"),
                "point webhook_headers_file at a readable file",
            ),
        }
    }
    let url = o.webhook_url.as_deref().and_then(|text| match UrlTemplate::parse(text) {
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
        ca_file: o.webhook_ca.clone().map(Into::into),
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

//! A sink alone: the child process behind the catch-up's second reference (Kafka), the
//! Redis phase's and the webhook phase's.
//!
//! `tailbox-bench produce-floor [--sink kafka|redis|webhook] --topic T --rows N
//! --payload-bytes P [--txn-size N] [--id-header-only true]` and, per sink:
//! - `kafka` (the default): `--brokers B [--kafka-prop K=V]…`;
//! - `redis`: `--redis-url U` (the stream is `T`);
//! - `webhook`: `--settings FILE --pg-url URL`: FILE is what `tailbox config check`
//!   printed for the arguments tailbox runs with (TOML: every effective value, defaults
//!   included), so the sink alone runs with tailbox's webhook settings without a copy of
//!   their defaults; the URL is the database of the sink's checkpoint and dead-letter
//!   tables (the printed `pg_url` may be redacted).
//!
//! It sends `rows` records shaped like the bench's outbox rows through tailbox's own
//! [`KafkaSink`] (with its producer settings), [`RedisSink`] or [`WebhookSink`], the way tailbox's
//! session publishes them (`publish_record` in crates/pipeline/src/session.rs), with no
//! replication involved: what the destination's client and the sink cost on their own.
//!
//! Like tailbox: a current-thread tokio runtime, mimalloc (the binary's global
//! allocator), at most [`MAX_IN_FLIGHT`] records unacknowledged, the same record sent
//! again after `Blocked`, and acknowledgements taken whenever they arrived between
//! transactions. The runtime runs on a thread named [`THREAD`], so that its CPU stands
//! apart from librdkafka's `rdk:*` threads in /proc. (The webhook sink runs its
//! dispatcher and HTTP client on that runtime too, as tailbox does.)
//!
//! Once every record is acknowledged it prints one JSON line on stdout
//! (`{"send_secs":…,"value_bytes":…}`) and waits for stdin to close, so that the parent
//! reads its CPU time, threads and peak RSS from /proc while the sink still exists;
//! then it exits 0. A delivery error makes it exit nonzero.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tailbox_kafka_sink::{KafkaSink, SinkConfig};
use tailbox_outbox::OutboxRecord;
use tailbox_redis_sink::{Durability, RedisSink, RedisSinkConfig};
use tailbox_sink::{Ack, EventMeta, SendOutcome, Sink};
use tailbox_webhook_sink::{
    Backoff, BodyFormat, SigningKey, UrlTemplate, WebhookSink, WebhookSinkConfig,
};

/// The hidden first argument that makes `tailbox-bench` this child.
pub const SUBCOMMAND: &str = "produce-floor";

/// The name of the thread that runs the runtime (sends, acknowledgements).
pub const THREAD: &str = "producer";

/// The sink's checkpoint topic (Kafka) or hash (Redis); nothing is written to it.
const CHECKPOINTS: &str = "tailbox.bench.checkpoints";

/// tailbox's default `--max-in-flight`.
const MAX_IN_FLIGHT: u64 = 10_000;

/// Distinct records built before the timed loop (one per aggregate of the load); the
/// loop sends them in turn.
const DISTINCT_RECORDS: u64 = 1_000;

/// About the WAL of one bench row (440 MB per million rows): the step between
/// consecutive transactions' commit LSNs.
const WAL_BYTES_PER_ROW: u64 = 440;

/// Which sink the child sends through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    Kafka,
    Redis,
    Webhook,
}

/// The child's settings.
#[derive(Debug, Clone)]
struct Args {
    destination: Destination,
    brokers: String,
    redis_url: String,
    topic: String,
    rows: u64,
    payload_bytes: u32,
    txn_size: u64,
    kafka_props: Vec<(String, String)>,
    /// Debezium's record shape: the `id` header only (no `type`, `timestamp`, nor
    /// tailbox's `lsn`, `xid`, `commit_ts`), as tailbox writes it with
    /// `--meta-headers none --exclude-columns type,timestamp`.
    id_header_only: bool,
    /// `tailbox config check`'s output for tailbox's arguments (webhooks).
    settings: String,
    /// The database of the webhook sink's checkpoint and dead-letter tables.
    pg_url: String,
}

impl Args {
    /// Parses the arguments after [`SUBCOMMAND`].
    fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
        let mut parsed = Args {
            destination: Destination::Kafka,
            brokers: String::new(),
            redis_url: String::new(),
            topic: String::new(),
            rows: 0,
            payload_bytes: 200,
            txn_size: 100,
            kafka_props: Vec::new(),
            id_header_only: false,
            settings: String::new(),
            pg_url: String::new(),
        };
        let mut args = args;
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            let number = || -> Result<u64> {
                value.parse().with_context(|| format!("{flag}: {value:?} is not a number"))
            };
            match flag.as_str() {
                "--sink" => {
                    parsed.destination = match value.as_str() {
                        "kafka" => Destination::Kafka,
                        "redis" => Destination::Redis,
                        "webhook" => Destination::Webhook,
                        other => bail!("--sink {other:?}: expected kafka, redis or webhook"),
                    }
                }
                "--brokers" => parsed.brokers = value.clone(),
                "--redis-url" => parsed.redis_url = value.clone(),
                "--topic" => parsed.topic = value.clone(),
                "--rows" => parsed.rows = number()?,
                "--payload-bytes" => parsed.payload_bytes = u32::try_from(number()?)?,
                "--txn-size" => parsed.txn_size = number()?.max(1),
                "--id-header-only" => parsed.id_header_only = value == "true",
                "--settings" => parsed.settings = value.clone(),
                "--pg-url" => parsed.pg_url = value.clone(),
                "--kafka-prop" => {
                    let (key, val) = value
                        .split_once('=')
                        .with_context(|| format!("--kafka-prop {value:?}: expected KEY=VALUE"))?;
                    parsed.kafka_props.push((key.to_owned(), val.to_owned()));
                }
                other => bail!("{SUBCOMMAND}: unknown argument {other:?}"),
            }
        }
        let addressed = match parsed.destination {
            Destination::Kafka => !parsed.brokers.is_empty(),
            Destination::Redis => !parsed.redis_url.is_empty(),
            Destination::Webhook => !parsed.settings.is_empty() && !parsed.pg_url.is_empty(),
        };
        if !addressed || parsed.topic.is_empty() || parsed.rows == 0 {
            bail!(
                "{SUBCOMMAND} needs --brokers (or --sink redis --redis-url, or --sink webhook \
                 --webhook-url and --pg-url), --topic and --rows"
            );
        }
        Ok(parsed)
    }
}

/// What the parent reads on the child's stdout.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// First send → last acknowledgement.
    pub send_secs: f64,
    /// Mean record value size.
    pub value_bytes: f64,
}

impl Report {
    fn to_line(self) -> String {
        serde_json::json!({ "send_secs": self.send_secs, "value_bytes": self.value_bytes })
            .to_string()
    }

    /// Parses the child's line.
    pub fn parse(line: &str) -> Result<Report> {
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the producer's report {line:?}"))?;
        let num = |key: &str| {
            v[key].as_f64().with_context(|| format!("no {key} in the producer's report {line:?}"))
        };
        Ok(Report { send_secs: num("send_secs")?, value_bytes: num("value_bytes")? })
    }
}

/// The child's `main`: `args` are the arguments after [`SUBCOMMAND`].
pub fn child_main(args: impl Iterator<Item = String>) -> Result<()> {
    let args = Args::parse(args)?;
    let worker = std::thread::Builder::new()
        .name(THREAD.to_owned())
        .spawn(move || run(&args))
        .context("starting the producer thread")?;
    match worker.join() {
        Ok(result) => result,
        Err(_) => bail!("the producer thread panicked"),
    }
}

/// Builds the sink on a current-thread runtime, sends every record, reports on stdout,
/// then waits for stdin to close: the parent reads /proc meanwhile, so this thread and
/// the sink's must still exist.
fn run(args: &Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.destination {
        Destination::Kafka => {
            let config = SinkConfig {
                brokers: args.brokers.clone(),
                properties: args.kafka_props.clone(),
                // As tailbox runs by default: the first record waits for the topic's check.
                topics: tailbox_kafka_sink::TopicSettings::default(),
            };
            let sink =
                KafkaSink::new(&config, CHECKPOINTS).context("creating the Kafka producer")?;
            send_report_and_wait(&runtime, sink, args)
        }
        Destination::Redis => {
            let config = RedisSinkConfig {
                connection: tailbox_redis_sink::parse_url(&args.redis_url, None)
                    .map_err(|e| anyhow::anyhow!("--redis-url: {e}"))?,
                ca_pem: None,
                checkpoint_key: CHECKPOINTS.to_owned(),
                max_buffered: MAX_IN_FLIGHT,
                durability: Durability::Reply,
                trim: None,
            };
            let sink = runtime
                .block_on(RedisSink::connect(&config, "tailbox-bench"))
                .context("connecting to Redis")?;
            send_report_and_wait(&runtime, sink, args)
        }
        Destination::Webhook => {
            let config = webhook_config(args)?;
            let sink = runtime
                .block_on(WebhookSink::connect(&config, Default::default()))
                .context("starting the webhook sink (its tables in PostgreSQL)")?;
            send_report_and_wait(&runtime, sink, args)
        }
    }
}

/// The webhook sink's settings as tailbox builds them from the same effective values
/// (`webhook_config` in crates/cli/src/config/sinks.rs), read from `tailbox config
/// check`'s output.
fn webhook_config(args: &Args) -> Result<WebhookSinkConfig> {
    let text = std::fs::read_to_string(&args.settings)
        .with_context(|| format!("reading {}", args.settings))?;
    webhook_config_from(&text, &args.pg_url)
}

/// [`webhook_config`] from the settings' text.
fn webhook_config_from(settings: &str, pg_url: &str) -> Result<WebhookSinkConfig> {
    let table: toml::Table = settings.parse().context("tailbox config check's output")?;
    let text = |key: &str| -> Result<&str> {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .with_context(|| format!("no {key} in the settings"))
    };
    let int = |key: &str| -> Result<u64> {
        let value = table.get(key).and_then(toml::Value::as_integer);
        value
            .and_then(|n| u64::try_from(n).ok())
            .with_context(|| format!("no {key} in the settings"))
    };
    let ms = |key: &str| int(key).map(Duration::from_millis);
    let signing_key = match table.get("webhook_secret_file").and_then(toml::Value::as_str) {
        None => None,
        Some(file) => {
            let secret =
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            Some(
                SigningKey::parse(&secret)
                    .map_err(|e| anyhow::anyhow!("the webhook secret: {e}"))?,
            )
        }
    };
    let body_text = text("webhook_body")?;
    let max_attempts = u32::try_from(int("webhook_max_attempts")?)?;
    Ok(WebhookSinkConfig {
        url: UrlTemplate::parse(text("webhook_url")?)
            .map_err(|e| anyhow::anyhow!("webhook_url: {e}"))?,
        topic_template: tailbox_outbox::TopicTemplate::parse(text("topic_template")?)
            .map_err(|e| anyhow::anyhow!("topic_template: {e}"))?,
        body: BodyFormat::parse(body_text, text("webhook_content_type")?)
            .with_context(|| format!("webhook_body {body_text:?}"))?,
        signing_key,
        headers: tailbox_webhook_sink::config::HeaderMap::new(),
        ca_file: None,
        concurrency: usize::try_from(int("webhook_concurrency")?)?,
        max_attempts: (max_attempts > 0).then_some(max_attempts),
        request_timeout: ms("webhook_timeout_ms")?,
        backoff: Backoff { initial: ms("webhook_backoff_ms")?, max: ms("webhook_backoff_max_ms")? },
        breaker_failures: u32::try_from(int("webhook_breaker_failures")?)?,
        breaker_cooldown: ms("webhook_breaker_cooldown_ms")?,
        max_buffered: int("max_in_flight")?,
        dlq_topic: text("dlq_topic")?.to_owned(),
        pg: tailbox_replication::PgConnectionConfig::parse(pg_url)
            .map_err(|e| anyhow::anyhow!("--pg-url: {e}"))?,
    })
}

/// Sends every record through `sink`, reports, and waits for stdin to close before the
/// sink is dropped (its threads' CPU stays readable in /proc until then).
fn send_report_and_wait<S: Sink>(
    runtime: &tokio::runtime::Runtime,
    mut sink: S,
    args: &Args,
) -> Result<()> {
    let records = build_records(args);
    let value_bytes =
        records.iter().map(|r| r.value.len() as f64).sum::<f64>() / records.len().max(1) as f64;
    let send_secs = runtime.block_on(send_all(&mut sink, &records, args))?;
    let report = Report { send_secs, value_bytes };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", report.to_line()).context("writing the report")?;
    stdout.flush().context("writing the report")?;
    drop(stdout);
    std::io::stdin().lock().read_to_end(&mut Vec::new()).context("waiting for stdin to close")?;
    drop(sink);
    Ok(())
}

/// Sends `args.rows` records (cycling through `records`) in "transactions" of
/// `args.txn_size`, each with its own [`EventMeta`]; waits for every acknowledgement.
/// Returns first send → last acknowledgement, in seconds.
async fn send_all<S: Sink>(sink: &mut S, records: &[OutboxRecord], args: &Args) -> Result<f64> {
    let mut meta = EventMeta::default();
    let first_commit_us = unix_micros();
    let mut in_flight = 0u64;
    let start = Instant::now();
    for i in 0..args.rows {
        if i % args.txn_size == 0 {
            // Between transactions, as tailbox's loop does between wake-ups: the
            // acknowledgements that arrived meanwhile.
            while let Some(ack) = sink.try_next_ack() {
                take(ack, &mut in_flight)?;
            }
            let txn = i / args.txn_size;
            let commit_lsn = 0x1_0000_0000 + (txn + 1) * args.txn_size * WAL_BYTES_PER_ROW;
            let xid = u32::try_from(1_000 + txn % 4_000_000_000)?;
            meta.reset(commit_lsn.into(), xid, first_commit_us + i64::try_from(txn)?);
        }
        while in_flight >= MAX_IN_FLIGHT {
            take(sink.next_ack().await, &mut in_flight)?;
        }
        let record = &records[(i % records.len() as u64) as usize];
        send_one(sink, record, &meta, &mut in_flight).await?;
    }
    while in_flight > 0 {
        take(sink.next_ack().await, &mut in_flight)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Enqueues `record`, taking acknowledgements and trying again while the sink is full
/// (librdkafka's queue, or the sink's own buffer: the same record, so order is kept).
async fn send_one<S: Sink>(
    sink: &mut S,
    record: &OutboxRecord,
    meta: &EventMeta,
    in_flight: &mut u64,
) -> Result<()> {
    loop {
        match sink.send(record, Some(meta)).context("producing a record")? {
            SendOutcome::Enqueued(_) => {
                *in_flight += 1;
                return Ok(());
            }
            SendOutcome::Blocked => {
                tokio::select! {
                    ack = sink.next_ack() => take(ack, in_flight)?,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Counts one acknowledgement; a delivery error ends the run.
fn take(ack: Ack, in_flight: &mut u64) -> Result<()> {
    if let Err(e) = ack.result {
        bail!("record {} was not delivered: {e}", ack.seq);
    }
    *in_flight = in_flight.saturating_sub(1);
    Ok(())
}

/// Records like the bench's rows as tailbox maps them: key = the aggregate id, value =
/// `bench_payload(g, pad)`'s jsonb text (g spread over `0..rows` as
/// `load::mean_payload_bytes` samples them, so the mean size matches), headers `id`,
/// `type` and `timestamp` (the table's other non-NULL columns, in column order); with
/// `id_header_only`, the `id` header alone and none of tailbox's own.
fn build_records(args: &Args) -> Vec<OutboxRecord> {
    let n = args.rows.min(DISTINCT_RECORDS);
    let step = (args.rows / DISTINCT_RECORDS).max(1);
    let pad = pad_for(args.payload_bytes);
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let (id, etype, timestamp): (Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("id"), Arc::from("type"), Arc::from("timestamp"));
    let now = unix_micros();
    let meta = if args.id_header_only {
        tailbox_outbox::MetaHeaders::NONE
    } else {
        tailbox_outbox::MetaHeaders::default()
    };
    (0..n)
        .map(|j| {
            let mut headers =
                vec![(Arc::clone(&id), Bytes::from(uuid_like(j ^ now.unsigned_abs())))];
            if !args.id_header_only {
                headers.push((Arc::clone(&etype), Bytes::from_static(b"OrderCreated")));
                headers.push((
                    Arc::clone(&timestamp),
                    Bytes::from(pg_timestamp(now + i64::try_from(j).unwrap_or(0))),
                ));
            }
            OutboxRecord {
                topic: Arc::clone(&topic),
                key: Bytes::from(format!("order-{j}")),
                value: Bytes::from(payload_text(j * step, pad)),
                headers,
                meta,
            }
        })
        .collect()
}

/// `bench_payload(g, pad)::text` (tests/bench/load.rs): jsonb prints keys shortest
/// first, then bytewise.
fn payload_text(g: u64, pad: usize) -> String {
    let cents = g % 100_000;
    format!(
        r#"{{"seq": {g}, "note": "{}", "amount": {}.{:02}, "currency": "EUR", "customer": "customer-{}"}}"#,
        "x".repeat(pad),
        cents / 100,
        cents % 100,
        g % 5_000
    )
}

/// The padding that makes a payload about `bytes` long, as `load::pad_for` computes it.
fn pad_for(bytes: u32) -> usize {
    (bytes as usize).saturating_sub(payload_text(500_000, 0).len())
}

/// A version-4-looking UUID text (36 bytes) derived from `seed`.
fn uuid_like(seed: u64) -> String {
    let mix = |mut z: u64| {
        // splitmix64
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(seed), mix(seed ^ 0xABCD));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// PostgreSQL's timestamptz text in UTC, e.g. `2026-11-24 10:11:12.345678+00`.
fn pg_timestamp(unix_micros: i64) -> String {
    let mut text = String::new();
    tailbox_sink::sink::write_rfc3339(&mut text, unix_micros);
    text.replacen('T', " ", 1).replacen('Z', "+00", 1)
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_look_like_postgres_jsonb_text() {
        assert_eq!(
            payload_text(123_456, 3),
            r#"{"seq": 123456, "note": "xxx", "amount": 234.56, "currency": "EUR", "customer": "customer-3456"}"#
        );
        assert_eq!(payload_text(500_000, pad_for(200)).len(), 200);
    }

    #[test]
    fn timestamps_and_ids_have_postgres_shapes() {
        assert_eq!(pg_timestamp(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(pg_timestamp(1_795_947_072_345_678), "2026-11-29 10:11:12.345678+00");
        assert_eq!(pg_timestamp(951_782_400_000_000), "2000-02-29 00:00:00.000000+00");
        assert_eq!(uuid_like(7).len(), 36);
    }

    #[test]
    fn args_parse() -> Result<()> {
        let args = Args::parse(
            ["--brokers", "b:1", "--topic", "t", "--rows", "5", "--kafka-prop", "linger.ms=1"]
                .into_iter()
                .map(str::to_owned),
        )?;
        assert_eq!((args.rows, args.txn_size, args.payload_bytes), (5, 100, 200));
        assert_eq!(args.kafka_props, vec![("linger.ms".to_owned(), "1".to_owned())]);
        assert!(Args::parse(["--rows", "5"].into_iter().map(str::to_owned)).is_err());
        Ok(())
    }

    #[test]
    fn webhook_settings_come_from_tailbox_config_check() -> Result<()> {
        let parse = |args: &[&str]| Args::parse(args.iter().map(|a| (*a).to_owned()));
        let base = ["--sink", "webhook", "--topic", "bench_webhook_r1.Order", "--rows", "5"];
        let args = parse(
            &[&base[..], &["--settings", "/tmp/s.toml", "--pg-url", "postgres://u@h/db"]].concat(),
        )?;
        assert_eq!(
            (args.destination, args.settings.as_str()),
            (Destination::Webhook, "/tmp/s.toml")
        );
        // A webhook needs both the settings and the database.
        assert!(parse(&[&base[..], &["--pg-url", "postgres://u@h/db"]].concat()).is_err());
        assert!(parse(&[&base[..], &["--settings", "/tmp/s.toml"]].concat()).is_err());
        assert!(parse(&["--sink", "http", "--topic", "t", "--rows", "1"]).is_err());

        // The shape `tailbox config check` prints (comments for unset keys).
        let settings = r#"
sink = "webhook"  # flag --sink
webhook_url = "http://127.0.0.1:9/hooks/{aggregatetype}"  # flag --webhook-url
# webhook_secret_file is not set
webhook_body = "payload"  # default
webhook_content_type = "application/json"  # default
webhook_concurrency = 16  # flag --webhook-concurrency
webhook_max_attempts = 0  # default
webhook_timeout_ms = 10000  # default
webhook_backoff_ms = 500  # default
webhook_backoff_max_ms = 60000  # default
webhook_breaker_failures = 5  # default
webhook_breaker_cooldown_ms = 30000  # default
topic_template = "bench_webhook_r1.{aggregatetype}"  # flag --topic-template
dlq_topic = "outbox.dlq"  # default
max_in_flight = 10000  # default
"#;
        let config = webhook_config_from(settings, "postgres://u@127.0.0.1:5432/db")?;
        assert!(config.signing_key.is_none());
        assert_eq!(config.topic_template.aggregate_type(&args.topic), Some("Order"));
        assert_eq!(
            (config.concurrency, config.max_attempts, config.max_buffered),
            (16, None, 10_000)
        );
        assert_eq!(config.backoff.max, Duration::from_secs(60));
        assert!(webhook_config_from("sink = \"webhook\"", "postgres://u@h/db").is_err());
        Ok(())
    }
}

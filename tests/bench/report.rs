//! Per-run figures, their medians, the targets, and the Markdown/JSON report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::config::Config;

/// Figures by key, one value per run.
#[derive(Debug, Default)]
pub struct Metrics {
    values: BTreeMap<String, Vec<f64>>,
}

impl Metrics {
    pub fn push(&mut self, key: impl Into<String>, value: f64) {
        self.values.entry(key.into()).or_default().push(value);
    }

    pub fn runs(&self, key: &str) -> &[f64] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// The median over runs (NaN values, i.e. not measured, are left out).
    pub fn median(&self, key: &str) -> Option<f64> {
        median(self.runs(key))
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// One line of the report: key, label, unit, decimals.
struct Row(&'static str, &'static str, &'static str, usize);

const SECTIONS: &[(&str, &[Row])] = &[
    (
        "0. Machine load from other processes before each run (2 s sample)",
        &[Row("run.background_cores", "CPU used by processes other than the bench's", "cores", 2)],
    ),
    (
        "1. Reference: pg_recvlogical drains the slot (pgoutput v1, output to /dev/null)",
        &[
            Row("ref.events_per_s", "rate", "events/s", 0),
            Row("ref.wal_mb_per_s", "WAL read", "MB/s", 1),
            Row("ref.secs", "elapsed", "s", 2),
            Row("ref.cpu_s", "pg_recvlogical CPU (user+sys)", "s", 2),
            Row("ref.walsender_cpu_s", "walsender CPU", "s", 2),
            Row("ref.walsender_runqueue_s", "walsender runnable but waiting for a CPU", "s", 2),
            Row("ref.peak_rss_mib", "pg_recvlogical peak RSS", "MiB", 1),
            Row("ref.machine_busy_cores", "machine CPU busy (all processes)", "cores", 2),
            Row("ref.other_cores", "of which processes other than the bench's", "cores", 2),
        ],
    ),
    (
        "2. tailbox catch-up: rows committed before start, until the slot confirmed the last commit",
        &[
            Row("catchup.events_per_s", "rate", "events/s", 0),
            Row("catchup.ratio", "ratio to pg_recvlogical (same run)", "×", 2),
            Row("catchup.wal_mb_per_s", "WAL read", "MB/s", 1),
            Row("catchup.payload_mb_per_s", "payload published", "MB/s", 1),
            Row("catchup.secs", "elapsed (spawn → slot confirmed)", "s", 2),
            Row("catchup.startup_s", "of which startup (spawn → replication started)", "s", 2),
            Row("catchup.walsender_cpu_s", "walsender CPU", "s", 2),
            Row("catchup.walsender_runqueue_s", "walsender runnable but waiting for a CPU", "s", 2),
            Row(
                "catchup.main_thread_runqueue_s",
                "tailbox main thread runnable but waiting for a CPU",
                "s",
                2,
            ),
            Row("catchup.broker_cpu_s", "Kafka broker CPU", "s", 2),
            Row("catchup.machine_busy_cores", "machine CPU busy (all processes)", "cores", 2),
            Row("catchup.other_cores", "of which processes other than the bench's", "cores", 2),
            Row("catchup.published", "records in Kafka", "", 0),
            Row("load.secs", "loading the rows (not measured)", "s", 1),
            Row("load.wal_mb", "WAL of the load", "MB", 0),
            Row("load.payload_bytes", "mean payload", "bytes", 0),
        ],
    ),
    (
        "3. tailbox cost during catch-up",
        &[
            Row("catchup.cpu_s", "CPU (user+sys), whole process life until done", "s", 2),
            Row("catchup.cpu_s_per_million", "CPU per million events", "s", 2),
            Row("catchup.peak_rss_mib", "peak RSS (VmHWM)", "MiB", 1),
        ],
    ),
    (
        "3a. Reference: the Kafka producer alone (tailbox's KafkaSink and producer settings, \
         as many records of the same shape, no PostgreSQL)",
        &[
            Row("catchup.producer.events_per_s", "rate", "events/s", 0),
            Row("catchup.producer.secs", "elapsed (spawn → every record acknowledged)", "s", 2),
            Row("catchup.producer.send_secs", "of which first send → last acknowledgement", "s", 2),
            Row("catchup.producer.cpu_s", "CPU (user+sys), whole process life until done", "s", 2),
            Row("catchup.producer.cpu_s_per_million", "CPU per million events", "s", 2),
            Row("catchup.producer.peak_rss_mib", "peak RSS (VmHWM)", "MiB", 1),
            Row("catchup.producer.value_bytes", "mean record value", "bytes", 0),
            Row("catchup.producer.broker_cpu_s", "Kafka broker CPU", "s", 2),
            Row(
                "catchup.producer.machine_busy_cores",
                "machine CPU busy (all processes)",
                "cores",
                2,
            ),
            Row(
                "catchup.producer.other_cores",
                "of which processes other than the bench's",
                "cores",
                2,
            ),
            Row("catchup.producer.published", "records in Kafka", "", 0),
        ],
    ),
    (
        "3b. tailbox's own cost during catch-up (replication read, decode, map, loop): 3 minus 3a",
        &[Row(
            "catchup.cpu_s_per_million_minus_producer",
            "tailbox CPU per million events minus the producer alone",
            "s",
            2,
        )],
    ),
    (
        "3c. tailbox catch-up with Debezium's header set (`id` only: --meta-headers none \
         --exclude-columns type,timestamp), the same backlog from a slot of its own",
        &[
            Row("catchup_debezium.events_per_s", "rate", "events/s", 0),
            Row("catchup_debezium.cpu_s_per_million", "CPU per million events", "s", 2),
            Row("catchup_debezium.peak_rss_mib", "peak RSS (VmHWM)", "MiB", 1),
            Row(
                "catchup_debezium.producer.cpu_s_per_million",
                "the Kafka producer alone with these records (as 3a): CPU per million events",
                "s",
                2,
            ),
            Row(
                "catchup_debezium.cpu_s_per_million_minus_producer",
                "tailbox CPU per million events minus the producer alone",
                "s",
                2,
            ),
        ],
    ),
    (
        "4. Latency under steady load (tailbox running; writers commit at a fixed rate)",
        &[
            Row("steady.achieved_rate", "achieved commit rate", "events/s", 0),
            Row("steady.events", "measured events", "", 0),
            Row("steady.ack_p50_ms", "commit → Kafka append (≈ ack) p50", "ms", 1),
            Row("steady.ack_p99_ms", "commit → Kafka append (≈ ack) p99", "ms", 1),
            Row("steady.ack_p999_ms", "commit → Kafka append (≈ ack) p99.9", "ms", 1),
            Row("steady.recv_p50_ms", "commit → consumer receive p50", "ms", 1),
            Row("steady.recv_p99_ms", "commit → consumer receive p99", "ms", 1),
            Row("steady.recv_p999_ms", "commit → consumer receive p99.9", "ms", 1),
            Row("steady.commit_rtt_p50_ms", "writer's INSERT+COMMIT round trip p50", "ms", 1),
            Row("steady.commit_rtt_p99_ms", "writer's INSERT+COMMIT round trip p99", "ms", 1),
            Row("steady.commit_rtt_p999_ms", "writer's INSERT+COMMIT round trip p99.9", "ms", 1),
            Row("steady.cpu_s_per_million", "tailbox CPU per million events", "s", 2),
            Row("steady.cpu_util", "tailbox CPU utilisation", "cores", 3),
            Row("steady.peak_rss_mib", "tailbox peak RSS (VmHWM)", "MiB", 1),
            Row("steady.machine_busy_cores", "machine CPU busy (all processes)", "cores", 2),
            Row("steady.other_cores", "of which processes other than the bench's", "cores", 2),
        ],
    ),
    (
        "5. One huge transaction (tailbox running while it commits)",
        &[
            Row("huge.insert_s", "the INSERT … COMMIT itself", "s", 1),
            Row("huge.publish_s", "COMMIT returned → slot confirmed", "s", 2),
            Row("huge.events_per_s", "rate after the commit", "events/s", 0),
            Row("huge.peak_rss_mib", "tailbox peak RSS (VmHWM)", "MiB", 1),
            Row("huge.cpu_s_per_million", "tailbox CPU per million events", "s", 2),
            Row("huge.published", "records in Kafka", "", 0),
            Row("huge.machine_busy_cores", "machine CPU busy after the commit", "cores", 2),
            Row("huge.other_cores", "of which processes other than the bench's", "cores", 2),
        ],
    ),
    (
        "6. Redis Streams catch-up (--sink redis; its own pg_recvlogical reference, same rows)",
        &[
            Row("redis.ref_events_per_s", "pg_recvlogical rate", "events/s", 0),
            Row("redis.events_per_s", "tailbox rate", "events/s", 0),
            Row("redis.ratio", "ratio to pg_recvlogical (same run)", "×", 2),
            Row("redis.secs", "elapsed (spawn → slot confirmed)", "s", 2),
            Row("redis.cpu_s_per_million", "tailbox CPU per million events", "s", 2),
            Row("redis.peak_rss_mib", "tailbox peak RSS (VmHWM)", "MiB", 1),
            Row("redis.walsender_cpu_s", "walsender CPU", "s", 2),
            Row("redis.server_cpu_s", "redis-server CPU (its main process)", "s", 2),
            Row("redis.published", "entries in the stream", "", 0),
            Row(
                "redis.sink_alone.events_per_s",
                "6a. the Redis sink alone (tailbox's RedisSink, the same entries, no PostgreSQL): rate",
                "events/s",
                0,
            ),
            Row(
                "redis.sink_alone.cpu_s_per_million",
                "6a. the Redis sink alone: CPU per million events",
                "s",
                2,
            ),
            Row("redis.sink_alone.server_cpu_s", "6a. redis-server CPU meanwhile", "s", 2),
            Row(
                "redis.own_cpu_s_per_million",
                "6b. tailbox's own cost: tailbox CPU per million events minus the sink alone",
                "s",
                2,
            ),
        ],
    ),
    (
        "7. HTTP webhooks (--sink webhook, --webhook-concurrency 16, signed; a local receiver that checks each signature)",
        &[
            Row("webhook.rows", "catch-up rows (one POST each)", "", 0),
            Row("webhook.events_per_s", "catch-up rate", "events/s", 0),
            Row("webhook.secs", "elapsed (spawn → slot confirmed)", "s", 2),
            Row("webhook.cpu_s_per_million", "tailbox CPU per million events (catch-up)", "s", 2),
            Row("webhook.peak_rss_mib", "tailbox peak RSS (VmHWM)", "MiB", 1),
            Row("webhook.walsender_cpu_s", "walsender CPU", "s", 2),
            Row("webhook.published", "requests answered 2xx", "", 0),
            Row(
                "webhook.sink_alone.events_per_s",
                "7a. the webhook sink alone (tailbox's WebhookSink, the same events, no replication): rate",
                "events/s",
                0,
            ),
            Row(
                "webhook.sink_alone.cpu_s_per_million",
                "7a. the webhook sink alone: CPU per million events",
                "s",
                2,
            ),
            Row("webhook.sink_alone.published", "7a. requests answered 2xx", "", 0),
            Row(
                "webhook.own_cpu_s_per_million",
                "7b. tailbox's own cost: tailbox CPU per million events minus the sink alone",
                "s",
                2,
            ),
            Row("webhook.steady_rate", "steady commit rate", "events/s", 0),
            Row("webhook.steady_events", "measured events", "", 0),
            Row("webhook.recv_p50_ms", "commit → receiver p50", "ms", 1),
            Row("webhook.recv_p99_ms", "commit → receiver p99", "ms", 1),
            Row("webhook.recv_p999_ms", "commit → receiver p99.9", "ms", 1),
            Row(
                "webhook.steady_cpu_s_per_million",
                "tailbox CPU per million events (steady)",
                "s",
                2,
            ),
            Row("webhook.steady_cpu_util", "tailbox CPU utilisation (steady)", "cores", 3),
        ],
    ),
];

/// Per section of [`SECTIONS`]: the key prefix of the per-thread CPU seconds of tailbox
/// (or of the Kafka producer alone).
const THREAD_PREFIXES: &[Option<&str>] = &[
    None,
    None,
    None,
    Some("catchup.thread_cpu_s."),
    Some("catchup.producer.thread_cpu_s."),
    None,
    Some("catchup_debezium.thread_cpu_s."),
    Some("steady.thread_cpu_s."),
    Some("huge.thread_cpu_s."),
    Some("redis.thread_cpu_s."),
    Some("webhook.thread_cpu_s."),
];

fn fmt_num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let s = format!("{v:.decimals$}");
    // Thousands separators for the integer part.
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A target: key, comparison, limit, description.
struct Target {
    name: &'static str,
    key: &'static str,
    at_most: bool,
    limit: f64,
    unit: &'static str,
}

/// The targets of the cost issue (catch-up, steady state, memory), of the schema issue
/// (Debezium's header set) and of the Redis sink.
const TARGETS: &[Target] = &[
    Target {
        name: "catch-up ≥ 1.0 × pg_recvlogical rate",
        key: "catchup.ratio",
        at_most: false,
        limit: 1.0,
        unit: "×",
    },
    Target {
        name: "tailbox's own share (3b) ≤ 0.8 CPU-seconds per million events (catch-up)",
        key: "catchup.cpu_s_per_million_minus_producer",
        at_most: true,
        limit: 0.8,
        unit: "s",
    },
    Target {
        name: "≤ 1.5 CPU-seconds of tailbox per million events, Debezium's header set (catch-up)",
        key: "catchup_debezium.cpu_s_per_million",
        at_most: true,
        limit: 1.5,
        unit: "s",
    },
    Target {
        name: "≤ 6 CPU-seconds of tailbox per million events (steady load)",
        key: "steady.cpu_s_per_million",
        at_most: true,
        limit: 6.0,
        unit: "s",
    },
    Target {
        name: "p99 commit → Kafka ack ≤ 10 ms at the steady rate",
        key: "steady.ack_p99_ms",
        at_most: true,
        limit: 10.0,
        unit: "ms",
    },
    Target {
        name: "peak RSS ≤ 16 MiB under steady load",
        key: "steady.peak_rss_mib",
        at_most: true,
        limit: 16.0,
        unit: "MiB",
    },
    Target {
        name: "peak RSS ≤ 32 MiB through the huge transaction",
        key: "huge.peak_rss_mib",
        at_most: true,
        limit: 32.0,
        unit: "MiB",
    },
    Target {
        name: "Redis catch-up ≥ 0.9 × pg_recvlogical rate",
        key: "redis.ratio",
        at_most: false,
        limit: 0.9,
        unit: "×",
    },
    Target {
        name: "< 3 CPU-seconds of tailbox per million events into Redis (catch-up)",
        key: "redis.cpu_s_per_million",
        at_most: true,
        limit: 3.0,
        unit: "s",
    },
];

/// `(name, measured median, holds)` for every target that was measured.
fn targets(m: &Metrics) -> Vec<(&'static Target, f64, bool)> {
    TARGETS
        .iter()
        .filter_map(|t| {
            let v = m.median(t.key)?;
            let holds = if t.at_most { v <= t.limit } else { v >= t.limit };
            Some((t, v, holds))
        })
        .collect()
}

fn settings_line(cfg: &Config) -> String {
    format!(
        "runs {}; catch-up {} rows in transactions of {}, payload ~{} B; steady {} events/s for {} s \
         (transactions of {}, {} writers, synchronous_commit on); huge transaction {} rows; \
         {} partitions per topic; nice {}; tailbox --status-interval-ms {}{}{}",
        cfg.runs,
        fmt_num(cfg.rows as f64, 0),
        cfg.txn_size,
        cfg.payload_bytes,
        fmt_num(cfg.rate as f64, 0),
        cfg.duration_secs,
        cfg.steady_txn_size,
        cfg.writers,
        fmt_num(cfg.huge_rows as f64, 0),
        cfg.partitions,
        cfg.nice,
        cfg.status_interval_ms,
        if cfg.tailbox_args.is_empty() {
            String::new()
        } else {
            format!(" {}", cfg.tailbox_args.join(" "))
        },
        if cfg.quick { " (BENCH_QUICK)" } else { "" },
    )
}

/// The Markdown report.
pub fn markdown(cfg: &Config, machine: &Value, m: &Metrics) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let _ = writeln!(out, "# tailbox benchmark\n");
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), {} GiB RAM, Linux {}; PostgreSQL {}; Kafka {}; {} (`{}`, git {}).\n",
        machine["cores"],
        s(&machine["cpu"]),
        machine["memory_gib"],
        s(&machine["kernel"]),
        s(&machine["postgres"]),
        s(&machine["kafka"]),
        s(&machine["tailbox"]),
        s(&machine["tailbox_bin"]),
        s(&machine["git"]),
    );
    let _ = writeln!(out, "Settings: {}.\n", settings_line(cfg));
    let _ = writeln!(
        out,
        "Every figure is the median of {} runs; the per-run values follow it.\n",
        cfg.runs
    );
    if let Some(r) = m.median("catchup.ratio") {
        let _ = writeln!(out, "**catch-up / pg_recvlogical = {r:.2}**\n");
    }
    let _ = writeln!(out, "| measurement | median | unit | runs |");
    let _ = writeln!(out, "|---|---:|---|---|");
    for (i, (title, rows)) in SECTIONS.iter().enumerate() {
        if !rows.iter().any(|r| !m.runs(r.0).is_empty()) {
            continue;
        }
        let _ = writeln!(out, "| **{title}** | | | |");
        for Row(key, label, unit, decimals) in rows.iter() {
            let runs = m.runs(key);
            if runs.is_empty() {
                continue;
            }
            let med = m.median(key).unwrap_or(f64::NAN);
            let per_run: Vec<String> = runs.iter().map(|v| fmt_num(*v, *decimals)).collect();
            let _ = writeln!(
                out,
                "| {label} | {} | {unit} | {} |",
                fmt_num(med, *decimals),
                per_run.join(" · ")
            );
        }
        // CPU by thread, where the section measured it
        let Some(prefix) = THREAD_PREFIXES.get(i).copied().flatten() else {
            continue;
        };
        for (key, runs) in m.values.range(prefix.to_owned()..) {
            let Some(thread) = key.strip_prefix(prefix) else {
                break;
            };
            let per_run: Vec<String> = runs.iter().map(|v| fmt_num(*v, 2)).collect();
            let _ = writeln!(
                out,
                "| · thread `{thread}` | {} | CPU-s | {} |",
                fmt_num(m.median(key).unwrap_or(f64::NAN), 2),
                per_run.join(" · ")
            );
        }
    }
    let t = targets(m);
    if !t.is_empty() {
        let _ = writeln!(out, "\n| target | measured (median) | holds |");
        let _ = writeln!(out, "|---|---:|---|");
        for (target, v, holds) in t {
            let _ = writeln!(
                out,
                "| {} | {} {} | {} |",
                target.name,
                fmt_num(v, 2),
                target.unit,
                if holds { "yes" } else { "**no**" }
            );
        }
    }
    out
}

/// The JSON report.
pub fn json(cfg: &Config, machine: &Value, m: &Metrics) -> Value {
    let metrics: serde_json::Map<String, Value> = m
        .values
        .iter()
        .map(|(k, runs)| {
            let runs: Vec<Value> =
                runs.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect();
            (k.clone(), json!({ "median": m.median(k), "runs": runs }))
        })
        .collect();
    let targets: Vec<Value> = targets(m)
        .into_iter()
        .map(|(t, v, holds)| {
            json!({
                "target": t.name,
                "metric": t.key,
                "limit": t.limit,
                "at_most": t.at_most,
                "measured": v,
                "holds": holds,
            })
        })
        .collect();
    json!({
        "machine": machine,
        "settings": {
            "runs": cfg.runs,
            "rows": cfg.rows,
            "txn_size": cfg.txn_size,
            "payload_bytes": cfg.payload_bytes,
            "rate": cfg.rate,
            "duration_secs": cfg.duration_secs,
            "steady_txn_size": cfg.steady_txn_size,
            "writers": cfg.writers,
            "huge_rows": cfg.huge_rows,
            "partitions": cfg.partitions,
            "status_interval_ms": cfg.status_interval_ms,
            "tailbox_args": cfg.tailbox_args,
            "quick": cfg.quick,
            "nice": cfg.nice,
            "quiet_wait_secs": cfg.quiet_wait_secs,
        },
        "metrics": metrics,
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_unmeasured_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn every_section_has_a_thread_prefix_entry() {
        assert_eq!(THREAD_PREFIXES.len(), SECTIONS.len());
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt_num(1_234_567.891, 1), "1,234,567.9");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(-1234.5, 1), "-1,234.5");
        assert_eq!(fmt_num(f64::NAN, 2), "–");
    }
}

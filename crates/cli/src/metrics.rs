//! The `/metrics` exposition: every metric tailbox exports, defined once ([`METRICS`]:
//! name, type, help, label names), and encoded by `prometheus-client` (OpenMetrics text:
//! `# HELP`/`# TYPE`, label escaping, `# EOF`).
//!
//! The pipeline counts on its own thread with relaxed atomics ([`PipelineMetrics`]);
//! nothing here is on that path. A scrape reads the atomics once, into a list of
//! samples, and hands it to a `prometheus-client` collector that writes the text.
//!
//! The metrics table in docs/operations.md is tested against [`METRICS`] (names, types,
//! labels), so the two cannot drift apart.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelKey, EncodeLabelValue, EncodeMetric, LabelKeyEncoder,
        LabelValueEncoder, MetricEncoder,
    },
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::ops::Ops;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (its name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// The word in `# TYPE` and in the docs table.
    #[cfg(test)]
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One exported metric.
#[derive(Debug)]
pub struct Metric {
    /// The sample name (counters end in `_total`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order they are written.
    pub labels: &'static [&'static str],
}

impl Metric {
    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Metric { name, kind: Kind::Gauge, help, labels: &[] }
    }

    const fn counter(name: &'static str, help: &'static str) -> Self {
        Metric { name, kind: Kind::Counter, help, labels: &[] }
    }

    /// The family name: OpenMetrics names a counter's family without `_total`, which the
    /// encoder appends to each sample.
    fn family(&self) -> &'static str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            Kind::Gauge => self.name,
        }
    }
}

const INFO: Metric = Metric {
    name: "tailbox_info",
    kind: Kind::Gauge,
    help: "Constant 1, labelled with the version, slot, publication and dry-run mode.",
    labels: &["version", "slot", "publication", "dry_run"],
};
const START_TIME: Metric = Metric::gauge(
    "tailbox_start_time_seconds",
    "Start time of the process, seconds since the Unix epoch.",
);
const PUBLISHED_EVENTS: Metric = Metric {
    name: "tailbox_published_events_total",
    kind: Kind::Counter,
    help: "Outbox events acknowledged by Kafka, by topic.",
    labels: &["topic"],
};
const PUBLISHED_BYTES: Metric = Metric {
    name: "tailbox_published_bytes_total",
    kind: Kind::Counter,
    help: "Key and value bytes of outbox events acknowledged by Kafka, by topic.",
    labels: &["topic"],
};
const ERRORS: Metric = Metric {
    name: "tailbox_errors_total",
    kind: Kind::Counter,
    help: "Errors by kind: postgres, kafka (transient, retried), mapping, refused (dead-lettered), fatal.",
    labels: &["kind"],
};
const DEAD_LETTERED: Metric =
    Metric::counter("tailbox_dead_lettered_total", "Events sent to the dead-letter topic.");
const REPLICATION_LAG: Metric = Metric::gauge(
    "tailbox_replication_lag_seconds",
    "Now minus the commit time of the newest fully acknowledged transaction while events are pending; 0 when caught up.",
);
const END_TO_END_LAG: Metric = Metric::gauge(
    "tailbox_end_to_end_lag_seconds",
    "Commit in PostgreSQL to acknowledgement by Kafka of the newest acknowledged transaction (sampled every 0.2 s).",
);
const LAST_ACKED_COMMIT: Metric = Metric::gauge(
    "tailbox_last_acked_commit_timestamp_seconds",
    "Commit time of the newest transaction whose events Kafka fully acknowledged.",
);
const LAST_READ_COMMIT: Metric = Metric::gauge(
    "tailbox_last_read_commit_timestamp_seconds",
    "Commit time of the newest transaction read from the slot.",
);
const CONFIRMED_LSN: Metric =
    Metric::gauge("tailbox_confirmed_lsn", "The LSN last confirmed to the slot, as a number.");
const SERVER_WAL_END: Metric = Metric::gauge(
    "tailbox_server_wal_end_lsn",
    "The last WAL position the server reported sending, as a number.",
);
const IN_FLIGHT: Metric =
    Metric::gauge("tailbox_in_flight_records", "Records handed to Kafka and not yet acknowledged.");
const RECONNECTS: Metric =
    Metric::counter("tailbox_reconnects_total", "Sessions restarted after a transient failure.");
const STREAMING: Metric =
    Metric::gauge("tailbox_streaming", "1 while a replication session streams.");
const KAFKA_OK: Metric = Metric::gauge(
    "tailbox_kafka_ok",
    "1 while the last acknowledgement or checkpoint write succeeded recently.",
);
const WEBHOOK_BREAKER: Metric = Metric::gauge(
    "tailbox_webhook_breaker_state",
    "The webhook sink's circuit breaker: 0 closed, 1 half-open (probing), 2 open (sending nothing).",
);
const UP: Metric =
    Metric::gauge("tailbox_up", "1 while the pipeline loop runs (what /healthz reports).");
const SLOT_RETAINED_WAL: Metric = Metric::gauge(
    "tailbox_slot_retained_wal_bytes",
    "WAL the server keeps for the slot: current WAL LSN minus restart_lsn (queried every 10 s).",
);
const SLOT_CONFIRMED_LAG: Metric = Metric::gauge(
    "tailbox_slot_confirmed_lag_bytes",
    "Current WAL LSN minus the slot's confirmed_flush_lsn (queried every 10 s).",
);
const SLOT_SAFE_WAL_SIZE: Metric = Metric::gauge(
    "tailbox_slot_safe_wal_size_bytes",
    "WAL that can still be written before the slot is invalidated (max_slot_wal_keep_size).",
);
const SLOT_QUERY_TIME: Metric = Metric::gauge(
    "tailbox_slot_query_timestamp_seconds",
    "When the slot's figures were last read successfully.",
);
const SLOT_QUERY_ERRORS: Metric =
    Metric::counter("tailbox_slot_query_errors_total", "Failed queries of the slot's figures.");

/// Every metric tailbox exports, in the order of the exposition and of the docs table
/// (which a test holds against this list).
#[cfg(test)]
const METRICS: &[&Metric] = &[
    &INFO,
    &START_TIME,
    &PUBLISHED_EVENTS,
    &PUBLISHED_BYTES,
    &ERRORS,
    &DEAD_LETTERED,
    &REPLICATION_LAG,
    &END_TO_END_LAG,
    &LAST_ACKED_COMMIT,
    &LAST_READ_COMMIT,
    &CONFIRMED_LSN,
    &SERVER_WAL_END,
    &IN_FLIGHT,
    &RECONNECTS,
    &STREAMING,
    &KAFKA_OK,
    &WEBHOOK_BREAKER,
    &UP,
    &SLOT_RETAINED_WAL,
    &SLOT_CONFIRMED_LAG,
    &SLOT_SAFE_WAL_SIZE,
    &SLOT_QUERY_TIME,
    &SLOT_QUERY_ERRORS,
];

/// A sample's value: integers stay integers in the text.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(i64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&AtomicU64> for Value {
    fn from(v: &AtomicU64) -> Self {
        v.load(Ordering::Relaxed).into()
    }
}

impl From<&AtomicBool> for Value {
    fn from(v: &AtomicBool) -> Self {
        Value::Int(i64::from(v.load(Ordering::Relaxed)))
    }
}

/// One metric's samples: label values (in [`Metric::labels`] order) and a value.
type Samples = Vec<(Vec<String>, Value)>;

/// The values of one scrape, ready to encode.
#[derive(Debug, Default)]
struct Scrape(Vec<(&'static Metric, Samples)>);

impl Scrape {
    fn add(&mut self, metric: &'static Metric, value: impl Into<Value>) {
        self.0.push((metric, vec![(Vec::new(), value.into())]));
    }

    fn add_labelled(&mut self, metric: &'static Metric, samples: Samples) {
        self.0.push((metric, samples));
    }
}

/// The text exposition of `ops` at `now_us` (OpenMetrics text, [`CONTENT_TYPE`]).
pub fn render(ops: &Ops, now_us: i64) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape(ops, now_us)));
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Reads every value once.
fn scrape(ops: &Ops, now_us: i64) -> Scrape {
    let m = &ops.pipeline;
    let mut s = Scrape::default();
    let info = vec![
        env!("CARGO_PKG_VERSION").to_owned(),
        ops.slot.clone(),
        ops.publication.clone(),
        ops.dry_run.to_string(),
    ];
    s.add_labelled(&INFO, vec![(info, Value::Int(1))]);
    s.add(&START_TIME, ops.started_us as f64 / 1e6);
    let topics = m.published_by_topic();
    let by_topic = |count: fn(&tailbox_pipeline::metrics::TopicCounts) -> u64| -> Samples {
        topics.iter().map(|(t, c)| (vec![t.clone()], count(c).into())).collect()
    };
    s.add_labelled(&PUBLISHED_EVENTS, by_topic(|c| c.events));
    s.add_labelled(&PUBLISHED_BYTES, by_topic(|c| c.bytes));
    let errors = m.errors().into_iter().map(|(kind, n)| (vec![kind.to_owned()], n.into()));
    s.add_labelled(&ERRORS, errors.collect());
    s.add(&DEAD_LETTERED, &m.dead_lettered);
    s.add(&REPLICATION_LAG, ops.replication_lag_seconds(now_us));
    if let Some(lag) = ops.end_to_end_lag_seconds() {
        s.add(&END_TO_END_LAG, lag);
    }
    let acked = m.last_acked_commit_us.load(Ordering::Relaxed);
    if acked > 0 {
        s.add(&LAST_ACKED_COMMIT, acked as f64 / 1e6);
    }
    let read = m.last_read_commit_us.load(Ordering::Relaxed);
    if read > 0 {
        s.add(&LAST_READ_COMMIT, read as f64 / 1e6);
    }
    s.add(&CONFIRMED_LSN, &m.confirmed_lsn);
    s.add(&SERVER_WAL_END, &m.server_wal_end);
    s.add(&IN_FLIGHT, &m.in_flight);
    s.add(&RECONNECTS, &m.reconnects);
    s.add(&STREAMING, &m.streaming);
    s.add(&KAFKA_OK, &m.kafka_ok);
    s.add(&WEBHOOK_BREAKER, i64::from(m.webhook_breaker.load(Ordering::Relaxed)));
    s.add(&UP, &ops.loop_alive);
    if let Some(slot) = ops.slot_report() {
        if let Some(retained) = slot.retained_wal_bytes {
            s.add(&SLOT_RETAINED_WAL, retained);
        }
        if let Some(lag) = slot.lag_bytes {
            s.add(&SLOT_CONFIRMED_LAG, lag);
        }
        if let Some(safe) = slot.safe_wal_size {
            s.add(&SLOT_SAFE_WAL_SIZE, safe);
        }
    }
    let polled = ops.slot_polled_us.load(Ordering::Relaxed);
    if polled > 0 {
        s.add(&SLOT_QUERY_TIME, polled as f64 / 1e6);
    }
    s.add(&SLOT_QUERY_ERRORS, &ops.slot_poll_errors);
    s
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (metric, samples) in &self.0 {
            let kind = match metric.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(metric.family(), metric.help, None, kind)?;
            if metric.labels.is_empty() {
                // One sample, no braces.
                if let Some((_, value)) = samples.first() {
                    encode_value(metric.kind, *value, family)?;
                }
                continue;
            }
            for (values, value) in samples {
                let labels: Vec<(Name, Escaped)> = metric
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| (Name(name), Escaped(value)))
                    .collect();
                encode_value(metric.kind, *value, family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Writes one sample's value.
fn encode_value(kind: Kind, value: Value, sample: MetricEncoder) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        // Counters never go below 0.
        (Kind::Counter, Value::Int(v)) => {
            ConstCounter::new(u64::try_from(v).unwrap_or(0)).encode(sample)
        }
        (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(sample),
        (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(sample),
        (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(sample),
    }
}

/// A label name.
#[derive(Debug)]
struct Name(&'static str);

impl EncodeLabelKey for Name {
    fn encode(&self, encoder: &mut LabelKeyEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

/// A label value, escaped as the text format requires (`prometheus-client` writes label
/// values as they are; topic and publication names may hold any character).
#[derive(Debug)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use tailbox_pipeline::{PipelineMetrics, metrics::ErrorKind};

    use super::*;
    use crate::{catalog::SlotReport, ops::now_us};

    fn ops() -> Ops {
        Ops::new(Arc::new(PipelineMetrics::default()), "s", "p", false)
    }

    #[test]
    fn exposition_has_help_type_and_samples() {
        let ops = ops();
        let m = &ops.pipeline;
        m.add_published("outbox.event.a\"b", 3, 300);
        m.record_error(ErrorKind::Kafka, "down");
        m.confirmed_lsn.store(0x1_0000_0010, Ordering::Relaxed);
        let text = render(&ops, now_us());
        assert!(text.contains("# TYPE tailbox_published_events counter"), "{text}");
        assert!(text.contains(
            "# HELP tailbox_published_events Outbox events acknowledged by Kafka, by topic.\n"
        ));
        assert!(text.contains("tailbox_published_events_total{topic=\"outbox.event.a\\\"b\"} 3\n"));
        assert!(
            text.contains("tailbox_published_bytes_total{topic=\"outbox.event.a\\\"b\"} 300\n")
        );
        assert!(text.contains("tailbox_errors_total{kind=\"kafka\"} 1\n"));
        assert!(text.contains("tailbox_confirmed_lsn 4294967312\n"));
        assert!(text.contains("tailbox_info{version=\""));
        assert!(text.contains("tailbox_up 0\n"));
        assert!(text.ends_with("# EOF\n"));
        // Every sample line belongs to a declared family.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(declared.contains(&name) || declared.contains(&family), "{line}");
        }
    }

    #[test]
    fn every_metric_appears_once_its_value_is_known() {
        let ops = ops();
        let m = &ops.pipeline;
        m.add_published("t", 1, 1);
        m.last_acked_commit_us.store(2_000_000, Ordering::Relaxed);
        m.last_read_commit_us.store(2_000_000, Ordering::Relaxed);
        ops.sample(2_500_000);
        ops.set_slot_report(Some(SlotReport {
            slot: "s".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            database: Some("app".into()),
            active: true,
            active_pid: Some(1),
            confirmed_flush_lsn: None,
            restart_lsn: None,
            wal_status: Some("reserved".into()),
            safe_wal_size: Some(10),
            current_wal_lsn: tailbox_pgoutput::Lsn::ZERO,
            retained_wal_bytes: Some(1),
            lag_bytes: Some(1),
            failover: None,
            synced: None,
        }));
        let text = render(&ops, now_us());
        for metric in METRICS {
            let samples = text.lines().filter(|l| l.split(['{', ' ']).next() == Some(metric.name));
            assert_eq!(samples.count().min(1), 1, "{} missing:\n{text}", metric.name);
            assert!(text.contains(&format!(
                "# TYPE {} {}\n",
                metric.family(),
                metric.kind.as_str()
            )));
        }
    }

    /// docs/operations.md lists every metric with its type and labels, and nothing else.
    #[test]
    fn the_docs_table_matches_the_exported_metrics() {
        let docs = include_str!("../../../docs/operations.md");
        let table = docs
            .split("## Metrics\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").find(|block| block.trim_start().starts_with('|')))
            .expect("docs/operations.md has a ## Metrics table");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
        };
        let mut documented = BTreeMap::new();
        for row in table.lines().filter(|l| l.starts_with('|')).skip(2) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let [_, name, kind, labels, _meaning, ..] = cells[..] else {
                panic!("unreadable row in docs/operations.md: {row}");
            };
            let name = ticked(name).concat();
            documented.insert(name, (kind.to_owned(), ticked(labels)));
        }
        let exported: BTreeMap<String, (String, Vec<String>)> = METRICS
            .iter()
            .map(|m| {
                let labels = m.labels.iter().map(|l| (*l).to_owned()).collect();
                (m.name.to_owned(), (m.kind.as_str().to_owned(), labels))
            })
            .collect();
        assert_eq!(
            documented, exported,
            "docs/operations.md's metrics table (name, type, label names) must match crates/cli/src/metrics.rs"
        );
    }
}

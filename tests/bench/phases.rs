//! The measurements of one run. Each uses its own slot(s) and topic, created
//! before its rows are written, and removes them afterwards. The catch-up also runs
//! its second reference, the Kafka producer alone, on a topic of its own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::env::{Env, PhaseNames};
use crate::latency::{LatencyConsumer, WARMUP_TYPE, quantile};
use crate::load;
use crate::measure::{self, CpuSnapshot, CpuWatch, ProcSample, TailboxProc, WalsenderWatch};
use crate::progress;
use crate::report::Metrics;

const MB: f64 = 1_000_000.0;

pub(crate) fn drain_timeout(rows: u64) -> Duration {
    Duration::from_secs(120 + rows / 2_000)
}

/// Stops tailbox (SIGTERM: it drains, confirms and exits 0).
pub(crate) fn stop(tb: TailboxProc) -> Result<()> {
    let log = tb.log.clone();
    let status = tb.terminate(Duration::from_secs(60))?;
    if !status.success() {
        bail!("tailbox exited with {status}; log: {}", log.display());
    }
    Ok(())
}

/// (1)–(3): pg_recvlogical, then tailbox, each on its own slot over the same
/// already-committed rows; then (3a) the Kafka producer alone with as many records.
pub async fn catchup(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let names = env.names("catchup", run);
    env.reset_table().await?;
    env.create_topic(&names.topic).await?;
    env.create_slot(&names.ref_slot).await?;
    env.create_slot(&names.slot).await?;
    // (3c) the same backlog again, from a slot of its own, with Debezium's header set.
    let debezium = env.names("catchup_debezium", run);
    env.create_topic(&debezium.topic).await?;
    env.create_slot(&debezium.slot).await?;
    let start_lsn = env.current_wal_lsn().await?;

    progress(&format!("run {run}: loading {} rows in transactions of {}", cfg.rows, cfg.txn_size));
    let mut loader = env.pg.client().await?;
    let loaded = load::bulk(&mut loader, cfg.rows, cfg.txn_size, env.pad).await?;
    let payload = load::mean_payload_bytes(&loader, cfg.rows, env.pad).await?;
    drop(loader);
    let wal_mb = loaded.end_lsn.saturating_sub(start_lsn) as f64 / MB;
    m.push("load.secs", loaded.secs);
    m.push("load.wal_mb", wal_mb);
    m.push("load.payload_bytes", payload);
    let rows = cfg.rows as f64;

    progress(&format!("run {run}: pg_recvlogical drains its slot"));
    let cpu0 = CpuSnapshot::take(&env.roots());
    let r = measure::run_recvlogical(env, &names.ref_slot, loaded.end_lsn, drain_timeout(cfg.rows))
        .await?;
    let (busy, other) = CpuSnapshot::take(&env.roots()).since(&cpu0);
    m.push("ref.machine_busy_cores", busy);
    m.push("ref.other_cores", other);
    env.drop_slot(&names.ref_slot).await?;
    let ref_rate = rows / r.secs;
    m.push("ref.secs", r.secs);
    m.push("ref.events_per_s", ref_rate);
    m.push("ref.wal_mb_per_s", wal_mb / r.secs);
    m.push("ref.cpu_s", r.cpu_secs);
    m.push("ref.walsender_cpu_s", r.walsender_cpu_secs);
    m.push("ref.walsender_runqueue_s", r.walsender_runqueue_secs);
    m.push("ref.peak_rss_mib", r.peak_rss_mib);
    progress(&format!("run {run}: pg_recvlogical {:.2} s, {ref_rate:.0} events/s", r.secs));

    progress(&format!("run {run}: tailbox catches up"));
    let mut broker = env.broker_pid().and_then(CpuWatch::new);
    let cpu0 = CpuSnapshot::take(&env.roots());
    let mut tb = TailboxProc::spawn(
        &env.tailbox,
        &env.tailbox_args(cfg, &names),
        env.log_path("catchup", run),
    )?;
    let drained = drain(env, cfg, &names.slot, loaded.end_lsn, &mut tb, "catchup", m).await?;
    let (startup, secs, last, walsender) =
        (drained.startup, drained.secs, drained.last, drained.walsender);
    if let Some(b) = broker.as_mut() {
        b.poll();
    }
    let (busy, other) = CpuSnapshot::take(&env.roots()).since(&cpu0);
    m.push("catchup.machine_busy_cores", busy);
    m.push("catchup.other_cores", other);
    stop(tb)?;
    let published = env.records_in(&names.topic).await? as f64;
    env.drop_slot(&names.slot).await?;
    env.delete_topic(&names.topic).await;

    let rate = rows / secs;
    m.push("catchup.secs", secs);
    m.push("catchup.startup_s", startup);
    m.push("catchup.events_per_s", rate);
    m.push("catchup.ratio", rate / ref_rate);
    m.push("catchup.wal_mb_per_s", wal_mb / secs);
    m.push("catchup.payload_mb_per_s", rows * payload / MB / secs);
    m.push("catchup.cpu_s", last.cpu_secs());
    let cpu_per_million = last.cpu_secs() / (rows / MB);
    m.push("catchup.cpu_s_per_million", cpu_per_million);
    m.push("catchup.peak_rss_mib", last.hwm_mib());
    m.push("catchup.walsender_cpu_s", walsender.cpu_secs());
    m.push("catchup.walsender_runqueue_s", walsender.runqueue_secs());
    m.push("catchup.main_thread_runqueue_s", last.runqueue_secs());
    m.push("catchup.broker_cpu_s", broker.map(|b| b.cpu_secs()).unwrap_or(f64::NAN));
    m.push("catchup.published", published);
    progress(&format!(
        "run {run}: tailbox {secs:.2} s, {rate:.0} events/s ({:.2} × pg_recvlogical), \
         {:.2} CPU-s, peak RSS {:.1} MiB",
        rate / ref_rate,
        last.cpu_secs(),
        last.hwm_mib()
    ));
    if published != rows {
        progress(&format!("warning: {published} records in Kafka, {rows} rows written"));
    }
    let debezium_cpu = debezium_headers(env, cfg, run, &debezium, loaded.end_lsn, m).await?;
    let producer_cpu = producer_alone(env, cfg, run, RecordShape::Default, m).await?;
    m.push("catchup.cpu_s_per_million_minus_producer", cpu_per_million - producer_cpu);
    let producer_cpu = producer_alone(env, cfg, run, RecordShape::Debezium, m).await?;
    m.push("catchup_debezium.cpu_s_per_million_minus_producer", debezium_cpu - producer_cpu);
    Ok(())
}

/// The options that give Debezium's Outbox Event Router's record shape: the `id`
/// header only (no `type`, no `lsn`/`xid`/`commit_ts`).
const DEBEZIUM_HEADER_SET: &[&str] =
    &["--meta-headers", "none", "--exclude-columns", "type,timestamp"];

/// (3c), after tailbox's catch-up: the same backlog from its own slot, with Debezium's
/// header set, so the cost of tailbox's extra headers shows. Returns its CPU seconds
/// per million events.
async fn debezium_headers(
    env: &Env,
    cfg: &Config,
    run: u32,
    names: &PhaseNames,
    end_lsn: u64,
    m: &mut Metrics,
) -> Result<f64> {
    progress(&format!("run {run}: tailbox catches up with Debezium's header set (id only)"));
    let mut args = env.tailbox_args(cfg, names);
    args.extend(DEBEZIUM_HEADER_SET.iter().map(|a| (*a).to_owned()));
    let mut tb = TailboxProc::spawn(&env.tailbox, &args, env.log_path("catchup_debezium", run))?;
    let phase = "catchup_debezium";
    let drained = drain(env, cfg, &names.slot, end_lsn, &mut tb, phase, m).await?;
    stop(tb)?;
    env.drop_slot(&names.slot).await?;
    env.delete_topic(&names.topic).await;
    let rows = cfg.rows as f64;
    let cpu_per_million = drained.last.cpu_secs() / (rows / MB);
    m.push("catchup_debezium.events_per_s", rows / drained.secs);
    m.push("catchup_debezium.cpu_s_per_million", cpu_per_million);
    m.push("catchup_debezium.peak_rss_mib", drained.last.hwm_mib());
    progress(&format!(
        "run {run}: tailbox with Debezium's header set {:.0} events/s, {cpu_per_million:.2} CPU-s per million",
        rows / drained.secs
    ));
    Ok(cpu_per_million)
}

/// The records the producer alone sends: the shape tailbox gives the bench's rows by
/// default (3a), or with Debezium's header set (3c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordShape {
    Default,
    Debezium,
}

impl RecordShape {
    /// Where its figures go in the report.
    fn prefix(self) -> &'static str {
        match self {
            RecordShape::Default => "catchup.producer",
            RecordShape::Debezium => "catchup_debezium.producer",
        }
    }

    /// The phase name its topic is named after.
    fn phase(self) -> &'static str {
        match self {
            RecordShape::Default => "producer",
            RecordShape::Debezium => "producer_debezium",
        }
    }

    /// The `produce-floor` arguments that give this shape.
    fn args(self) -> &'static [&'static str] {
        match self {
            RecordShape::Default => &[],
            RecordShape::Debezium => &["--id-header-only", "true"],
        }
    }
}

/// (3a), after tailbox's catch-up: the Kafka producer alone. tailbox's `KafkaSink` with
/// tailbox's producer settings (and any `--kafka-prop` given to tailbox) sends `rows`
/// records shaped like the outbox rows to a fresh topic, in a child process
/// (`tailbox-bench produce-floor`, see producer.rs); no PostgreSQL involved. Returns
/// its CPU seconds per million events.
async fn producer_alone(
    env: &Env,
    cfg: &Config,
    run: u32,
    shape: RecordShape,
    m: &mut Metrics,
) -> Result<f64> {
    let names = env.names(shape.phase(), run);
    env.create_topic(&names.topic).await?;
    progress(&format!("run {run}: the Kafka producer alone sends {} records", cfg.rows));
    let mut broker = env.broker_pid().and_then(CpuWatch::new);
    let cpu0 = CpuSnapshot::take(&env.roots());
    let log = env.logs.join(format!("producer-r{run}.log"));
    let mut args = producer_args(env, cfg, &names.topic);
    args.extend(shape.args().iter().map(|a| (*a).to_owned()));
    let p = measure::run_producer_alone(&args, &log, drain_timeout(cfg.rows))
        .await
        .context("the Kafka producer alone")?;
    if let Some(b) = broker.as_mut() {
        b.poll();
    }
    let (busy, other) = CpuSnapshot::take(&env.roots()).since(&cpu0);
    let published = env.records_in(&names.topic).await? as f64;
    env.delete_topic(&names.topic).await;

    let rows = cfg.rows as f64;
    let cpu_per_million = p.sample.cpu_secs() / (rows / MB);
    let key = |name: &str| format!("{}.{name}", shape.prefix());
    m.push(key("secs"), p.secs);
    m.push(key("send_secs"), p.report.send_secs);
    m.push(key("events_per_s"), rows / p.secs);
    m.push(key("cpu_s"), p.sample.cpu_secs());
    m.push(key("cpu_s_per_million"), cpu_per_million);
    m.push(key("peak_rss_mib"), p.sample.hwm_mib());
    m.push(key("value_bytes"), p.report.value_bytes);
    m.push(key("broker_cpu_s"), broker.map(|b| b.cpu_secs()).unwrap_or(f64::NAN));
    m.push(key("machine_busy_cores"), busy);
    m.push(key("other_cores"), other);
    m.push(key("published"), published);
    for (thread, cpu) in p.threads {
        m.push(key(&format!("thread_cpu_s.{thread}")), cpu);
    }
    progress(&format!(
        "run {run}: producer alone ({shape:?} records) {:.2} s, {:.0} events/s, \
         {:.2} CPU-s per million, peak RSS {:.1} MiB",
        p.secs,
        rows / p.secs,
        cpu_per_million,
        p.sample.hwm_mib()
    ));
    if published != rows {
        progress(&format!("warning: {published} records in Kafka, {rows} sent"));
    }
    Ok(cpu_per_million)
}

/// `produce-floor` arguments for Kafka: [`floor_args`], the bench's broker, and the
/// `--kafka-prop`s among `--tailbox-arg`s (tailbox applies them to the same producer).
fn producer_args(env: &Env, cfg: &Config, topic: &str) -> Vec<String> {
    let mut args = floor_args(cfg, topic, cfg.rows);
    args.extend(["--brokers".into(), env.kafka.bootstrap().to_owned()]);
    let mut tailbox_args = cfg.tailbox_args.iter();
    while let Some(arg) = tailbox_args.next() {
        let prop = match arg.strip_prefix("--kafka-prop") {
            Some("") => tailbox_args.next().cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_owned),
            None => None,
        };
        if let Some(prop) = prop {
            args.extend(["--kafka-prop".to_owned(), prop]);
        }
    }
    args
}

/// The `produce-floor` arguments every sink takes: `topic` (the stream, for Redis),
/// `rows`, payload and transaction size.
pub(crate) fn floor_args(cfg: &Config, topic: &str, rows: u64) -> Vec<String> {
    vec![
        "--topic".into(),
        topic.to_owned(),
        "--rows".into(),
        rows.to_string(),
        "--payload-bytes".into(),
        cfg.payload_bytes.to_string(),
        "--txn-size".into(),
        cfg.txn_size.to_string(),
    ]
}

/// Waits until `done()` or `timeout`, checking tailbox is alive.
pub(crate) async fn wait_for(
    what: &str,
    tb: &mut TailboxProc,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        tb.check_alive()?;
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// An empty table, a fresh topic and slot for `phase`, and tailbox streaming from the
/// slot (for the phases that write while tailbox runs).
async fn live_tailbox(
    env: &Env,
    cfg: &Config,
    phase: &str,
    run: u32,
) -> Result<(PhaseNames, TailboxProc)> {
    let names = env.names(phase, run);
    env.reset_table().await?;
    env.create_topic(&names.topic).await?;
    env.create_slot(&names.slot).await?;
    let mut tb =
        TailboxProc::spawn(&env.tailbox, &env.tailbox_args(cfg, &names), env.log_path(phase, run))?;
    measure::wait_active(env, &names.slot, &mut tb, Duration::from_secs(60)).await?;
    Ok((names, tb))
}

/// (4): latency at a fixed commit rate.
pub async fn steady(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let (names, mut tb) = live_tailbox(env, cfg, "steady", run).await?;
    let consumer = LatencyConsumer::start(env.kafka.bootstrap(), &names.topic, env.partitions)?;
    let url = env.pg.url();

    progress(&format!("run {run}: steady load, 3 s warm-up"));
    let mut writers = load::Writers::connect(&url, cfg.writers).await?;
    let warm = writers
        .run(cfg.rate, cfg.steady_txn_size, Duration::from_secs(3), env.pad, WARMUP_TYPE)
        .await?;
    wait_for("the warm-up events' arrival", &mut tb, Duration::from_secs(60), || {
        consumer.warmup() >= warm.events
    })
    .await?;

    progress(&format!("run {run}: steady load, {} events/s for {} s", cfg.rate, cfg.duration_secs));
    let before = tb.sample()?;
    let threads_before = measure::thread_cpu(tb.pid());
    let cpu0 = CpuSnapshot::take(&env.roots());
    let t0 = Instant::now();
    let load = writers
        .run(
            cfg.rate,
            cfg.steady_txn_size,
            Duration::from_secs(cfg.duration_secs),
            env.pad,
            "OrderCreated",
        )
        .await?;
    drop(writers);
    wait_for("the steady events' arrival", &mut tb, Duration::from_secs(120), || {
        consumer.measured() >= load.events
    })
    .await?;
    let after = tb.sample()?;
    for (thread, cpu) in measure::busy_threads(tb.pid()) {
        let was = threads_before.iter().find(|(t, _)| *t == thread).map_or(0.0, |(_, c)| *c);
        m.push(format!("steady.thread_cpu_s.{thread}"), cpu - was);
    }
    let busy = t0.elapsed().as_secs_f64();
    let (machine, other) = CpuSnapshot::take(&env.roots()).since(&cpu0);
    m.push("steady.machine_busy_cores", machine);
    m.push("steady.other_cores", other);
    let samples = consumer.finish()?;
    samples.write_csv(&env.logs.join(format!("steady-r{run}-latency.csv")))?;
    stop(tb)?;
    env.drop_slot(&names.slot).await?;
    env.delete_topic(&names.topic).await;

    let events = load.events as f64;
    let cpu = after.cpu_secs() - before.cpu_secs();
    m.push("steady.achieved_rate", events / load.secs);
    m.push("steady.events", events);
    m.push("steady.cpu_s_per_million", cpu / (events / MB));
    m.push("steady.cpu_util", cpu / busy);
    m.push("steady.peak_rss_mib", after.hwm_mib());
    let mut ack = samples.commit_to_append_us;
    let mut recv = samples.commit_to_receive_us;
    ack.sort_unstable();
    recv.sort_unstable();
    let ms = |v: &[i64], q: f64| quantile(v, q).map_or(f64::NAN, |us| us as f64 / 1000.0);
    let mut rtt = load.commit_rtt_us;
    rtt.sort_unstable();
    m.push("steady.commit_rtt_p50_ms", ms(&rtt, 0.5));
    m.push("steady.commit_rtt_p99_ms", ms(&rtt, 0.99));
    m.push("steady.commit_rtt_p999_ms", ms(&rtt, 0.999));
    m.push("steady.ack_p50_ms", ms(&ack, 0.5));
    m.push("steady.ack_p99_ms", ms(&ack, 0.99));
    m.push("steady.ack_p999_ms", ms(&ack, 0.999));
    m.push("steady.recv_p50_ms", ms(&recv, 0.5));
    m.push("steady.recv_p99_ms", ms(&recv, 0.99));
    m.push("steady.recv_p999_ms", ms(&recv, 0.999));
    progress(&format!(
        "run {run}: {:.0} events/s achieved; commit→append p50/p99/p99.9 {:.1}/{:.1}/{:.1} ms, \
         commit→receive {:.1}/{:.1}/{:.1} ms; {:.2} CPU-s per million, peak RSS {:.1} MiB",
        events / load.secs,
        ms(&ack, 0.5),
        ms(&ack, 0.99),
        ms(&ack, 0.999),
        ms(&recv, 0.5),
        ms(&recv, 0.99),
        ms(&recv, 0.999),
        cpu / (events / MB),
        after.hwm_mib()
    ));
    Ok(())
}

/// (5): one transaction of `huge_rows` rows, tailbox running while it commits.
pub async fn huge(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let (names, mut tb) = live_tailbox(env, cfg, "huge", run).await?;

    progress(&format!("run {run}: one transaction of {} rows", cfg.huge_rows));
    let mut client = env.pg.client().await?;
    let loaded = load::huge(&mut client, cfg.huge_rows, env.pad).await?;
    let cpu0 = CpuSnapshot::take(&env.roots());
    drop(client);
    let mut walsender = WalsenderWatch::default();
    let mut last = ProcSample::default();
    measure::wait_confirmed(
        env,
        &names.slot,
        loaded.end_lsn,
        drain_timeout(cfg.huge_rows),
        &mut walsender,
        || {
            last = tb.sample()?;
            Ok(())
        },
    )
    .await
    .context("waiting for the huge transaction")?;
    let publish = loaded.committed_at.elapsed().as_secs_f64();
    for (thread, cpu) in measure::busy_threads(tb.pid()) {
        m.push(format!("huge.thread_cpu_s.{thread}"), cpu);
    }
    let (busy, other) = CpuSnapshot::take(&env.roots()).since(&cpu0);
    m.push("huge.machine_busy_cores", busy);
    m.push("huge.other_cores", other);
    stop(tb)?;
    let published = env.records_in(&names.topic).await? as f64;
    env.drop_slot(&names.slot).await?;
    env.delete_topic(&names.topic).await;

    let rows = cfg.huge_rows as f64;
    m.push("huge.insert_s", loaded.secs);
    m.push("huge.publish_s", publish);
    m.push("huge.events_per_s", rows / publish);
    m.push("huge.peak_rss_mib", last.hwm_mib());
    m.push("huge.cpu_s_per_million", last.cpu_secs() / (rows / MB));
    m.push("huge.published", published);
    progress(&format!(
        "run {run}: published in {publish:.2} s after the commit; peak RSS {:.1} MiB",
        last.hwm_mib()
    ));
    if published != rows {
        progress(&format!("warning: {published} records in Kafka, {rows} rows written"));
    }
    Ok(())
}

/// (6): the catch-up of (1)–(3) into Redis Streams (`--sink redis`), with its own
/// pg_recvlogical reference in the same run over the same rows.
pub async fn redis(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let redis = env.redis.as_ref().context("the Redis phase needs the bench's Redis")?;
    let names = env.names("redis", run);
    env.reset_table().await?;
    env.create_slot(&names.ref_slot).await?;
    env.create_slot(&names.slot).await?;
    progress(&format!("run {run}: redis: loading {} rows", cfg.rows));
    let mut loader = env.pg.client().await?;
    let loaded = load::bulk(&mut loader, cfg.rows, cfg.txn_size, env.pad).await?;
    drop(loader);
    let rows = cfg.rows as f64;

    let r = measure::run_recvlogical(env, &names.ref_slot, loaded.end_lsn, drain_timeout(cfg.rows))
        .await?;
    env.drop_slot(&names.ref_slot).await?;
    let ref_rate = rows / r.secs;
    m.push("redis.ref_events_per_s", ref_rate);

    let mut server = redis.pid().and_then(CpuWatch::new);
    let mut tb = TailboxProc::spawn(
        &env.tailbox,
        &env.tailbox_redis_args(cfg, &names, &redis.url()),
        env.log_path("redis", run),
    )?;
    let drained = drain(env, cfg, &names.slot, loaded.end_lsn, &mut tb, "redis", m).await?;
    let (secs, last, walsender) = (drained.secs, drained.last, drained.walsender);
    if let Some(s) = server.as_mut() {
        s.poll();
    }
    stop(tb)?;
    env.drop_slot(&names.slot).await?;
    let published = take_stream(&redis.url(), &names.topic).await?;

    let rate = rows / secs;
    let cpu_per_million = last.cpu_secs() / (rows / MB);
    m.push("redis.events_per_s", rate);
    m.push("redis.ratio", rate / ref_rate);
    m.push("redis.secs", secs);
    m.push("redis.cpu_s", last.cpu_secs());
    m.push("redis.cpu_s_per_million", cpu_per_million);
    m.push("redis.peak_rss_mib", last.hwm_mib());
    m.push("redis.walsender_cpu_s", walsender.cpu_secs());
    m.push("redis.server_cpu_s", server.map(|s| s.cpu_secs()).unwrap_or(f64::NAN));
    m.push("redis.published", published as f64);
    progress(&format!(
        "run {run}: redis: tailbox {secs:.2} s, {rate:.0} events/s ({:.2} × pg_recvlogical), \
         {cpu_per_million:.2} CPU-s per million, peak RSS {:.1} MiB",
        rate / ref_rate,
        last.hwm_mib()
    ));
    if published as f64 != rows {
        progress(&format!("warning: {published} entries in Redis, {rows} rows written"));
    }

    let alone = redis_sink_alone(env, cfg, run, m).await?;
    m.push("redis.own_cpu_s_per_million", cpu_per_million - alone);
    Ok(())
}

/// (6a), after tailbox's catch-up into Redis: the Redis sink alone. tailbox's
/// `RedisSink` with tailbox's default settings writes `rows` entries shaped like the outbox
/// rows to a fresh stream, in a child process (`tailbox-bench produce-floor --sink
/// redis`, see producer.rs); no PostgreSQL involved. Returns its CPU seconds per
/// million events.
async fn redis_sink_alone(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<f64> {
    let redis = env.redis.as_ref().context("the Redis phase needs the bench's Redis")?;
    let stream = env.names("redis_alone", run).topic;
    progress(&format!("run {run}: the Redis sink alone writes {} entries", cfg.rows));
    let mut server = redis.pid().and_then(CpuWatch::new);
    let log = env.logs.join(format!("redis-alone-r{run}.log"));
    let mut args = floor_args(cfg, &stream, cfg.rows);
    args.extend(["--sink".into(), "redis".into(), "--redis-url".into(), redis.url()]);
    let p = measure::run_producer_alone(&args, &log, drain_timeout(cfg.rows))
        .await
        .context("the Redis sink alone")?;
    if let Some(s) = server.as_mut() {
        s.poll();
    }
    let published = take_stream(&redis.url(), &stream).await?;

    m.push("redis.sink_alone.server_cpu_s", server.map(|s| s.cpu_secs()).unwrap_or(f64::NAN));
    let cpu_per_million = record_sink_alone(m, "redis", run, cfg.rows, &p, published as f64);
    let rows = cfg.rows as f64;
    if published as f64 != rows {
        progress(&format!("warning: {published} entries in Redis, {rows} sent"));
    }
    Ok(cpu_per_million)
}

/// Records a sink-alone run `p` over `rows` events under `{phase}.sink_alone.` and
/// prints it; returns its CPU seconds per million events.
pub(crate) fn record_sink_alone(
    m: &mut Metrics,
    phase: &str,
    run: u32,
    rows: u64,
    p: &measure::ProducerRun,
    published: f64,
) -> f64 {
    let n = rows as f64;
    let cpu_per_million = p.sample.cpu_secs() / (n / MB);
    let key = |name: &str| format!("{phase}.sink_alone.{name}");
    m.push(key("events_per_s"), n / p.secs);
    m.push(key("cpu_s_per_million"), cpu_per_million);
    m.push(key("peak_rss_mib"), p.sample.hwm_mib());
    m.push(key("published"), published);
    progress(&format!(
        "run {run}: the {phase} sink alone {:.2} s, {:.0} events/s, {cpu_per_million:.2} \
         CPU-s per million, peak RSS {:.1} MiB",
        p.secs,
        n / p.secs,
        p.sample.hwm_mib()
    ));
    cpu_per_million
}

/// The length of `stream`, which is then deleted (the next run starts without it).
async fn take_stream(url: &str, stream: &str) -> Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(60))),
        )
        .await?;
    let published: u64 = redis::cmd("XLEN").arg(stream).query_async(&mut conn).await?;
    let _: () = redis::cmd("DEL").arg(stream).query_async(&mut conn).await?;
    Ok(published)
}

/// What [`drain`] measured.
pub(crate) struct Drained {
    /// Spawn → replication started.
    pub(crate) startup: f64,
    /// Spawn → the slot confirmed the last commit.
    pub(crate) secs: f64,
    /// tailbox's last sample.
    pub(crate) last: ProcSample,
    pub(crate) walsender: WalsenderWatch,
}

/// Waits until `tb` streams from `slot`, then until the slot confirmed `end_lsn`,
/// sampling tailbox; records its busy threads' CPU under `{phase}.thread_cpu_s.`.
pub(crate) async fn drain(
    env: &Env,
    cfg: &Config,
    slot: &str,
    end_lsn: u64,
    tb: &mut TailboxProc,
    phase: &str,
    m: &mut Metrics,
) -> Result<Drained> {
    let mut walsender = WalsenderWatch::default();
    measure::wait_active(env, slot, tb, Duration::from_secs(60)).await?;
    let startup = tb.started.elapsed().as_secs_f64();
    let mut last = ProcSample::default();
    measure::wait_confirmed(env, slot, end_lsn, drain_timeout(cfg.rows), &mut walsender, || {
        last = tb.sample()?;
        Ok(())
    })
    .await?;
    let secs = tb.started.elapsed().as_secs_f64();
    for (thread, cpu) in measure::busy_threads(tb.pid()) {
        m.push(format!("{phase}.thread_cpu_s.{thread}"), cpu);
    }
    Ok(Drained { startup, secs, last, walsender })
}

/// Rows of the warm-up catch-up (at most `--rows`).
const WARMUP_ROWS: u64 = 200_000;

/// Not measured: one catch-up, so that the broker has created its internal topics (the
/// idempotent producer's first PID request waits for the transaction coordinator) and
/// warmed its JIT before the first measured run. 20,000 rows were not enough: the
/// first measured run then spent about twice the broker CPU of the later ones.
pub async fn warmup(env: &Env, cfg: &Config) -> Result<()> {
    let rows = WARMUP_ROWS.min(cfg.rows);
    progress(&format!("warm-up: a {rows}-row catch-up, not measured"));
    let names = env.names("warmup", 0);
    env.reset_table().await?;
    env.create_topic(&names.topic).await?;
    env.create_slot(&names.slot).await?;
    let mut loader = env.pg.client().await?;
    let loaded = load::bulk(&mut loader, rows, cfg.txn_size, env.pad).await?;
    drop(loader);
    let mut tb = TailboxProc::spawn(
        &env.tailbox,
        &env.tailbox_args(cfg, &names),
        env.log_path("warmup", 0),
    )?;
    let mut walsender = WalsenderWatch::default();
    measure::wait_confirmed(
        env,
        &names.slot,
        loaded.end_lsn,
        Duration::from_secs(120),
        &mut walsender,
        || tb.check_alive(),
    )
    .await
    .context("warm-up")?;
    stop(tb)?;
    env.drop_slot(&names.slot).await?;
    env.delete_topic(&names.topic).await;
    Ok(())
}

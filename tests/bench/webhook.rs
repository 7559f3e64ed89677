//! (7): the webhook sink (`--sink webhook`, 16 requests in flight) against a local
//! receiver in this process (tests/support's, which checks every signature): the
//! catch-up rate and CPU per million events over already-committed rows, next to the
//! webhook sink alone posting as many events (7a; a child process of this binary,
//! `tailbox-bench produce-floor --sink webhook`, see producer.rs) and tailbox's own
//! share of the CPU (7b), then the commit→receive latency while writers commit 1,000
//! events/s.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use tailbox_e2e::{Arrival, WebhookReceiver};

use crate::config::Config;
use crate::env::{AGGREGATE_TYPE, Env, PhaseNames};
use crate::latency::{WARMUP_TYPE, quantile};
use crate::load;
use crate::measure::{self, TailboxProc};
use crate::phases::{drain, drain_timeout, floor_args, record_sink_alone, stop, wait_for};
use crate::progress;
use crate::report::Metrics;

/// The signing secret (Standard Webhooks form): signing and checking are part of the
/// cost measured.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Requests in flight (the default of `--webhook-concurrency`, named here so the
/// report says what it measured).
pub const CONCURRENCY: u32 = 16;
/// Rows of the catch-up, at most: one POST each, so far slower than Kafka's batches.
const MAX_ROWS: u64 = 100_000;
/// The commit rate of the latency measurement.
pub const RATE: u64 = 1_000;

/// `tailbox run` arguments for the webhook sink posting to `receiver`.
fn args(
    env: &Env,
    cfg: &Config,
    names: &PhaseNames,
    receiver: &WebhookReceiver,
) -> Result<Vec<String>> {
    let secret = env.logs.join("webhook-secret");
    std::fs::write(&secret, SECRET).context("writing the webhook secret")?;
    let mut args = env.tailbox_args(cfg, names);
    if let Some(at) = args.iter().position(|a| a == "--kafka-brokers") {
        args.drain(at..at + 2);
    }
    args.extend([
        "--sink".into(),
        "webhook".into(),
        "--webhook-url".into(),
        format!("{}/hooks/{{aggregatetype}}", receiver.url()),
        "--webhook-secret-file".into(),
        secret.display().to_string(),
        "--webhook-concurrency".into(),
        CONCURRENCY.to_string(),
    ]);
    Ok(args)
}

/// Both measurements of one run.
pub async fn webhook(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    catchup(env, cfg, run, m).await?;
    latency(env, cfg, run, m).await
}

async fn catchup(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let names = env.names("webhook", run);
    let rows = cfg.rows.min(MAX_ROWS);
    env.reset_table().await?;
    env.create_slot(&names.slot).await?;
    progress(&format!("run {run}: webhook: loading {rows} rows"));
    let mut loader = env.pg.client().await?;
    let loaded = load::bulk(&mut loader, rows, cfg.txn_size, env.pad).await?;
    drop(loader);
    let receiver = WebhookReceiver::start(SECRET).await?;
    let mut tb = TailboxProc::spawn(
        &env.tailbox,
        &args(env, cfg, &names, &receiver)?,
        env.log_path("webhook", run),
    )?;
    let drained = drain(env, cfg, &names.slot, loaded.end_lsn, &mut tb, "webhook", m).await?;
    stop(tb)?;
    env.drop_slot(&names.slot).await?;
    let arrivals = receiver.arrivals();
    let published = arrivals.iter().filter(|a| a.delivered()).count() as f64;
    let signed = arrivals.iter().all(|a| a.signature_ok);
    drop(arrivals);

    let n = rows as f64;
    let rate = n / drained.secs;
    let cpu_per_million = drained.last.cpu_secs() / (n / 1e6);
    m.push("webhook.rows", n);
    m.push("webhook.events_per_s", rate);
    m.push("webhook.secs", drained.secs);
    m.push("webhook.cpu_s_per_million", cpu_per_million);
    m.push("webhook.peak_rss_mib", drained.last.hwm_mib());
    m.push("webhook.walsender_cpu_s", drained.walsender.cpu_secs());
    m.push("webhook.published", published);
    progress(&format!(
        "run {run}: webhook: {rows} events in {:.2} s, {rate:.0} events/s, {cpu_per_million:.2} \
         CPU-s per million, peak RSS {:.1} MiB",
        drained.secs,
        drained.last.hwm_mib()
    ));
    if published != n || !signed {
        progress(&format!(
            "warning: {published} requests delivered for {rows} rows; all signed: {signed}"
        ));
    }

    let alone = sink_alone(env, cfg, &names, rows, run, m).await?;
    m.push("webhook.own_cpu_s_per_million", cpu_per_million - alone);
    Ok(())
}

/// (7a), after tailbox's catch-up: the webhook sink alone. tailbox's `WebhookSink`
/// with the settings tailbox runs with in this phase (`tailbox config check` of the same
/// arguments: secret, concurrency, and every default) posts `rows`
/// events shaped like the outbox rows, to the same URL template as tailbox, at a fresh
/// receiver (so that what arrives is the sink alone's), from a child process
/// (`tailbox-bench produce-floor --sink webhook`, see producer.rs); no replication
/// involved, but the sink connects to PostgreSQL and checks its tables as in tailbox.
/// Returns its CPU seconds per million events.
async fn sink_alone(
    env: &Env,
    cfg: &Config,
    names: &PhaseNames,
    rows: u64,
    run: u32,
    m: &mut Metrics,
) -> Result<f64> {
    progress(&format!("run {run}: the webhook sink alone posts {rows} events"));
    let receiver = WebhookReceiver::start(SECRET).await?;
    let log = env.logs.join(format!("webhook-alone-r{run}.log"));
    // tailbox's own effective settings for this receiver (defaults included), so the
    // sink alone runs as tailbox does without a copy of them; the records' topic is the
    // one tailbox's topic template gives the bench's rows.
    let settings = env.logs.join(format!("webhook-alone-r{run}.toml"));
    effective_settings(env, &args(env, cfg, names, &receiver)?, &settings)?;
    let mut args = floor_args(cfg, &names.topic, rows);
    args.extend([
        "--sink".into(),
        "webhook".into(),
        "--settings".into(),
        settings.display().to_string(),
        "--pg-url".into(),
        env.pg.url(),
    ]);
    let p = measure::run_producer_alone(&args, &log, drain_timeout(rows))
        .await
        .context("the webhook sink alone")?;
    let arrivals = receiver.arrivals();
    let published = arrivals.iter().filter(|a| a.delivered()).count() as f64;
    let signed = arrivals.iter().all(|a| a.signature_ok);
    let path = format!("/hooks/{AGGREGATE_TYPE}");
    let routed = arrivals.iter().all(|a| a.path == path);
    drop(arrivals);

    let cpu_per_million = record_sink_alone(m, "webhook", run, rows, &p, published);
    let n = rows as f64;
    if published != n || !signed || !routed {
        progress(&format!(
            "warning: the webhook sink alone: {published} requests delivered for {rows} events; \
             all signed: {signed}; all to {path}: {routed}"
        ));
    }
    Ok(cpu_per_million)
}

/// commit→receive: the receiver's clock at arrival minus the commit time tailbox sends
/// (`tailbox-commit-ts`, µs since the epoch, PostgreSQL's clock: the same machine).
fn commit_to_receive_us(a: &Arrival) -> Option<i64> {
    let commit: i64 = a.header("tailbox-commit-ts")?.parse().ok()?;
    let received =
        i64::try_from(a.received_at.duration_since(UNIX_EPOCH).ok()?.as_micros()).ok()?;
    Some(received - commit)
}

async fn latency(env: &Env, cfg: &Config, run: u32, m: &mut Metrics) -> Result<()> {
    let names = env.names("webhook_steady", run);
    env.reset_table().await?;
    env.create_slot(&names.slot).await?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    let mut tb = TailboxProc::spawn(
        &env.tailbox,
        &args(env, cfg, &names, &receiver)?,
        env.log_path("webhook_steady", run),
    )?;
    measure::wait_active(env, &names.slot, &mut tb, Duration::from_secs(60)).await?;
    let mut writers = load::Writers::connect(&env.pg.url(), cfg.writers).await?;
    progress(&format!("run {run}: webhook: 3 s warm-up at {RATE} events/s"));
    let warm = writers
        .run(RATE, cfg.steady_txn_size, Duration::from_secs(3), env.pad, WARMUP_TYPE)
        .await?;
    let warm_events = usize::try_from(warm.events)?;
    wait_for("the warm-up webhooks", &mut tb, Duration::from_secs(60), || {
        receiver.delivered() >= warm_events
    })
    .await?;
    progress(&format!("run {run}: webhook: {RATE} events/s for {} s", cfg.duration_secs));
    let before = tb.sample()?;
    let t0 = std::time::Instant::now();
    let load = writers
        .run(
            RATE,
            cfg.steady_txn_size,
            Duration::from_secs(cfg.duration_secs),
            env.pad,
            "OrderCreated",
        )
        .await?;
    drop(writers);
    let total = warm_events + usize::try_from(load.events)?;
    wait_for("the measured webhooks", &mut tb, Duration::from_secs(120), || {
        receiver.delivered() >= total
    })
    .await?;
    let after = tb.sample()?;
    let busy = t0.elapsed().as_secs_f64();
    stop(tb)?;
    env.drop_slot(&names.slot).await?;

    let mut us: Vec<i64> = receiver
        .arrivals()
        .iter()
        .filter(|a| a.delivered() && a.header("tailbox-event-type") != Some(WARMUP_TYPE))
        .filter_map(commit_to_receive_us)
        .collect();
    us.sort_unstable();
    let ms = |q: f64| quantile(&us, q).map_or(f64::NAN, |v| v as f64 / 1000.0);
    let events = load.events as f64;
    let cpu = after.cpu_secs() - before.cpu_secs();
    m.push("webhook.steady_rate", events / load.secs);
    m.push("webhook.steady_events", us.len() as f64);
    m.push("webhook.recv_p50_ms", ms(0.5));
    m.push("webhook.recv_p99_ms", ms(0.99));
    m.push("webhook.recv_p999_ms", ms(0.999));
    m.push("webhook.steady_cpu_s_per_million", cpu / (events / 1e6));
    m.push("webhook.steady_cpu_util", cpu / busy);
    progress(&format!(
        "run {run}: webhook: {:.0} events/s; commit→receive p50/p99/p99.9 {:.1}/{:.1}/{:.1} ms; \
         {:.2} CPU-s per million",
        events / load.secs,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        cpu / (events / 1e6)
    ));
    Ok(())
}

/// Writes to `out` what `tailbox config check` prints for the `tailbox run` arguments
/// `run_args`: every effective value, defaults included (TOML).
fn effective_settings(env: &Env, run_args: &[String], out: &Path) -> Result<()> {
    let check_args = run_args.iter().skip_while(|a| *a != "run").skip(1);
    let output = std::process::Command::new(&env.tailbox)
        .args(["config", "check"])
        .args(check_args)
        .output()
        .with_context(|| format!("running {} config check", env.tailbox.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "tailbox config check failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(out, &output.stdout).with_context(|| format!("writing {}", out.display()))
}

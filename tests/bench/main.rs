//! `tailbox-bench` (`make bench`): starts a throwaway PostgreSQL 15 and Kafka broker,
//! writes outbox rows and measures
//! 1. pg_recvlogical draining a slot (pgoutput v1) to /dev/null: the ceiling;
//! 2. tailbox catching up on the same rows from its own slot, until the slot
//!    confirmed the last commit (so Kafka acknowledged every record);
//! 3. tailbox's CPU time and peak RSS per million events, next to what tailbox's Kafka
//!    producer costs alone for as many records (a child process of this binary,
//!    `tailbox-bench produce-floor`, see producer.rs);
//! 4. commit→Kafka and commit→consumer latency under a fixed commit rate;
//! 5. one huge transaction: peak RSS and time to publish;
//! 6. the catch-up into Redis Streams, next to tailbox's Redis sink alone (`produce-floor
//!    --sink redis`);
//! 7. HTTP webhooks to a local receiver: catch-up rate and CPU at 16 requests in
//!    flight, next to tailbox's webhook sink alone (`produce-floor --sink webhook`),
//!    commit→receive latency at 1,000 events/s.
//!
//! Each figure is the median of N runs. Progress goes to stderr, the Markdown table to
//! stdout, and both reports to `target/bench/report.{md,json}`. See
//! docs/benchmarks.md for what every number means.

mod config;
mod env;
mod latency;
mod load;
mod measure;
mod phases;
mod producer;
mod report;
mod webhook;

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::env::Env;
use crate::report::Metrics;

/// A progress line on stderr, with the time since the bench started.
pub fn progress(msg: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {t:7.1}s] {msg}");
}

/// The allocator tailbox's binary uses (crates/cli/src/main.rs), so that the Kafka
/// producer alone allocates as tailbox does (librdkafka included, through `override`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(producer::SUBCOMMAND) {
        return producer::child_main(args);
    }
    let Some(cfg) = Config::from_args()? else {
        return Ok(());
    };
    progress("tailbox-bench");
    if cfg!(debug_assertions) {
        progress(
            "warning: tailbox-bench itself is a debug build; its load generator and consumer cost more CPU (use make bench)",
        );
    }
    if std::env::var_os("TAILBOX_BIN").is_none()
        && std::env::var_os("TAILBOX_TEST_RELEASE").is_none()
    {
        bail!(
            "the bench measures the release build: run `make bench`, or set TAILBOX_TEST_RELEASE=1 \
             (or TAILBOX_BIN=path/to/release/tailbox)"
        );
    }
    progress("building tailbox (release)");
    let tailbox = tailbox_e2e::tailbox_bin()?;
    let _autogroup = measure::AutogroupGuard::save();
    if cfg.nice != 0 {
        // Before any other thread exists: they all inherit it, and so do tailbox and
        // pg_recvlogical.
        measure::renice_trees(&[std::process::id()], cfg.nice).context("renicing the bench")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(bench(cfg, tailbox))
}

/// Waits (up to `--quiet-wait-secs`) until processes other than the bench's use less
/// than half a core, measured over 2 s; returns the last measurement (cores).
async fn wait_quiet(env: &Env, cfg: &Config) -> f64 {
    let deadline = Instant::now() + std::time::Duration::from_secs(cfg.quiet_wait_secs);
    loop {
        let before = measure::CpuSnapshot::take(&env.roots());
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let (_, other) = measure::CpuSnapshot::take(&env.roots()).since(&before);
        if other < 0.5 || Instant::now() >= deadline {
            if other >= 0.5 {
                progress(&format!(
                    "warning: other processes use {other:.2} cores; measuring anyway"
                ));
            }
            return other;
        }
        progress(&format!("waiting: other processes use {other:.2} cores"));
    }
}

async fn bench(cfg: Config, tailbox: std::path::PathBuf) -> Result<()> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let env = Env::setup(&cfg, tailbox).await?;
    let machine = env::machine_info(&env).await?;
    progress(&format!("machine: {machine}"));
    if cfg.phases.uses_kafka() {
        phases::warmup(&env, &cfg).await?;
    }
    let mut m = Metrics::default();
    for run in 1..=cfg.runs {
        progress(&format!("=== run {run} of {} ===", cfg.runs));
        let background = wait_quiet(&env, &cfg).await;
        m.push("run.background_cores", background);
        if cfg.phases.catchup {
            phases::catchup(&env, &cfg, run, &mut m).await?;
        }
        if cfg.phases.steady {
            phases::steady(&env, &cfg, run, &mut m).await?;
        }
        if cfg.phases.huge {
            phases::huge(&env, &cfg, run, &mut m).await?;
        }
        if cfg.phases.redis {
            phases::redis(&env, &cfg, run, &mut m).await?;
        }
        if cfg.phases.webhook {
            webhook::webhook(&env, &cfg, run, &mut m).await?;
        }
    }
    let md = report::markdown(&cfg, &machine, &m);
    let json = report::json(&cfg, &machine, &m);
    let md_path = cfg.out.join("report.md");
    let json_path = cfg.out.join("report.json");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    progress(&format!(
        "wrote {} and {}; stopping the servers",
        md_path.display(),
        json_path.display()
    ));
    drop(env);
    print!("{md}");
    Ok(())
}

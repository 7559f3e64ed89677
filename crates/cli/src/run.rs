//! `tailbox run`: turn the validated configuration into pipeline settings, start the
//! HTTP endpoint, the slot poller and the progress reporter, then run the pipeline
//! until a signal.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, anyhow};
use tailbox_pipeline::{PipelineMetrics, PipelineSettings, shutdown, supervisor};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    config::Config,
    http, logging,
    ops::{self, Ops},
    progress,
};

/// Pipeline settings from the configuration; every error names the option and the fix.
pub fn settings(config: &Config, metrics: Arc<PipelineMetrics>) -> Result<PipelineSettings> {
    let pg = config.pg()?;
    // With Kafka, librdkafka judges every property now, so a typo fails at startup,
    // naming it (and never echoing a secret value).
    let destination = config.destination()?;
    Ok(PipelineSettings {
        pg,
        slot: config.slot.clone(),
        publication: config.publication.clone(),
        outbox: config.outbox()?,
        more_tables: config.more_tables.clone(),
        all_tables: config.all_tables.then(|| config.mapping.clone()),
        destination,
        checkpoint_topic: config.checkpoint_topic.clone(),
        status_interval: config.status_interval(),
        max_in_flight: config.max_in_flight,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
        accept_slot_position: config.accept_slot_position,
        accept_checkpoint_divergence: config.accept_checkpoint_divergence,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
        message_prefix: config.message_prefix.clone(),
        dlq_topic: config.dlq_topic.clone(),
        exactly_once: config.exactly_once,
        transactional_id: config.transactional_id.clone(),
        dry_run: config.dry_run,
        heartbeat_interval: config.heartbeat_interval(),
        heartbeat_sql: Some(config.heartbeat_sql.clone()),
        metrics,
    })
}

/// Runs the pipeline on a single-threaded runtime (one core does the work; fewer
/// thread hops per event) until SIGINT/SIGTERM.
/// With `backfill` (`Some(rows)`), first publishes the rows already in the table
/// (see [`tailbox_pipeline::backfill`]).
pub fn run(config: &Config, backfill: Option<tailbox_pipeline::backfill::Rows<'_>>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run_async(config, backfill));
    logging::clear_progress();
    result
}

async fn run_async(
    config: &Config,
    backfill: Option<tailbox_pipeline::backfill::Rows<'_>>,
) -> Result<()> {
    // Handlers go in before anything else, so a signal during startup is a clean
    // stop too, never the default "die at once".
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        info!("signal received, shutting down");
        trigger.trigger();
    });

    let metrics = Arc::new(PipelineMetrics::default());
    let settings = settings(config, Arc::clone(&metrics))?;
    let mut ops = Ops::new(metrics, &config.slot, &config.publication, config.dry_run);
    if let tailbox_pipeline::settings::Destination::Kafka(kafka) = &settings.destination {
        ops.topics = Arc::clone(&kafka.topics.registry);
    }
    let ops = Arc::new(ops);

    let mut background = Vec::new();
    if let Some(addr) = config.metrics_addr {
        match http::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                info!(addr = %bound, "serving /metrics, /healthz, /readyz, /status");
                background.push(tokio::spawn(http::serve(listener, Arc::clone(&ops))));
            }
            // The built-in default is best effort (two tailboxes on one host);
            // an address someone chose must work.
            Err(err) if config.metrics_addr_is_default() => warn!(
                %addr, error = %err,
                "metrics endpoint not started on the default address; set --metrics-addr (TAILBOX_METRICS_ADDR) to a free address, or '' to turn it off"
            ),
            Err(err) => {
                return Err(anyhow!(
                    "cannot listen on metrics_addr {addr} (from {}): {err}; fix: choose a free address, or '' to turn the endpoint off",
                    config.source("metrics_addr").label("metrics_addr")
                ));
            }
        }
    }
    background.push(tokio::spawn(ops::poll_slot(Arc::clone(&ops), settings.pg.clone())));
    let mode =
        if logging::stderr_is_terminal() && config.log_format == crate::logging::LogFormat::Text {
            progress::Mode::Terminal
        } else if config.progress_interval_secs > 0 {
            progress::Mode::Log(Duration::from_secs(config.progress_interval_secs))
        } else {
            progress::Mode::Off
        };
    background.push(tokio::spawn(progress::run(Arc::clone(&ops), mode)));

    if config.dry_run {
        warn!("dry run: nothing is published and the slot is never confirmed");
    }
    if let Some(rows) = backfill {
        tailbox_pipeline::backfill::run(&settings, rows).await.context("backfill")?;
    }
    ops.loop_alive.store(true, std::sync::atomic::Ordering::Relaxed);
    let result = supervisor::run(settings, shutdown).await;
    ops.loop_alive.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in background {
        task.abort();
    }
    let stats = result?;
    info!(published = stats.published, transactions = stats.transactions, "tailbox stopped");
    Ok(())
}

//! `tailbox run`: validate the options, then run the pipeline until a signal.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tailbox_kafka_sink::{SinkConfig, config::parse_property};
use tailbox_outbox::{ColumnNames, OutboxConfig};
use tailbox_pipeline::{PipelineSettings, shutdown, supervisor};
use tailbox_replication::{PgConnectionConfig, control::validate_identifier};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::cli::RunArgs;

/// Validates `args` into pipeline settings; every error names the option and the fix.
fn settings(args: RunArgs) -> Result<PipelineSettings> {
    validate_identifier("--slot", &args.slot)?;
    validate_identifier("--publication", &args.publication)?;
    let pg = PgConnectionConfig::parse(&args.pg_url)?;
    let properties = args
        .kafka_props
        .iter()
        .map(|p| parse_property(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    if args.kafka_brokers.trim().is_empty() {
        return Err(anyhow!(
            "--kafka-brokers is empty; fix: give host:port of at least one broker"
        ));
    }
    let columns = ColumnNames {
        id: args.column_id,
        aggregate_type: args.column_aggregate_type,
        aggregate_id: args.column_aggregate_id,
        event_type: args.column_type,
        payload: args.column_payload,
    };
    let outbox = OutboxConfig::new(&args.outbox_table, columns, &args.topic_template)?;
    tailbox_outbox::topic::validate_topic(&args.checkpoint_topic).map_err(|reason| {
        anyhow!(
            "invalid --checkpoint-topic {:?}: {reason}; fix: use letters, digits, '.', '_', '-'",
            args.checkpoint_topic
        )
    })?;
    let kafka = SinkConfig { brokers: args.kafka_brokers, properties };
    // Let librdkafka judge every property now, so a typo fails at startup, naming it.
    tailbox_kafka_sink::KafkaSink::new(&kafka).context("checking --kafka-prop")?;
    Ok(PipelineSettings {
        pg,
        slot: args.slot,
        publication: args.publication,
        outbox,
        kafka,
        checkpoint_topic: args.checkpoint_topic,
        status_interval: Duration::from_millis(args.status_interval_ms),
        max_in_flight: args.max_in_flight,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        accept_slot_position: args.accept_slot_position,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
        dlq_topic: "outbox.dlq".into(),
        dry_run: false,
        heartbeat_interval: None,
        heartbeat_sql: None,
        metrics: Default::default(),
    })
}

/// Runs the pipeline on a single-threaded runtime (one core does the work; fewer
/// thread hops per event) until SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Handlers go in before anything else, so a signal during startup is a clean
        // stop too, never the default "die at once".
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            info!("signal received, shutting down");
            trigger.trigger();
        });
        let settings = settings(args)?;
        let stats = supervisor::run(settings, shutdown).await?;
        info!(published = stats.published, transactions = stats.transactions, "tailbox stopped");
        Ok(())
    })
}

//! The supervisor: checks, starts a session, and restarts it after transient errors
//! with capped exponential backoff, until shutdown or a definite error.
//!
//! # Startup order, and why
//! 1. Control-plane checks (wal_level, slot, publication, table, columns): definite
//!    problems stop tailbox with the fix.
//! 2. START_REPLICATION. From now on the slot is held by our walsender and cannot move
//!    (a standby instance waits here).
//! 3. Exactly-once: `init_transactions`, fencing older instances of this slot.
//! 4. Read our checkpoint from Kafka (creating the topic if needed): the record of this
//!    slot of this database of this cluster, judged against the server's timeline
//!    history ([`crate::resume`]); another owner's record never skips anything.
//! 5. Only now read the slot's `confirmed_flush_lsn` and compare it with the
//!    checkpoint. Checking before step 2 would leave a window in which another client
//!    could advance the slot and we would be fast-forwarded silently.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use tailbox_kafka_sink::KafkaSink;
use tailbox_redis_sink::RedisSink;
use tailbox_replication::{
    ControlClient, PgWalStream, ReplicationError, control::slot_lost, stream::StreamSettings,
};
use tailbox_sink::{DryRunSink, Sink};
use tailbox_webhook_sink::WebhookSink;
use tracing::{info, warn};

use crate::{
    error::PipelineError,
    metrics::ErrorKind,
    resume::{self, CheckpointOwner, Resume},
    session::{DeliveryMode, Session, SessionStats, SinkTransaction},
    settings::{DEFAULT_HEARTBEAT_SQL, Destination, PipelineSettings},
    shutdown::Shutdown,
};

/// How often a standby instance tries to take the slot over.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// A session that ran at least this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// Runs the pipeline until shutdown (`Ok`) or a definite error.
pub async fn run(
    settings: PipelineSettings,
    mut shutdown: Shutdown,
) -> Result<SessionStats, PipelineError> {
    let mut backoff = settings.backoff_initial;
    let mut once = OncePerProcess {
        accept_slot_position: settings.accept_slot_position,
        accept_checkpoint_divergence: settings.accept_checkpoint_divergence,
        warned_ignored_checkpoints: false,
    };
    let mut totals = SessionStats::default();
    loop {
        if shutdown.is_requested() {
            return Ok(totals);
        }
        let started = Instant::now();
        let result = run_session(&settings, shutdown.clone(), &mut once).await;
        settings.metrics.streaming.store(false, Ordering::Relaxed);
        if let Err(err) = &result {
            settings.metrics.record_error(error_kind(err), &err.to_string());
            if !err.is_transient() {
                settings.metrics.record_error(ErrorKind::Fatal, &err.to_string());
            }
        }
        match result {
            Ok(stats) => {
                totals.published += stats.published;
                totals.transactions += stats.transactions;
                return Ok(totals);
            }
            Err(PipelineError::Replication(ReplicationError::SlotInUse { slot, pid }))
                if !shutdown.is_requested() =>
            {
                // Another instance streams from this slot: stand by and take over within
                // about a second of it going away.
                info!(slot = %slot, pid = ?pid, "slot held by another instance; standing by");
                tokio::select! {
                    () = shutdown.requested() => return Ok(totals),
                    () = tokio::time::sleep(STANDBY_POLL) => {}
                }
            }
            Err(err) if err.is_transient() && !shutdown.is_requested() => {
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff = settings.backoff_initial;
                }
                warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "session failed; retrying");
                tokio::select! {
                    () = shutdown.requested() => return Ok(totals),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(settings.backoff_max);
                settings.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) if err.is_transient() => return Ok(totals),
            Err(err) => return Err(err),
        }
    }
}

/// What holds for the first session of this process only.
struct OncePerProcess {
    /// `--accept-slot-position`: given for one start, not for every reconnect.
    accept_slot_position: bool,
    /// `--accept-checkpoint-divergence`: likewise.
    accept_checkpoint_divergence: bool,
    /// Checkpoint records that could not be attributed were reported.
    warned_ignored_checkpoints: bool,
}

async fn run_session(
    settings: &PipelineSettings,
    shutdown: Shutdown,
    once: &mut OncePerProcess,
) -> Result<SessionStats, PipelineError> {
    let table = settings.table_spec();
    let control = ControlClient::connect(&settings.pg).await?;
    let before = control.check_ready(&settings.slot, &settings.publication, &table).await?;

    let stream = PgWalStream::start(
        &settings.pg,
        &StreamSettings {
            slot: settings.slot.clone(),
            publication: settings.publication.clone(),
            start_lsn: before.confirmed_flush_lsn,
        },
    )
    .await?;
    let owner = CheckpointOwner::new(stream.identity(), &settings.slot);

    if settings.dry_run {
        // Logs what would be published; stores nothing, confirms nothing.
        let sink = DryRunSink::new();
        return stream_into(
            settings,
            control,
            stream,
            sink,
            DeliveryMode::AtLeastOnce,
            owner,
            shutdown,
            once,
        )
        .await;
    }
    match (&settings.destination, settings.exactly_once) {
        (Destination::Kafka(kafka), true) => {
            // One writer per slot of this database of this cluster: this fences any
            // older instance of the same and aborts its open transaction, so nothing it
            // left half-written becomes visible. Only after we hold the slot: a standby
            // waiting for it must not fence the active instance.
            let transactional_id =
                settings.transactional_id.clone().unwrap_or_else(|| owner.transactional_id());
            let sink =
                KafkaSink::new_transactional(kafka, &settings.checkpoint_topic, &transactional_id)?;
            sink.init_transactions(Duration::from_secs(60)).await?;
            let mode = DeliveryMode::ExactlyOnce(SinkTransaction::default());
            stream_into(settings, control, stream, sink, mode, owner, shutdown, once).await
        }
        (Destination::Kafka(kafka), false) => {
            let sink = KafkaSink::new(kafka, &settings.checkpoint_topic)?;
            let mode = DeliveryMode::AtLeastOnce;
            stream_into(settings, control, stream, sink, mode, owner, shutdown, once).await
        }
        // Entry IDs from the WAL make every Redis delivery exactly-once already.
        (Destination::Redis(redis), _) => {
            let sink = RedisSink::connect(redis, owner.name()).await?;
            let mode = DeliveryMode::AtLeastOnce;
            stream_into(settings, control, stream, sink, mode, owner, shutdown, once).await
        }
        // At least once: receivers deduplicate by webhook-id (`--exactly-once` is
        // refused for this sink by the configuration).
        (Destination::Webhook(webhook), _) => {
            let gauge = std::sync::Arc::clone(&settings.metrics.webhook_breaker);
            let sink = WebhookSink::connect(webhook, gauge).await?;
            let mode = DeliveryMode::AtLeastOnce;
            stream_into(settings, control, stream, sink, mode, owner, shutdown, once).await
        }
    }
}

/// Reads our checkpoint from `sink`, checks the slot against it, and runs the session.
#[allow(clippy::too_many_arguments)]
async fn stream_into<K: Sink>(
    settings: &PipelineSettings,
    control: ControlClient,
    stream: PgWalStream,
    mut sink: K,
    mode: DeliveryMode,
    owner: CheckpointOwner,
    shutdown: Shutdown,
    once: &mut OncePerProcess,
) -> Result<SessionStats, PipelineError> {
    let server = stream.identity().clone();
    // Read the checkpoint only now: in exactly-once mode the fencing above aborted any
    // transaction a killed predecessor left open, which would otherwise hold back what a
    // read_committed reader can see.
    let records = sink.read_checkpoints().await?;
    let scan = resume::scan(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), &owner);
    if !once.warned_ignored_checkpoints {
        for why in &scan.ignored {
            warn!(slot = %settings.slot, topic = %settings.checkpoint_topic, "checkpoint record not used: {why}");
        }
        once.warned_ignored_checkpoints = true;
    }
    let resume = resume::decide(scan.ours.as_ref(), &server, once.accept_checkpoint_divergence)
        .map_err(|divergence| PipelineError::CheckpointDiverged(Box::new(divergence)))?;
    if let Resume::Diverged { divergence, skip_before } = &resume {
        warn!(slot = %settings.slot, skip_before = %skip_before,
              "starting despite a diverged checkpoint (accept_checkpoint_divergence): {divergence}");
    }

    // The slot is ours now; its position cannot move until we confirm.
    let slot = control.slot_position(&settings.slot).await?;
    if slot.wal_status.as_deref() == Some("lost") {
        return Err(slot_lost(&settings.slot).into());
    }
    if let Some(covered) = resume.covered()
        && slot.confirmed_flush_lsn > covered
        && !once.accept_slot_position
    {
        return Err(PipelineError::SlotAhead {
            slot: settings.slot.clone(),
            slot_lsn: slot.confirmed_flush_lsn,
            checkpoint_lsn: covered,
        });
    }
    once.accept_slot_position = false;
    once.accept_checkpoint_divergence = false;
    info!(
        slot = %settings.slot,
        lsn = %slot.confirmed_flush_lsn,
        checkpoint = %resume.covered().map_or_else(|| "none".into(), |lsn| lsn.to_string()),
        system_id = server.system_id,
        database = %server.database,
        timeline = server.timeline,
        "streaming"
    );
    settings.metrics.streaming.store(true, Ordering::Relaxed);
    settings.metrics.confirmed_lsn.store(slot.confirmed_flush_lsn.as_u64(), Ordering::Relaxed);
    let _heartbeat = settings.heartbeat_interval.map(|interval| {
        let sql =
            settings.heartbeat_sql.clone().unwrap_or_else(|| DEFAULT_HEARTBEAT_SQL.to_owned());
        AbortOnDrop(tokio::spawn(heartbeat(control, interval, sql)))
    });

    let session =
        Session::new(stream, sink, mode, owner, slot.confirmed_flush_lsn, &resume, settings);
    session.run(shutdown, settings.shutdown_timeout).await
}

/// Emits the heartbeat statement every `interval` until aborted. Failures are logged
/// and retried at the next tick: a missed heartbeat only delays WAL release.
async fn heartbeat(control: ControlClient, interval: Duration, sql: String) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = control.client().batch_execute(&sql).await {
            warn!(error = %err, "heartbeat failed");
        }
    }
}

/// Aborts a background task when the session that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The metrics label of a session error.
fn error_kind(err: &PipelineError) -> ErrorKind {
    match err {
        PipelineError::Replication(_)
        | PipelineError::StreamEnded
        | PipelineError::Decode { .. } => ErrorKind::Postgres,
        PipelineError::Sink(_) | PipelineError::Delivery { .. } | PipelineError::Transaction(_) => {
            ErrorKind::Kafka
        }
        PipelineError::Mapping { .. } => ErrorKind::Mapping,
        PipelineError::SlotAhead { .. } | PipelineError::CheckpointDiverged(_) => {
            ErrorKind::Postgres
        }
    }
}

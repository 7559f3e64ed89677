//! `tailbox backfill`: publish the rows already in the outbox table, then stream on
//! with no gap and no duplicate at the boundary.
//!
//! # Why the boundary is exact
//! The slot is created with an exported snapshot ([`ExportedSnapshot`]). The snapshot
//! sees exactly the transactions that committed before the slot's consistent point;
//! the slot streams exactly those that commit at or after it. We read the table in that
//! snapshot, publish every row, wait for Kafka's acknowledgements, write the checkpoint
//! for the consistent point, and only then start streaming from the slot.
//!
//! Rows are published in the table's order by `--order-by` (default: the `timestamp`
//! column when the table has one), with headers `lsn` = the consistent point, `xid` =
//! the inserting transaction (the row's `xmin`) and `backfill: true`. If the backfill fails, the slot it created is dropped again, so it
//! can simply be rerun (rows published before the failure are then published twice).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tailbox_kafka_sink::KafkaSink;
use tailbox_outbox::{
    OutboxMapper, OutboxRecord,
    dead_letter::{self, DeadLetterReason},
    headers,
};
use tailbox_pgoutput::{ColumnValue, Insert, Lsn, Relation, RelationColumn, TupleData};
use tailbox_redis_sink::RedisSink;
use tailbox_replication::{
    ControlClient, OutboxTableSpec, ReplicationError, snapshot::ExportedSnapshot,
};
use tailbox_sink::{EventMeta, SendOutcome, Sink};
use tailbox_webhook_sink::WebhookSink;
use tracing::{info, warn};

use crate::{
    error::{PipelineError, RecordOrigin},
    resume::CheckpointOwner,
    settings::{Destination, PipelineSettings},
};

/// Rows fetched per round trip.
const FETCH_ROWS: usize = 1000;

/// What a backfill did.
#[derive(Debug, Default, Clone, Copy)]
pub struct BackfillStats {
    /// Rows published to their topics.
    pub published: u64,
    /// Rows sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Where streaming continues.
    pub consistent_point: Lsn,
}

/// Creates the slot with a snapshot, publishes the table's rows as of that snapshot and
/// writes the checkpoint; the caller then streams from the slot.
pub async fn run(
    settings: &PipelineSettings,
    order_by: Option<&str>,
) -> Result<BackfillStats, PipelineError> {
    let table = settings.table_spec();
    let control = ControlClient::connect(&settings.pg).await?;
    control.check_ready_without_slot(&settings.publication, &table).await?;
    let snapshot = ExportedSnapshot::create(&settings.pg, &settings.slot).await?;
    info!(slot = %settings.slot, lsn = %snapshot.consistent_point, "slot created; backfilling");
    let result = publish_snapshot(settings, &control, &snapshot, &table, order_by).await;
    let consistent_point = snapshot.consistent_point;
    drop(snapshot);
    match result {
        Ok(mut stats) => {
            stats.consistent_point = consistent_point;
            info!(
                published = stats.published,
                dead_lettered = stats.dead_lettered,
                "backfill done"
            );
            Ok(stats)
        }
        Err(err) => {
            warn!(error = %err, "backfill failed; dropping the slot it created so it can be rerun");
            // The exporting session is gone; give the server a moment to release the slot.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(drop_err) = control
                .client()
                .execute("SELECT pg_drop_replication_slot($1)", &[&settings.slot])
                .await
            {
                warn!(error = %drop_err, slot = %settings.slot, "could not drop the slot; drop it before rerunning");
            }
            Err(err)
        }
    }
}

async fn publish_snapshot(
    settings: &PipelineSettings,
    control: &ControlClient,
    snapshot: &ExportedSnapshot,
    table: &OutboxTableSpec,
    order_by: Option<&str>,
) -> Result<BackfillStats, PipelineError> {
    let client = control.client();
    let pg = |context: &'static str| move |e| ReplicationError::from_pg_error(context, e);
    let qualified = format!("{}.{}", quote(&table.schema), quote(&table.table));
    let columns: Vec<String> = client
        .prepare(&format!("SELECT * FROM {qualified} LIMIT 0"))
        .await
        .map_err(pg("reading the outbox table's columns"))?
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let order = match order_by {
        Some(order) => format!(" ORDER BY {order}"),
        None if columns.iter().any(|c| c == "timestamp") => " ORDER BY \"timestamp\"".to_owned(),
        None => String::new(),
    };
    // The row's xmin is the id of the transaction that inserted it: the `xid` header.
    let select = columns
        .iter()
        .map(|c| format!("{}::text", quote(c)))
        .chain(std::iter::once("xmin::text".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'; \
             DECLARE tailbox_backfill NO SCROLL CURSOR FOR SELECT {select} FROM {qualified}{order}",
            snapshot.snapshot_name
        ))
        .await
        .map_err(pg("opening the backfill cursor in the slot's snapshot"))?;

    let mut mapper = OutboxMapper::new(settings.outbox.clone());
    mapper.on_relation(&Relation {
        oid: 0,
        namespace: table.schema.clone(),
        name: table.table.clone(),
        replica_identity: b'd',
        columns: columns
            .iter()
            .map(|name| RelationColumn {
                flags: 0,
                name: name.clone(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect(),
    });
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let mut meta = EventMeta {
        commit_lsn: snapshot.consistent_point,
        lsn: snapshot.consistent_point.to_string(),
        xid: String::new(),
        commit_ts: now_us.to_string(),
        timestamp_ms: now_us / 1000,
    };
    match &settings.destination {
        Destination::Kafka(kafka) => {
            let sink = KafkaSink::new(kafka, &settings.checkpoint_topic)?;
            publish_rows(settings, control, snapshot, mapper, meta, sink, columns.len()).await
        }
        Destination::Redis(redis) => {
            // Entry IDs must stay below those of the first streamed transaction, whose
            // commit lies at or after the consistent point.
            meta.commit_lsn = snapshot.consistent_point.saturating_sub(1);
            let owner = CheckpointOwner::new(&snapshot.identity, &settings.slot);
            let sink = RedisSink::connect(redis, owner.name()).await?;
            publish_rows(settings, control, snapshot, mapper, meta, sink, columns.len()).await
        }
        Destination::Webhook(webhook) => {
            let gauge = Arc::clone(&settings.metrics.webhook_breaker);
            let sink = WebhookSink::connect(webhook, gauge).await?;
            publish_rows(settings, control, snapshot, mapper, meta, sink, columns.len()).await
        }
    }
}

/// Publishes the rows of the open cursor, then writes the checkpoint for the
/// consistent point.
async fn publish_rows<K: Sink>(
    settings: &PipelineSettings,
    control: &ControlClient,
    snapshot: &ExportedSnapshot,
    mut mapper: OutboxMapper,
    mut meta: EventMeta,
    mut sink: K,
    column_count: usize,
) -> Result<BackfillStats, PipelineError> {
    let client = control.client();
    let pg = |context: &'static str| move |e| ReplicationError::from_pg_error(context, e);
    let dlq_topic: Arc<str> = Arc::from(settings.dlq_topic.as_str());
    let mut acks = Acks { sent: 0, acked: 0, lsn: snapshot.consistent_point };
    let mut record = OutboxRecord::default();
    let mut stats = BackfillStats::default();
    let mut values = Vec::with_capacity(column_count);
    loop {
        let rows = client
            .query(&format!("FETCH {FETCH_ROWS} FROM tailbox_backfill"), &[])
            .await
            .map_err(pg("fetching outbox rows"))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            values.clear();
            for i in 0..column_count {
                let value: Option<&str> = row.try_get(i).map_err(pg("reading an outbox row"))?;
                values.push(match value {
                    Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
                    None => ColumnValue::Null,
                });
            }
            let xmin: Option<&str> =
                row.try_get(column_count).map_err(pg("reading an outbox row"))?;
            meta.xid.clear();
            meta.xid.push_str(xmin.unwrap_or_default());
            let Some(new_tuple) = TupleData::from_columns(&values) else { continue };
            let insert = Insert { relation_oid: 0, new_tuple };
            match mapper.map_insert(&insert, &mut record) {
                Ok(_) => stats.published += 1,
                Err(err) => {
                    warn!(error = %err, topic = %dlq_topic, "backfilled row dead-lettered");
                    mapper.dead_letter(&insert, &dlq_topic, &mut record);
                    let (error, table) = (err.to_string(), mapper.table_name());
                    let why = DeadLetterReason {
                        error: &error,
                        source_lsn: &meta.lsn,
                        source_table: &table,
                    };
                    dead_letter::mark(&mut record, &dlq_topic, why);
                    stats.dead_lettered += 1;
                }
            }
            record.headers.push((Arc::from(headers::BACKFILL), Bytes::from_static(b"true")));
            send(&mut sink, &record, &meta, &mut acks).await?;
        }
    }
    client.batch_execute("COMMIT").await.map_err(pg("closing the backfill snapshot"))?;

    // The checkpoint says "everything before the consistent point is in Kafka", which
    // is what the snapshot just made true.
    sink.read_checkpoints().await?;
    let owner = CheckpointOwner::new(&snapshot.identity, &settings.slot);
    let value = owner.encode(snapshot.consistent_point);
    loop {
        match sink.send_checkpoint(owner.key(), &value) {
            Ok(SendOutcome::Enqueued(_)) => {
                acks.sent += 1;
                break;
            }
            Ok(SendOutcome::Blocked) if acks.pending() > 0 => acks.wait_one(&mut sink).await?,
            Ok(SendOutcome::Blocked) => tokio::time::sleep(BLOCKED_RETRY).await,
            Err(error) => {
                let origin = RecordOrigin::Checkpoint { lsn: snapshot.consistent_point };
                return Err(PipelineError::delivery(error, origin));
            }
        }
    }
    while acks.pending() > 0 {
        acks.wait_one(&mut sink).await?;
    }
    Ok(stats)
}

/// Sends one record, waiting for acknowledgements while the queue is full.
async fn send<K: Sink>(
    sink: &mut K,
    record: &OutboxRecord,
    meta: &EventMeta,
    acks: &mut Acks,
) -> Result<(), PipelineError> {
    loop {
        match sink.send(record, Some(meta)) {
            Ok(SendOutcome::Enqueued(_)) => {
                acks.sent += 1;
                return Ok(());
            }
            // Full, or the topic is being created: wait for an acknowledgement, or a
            // moment if none is outstanding.
            Ok(SendOutcome::Blocked) if acks.pending() > 0 => acks.wait_one(sink).await?,
            Ok(SendOutcome::Blocked) => tokio::time::sleep(BLOCKED_RETRY).await,
            Err(error) => return Err(delivery(error, acks.lsn, meta)),
        }
    }
}

/// How long a backfill waits before offering a record again when nothing is in flight.
const BLOCKED_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// A backfilled row's delivery error: the snapshot's position and the row's `xmin`.
fn delivery(error: tailbox_sink::DeliveryError, lsn: Lsn, meta: &EventMeta) -> PipelineError {
    PipelineError::delivery(error, RecordOrigin::Backfill { lsn, xmin: meta.xid.parse().ok() })
}

/// Counts acknowledgements; any failed delivery fails the backfill.
struct Acks {
    sent: u64,
    acked: u64,
    /// The snapshot's consistent point, which every backfilled record carries as `lsn`.
    lsn: Lsn,
}

impl Acks {
    fn pending(&self) -> u64 {
        self.sent - self.acked
    }

    async fn wait_one<K: Sink>(&mut self, sink: &mut K) -> Result<(), PipelineError> {
        let ack = sink.next_ack().await;
        self.acked += 1;
        // Acknowledgements do not say which row they belong to: the snapshot does.
        let origin = RecordOrigin::Backfill { lsn: self.lsn, xmin: None };
        ack.result.map_err(|error| PipelineError::delivery(error, origin))
    }
}

/// Quotes an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

//! One replication session: read WAL events, publish outbox rows in commit order,
//! advance the checkpoint, until shutdown or an error.
//!
//! ```text
//!  WalSource ──event──▶ decode ──▶ OutboxMapper ──record──▶ KafkaSink
//!      ▲                                                       │ ack(seq)
//!      └──── confirm(confirmable) ◀── AckTracker ◀─────────────┘
//!                         │ durable → checkpoint record ──▶ KafkaSink
//! ```
//!
//! The loop is a biased `select!`; branch priorities, highest first:
//! 1. shutdown: stop reading at once;
//! 2. acknowledgements: they free capacity and advance the checkpoint;
//! 3. the checkpoint timer: write the checkpoint record, confirm the slot;
//! 4. new WAL events, only while fewer than `max_in_flight` records are unacknowledged
//!    (backpressure: the transport keeps answering keepalives meanwhile).

use std::time::Duration;

use bytes::Bytes;
use tailbox_kafka_sink::{Ack, CheckpointTopic, EventMeta, KafkaSink, SendOutcome};
use tailbox_outbox::{OutboxMapper, OutboxRecord};
use tailbox_pgoutput::{Message, format_lsn};
use tailbox_replication::{WalEvent, WalSource};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::{checkpoint::AckTracker, error::PipelineError, shutdown::Shutdown};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// How a session ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown was requested and in-flight records were drained.
    Shutdown,
}

/// Counters of one session.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    /// Outbox records acknowledged by Kafka.
    pub published: u64,
    /// Transactions seen.
    pub transactions: u64,
}

/// The transaction being read.
struct OpenTransaction {
    meta: EventMeta,
}

/// The state of one session.
pub struct Session<S: WalSource> {
    source: S,
    sink: KafkaSink,
    mapper: OutboxMapper,
    checkpoint: CheckpointTopic,
    tracker: AckTracker,
    /// Reused for every record.
    record: OutboxRecord,
    open: Option<OpenTransaction>,
    /// Highest LSN a checkpoint record was sent for.
    checkpoint_sent: u64,
    /// Sequence numbers of checkpoint records not yet acknowledged (a handful at most).
    checkpoint_seqs: Vec<u64>,
    /// Highest LSN confirmed to the source.
    confirmed: u64,
    status_interval: Duration,
    max_in_flight: u64,
    stats: SessionStats,
}

impl<S: WalSource> Session<S> {
    /// A session reading from `source` that starts at `start_lsn` (the slot's confirmed
    /// position).
    pub fn new(
        source: S,
        sink: KafkaSink,
        mapper: OutboxMapper,
        checkpoint: CheckpointTopic,
        start_lsn: u64,
        status_interval: Duration,
        max_in_flight: u64,
    ) -> Self {
        Self {
            source,
            sink,
            mapper,
            checkpoint,
            tracker: AckTracker::new(start_lsn),
            record: OutboxRecord::default(),
            open: None,
            checkpoint_sent: start_lsn,
            checkpoint_seqs: Vec::new(),
            confirmed: start_lsn,
            status_interval,
            max_in_flight: max_in_flight.max(1),
            stats: SessionStats::default(),
        }
    }

    /// Runs until shutdown (then drains, bounded by `shutdown_timeout`) or an error.
    pub async fn run(
        mut self,
        mut shutdown: Shutdown,
        shutdown_timeout: Duration,
    ) -> Result<(SessionEnd, SessionStats), PipelineError> {
        let mut checkpoint_due = Instant::now() + self.status_interval;
        loop {
            let reading = self.tracker.in_flight() < self.max_in_flight;
            let waiting_acks = self.tracker.in_flight() > 0;
            tokio::select! {
                biased;
                () = shutdown.requested() => break,
                ack = self.sink.next_ack(), if waiting_acks => {
                    if let Some(ack) = ack {
                        self.on_ack(ack)?;
                    }
                }
                () = sleep_until(checkpoint_due) => {
                    self.write_checkpoint()?;
                    checkpoint_due = Instant::now() + self.status_interval;
                }
                event = self.source.recv(), if reading => {
                    match event? {
                        Some(event) => self.on_event(event, &mut shutdown).await?,
                        None => return Err(PipelineError::StreamEnded),
                    }
                }
            }
        }
        let stats = self.drain(shutdown_timeout).await?;
        Ok((SessionEnd::Shutdown, stats))
    }

    /// Stops reading, waits for in-flight records, writes the final checkpoint and
    /// confirms it, then closes the stream.
    async fn drain(mut self, timeout: Duration) -> Result<SessionStats, PipelineError> {
        let deadline = Instant::now() + timeout;
        info!(
            in_flight = self.tracker.in_flight(),
            "shutting down: waiting for in-flight records"
        );
        self.wait_for_acks(deadline).await?;
        self.write_checkpoint()?;
        self.wait_for_acks(deadline).await?;
        self.confirm();
        if self.tracker.in_flight() > 0 {
            warn!(
                in_flight = self.tracker.in_flight(),
                "shutdown timeout reached with records unacknowledged; they will be published again on restart"
            );
        }
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        self.source.stop(remaining).await?;
        info!(lsn = %format_lsn(self.confirmed), "stopped; slot confirmed");
        Ok(self.stats)
    }

    async fn wait_for_acks(&mut self, deadline: Instant) -> Result<(), PipelineError> {
        while self.tracker.in_flight() > 0 {
            let ack = tokio::select! {
                ack = self.sink.next_ack() => ack,
                () = sleep_until(deadline) => return Ok(()),
            };
            match ack {
                Some(ack) => self.on_ack(ack)?,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Handles `ack` and every acknowledgement already waiting behind it, then confirms
    /// what became confirmable.
    fn on_ack(&mut self, ack: Ack) -> Result<(), PipelineError> {
        let mut next = Some(ack);
        while let Some(ack) = next {
            if let Err(error) = ack.result {
                let (lsn, xid) = self.open_ids();
                return Err(PipelineError::Delivery {
                    error: Box::new(error),
                    lsn,
                    xid,
                });
            }
            if let Some(i) = self.checkpoint_seqs.iter().position(|s| *s == ack.seq) {
                self.checkpoint_seqs.swap_remove(i);
            } else {
                self.stats.published += 1;
            }
            self.tracker.on_ack(ack.seq);
            next = self.sink.try_next_ack();
        }
        self.confirm();
        Ok(())
    }

    /// Writes a checkpoint record for the durable LSN if it moved.
    fn write_checkpoint(&mut self) -> Result<(), PipelineError> {
        let lsn = self.tracker.durable_lsn();
        if lsn <= self.checkpoint_sent {
            return Ok(());
        }
        let value = self.checkpoint.encode(lsn);
        match self
            .sink
            .send_plain(self.checkpoint.topic(), self.checkpoint.key(), &value)
        {
            Ok(SendOutcome::Enqueued(seq)) => {
                self.tracker.on_checkpoint_sent(seq, lsn);
                self.checkpoint_seqs.push(seq);
                self.checkpoint_sent = lsn;
            }
            // Try again at the next tick.
            Ok(SendOutcome::QueueFull) => {}
            Err(error) => {
                return Err(PipelineError::Delivery {
                    error: Box::new(error),
                    lsn: format_lsn(lsn),
                    xid: String::new(),
                });
            }
        }
        Ok(())
    }

    fn confirm(&mut self) {
        let lsn = self.tracker.confirmable_lsn();
        if lsn > self.confirmed {
            self.confirmed = lsn;
            self.source.confirm(lsn);
            debug!(lsn = %format_lsn(lsn), "confirmed to the slot");
        }
    }

    async fn on_event(
        &mut self,
        event: WalEvent,
        shutdown: &mut Shutdown,
    ) -> Result<(), PipelineError> {
        match event {
            WalEvent::Begin {
                final_lsn,
                xid,
                commit_ts,
            } => {
                let unix_micros = commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS);
                self.open = Some(OpenTransaction {
                    meta: EventMeta {
                        lsn: format_lsn(final_lsn),
                        xid: xid.to_string(),
                        commit_ts: unix_micros.to_string(),
                        timestamp_ms: unix_micros / 1000,
                    },
                });
            }
            WalEvent::Change(bytes) => self.on_change(bytes, shutdown).await?,
            WalEvent::Commit { end_lsn, .. } => {
                self.open = None;
                self.stats.transactions += 1;
                self.tracker.on_commit(end_lsn);
                self.confirm();
            }
            WalEvent::KeepAlive { wal_end } => {
                if self.open.is_none() {
                    self.tracker.on_idle_position(wal_end);
                }
            }
            // Logical messages are not routed yet.
            WalEvent::Message { .. } => {}
        }
        Ok(())
    }

    async fn on_change(
        &mut self,
        bytes: Bytes,
        shutdown: &mut Shutdown,
    ) -> Result<(), PipelineError> {
        let message = Message::decode(&bytes).map_err(|source| PipelineError::Decode {
            lsn: self.open_ids().0,
            source,
        })?;
        match message {
            Message::Relation(relation) => self.mapper.on_relation(&relation),
            Message::Insert(insert) => {
                let is_outbox =
                    self.mapper
                        .map_insert(&insert, &mut self.record)
                        .map_err(|source| {
                            let (lsn, xid) = self.open_ids();
                            PipelineError::Mapping { lsn, xid, source }
                        })?;
                if is_outbox {
                    self.publish_record(shutdown).await?;
                }
            }
            // The publication publishes inserts only; anything else is not ours.
            _ => {}
        }
        Ok(())
    }

    /// Enqueues `self.record`, waiting for acknowledgements while librdkafka's queue is
    /// full. The same record is retried, so order is kept.
    async fn publish_record(&mut self, shutdown: &mut Shutdown) -> Result<(), PipelineError> {
        loop {
            let meta = self.open.as_ref().map(|t| &t.meta);
            let empty = EventMeta::default();
            let outcome = self
                .sink
                .send(&self.record, meta.unwrap_or(&empty))
                .map_err(|error| {
                    let (lsn, xid) = self.open_ids();
                    PipelineError::Delivery {
                        error: Box::new(error),
                        lsn,
                        xid,
                    }
                })?;
            match outcome {
                SendOutcome::Enqueued(seq) => {
                    self.tracker.on_sent(seq);
                    return Ok(());
                }
                SendOutcome::QueueFull => {
                    tokio::select! {
                        biased;
                        () = shutdown.requested() => return Ok(()),
                        ack = self.sink.next_ack() => {
                            if let Some(ack) = ack {
                                self.on_ack(ack)?;
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }

    fn open_ids(&self) -> (String, String) {
        self.open
            .as_ref()
            .map(|t| (t.meta.lsn.clone(), t.meta.xid.clone()))
            .unwrap_or_default()
    }
}

//! One replication session: read WAL events, publish outbox rows in commit order,
//! advance the checkpoint, until shutdown or an error.
//!
//! ```text
//!  WalSource ──event──▶ decode ──▶ OutboxMapper ──record──▶ Sink
//!      ▲                   poison rows ──▶ dead-letter record ──┘ │ ack(seq)
//!      └──── confirm(confirmable) ◀── AckTracker ◀────────────────┘
//!                         │ durable → checkpoint record ──▶ Sink
//! ```
//!
//! The loop is a biased `select!`; branch priorities, highest first:
//! 1. shutdown: stop reading at once, or, with a transaction half read, at its commit
//!    (within the shutdown timeout), so a clean stop leaves nothing to publish twice;
//! 2. acknowledgements (`Sink::next_ack`): they free capacity, advance the checkpoint,
//!    and offer a blocked record to the sink again;
//! 3. the checkpoint timer, the one place that decides when status updates go out:
//!    write the checkpoint record, send the slot a status update with the confirmed
//!    position, publish metrics;
//! 4. new WAL events, only while fewer than `max_in_flight` records are unacknowledged
//!    and no record waits for room in the sink (backpressure: the timer keeps sending
//!    status updates meanwhile, so the walsender does not time us out), and then every
//!    event the source already holds before the next turn of the loop.
//!
//! # Backpressure
//! A sink whose buffer is full answers `Blocked`: the record stays in `self.record`,
//! the session stops reading WAL, and the record is offered again after the next
//! acknowledgement (or timer tick) before anything else is read, so order is kept.
//!
//! # Exactly-once mode
//! In [`DeliveryMode::ExactlyOnce`], records go out in the sink's transactions (Kafka:
//! a transactional producer whose `transactional.id` is derived from the checkpoint's
//! owner, see [`crate::resume::CheckpointOwner::transactional_id`]). A sink transaction
//! holds whole PostgreSQL transactions only (a run of them, up to `status_interval`
//! long) plus the checkpoint record for the last one's end LSN, and it is committed only
//! between PostgreSQL transactions. The slot is confirmed only after the commit
//! succeeded; an abort or a crash replays from the slot, and every PostgreSQL
//! transaction whose commit lies before the checkpoint read at startup (with
//! `read_committed`) is skipped, so `read_committed` consumers see each event once.
//!
//! # Poison events never stall the stream, and are never skipped
//! A row that cannot become a record (NULL aggregate type, id or payload; a topic name
//! the destination cannot accept) and a record the destination refuses for good (too
//! large, not authorised) go to the dead-letter topic with the original bytes and
//! headers plus `error`, `source_lsn`, `source_table` (built in one place,
//! [`tailbox_outbox::dead_letter`]). The dead-letter record takes the original's place
//! in the sequence: its transaction becomes durable only once the dead-letter record is
//! acknowledged, so the slot never moves past an event that was not durably handed on
//! somewhere. Transient errors never go to the dead-letter topic: they end the session,
//! which restarts from the slot with backoff.
//!
//! # Not durable, never confirmed
//! A sink that is not durable (the dry run) acknowledges without storing anything: the
//! session then never confirms the slot.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use tailbox_outbox::{
    OutboxMapper, OutboxRecord,
    dead_letter::{self, DeadLetterReason},
};
use tailbox_pgoutput::{Insert, Lsn, Message, PG_EPOCH_OFFSET_MICROS};
use tailbox_replication::{WalEvent, WalSource};
use tailbox_sink::{
    Ack, DeliveryError, EventMeta, RefusedRecord, SendOutcome, Sink, TransactionError,
};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::{
    checkpoint::AckTracker,
    error::{PipelineError, RecordOrigin},
    metrics::{ErrorKind, PipelineMetrics, TopicTally},
    resume::{CheckpointOwner, Resume},
    settings::PipelineSettings,
    shutdown::Shutdown,
};

/// Events handled per wake-up at most before acknowledgements and the status timer get
/// a turn.
const EVENTS_PER_WAKEUP: usize = 1024;

/// How long a sink transaction call may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Counters of one session.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    /// Outbox records acknowledged by the sink (dead-lettered ones included).
    pub published: u64,
    /// Transactions seen.
    pub transactions: u64,
}

/// How records are delivered.
#[derive(Debug)]
pub enum DeliveryMode {
    /// Each record on its own; the checkpoint follows the acknowledgements.
    AtLeastOnce,
    /// Whole PostgreSQL transactions in sink transactions, with the checkpoint inside.
    ExactlyOnce(SinkTransaction),
}

/// The sink transaction of exactly-once mode.
#[derive(Debug, Default)]
pub struct SinkTransaction {
    /// When the open sink transaction began (`None`: none is open).
    started: Option<Instant>,
    /// End LSN of the last PostgreSQL transaction read completely inside it.
    last_commit_end: Lsn,
}

/// The transaction being read.
struct OpenTransaction {
    meta: EventMeta,
    /// Records sent for it so far.
    records: u64,
    /// Already published according to the checkpoint read at startup: publish nothing.
    skip: bool,
    /// Commit time, µs since the Unix epoch.
    commit_us: i64,
}

/// What a sequence number stands for, when it is not a plain outbox record.
enum SpecialRecord {
    /// A checkpoint record for this LSN.
    Checkpoint(Lsn),
    /// A dead-letter record standing in for the refused record `original`.
    DeadLetterFor(u64),
}

/// Checkpoint and dead-letter records in flight: a handful at most, so a list beats a
/// hash map that every acknowledgement would have to hash into.
#[derive(Default)]
struct SpecialRecords(Vec<(u64, SpecialRecord)>);

impl SpecialRecords {
    fn insert(&mut self, seq: u64, record: SpecialRecord) {
        self.0.push((seq, record));
    }

    /// Removes and returns what `seq` stands for, if it is special.
    fn take(&mut self, seq: u64) -> Option<SpecialRecord> {
        let at = self.0.iter().position(|(s, _)| *s == seq)?;
        Some(self.0.swap_remove(at).1)
    }
}

/// Which transaction a record in flight belongs to: the first sequence number of each
/// transaction with records in flight, with its commit LSN and xid, in order.
#[derive(Default)]
struct InFlightTransactions(VecDeque<(u64, TxnIds, usize)>);

impl InFlightTransactions {
    /// Records from `first_seq` on belong to transaction `ids` and outbox table `table`
    /// (the mapper's index), until the next entry: one entry per transaction, and one
    /// more each time a transaction moves to another table.
    fn push(&mut self, first_seq: u64, ids: TxnIds, table: usize) {
        self.0.push_back((first_seq, ids, table));
    }

    /// The table of the latest entry.
    fn last_table(&self) -> Option<usize> {
        self.0.back().map(|&(.., table)| table)
    }

    /// The commit LSN and xid of the transaction record `seq` belongs to, and its table.
    fn of(&self, seq: u64) -> Option<(TxnIds, usize)> {
        let at = self.0.partition_point(|(first, ..)| *first <= seq);
        at.checked_sub(1).and_then(|i| self.0.get(i)).map(|&(_, ids, table)| (ids, table))
    }

    /// Forgets entries all of whose records are below `acked_prefix`.
    fn forget_below(&mut self, acked_prefix: u64) {
        while self.0.get(1).is_some_and(|(first, ..)| *first <= acked_prefix) {
            self.0.pop_front();
        }
    }
}

/// The state of one session.
pub struct Session<S: WalSource, K: Sink> {
    source: S,
    sink: K,
    mapper: OutboxMapper,
    /// Whose checkpoint records this session writes (their key and value).
    checkpoint_owner: CheckpointOwner,
    /// The stored checkpoint diverged from this server's WAL (accepted by the
    /// operator): write one of this timeline before anything else.
    rewrite_checkpoint: bool,
    tracker: AckTracker,
    /// Reused for every record; while `blocked`, it holds the record the sink had no
    /// room for.
    record: OutboxRecord,
    /// `self.record` waits for room in the sink: read nothing until it is enqueued.
    blocked: bool,
    open: Option<OpenTransaction>,
    /// The last transaction's headers, reused for the next one.
    spare_meta: EventMeta,
    /// Highest LSN a checkpoint record was sent for.
    checkpoint_sent: Lsn,
    /// `stats.published` when the last checkpoint record was sent.
    published_at_checkpoint: u64,
    /// Checkpoint and dead-letter records in flight (a handful at most).
    special: SpecialRecords,
    /// Which transaction each record in flight belongs to.
    in_flight_txns: InFlightTransactions,
    /// Highest LSN confirmed to the source.
    confirmed: Lsn,
    /// Commit LSN and time of transactions with records that are not durable yet.
    commit_times: VecDeque<(Lsn, i64)>,
    /// The transaction being read; between transactions, the last one read (the only
    /// one a blocked record can belong to).
    txn_ids: TxnIds,
    /// Records enqueued per topic since the metrics were last published.
    topic_counts: TopicTally,
    dlq_topic: Arc<str>,
    message_prefix: Arc<str>,
    status_interval: Duration,
    max_in_flight: u64,
    mode: DeliveryMode,
    /// Transactions that committed before this LSN are published already (checkpoint).
    skip_before: Lsn,
    metrics: Arc<PipelineMetrics>,
    stats: SessionStats,
}

impl<S: WalSource, K: Sink> Session<S, K> {
    /// A session reading from `source` that starts at `start_lsn` (the slot's confirmed
    /// position); transactions that committed before `resume.skip_before()` (our
    /// checkpoint, where it provably covers this server's WAL) are already published
    /// and are not published again. Checkpoint records are `checkpoint_owner`'s.
    pub fn new(
        source: S,
        sink: K,
        mode: DeliveryMode,
        checkpoint_owner: CheckpointOwner,
        start_lsn: Lsn,
        resume: &Resume,
        settings: &PipelineSettings,
    ) -> Self {
        let skip_before = resume.skip_before();
        let rewrite_checkpoint = matches!(resume, Resume::Diverged { .. });
        Self {
            source,
            sink,
            mapper: settings.mapper(),
            checkpoint_owner,
            rewrite_checkpoint,
            tracker: AckTracker::new(start_lsn),
            record: OutboxRecord::default(),
            blocked: false,
            open: None,
            spare_meta: EventMeta::default(),
            // The checkpoint never moves backwards, also while we skip up to it; a
            // diverged one is replaced at once.
            checkpoint_sent: if rewrite_checkpoint {
                Lsn::ZERO
            } else {
                start_lsn.max(skip_before)
            },
            published_at_checkpoint: 0,
            special: SpecialRecords::default(),
            in_flight_txns: InFlightTransactions::default(),
            confirmed: start_lsn,
            commit_times: VecDeque::new(),
            txn_ids: TxnIds::default(),
            topic_counts: TopicTally::default(),
            dlq_topic: Arc::from(settings.dlq_topic.as_str()),
            message_prefix: Arc::from(settings.message_prefix.as_str()),
            status_interval: settings.status_interval,
            max_in_flight: settings.max_in_flight.max(1),
            mode,
            skip_before,
            metrics: Arc::clone(&settings.metrics),
            stats: SessionStats::default(),
        }
    }

    /// Runs until shutdown (then drains, bounded by `shutdown_timeout`) or an error.
    pub async fn run(
        mut self,
        mut shutdown: Shutdown,
        shutdown_timeout: Duration,
    ) -> Result<SessionStats, PipelineError> {
        // One timer for the whole session, reset when it fires (not one per event).
        let tick = sleep_until(Instant::now() + self.status_interval);
        tokio::pin!(tick);
        if self.rewrite_checkpoint {
            self.on_tick().await?;
        }
        // Set once shutdown is asked for while a transaction is half read: its end.
        let mut stop_by: Option<Instant> = None;
        loop {
            let reading = !self.blocked && self.tracker.in_flight() < self.max_in_flight;
            let waiting_acks = self.tracker.in_flight() > 0;
            tokio::select! {
                biased;
                () = shutdown.requested(), if stop_by.is_none() => {
                    // A transaction half read would be published again, whole, after
                    // the restart: read on to its commit first (within the timeout),
                    // so a clean stop leaves no duplicates behind.
                    if self.open.is_none() {
                        break;
                    }
                    debug!("shutdown: reading the open transaction to its commit");
                    stop_by = Some(Instant::now() + shutdown_timeout);
                }
                () = sleep_until(stop_by.unwrap_or_else(Instant::now)), if stop_by.is_some() => break,
                ack = self.sink.next_ack(), if waiting_acks => {
                    self.on_ack(ack)?;
                    self.offer_blocked()?;
                }
                () = &mut tick => {
                    self.offer_blocked()?;
                    self.on_tick().await?;
                    self.source.send_status().await?;
                    self.publish_metrics();
                    tick.as_mut().reset(Instant::now() + self.status_interval);
                }
                event = self.source.recv(), if reading => {
                    match event? {
                        Some(event) => {
                            self.on_event(event).await?;
                            if stop_by.is_some() && self.open.is_none() {
                                break;
                            }
                            self.on_buffered_events(&shutdown).await?;
                        }
                        None => return Err(PipelineError::StreamEnded),
                    }
                }
            }
        }
        self.drain(stop_by.unwrap_or_else(|| Instant::now() + shutdown_timeout)).await
    }

    /// Handles the events the source already holds (the rest of one socket read), up to
    /// [`EVENTS_PER_WAKEUP`] and while there is room, without going back to the
    /// `select!`: one wake-up publishes a batch instead of one event.
    async fn on_buffered_events(&mut self, shutdown: &Shutdown) -> Result<(), PipelineError> {
        if shutdown.is_requested() {
            return Ok(());
        }
        for _ in 0..EVENTS_PER_WAKEUP {
            if self.blocked || self.tracker.in_flight() >= self.max_in_flight {
                break;
            }
            match self.source.try_recv()? {
                Some(event) => self.on_event(event).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// Stops reading, waits for in-flight records (until `deadline`), writes the final
    /// checkpoint and confirms it, then closes the stream.
    async fn drain(mut self, deadline: Instant) -> Result<SessionStats, PipelineError> {
        info!(in_flight = self.tracker.in_flight(), "shutting down: waiting for in-flight records");
        match self.mode {
            DeliveryMode::ExactlyOnce(_) => self.finish_sink_transaction().await?,
            DeliveryMode::AtLeastOnce => {
                self.wait_for_acks(deadline).await?;
                self.write_checkpoint()?;
                self.wait_for_acks(deadline).await?;
                self.confirm();
            }
        }
        self.publish_metrics();
        if self.tracker.in_flight() > 0 {
            warn!(
                in_flight = self.tracker.in_flight(),
                "shutdown timeout reached with records unacknowledged; they will be published again on restart"
            );
        }
        let remaining =
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        self.source.stop(remaining).await?;
        info!(lsn = %self.confirmed, "stopped; slot confirmed");
        Ok(self.stats)
    }

    async fn wait_for_acks(&mut self, deadline: Instant) -> Result<(), PipelineError> {
        while self.tracker.in_flight() > 0 {
            let ack = tokio::select! {
                ack = self.sink.next_ack() => ack,
                () = sleep_until(deadline) => return Ok(()),
            };
            self.on_ack(ack)?;
        }
        Ok(())
    }

    /// Handles `ack` and every acknowledgement already waiting behind it, then confirms
    /// what became confirmable.
    fn on_ack(&mut self, ack: Ack) -> Result<(), PipelineError> {
        let mut next = Some(ack);
        while let Some(ack) = next {
            self.on_one_ack(ack)?;
            next = self.sink.try_next_ack();
        }
        self.metrics.kafka_ok.store(true, Ordering::Relaxed);
        if matches!(self.mode, DeliveryMode::AtLeastOnce)
            && self.stats.published - self.published_at_checkpoint
                >= self.sink.checkpoint_every_records()
        {
            self.write_checkpoint()?;
        }
        self.confirm();
        Ok(())
    }

    fn on_one_ack(&mut self, ack: Ack) -> Result<(), PipelineError> {
        let special = self.special.take(ack.seq);
        match (ack.result, special) {
            (Ok(()), None) => {
                self.stats.published += 1;
                self.tracker.on_ack(ack.seq);
            }
            (Ok(()), Some(SpecialRecord::Checkpoint(_))) => self.tracker.on_ack(ack.seq),
            (Ok(()), Some(SpecialRecord::DeadLetterFor(original))) => {
                self.stats.published += 1;
                self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.tracker.on_ack(ack.seq);
                if original != ack.seq {
                    self.tracker.on_ack(original);
                }
            }
            // An outbox record the destination refuses for good: its copy goes to the
            // dead-letter topic, and the original counts as handed on once that copy is
            // acknowledged. (In a sink transaction the refusal aborts it: replay.)
            (Err(error), None)
                if error.is_refused()
                    && matches!(self.mode, DeliveryMode::AtLeastOnce)
                    && ack.refused.is_some() =>
            {
                let refused = ack.refused.map(|r| *r).unwrap_or_default();
                self.dead_letter_refused(ack.seq, refused, &error)?;
            }
            (Err(error), Some(SpecialRecord::Checkpoint(lsn))) => {
                return Err(checkpoint_delivery_failed(error, lsn));
            }
            (Err(error), Some(SpecialRecord::DeadLetterFor(original))) => {
                return Err(PipelineError::delivery(error, self.ids_of(original).origin()));
            }
            (Err(error), None) => {
                return Err(PipelineError::delivery(error, self.ids_of(ack.seq).origin()));
            }
        }
        Ok(())
    }

    /// Offers the record the sink had no room for again.
    fn offer_blocked(&mut self) -> Result<(), PipelineError> {
        if self.blocked {
            self.blocked = false;
            self.send_record()?;
        }
        Ok(())
    }

    /// The status timer: write the checkpoint (at-least-once), or commit the sink
    /// transaction if we are between PostgreSQL transactions (exactly-once).
    async fn on_tick(&mut self) -> Result<(), PipelineError> {
        match &self.mode {
            DeliveryMode::AtLeastOnce => self.write_checkpoint(),
            DeliveryMode::ExactlyOnce(_) if self.open.is_some() => Ok(()),
            DeliveryMode::ExactlyOnce(_) => self.finish_sink_transaction().await,
        }
    }

    /// Exactly-once: commits the open sink transaction with a checkpoint record for the
    /// last PostgreSQL transaction read completely, or, with none open but the durable
    /// position moved (idle keepalives, transactions without outbox rows), commits one
    /// holding only the checkpoint. Then confirms that position to the slot. Must be
    /// called between PostgreSQL transactions.
    async fn finish_sink_transaction(&mut self) -> Result<(), PipelineError> {
        let DeliveryMode::ExactlyOnce(txn) = &self.mode else { return Ok(()) };
        let open = txn.started.is_some();
        if self.open.is_some() {
            // Mid-transaction (shutdown): never commit part of a PostgreSQL transaction.
            if open {
                self.sink.abort_transaction(TXN_TIMEOUT).await?;
            }
            return Ok(());
        }
        let lsn = if open {
            txn.last_commit_end.max(self.tracker.durable_lsn())
        } else {
            self.tracker.durable_lsn()
        };
        if !open && lsn <= self.checkpoint_sent {
            return Ok(());
        }
        if !open {
            self.sink.begin_transaction()?;
        }
        if !self.send_checkpoint(lsn)? {
            // Inside a transaction a full buffer cannot drain by waiting here: replay.
            return Err(checkpoint_delivery_failed(DeliveryError::buffer_full(), lsn));
        }
        if let Err(err) = self.sink.commit_transaction(TXN_TIMEOUT).await {
            if matches!(err, TransactionError::Abortable(_)) {
                let _ = self.sink.abort_transaction(TXN_TIMEOUT).await;
            }
            return Err(err.into());
        }
        if let DeliveryMode::ExactlyOnce(txn) = &mut self.mode {
            txn.started = None;
        }
        self.checkpoint_sent = lsn;
        self.metrics.kafka_ok.store(true, Ordering::Relaxed);
        debug!(lsn = %lsn, "sink transaction committed");
        self.confirm_lsn(lsn);
        Ok(())
    }

    /// Exactly-once: opens a sink transaction before the first record of a batch.
    fn ensure_sink_transaction(&mut self) -> Result<(), PipelineError> {
        if let DeliveryMode::ExactlyOnce(txn) = &mut self.mode
            && txn.started.is_none()
        {
            self.sink.begin_transaction()?;
            txn.started = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes a checkpoint record for the durable LSN if it moved (at-least-once).
    fn write_checkpoint(&mut self) -> Result<(), PipelineError> {
        let lsn = self.tracker.durable_lsn();
        if lsn > self.checkpoint_sent && self.send_checkpoint(lsn)? {
            self.checkpoint_sent = lsn;
            self.published_at_checkpoint = self.stats.published;
        }
        // A full buffer: try again at the next tick.
        Ok(())
    }

    /// Enqueues the checkpoint record for `lsn`; `Ok(false)` if the sink is full.
    fn send_checkpoint(&mut self, lsn: Lsn) -> Result<bool, PipelineError> {
        let value = self.checkpoint_owner.encode(lsn);
        match self.sink.send_checkpoint(self.checkpoint_owner.key(), &value) {
            Ok(SendOutcome::Enqueued(seq)) => {
                self.tracker.on_checkpoint_sent(seq, lsn);
                self.special.insert(seq, SpecialRecord::Checkpoint(lsn));
                Ok(true)
            }
            Ok(SendOutcome::Blocked) => Ok(false),
            Err(error) => Err(checkpoint_delivery_failed(error, lsn)),
        }
    }

    /// Confirms what the ack tracker says is confirmable (at-least-once mode; in
    /// exactly-once mode only a committed sink transaction confirms).
    fn confirm(&mut self) {
        if matches!(self.mode, DeliveryMode::AtLeastOnce) {
            self.confirm_lsn(self.tracker.confirmable_lsn());
        }
    }

    fn confirm_lsn(&mut self, lsn: Lsn) {
        if lsn > self.confirmed && self.sink.is_durable() {
            self.confirmed = lsn;
            self.source.confirm(lsn);
            self.metrics.confirmed_lsn.store(lsn.as_u64(), Ordering::Relaxed);
            debug!(lsn = %lsn, "confirmed to the slot");
        }
    }

    /// Moves what this session counted into the shared metrics.
    fn publish_metrics(&mut self) {
        let durable = self.tracker.durable_lsn();
        while let Some((end_lsn, commit_us)) = self.commit_times.front().copied() {
            if end_lsn > durable {
                break;
            }
            self.metrics.last_acked_commit_us.store(commit_us, Ordering::Relaxed);
            self.commit_times.pop_front();
        }
        self.in_flight_txns.forget_below(self.tracker.acked_prefix());
        for (topic, counts) in self.topic_counts.take() {
            self.metrics.add_published(&topic, counts.events, counts.bytes);
        }
        self.metrics.in_flight.store(self.tracker.in_flight(), Ordering::Relaxed);
    }

    async fn on_event(&mut self, event: WalEvent) -> Result<(), PipelineError> {
        let bytes = match event {
            WalEvent::Data(bytes) => bytes,
            WalEvent::KeepAlive { wal_end } => {
                self.metrics.server_wal_end.fetch_max(wal_end.as_u64(), Ordering::Relaxed);
                if self.open.is_none() {
                    self.tracker.on_idle_position(wal_end);
                }
                return Ok(());
            }
        };
        let message = Message::decode(&bytes)
            .map_err(|source| PipelineError::Decode { lsn: self.txn_ids.lsn, source })?;
        match message {
            Message::Begin(begin) => {
                let unix_micros = begin.commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS);
                let mut meta = std::mem::take(&mut self.spare_meta);
                meta.reset(begin.final_lsn, begin.xid, unix_micros);
                self.txn_ids = TxnIds { lsn: begin.final_lsn, xid: begin.xid };
                self.open = Some(OpenTransaction {
                    meta,
                    records: 0,
                    commit_us: unix_micros,
                    skip: begin.final_lsn < self.skip_before,
                });
                self.metrics.last_read_commit_us.store(unix_micros, Ordering::Relaxed);
            }
            Message::Commit(commit) => self.on_commit(commit.end_lsn).await?,
            Message::Relation(relation) => self.mapper.on_relation(&relation),
            Message::Insert(insert) => match self.mapper.map_insert(&insert, &mut self.record) {
                Ok(false) => {}
                Ok(true) => self.publish_record()?,
                Err(source) if source.is_poison() => {
                    self.dead_letter_row(&insert, &source.to_string())?
                }
                Err(source) => {
                    let TxnIds { lsn, xid } = self.txn_ids;
                    return Err(PipelineError::Mapping { lsn, xid, source });
                }
            },
            Message::Message(message) if message.prefix == *self.message_prefix => {
                self.on_outbox_message(message.transactional, message.content)?;
            }
            // Heartbeats and other applications' messages; and anything else the
            // publication sends (it publishes inserts only).
            _ => {}
        }
        Ok(())
    }

    async fn on_commit(&mut self, end_lsn: Lsn) -> Result<(), PipelineError> {
        if let Some(open) = self.open.take() {
            if open.records > 0 {
                self.commit_times.push_back((end_lsn, open.commit_us));
            }
            self.spare_meta = open.meta;
        }
        self.stats.transactions += 1;
        self.tracker.on_commit(end_lsn);
        if end_lsn <= self.skip_before {
            // Skipped: the checkpoint already covers it, so the slot may move, in either
            // mode (no sink transaction holds anything of it).
            self.tracker.on_covered_by_checkpoint(end_lsn);
            if matches!(&self.mode, DeliveryMode::ExactlyOnce(t) if t.started.is_none()) {
                self.confirm_lsn(self.tracker.confirmable_lsn());
            }
        }
        self.confirm();
        if let DeliveryMode::ExactlyOnce(txn) = &mut self.mode
            && let Some(started) = txn.started
        {
            txn.last_commit_end = end_lsn;
            if started.elapsed() >= self.status_interval {
                self.finish_sink_transaction().await?;
            }
        }
        Ok(())
    }

    /// A table-less outbox event. Only transactional messages are published: they arrive
    /// inside their transaction, at its commit, and are checkpointed with it, so a
    /// restart never publishes them twice. A non-transactional one has no commit to
    /// order it by.
    fn on_outbox_message(
        &mut self,
        transactional: bool,
        content: Bytes,
    ) -> Result<(), PipelineError> {
        if !transactional || self.open.is_none() {
            warn!(prefix = %self.message_prefix, "non-transactional outbox message not published; \
                emit it with pg_logical_emit_message(true, ...)");
            self.metrics.record_error(ErrorKind::Mapping, "non-transactional outbox message");
            return Ok(());
        }
        match self.mapper.map_message(&content, &mut self.record) {
            Ok(()) => self.publish_record(),
            Err(source) => {
                let reason = source.to_string();
                self.record.topic = Arc::from("");
                self.record.key = Bytes::new();
                self.record.value = content;
                self.record.headers.clear();
                self.dead_letter_current(
                    &reason,
                    ErrorKind::Mapping,
                    "outbox message dead-lettered",
                );
                self.publish_record()
            }
        }
    }

    /// Sends a row the mapper refused to the dead-letter topic, in its place.
    fn dead_letter_row(&mut self, insert: &Insert, reason: &str) -> Result<(), PipelineError> {
        self.mapper.dead_letter(insert, &self.dlq_topic, &mut self.record);
        self.dead_letter_current(reason, ErrorKind::Mapping, "outbox row dead-lettered");
        self.publish_record()
    }

    /// Turns `self.record` into its dead-letter record (one place for every path that
    /// starts from the current transaction), logging and counting why.
    fn dead_letter_current(&mut self, reason: &str, kind: ErrorKind, what: &'static str) {
        let TxnIds { lsn, xid } = self.txn_ids;
        warn!(lsn = %lsn, xid, topic = %self.dlq_topic, source_topic = %self.record.topic, error = reason, "{what}");
        self.metrics.record_error(kind, reason);
        let (table, lsn) = (self.mapper.table_name(), lsn.to_string());
        let why = DeadLetterReason { error: reason, source_lsn: &lsn, source_table: &table };
        dead_letter::mark(&mut self.record, &self.dlq_topic, why);
    }

    /// Sends the copy of a record the destination refused after enqueueing it to the
    /// dead-letter topic; the original (`seq`) is acknowledged once the copy is.
    fn dead_letter_refused(
        &mut self,
        seq: u64,
        refused: RefusedRecord,
        error: &DeliveryError,
    ) -> Result<(), PipelineError> {
        let reason = error.to_string();
        let ids = self.ids_of(seq);
        warn!(lsn = %ids.lsn, xid = ids.xid, topic = %refused.topic, error = %reason, "record refused by the destination dead-lettered");
        self.metrics.record_error(ErrorKind::Refused, &reason);
        let mut record = OutboxRecord {
            topic: Arc::from(refused.topic.as_str()),
            key: refused.key.map(Bytes::from).unwrap_or_default(),
            value: refused.value.map(Bytes::from).unwrap_or_default(),
            headers: refused
                .headers
                .into_iter()
                .map(|(k, v)| (Arc::from(k.as_str()), Bytes::from(v)))
                .collect(),
            meta: tailbox_outbox::MetaHeaders::default(),
        };
        let (table, lsn) = (self.table_of(seq), ids.lsn.to_string());
        let why = DeadLetterReason { error: &reason, source_lsn: &lsn, source_table: &table };
        dead_letter::mark(&mut record, &self.dlq_topic, why);
        match self.sink.send(&record, None) {
            Ok(SendOutcome::Enqueued(dlq_seq)) => {
                self.tracker.on_sent(dlq_seq);
                self.special.insert(dlq_seq, SpecialRecord::DeadLetterFor(seq));
                Ok(())
            }
            Ok(SendOutcome::Blocked) => {
                Err(PipelineError::delivery(DeliveryError::buffer_full(), ids.origin()))
            }
            Err(error) => Err(PipelineError::delivery(error, ids.origin())),
        }
    }

    /// Publishes `self.record` for the open transaction (unless the checkpoint says it
    /// is published already).
    fn publish_record(&mut self) -> Result<(), PipelineError> {
        if self.open.as_ref().is_some_and(|t| t.skip) {
            return Ok(());
        }
        self.ensure_sink_transaction()?;
        self.send_record()
    }

    /// Enqueues `self.record`; if the sink has no room, keeps it and marks the session
    /// blocked. A record the destination refuses at once (too large) is dead-lettered in
    /// its place.
    fn send_record(&mut self) -> Result<(), PipelineError> {
        loop {
            let meta = self.open.as_ref().map(|t| &t.meta);
            let outcome = match self.sink.send(&self.record, meta) {
                Ok(outcome) => outcome,
                Err(error) if error.is_refused() && !self.is_dead_letter() => {
                    let reason = error.to_string();
                    self.dead_letter_current(
                        &reason,
                        ErrorKind::Refused,
                        "record refused by the destination dead-lettered",
                    );
                    // Too large for the destination: the dead-letter record can only carry the reason.
                    self.record.value = Bytes::new();
                    continue;
                }
                Err(error) => return Err(self.delivery_failed(error)),
            };
            match outcome {
                SendOutcome::Enqueued(seq) => {
                    self.on_enqueued(seq);
                    return Ok(());
                }
                SendOutcome::Blocked => {
                    self.blocked = true;
                    return Ok(());
                }
            }
        }
    }

    fn on_enqueued(&mut self, seq: u64) {
        self.tracker.on_sent(seq);
        if self.is_dead_letter() {
            self.special.insert(seq, SpecialRecord::DeadLetterFor(seq));
        }
        if let Some(open) = self.open.as_mut() {
            let table = self.mapper.last_table();
            if open.records == 0 || self.in_flight_txns.last_table() != Some(table) {
                self.in_flight_txns.push(seq, self.txn_ids, table);
            }
            open.records += 1;
        }
        let bytes = (self.record.key.len() + self.record.value.len()) as u64;
        self.topic_counts.add(&self.record.topic, bytes);
        self.record.release();
    }

    /// Whether `self.record` is a dead-letter record (its topic is the very `Arc` every
    /// dead-letter path sets, so a user topic of the same name does not count).
    fn is_dead_letter(&self) -> bool {
        Arc::ptr_eq(&self.record.topic, &self.dlq_topic)
    }

    /// A delivery error, tagged with the transaction being read.
    fn delivery_failed(&self, error: DeliveryError) -> PipelineError {
        PipelineError::delivery(error, self.txn_ids.origin())
    }

    /// The commit LSN and xid of the transaction the record `seq` belongs to.
    fn ids_of(&self, seq: u64) -> TxnIds {
        self.in_flight_txns.of(seq).map_or(self.txn_ids, |(ids, _)| ids)
    }

    /// The outbox table (`schema.table`) the record `seq` came from.
    fn table_of(&self, seq: u64) -> String {
        let table = self.in_flight_txns.of(seq).map_or(self.mapper.last_table(), |(_, t)| t);
        self.mapper.table_name_at(table)
    }
}

/// A PostgreSQL transaction: its commit LSN and xid.
#[derive(Debug, Clone, Copy, Default)]
struct TxnIds {
    lsn: Lsn,
    xid: u32,
}

impl TxnIds {
    fn origin(self) -> RecordOrigin {
        RecordOrigin::Transaction { lsn: self.lsn, xid: self.xid }
    }
}

/// A checkpoint record for `lsn` could not be delivered (it belongs to no transaction).
fn checkpoint_delivery_failed(error: DeliveryError, lsn: Lsn) -> PipelineError {
    PipelineError::delivery(error, RecordOrigin::Checkpoint { lsn })
}

#[cfg(test)]
mod tests;

//! [`WebhookSink`]: the [`Sink`] the pipeline talks to. `send` builds the request and
//! queues it for the dispatcher task (never waiting); acknowledgements come back over a
//! channel in whatever order the requests finish.

use std::sync::Arc;

use tailbox_outbox::{OutboxRecord, headers};
use tailbox_sink::{
    Ack, AckChannel, CheckpointRecords, DeliveryError, EventMeta, Lsn, SendOutcome, Sink, SinkError,
};
use tokio::sync::mpsc;

use crate::{
    breaker::{Breaker, BreakerGauge},
    config::WebhookSinkConfig,
    dispatcher::{self, LaneKey, Policy, Queued, WRITTEN_HEADER},
    http::Http,
    request::{Positions, prepare},
    store::{DeadLetter, Store},
};

/// How far ahead of the oldest unfinished event the dispatcher may send, per request
/// it may have in flight: enough for `concurrency` different aggregates to be found
/// in the window while one waits for a retry, small enough that a crash re-sends few.
pub const LOOKAHEAD_PER_REQUEST: u64 = 64;

/// A checkpoint row is upserted after this many acknowledged events (one statement on
/// a connection already open, so cheap): what a crash re-sends beyond the lookahead.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 256;

/// The webhook sink.
pub struct WebhookSink {
    queue: mpsc::UnboundedSender<Queued>,
    acks: AckChannel,
    store: Arc<Store>,
    dispatcher: tokio::task::JoinHandle<()>,
    positions: Positions,
    next_seq: u64,
    config: WebhookSinkConfig,
}

impl WebhookSink {
    /// Builds the HTTP client, connects to PostgreSQL, checks the webhook tables and
    /// starts the dispatcher; the breaker's state goes to `gauge`.
    pub async fn connect(
        config: &WebhookSinkConfig,
        gauge: BreakerGauge,
    ) -> Result<Self, SinkError> {
        let http = Http::new(config)?;
        let store = Arc::new(Store::connect(&config.pg).await?);
        store.check_tables().await?;
        let (queue, queued) = mpsc::unbounded_channel();
        let (ack_tx, acks) = AckChannel::new();
        let policy = Policy {
            concurrency: config.concurrency,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            lookahead: lookahead(config),
        };
        let breaker = Breaker::new(config.breaker_failures, config.breaker_cooldown, gauge);
        let dispatcher = tokio::spawn(dispatcher::run(
            http,
            Arc::clone(&store),
            policy,
            breaker,
            queued,
            ack_tx,
        ));
        Ok(Self {
            queue,
            acks,
            store,
            dispatcher,
            positions: Positions::default(),
            next_seq: 0,
            config: config.clone(),
        })
    }

    fn enqueue(&mut self, make: impl FnOnce(u64) -> Queued) -> Result<SendOutcome, DeliveryError> {
        let seq = self.next_seq;
        self.queue.send(make(seq)).map_err(|_| DeliveryError::Failed {
            source: "the webhook dispatcher stopped".into(),
        })?;
        self.next_seq += 1;
        self.acks.on_sent();
        Ok(SendOutcome::Enqueued(seq))
    }

    fn full(&self) -> bool {
        self.acks.is_full(self.config.max_buffered)
    }

    /// A dead-letter record from the session: already written (the copy of an event we
    /// refused) or to be written now (a row that never became an event).
    fn send_dead_letter(&mut self, record: &OutboxRecord) -> Result<SendOutcome, DeliveryError> {
        let header = |name: &str| {
            record
                .headers
                .iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        if header(WRITTEN_HEADER).is_some() {
            return self.enqueue(|seq| Queued::Done { seq });
        }
        let reserved =
            [headers::ERROR, headers::SOURCE_LSN, headers::SOURCE_TABLE, headers::SOURCE_TOPIC];
        let letter = DeadLetter {
            event_id: header(headers::ID),
            topic: header(headers::SOURCE_TOPIC),
            aggregate_id: record.key.to_vec(),
            payload: record.value.to_vec(),
            headers: record
                .headers
                .iter()
                .filter(|(n, _)| !reserved.contains(&&**n))
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            error: header(headers::ERROR).unwrap_or_else(|| "dead-lettered".into()),
            source_lsn: header(headers::SOURCE_LSN),
            source_table: header(headers::SOURCE_TABLE),
            ..DeadLetter::default()
        };
        self.enqueue(|seq| Queued::DeadLetter { seq, letter: Box::new(letter) })
    }
}

impl Sink for WebhookSink {
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        // Dead letters never wait: the session's dead-letter path cannot take `Blocked`.
        if *record.topic == *self.config.dlq_topic {
            return self.send_dead_letter(record);
        }
        if self.full() {
            return Ok(SendOutcome::Blocked);
        }
        let aggregate_type =
            self.config.topic_template.aggregate_type(&record.topic).unwrap_or(&record.topic);
        let position = self.positions.next(meta.map_or(Lsn::ZERO, |m| m.commit_lsn));
        let event =
            prepare(record, meta, position, &self.config.url, aggregate_type, &self.config.body);
        let lane: LaneKey = (Arc::clone(&event.record.topic), event.record.key.clone());
        self.enqueue(|seq| Queued::Event { seq, lane, event: Box::new(event) })
    }

    fn send_checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<SendOutcome, DeliveryError> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.enqueue(|seq| Queued::Checkpoint { seq, key, value })
    }

    async fn next_ack(&mut self) -> Ack {
        self.acks.next().await
    }

    fn try_next_ack(&mut self) -> Option<Ack> {
        self.acks.try_next()
    }

    async fn read_checkpoints(&mut self) -> Result<CheckpointRecords, SinkError> {
        self.store.read_checkpoints().await
    }

    fn checkpoint_every_records(&self) -> u64 {
        CHECKPOINT_EVERY_EVENTS
    }
}

/// The dispatcher's window: [`LOOKAHEAD_PER_REQUEST`] per request in flight, never
/// more than the sink buffers.
pub fn lookahead(config: &WebhookSinkConfig) -> u64 {
    let per_request = (config.concurrency.max(1) as u64).saturating_mul(LOOKAHEAD_PER_REQUEST);
    per_request.min(config.max_buffered.max(1))
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

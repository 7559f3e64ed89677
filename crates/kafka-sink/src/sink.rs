//! [`KafkaSink`]: enqueue records in order, get acknowledgements back by sequence number.
//!
//! The producer is a `BaseProducer` served by the pipeline's own thread: asking for
//! acknowledgements ([`KafkaSink::try_next_ack`]) serves librdkafka's delivery-report
//! queue, whose callback appends `(seq, result)` to a queue the sink then hands out.
//! There is no polling thread and no wake-up per delivery batch: the pipeline asks
//! when it is awake anyway, and at least every [`ACK_POLL_INTERVAL`] while it waits
//! for acknowledgements; a task on the same runtime serves the queue every
//! [`HOUSEKEEPING_INTERVAL`] regardless, for librdkafka's error events. The sequence number travels as librdkafka's per-message opaque
//! pointer value, so nothing is allocated per record for tracking.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rdkafka::{
    ClientContext, Message,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::{DeliveryResult, Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, Producer, ProducerContext},
};
use tailbox_outbox::OutboxRecord;
use tracing::{debug, error, info, warn};

use crate::{
    config::SinkConfig,
    error::{DeliveryError, SinkError},
};

/// The outcome of one record.
#[derive(Debug)]
pub struct Ack {
    /// The sequence number [`KafkaSink::send`] returned.
    pub seq: u64,
    /// Delivered, or why not.
    pub result: Result<(), DeliveryError>,
    /// For a record Kafka refused for good: a copy of it, for the dead-letter topic.
    pub refused: Option<Box<RefusedRecord>>,
}

/// A copy of a record Kafka refused, taken in the delivery callback (rare, so the copy
/// costs nothing on the hot path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusedRecord {
    /// The topic it was meant for.
    pub topic: String,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Per-transaction facts that go into every record's headers. Built once per
/// transaction, borrowed by each record.
#[derive(Debug, Clone, Default)]
pub struct EventMeta {
    /// Commit LSN in PostgreSQL's `X/X` form (header `lsn`).
    pub lsn: String,
    /// Transaction id (header `xid`).
    pub xid: String,
    /// Commit time, µs since the Unix epoch (header `commit_ts`).
    pub commit_ts: String,
    /// Commit time, ms since the Unix epoch: the record's timestamp.
    pub timestamp_ms: i64,
}

impl EventMeta {
    /// Fills in a new transaction's facts, reusing the strings' buffers (no allocation
    /// per transaction once they have grown).
    pub fn reset(&mut self, commit_lsn: u64, xid: u32, commit_unix_micros: i64) {
        use std::fmt::Write;
        self.lsn.clear();
        tailbox_pgoutput::write_lsn(&mut self.lsn, commit_lsn);
        self.xid.clear();
        let _ = write!(self.xid, "{xid}");
        self.commit_ts.clear();
        let _ = write!(self.commit_ts, "{commit_unix_micros}");
        self.timestamp_ms = commit_unix_micros / 1000;
    }
}

/// What happened to a record handed to [`KafkaSink::send`].
#[derive(Debug)]
pub enum SendOutcome {
    /// Enqueued with this sequence number; its [`Ack`] follows.
    Enqueued(u64),
    /// librdkafka's queue is full: wait for acknowledgements, then send the same
    /// record again.
    QueueFull,
}

/// How often a pipeline waiting for acknowledgements serves the delivery reports.
/// Acknowledgements only gate the checkpoint and the in-flight window, never when a
/// record reaches Kafka, so a few milliseconds here cost no latency that consumers see.
pub const ACK_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Delivery-report events served per [`KafkaSink::try_next_ack`] at most (each holds
/// the records of one produce response).
const EVENTS_PER_SERVE: usize = 64;

/// How often a background task serves the queue anyway, so that librdkafka's error
/// events (unreachable broker, refused certificate or credentials) are logged while
/// the pipeline is busy elsewhere (startup, reading the checkpoint) or has nothing in
/// flight.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(200);

/// Routes librdkafka's callbacks: deliveries to the sink's queue, logs and errors to
/// `tracing`.
pub(crate) struct SinkContext {
    /// Filled by the delivery callback, on whichever thread serves the queue (the
    /// pipeline's, or the blocking pool's during a transaction commit).
    acks: Mutex<VecDeque<Ack>>,
    /// Acknowledgements produced so far: tells [`KafkaSink::serve`] whether the last
    /// poll handled a delivery report.
    delivered: AtomicU64,
    fatal: Arc<AtomicBool>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.store(true, Ordering::Release);
            error!(error = %error, "Kafka producer hit a fatal error: {reason}");
        } else {
            warn!(error = %error, "Kafka client error: {reason}");
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery: &DeliveryResult<'_>, seq: usize) {
        let (result, refused) = match delivery {
            Ok(_) => (Ok(()), None),
            Err((err, message)) => {
                warn!(topic = message.topic(), error = %err, "record not delivered");
                let error = DeliveryError::classify(err.clone());
                let refused = matches!(error, DeliveryError::Refused(_))
                    .then(|| Box::new(copy_refused(message)));
                (Err(error), refused)
            }
        };
        let ack = Ack { seq: seq as u64, result, refused };
        // A poisoned lock only means another thread panicked while pushing: the queue
        // itself is intact.
        self.acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(ack);
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// A librdkafka log line, through `tracing` at the matching level.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Debug => debug!(facility, "librdkafka: {message}"),
    }
}

/// Serves `producer`'s queue without waiting: delivery reports (up to
/// [`EVENTS_PER_SERVE`] events, while they keep coming) and error events.
fn serve(producer: &BaseProducer<SinkContext>) {
    let delivered = &producer.context().delivered;
    for _ in 0..EVENTS_PER_SERVE {
        let before = delivered.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if delivered.load(Ordering::Relaxed) == before {
            break;
        }
    }
}

fn copy_refused(message: &rdkafka::message::BorrowedMessage<'_>) -> RefusedRecord {
    use rdkafka::message::Headers;
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    RefusedRecord {
        topic: message.topic().to_owned(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// An ordered, idempotent Kafka producer.
pub struct KafkaSink {
    producer: Arc<BaseProducer<SinkContext>>,
    /// Serves the queue every [`HOUSEKEEPING_INTERVAL`] (when created on a runtime).
    housekeeping: Option<tokio::task::JoinHandle<()>>,
    /// Acknowledgements taken from the context's queue, handed out in order.
    ready: VecDeque<Ack>,
    fatal: Arc<AtomicBool>,
    next_seq: u64,
}

impl KafkaSink {
    /// Creates the producer (no network round trip yet: brokers are contacted lazily).
    pub fn new(config: &SinkConfig) -> Result<Self, SinkError> {
        Self::create(config, None)
    }

    /// Creates a transactional producer with `transactional_id`; call
    /// [`KafkaSink::init_transactions`] before sending.
    pub fn new_transactional(
        config: &SinkConfig,
        transactional_id: &str,
    ) -> Result<Self, SinkError> {
        Self::create(config, Some(transactional_id))
    }

    fn create(config: &SinkConfig, transactional_id: Option<&str>) -> Result<Self, SinkError> {
        let fatal = Arc::new(AtomicBool::new(false));
        let context = SinkContext {
            acks: Mutex::new(VecDeque::new()),
            delivered: AtomicU64::new(0),
            fatal: Arc::clone(&fatal),
        };
        let mut client_config = config.producer_config();
        if let Some(id) = transactional_id {
            client_config.set("transactional.id", id);
            // A huge PostgreSQL transaction is one Kafka transaction: allow the broker's
            // default maximum (15 minutes) unless the user set something else.
            if client_config.get("transaction.timeout.ms").is_none() {
                client_config.set("transaction.timeout.ms", "900000");
            }
        }
        let producer = client_config.create_with_context(context).map_err(SinkError::Config)?;
        let producer = Arc::new(producer);
        let housekeeping = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let producer = Arc::downgrade(&producer);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(producer) = producer.upgrade() else { break };
                    serve(&producer);
                }
            })
        });
        Ok(Self { producer, housekeeping, ready: VecDeque::new(), fatal, next_seq: 0 })
    }

    /// Enqueues one record; with `meta`, adds the transaction's headers (`lsn`, `xid`,
    /// `commit_ts`) and timestamp. Never blocks; `QueueFull` means try the same record
    /// again after some acknowledgements arrived.
    pub fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 3);
        for (name, value) in &record.headers {
            headers = headers.insert(Header { key: name, value: Some(value.as_ref()) });
        }
        if let Some(meta) = meta {
            headers = headers
                .insert(Header { key: "lsn", value: Some(meta.lsn.as_bytes()) })
                .insert(Header { key: "xid", value: Some(meta.xid.as_bytes()) })
                .insert(Header { key: "commit_ts", value: Some(meta.commit_ts.as_bytes()) });
        }
        let mut base = BaseRecord::with_opaque_to(&record.topic, self.next_seq as usize)
            .key(record.key.as_ref())
            .payload(record.value.as_ref())
            .headers(headers);
        if let Some(meta) = meta {
            base = base.timestamp(meta.timestamp_ms);
        }
        self.enqueue(base)
    }

    /// Enqueues a record with no headers (checkpoints and the like).
    pub fn send_plain(
        &mut self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<SendOutcome, DeliveryError> {
        let base =
            BaseRecord::with_opaque_to(topic, self.next_seq as usize).key(key).payload(value);
        self.enqueue(base)
    }

    fn enqueue(
        &mut self,
        record: BaseRecord<'_, [u8], [u8], usize>,
    ) -> Result<SendOutcome, DeliveryError> {
        match self.producer.send(record) {
            Ok(()) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Ok(SendOutcome::Enqueued(seq))
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Ok(SendOutcome::QueueFull)
            }
            Err((err, _)) => Err(DeliveryError::classify(err)),
        }
    }

    /// A handle on the producer (shared; for calls that must run on the blocking pool).
    pub(crate) fn producer_handle(&self) -> Arc<BaseProducer<SinkContext>> {
        Arc::clone(&self.producer)
    }

    /// Serves librdkafka's queue on this thread: runs the delivery callbacks of the
    /// reports that arrived (and error callbacks), without waiting.
    pub fn serve(&self) {
        serve(&self.producer);
    }

    /// The next acknowledgement, waiting for it (serving the queue every
    /// [`ACK_POLL_INTERVAL`]). Cancel-safe.
    pub async fn next_ack(&mut self) -> Ack {
        loop {
            if let Some(ack) = self.try_next_ack() {
                return ack;
            }
            tokio::time::sleep(ACK_POLL_INTERVAL).await;
        }
    }

    /// An acknowledgement if one arrived (serves the queue first if none is waiting).
    pub fn try_next_ack(&mut self) -> Option<Ack> {
        if self.ready.is_empty() {
            self.serve();
            let mut arrived = self
                .producer
                .context()
                .acks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::swap(&mut *arrived, &mut self.ready);
        }
        self.ready.pop_front()
    }

    /// Whether the producer hit a fatal error (it must be recreated).
    pub fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Acquire)
    }

    /// Records enqueued but not yet acknowledged, as librdkafka counts them.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits (blocking this thread, bounded) until librdkafka has no records left.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), SinkError> {
        self.producer.flush(timeout).map_err(|source| SinkError::Transient {
            context: "flushing the producer".into(),
            source,
        })
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(task) = self.housekeeping.take() {
            task.abort();
        }
    }
}

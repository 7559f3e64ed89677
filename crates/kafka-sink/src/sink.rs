//! [`KafkaSink`]: enqueue records in order, get acknowledgements back by sequence number.
//!
//! The producer is a `BaseProducer` served by the pipeline's own thread: asking for
//! acknowledgements (`Sink::try_next_ack`) serves librdkafka's delivery-report
//! queue, whose callback appends `(seq, result)` to a queue the sink then hands out.
//! There is no polling thread and no wake-up per delivery batch: the pipeline asks
//! when it is awake anyway, and at least every [`ACK_POLL_INTERVAL`] while it waits
//! for acknowledgements; a task on the same runtime serves the queue every
//! [`HOUSEKEEPING_INTERVAL`] regardless, for librdkafka's error events. The sequence
//! number travels as librdkafka's per-message opaque pointer value, so nothing is
//! allocated per record for tracking.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
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
use tailbox_outbox::{OutboxRecord, headers};
use tailbox_sink::{
    Ack, CheckpointRecords, DeliveryError, EventMeta, RefusedRecord, SendOutcome, Sink, SinkError,
    TransactionError,
};
use tracing::{debug, error, info, warn};

use crate::{
    checkpoint_topic::CheckpointTopic,
    config::SinkConfig,
    error::{config_error, delivery_error},
    topics::{Gate, MissingTopic},
};

/// How often a pipeline waiting for acknowledgements serves the delivery reports.
/// Acknowledgements only gate the checkpoint and the in-flight window, never when a
/// record reaches Kafka, so a few milliseconds here cost no latency that consumers see.
pub const ACK_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Delivery-report events served per `try_next_ack` at most (each holds
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
    /// Where missing topics are reported, and the settings their fix is built from.
    config: SinkConfig,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
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
            Ok(message) => {
                self.config.topics.registry.found(|| message.topic());
                (Ok(()), None)
            }
            Err((err, message)) => {
                warn!(topic = message.topic(), error = %err, "record not delivered");
                if matches!(
                    err.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
                    )
                ) {
                    self.report_missing(message);
                }
                let error = delivery_error(err.clone());
                let refused = error.is_refused().then(|| Box::new(copy_refused(message)));
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

impl SinkContext {
    /// A record came back because its topic does not exist: say so once, with the
    /// transaction it belongs to (its `lsn` and `xid` headers) and the fix.
    fn report_missing(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        use rdkafka::message::Headers;
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "?".to_owned())
        };
        let topic = message.topic();
        let reason = if self.config.topics.create {
            "the broker does not know it (deleted after tailbox saw it?)"
        } else {
            "tailbox does not create topics (create_topics is false) and the broker does not create it"
        };
        self.config.topics.registry.report_missing(MissingTopic {
            topic: topic.to_owned(),
            lsn: header(headers::LSN),
            xid: header(headers::XID),
            reason: reason.to_owned(),
            fix: crate::topics::fix(&self.config, topic),
        });
    }
}

/// A librdkafka log line, through `tracing` at the matching level; a warning about a
/// normal, retried start-up condition (see [`is_retried_startup_condition`]) at INFO.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Warning if is_retried_startup_condition(message) => RDKafkaLogLevel::Info,
        level => level,
    };
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

/// Broker answers that librdkafka retries by itself and that a fresh or restarting
/// broker gives for a few seconds: its transaction or group coordinator is still
/// loading or moving. librdkafka logs them as warnings ("Failed to acquire idempotence
/// PID from broker …: Coordinator load in progress: retrying"), but nothing is wrong.
/// Only lines that say librdkafka retries qualify; the same condition without a retry
/// stays a warning.
pub(crate) fn is_retried_startup_condition(message: &str) -> bool {
    const PASSING: &[&str] = &[
        "Coordinator load in progress",
        "Coordinator not available",
        "Not coordinator",
        "Leader not available",
    ];
    message.trim_end().ends_with("retrying") && PASSING.iter().any(|c| message.contains(c))
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

/// An ordered, idempotent Kafka producer, with the checkpoint topic beside it.
pub struct KafkaSink {
    producer: Arc<BaseProducer<SinkContext>>,
    /// Serves the queue every [`HOUSEKEEPING_INTERVAL`] (when created on a runtime).
    housekeeping: Option<tokio::task::JoinHandle<()>>,
    /// Acknowledgements taken from the context's queue, handed out in order.
    ready: VecDeque<Ack>,
    next_seq: u64,
    /// Where checkpoint records go, and the settings to read them back with.
    checkpoints: CheckpointTopic,
    config: SinkConfig,
    /// Created with a `transactional.id`.
    transactional: bool,
    /// Topics known to exist (the registry said so once): no lock per record.
    known_topics: HashSet<Arc<str>>,
    /// The topic of the last record sent: most records go where the last one went.
    last_topic: Option<Arc<str>>,
}

impl KafkaSink {
    /// Creates the producer (no network round trip yet: brokers are contacted lazily);
    /// checkpoint records go to `checkpoint_topic`.
    pub fn new(config: &SinkConfig, checkpoint_topic: &str) -> Result<Self, SinkError> {
        Self::create(config, checkpoint_topic, None)
    }

    /// Creates a transactional producer with `transactional_id`; call
    /// [`KafkaSink::init_transactions`] before sending.
    pub fn new_transactional(
        config: &SinkConfig,
        checkpoint_topic: &str,
        transactional_id: &str,
    ) -> Result<Self, SinkError> {
        Self::create(config, checkpoint_topic, Some(transactional_id))
    }

    fn create(
        config: &SinkConfig,
        checkpoint_topic: &str,
        transactional_id: Option<&str>,
    ) -> Result<Self, SinkError> {
        let context = SinkContext {
            acks: Mutex::new(VecDeque::new()),
            delivered: AtomicU64::new(0),
            config: config.clone(),
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
        let producer = client_config.create_with_context(context).map_err(config_error)?;
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
        Ok(Self {
            producer,
            housekeeping,
            ready: VecDeque::new(),
            next_seq: 0,
            checkpoints: CheckpointTopic::new(checkpoint_topic),
            config: config.clone(),
            transactional: transactional_id.is_some(),
            known_topics: HashSet::new(),
            last_topic: None,
        })
    }

    /// Whether `topic` may be sent to now. With topic creation on, a topic not known to
    /// exist is checked (created, or looked up) in the background first, and its records
    /// wait (`Blocked`) meanwhile; see [`crate::topics`]. Without, the producer finds
    /// out, and a missing topic is reported from its delivery report.
    fn topic_ready(&mut self, topic: &Arc<str>, meta: Option<&EventMeta>) -> bool {
        if let Some(last) = &self.last_topic
            && (Arc::ptr_eq(last, topic) || **last == **topic)
        {
            return true;
        }
        if !self.config.topics.create || self.known_topics.contains(&**topic) {
            self.last_topic = Some(Arc::clone(topic));
            return true;
        }
        let (lsn, xid) = meta.map_or(("?", "?"), |m| (m.lsn.as_str(), m.xid.as_str()));
        match self.config.topics.registry.gate(topic, lsn, xid, &self.config) {
            Gate::Open => {
                self.known_topics.insert(Arc::clone(topic));
                self.last_topic = Some(Arc::clone(topic));
                true
            }
            Gate::Wait => false,
        }
    }

    /// Enqueues one record; with `meta`, adds the transaction's headers (`lsn`, `xid`,
    /// `commit_ts`) and timestamp. Never blocks; `Blocked` means try the same record
    /// again after some acknowledgements arrived.
    fn send_record(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        if !self.topic_ready(&record.topic, meta) {
            return Ok(SendOutcome::Blocked);
        }
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 4);
        for (name, value) in &record.headers {
            headers = headers.insert(Header { key: name, value: Some(value.as_ref()) });
        }
        if let Some(meta) = meta {
            for (key, value) in meta.headers(record.meta) {
                headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
            }
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
    fn send_plain(
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
                Ok(SendOutcome::Blocked)
            }
            Err((err, _)) => Err(delivery_error(err)),
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

    /// Delivery reports that arrived, in the order librdkafka reported them.
    fn take_arrived(&mut self) {
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
    }
}

impl Sink for KafkaSink {
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        self.send_record(record, meta)
    }

    fn send_checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<SendOutcome, DeliveryError> {
        let topic = self.checkpoints.topic().to_owned();
        self.send_plain(&topic, key, value)
    }

    /// Waits for the next acknowledgement, serving the queue every
    /// [`ACK_POLL_INTERVAL`]. Cancel-safe.
    async fn next_ack(&mut self) -> Ack {
        loop {
            if let Some(ack) = self.try_next_ack() {
                return ack;
            }
            tokio::time::sleep(ACK_POLL_INTERVAL).await;
        }
    }

    /// Serves the queue first if no acknowledgement is waiting.
    fn try_next_ack(&mut self) -> Option<Ack> {
        self.take_arrived();
        self.ready.pop_front()
    }

    async fn read_checkpoints(&mut self) -> Result<CheckpointRecords, SinkError> {
        self.checkpoints.ensure_and_read(&self.config).await
    }

    fn supports_transactions(&self) -> bool {
        self.transactional
    }

    fn begin_transaction(&mut self) -> Result<(), TransactionError> {
        self.begin()
    }

    async fn commit_transaction(&mut self, timeout: Duration) -> Result<(), TransactionError> {
        self.commit(timeout).await
    }

    async fn abort_transaction(&mut self, timeout: Duration) -> Result<(), TransactionError> {
        self.abort(timeout).await
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(task) = self.housekeeping.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_retried_startup_condition;

    #[test]
    fn only_retried_coordinator_start_up_conditions_are_quietened() {
        assert!(is_retried_startup_condition(
            "Failed to acquire idempotence PID from broker 127.0.0.1:9092/1: Broker: Coordinator load in progress: retrying"
        ));
        assert!(is_retried_startup_condition(
            "Failed to acquire transactional PID from broker TxnCoordinator/1: Broker: Coordinator not available: retrying"
        ));
        assert!(!is_retried_startup_condition(
            "Failed to acquire idempotence PID from broker 127.0.0.1:9092/1: Broker: Cluster authorization failed"
        ));
        assert!(!is_retried_startup_condition(
            "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
        ));
    }
}

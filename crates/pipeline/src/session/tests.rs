//! The session against a fake WAL source and a fake sink: what it confirms, what it
//! dead-letters, where it puts sink transactions, how it waits for room, how it drains,
//! and how it fails.
#![allow(clippy::unwrap_used)]

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use bytes::{BufMut, BytesMut};
use tailbox_outbox::{ColumnNames, OutboxConfig, OutboxRecord};
use tailbox_replication::{Lsn, PgConnectionConfig, ReplicationError, WalEvent, WalSource};
use tailbox_sink::{
    Ack, CheckpointRecords, DeliveryError, EventMeta, RefusedRecord, SendOutcome, Sink, SinkError,
    TransactionError,
};

use super::{DeliveryMode, Session, SessionStats, SinkTransaction};
use crate::{
    PipelineError, PipelineSettings,
    metrics::PipelineMetrics,
    resume::{CheckpointOwner, Resume},
    shutdown,
};

const START: u64 = 0x1000;
const OUTBOX_OID: u32 = 16384;

// ---- pgoutput messages, encoded independently of the decoder ----

fn begin(final_lsn: u64, xid: u32) -> WalEvent {
    let mut b = BytesMut::new();
    b.put_u8(b'B');
    b.put_u64(final_lsn);
    b.put_i64(0);
    b.put_u32(xid);
    WalEvent::Data(b.freeze())
}

fn commit(commit_lsn: u64, end_lsn: u64) -> WalEvent {
    let mut b = BytesMut::new();
    b.put_u8(b'C');
    b.put_u8(0);
    b.put_u64(commit_lsn);
    b.put_u64(end_lsn);
    b.put_i64(0);
    WalEvent::Data(b.freeze())
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

const COLUMNS: [&str; 5] = ["id", "aggregatetype", "aggregateid", "type", "payload"];

fn relation() -> WalEvent {
    relation_of(OUTBOX_OID, "public", "outbox")
}

/// The Relation message of another outbox table with the same columns.
fn relation_of(oid: u32, schema: &str, table: &str) -> WalEvent {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(oid);
    cstr(&mut b, schema);
    cstr(&mut b, table);
    b.put_u8(b'd');
    b.put_u16(COLUMNS.len() as u16);
    for name in COLUMNS {
        b.put_u8(0);
        cstr(&mut b, name);
        b.put_u32(25);
        b.put_i32(-1);
    }
    WalEvent::Data(b.freeze())
}

/// An outbox insert; `None` columns are NULL.
fn insert(id: &str, aggregate_type: Option<&str>, aggregate_id: &str, payload: &str) -> WalEvent {
    insert_into(OUTBOX_OID, id, aggregate_type, aggregate_id, payload)
}

/// An insert into the table with relation id `oid`.
fn insert_into(
    oid: u32,
    id: &str,
    aggregate_type: Option<&str>,
    aggregate_id: &str,
    payload: &str,
) -> WalEvent {
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(oid);
    b.put_u8(b'N');
    b.put_u16(COLUMNS.len() as u16);
    for value in [Some(id), aggregate_type, Some(aggregate_id), Some("Happened"), Some(payload)] {
        match value {
            Some(v) => {
                b.put_u8(b't');
                b.put_u32(v.len() as u32);
                b.put_slice(v.as_bytes());
            }
            None => b.put_u8(b'n'),
        }
    }
    WalEvent::Data(b.freeze())
}

/// A transactional `pg_logical_emit_message` with prefix `outbox`.
fn message(content: &str) -> WalEvent {
    let mut b = BytesMut::new();
    b.put_u8(b'M');
    b.put_u8(1);
    b.put_u64(0);
    cstr(&mut b, "outbox");
    b.put_u32(content.len() as u32);
    b.put_slice(content.as_bytes());
    WalEvent::Data(b.freeze())
}

/// One transaction: Begin, the inserts `ids` (aggregate type `Order`), Commit at
/// `end_lsn - 8`.
fn transaction(end_lsn: u64, xid: u32, ids: &[&str]) -> Vec<WalEvent> {
    let mut events = vec![begin(end_lsn - 8, xid)];
    events.extend(ids.iter().map(|id| insert(id, Some("Order"), "o-1", "{}")));
    events.push(commit(end_lsn - 8, end_lsn));
    events
}

// ---- the fake source ----

#[derive(Default)]
struct SourceState {
    events: VecDeque<WalEvent>,
    confirmed: Lsn,
    stopped: bool,
}

#[derive(Clone, Default)]
struct FakeSource(Rc<RefCell<SourceState>>);

impl FakeSource {
    fn with(events: Vec<WalEvent>) -> Self {
        let source = Self::default();
        source.0.borrow_mut().events.extend(events);
        source
    }

    fn confirmed(&self) -> u64 {
        self.0.borrow().confirmed.as_u64()
    }
}

impl WalSource for FakeSource {
    async fn recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        loop {
            if let Some(event) = self.0.borrow_mut().events.pop_front() {
                return Ok(Some(event));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn try_recv(&mut self) -> Result<Option<WalEvent>, ReplicationError> {
        Ok(self.0.borrow_mut().events.pop_front())
    }

    fn confirm(&mut self, lsn: Lsn) {
        let mut state = self.0.borrow_mut();
        state.confirmed = state.confirmed.max(lsn);
    }

    async fn stop(self, _timeout: Duration) -> Result<(), ReplicationError> {
        self.0.borrow_mut().stopped = true;
        Ok(())
    }
}

// ---- the fake sink ----

/// What the fake sink saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Record {
        seq: u64,
        topic: String,
        key: Vec<u8>,
        value: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
        lsn: Option<String>,
    },
    Checkpoint {
        seq: u64,
    },
    Begin,
    Commit,
    Abort,
}

#[derive(Default)]
struct SinkState {
    next_seq: u64,
    seen: Vec<Seen>,
    /// Acknowledgements the session may take.
    acks: VecDeque<Ack>,
    /// Records (not checkpoints) held back until the test releases them.
    held: BTreeMap<u64, Ack>,
    /// Acknowledge records at once (else hold them).
    auto_ack: bool,
    /// Enqueued and unacknowledged records beyond which the sink answers `Blocked`.
    capacity: Option<u64>,
    /// Records to this topic are refused when enqueued.
    refuse_on_send: Option<String>,
    /// Records to this topic are refused when delivered (with a copy).
    refuse_on_delivery: Option<String>,
    /// The n-th record (0-based, checkpoints not counted) fails when delivered.
    fail_delivery_of: Option<u64>,
    /// Checkpoint records fail when delivered.
    fail_checkpoints: bool,
    records_sent: u64,
    checkpoints: CheckpointRecords,
}

#[derive(Clone, Default)]
struct FakeSink {
    state: Rc<RefCell<SinkState>>,
    transactional: bool,
}

impl FakeSink {
    fn auto() -> Self {
        let sink = Self::default();
        sink.state.borrow_mut().auto_ack = true;
        sink
    }

    fn records(&self) -> Vec<Seen> {
        self.state
            .borrow()
            .seen
            .iter()
            .filter(|s| matches!(s, Seen::Record { .. }))
            .cloned()
            .collect()
    }

    fn release(&self, seq: u64) {
        let mut state = self.state.borrow_mut();
        if let Some(ack) = state.held.remove(&seq) {
            state.acks.push_back(ack);
        }
    }

    fn release_all(&self) {
        let mut state = self.state.borrow_mut();
        let held = std::mem::take(&mut state.held);
        state.acks.extend(held.into_values());
    }

    fn outstanding(state: &SinkState) -> u64 {
        state.held.len() as u64 + state.acks.len() as u64
    }
}

impl Sink for FakeSink {
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        let mut state = self.state.borrow_mut();
        if state.refuse_on_send.as_deref() == Some(&*record.topic) {
            return Err(DeliveryError::Refused { destination: "fake", source: "too large".into() });
        }
        if state.capacity.is_some_and(|c| Self::outstanding(&state) >= c) {
            return Ok(SendOutcome::Blocked);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let headers: Vec<(String, Vec<u8>)> =
            record.headers.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        state.seen.push(Seen::Record {
            seq,
            topic: record.topic.to_string(),
            key: record.key.to_vec(),
            value: record.value.to_vec(),
            headers: headers.clone(),
            lsn: meta.map(|m| m.lsn.clone()),
        });
        let nth = state.records_sent;
        state.records_sent += 1;
        let ack = if state.refuse_on_delivery.as_deref() == Some(&*record.topic) {
            Ack {
                seq,
                result: Err(DeliveryError::Refused {
                    destination: "fake",
                    source: "not authorised".into(),
                }),
                refused: Some(Box::new(RefusedRecord {
                    topic: record.topic.to_string(),
                    key: Some(record.key.to_vec()),
                    value: Some(record.value.to_vec()),
                    headers,
                })),
            }
        } else if state.fail_delivery_of == Some(nth) {
            Ack {
                seq,
                result: Err(DeliveryError::Failed { source: "broker gone".into() }),
                refused: None,
            }
        } else {
            Ack { seq, result: Ok(()), refused: None }
        };
        if state.auto_ack {
            state.acks.push_back(ack);
        } else {
            state.held.insert(seq, ack);
        }
        Ok(SendOutcome::Enqueued(seq))
    }

    fn send_checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<SendOutcome, DeliveryError> {
        let mut state = self.state.borrow_mut();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.seen.push(Seen::Checkpoint { seq });
        state.checkpoints.insert(key.to_vec(), value.to_vec());
        let result = if state.fail_checkpoints {
            Err(DeliveryError::Failed { source: "checkpoint topic gone".into() })
        } else {
            Ok(())
        };
        state.acks.push_back(Ack { seq, result, refused: None });
        Ok(SendOutcome::Enqueued(seq))
    }

    async fn next_ack(&mut self) -> Ack {
        loop {
            if let Some(ack) = self.try_next_ack() {
                return ack;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn try_next_ack(&mut self) -> Option<Ack> {
        self.state.borrow_mut().acks.pop_front()
    }

    async fn read_checkpoints(&mut self) -> Result<CheckpointRecords, SinkError> {
        Ok(self.state.borrow().checkpoints.clone())
    }

    fn supports_transactions(&self) -> bool {
        self.transactional
    }

    fn begin_transaction(&mut self) -> Result<(), TransactionError> {
        self.state.borrow_mut().seen.push(Seen::Begin);
        Ok(())
    }

    async fn commit_transaction(&mut self, _timeout: Duration) -> Result<(), TransactionError> {
        self.state.borrow_mut().seen.push(Seen::Commit);
        Ok(())
    }

    async fn abort_transaction(&mut self, _timeout: Duration) -> Result<(), TransactionError> {
        self.state.borrow_mut().seen.push(Seen::Abort);
        Ok(())
    }
}

// ---- running a session ----

fn settings() -> PipelineSettings {
    let columns = ColumnNames {
        id: "id".into(),
        aggregate_type: "aggregatetype".into(),
        aggregate_id: "aggregateid".into(),
        event_type: "type".into(),
        payload: "payload".into(),
    };
    PipelineSettings {
        pg: PgConnectionConfig::parse("postgres://tailbox@localhost/app").unwrap(),
        slot: "tailbox".into(),
        publication: "tailbox".into(),
        outbox: OutboxConfig::new("public.outbox", columns, "outbox.event.{aggregatetype}")
            .unwrap(),
        more_tables: Vec::new(),
        all_tables: None,
        destination: crate::settings::Destination::Kafka(tailbox_kafka_sink::SinkConfig {
            brokers: "localhost:9092".into(),
            properties: vec![],
            topics: tailbox_kafka_sink::TopicSettings::default(),
        }),
        checkpoint_topic: "tailbox.checkpoints".into(),
        status_interval: Duration::from_millis(5),
        max_in_flight: 1000,
        shutdown_timeout: Duration::from_secs(1),
        accept_slot_position: false,
        accept_checkpoint_divergence: false,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        message_prefix: "outbox".into(),
        dlq_topic: "outbox.dlq".into(),
        exactly_once: false,
        transactional_id: None,
        dry_run: false,
        heartbeat_interval: None,
        heartbeat_sql: None,
        metrics: Arc::new(PipelineMetrics::default()),
    }
}

fn owner() -> CheckpointOwner {
    let server = tailbox_replication::ServerIdentity {
        system_id: 42,
        timeline: 1,
        wal_flush_lsn: Lsn::new(u64::MAX),
        database: "app".into(),
        history: Default::default(),
    };
    CheckpointOwner::new(&server, "tailbox")
}

/// Runs a session over `source` into `sink` while `script` runs beside it; shuts the
/// session down when the script returns and returns the session's result.
async fn run_with<F: Future<Output = ()>>(
    source: &FakeSource,
    sink: &FakeSink,
    mode: DeliveryMode,
    settings: &PipelineSettings,
    script: F,
) -> Result<SessionStats, PipelineError> {
    let (trigger, shutdown) = shutdown::channel();
    let session = Session::new(
        source.clone(),
        sink.clone(),
        mode,
        owner(),
        Lsn::new(START),
        &Resume::FromSlot,
        settings,
    );
    let run = session.run(shutdown, settings.shutdown_timeout);
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result,
        () = script => trigger.trigger(),
    }
    run.await
}

/// Waits (up to a second) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

/// Gives the session time to do whatever it would do (several status ticks).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(40)).await;
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a [u8]> {
    let Seen::Record { headers, .. } = seen else { return None };
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

fn topic(seen: &Seen) -> &str {
    match seen {
        Seen::Record { topic, .. } => topic,
        _ => "",
    }
}

// ---- the tests ----

#[tokio::test(flavor = "current_thread")]
async fn confirms_only_the_acknowledged_prefix() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a", "b"]));
    events.extend(transaction(0x3000, 2, &["c"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::default();
    let result = run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("three records sent", || sink.records().len() == 3).await;
        // The later records are acknowledged, the first is not: nothing is confirmable.
        sink.release(1);
        sink.release(2);
        settle().await;
        assert_eq!(source.confirmed(), 0, "nothing confirmed while record 0 is in flight");
        sink.release(0);
        until("both transactions confirmed", || source.confirmed() == 0x3000).await;
    })
    .await;
    assert_eq!(result.unwrap().published, 3);
    assert!(source.0.borrow().stopped);
}

#[tokio::test(flavor = "current_thread")]
async fn a_poison_row_is_dead_lettered_in_its_place_and_the_stream_goes_on() {
    let mut events = vec![relation(), begin(0x1ff8, 7)];
    events.push(insert("a", None, "o-1", "{\"bad\":true}"));
    events.push(insert("b", Some("Order"), "o-1", "{}"));
    events.push(commit(0x1ff8, 0x2000));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    let result = run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("confirmed past the poison row", || source.confirmed() == 0x2000).await;
    })
    .await;
    result.unwrap();
    let records = sink.records();
    assert_eq!(records.len(), 2);
    assert_eq!(topic(&records[0]), "outbox.dlq");
    assert_eq!(header(&records[0], "error"), Some(b"column \"aggregatetype\" is NULL".as_slice()));
    assert_eq!(header(&records[0], "source_lsn"), Some(b"0/1FF8".as_slice()));
    assert_eq!(header(&records[0], "source_table"), Some(b"public.outbox".as_slice()));
    assert_eq!(header(&records[0], "source_topic"), None, "it never had a topic");
    let Seen::Record { value, .. } = &records[0] else { unreachable!() };
    assert_eq!(value, b"{\"bad\":true}", "the payload is kept");
    assert_eq!(topic(&records[1]), "outbox.event.Order");
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_refused_when_sent_is_dead_lettered_with_its_topic() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    sink.state.borrow_mut().refuse_on_send = Some("outbox.event.Order".into());
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(topic(&records[0]), "outbox.dlq");
    assert_eq!(header(&records[0], "source_topic"), Some(b"outbox.event.Order".as_slice()));
    assert!(header(&records[0], "error").is_some_and(|e| e.ends_with(b"too large")));
    let Seen::Record { value, .. } = &records[0] else { unreachable!() };
    assert!(value.is_empty(), "too large to carry: only the reason goes");
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_refused_on_delivery_is_dead_lettered_and_holds_the_slot_until_then() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 9, &["a"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::default();
    sink.state.borrow_mut().refuse_on_delivery = Some("outbox.event.Order".into());
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("the original sent", || sink.records().len() == 1).await;
        sink.release(0);
        until("its dead-letter copy sent", || sink.records().len() == 2).await;
        settle().await;
        assert_eq!(source.confirmed(), 0, "the copy is not acknowledged yet");
        sink.release_all();
        until("confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let copy = &sink.records()[1];
    assert_eq!(topic(copy), "outbox.dlq");
    assert_eq!(header(copy, "source_topic"), Some(b"outbox.event.Order".as_slice()));
    assert_eq!(
        header(copy, "source_lsn"),
        Some(b"0/1FF8".as_slice()),
        "from the transaction, not a header"
    );
    assert_eq!(header(copy, "lsn"), None, "the fake copy has no meta headers");
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_refused_on_delivery_names_its_own_table_among_several() {
    const ORDERS_OID: u32 = OUTBOX_OID + 1;
    let mut settings = settings();
    let columns = settings.outbox.columns.clone();
    settings.more_tables =
        vec![OutboxConfig::new("shop.orders", columns, "orders.{aggregatetype}").unwrap()];
    let events = vec![
        relation(),
        relation_of(ORDERS_OID, "shop", "orders"),
        begin(0x1ff8, 9),
        insert("a", Some("Order"), "o-1", "{}"),
        insert_into(ORDERS_OID, "b", Some("Order"), "o-1", "{}"),
        commit(0x1ff8, 0x2000),
    ];
    let source = FakeSource::with(events);
    let sink = FakeSink::default();
    sink.state.borrow_mut().refuse_on_delivery = Some("outbox.event.Order".into());
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings, async {
        until("both sent", || sink.records().len() == 2).await;
        sink.release(0);
        until("the dead-letter copy sent", || sink.records().len() == 3).await;
        sink.release_all();
        until("confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let copy = &sink.records()[2];
    assert_eq!(topic(copy), "outbox.dlq");
    assert_eq!(
        header(copy, "source_table"),
        Some(b"public.outbox".as_slice()),
        "its own table, not the last one mapped (shop.orders)"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_unmappable_outbox_message_is_dead_lettered_with_its_content() {
    let events = vec![begin(0x1ff8, 3), message("not json"), commit(0x1ff8, 0x2000)];
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(topic(&records[0]), "outbox.dlq");
    let Seen::Record { value, .. } = &records[0] else { unreachable!() };
    assert_eq!(value, b"not json");
    assert_eq!(header(&records[0], "source_lsn"), Some(b"0/1FF8".as_slice()));
}

#[tokio::test(flavor = "current_thread")]
async fn exactly_once_never_splits_a_postgres_transaction_and_confirms_after_commit() {
    let mut events = vec![relation()];
    for t in 0..20u64 {
        let ids: Vec<String> = (0..(t % 4 + 1)).map(|i| format!("{t}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        events.extend(transaction(0x2000 + t * 0x100, t as u32 + 1, &ids));
    }
    let last_end = 0x2000 + 19 * 0x100;
    let source = FakeSource::with(events);
    let mut sink = FakeSink::auto();
    sink.transactional = true;
    let mut settings = settings();
    settings.status_interval = Duration::from_micros(1);
    let mode = DeliveryMode::ExactlyOnce(SinkTransaction::default());
    run_with(&source, &sink, mode, &settings, async {
        until("confirmed", || source.confirmed() == last_end).await;
    })
    .await
    .unwrap();
    // Walk the log: each PostgreSQL transaction's records lie inside one sink
    // transaction, which ends with a checkpoint record right before its commit.
    let seen = sink.state.borrow().seen.clone();
    let (mut open, mut txn, mut txn_of_lsn) = (false, 0, BTreeMap::new());
    let mut commits = 0;
    for (i, s) in seen.iter().enumerate() {
        match s {
            Seen::Begin => {
                assert!(!open, "nested begin");
                open = true;
                txn += 1;
            }
            Seen::Commit => {
                assert!(open, "commit without begin");
                assert!(
                    matches!(seen[i - 1], Seen::Checkpoint { .. }),
                    "the checkpoint is the last record"
                );
                open = false;
                commits += 1;
            }
            Seen::Record { lsn, .. } => {
                assert!(open, "a record outside a sink transaction");
                let previous = txn_of_lsn.insert(lsn.clone(), txn);
                assert!(previous.is_none_or(|p| p == txn), "transaction {lsn:?} split");
            }
            Seen::Checkpoint { .. } => assert!(open),
            Seen::Abort => panic!("nothing failed"),
        }
    }
    assert!(commits > 1, "several sink transactions ({commits})");
    assert_eq!(txn_of_lsn.len(), 20);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_sink_stops_reading_and_keeps_order() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a", "b", "c", "d", "e"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::default();
    sink.state.borrow_mut().capacity = Some(2);
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        until("two sent", || sink.records().len() == 2).await;
        settle().await;
        assert_eq!(sink.records().len(), 2, "no room: nothing more is sent");
        assert!(!source.0.borrow().events.is_empty(), "and the rest is not read");
        for _ in 0..5 {
            sink.release_all();
            settle().await;
        }
        until("confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let ids: Vec<Vec<u8>> =
        sink.records().iter().map(|r| header(r, "id").unwrap().to_vec()).collect();
    assert_eq!(ids, [b"a", b"b", b"c", b"d", b"e"].map(|b| b.to_vec()), "commit order kept");
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_drains_confirms_and_stops_the_stream() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a", "b"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::default();
    let mut settings = settings();
    settings.status_interval = Duration::from_secs(3600);
    let released = sink.clone();
    let result = run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings, async {
        until("sent", || sink.records().len() == 2).await;
        // Shutdown now; the acknowledgements come while it drains.
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            released.release_all();
        });
    });
    let local = tokio::task::LocalSet::new();
    let stats = local.run_until(result).await.unwrap();
    assert_eq!(stats.published, 2);
    assert_eq!(source.confirmed(), 0x2000, "drained, checkpointed and confirmed");
    assert!(source.0.borrow().stopped);
    assert!(
        sink.state.borrow().seen.iter().any(|s| matches!(s, Seen::Checkpoint { .. })),
        "the final checkpoint was written"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_mid_transaction_reads_on_to_its_commit_and_no_further() {
    let mut events = vec![relation()];
    let mut rest = transaction(0x2000, 1, &["a", "b"]);
    events.extend(rest.drain(..2)); // Begin and the insert of "a"
    rest.extend(transaction(0x3000, 2, &["c"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    let late = source.clone();
    let settings = settings();
    let result = run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings, async {
        until("a sent", || sink.records().len() == 1).await;
        // Shutdown now, with the transaction half read; the rest of it arrives later.
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.0.borrow_mut().events.extend(rest);
        });
    });
    let local = tokio::task::LocalSet::new();
    let stats = local.run_until(result).await.unwrap();
    let ids: Vec<Vec<u8>> =
        sink.records().iter().map(|r| header(r, "id").unwrap().to_vec()).collect();
    assert_eq!(ids, [b"a".to_vec(), b"b".to_vec()], "the open transaction, whole, and no more");
    assert_eq!(stats.published, 2);
    assert_eq!(source.confirmed(), 0x2000, "confirmed at its commit: nothing to publish twice");
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_delivery_mid_transaction_ends_the_session_naming_it() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a"]));
    events.extend(transaction(0x3000, 77, &["b", "c"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    sink.state.borrow_mut().fail_delivery_of = Some(2);
    let result =
        run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), std::future::pending())
            .await;
    let err = result.expect_err("the session ends");
    assert!(err.is_transient(), "a failed delivery is retried from the slot: {err}");
    let text = err.to_string();
    assert!(text.contains("lsn 0/2FF8") && text.contains("xid 77"), "{text}");
    assert!(source.confirmed() <= 0x2000, "never past the failed transaction");
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_dead_letter_names_the_transaction_of_the_refused_record() {
    let mut events = vec![relation()];
    events.extend(transaction(0x3000, 78, &["a"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    {
        let mut state = sink.state.borrow_mut();
        state.refuse_on_delivery = Some("outbox.event.Order".into());
        // Record 0 is refused; record 1 is its dead-letter copy, which fails.
        state.fail_delivery_of = Some(1);
    }
    let result =
        run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), std::future::pending())
            .await;
    let text = result.expect_err("the session ends").to_string();
    assert!(text.contains("(lsn 0/2FF8, xid 78)"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_checkpoint_names_its_lsn_and_no_transaction() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 5, &["a"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    sink.state.borrow_mut().fail_checkpoints = true;
    let result =
        run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), std::future::pending())
            .await;
    let text = result.expect_err("the session ends").to_string();
    assert!(text.contains("(checkpoint record for lsn 0/2000)"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_blocked_with_nothing_in_flight_is_offered_again_at_the_next_tick() {
    // What a sink answers while the record's topic is being created: `Blocked` with
    // nothing in flight, so only the status timer can offer it again.
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a", "b"]));
    let source = FakeSource::with(events);
    let sink = FakeSink::auto();
    sink.state.borrow_mut().capacity = Some(0);
    run_with(&source, &sink, DeliveryMode::AtLeastOnce, &settings(), async {
        settle().await;
        assert!(sink.records().is_empty(), "nothing sent while blocked");
        sink.state.borrow_mut().capacity = None;
        until("both records confirmed", || source.confirmed() == 0x2000).await;
    })
    .await
    .unwrap();
    let ids: Vec<_> = sink.records().iter().map(|r| header(r, "id").map(<[u8]>::to_vec)).collect();
    assert_eq!(ids, vec![Some(b"a".to_vec()), Some(b"b".to_vec())], "in order");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dry_run_never_confirms() {
    let mut events = vec![relation()];
    events.extend(transaction(0x2000, 1, &["a"]));
    let source = FakeSource::with(events);
    let (trigger, shutdown) = shutdown::channel();
    let settings = settings();
    let session = Session::new(
        source.clone(),
        tailbox_sink::DryRunSink::new(),
        DeliveryMode::AtLeastOnce,
        owner(),
        Lsn::new(START),
        &Resume::FromSlot,
        &settings,
    );
    let run = session.run(shutdown, settings.shutdown_timeout);
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => panic!("ended early: {result:?}"),
        () = async {
            until("read everything", || source.0.borrow().events.is_empty()).await;
            settle().await;
        } => trigger.trigger(),
    }
    assert_eq!(run.await.unwrap().published, 1);
    assert_eq!(source.confirmed(), 0);
}

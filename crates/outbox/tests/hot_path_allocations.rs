//! The per-event path of tailbox's own code allocates nothing: decoding an `Insert`
//! from the replication buffer, mapping it into the reused record, releasing the record
//! after the send. (librdkafka's copy of the record is its own business; see
//! docs/benchmarks.md.) A counting global allocator proves it.

#![allow(unsafe_code)] // the counting allocator below; nothing else

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use bytes::{BufMut, Bytes, BytesMut};
use tailbox_outbox::{
    ColumnNames, MetaHeaders, OutboxConfig, OutboxMapper, OutboxRecord, PayloadFormat, TableMapping,
};
use tailbox_pgoutput::Message;

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on threads of their own).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const COLUMNS: &[&str] =
    &["id", "aggregatetype", "aggregateid", "type", "payload", "tracingspancontext"];

/// `R`: relation 16390, public.outbox, text columns.
fn relation_message() -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(16390);
    b.put_slice(b"public\0outbox\0");
    b.put_u8(b'd');
    b.put_u16(COLUMNS.len() as u16);
    for name in COLUMNS {
        b.put_u8(0);
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(25);
        b.put_i32(-1);
    }
    b.freeze()
}

/// `I`: one outbox row on relation 16390.
fn insert_message(n: u32) -> Bytes {
    let id = format!("6f1c2d3e-0000-4000-8000-{n:012}");
    let payload =
        format!("{{\"order\": {n}, \"items\": [1, 2, 3], \"note\": \"{}\"}}", "x".repeat(120));
    let values: [Option<&str>; 6] =
        [Some(&id), Some("Order"), Some("order-17"), Some("OrderPlaced"), Some(&payload), None];
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(16390);
    b.put_u8(b'N');
    b.put_u16(values.len() as u16);
    for value in values {
        match value {
            Some(text) => {
                b.put_u8(b't');
                b.put_u32(text.len() as u32);
                b.put_slice(text.as_bytes());
            }
            None => b.put_u8(b'n'),
        }
    }
    b.freeze()
}

fn allocations_per_event(format: PayloadFormat) -> u64 {
    let mut config =
        OutboxConfig::new("public.outbox", ColumnNames::default(), "outbox.event.{aggregatetype}")
            .expect("valid configuration");
    config.payload_format = format;
    allocations_with(config)
}

fn allocations_with(config: OutboxConfig) -> u64 {
    let mut mapper = OutboxMapper::new(config);
    let Ok(Message::Relation(relation)) = Message::decode(&relation_message()) else {
        panic!("relation fixture does not decode");
    };
    mapper.on_relation(&relation);
    let inserts: Vec<Bytes> = (0..1000).map(insert_message).collect();
    let mut record = OutboxRecord::default();
    let mut published = 0u64;
    let mut publish = |insert: &Bytes, record: &mut OutboxRecord| {
        let Ok(Message::Insert(insert)) = Message::decode(insert) else {
            panic!("insert fixture does not decode");
        };
        assert_eq!(mapper.map_insert(&insert, record), Ok(true));
        published += record.value.len() as u64;
        record.release();
    };
    // The first event sizes the reused buffers (header list, topic cache).
    publish(&inserts[0], &mut record);
    let before = allocations();
    for insert in &inserts {
        publish(insert, &mut record);
    }
    let made = allocations() - before;
    assert!(published > 0);
    made
}

#[test]
fn decoding_and_mapping_an_insert_allocates_nothing() {
    assert_eq!(allocations_per_event(PayloadFormat::Raw), 0, "raw payloads (the default)");
}

/// `--payload-format json` checks each payload with serde_json, whose validator starts
/// a fresh nesting stack per document: one allocation per event with nested JSON, and
/// no more.
#[test]
fn checking_json_payloads_allocates_once_per_event_at_most() {
    assert!(allocations_per_event(PayloadFormat::Json) <= 1000, "1,000 JSON-checked payloads");
}

/// Routing by several columns, a key column, an exclude list and fewer meta headers
/// cost no allocation either (the topic is rendered into a reused buffer and found in
/// the cache).
#[test]
fn templates_over_any_columns_and_header_rules_allocate_nothing() {
    let config = OutboxConfig::from_mapping(&TableMapping {
        topic_template: "{aggregatetype}.{type}.v1".into(),
        key_column: Some("aggregateid".into()),
        exclude_columns: vec!["type".into()],
        meta_headers: MetaHeaders::LSN,
        ..TableMapping::default()
    })
    .expect("valid configuration");
    assert_eq!(allocations_with(config), 0);
}

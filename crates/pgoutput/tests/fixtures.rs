//! Decodes messages captured from a real PostgreSQL 15 server.
//!
//! The bytes live in `fixtures/session.hex`: every row of
//! `pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', ...)` after
//! running `fixtures/capture.sql` (a workload of inserts, updates, deletes,
//! truncates, logical messages, an ALTER TABLE and a replication origin)
//! against a fresh PostgreSQL 15.18 cluster with `wal_level=logical`.
//! `fixtures/capture.sh` is the exact procedure.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Captured, session};
use tailbox_pgoutput::{
    Begin, ColumnValue, Commit, LogicalMessage, Lsn, Message, OldTuple, Origin, Relation,
    RelationColumn, Truncate, TupleData, TypeMessage,
};

const OUTBOX_OID: u32 = 16390;
const AUDIT_OID: u32 = 16398;
const MOOD_OID: u32 = 16385;

/// Tag of every captured message, in order.
const TAGS: &str = "BYRIIMCMBICBUCBUCBUCBRICBUCBDCBDCBYRICBRTCBYRRTCBORIC";

fn decode(c: &Captured) -> Message {
    common::decode_fully(&c.data).unwrap_or_else(|e| panic!("{} failed: {e}", c.lsn))
}

fn decode_at(index: usize) -> Message {
    decode(&session()[index])
}

fn text(s: &str) -> ColumnValue {
    ColumnValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn values(t: &TupleData) -> Vec<ColumnValue> {
    t.columns().collect()
}

fn col(name: &str, type_oid: u32, key: bool) -> RelationColumn {
    RelationColumn { flags: u8::from(key), name: name.into(), type_oid, type_modifier: -1 }
}

fn outbox_columns() -> Vec<RelationColumn> {
    vec![
        col("id", 20, true),
        col("aggregate_id", 2950, false),
        col("topic", 25, false),
        col("payload", 3802, false),
        col("attempts", 23, false),
        col("note", 25, false),
        col("mood", MOOD_OID, false),
    ]
}

#[test]
fn every_captured_message_decodes_with_the_expected_kind() {
    let session = session();
    let tags: String = session.iter().map(|c| char::from(decode(c).kind().tag())).collect();
    assert_eq!(tags, TAGS);
    for c in &session {
        assert_eq!(char::from(c.data[0]), char::from(decode(c).kind().tag()));
    }
}

#[test]
fn transactions_have_consistent_begin_and_commit() {
    let session = session();
    let mut open: Option<Begin> = None;
    let mut transactions = 0;
    for c in &session {
        match decode(c) {
            Message::Begin(b) => {
                assert!(open.is_none(), "nested Begin at {}", c.lsn);
                assert_eq!(b.xid, c.xid, "Begin xid matches the slot's xid column");
                open = Some(b);
            }
            Message::Commit(commit) => {
                let begin = open.take().expect("Commit without Begin");
                assert_eq!(commit.flags, 0);
                assert_eq!(commit.commit_lsn, begin.final_lsn);
                assert_eq!(commit.commit_ts, begin.commit_ts);
                assert!(commit.end_lsn > commit.commit_lsn);
                // The slot reports a Commit row at its end LSN, in PostgreSQL's text form.
                assert_eq!(commit.end_lsn.to_string(), c.lsn);
                assert_eq!(c.lsn.parse(), Ok(commit.end_lsn));
                // After 2020-01-01 (µs since 2000-01-01) and before 2100.
                assert!(commit.commit_ts > 631_152_000_000_000);
                assert!(commit.commit_ts < 3_155_760_000_000_000);
                transactions += 1;
            }
            _ => {}
        }
    }
    assert!(open.is_none());
    assert_eq!(transactions, 13);
    // Transactions commit in LSN order.
    let ends: Vec<Lsn> = session
        .iter()
        .filter_map(|c| match decode(c) {
            Message::Commit(commit) => Some(commit.end_lsn),
            _ => None,
        })
        .collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn first_transaction_is_decoded_field_by_field() {
    let s = session();
    assert_eq!(
        decode(&s[0]),
        Message::Begin(Begin {
            final_lsn: Lsn::new(0x0153_2198),
            commit_ts: 0x0003_03f9_cb44_591b,
            xid: 729
        })
    );
    assert_eq!(
        decode(&s[1]),
        Message::Type(TypeMessage {
            oid: MOOD_OID,
            namespace: "public".into(),
            name: "mood".into()
        })
    );
    assert_eq!(
        decode(&s[2]),
        Message::Relation(Relation {
            oid: OUTBOX_OID,
            namespace: "public".into(),
            name: "outbox".into(),
            replica_identity: b'd',
            columns: outbox_columns(),
        })
    );

    let Message::Insert(first) = decode(&s[3]) else { panic!("expected Insert") };
    assert_eq!(first.relation_oid, OUTBOX_OID);
    assert_eq!(first.new_tuple.column_count(), 7);
    assert_eq!(
        values(&first.new_tuple),
        [
            text("1"),
            text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            text("orders"),
            // jsonb's text output: normalised key order and spacing.
            text(r#"{"total": "9.99", "order_id": 42}"#),
            text("3"),
            text("héllo"),
            text("happy"),
        ]
    );

    let Message::Insert(second) = decode(&s[4]) else { panic!("expected Insert") };
    assert_eq!(
        values(&second.new_tuple),
        [
            text("2"),
            text("00000000-0000-0000-0000-000000000001"),
            text("users"),
            ColumnValue::Null,
            ColumnValue::Null,
            ColumnValue::Null,
            ColumnValue::Null,
        ]
    );

    assert_eq!(
        decode(&s[5]),
        Message::Message(LogicalMessage {
            transactional: true,
            lsn: Lsn::new(0x0153_2198),
            prefix: "outbox".into(),
            content: Bytes::from_static(br#"{"a":1}"#),
        })
    );
    assert_eq!(Lsn::new(0x0153_2198).to_string(), s[5].lsn);
    assert_eq!(
        decode(&s[6]),
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn::new(0x0153_2198),
            end_lsn: Lsn::new(0x0153_21c8),
            commit_ts: 0x0003_03f9_cb44_591b,
        })
    );
}

#[test]
fn non_transactional_message_arrives_outside_a_transaction() {
    let s = session();
    assert_eq!(s[7].xid, 0);
    assert_eq!(
        decode(&s[7]),
        Message::Message(LogicalMessage {
            transactional: false,
            lsn: s[7].lsn.parse().unwrap(),
            prefix: "outbox".into(),
            content: Bytes::from_static(b"non-tx"),
        })
    );
}

#[test]
fn column_values_are_zero_copy_slices_of_the_input() {
    let s = session();
    let input = &s[3].data;
    let Message::Insert(insert) = Message::decode(input).unwrap() else { panic!() };
    let range = input.as_ptr_range();
    for value in insert.new_tuple.columns() {
        let b = value.as_bytes().unwrap();
        assert!(range.contains(&b.as_ptr()), "value not inside the input buffer");
    }
    let Message::Message(m) = Message::decode(&s[5].data).unwrap() else { panic!() };
    assert!(s[5].data.as_ptr_range().contains(&m.content.as_ptr()));
}

#[test]
fn large_toasted_value_and_unchanged_toast() {
    let s = session();
    // The insert carries the full (detoasted) value: md5 of 1..=400, concatenated.
    let Message::Insert(insert) = decode(&s[9]) else { panic!("expected Insert") };
    let note = insert.new_tuple.get(5).unwrap();
    let note = note.as_bytes().unwrap();
    assert_eq!(note.len(), 400 * 32);
    assert!(note.iter().all(u8::is_ascii_hexdigit));
    assert_eq!(insert.new_tuple.get(1), Some(text("11111111-1111-1111-1111-111111111111")));

    // Updating another column leaves the TOASTed note out of the message.
    let Message::Update(update) = decode(&s[12]) else { panic!("expected Update") };
    assert_eq!(update.old_tuple, None);
    assert_eq!(
        values(&update.new_tuple),
        [
            text("3"),
            text("11111111-1111-1111-1111-111111111111"),
            text("big"),
            text("{}"),
            text("7"),
            ColumnValue::UnchangedToast,
            ColumnValue::Null,
        ]
    );
}

#[test]
fn updates_with_and_without_old_tuples() {
    let s = session();
    // Default replica identity, key unchanged: no old tuple.
    let Message::Update(u) = decode(&s[15]) else { panic!("expected Update") };
    assert_eq!(u.relation_oid, OUTBOX_OID);
    assert_eq!(u.old_tuple, None);
    assert_eq!(u.new_tuple.get(4), Some(text("4")));

    // Default replica identity, key changed: 'K' with only the key column set.
    let Message::Update(u) = decode(&s[18]) else { panic!("expected Update") };
    let Some(OldTuple::Key(old)) = &u.old_tuple else { panic!("expected old key") };
    let mut expected_old = vec![ColumnValue::Null; 7];
    expected_old[0] = text("2");
    assert_eq!(values(old), expected_old);
    assert_eq!(u.new_tuple.get(0), Some(text("10")));
    assert_eq!(u.new_tuple.get(2), Some(text("users")));

    // REPLICA IDENTITY FULL: 'O' with the whole old row.
    let Message::Relation(audit) = decode(&s[21]) else { panic!("expected Relation") };
    assert_eq!(audit.oid, AUDIT_OID);
    assert_eq!(audit.replica_identity, b'f');
    // With FULL identity every column is flagged as part of the key.
    assert_eq!(audit.columns, [col("k", 23, true), col("v", 25, true)]);
    let Message::Update(u) = decode(&s[25]) else { panic!("expected Update") };
    assert_eq!(u.relation_oid, AUDIT_OID);
    assert_eq!(
        u.old_tuple,
        Some(OldTuple::Full(TupleData::from_columns(&[text("1"), text("one")]).unwrap()))
    );
    assert_eq!(values(&u.new_tuple), [text("1"), text("uno")]);
}

#[test]
fn deletes_carry_key_or_full_old_tuple() {
    let s = session();
    let Message::Delete(d) = decode(&s[28]) else { panic!("expected Delete") };
    assert_eq!(d.relation_oid, AUDIT_OID);
    let OldTuple::Full(old) = &d.old_tuple else { panic!("expected full old row") };
    assert_eq!(values(old), [text("1"), text("uno")]);

    let Message::Delete(d) = decode(&s[31]) else { panic!("expected Delete") };
    assert_eq!(d.relation_oid, OUTBOX_OID);
    let OldTuple::Key(old) = &d.old_tuple else { panic!("expected old key") };
    assert_eq!(old.column_count(), 7);
    assert_eq!(old.get(0), Some(text("10")));
    assert!(old.columns().skip(1).all(|v| v == ColumnValue::Null));
}

#[test]
fn alter_table_mid_stream_resends_the_relation() {
    let s = session();
    let Message::Relation(r) = decode(&s[35]) else { panic!("expected Relation") };
    let mut expected = outbox_columns();
    expected.push(col("created_at", 1184, false));
    assert_eq!(r.columns, expected);

    let Message::Insert(i) = decode(&s[36]) else { panic!("expected Insert") };
    assert_eq!(i.new_tuple.column_count(), 8);
    assert_eq!(i.new_tuple.get(3), Some(text("[1, 2, 3]")));
    assert_eq!(i.new_tuple.get(7), Some(text("2024-01-02 03:04:05+00")));
}

#[test]
fn truncates_report_relations_and_options() {
    let s = session();
    assert_eq!(
        decode(&s[40]),
        Message::Truncate(Truncate { options: 0, relation_oids: vec![AUDIT_OID] })
    );
    assert_eq!(
        decode(&s[46]),
        Message::Truncate(Truncate {
            options: Truncate::CASCADE | Truncate::RESTART_IDENTITY,
            relation_oids: vec![OUTBOX_OID, AUDIT_OID],
        })
    );
}

#[test]
fn origin_message_names_the_replication_origin() {
    let s = session();
    assert_eq!(
        decode(&s[49]),
        Message::Origin(Origin { commit_lsn: Lsn::new(0xAB_CDEF), name: "upstream".into() })
    );
    let Message::Insert(i) = decode(&s[51]) else { panic!("expected Insert") };
    assert_eq!(values(&i.new_tuple), [text("2"), text("from-origin")]);
}

#[test]
fn relation_column_key_flag() {
    let Message::Relation(r) = decode_at(2) else { panic!("expected Relation") };
    let keys: Vec<&str> =
        r.columns.iter().filter(|c| c.is_key()).map(|c| c.name.as_str()).collect();
    assert_eq!(keys, ["id"]);
}

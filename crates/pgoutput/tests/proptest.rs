//! Property tests: arbitrary input never panics, and every valid message
//! (built by an encoder in `common`, written from the protocol docs)
//! decodes back to the value it was built from.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tailbox_pgoutput::{
    Begin, ColumnValue, Commit, Delete, Insert, LogicalMessage, Lsn, Message, OldTuple, Origin,
    Relation, RelationColumn, Truncate, TupleData, TypeMessage, Update,
};

/// Any WAL position.
fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn::new)
}

/// Names as PostgreSQL can send them: any UTF-8 without NUL.
fn name() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace('\0', ""))
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn column_value() -> impl Strategy<Value = ColumnValue> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::UnchangedToast),
        bytes(40).prop_map(ColumnValue::Text),
        bytes(40).prop_map(ColumnValue::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    vec(column_value(), 0..10).prop_map(|values| TupleData::from_columns(&values).unwrap())
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![tuple().prop_map(OldTuple::Key), tuple().prop_map(OldTuple::Full)]
}

fn relation_column() -> impl Strategy<Value = RelationColumn> {
    (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
            Message::Begin(Begin { final_lsn, commit_ts, xid })
        }),
        (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_ts)| {
                Message::Commit(Commit { flags, commit_lsn, end_lsn, commit_ts })
            }
        ),
        (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        (any::<u32>(), name(), name(), any::<u8>(), vec(relation_column(), 0..6)).prop_map(
            |(oid, namespace, name, replica_identity, columns)| {
                Message::Relation(Relation { oid, namespace, name, replica_identity, columns })
            }
        ),
        (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| {
            Message::Type(TypeMessage { oid, namespace, name })
        }),
        (any::<u32>(), tuple()).prop_map(|(relation_oid, new_tuple)| {
            Message::Insert(Insert { relation_oid, new_tuple })
        }),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple()).prop_map(
            |(relation_oid, old_tuple, new_tuple)| {
                Message::Update(Update { relation_oid, old_tuple, new_tuple })
            }
        ),
        (any::<u32>(), old_tuple()).prop_map(|(relation_oid, old_tuple)| {
            Message::Delete(Delete { relation_oid, old_tuple })
        }),
        (any::<u8>(), vec(any::<u32>(), 0..8)).prop_map(|(options, relation_oids)| {
            Message::Truncate(Truncate { options, relation_oids })
        }),
        (any::<bool>(), lsn(), name(), bytes(64)).prop_map(
            |(transactional, lsn, prefix, content)| {
                Message::Message(LogicalMessage { transactional, lsn, prefix, content })
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..256)) {
        let _ = common::decode_fully(&Bytes::from(data));
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_tag_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        body in vec(any::<u8>(), 0..256),
    ) {
        let mut data = vec![tag];
        data.extend(body);
        let _ = common::decode_fully(&Bytes::from(data));
    }

    #[test]
    fn corrupted_real_messages_never_panic(
        index in 0..53usize,
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = common::session()[index].data.to_vec();
        for (at, byte) in edits {
            let at = at.index(data.len());
            data[at] = byte;
        }
        let _ = common::decode_fully(&Bytes::from(data.clone()));
        data.truncate(cut.index(data.len() + 1));
        let _ = common::decode_fully(&Bytes::from(data));
    }

    #[test]
    fn corrupted_generated_messages_never_panic(
        message in message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut data = common::encode(&message).to_vec();
        let at = at.index(data.len());
        data[at] = byte;
        let _ = common::decode_fully(&Bytes::from(data));
    }

    #[test]
    fn valid_messages_round_trip(message in message()) {
        let encoded = common::encode(&message);
        let decoded = Message::decode(&encoded);
        prop_assert_eq!(decoded.as_ref(), Ok(&message));
        // The decoded value re-encodes to the same bytes.
        prop_assert_eq!(common::encode(&decoded.unwrap()), encoded);
    }

    #[test]
    fn tuple_columns_round_trip(
        relation_oid in any::<u32>(),
        values in vec(column_value(), 0..20),
    ) {
        let mut data = BytesMut::new();
        data.put_u8(b'I');
        data.put_u32(relation_oid);
        data.put_u8(b'N');
        common::encode_values(&mut data, &values);
        let Message::Insert(insert) = Message::decode(&data.freeze()).unwrap() else {
            panic!("expected Insert");
        };
        prop_assert_eq!(insert.relation_oid, relation_oid);
        prop_assert_eq!(insert.new_tuple.column_count(), values.len());
        prop_assert_eq!(insert.new_tuple.columns().collect::<Vec<_>>(), values.clone());
        prop_assert_eq!(insert.new_tuple, TupleData::from_columns(&values).unwrap());
    }

    #[test]
    fn lsn_text_round_trips(lsn in any::<u64>()) {
        let text = Lsn::new(lsn).to_string();
        prop_assert_eq!(text.parse::<Lsn>(), Ok(Lsn::new(lsn)));
        prop_assert_eq!(text.to_lowercase().parse::<Lsn>(), Ok(Lsn::new(lsn)));
        let (high, low) = text.split_once('/').unwrap();
        prop_assert_eq!(u64::from_str_radix(high, 16).unwrap(), lsn >> 32);
        prop_assert_eq!(u64::from_str_radix(low, 16).unwrap(), lsn & 0xFFFF_FFFF);
    }

    #[test]
    fn lsn_parsing_never_panics(s in "\\PC{0,24}") {
        let _ = s.parse::<Lsn>();
    }
}

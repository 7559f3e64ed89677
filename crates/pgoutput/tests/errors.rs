//! Every class of malformed input is rejected with the right error, and
//! never panics.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::session;
use tailbox_pgoutput::{DecodeError, Message, MessageKind};

fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    common::decode_fully(&Bytes::copy_from_slice(bytes))
}

/// Captured message at `index` with `edit` applied to a copy of its bytes.
fn edited(index: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = session()[index].data.to_vec();
    edit(&mut bytes);
    bytes
}

const INSERT: usize = 3; // I, outbox, first column text "1"
const RELATION: usize = 2;
const UPDATE_KEY: usize = 18;
const DELETE_FULL: usize = 28;
const TRUNCATE_TWO: usize = 46;
const LOGICAL_MESSAGE: usize = 5;
const ORIGIN: usize = 49;

#[test]
fn every_proper_prefix_of_every_fixture_is_rejected() {
    for (i, c) in session().iter().enumerate() {
        for len in 0..c.data.len() {
            let prefix = c.data.slice(..len);
            match Message::decode(&prefix) {
                Err(
                    DecodeError::Empty
                    | DecodeError::UnexpectedEnd { .. }
                    | DecodeError::MissingNul { .. },
                ) => {}
                other => panic!("fixture {i} cut to {len} bytes: {other:?}"),
            }
        }
    }
}

#[test]
fn truncation_reports_kind_needed_and_remaining() {
    let err = decode(&session()[INSERT].data[..2]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnexpectedEnd { message: MessageKind::Insert, needed: 4, remaining: 1 }
    );
    assert_eq!(
        err.to_string(),
        "pgoutput Insert message truncated: needed 4 more bytes, 1 remaining"
    );

    let begin = &session()[0].data;
    assert_eq!(
        decode(&begin[..begin.len() - 1]),
        Err(DecodeError::UnexpectedEnd { message: MessageKind::Begin, needed: 4, remaining: 3 })
    );
    assert_eq!(decode(b""), Err(DecodeError::Empty));
}

#[test]
fn trailing_bytes_after_any_fixture_are_rejected() {
    for c in session() {
        let kind = Message::decode(&c.data).unwrap().kind();
        for extra in [&b"\0"[..], b"xyz"] {
            let mut bytes = c.data.to_vec();
            bytes.extend_from_slice(extra);
            assert_eq!(
                decode(&bytes),
                Err(DecodeError::TrailingBytes { message: kind, count: extra.len() })
            );
        }
    }
    let err = decode(b"B\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0!").unwrap_err();
    assert_eq!(err.to_string(), "pgoutput Begin message has 1 trailing bytes after its last field");
}

#[test]
fn unknown_tags_are_rejected() {
    for tag in 0..=u8::MAX {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&[0; 64]);
        let result = decode(&bytes);
        if MessageKind::from_tag(tag).is_some() {
            assert!(!matches!(result, Err(DecodeError::UnknownTag(_))));
        } else {
            assert_eq!(result, Err(DecodeError::UnknownTag(tag)));
        }
    }
    // Protocol v2+ streaming messages and replication-level tags are not v1 messages.
    for tag in *b"SEcAwkKPbsrp" {
        assert_eq!(decode(&[tag]), Err(DecodeError::UnknownTag(tag)));
    }
    assert_eq!(decode(b"S").unwrap_err().to_string(), "unknown pgoutput message tag 0x53");
}

#[test]
fn bad_tuple_kind_is_rejected() {
    // Insert header is tag(1) + oid(4) + 'N'(1) + ncols(2): first kind byte at 8.
    let bytes = edited(INSERT, |b| {
        assert_eq!(b[8], b't');
        b[8] = b'x';
    });
    assert_eq!(decode(&bytes), Err(DecodeError::UnknownTupleKind(b'x')));
    assert_eq!(
        DecodeError::UnknownTupleKind(b'x').to_string(),
        "unknown pgoutput tuple column kind 0x78: expected 'n', 'u', 't' or 'b'"
    );
}

#[test]
fn bad_tuple_markers_are_rejected() {
    let insert = edited(INSERT, |b| b[5] = b'K');
    assert_eq!(
        decode(&insert),
        Err(DecodeError::UnexpectedByte {
            message: MessageKind::Insert,
            expected: "'N'",
            found: b'K'
        })
    );

    let update = edited(UPDATE_KEY, |b| b[5] = b'X');
    assert_eq!(
        decode(&update),
        Err(DecodeError::UnexpectedByte {
            message: MessageKind::Update,
            expected: "'K', 'O' or 'N'",
            found: b'X',
        })
    );

    // After tag, oid, 'K' and the key tuple (ncols 2 + "t", len 4, "2" + 6 × 'n'),
    // the 'N' marker is at offset 20.
    let update = edited(UPDATE_KEY, |b| {
        assert_eq!(b[20], b'N');
        b[20] = b'O';
    });
    assert_eq!(
        decode(&update),
        Err(DecodeError::UnexpectedByte {
            message: MessageKind::Update,
            expected: "'N'",
            found: b'O'
        })
    );

    let delete = edited(DELETE_FULL, |b| b[5] = b'N');
    let err = decode(&delete).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnexpectedByte {
            message: MessageKind::Delete,
            expected: "'K' or 'O'",
            found: b'N'
        }
    );
    assert_eq!(
        err.to_string(),
        "pgoutput Delete message has unexpected byte 0x4e where 'K' or 'O' was expected"
    );
}

#[test]
fn negative_lengths_are_rejected() {
    // First column's Int32 length is at 9..13.
    let insert = edited(INSERT, |b| b[9..13].copy_from_slice(&(-1i32).to_be_bytes()));
    assert_eq!(decode(&insert), Err(DecodeError::NegativeLength(-1)));

    let mut m = BytesMut::new();
    m.put_u8(b'M');
    m.put_u8(1);
    m.put_u64(7);
    m.put_slice(b"p\0");
    m.put_i32(i32::MIN);
    assert_eq!(decode(&m), Err(DecodeError::NegativeLength(i32::MIN)));
    assert_eq!(
        DecodeError::NegativeLength(-1).to_string(),
        "pgoutput length field is negative: -1"
    );
}

#[test]
fn negative_counts_are_rejected() {
    let insert = edited(INSERT, |b| b[6..8].copy_from_slice(&(-3i16).to_be_bytes()));
    let err = decode(&insert).unwrap_err();
    assert_eq!(err, DecodeError::NegativeCount { field: "tuple column count", count: -3 });
    assert_eq!(err.to_string(), "pgoutput tuple column count is negative: -3");

    let truncate = edited(TRUNCATE_TWO, |b| b[1..5].copy_from_slice(&(-2i32).to_be_bytes()));
    assert_eq!(
        decode(&truncate),
        Err(DecodeError::NegativeCount { field: "truncated relation count", count: -2 })
    );

    // Relation: tag, oid, "public\0", "outbox\0", replica identity, then Int16 ncols.
    let ncols_at = 1 + 4 + 7 + 7 + 1;
    let relation = edited(RELATION, |b| {
        assert_eq!(&b[ncols_at..ncols_at + 2], &[0, 7]);
        b[ncols_at..ncols_at + 2].copy_from_slice(&(-1i16).to_be_bytes());
    });
    assert_eq!(
        decode(&relation),
        Err(DecodeError::NegativeCount { field: "relation column count", count: -1 })
    );
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating_for_them() {
    let mut t = BytesMut::new();
    t.put_u8(b'T');
    t.put_i32(i32::MAX);
    t.put_u8(0);
    t.put_u32(1);
    assert_eq!(
        decode(&t),
        Err(DecodeError::UnexpectedEnd {
            message: MessageKind::Truncate,
            needed: usize::try_from(i32::MAX).unwrap() * 4,
            remaining: 4,
        })
    );

    let mut r = BytesMut::new();
    r.put_u8(b'R');
    r.put_u32(1);
    r.put_slice(b"s\0t\0d");
    r.put_i16(i16::MAX);
    assert!(matches!(decode(&r), Err(DecodeError::UnexpectedEnd { .. })));

    let insert = edited(INSERT, |b| b[9..13].copy_from_slice(&i32::MAX.to_be_bytes()));
    assert!(matches!(
        decode(&insert),
        Err(DecodeError::UnexpectedEnd { message: MessageKind::Insert, needed: 0x7fff_ffff, .. })
    ));
}

#[test]
fn invalid_utf8_in_names_is_rejected() {
    // Relation name "outbox" starts after tag, oid and "public\0".
    let relation = edited(RELATION, |b| b[12] = 0xff);
    let err = decode(&relation).unwrap_err();
    assert_eq!(err, DecodeError::InvalidUtf8 { field: "relation name" });
    assert_eq!(err.to_string(), "pgoutput relation name is not valid UTF-8");

    let relation = edited(RELATION, |b| b[5] = 0xc3);
    assert_eq!(decode(&relation), Err(DecodeError::InvalidUtf8 { field: "relation namespace" }));

    let origin = edited(ORIGIN, |b| b[9] = 0x80);
    assert_eq!(decode(&origin), Err(DecodeError::InvalidUtf8 { field: "origin name" }));

    let message = edited(LOGICAL_MESSAGE, |b| b[10] = 0xfe);
    assert_eq!(decode(&message), Err(DecodeError::InvalidUtf8 { field: "message prefix" }));
}

#[test]
fn missing_nul_terminators_are_rejected() {
    let origin = edited(ORIGIN, |b| {
        assert_eq!(b.pop(), Some(0));
    });
    let err = decode(&origin).unwrap_err();
    assert_eq!(err, DecodeError::MissingNul { field: "origin name" });
    assert_eq!(err.to_string(), "pgoutput origin name is missing its NUL terminator");

    let type_message = edited(1, |b| {
        assert_eq!(b.pop(), Some(0));
    });
    assert_eq!(decode(&type_message), Err(DecodeError::MissingNul { field: "type name" }));
}

#[test]
fn message_kinds_round_trip_their_tags() {
    for tag in *b"BCORYIUDTM" {
        let kind = MessageKind::from_tag(tag).unwrap();
        assert_eq!(kind.tag(), tag);
    }
    assert_eq!(MessageKind::Message.to_string(), "logical decoding message (M)");
}

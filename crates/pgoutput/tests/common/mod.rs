//! Helpers shared by the integration tests: the captured fixture stream and an
//! encoder written independently of the library's decoder.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};
use tailbox_pgoutput::{ColumnValue, Message, OldTuple, TupleData};

/// One captured message: the row's `lsn` text, `xid`, and the pgoutput bytes.
pub struct Captured {
    pub lsn: &'static str,
    pub xid: u32,
    pub data: Bytes,
}

/// Messages from `fixtures/session.hex`, in stream order. See the header of
/// that file (and `fixtures/capture.sh`) for how they were captured.
pub fn session() -> Vec<Captured> {
    include_str!("../fixtures/session.hex")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut parts = line.split_whitespace();
            let lsn = parts.next().unwrap();
            let xid = parts.next().unwrap().parse().unwrap();
            let data = Bytes::from(hex(parts.next().unwrap()));
            assert_eq!(parts.next(), None, "unexpected extra field in fixture line");
            Captured { lsn, xid, data }
        })
        .collect()
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

pub fn encode_tuple(out: &mut BytesMut, tuple: &TupleData) {
    assert_eq!(tuple.columns().len(), tuple.column_count());
    encode_values(out, &tuple.columns().collect::<Vec<_>>());
}

/// Encodes a TupleData (Int16 ncols, then kind + value per column).
pub fn encode_values(out: &mut BytesMut, values: &[ColumnValue]) {
    out.put_i16(i16::try_from(values.len()).unwrap());
    for value in values {
        match value {
            ColumnValue::Null => out.put_u8(b'n'),
            ColumnValue::UnchangedToast => out.put_u8(b'u'),
            ColumnValue::Text(b) => {
                out.put_u8(b't');
                out.put_i32(i32::try_from(b.len()).unwrap());
                out.put_slice(b);
            }
            ColumnValue::Binary(b) => {
                out.put_u8(b'b');
                out.put_i32(i32::try_from(b.len()).unwrap());
                out.put_slice(b);
            }
        }
    }
}

fn encode_old(out: &mut BytesMut, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => {
            out.put_u8(b'K');
            encode_tuple(out, t);
        }
        OldTuple::Full(t) => {
            out.put_u8(b'O');
            encode_tuple(out, t);
        }
    }
}

/// Encodes a message following the protocol documentation, not the decoder.
pub fn encode(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    match message {
        Message::Begin(m) => {
            out.put_u8(b'B');
            out.put_u64(m.final_lsn.as_u64());
            out.put_i64(m.commit_ts);
            out.put_u32(m.xid);
        }
        Message::Commit(m) => {
            out.put_u8(b'C');
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.as_u64());
            out.put_u64(m.end_lsn.as_u64());
            out.put_i64(m.commit_ts);
        }
        Message::Origin(m) => {
            out.put_u8(b'O');
            out.put_u64(m.commit_lsn.as_u64());
            put_cstr(&mut out, &m.name);
        }
        Message::Relation(m) => {
            out.put_u8(b'R');
            out.put_u32(m.oid);
            put_cstr(&mut out, &m.namespace);
            put_cstr(&mut out, &m.name);
            out.put_u8(m.replica_identity);
            out.put_i16(i16::try_from(m.columns.len()).unwrap());
            for c in &m.columns {
                out.put_u8(c.flags);
                put_cstr(&mut out, &c.name);
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        Message::Type(m) => {
            out.put_u8(b'Y');
            out.put_u32(m.oid);
            put_cstr(&mut out, &m.namespace);
            put_cstr(&mut out, &m.name);
        }
        Message::Insert(m) => {
            out.put_u8(b'I');
            out.put_u32(m.relation_oid);
            out.put_u8(b'N');
            encode_tuple(&mut out, &m.new_tuple);
        }
        Message::Update(m) => {
            out.put_u8(b'U');
            out.put_u32(m.relation_oid);
            if let Some(old) = &m.old_tuple {
                encode_old(&mut out, old);
            }
            out.put_u8(b'N');
            encode_tuple(&mut out, &m.new_tuple);
        }
        Message::Delete(m) => {
            out.put_u8(b'D');
            out.put_u32(m.relation_oid);
            encode_old(&mut out, &m.old_tuple);
        }
        Message::Truncate(m) => {
            out.put_u8(b'T');
            out.put_i32(i32::try_from(m.relation_oids.len()).unwrap());
            out.put_u8(m.options);
            for oid in &m.relation_oids {
                out.put_u32(*oid);
            }
        }
        Message::Message(m) => {
            out.put_u8(b'M');
            out.put_u8(u8::from(m.transactional));
            out.put_u64(m.lsn.as_u64());
            put_cstr(&mut out, &m.prefix);
            out.put_i32(i32::try_from(m.content.len()).unwrap());
            out.put_slice(&m.content);
        }
    }
    out.freeze()
}

/// Decodes `data`, then reads every column of every tuple so that the
/// iterator's code paths run too.
pub fn decode_fully(data: &Bytes) -> Result<Message, tailbox_pgoutput::DecodeError> {
    let message = Message::decode(data)?;
    let tuples: Vec<&TupleData> = match &message {
        Message::Insert(m) => vec![&m.new_tuple],
        Message::Update(m) => {
            m.old_tuple.iter().map(OldTuple::tuple).chain([&m.new_tuple]).collect()
        }
        Message::Delete(m) => vec![m.old_tuple.tuple()],
        _ => vec![],
    };
    for t in tuples {
        assert_eq!(t.columns().count(), t.column_count());
    }
    Ok(message)
}

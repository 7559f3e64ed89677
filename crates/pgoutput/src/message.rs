//! pgoutput protocol v1 message types and their decoding, one branch per tag.
//!
//! All integers are big-endian; `String` is NUL-terminated UTF-8. Timestamps
//! are microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).

use std::fmt;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::lsn::Lsn;
use crate::reader::Reader;
use crate::tuple::TupleData;

/// The kind of a pgoutput message, i.e. its one-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `B`
    Begin,
    /// `C`
    Commit,
    /// `O`
    Origin,
    /// `R`
    Relation,
    /// `Y`
    Type,
    /// `I`
    Insert,
    /// `U`
    Update,
    /// `D`
    Delete,
    /// `T`
    Truncate,
    /// `M` (logical decoding message, `pg_logical_emit_message`)
    Message,
}

impl MessageKind {
    /// The kind for a wire tag, or `None` if it is not a protocol v1 tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'B' => Self::Begin,
            b'C' => Self::Commit,
            b'O' => Self::Origin,
            b'R' => Self::Relation,
            b'Y' => Self::Type,
            b'I' => Self::Insert,
            b'U' => Self::Update,
            b'D' => Self::Delete,
            b'T' => Self::Truncate,
            b'M' => Self::Message,
            _ => return None,
        })
    }

    /// The wire tag byte.
    pub fn tag(self) -> u8 {
        match self {
            Self::Begin => b'B',
            Self::Commit => b'C',
            Self::Origin => b'O',
            Self::Relation => b'R',
            Self::Type => b'Y',
            Self::Insert => b'I',
            Self::Update => b'U',
            Self::Delete => b'D',
            Self::Truncate => b'T',
            Self::Message => b'M',
        }
    }
}

/// Displays as a noun phrase for error messages, e.g. "Insert message".
impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Begin => "Begin message",
            Self::Commit => "Commit message",
            Self::Origin => "Origin message",
            Self::Relation => "Relation message",
            Self::Type => "Type message",
            Self::Insert => "Insert message",
            Self::Update => "Update message",
            Self::Delete => "Delete message",
            Self::Truncate => "Truncate message",
            Self::Message => "logical decoding message (M)",
        })
    }
}

/// One decoded pgoutput protocol v1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Start of a transaction (`B`).
    Begin(Begin),
    /// End of a transaction (`C`).
    Commit(Commit),
    /// The transaction came from another node via replication origin (`O`).
    Origin(Origin),
    /// Schema of a relation, sent before its first change and after DDL (`R`).
    Relation(Relation),
    /// A non-built-in data type used by a relation's columns (`Y`).
    Type(TypeMessage),
    /// A row was inserted (`I`).
    Insert(Insert),
    /// A row was updated (`U`).
    Update(Update),
    /// A row was deleted (`D`).
    Delete(Delete),
    /// One or more tables were truncated (`T`).
    Truncate(Truncate),
    /// A `pg_logical_emit_message` call (`M`).
    Message(LogicalMessage),
}

/// `B`: start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit timestamp, µs since 2000-01-01 UTC.
    pub commit_ts: i64,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: end of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags; currently always 0.
    pub flags: u8,
    /// LSN of the commit record (equals the Begin's `final_lsn`).
    pub commit_lsn: Lsn,
    /// LSN just past the commit record; the position to confirm once the
    /// transaction is durably handled.
    pub end_lsn: Lsn,
    /// Commit timestamp, µs since 2000-01-01 UTC.
    pub commit_ts: i64,
}

/// `O`: the transaction originated on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// LSN of the commit on the origin server.
    pub commit_lsn: Lsn,
    /// Replication origin name.
    pub name: String,
}

/// `R`: a relation's schema. Later row messages refer to it by `oid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation OID.
    pub oid: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns in the order they appear in every TupleData for this relation.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags; bit 1 ([`RelationColumn::FLAG_KEY`]) marks a replica identity key column.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// OID of the column's data type.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`), -1 if none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// The `flags` bit set on columns that are part of the replica identity key.
    pub const FLAG_KEY: u8 = 1;

    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// `Y`: a data type that is not built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Type OID.
    pub oid: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// `I`: a new row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// OID of the [`Relation`] the row belongs to.
    pub relation_oid: u32,
    /// The inserted row.
    pub new_tuple: TupleData,
}

/// `U`: a changed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// OID of the [`Relation`] the row belongs to.
    pub relation_oid: u32,
    /// The old key or row, if the replica identity requires sending it.
    pub old_tuple: Option<OldTuple>,
    /// The row after the update.
    pub new_tuple: TupleData,
}

/// The old-row image of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns (others are null).
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }
}

/// `D`: a removed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// OID of the [`Relation`] the row belonged to.
    pub relation_oid: u32,
    /// The deleted row's key or full image.
    pub old_tuple: OldTuple,
}

/// `T`: tables were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Bit 1 [`Truncate::CASCADE`], bit 2 [`Truncate::RESTART_IDENTITY`].
    pub options: u8,
    /// OIDs of the truncated relations.
    pub relation_oids: Vec<u32>,
}

impl Truncate {
    /// `options` bit for `TRUNCATE ... CASCADE`.
    pub const CASCADE: u8 = 1;
    /// `options` bit for `TRUNCATE ... RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 2;
}

/// `M`: a message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Whether the message is part of a transaction (flags bit 1). Non-transactional
    /// messages arrive outside any Begin/Commit.
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: Lsn,
    /// Prefix given by the caller.
    pub prefix: String,
    /// Content; a zero-copy slice of the input.
    pub content: Bytes,
}

/// Tuple marker bytes inside Insert/Update/Delete.
const NEW_TUPLE: u8 = b'N';
const KEY_TUPLE: u8 = b'K';
const OLD_TUPLE: u8 = b'O';

/// Bytes per Relation column with an empty name: Int8 + NUL + Int32 + Int32.
const MIN_RELATION_COLUMN_LEN: usize = 10;

impl Message {
    /// Decodes one pgoutput message: the payload of an XLogData (`w`)
    /// replication message, starting with the tag byte.
    ///
    /// Tuple data and logical message content are zero-copy slices of `buf`.
    /// The whole buffer must be consumed; extra bytes are an error.
    pub fn decode(buf: &Bytes) -> Result<Message, DecodeError> {
        let &tag = buf.first().ok_or(DecodeError::Empty)?;
        let kind = MessageKind::from_tag(tag).ok_or(DecodeError::UnknownTag(tag))?;
        let mut r = Reader::new(buf, 1, kind);
        let message = match kind {
            // Int64 final_lsn, Int64 commit_ts, Int32 xid
            MessageKind::Begin => {
                Message::Begin(Begin { final_lsn: r.lsn()?, commit_ts: r.i64()?, xid: r.u32()? })
            }
            // Int8 flags, Int64 commit_lsn, Int64 end_lsn, Int64 commit_ts
            MessageKind::Commit => Message::Commit(Commit {
                flags: r.u8()?,
                commit_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                commit_ts: r.i64()?,
            }),
            // Int64 commit_lsn, String name
            MessageKind::Origin => Message::Origin(Origin {
                commit_lsn: r.lsn()?,
                name: r.cstr("origin name")?.to_owned(),
            }),
            // Int32 oid, String namespace, String relname, Int8 replica_identity,
            // Int16 ncols, ncols × (Int8 flags, String name, Int32 type_oid, Int32 typmod)
            MessageKind::Relation => Message::Relation(decode_relation(&mut r)?),
            // Int32 oid, String namespace, String name
            MessageKind::Type => Message::Type(TypeMessage {
                oid: r.u32()?,
                namespace: r.cstr("type namespace")?.to_owned(),
                name: r.cstr("type name")?.to_owned(),
            }),
            // Int32 relation_oid, Byte1 'N', TupleData
            MessageKind::Insert => {
                let relation_oid = r.u32()?;
                expect_byte(&mut r, NEW_TUPLE, "'N'")?;
                Message::Insert(Insert { relation_oid, new_tuple: TupleData::decode(&mut r)? })
            }
            // Int32 relation_oid, [Byte1 'K' | 'O', TupleData], Byte1 'N', TupleData
            MessageKind::Update => {
                let relation_oid = r.u32()?;
                let old_tuple = match r.u8()? {
                    NEW_TUPLE => None,
                    KEY_TUPLE => Some(OldTuple::Key(TupleData::decode(&mut r)?)),
                    OLD_TUPLE => Some(OldTuple::Full(TupleData::decode(&mut r)?)),
                    found => {
                        return Err(DecodeError::UnexpectedByte {
                            message: kind,
                            expected: "'K', 'O' or 'N'",
                            found,
                        });
                    }
                };
                if old_tuple.is_some() {
                    expect_byte(&mut r, NEW_TUPLE, "'N'")?;
                }
                Message::Update(Update {
                    relation_oid,
                    old_tuple,
                    new_tuple: TupleData::decode(&mut r)?,
                })
            }
            // Int32 relation_oid, Byte1 'K' | 'O', TupleData
            MessageKind::Delete => {
                let relation_oid = r.u32()?;
                let old_tuple = match r.u8()? {
                    KEY_TUPLE => OldTuple::Key(TupleData::decode(&mut r)?),
                    OLD_TUPLE => OldTuple::Full(TupleData::decode(&mut r)?),
                    found => {
                        return Err(DecodeError::UnexpectedByte {
                            message: kind,
                            expected: "'K' or 'O'",
                            found,
                        });
                    }
                };
                Message::Delete(Delete { relation_oid, old_tuple })
            }
            // Int32 nrels, Int8 options, nrels × Int32 relation_oid
            MessageKind::Truncate => Message::Truncate(decode_truncate(&mut r)?),
            // Int8 flags, Int64 lsn, String prefix, Int32 content_len, Byte[content_len]
            MessageKind::Message => {
                let flags = r.u8()?;
                let lsn = r.lsn()?;
                let prefix = r.cstr("message prefix")?.to_owned();
                let len = r.length()?;
                Message::Message(LogicalMessage {
                    transactional: flags & 1 != 0,
                    lsn,
                    prefix,
                    content: r.bytes(len)?,
                })
            }
        };
        r.finish()?;
        Ok(message)
    }

    /// The kind (tag) of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Begin(_) => MessageKind::Begin,
            Message::Commit(_) => MessageKind::Commit,
            Message::Origin(_) => MessageKind::Origin,
            Message::Relation(_) => MessageKind::Relation,
            Message::Type(_) => MessageKind::Type,
            Message::Insert(_) => MessageKind::Insert,
            Message::Update(_) => MessageKind::Update,
            Message::Delete(_) => MessageKind::Delete,
            Message::Truncate(_) => MessageKind::Truncate,
            Message::Message(_) => MessageKind::Message,
        }
    }
}

/// Consumes one byte that must equal `want`.
fn expect_byte(r: &mut Reader<'_>, want: u8, expected: &'static str) -> Result<(), DecodeError> {
    match r.u8()? {
        found if found == want => Ok(()),
        found => Err(DecodeError::UnexpectedByte { message: r.kind(), expected, found }),
    }
}

fn decode_relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32()?;
    let namespace = r.cstr("relation namespace")?.to_owned();
    let name = r.cstr("relation name")?.to_owned();
    let replica_identity = r.u8()?;
    let count = r.i16()?;
    let count = usize::try_from(count).map_err(|_| DecodeError::NegativeCount {
        field: "relation column count",
        count: count.into(),
    })?;
    // Bound the allocation by what the remaining bytes could possibly hold.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / MIN_RELATION_COLUMN_LEN));
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: r.u8()?,
            name: r.cstr("column name")?.to_owned(),
            type_oid: r.u32()?,
            type_modifier: r.i32()?,
        });
    }
    Ok(Relation { oid, namespace, name, replica_identity, columns })
}

fn decode_truncate(r: &mut Reader<'_>) -> Result<Truncate, DecodeError> {
    let count = r.i32()?;
    let count = usize::try_from(count)
        .map_err(|_| DecodeError::NegativeCount { field: "truncated relation count", count })?;
    let options = r.u8()?;
    // Check the whole OID array is present before allocating for it.
    let needed = count.saturating_mul(4);
    if needed > r.remaining() {
        return Err(DecodeError::UnexpectedEnd {
            message: r.kind(),
            needed,
            remaining: r.remaining(),
        });
    }
    let mut relation_oids = Vec::with_capacity(count);
    for _ in 0..count {
        relation_oids.push(r.u32()?);
    }
    Ok(Truncate { options, relation_oids })
}

//! `TupleData`: a row image, validated once and then read without copying.
//!
//! Wire layout:
//!
//! ```text
//! Int16 ncols
//! ncols × ( Byte1 'n'                       -- NULL
//!         | Byte1 'u'                       -- unchanged TOASTed value (not sent)
//!         | Byte1 't' Int32 len Byte[len]   -- text representation
//!         | Byte1 'b' Int32 len Byte[len] ) -- binary representation
//! ```

use std::fmt;
use std::iter::FusedIterator;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::reader::Reader;

const KIND_NULL: u8 = b'n';
const KIND_UNCHANGED_TOAST: u8 = b'u';
const KIND_TEXT: u8 = b't';
const KIND_BINARY: u8 = b'b';

/// One column of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnValue {
    /// SQL `NULL` (`'n'`).
    Null,
    /// A TOASTed value that did not change, so the server did not send it (`'u'`).
    UnchangedToast,
    /// The value in PostgreSQL's text output format (`'t'`); a zero-copy slice
    /// of the message. Not guaranteed to be UTF-8 (it is in the server encoding).
    Text(Bytes),
    /// The value in the type's binary send format (`'b'`); a zero-copy slice
    /// of the message. Only sent when the subscriber asked for binary mode.
    Binary(Bytes),
}

impl ColumnValue {
    /// The value's bytes for [`Text`](Self::Text) and [`Binary`](Self::Binary),
    /// `None` for [`Null`](Self::Null) and [`UnchangedToast`](Self::UnchangedToast).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Text(b) | Self::Binary(b) => Some(b),
            Self::Null | Self::UnchangedToast => None,
        }
    }
}

/// A row image from an Insert, Update or Delete message.
///
/// Validated when the message is decoded (walked once, without allocating);
/// it holds the raw column bytes as a zero-copy [`Bytes`] slice of the
/// message. Iterate the values with [`columns`](Self::columns).
///
/// Two `TupleData` are equal when they encode the same column values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TupleData {
    /// The encoded columns (everything after the Int16 column count).
    /// Invariant: exactly `column_count` well-formed columns, nothing else.
    raw: Bytes,
    column_count: u16,
}

impl TupleData {
    /// Reads and validates a TupleData at the reader's position.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.i16()?;
        let column_count = u16::try_from(count).map_err(|_| DecodeError::NegativeCount {
            field: "tuple column count",
            count: count.into(),
        })?;
        let start = r.position();
        for _ in 0..column_count {
            match r.u8()? {
                KIND_NULL | KIND_UNCHANGED_TOAST => {}
                KIND_TEXT | KIND_BINARY => {
                    let len = r.length()?;
                    r.skip(len)?;
                }
                other => return Err(DecodeError::UnknownTupleKind(other)),
            }
        }
        Ok(Self { raw: r.slice_from(start), column_count })
    }

    /// Builds a tuple from column values, encoding them as pgoutput would.
    ///
    /// Meant for tests and fakes of the replication stream. Returns `None` if
    /// there are more than `i16::MAX` columns or a value is longer than
    /// `i32::MAX` bytes, neither of which the wire format can express.
    pub fn from_columns(columns: &[ColumnValue]) -> Option<Self> {
        let count = i16::try_from(columns.len()).ok()?;
        let mut raw = BytesMut::new();
        for column in columns {
            match column {
                ColumnValue::Null => raw.put_u8(KIND_NULL),
                ColumnValue::UnchangedToast => raw.put_u8(KIND_UNCHANGED_TOAST),
                ColumnValue::Text(value) | ColumnValue::Binary(value) => {
                    let kind = if matches!(column, ColumnValue::Text(_)) {
                        KIND_TEXT
                    } else {
                        KIND_BINARY
                    };
                    raw.put_u8(kind);
                    raw.put_i32(i32::try_from(value.len()).ok()?);
                    raw.put_slice(value);
                }
            }
        }
        Some(Self { raw: raw.freeze(), column_count: count.unsigned_abs() })
    }

    /// Number of columns in the row image (the wire `ncols`).
    pub fn column_count(&self) -> usize {
        usize::from(self.column_count)
    }

    /// Iterates the column values in order. Text and binary values are
    /// zero-copy slices of the decoded message.
    pub fn columns(&self) -> TupleColumns<'_> {
        TupleColumns { spans: self.spans() }
    }

    /// Iterates where each column's value lies in [`raw`](Self::raw), without taking a
    /// handle on the bytes.
    pub fn spans(&self) -> ColumnSpans<'_> {
        ColumnSpans { raw: &self.raw, pos: 0, remaining: self.column_count }
    }

    /// The encoded columns, which [`spans`](Self::spans) index into.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The value of column `index` (0-based), or `None` if out of range.
    /// This walks the preceding columns, so it is O(index).
    pub fn get(&self, index: usize) -> Option<ColumnValue> {
        self.columns().nth(index)
    }
}

impl fmt::Debug for TupleData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.columns()).finish()
    }
}

/// Iterator over the [`ColumnValue`]s of a [`TupleData`].
///
/// Infallible because the tuple was validated at decode time; should the
/// data ever be inconsistent it stops early rather than panicking.
#[derive(Debug, Clone)]
pub struct TupleColumns<'a> {
    spans: ColumnSpans<'a>,
}

impl TupleColumns<'_> {
    fn read_column(&mut self) -> Option<ColumnValue> {
        let (kind, span) = self.spans.read_span()?;
        Some(match (kind, span) {
            (KIND_TEXT, Some(span)) => ColumnValue::Text(self.spans.raw.slice(span)),
            (KIND_BINARY, Some(span)) => ColumnValue::Binary(self.spans.raw.slice(span)),
            (KIND_UNCHANGED_TOAST, _) => ColumnValue::UnchangedToast,
            _ => ColumnValue::Null,
        })
    }
}

/// Iterator over where each column's value lies in [`TupleData::raw`]: `Some(range)`
/// for text and binary values, `None` for NULL and unchanged TOASTed values.
///
/// For readers that pick a few columns out of a row: a range costs nothing, while each
/// [`ColumnValue`] holds a [`Bytes`] handle (a reference count taken and dropped).
#[derive(Debug, Clone)]
pub struct ColumnSpans<'a> {
    raw: &'a Bytes,
    pos: usize,
    remaining: u16,
}

impl ColumnSpans<'_> {
    /// The next column's kind byte and, for a value, its range.
    fn read_span(&mut self) -> Option<(u8, Option<Range<usize>>)> {
        if self.remaining == 0 {
            return None;
        }
        let Some(kind) = self.raw.get(self.pos).copied() else {
            // Unreachable for a validated tuple; end cleanly instead of panicking.
            self.remaining = 0;
            return None;
        };
        let span = match kind {
            KIND_NULL | KIND_UNCHANGED_TOAST => {
                self.pos += 1;
                None
            }
            KIND_TEXT | KIND_BINARY => {
                let Some(span) = self.value_span() else {
                    self.remaining = 0;
                    return None;
                };
                self.pos = span.end;
                Some(span)
            }
            _ => {
                self.remaining = 0;
                return None;
            }
        };
        self.remaining -= 1;
        Some((kind, span))
    }

    /// The range of the value whose kind byte is at `pos`, if it lies within `raw`.
    fn value_span(&self) -> Option<Range<usize>> {
        let len_at = self.pos.checked_add(1)?;
        let len_bytes: [u8; 4] = self.raw.get(len_at..len_at.checked_add(4)?)?.try_into().ok()?;
        let len = usize::try_from(i32::from_be_bytes(len_bytes)).ok()?;
        let start = len_at + 4;
        let end = start.checked_add(len)?;
        (end <= self.raw.len()).then_some(start..end)
    }
}

impl Iterator for ColumnSpans<'_> {
    type Item = Option<Range<usize>>;

    fn next(&mut self) -> Option<Option<Range<usize>>> {
        self.read_span().map(|(_, span)| span)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.remaining);
        (n, Some(n))
    }
}

impl Iterator for TupleColumns<'_> {
    type Item = ColumnValue;

    fn next(&mut self) -> Option<ColumnValue> {
        self.read_column()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for TupleColumns<'_> {}
impl FusedIterator for TupleColumns<'_> {}
impl ExactSizeIterator for ColumnSpans<'_> {}
impl FusedIterator for ColumnSpans<'_> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::message::MessageKind;

    fn decode(bytes: &'static [u8]) -> Result<TupleData, DecodeError> {
        let buf = Bytes::from_static(bytes);
        let mut r = Reader::new(&buf, 0, MessageKind::Insert);
        let tuple = TupleData::decode(&mut r)?;
        r.finish()?;
        Ok(tuple)
    }

    #[test]
    fn decodes_every_column_kind() {
        let t = decode(b"\x00\x04nut\x00\x00\x00\x02hib\x00\x00\x00\x01\x07").unwrap();
        assert_eq!(t.column_count(), 4);
        assert_eq!(
            t.columns().collect::<Vec<_>>(),
            [
                ColumnValue::Null,
                ColumnValue::UnchangedToast,
                ColumnValue::Text(Bytes::from_static(b"hi")),
                ColumnValue::Binary(Bytes::from_static(b"\x07")),
            ]
        );
        assert_eq!(t.columns().len(), 4);
        assert_eq!(t.get(2), Some(ColumnValue::Text(Bytes::from_static(b"hi"))));
        let spans: Vec<_> = t.spans().collect();
        assert_eq!(spans, [None, None, Some(7..9), Some(14..15)]);
        assert_eq!(&t.raw()[7..9], b"hi");
        assert_eq!(t.get(4), None);
    }

    #[test]
    fn rejects_bad_kind_negative_count_and_negative_length() {
        assert_eq!(decode(b"\x00\x01x"), Err(DecodeError::UnknownTupleKind(b'x')));
        assert_eq!(
            decode(b"\xff\xff"),
            Err(DecodeError::NegativeCount { field: "tuple column count", count: -1 })
        );
        assert_eq!(decode(b"\x00\x01t\xff\xff\xff\xfe"), Err(DecodeError::NegativeLength(-2)));
    }

    #[test]
    fn rejects_value_longer_than_message() {
        assert!(matches!(
            decode(b"\x00\x01t\x7f\xff\xff\xffab"),
            Err(DecodeError::UnexpectedEnd { needed: 0x7fff_ffff, remaining: 2, .. })
        ));
    }

    #[test]
    fn from_columns_matches_decoded() {
        let decoded = decode(b"\x00\x03nt\x00\x00\x00\x00b\x00\x00\x00\x01z").unwrap();
        let built = TupleData::from_columns(&[
            ColumnValue::Null,
            ColumnValue::Text(Bytes::new()),
            ColumnValue::Binary(Bytes::from_static(b"z")),
        ])
        .unwrap();
        assert_eq!(built, decoded);
        assert_eq!(format!("{built:?}"), r#"[Null, Text(b""), Binary(b"z")]"#);
    }

    #[test]
    fn iterator_stops_on_inconsistent_raw_data() {
        // Not constructible through the public API; checks the no-panic fallback.
        let t = TupleData { raw: Bytes::from_static(b"t\x00\x00\x00\x09ab"), column_count: 3 };
        assert_eq!(t.columns().count(), 0);
        let t = TupleData { raw: Bytes::from_static(b"nq"), column_count: 3 };
        assert_eq!(t.columns().collect::<Vec<_>>(), [ColumnValue::Null]);
    }
}

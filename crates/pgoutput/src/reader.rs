//! A bounds-checked, big-endian cursor over one message's [`Bytes`].
//!
//! Every read either returns the requested value or a [`DecodeError`]
//! describing what was missing; nothing here can panic. Sub-slices are taken
//! with [`Bytes::slice`], so they share the input allocation.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::lsn::Lsn;
use crate::message::MessageKind;

/// Cursor over a message payload. Invariant: `pos <= buf.len()`.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at `pos` (clamped to the end), attributing errors
    /// to a message of kind `kind`.
    pub(crate) fn new(buf: &'a Bytes, pos: usize, kind: MessageKind) -> Self {
        Self { buf, pos: pos.min(buf.len()), kind }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Kind of message being read (for error reports).
    pub(crate) fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Current offset into the buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Zero-copy slice of everything consumed since offset `start`.
    pub(crate) fn slice_from(&self, start: usize) -> Bytes {
        self.buf.slice(start.min(self.pos)..self.pos)
    }

    fn truncated(&self, needed: usize) -> DecodeError {
        DecodeError::UnexpectedEnd { message: self.kind, needed, remaining: self.remaining() }
    }

    fn unconsumed(&self) -> &'a [u8] {
        let buf: &'a [u8] = self.buf;
        buf.get(self.pos..).unwrap_or_default()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes: [u8; N] = self
            .unconsumed()
            .get(..N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| self.truncated(N))?;
        self.pos += N;
        Ok(bytes)
    }

    /// Int8 / Byte1.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// Int16.
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    /// Int32.
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Int32 reinterpreted as unsigned (OIDs, xids).
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Int64.
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Int64 reinterpreted as unsigned (LSNs).
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Int64 WAL position.
    pub(crate) fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        self.u64().map(Lsn::new)
    }

    /// Int32 byte length that must not be negative.
    pub(crate) fn length(&mut self) -> Result<usize, DecodeError> {
        let len = self.i32()?;
        usize::try_from(len).map_err(|_| DecodeError::NegativeLength(len))
    }

    /// Advances over `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    /// Zero-copy slice of the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.skip(n)?;
        Ok(self.slice_from(start))
    }

    /// NUL-terminated UTF-8 string; the NUL is consumed but not returned.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let rest = self.unconsumed();
        let nul = rest.iter().position(|&b| b == 0).ok_or(DecodeError::MissingNul { field })?;
        let raw = rest.get(..nul).unwrap_or_default();
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field })?;
        self.pos += nul + 1;
        Ok(s)
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { message: self.kind, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn reader(bytes: &'static [u8]) -> (Bytes, MessageKind) {
        (Bytes::from_static(bytes), MessageKind::Insert)
    }

    #[test]
    fn reads_big_endian_integers() {
        let (buf, kind) = reader(b"\x01\xff\xfe\x00\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x02");
        let mut r = Reader::new(&buf, 0, kind);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.i16().unwrap(), -2);
        assert_eq!(r.i32().unwrap(), 256);
        assert_eq!(r.u64().unwrap(), 0x8000_0000_0000_0002);
        assert_eq!(r.remaining(), 0);
        r.finish().unwrap();
    }

    #[test]
    fn short_read_reports_needed_and_remaining_without_consuming() {
        let (buf, kind) = reader(b"\x00\x01\x02");
        let mut r = Reader::new(&buf, 0, kind);
        assert_eq!(
            r.i32(),
            Err(DecodeError::UnexpectedEnd { message: kind, needed: 4, remaining: 3 })
        );
        assert_eq!(r.i16().unwrap(), 1);
        assert_eq!(
            r.bytes(2),
            Err(DecodeError::UnexpectedEnd { message: kind, needed: 2, remaining: 1 })
        );
        assert_eq!(r.bytes(1).unwrap(), Bytes::from_static(b"\x02"));
    }

    #[test]
    fn cstr_requires_nul_and_utf8() {
        let (buf, kind) = reader(b"ab\0\xff\0cd");
        let mut r = Reader::new(&buf, 0, kind);
        assert_eq!(r.cstr("x").unwrap(), "ab");
        assert_eq!(r.cstr("y"), Err(DecodeError::InvalidUtf8 { field: "y" }));
        r.skip(2).unwrap();
        assert_eq!(r.cstr("z"), Err(DecodeError::MissingNul { field: "z" }));
    }

    #[test]
    fn negative_length_is_rejected() {
        let (buf, kind) = reader(b"\xff\xff\xff\xff");
        let mut r = Reader::new(&buf, 0, kind);
        assert_eq!(r.length(), Err(DecodeError::NegativeLength(-1)));
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let (buf, kind) = reader(b"\x00\x00\x00");
        let mut r = Reader::new(&buf, 0, kind);
        r.u8().unwrap();
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { message: kind, count: 2 }));
    }

    #[test]
    fn slices_share_the_input_allocation() {
        let buf = Bytes::from(b"xxhello".to_vec());
        let mut r = Reader::new(&buf, 2, MessageKind::Insert);
        let s = r.bytes(5).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(s.as_ptr(), buf[2..].as_ptr());
    }
}

//! Errors produced while decoding a pgoutput message.

use crate::message::MessageKind;

/// Why a pgoutput message could not be decoded.
///
/// Every variant means the input is malformed (or not pgoutput protocol v1);
/// retrying the same bytes will fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload had no bytes at all, so not even a message tag.
    #[error("pgoutput message is empty: expected at least a one-byte tag")]
    Empty,

    /// The message ended before a field it announces was complete.
    #[error("pgoutput {message} truncated: needed {needed} more bytes, {remaining} remaining")]
    UnexpectedEnd {
        /// Kind of message being decoded.
        message: MessageKind,
        /// Bytes the next field needed.
        needed: usize,
        /// Bytes that were left in the message.
        remaining: usize,
    },

    /// The first byte is not a pgoutput protocol v1 message tag.
    #[error("unknown pgoutput message tag 0x{0:02x}")]
    UnknownTag(u8),

    /// A TupleData column kind byte is not one of `n`, `u`, `t`, `b`.
    #[error("unknown pgoutput tuple column kind 0x{0:02x}: expected 'n', 'u', 't' or 'b'")]
    UnknownTupleKind(u8),

    /// A name (relation, namespace, column, prefix, ...) is not valid UTF-8.
    #[error("pgoutput {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string field was invalid.
        field: &'static str,
    },

    /// A NUL-terminated string ran to the end of the message without a NUL.
    #[error("pgoutput {field} is missing its NUL terminator")]
    MissingNul {
        /// Which string field was unterminated.
        field: &'static str,
    },

    /// A byte-length field (column value or message content) was negative.
    #[error("pgoutput length field is negative: {0}")]
    NegativeLength(i32),

    /// A count field (columns, relations) was negative.
    #[error("pgoutput {field} is negative: {count}")]
    NegativeCount {
        /// Which count field was negative.
        field: &'static str,
        /// The value found on the wire.
        count: i32,
    },

    /// The message decoded completely but bytes were left over.
    #[error("pgoutput {message} has {count} trailing bytes after its last field")]
    TrailingBytes {
        /// Kind of message being decoded.
        message: MessageKind,
        /// Number of bytes left over.
        count: usize,
    },

    /// A marker byte had a value the protocol does not allow at that position
    /// (for example the tuple marker of an Update that is not `K`, `O` or `N`).
    #[error("pgoutput {message} has unexpected byte 0x{found:02x} where {expected} was expected")]
    UnexpectedByte {
        /// Kind of message being decoded.
        message: MessageKind,
        /// What the protocol allows here.
        expected: &'static str,
        /// The byte found.
        found: u8,
    },
}

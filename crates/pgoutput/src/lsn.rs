//! [`Lsn`]: a write-ahead log position, and its PostgreSQL text form (`X/X`).
//!
//! Every LSN in tailbox (decoded messages, the slot's positions, the ack tracker, the
//! checkpoint, errors) is this type, so an LSN cannot be mixed up with a byte count or a
//! sequence number, and it always prints the way PostgreSQL does. It is a `u64` at run
//! time (`#[repr(transparent)]`, `Copy`): comparing and storing one costs nothing more.

use std::{fmt, str::FromStr};

/// Longest hex component PostgreSQL accepts on either side of the `/`.
const MAX_COMPONENT_DIGITS: usize = 8;

/// A PostgreSQL write-ahead log position (`pg_lsn`).
///
/// Displays the way PostgreSQL does (`"%X/%X"`: the high and low 32 bits in upper-case
/// hex, neither part zero-padded) and parses that form back ([`FromStr`]).
///
/// ```
/// use tailbox_pgoutput::Lsn;
///
/// let lsn = Lsn::new(0x1_6B37_4D48);
/// assert_eq!(lsn.to_string(), "1/6B374D48");
/// assert_eq!("1/6b374d48".parse(), Ok(lsn));
/// assert!(Lsn::ZERO < lsn);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// `0/0`, where no position is known yet.
    pub const ZERO: Lsn = Lsn(0);

    /// The position `value` bytes into the WAL.
    pub const fn new(value: u64) -> Self {
        Lsn(value)
    }

    /// The position as a byte offset into the WAL (metrics, Redis stream IDs).
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// How many bytes of WAL lie between `earlier` and this position (0 if `earlier`
    /// is not earlier): lag and retained WAL.
    pub const fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The position `bytes` before this one (`0/0` at the least).
    pub const fn saturating_sub(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_sub(bytes))
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Text that is not an LSN in PostgreSQL's `X/X` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PostgreSQL LSN (expected hex `X/X`, e.g. 0/16B3748): {0:?}")]
pub struct ParseLsnError(String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses PostgreSQL's `X/X` form as `pg_lsn_in` accepts it: 1 to 8 hex digits
    /// (either case), a `/`, then 1 to 8 hex digits, nothing else (no sign, no
    /// whitespace).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s.split_once('/').and_then(|(high, low)| {
            Some(Lsn((parse_component(high)? << 32) | parse_component(low)?))
        });
        parsed.ok_or_else(|| ParseLsnError(s.to_owned()))
    }
}

fn parse_component(s: &str) -> Option<u64> {
    let valid =
        (1..=MAX_COMPONENT_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<u64> {
        s.parse::<Lsn>().ok().map(Lsn::as_u64)
    }

    #[test]
    fn formats_like_postgres() {
        let text = |v: u64| Lsn::new(v).to_string();
        assert_eq!(text(0x1_6B37_4D48), "1/6B374D48");
        assert_eq!(text(0), "0/0");
        assert_eq!(text(0x0153_21C8), "0/15321C8");
        assert_eq!(text(0xABCDEF), "0/ABCDEF");
        assert_eq!(text(1 << 32), "1/0");
        assert_eq!(text(u64::MAX), "FFFFFFFF/FFFFFFFF");
        assert_eq!(format!("{:?}", Lsn::new(0x10)), "Lsn(0/10)");
    }

    #[test]
    fn parses_valid_forms() {
        assert_eq!(parse("0/0"), Some(0));
        assert_eq!(parse("1/6B374D48"), Some(0x1_6B37_4D48));
        assert_eq!(parse("1/6b374d48"), Some(0x1_6B37_4D48));
        assert_eq!(parse("00000000/00000001"), Some(1));
        assert_eq!(parse("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
    }

    #[test]
    fn rejects_invalid_forms() {
        for bad in [
            "",
            "/",
            "0",
            "0/",
            "/0",
            "0/0/0",
            "g/0",
            "0/g",
            "+1/0",
            "0/-1",
            " 0/0",
            "0/0 ",
            "123456789/0",
            "0/123456789",
            "0x1/0",
            "１/0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} should not parse");
        }
        let err = "0/".parse::<Lsn>().expect_err("not an LSN");
        assert_eq!(
            err.to_string(),
            "not a PostgreSQL LSN (expected hex `X/X`, e.g. 0/16B3748): \"0/\""
        );
    }

    #[test]
    fn round_trips_selected_values() {
        for lsn in [0, 1, 0xFFFF_FFFF, 1 << 32, 0x1_6B37_4D48, u64::MAX] {
            assert_eq!(parse(&Lsn::new(lsn).to_string()), Some(lsn));
        }
    }

    #[test]
    fn orders_and_measures_like_the_wal() {
        assert!(Lsn::new(1 << 32) > Lsn::new(0xFFFF_FFFF));
        assert_eq!(Lsn::new(0x180).bytes_since(Lsn::new(0x100)), 0x80);
        assert_eq!(Lsn::new(0x100).bytes_since(Lsn::new(0x180)), 0);
        assert_eq!(Lsn::new(5).saturating_sub(10), Lsn::ZERO);
        assert_eq!(u64::from(Lsn::from(7)), 7);
    }

    #[test]
    fn costs_a_u64() {
        assert_eq!(std::mem::size_of::<Lsn>(), 8);
    }
}

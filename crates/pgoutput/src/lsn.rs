//! Log sequence numbers and their PostgreSQL text form (`X/X`).

/// A PostgreSQL write-ahead log position (`pg_lsn`), as a plain 64-bit number.
pub type Lsn = u64;

/// Longest hex component PostgreSQL accepts on either side of the `/`.
const MAX_COMPONENT_DIGITS: usize = 8;

/// Formats an LSN the way PostgreSQL does (`"%X/%X"`): the high and low
/// 32 bits in upper-case hex, neither part zero-padded.
///
/// ```
/// assert_eq!(tailbox_pgoutput::format_lsn(0x1_6B37_4D48), "1/6B374D48");
/// assert_eq!(tailbox_pgoutput::format_lsn(0), "0/0");
/// ```
pub fn format_lsn(lsn: Lsn) -> String {
    let mut text = String::with_capacity(17);
    write_lsn(&mut text, lsn);
    text
}

/// Appends `lsn` in PostgreSQL's `X/X` form to `out` (no allocation if it has room).
pub fn write_lsn(out: &mut String, lsn: Lsn) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF);
}

/// Parses PostgreSQL's `X/X` LSN text form, as accepted by `pg_lsn_in`:
/// 1 to 8 hex digits (either case), a `/`, then 1 to 8 hex digits, nothing
/// else (no sign, no whitespace). Returns `None` if `s` is not in that form.
///
/// ```
/// assert_eq!(tailbox_pgoutput::parse_lsn("1/6B374D48"), Some(0x1_6B37_4D48));
/// assert_eq!(tailbox_pgoutput::parse_lsn("0/0"), Some(0));
/// assert_eq!(tailbox_pgoutput::parse_lsn("0/+1"), None);
/// ```
pub fn parse_lsn(s: &str) -> Option<Lsn> {
    let (high, low) = s.split_once('/')?;
    Some((parse_component(high)? << 32) | parse_component(low)?)
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

    #[test]
    fn formats_like_postgres() {
        assert_eq!(format_lsn(0x1_6B37_4D48), "1/6B374D48");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_lsn(0x0153_21C8), "0/15321C8");
        assert_eq!(format_lsn(0xABCDEF), "0/ABCDEF");
        assert_eq!(format_lsn(1 << 32), "1/0");
        assert_eq!(format_lsn(u64::MAX), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_valid_forms() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("1/6B374D48"), Some(0x1_6B37_4D48));
        assert_eq!(parse_lsn("1/6b374d48"), Some(0x1_6B37_4D48));
        assert_eq!(parse_lsn("00000000/00000001"), Some(1));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
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
            assert_eq!(parse_lsn(bad), None, "{bad:?} should not parse");
        }
    }

    #[test]
    fn round_trips_selected_values() {
        for lsn in [0, 1, 0xFFFF_FFFF, 1 << 32, 0x1_6B37_4D48, u64::MAX] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
    }
}

//! What the server behind a replication connection offers, by its major version: the
//! one place that decides which pgoutput options [`crate::stream`] asks for.
//!
//! The server names its version at login, in the `server_version` ParameterStatus of
//! every connection (`13.23`, `18.4`, `18beta1`, `15.10 (Debian 15.10-0+deb12u1)`), so
//! the replication connection knows it without a query of its own.
//!
//! | major | what it adds for tailbox |
//! |---|---|
//! | 13 | the oldest supported: pgoutput without `messages` |
//! | 14 | `messages`: `pg_logical_emit_message` outbox events (no table) |
//!
//! (Failover slots from 17, decoding on a standby from 16 and
//! `idle_replication_slot_timeout` from 18 need nothing of the stream; see
//! docs/postgres-versions.md.)

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

/// A PostgreSQL major version: the first number of `server_version` (10 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerMajor(pub u32);

impl ServerMajor {
    /// The first major whose pgoutput takes `messages` (logical decoding messages).
    pub const LOGICAL_MESSAGES: ServerMajor = ServerMajor(14);

    /// The major of a `server_version` string; `None` if it does not start with a number.
    pub fn parse(server_version: &str) -> Option<Self> {
        let end =
            server_version.find(|c: char| !c.is_ascii_digit()).unwrap_or(server_version.len());
        server_version[..end].parse().ok().map(ServerMajor)
    }

    /// Whether pgoutput can stream `pg_logical_emit_message` messages.
    pub fn has_logical_messages(self) -> bool {
        self >= Self::LOGICAL_MESSAGES
    }
}

/// Set once the "no logical messages" warning was logged, so reconnects do not repeat it.
static WARNED_NO_MESSAGES: AtomicBool = AtomicBool::new(false);

/// The pgoutput options after `publication_names` for a server that announced
/// `server_version` (`None`: it did not, so we assume a current server). Before 14,
/// asking for `messages` fails START_REPLICATION, so it is left out, and the first time
/// per process a warning says that table-less events are not published.
pub(crate) fn extra_pgoutput_options(server_version: Option<&str>) -> &'static str {
    match server_version.map(|v| (v, ServerMajor::parse(v))) {
        Some((version, Some(major))) if !major.has_logical_messages() => {
            if !WARNED_NO_MESSAGES.swap(true, Ordering::Relaxed) {
                warn!(
                    server_version = version,
                    needs_major = ServerMajor::LOGICAL_MESSAGES.0,
                    "this PostgreSQL's pgoutput has no logical decoding messages: outbox events written with pg_logical_emit_message are not published (outbox table rows are)"
                );
            }
            ""
        }
        _ => ", messages 'true'",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_come_from_the_leading_number() {
        assert_eq!(ServerMajor::parse("13.23"), Some(ServerMajor(13)));
        assert_eq!(ServerMajor::parse("18beta1"), Some(ServerMajor(18)));
        assert_eq!(ServerMajor::parse("15.10 (Debian 15.10-0+deb12u1)"), Some(ServerMajor(15)));
        assert_eq!(ServerMajor::parse("18"), Some(ServerMajor(18)));
        assert_eq!(ServerMajor::parse(""), None);
        assert_eq!(ServerMajor::parse("devel"), None);
    }

    #[test]
    fn messages_are_asked_for_from_14_on() {
        assert_eq!(extra_pgoutput_options(Some("13.23")), "");
        assert_eq!(extra_pgoutput_options(Some("13.23")), "", "also after the warning");
        assert_eq!(extra_pgoutput_options(Some("14.0")), ", messages 'true'");
        assert_eq!(extra_pgoutput_options(Some("18.4")), ", messages 'true'");
        assert_eq!(extra_pgoutput_options(None), ", messages 'true'");
        assert_eq!(extra_pgoutput_options(Some("weird")), ", messages 'true'");
        assert!(WARNED_NO_MESSAGES.load(Ordering::Relaxed));
    }
}

//! Errors of the replication side, split by what the caller must do about them.

use std::fmt;

/// A problem found before streaming starts that only a person can fix.
///
/// Each one renders as a single line naming the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupProblem {
    /// What is wrong, e.g. "replication slot \"tailbox\" does not exist".
    pub problem: String,
    /// How to fix it, e.g. "run sql/03_slot.sql or `tailbox setup`".
    pub fix: String,
}

impl fmt::Display for StartupProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.problem, self.fix)
    }
}

/// Errors talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The connection broke or timed out: reconnect with backoff and resume from the slot.
    #[error("PostgreSQL connection lost: {context}")]
    Transient {
        /// What we were doing.
        context: String,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another session streams from the slot (another tailbox instance, or one that is
    /// going away): wait and try again.
    #[error("replication slot {slot:?} is in use by another session (pid {pid:?})")]
    SlotInUse {
        /// The slot.
        slot: String,
        /// The walsender holding it, if the server said.
        pid: Option<i32>,
    },
    /// Configuration or server state that retrying cannot fix: stop with this message.
    #[error("{0}")]
    Startup(StartupProblem),
    /// The server refused the stream for a reason that retrying cannot fix.
    #[error("PostgreSQL refused replication: {context}")]
    Definite {
        /// What we were doing.
        context: String,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ReplicationError {
    /// Whether reconnecting may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicationError::Transient { .. } | ReplicationError::SlotInUse { .. })
    }

    /// A [`ReplicationError::Startup`]: `problem`, and how to fix it.
    pub fn startup(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ReplicationError::Startup(StartupProblem { problem: problem.into(), fix: fix.into() })
    }

    /// Classifies a `tokio-postgres` error: connection-level failures and server
    /// answers that mean "not now" are transient; the rest (permissions, missing
    /// objects, bad SQL) are definite.
    pub(crate) fn from_pg(context: impl Into<String>, err: tokio_postgres::Error) -> Self {
        let context = context.into();
        match err.as_db_error().map(|db| db.code().code()) {
            Some(code) if !is_transient_sqlstate(code) => {
                ReplicationError::Definite { context, source: Box::new(err) }
            }
            _ => ReplicationError::Transient { context, source: Box::new(err) },
        }
    }

    /// [`ReplicationError::from_pg`] for callers outside this crate.
    pub fn from_pg_error(context: &str, err: tokio_postgres::Error) -> Self {
        Self::from_pg(context, err)
    }
}

/// SQLSTATEs worth retrying: connection problems (class 08), insufficient resources
/// (53), operator intervention such as a server shutting down or starting up (57),
/// system errors (58), serialization/deadlock (40), and "object in use" (55006, e.g. a
/// slot still held by a dying session).
pub fn is_transient_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || code == "55006"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        assert!(is_transient_sqlstate("57P03"), "starting up");
        assert!(is_transient_sqlstate("57P01"), "admin shutdown");
        assert!(is_transient_sqlstate("55006"), "slot active");
        assert!(is_transient_sqlstate("08006"));
        assert!(!is_transient_sqlstate("42704"), "undefined object");
        assert!(!is_transient_sqlstate("28P01"), "bad password");
    }
}

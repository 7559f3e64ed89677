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
        matches!(self, ReplicationError::Transient { .. })
    }

    pub(crate) fn startup(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ReplicationError::Startup(StartupProblem { problem: problem.into(), fix: fix.into() })
    }

    /// Classifies a `tokio-postgres` error: connection-level failures are transient,
    /// server answers (permissions, missing objects) are definite.
    pub(crate) fn from_pg(context: impl Into<String>, err: tokio_postgres::Error) -> Self {
        let context = context.into();
        if err.as_db_error().is_some() {
            ReplicationError::Definite { context, source: Box::new(err) }
        } else {
            ReplicationError::Transient { context, source: Box::new(err) }
        }
    }

    /// Classifies a `pgwire-replication` error.
    pub(crate) fn from_wire(context: impl Into<String>, err: pgwire_replication::PgWireError) -> Self {
        let context = context.into();
        if err.is_transient() {
            ReplicationError::Transient { context, source: Box::new(err) }
        } else {
            ReplicationError::Definite { context, source: Box::new(err) }
        }
    }
}

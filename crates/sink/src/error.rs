//! Sink errors, split by what the pipeline must do about them, whatever the destination.

/// The underlying cause, from whichever client library the sink uses.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors creating a sink or using it outside deliveries.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration was refused (names the setting), or the destination refused us
    /// in a way only a person can fix (credentials, certificate): stop.
    #[error("invalid {destination} configuration: {reason}")]
    Config {
        /// "Kafka", "Redis", …
        destination: &'static str,
        /// What is wrong, and the fix where known (one line, in full: no cause chain).
        reason: String,
    },
    /// Talking to the destination failed in a way that may pass: retry with backoff.
    #[error("{destination} unavailable: {context}")]
    Transient {
        /// "Kafka", "Redis", …
        destination: &'static str,
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: Cause,
    },
}

impl SinkError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }
}

/// Why a record was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination refused this record for good (too large, invalid topic, not
    /// authorised …): retrying the same record gives the same answer, so it goes to the
    /// dead letters.
    #[error("{destination} refused the record: {source}")]
    Refused {
        /// "Kafka", "Redis", …
        destination: &'static str,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// Delivery failed for a reason that may pass (timeout, broker down, fenced …):
    /// replay from the slot.
    #[error("delivery failed: {source}")]
    Failed {
        /// The cause.
        #[source]
        source: Cause,
    },
    /// The destination holds what another writer put there (another database or slot
    /// publishes to the same stream): writing would mix the two or lose events, and
    /// only a person can decide who owns it. Stop.
    #[error("{destination} conflict: {reason}")]
    Conflict {
        /// "Kafka", "Redis", …
        destination: &'static str,
        /// What conflicts, and the fix (one line).
        reason: String,
    },
}

impl DeliveryError {
    /// The sink's buffer stayed full where waiting cannot help (inside a transaction).
    pub fn buffer_full() -> Self {
        DeliveryError::Failed { source: "the sink's buffer is full".into() }
    }

    /// Whether the record is refused for good.
    pub fn is_refused(&self) -> bool {
        matches!(self, DeliveryError::Refused { .. })
    }

    /// Whether replaying from the slot may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, DeliveryError::Failed { .. })
    }
}

/// What a failed transactional call means (sinks with transactions).
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The transaction must be aborted; then replay from the slot.
    #[error("transaction must be aborted: {0}")]
    Abortable(#[source] Cause),
    /// May pass: retry the call, or restart the session.
    #[error("transaction call failed: {0}")]
    Retriable(#[source] Cause),
    /// Another instance took over (fenced), or the client is broken for good.
    #[error("producer is fenced or failed fatally: {0}")]
    Fatal(#[source] Cause),
}

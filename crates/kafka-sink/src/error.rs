//! Sink errors, split by what the caller must do.

use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};

/// Errors creating or using the producer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration was refused by librdkafka (names the property).
    #[error("invalid Kafka configuration: {0}")]
    Config(#[source] KafkaError),
    /// Talking to Kafka failed in a way that may pass: retry with backoff.
    #[error("Kafka unavailable: {context}")]
    Transient {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
}

/// Why a record was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Kafka refused this record for good (too large, invalid topic, not authorised …):
    /// retrying the same record gives the same answer.
    #[error("Kafka refused the record: {0}")]
    Refused(#[source] KafkaError),
    /// Delivery failed for a reason that may pass (timeout, broker down, fenced …):
    /// replay from the last checkpoint.
    #[error("delivery failed: {0}")]
    Failed(#[source] KafkaError),
}

/// Error codes that mean "this record can never be written", after Vector's list.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::InvalidMessage
            | C::InvalidMessageSize
            | C::MessageSizeTooLarge
            | C::InvalidTopic
            | C::InvalidRecord
            | C::TopicAuthorizationFailed
            | C::UnsupportedForMessageFormat
            | C::UnknownTopic
    )
}

impl DeliveryError {
    /// librdkafka's queue stayed full: transient.
    pub fn queue_full() -> Self {
        DeliveryError::Failed(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
    }

    /// Classifies a delivery or enqueue error.
    pub fn classify(err: KafkaError) -> Self {
        match err.rdkafka_error_code() {
            Some(code) if is_permanent(code) => DeliveryError::Refused(err),
            _ => DeliveryError::Failed(err),
        }
    }
}

//! librdkafka's errors, classified into the sink-neutral errors of `tailbox-sink`.

use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
use tailbox_sink::{DeliveryError, SinkError, TransactionError};

/// The destination's name in error messages.
pub(crate) const KAFKA: &str = "Kafka";

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

/// Classifies a delivery or enqueue error: refused for good, or worth a replay.
pub fn delivery_error(err: KafkaError) -> DeliveryError {
    match err.rdkafka_error_code() {
        Some(code) if is_permanent(code) => {
            DeliveryError::Refused { destination: KAFKA, source: Box::new(err) }
        }
        _ => DeliveryError::Failed { source: Box::new(err) },
    }
}

/// A configuration librdkafka refused (names the property).
pub(crate) fn config_error(err: KafkaError) -> SinkError {
    SinkError::Config { destination: KAFKA, reason: err.to_string() }
}

/// Talking to Kafka failed in a way that may pass.
pub(crate) fn transient(context: impl Into<String>, err: KafkaError) -> SinkError {
    SinkError::Transient { destination: KAFKA, context: context.into(), source: Box::new(err) }
}

/// Classifies a failed transactional call.
pub(crate) fn transaction_error(err: KafkaError) -> TransactionError {
    match &err {
        KafkaError::Transaction(e) if e.is_fatal() => TransactionError::Fatal(Box::new(err)),
        KafkaError::Transaction(e) if e.txn_requires_abort() => {
            TransactionError::Abortable(Box::new(err))
        }
        _ => TransactionError::Retriable(Box::new(err)),
    }
}

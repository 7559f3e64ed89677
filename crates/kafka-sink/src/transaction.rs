//! Kafka transactions for exactly-once mode.
//!
//! One `transactional.id` per slot (`tailbox-<slot>`): `init_transactions` fences any
//! older instance of the same slot and aborts its open transaction. The librdkafka calls
//! below block (they wait for broker round trips), so they run on the blocking pool,
//! never on the pipeline's thread.

use std::time::Duration;

use rdkafka::{error::KafkaError, producer::Producer};

use crate::sink::KafkaSink;

/// What a failed transactional call means.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The transaction must be aborted; then replay from the checkpoint.
    #[error("Kafka transaction must be aborted: {0}")]
    Abortable(#[source] KafkaError),
    /// May pass: retry the call, or restart the session.
    #[error("Kafka transaction call failed: {0}")]
    Retriable(#[source] KafkaError),
    /// Another instance took over this slot's transactional id, or the producer is
    /// broken for good.
    #[error("Kafka producer is fenced or failed fatally: {0}")]
    Fatal(#[source] KafkaError),
}

impl TransactionError {
    fn classify(err: KafkaError) -> Self {
        match &err {
            KafkaError::Transaction(e) if e.is_fatal() => TransactionError::Fatal(err),
            KafkaError::Transaction(e) if e.txn_requires_abort() => {
                TransactionError::Abortable(err)
            }
            _ => TransactionError::Retriable(err),
        }
    }
}

impl KafkaSink {
    /// Registers the transactional id, fencing older instances.
    pub async fn init_transactions(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.init_transactions(timeout)).await
    }

    /// Starts a transaction (local, does not block on the network).
    pub fn begin_transaction(&self) -> Result<(), TransactionError> {
        self.producer_handle().begin_transaction().map_err(TransactionError::classify)
    }

    /// Flushes and commits the open transaction: once this returns `Ok`, every record
    /// sent in it is durably in Kafka and visible to `read_committed` consumers.
    pub async fn commit_transaction(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.commit_transaction(timeout)).await
    }

    /// Aborts the open transaction.
    pub async fn abort_transaction(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.abort_transaction(timeout)).await
    }
}

async fn blocking(
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), TransactionError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(TransactionError::classify),
        Err(join) => Err(TransactionError::Retriable(KafkaError::Canceled)).inspect_err(|_| {
            tracing::error!(error = %join, "transactional call task failed");
        }),
    }
}

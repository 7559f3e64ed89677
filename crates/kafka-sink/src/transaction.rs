//! Kafka transactions for exactly-once mode.
//!
//! One `transactional.id` per checkpoint owner (system identifier, slot, database):
//! `init_transactions` fences any older instance of the same and aborts its open
//! transaction. The librdkafka calls below block (they wait for broker round trips), so
//! they run on the blocking pool, never on the pipeline's thread.

use std::time::Duration;

use rdkafka::{error::KafkaError, producer::Producer};
use tailbox_sink::TransactionError;

use crate::{error::transaction_error, sink::KafkaSink};

impl KafkaSink {
    /// Registers the transactional id, fencing older instances.
    pub async fn init_transactions(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.init_transactions(timeout)).await
    }

    /// Starts a transaction (local, does not block on the network).
    pub(crate) fn begin(&self) -> Result<(), TransactionError> {
        self.producer_handle().begin_transaction().map_err(transaction_error)
    }

    /// Flushes and commits the open transaction.
    pub(crate) async fn commit(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.commit_transaction(timeout)).await
    }

    /// Aborts the open transaction.
    pub(crate) async fn abort(&self, timeout: Duration) -> Result<(), TransactionError> {
        let producer = self.producer_handle();
        blocking(move || producer.abort_transaction(timeout)).await
    }
}

async fn blocking(
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), TransactionError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(transaction_error),
        Err(join) => {
            tracing::error!(error = %join, "transactional call task failed");
            Err(TransactionError::Retriable(Box::new(KafkaError::Canceled)))
        }
    }
}

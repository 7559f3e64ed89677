//! [`DryRunSink`]: decode, map and log what would be published; store nothing.
//!
//! A dark launch beside an old relay: every record is logged (topic, LSN, xid, sizes;
//! never the payload) and acknowledged at once, but the sink is not durable, so the
//! pipeline never confirms the slot, and no checkpoint is read or written.

use std::collections::VecDeque;

use tailbox_outbox::OutboxRecord;
use tracing::info;

use crate::{
    error::{DeliveryError, SinkError},
    sink::{Ack, CheckpointRecords, EventMeta, SendOutcome, Sink},
};

/// A sink that logs and acknowledges, and stores nothing.
#[derive(Debug, Default)]
pub struct DryRunSink {
    next_seq: u64,
    acks: VecDeque<Ack>,
}

impl DryRunSink {
    /// A new dry run.
    pub fn new() -> Self {
        Self::default()
    }

    fn enqueue(&mut self) -> SendOutcome {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.acks.push_back(Ack { seq, result: Ok(()), refused: None });
        SendOutcome::Enqueued(seq)
    }
}

impl Sink for DryRunSink {
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        let (lsn, xid) = meta.map(|m| (m.lsn.as_str(), m.xid.as_str())).unwrap_or_default();
        info!(topic = %record.topic, lsn, xid, key_bytes = record.key.len(),
              value_bytes = record.value.len(), "dry run: would publish");
        Ok(self.enqueue())
    }

    fn send_checkpoint(
        &mut self,
        _key: &[u8],
        _value: &[u8],
    ) -> Result<SendOutcome, DeliveryError> {
        Ok(self.enqueue())
    }

    async fn next_ack(&mut self) -> Ack {
        match self.acks.pop_front() {
            Some(ack) => ack,
            None => std::future::pending().await,
        }
    }

    fn try_next_ack(&mut self) -> Option<Ack> {
        self.acks.pop_front()
    }

    async fn read_checkpoints(&mut self) -> Result<CheckpointRecords, SinkError> {
        Ok(CheckpointRecords::new())
    }

    fn is_durable(&self) -> bool {
        false
    }
}

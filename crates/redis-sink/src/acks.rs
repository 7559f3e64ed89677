//! [`Acks`]: the writer's acknowledgements, one message per batch, handed to the
//! pipeline one at a time.
//!
//! The writer answers a whole batch at once (its `EXEC` reply), so it sends the batch's
//! acknowledgements as one message: one channel operation per batch instead of one per
//! record. Like [`tailbox_sink::AckChannel`], this end counts the records still waiting
//! for theirs.

use tailbox_sink::Ack;
use tokio::sync::mpsc;

/// The writer's end: a batch's acknowledgements, in sequence order.
pub(crate) type AckSender = mpsc::UnboundedSender<Vec<Ack>>;

/// The sink's end.
#[derive(Debug)]
pub(crate) struct Acks {
    batches: mpsc::UnboundedReceiver<Vec<Ack>>,
    /// What is left of the batch being handed out.
    current: std::vec::IntoIter<Ack>,
    /// Sent and not yet acknowledged.
    outstanding: u64,
}

impl Acks {
    /// A channel: the sender goes to the writer.
    pub(crate) fn new() -> (AckSender, Self) {
        let (sender, batches) = mpsc::unbounded_channel();
        (sender, Self { batches, current: Vec::new().into_iter(), outstanding: 0 })
    }

    /// A record was handed to the writer.
    pub(crate) fn on_sent(&mut self) {
        self.outstanding += 1;
    }

    /// Whether `limit` records (at least one) are waiting for acknowledgements.
    pub(crate) fn is_full(&self, limit: u64) -> bool {
        self.outstanding >= limit.max(1)
    }

    /// The next acknowledgement, waiting for it; cancel-safe. If the writer is gone (it
    /// only ends when the sink is dropped), nothing more comes: waits forever.
    pub(crate) async fn next(&mut self) -> Ack {
        loop {
            if let Some(ack) = self.current.next() {
                return self.took(ack);
            }
            match self.batches.recv().await {
                Some(batch) => self.current = batch.into_iter(),
                None => std::future::pending().await,
            }
        }
    }

    /// An acknowledgement if one already arrived.
    pub(crate) fn try_next(&mut self) -> Option<Ack> {
        loop {
            if let Some(ack) = self.current.next() {
                return Some(self.took(ack));
            }
            self.current = self.batches.try_recv().ok()?.into_iter();
        }
    }

    fn took(&mut self, ack: Ack) -> Ack {
        self.outstanding = self.outstanding.saturating_sub(1);
        ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(seq: u64) -> Ack {
        Ack { seq, result: Ok(()), refused: None }
    }

    #[tokio::test]
    async fn batches_come_out_one_acknowledgement_at_a_time_in_order() {
        let (writer, mut acks) = Acks::new();
        for _ in 0..5 {
            acks.on_sent();
        }
        assert!(acks.is_full(5));
        assert!(acks.try_next().is_none());
        writer.send(vec![ok(0), ok(1)]).expect("open");
        writer.send(Vec::new()).expect("open");
        writer.send(vec![ok(2), ok(3)]).expect("open");
        assert_eq!(acks.try_next().map(|a| a.seq), Some(0));
        assert!(!acks.is_full(5));
        assert_eq!(acks.next().await.seq, 1);
        assert_eq!(acks.next().await.seq, 2, "past the empty batch");
        assert_eq!(acks.try_next().map(|a| a.seq), Some(3));
        assert!(acks.try_next().is_none());
        assert!(acks.is_full(1), "one still waits");
        writer.send(vec![ok(4)]).expect("open");
        assert_eq!(acks.next().await.seq, 4);
        assert!(!acks.is_full(1));
    }
}

//! [`AckChannel`]: acknowledgements coming back from a sink's own task (the one that
//! owns the connection), and how many records are still waiting for theirs.
//!
//! A task that answers records one by one (the webhook dispatcher) sends each
//! acknowledgement on its own; one that answers a whole batch at once (the Redis
//! writer, per `EXEC`) sends the batch's as one message: one channel operation per
//! batch instead of one per record. Either way the sink hands them out one at a time,
//! in the order they were sent.

use tokio::sync::mpsc;

use crate::sink::Ack;

/// One acknowledgement, or a batch's in sequence order.
#[derive(Debug)]
enum Message {
    One(Ack),
    Batch(Vec<Ack>),
}

/// The sink task's end of an [`AckChannel`].
#[derive(Debug, Clone)]
pub struct AckSender(mpsc::UnboundedSender<Message>);

/// The sink is gone (dropped): nobody waits for acknowledgements any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkGone;

impl AckSender {
    /// Sends one acknowledgement.
    pub fn send(&self, ack: Ack) -> Result<(), SinkGone> {
        self.0.send(Message::One(ack)).map_err(|_| SinkGone)
    }

    /// Sends a batch's acknowledgements, in sequence order, as one message.
    pub fn send_batch(&self, acks: Vec<Ack>) -> Result<(), SinkGone> {
        self.0.send(Message::Batch(acks)).map_err(|_| SinkGone)
    }
}

/// The receiving end of a sink task's acknowledgements, counting what is outstanding
/// (for [`crate::SendOutcome::Blocked`]).
#[derive(Debug)]
pub struct AckChannel {
    messages: mpsc::UnboundedReceiver<Message>,
    /// What is left of the batch being handed out.
    batch: std::vec::IntoIter<Ack>,
    /// Sent and not yet acknowledged.
    outstanding: u64,
}

impl AckChannel {
    /// A channel: the sender goes to the sink's task.
    pub fn new() -> (AckSender, Self) {
        let (sender, messages) = mpsc::unbounded_channel();
        (AckSender(sender), Self { messages, batch: Vec::new().into_iter(), outstanding: 0 })
    }

    /// A record was handed to the task.
    pub fn on_sent(&mut self) {
        self.outstanding += 1;
    }

    /// Whether `limit` records (at least one) are waiting for acknowledgements.
    pub fn is_full(&self, limit: u64) -> bool {
        self.outstanding >= limit.max(1)
    }

    /// The next acknowledgement, waiting for it; cancel-safe. If the task is gone (it
    /// only ends when the sink is dropped), nothing more comes: waits forever.
    pub async fn next(&mut self) -> Ack {
        loop {
            if let Some(ack) = self.batch.next() {
                return self.took(ack);
            }
            match self.messages.recv().await {
                Some(Message::One(ack)) => return self.took(ack),
                Some(Message::Batch(acks)) => self.batch = acks.into_iter(),
                None => std::future::pending().await,
            }
        }
    }

    /// An acknowledgement if one already arrived.
    pub fn try_next(&mut self) -> Option<Ack> {
        loop {
            if let Some(ack) = self.batch.next() {
                return Some(self.took(ack));
            }
            match self.messages.try_recv().ok()? {
                Message::One(ack) => return Some(self.took(ack)),
                Message::Batch(acks) => self.batch = acks.into_iter(),
            }
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
    async fn single_and_batched_acknowledgements_come_out_one_at_a_time_in_order() {
        let (task, mut acks) = AckChannel::new();
        for _ in 0..6 {
            acks.on_sent();
        }
        assert!(acks.is_full(6));
        assert!(acks.try_next().is_none());
        task.send_batch(vec![ok(0), ok(1)]).expect("open");
        task.send_batch(Vec::new()).expect("open");
        task.send(ok(2)).expect("open");
        task.send_batch(vec![ok(3), ok(4)]).expect("open");
        assert_eq!(acks.try_next().map(|a| a.seq), Some(0));
        assert!(!acks.is_full(6));
        assert_eq!(acks.next().await.seq, 1);
        assert_eq!(acks.next().await.seq, 2, "past the empty batch");
        assert_eq!(acks.try_next().map(|a| a.seq), Some(3));
        assert_eq!(acks.next().await.seq, 4);
        assert!(acks.try_next().is_none());
        assert!(acks.is_full(1), "one still waits");
        task.send(ok(5)).expect("open");
        assert_eq!(acks.next().await.seq, 5);
        assert!(!acks.is_full(1));
        drop(acks);
        assert_eq!(task.send(ok(6)), Err(SinkGone));
    }
}

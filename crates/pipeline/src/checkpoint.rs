//! [`AckTracker`]: which LSN is safe to confirm, given acknowledgements that may arrive
//! out of order.
//!
//! # The invariant
//! We confirm an LSN to the slot only when every record of every transaction that
//! committed before it has been acknowledged by the sink. PostgreSQL then never sends
//! those transactions again, so confirming earlier could lose events; confirming later
//! only costs duplicates after a crash.
//!
//! Records get consecutive sequence numbers in commit order. Kafka acknowledges records
//! of different partitions in any order, so we keep one flag per record in flight and
//! advance `acked_prefix` (every record below it is acknowledged) only over a
//! contiguous run. A commit is a *boundary* "all records below `next_seq` belong to
//! transactions committed at or before `end_lsn`"; it becomes durable once
//! `acked_prefix` reaches it.
//!
//! Publishing the checkpoint is a second stage with the same machinery: the checkpoint
//! record for LSN L is itself a record in the sequence, and L becomes *confirmable*
//! once that record (and so everything before it) is acknowledged.

use std::collections::VecDeque;

use tailbox_pgoutput::Lsn;

/// A position that becomes reached once every record below `watermark` is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Boundary {
    watermark: u64,
    lsn: Lsn,
}

/// Tracks acknowledgements and derives the durable and confirmable LSNs.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Every record with a smaller sequence number is acknowledged.
    acked_prefix: u64,
    /// Acknowledged flags of records `acked_prefix..next_seq`.
    acked: VecDeque<bool>,
    /// The sequence number the next record will get.
    next_seq: u64,
    /// Commits not yet durable, in LSN order.
    commits: VecDeque<Boundary>,
    /// Checkpoint records not yet acknowledged, in LSN order.
    checkpoints: VecDeque<Boundary>,
    /// All events of transactions committed before this LSN are in Kafka.
    durable_lsn: Lsn,
    /// The checkpoint topic holds at least this LSN: safe to confirm to the slot.
    confirmable_lsn: Lsn,
}

impl AckTracker {
    /// A tracker that starts at `lsn` (the slot's confirmed position) with nothing in
    /// flight.
    pub fn new(lsn: Lsn) -> Self {
        Self { durable_lsn: lsn, confirmable_lsn: lsn, ..Self::default() }
    }

    /// A record was enqueued with `seq` (sequence numbers must be consecutive from 0).
    pub fn on_sent(&mut self, seq: u64) {
        debug_assert_eq!(seq, self.next_seq, "sequence numbers must be consecutive");
        self.acked.push_back(false);
        self.next_seq = seq + 1;
    }

    /// A record was acknowledged. Unknown or repeated sequence numbers are ignored.
    pub fn on_ack(&mut self, seq: u64) {
        let Some(index) = seq.checked_sub(self.acked_prefix) else {
            return;
        };
        let Some(flag) = usize::try_from(index).ok().and_then(|i| self.acked.get_mut(i)) else {
            return;
        };
        *flag = true;
        while self.acked.front() == Some(&true) {
            self.acked.pop_front();
            self.acked_prefix += 1;
        }
        self.settle();
    }

    /// The transaction whose records were sent so far committed; `end_lsn` is the
    /// position just past its commit record.
    pub fn on_commit(&mut self, end_lsn: Lsn) {
        push_boundary(&mut self.commits, Boundary { watermark: self.next_seq, lsn: end_lsn });
        self.settle();
    }

    /// A keepalive says the server sent everything before `wal_end`. With no
    /// transaction open and nothing in flight, that position holds no unpublished
    /// event (transactions are sent whole at commit, and one that commits later has a
    /// commit record past `wal_end`), so it is durable.
    pub fn on_idle_position(&mut self, wal_end: Lsn) {
        if self.is_drained() {
            self.durable_lsn = self.durable_lsn.max(wal_end);
        }
    }

    /// A checkpoint written by an earlier session already holds `lsn`: it is
    /// confirmable as soon as it is durable here.
    pub fn on_covered_by_checkpoint(&mut self, lsn: Lsn) {
        self.confirmable_lsn = self.confirmable_lsn.max(lsn.min(self.durable_lsn));
    }

    /// The checkpoint record for `lsn` was enqueued with `seq`.
    pub fn on_checkpoint_sent(&mut self, seq: u64, lsn: Lsn) {
        self.on_sent(seq);
        push_boundary(&mut self.checkpoints, Boundary { watermark: seq + 1, lsn });
    }

    fn settle(&mut self) {
        while let Some(b) =
            self.commits.front().copied().filter(|b| b.watermark <= self.acked_prefix)
        {
            self.durable_lsn = self.durable_lsn.max(b.lsn);
            self.commits.pop_front();
        }
        while let Some(b) =
            self.checkpoints.front().copied().filter(|b| b.watermark <= self.acked_prefix)
        {
            self.confirmable_lsn = self.confirmable_lsn.max(b.lsn);
            self.checkpoints.pop_front();
        }
    }

    /// Every event of transactions committed before this LSN is in Kafka.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// The checkpoint topic holds at least this LSN: it may be confirmed to the slot.
    pub fn confirmable_lsn(&self) -> Lsn {
        self.confirmable_lsn
    }

    /// Every record with a smaller sequence number is acknowledged.
    pub fn acked_prefix(&self) -> u64 {
        self.acked_prefix
    }

    /// Records enqueued and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next_seq - self.acked_prefix
    }

    /// Nothing in flight and no commit waiting.
    pub fn is_drained(&self) -> bool {
        self.in_flight() == 0 && self.commits.is_empty()
    }
}

/// Appends a boundary, merging it into the last one when no record came in between
/// (a run of transactions without outbox rows costs one entry, not one each).
fn push_boundary(queue: &mut VecDeque<Boundary>, boundary: Boundary) {
    match queue.back_mut() {
        Some(last) if last.watermark == boundary.watermark => last.lsn = last.lsn.max(boundary.lsn),
        _ => queue.push_back(boundary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(lsn: u64) -> Lsn {
        Lsn::new(lsn)
    }

    #[test]
    fn commit_is_durable_only_when_all_its_records_are_acked() {
        let mut t = AckTracker::new(at(100));
        for seq in 0..3 {
            t.on_sent(seq);
        }
        t.on_commit(at(200));
        t.on_ack(2);
        t.on_ack(0);
        assert_eq!(t.durable_lsn(), at(100), "record 1 is still in flight");
        t.on_ack(1);
        assert_eq!(t.durable_lsn(), at(200));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn out_of_order_acks_across_transactions_keep_commit_order() {
        let mut t = AckTracker::new(at(0));
        t.on_sent(0);
        t.on_commit(at(10));
        t.on_sent(1);
        t.on_commit(at(20));
        t.on_ack(1);
        assert_eq!(t.durable_lsn(), at(0), "the later transaction must not overtake the earlier");
        t.on_ack(0);
        assert_eq!(t.durable_lsn(), at(20));
    }

    #[test]
    fn empty_transactions_are_durable_at_once_and_coalesce() {
        let mut t = AckTracker::new(at(0));
        t.on_commit(at(10));
        t.on_commit(at(20));
        assert_eq!(t.durable_lsn(), at(20));
        t.on_sent(0);
        t.on_commit(at(30));
        t.on_commit(at(40));
        assert_eq!(t.commits.len(), 1);
        t.on_ack(0);
        assert_eq!(t.durable_lsn(), at(40));
    }

    #[test]
    fn confirmable_waits_for_the_checkpoint_record() {
        let mut t = AckTracker::new(at(0));
        t.on_sent(0);
        t.on_commit(at(50));
        t.on_ack(0);
        assert_eq!((t.durable_lsn(), t.confirmable_lsn()), (at(50), at(0)));
        t.on_checkpoint_sent(1, at(50));
        assert_eq!(t.confirmable_lsn(), at(0));
        t.on_ack(1);
        assert_eq!(t.confirmable_lsn(), at(50));
    }

    #[test]
    fn idle_keepalive_advances_only_when_drained() {
        let mut t = AckTracker::new(at(0));
        t.on_sent(0);
        t.on_idle_position(at(500));
        assert_eq!(t.durable_lsn(), at(0));
        t.on_commit(at(10));
        t.on_ack(0);
        t.on_idle_position(at(500));
        assert_eq!(t.durable_lsn(), at(500));
        t.on_idle_position(at(400));
        assert_eq!(t.durable_lsn(), at(500), "never moves backwards");
    }

    #[test]
    fn positions_covered_by_an_earlier_checkpoint_are_confirmable_once_durable() {
        let mut t = AckTracker::new(at(0));
        t.on_sent(0);
        t.on_commit(at(10));
        t.on_covered_by_checkpoint(at(10));
        assert_eq!(t.confirmable_lsn(), at(0), "record 0 is still in flight");
        t.on_ack(0);
        t.on_commit(at(20));
        t.on_covered_by_checkpoint(at(20));
        assert_eq!(t.confirmable_lsn(), at(20));
    }

    #[test]
    fn stray_acks_are_ignored() {
        let mut t = AckTracker::new(at(0));
        t.on_ack(7);
        t.on_sent(0);
        t.on_ack(0);
        t.on_ack(0);
        assert_eq!(t.in_flight(), 0);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the order of acknowledgements, the durable LSN is exactly the end
        /// LSN of the newest transaction whose records, and all records before them,
        /// are acknowledged.
        #[test]
        fn durable_lsn_matches_a_simple_model(
            sizes in prop::collection::vec(0u64..5, 1..30),
            ack_order in prop::collection::vec(any::<prop::sample::Index>(), 0..150),
        ) {
            let mut tracker = AckTracker::new(Lsn::ZERO);
            let mut seq = 0u64;
            // (end_lsn, records below this watermark)
            let mut commits = Vec::new();
            for (t, size) in sizes.iter().enumerate() {
                for _ in 0..*size {
                    tracker.on_sent(seq);
                    seq += 1;
                }
                let end_lsn = (t as u64 + 1) * 100;
                tracker.on_commit(Lsn::new(end_lsn));
                commits.push((end_lsn, seq));
            }
            let mut pending: Vec<u64> = (0..seq).collect();
            let mut acked = vec![false; seq as usize];
            for index in ack_order {
                if pending.is_empty() {
                    break;
                }
                let s = pending.swap_remove(index.index(pending.len()));
                acked[s as usize] = true;
                tracker.on_ack(s);
                let prefix = acked.iter().take_while(|a| **a).count() as u64;
                let model = commits.iter().filter(|(_, w)| *w <= prefix).map(|(l, _)| *l).max().unwrap_or(0);
                prop_assert_eq!(tracker.durable_lsn(), Lsn::new(model));
            }
        }
    }
}

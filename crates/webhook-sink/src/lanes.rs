//! Per-aggregate order with concurrency across aggregates: the pure scheduling rule
//! the dispatcher follows, with no I/O and no clock.
//!
//! # The invariants
//! 1. **Order within a lane.** Events of one lane (one aggregate: topic and key) are
//!    handed out in the order they were pushed, and **at most one event of a lane is
//!    out at a time**: the next is handed out only after the previous was
//!    [`Lanes::complete`]d (it got its 2xx, or was dead-lettered). While an event waits
//!    for a retry ([`Lanes::hold`]) its lane hands out nothing. Different lanes are
//!    independent, so a slow or failing aggregate delays only itself.
//! 2. **Oldest first, within a window.** Among the lanes whose head may go out, the
//!    head pushed earliest goes first, and a head goes out only if it was pushed fewer
//!    than `lookahead` pushes after the oldest event still in any lane (out, held or
//!    queued). So what completes is always close to a prefix of what was pushed: at
//!    most `lookahead` events beyond the oldest unfinished one are ever delivered.
//!
//! Why (2) matters: the session confirms the slot, and writes the checkpoint, only
//! over the *prefix* of acknowledged events. Events delivered beyond that prefix are
//! sent again after a crash. Handing lanes out round-robin instead let the other
//! aggregates run arbitrarily far ahead of one held or slow aggregate, and a SIGKILL
//! then re-sent most of the buffer; with (2) a crash re-sends at most `lookahead`
//! events beyond the prefix (docs/guarantees.md gives the whole bound).
//!
//! Together with the session's ack tracker (which confirms the slot only over the
//! acknowledged prefix of sequence numbers) this gives per-aggregate commit order to
//! the receiver and never skips an event in the slot.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    hash::Hash,
};

/// What a lane is doing with its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing out: the head (if any) is in the ready map.
    Idle,
    /// The head was handed out and not completed.
    Out,
    /// The head failed and waits for its retry; [`Lanes::release`] makes it ready again.
    Held,
}

#[derive(Debug)]
struct Lane<T> {
    /// Items with their push tickets, oldest first.
    queue: VecDeque<(u64, T)>,
    head: Head,
}

/// Queues per lane; the lanes whose head may go out now, by the head's push ticket;
/// and the tickets of every lane's head (the oldest of them is the oldest item).
#[derive(Debug)]
pub struct Lanes<K, T> {
    lanes: HashMap<K, Lane<T>>,
    ready: BTreeMap<u64, K>,
    heads: BTreeSet<u64>,
    next_ticket: u64,
    lookahead: u64,
    len: usize,
}

impl<K, T> Lanes<K, T> {
    /// Lanes that hand out a head only while it is fewer than `lookahead` (at least 1)
    /// pushes younger than the oldest item in any lane.
    pub fn new(lookahead: u64) -> Self {
        Self {
            lanes: HashMap::new(),
            ready: BTreeMap::new(),
            heads: BTreeSet::new(),
            next_ticket: 0,
            lookahead: lookahead.max(1),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, T> Lanes<K, T> {
    /// Appends `item` to `key`'s lane.
    pub fn push(&mut self, key: K, item: T) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.len += 1;
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| Lane { queue: VecDeque::new(), head: Head::Idle });
        lane.queue.push_back((ticket, item));
        if lane.queue.len() == 1 {
            debug_assert_eq!(lane.head, Head::Idle, "an empty lane has nothing out");
            self.heads.insert(ticket);
            self.ready.insert(ticket, key);
        }
    }

    /// The ready head pushed earliest, if it lies within the lookahead window.
    fn first_ready(&self) -> Option<u64> {
        let (&ticket, _) = self.ready.first_key_value()?;
        let oldest = self.heads.first().copied().unwrap_or(ticket);
        (ticket - oldest < self.lookahead).then_some(ticket)
    }

    /// Hands out the oldest ready head (if within the window), marking it out.
    pub fn take_ready(&mut self) -> Option<(K, &mut T)> {
        let ticket = self.first_ready()?;
        let key = self.ready.remove(&ticket)?;
        let lane = self.lanes.get_mut(&key)?;
        debug_assert_eq!(lane.head, Head::Idle, "a ready lane has nothing out");
        lane.head = Head::Out;
        let (_, item) = lane.queue.front_mut()?;
        Some((key, item))
    }

    /// Whether some lane's head may go out now.
    pub fn has_ready(&self) -> bool {
        self.first_ready().is_some()
    }

    /// The head of `key`'s lane (out or held).
    pub fn head_mut(&mut self, key: &K) -> Option<&mut T> {
        self.lanes.get_mut(key)?.queue.front_mut().map(|(_, item)| item)
    }

    /// The head of `key`'s lane is done: removes and returns it; the lane's next item
    /// becomes ready.
    pub fn complete(&mut self, key: &K) -> Option<T> {
        let lane = self.lanes.get_mut(key)?;
        debug_assert_eq!(lane.head, Head::Out, "only an item that is out completes");
        let (ticket, item) = lane.queue.pop_front()?;
        self.heads.remove(&ticket);
        self.len -= 1;
        lane.head = Head::Idle;
        match lane.queue.front() {
            Some(&(next, _)) => {
                self.heads.insert(next);
                self.ready.insert(next, key.clone());
            }
            None => {
                self.lanes.remove(key);
            }
        }
        Some(item)
    }

    /// The head of `key`'s lane failed and will be retried: the lane hands out nothing
    /// until [`Lanes::release`].
    pub fn hold(&mut self, key: &K) {
        if let Some(lane) = self.lanes.get_mut(key) {
            debug_assert_eq!(lane.head, Head::Out, "only an item that is out is held");
            lane.head = Head::Held;
        }
    }

    /// The held head of `key`'s lane may go out again.
    pub fn release(&mut self, key: &K) {
        if let Some(lane) = self.lanes.get_mut(key)
            && lane.head == Head::Held
            && let Some(&(ticket, _)) = lane.queue.front()
        {
            lane.head = Head::Idle;
            self.ready.insert(ticket, key.clone());
        }
    }

    /// Items queued, out or held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Dispatch,
        /// Complete the n-th item out (modulo).
        Complete(usize),
        /// Hold the n-th item out (modulo).
        Hold(usize),
        /// Release the n-th held lane (modulo).
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..6).prop_map(Op::Push),
            3 => Just(Op::Dispatch),
            2 => any::<usize>().prop_map(Op::Complete),
            1 => any::<usize>().prop_map(Op::Hold),
            1 => any::<usize>().prop_map(Op::Release),
        ]
    }

    /// The model's view: per lane, the items not completed yet (the first is the head).
    fn remaining<'a>(
        pushed: &'a BTreeMap<u8, Vec<u32>>,
        completed: &'a BTreeMap<u8, Vec<u32>>,
    ) -> impl Iterator<Item = (u8, &'a [u32])> + 'a {
        pushed.iter().map(|(k, items)| (*k, &items[completed.get(k).map_or(0, Vec::len)..]))
    }

    proptest! {
        /// Against a simple model: per lane, items go out in push order, one at a time;
        /// the oldest ready head goes first, never `lookahead` or more pushes after the
        /// oldest unfinished item; and everything pushed goes out once everything out
        /// completes.
        #[test]
        fn one_out_per_lane_oldest_first_within_the_window(
            lookahead in 1u64..12,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut lanes: Lanes<u8, u32> = Lanes::new(lookahead);
            let mut pushed: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            let mut completed: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            let mut out: Vec<(u8, u32)> = Vec::new();
            let mut held: Vec<u8> = Vec::new();
            let mut next_item = 0u32;
            let mut run = |op: &Op, lanes: &mut Lanes<u8, u32>, out: &mut Vec<(u8, u32)>, held: &mut Vec<u8>| -> Result<(), TestCaseError> {
                match op {
                    Op::Push(k) => {
                        lanes.push(*k, next_item);
                        pushed.entry(*k).or_default().push(next_item);
                        next_item += 1;
                    }
                    Op::Dispatch => {
                        // Items are numbered in push order, so an item is its ticket.
                        let oldest = remaining(&pushed, &completed).filter_map(|(_, r)| r.first().copied()).min();
                        let first_ready = remaining(&pushed, &completed)
                            .filter(|(k, _)| !out.iter().any(|(o, _)| o == k) && !held.contains(k))
                            .filter_map(|(_, r)| r.first().copied())
                            .min();
                        let expected = match (oldest, first_ready) {
                            (Some(oldest), Some(first)) if u64::from(first - oldest) < lookahead => Some(first),
                            _ => None,
                        };
                        let got = lanes.take_ready().map(|(k, item)| (k, *item));
                        prop_assert_eq!(got.map(|(_, item)| item), expected);
                        if let Some((k, item)) = got {
                            prop_assert!(!out.iter().any(|(o, _)| *o == k), "two items of lane {} out", k);
                            prop_assert!(!held.contains(&k), "a held lane handed out");
                            let done = completed.get(&k).map_or(0, Vec::len);
                            prop_assert_eq!(pushed[&k].get(done).copied(), Some(item));
                            out.push((k, item));
                        }
                    }
                    Op::Complete(n) if !out.is_empty() => {
                        let (k, item) = out.remove(n % out.len());
                        prop_assert_eq!(lanes.complete(&k), Some(item));
                        completed.entry(k).or_default().push(item);
                    }
                    Op::Hold(n) if !out.is_empty() => {
                        let (k, _) = out.remove(n % out.len());
                        lanes.hold(&k);
                        held.push(k);
                    }
                    Op::Release(n) if !held.is_empty() => {
                        let k = held.remove(n % held.len());
                        lanes.release(&k);
                    }
                    _ => {}
                }
                Ok(())
            };
            for op in &ops {
                run(op, &mut lanes, &mut out, &mut held)?;
            }
            // Drain: release everything, complete everything.
            while !held.is_empty() {
                run(&Op::Release(0), &mut lanes, &mut out, &mut held)?;
            }
            loop {
                while !out.is_empty() {
                    run(&Op::Complete(0), &mut lanes, &mut out, &mut held)?;
                }
                if !lanes.has_ready() {
                    break;
                }
                run(&Op::Dispatch, &mut lanes, &mut out, &mut held)?;
            }
            prop_assert!(lanes.is_empty());
            prop_assert_eq!(&completed, &pushed);
            let keys: BTreeSet<u8> = pushed.keys().copied().collect();
            prop_assert_eq!(keys.len(), completed.len());
        }
    }

    #[test]
    fn a_held_lane_waits_and_others_go_on() {
        let mut lanes: Lanes<&str, u32> = Lanes::new(16);
        lanes.push("a", 1);
        lanes.push("a", 2);
        lanes.push("b", 3);
        let (k, item) = lanes.take_ready().expect("a is ready");
        assert_eq!((k, *item), ("a", 1));
        lanes.hold(&"a");
        let (k, item) = lanes.take_ready().expect("b is ready");
        assert_eq!((k, *item), ("b", 3));
        assert!(lanes.take_ready().is_none(), "a is held, b is out");
        lanes.release(&"a");
        let (k, item) = lanes.take_ready().expect("a's head again");
        assert_eq!((k, *item), ("a", 1), "the failed item is retried before the next");
        assert_eq!(lanes.complete(&"a"), Some(1));
        let (_, item) = lanes.take_ready().expect("then a's next");
        assert_eq!(*item, 2);
        assert_eq!(lanes.len(), 2);
    }

    #[test]
    fn oldest_head_first_and_nothing_beyond_the_window() {
        let mut lanes: Lanes<&str, u32> = Lanes::new(2);
        for (k, item) in [("a", 0), ("b", 1), ("b", 2), ("c", 3), ("d", 4)] {
            lanes.push(k, item);
        }
        let (k, _) = lanes.take_ready().expect("a");
        assert_eq!(k, "a");
        lanes.hold(&"a");
        let (k, _) = lanes.take_ready().expect("b");
        assert_eq!(k, "b");
        assert!(
            lanes.take_ready().is_none(),
            "c is 3 pushes after a, which is held: beyond the window of 2"
        );
        lanes.release(&"a");
        let (k, item) = lanes.take_ready().expect("a again");
        assert_eq!((k, *item), ("a", 0));
        assert_eq!(lanes.complete(&"a"), Some(0));
        assert_eq!(lanes.complete(&"b"), Some(1));
        let got: Vec<u32> = std::iter::from_fn(|| lanes.take_ready().map(|(_, i)| *i)).collect();
        assert_eq!(got, vec![2, 3], "b's next and c; d is 2 pushes after b's next");
    }
}

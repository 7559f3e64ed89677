//! Per-aggregate order with concurrency across aggregates: the pure scheduling rule
//! the dispatcher follows, with no I/O and no clock.
//!
//! # The invariant
//! Events of one lane (one aggregate: topic and key) are handed out in the order they
//! were pushed, and **at most one event of a lane is out at a time**: the next is handed
//! out only after the previous was [`Lanes::complete`]d (it got its 2xx, or was
//! dead-lettered). While an event waits for a retry ([`Lanes::hold`]) its lane hands
//! out nothing. Different lanes are independent, so a slow or failing aggregate delays
//! only itself.
//!
//! Together with the session's ack tracker (which confirms the slot only over the
//! acknowledged prefix of sequence numbers) this gives per-aggregate commit order to
//! the receiver and never skips an event in the slot.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// What a lane is doing with its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing out: the head (if any) is in the ready queue.
    Idle,
    /// The head was handed out and not completed.
    Out,
    /// The head failed and waits for its retry; [`Lanes::release`] makes it ready again.
    Held,
}

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
    head: Head,
}

/// Queues per lane, and the lanes whose head may go out now, oldest first.
#[derive(Debug)]
pub struct Lanes<K, T> {
    lanes: HashMap<K, Lane<T>>,
    ready: VecDeque<K>,
    len: usize,
}

impl<K, T> Default for Lanes<K, T> {
    fn default() -> Self {
        Self { lanes: HashMap::new(), ready: VecDeque::new(), len: 0 }
    }
}

impl<K: Hash + Eq + Clone, T> Lanes<K, T> {
    /// Appends `item` to `key`'s lane.
    pub fn push(&mut self, key: K, item: T) {
        self.len += 1;
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| Lane { queue: VecDeque::new(), head: Head::Idle });
        lane.queue.push_back(item);
        if lane.queue.len() == 1 && lane.head == Head::Idle {
            self.ready.push_back(key);
        }
    }

    /// Hands out the head of the lane that has waited longest, marking it out.
    pub fn take_ready(&mut self) -> Option<(K, &mut T)> {
        let key = self.ready.pop_front()?;
        let lane = self.lanes.get_mut(&key)?;
        debug_assert_eq!(lane.head, Head::Idle, "a ready lane has nothing out");
        lane.head = Head::Out;
        let item = lane.queue.front_mut()?;
        Some((key, item))
    }

    /// Whether some lane's head may go out now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The head of `key`'s lane (out or held).
    pub fn head_mut(&mut self, key: &K) -> Option<&mut T> {
        self.lanes.get_mut(key)?.queue.front_mut()
    }

    /// The head of `key`'s lane is done: removes and returns it; the lane's next item
    /// becomes ready.
    pub fn complete(&mut self, key: &K) -> Option<T> {
        let lane = self.lanes.get_mut(key)?;
        debug_assert_eq!(lane.head, Head::Out, "only an item that is out completes");
        let item = lane.queue.pop_front()?;
        self.len -= 1;
        lane.head = Head::Idle;
        if lane.queue.is_empty() {
            self.lanes.remove(key);
        } else {
            self.ready.push_back(key.clone());
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
        {
            lane.head = Head::Idle;
            self.ready.push_back(key.clone());
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

    proptest! {
        /// Against a simple model: per lane, items go out in push order, one at a time,
        /// and everything pushed goes out once everything out completes.
        #[test]
        fn one_out_per_lane_in_push_order(ops in proptest::collection::vec(op(), 0..300)) {
            let mut lanes: Lanes<u8, u32> = Lanes::default();
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
                        if let Some((k, item)) = lanes.take_ready() {
                            let item = *item;
                            prop_assert!(!out.iter().any(|(o, _)| *o == k), "two items of lane {} out", k);
                            prop_assert!(!held.contains(&k), "a held lane handed out");
                            // The next item of this lane in push order, after what completed.
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
        let mut lanes: Lanes<&str, u32> = Lanes::default();
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
}

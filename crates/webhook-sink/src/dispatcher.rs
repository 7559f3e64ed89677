//! The task that delivers: it owns the lanes (one queue per aggregate), the requests in
//! flight, the retry timers and the breaker, and turns each outcome into the
//! acknowledgement of its sequence number.
//!
//! ```text
//! sink.send ──Queued──▶ lanes ──(≤ concurrency, breaker closed)──▶ POST ──2xx──▶ Ack Ok
//!                         ▲                                          │ retryable
//!                         └──────── held until the backoff ends ◀────┘
//!                      permanent / attempts used up ──▶ INSERT dead letter ──▶ Ack Refused(+copy)
//! checkpoint ──▶ UPSERT tailbox_checkpoint ──▶ Ack Ok
//! ```
//!
//! A lane's next event goes out only after its head completed, and the oldest event
//! that may go out goes first, never more than [`Policy::lookahead`] events after the
//! oldest one not finished (see [`crate::lanes`]: this keeps what is delivered close to
//! the acknowledged prefix, which bounds what a crash sends again);
//! a dead letter is committed before the head completes, so the aggregate's later
//! events wait for it and the slot cannot pass it unwritten. A failed database write
//! fails that acknowledgement (`Failed`): the session ends and replays from the slot.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use tailbox_sink::{Ack, AckSender, DeliveryError};
use tokio::{
    sync::mpsc::UnboundedReceiver,
    task::{Id, JoinSet},
    time::{Instant, sleep_until},
};
use tracing::{debug, warn};

use crate::{
    WEBHOOK,
    breaker::Breaker,
    http::{Attempt, Http},
    lanes::Lanes,
    request::Prepared,
    retry::{Backoff, Verdict},
    store::{DeadLetter, Store},
};

/// The header the refused copy carries: the id of the dead letter already written, so
/// the sink does not write it twice when the session sends it back.
pub const WRITTEN_HEADER: &str = "webhook_dead_letter_id";

/// One aggregate: the topic (aggregate type) and the key (aggregate id).
pub type LaneKey = (Arc<str>, Bytes);

/// What the sink hands the task.
pub enum Queued {
    /// An event to POST.
    Event {
        /// Its sequence number.
        seq: u64,
        /// Its aggregate.
        lane: LaneKey,
        /// The request.
        event: Box<Prepared>,
    },
    /// A checkpoint record to upsert.
    Checkpoint {
        /// Its sequence number.
        seq: u64,
        /// The owner.
        key: Vec<u8>,
        /// The position.
        value: Vec<u8>,
    },
    /// A dead letter to write (a row that never became an event).
    DeadLetter {
        /// Its sequence number.
        seq: u64,
        /// The letter.
        letter: Box<DeadLetter>,
    },
    /// Acknowledge at once (a dead letter already written).
    Done {
        /// Its sequence number.
        seq: u64,
    },
}

/// An event in its lane.
struct Pending {
    seq: u64,
    event: Arc<Prepared>,
    attempts: u32,
    first_attempt: Option<SystemTime>,
}

/// What a finished job says.
enum Finished {
    Attempt(LaneKey, Attempt),
    DeadLettered(LaneKey, Result<i64, String>),
    Stored(u64, Result<(), String>),
    Checkpointed(u64, Result<(), String>),
}

/// Checkpoint upserts, one at a time in the order they were sent: two in flight at
/// once could commit out of order and leave the older position stored (safe, but it
/// would re-send more after a crash).
#[derive(Default)]
struct Checkpoints {
    writing: bool,
    waiting: std::collections::VecDeque<(u64, Vec<u8>, Vec<u8>)>,
}

impl Checkpoints {
    /// Starts the next write if none is running.
    fn start_next(
        &mut self,
        store: &Arc<Store>,
        jobs: &mut JoinSet<Finished>,
        job_seqs: &mut HashMap<Id, u64>,
    ) {
        if self.writing {
            return;
        }
        let Some((seq, key, value)) = self.waiting.pop_front() else { return };
        self.writing = true;
        let store = Arc::clone(store);
        let handle = jobs.spawn(async move {
            let result = store.write_checkpoint(&key, &value).await.map_err(|e| e.to_string());
            Finished::Checkpointed(seq, result)
        });
        job_seqs.insert(handle.id(), seq);
    }
}

/// Policy of the task.
pub struct Policy {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Attempts before dead-lettering (`None`: unlimited).
    pub max_attempts: Option<u32>,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// An event goes out only if fewer than this many events were queued between the
    /// oldest unfinished one and it (see [`crate::lanes`]).
    pub lookahead: u64,
}

/// Runs until the sink is dropped.
pub async fn run(
    http: Http,
    store: Arc<Store>,
    policy: Policy,
    mut breaker: Breaker,
    mut queue: UnboundedReceiver<Queued>,
    acks: AckSender,
) {
    let mut lanes: Lanes<LaneKey, Pending> = Lanes::new(policy.lookahead);
    let mut checkpoints = Checkpoints::default();
    let mut jobs: JoinSet<Finished> = JoinSet::new();
    // Which sequence number a running job acknowledges, should it panic.
    let mut job_seqs: HashMap<Id, u64> = HashMap::new();
    let mut retries: BinaryHeap<Reverse<(Instant, u64, LaneKey)>> = BinaryHeap::new();
    let mut posts = 0usize;
    loop {
        // Hand out what may go out: lanes with a ready head, room in the pool, and a
        // breaker that lets requests through (half-open: exactly one).
        while posts < policy.concurrency.max(1)
            && lanes.has_ready()
            && breaker.allow(Instant::now())
        {
            let Some((lane, pending)) = lanes.take_ready() else { break };
            pending.attempts += 1;
            let event = Arc::clone(&pending.event);
            let http = http.clone();
            let handle = jobs.spawn(async move {
                let attempt = http.attempt(&event).await;
                Finished::Attempt(lane, attempt)
            });
            job_seqs.insert(handle.id(), pending.seq);
            posts += 1;
        }
        let wake = [retries.peek().map(|Reverse((at, _, _))| *at), breaker.wake_at()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            biased;
            // Outcomes first: they free lanes and pool slots.
            Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                let finished = match done {
                    Ok((id, finished)) => {
                        job_seqs.remove(&id);
                        finished
                    }
                    Err(error) => {
                        // A job panicked: its acknowledgement fails, the session replays.
                        let seq = job_seqs.remove(&error.id()).unwrap_or(u64::MAX);
                        let _ = acks.send(failed(seq, format!("webhook job failed: {error}")));
                        continue;
                    }
                };
                match finished {
                    Finished::Attempt(lane, attempt) => {
                        posts -= 1;
                        on_attempt(&mut lanes, &mut breaker, &mut retries, &mut jobs, &mut job_seqs, &store, &policy, &acks, lane, attempt);
                    }
                    Finished::DeadLettered(lane, result) => {
                        if let Some(pending) = lanes.complete(&lane) {
                            let _ = acks.send(dead_lettered(&pending, result));
                        }
                    }
                    Finished::Stored(seq, result) => {
                        let result = result.map_err(|e| DeliveryError::Failed { source: e.into() });
                        let _ = acks.send(Ack { seq, result, refused: None });
                    }
                    Finished::Checkpointed(seq, result) => {
                        checkpoints.writing = false;
                        checkpoints.start_next(&store, &mut jobs, &mut job_seqs);
                        let result = result.map_err(|e| DeliveryError::Failed { source: e.into() });
                        let _ = acks.send(Ack { seq, result, refused: None });
                    }
                }
            }
            // A retry came due, or the breaker's cool-down ended.
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let now = Instant::now();
                while let Some(Reverse((at, _, _))) = retries.peek() {
                    if *at > now {
                        break;
                    }
                    if let Some(Reverse((_, _, lane))) = retries.pop() {
                        lanes.release(&lane);
                    }
                }
            }
            queued = queue.recv() => match queued {
                Some(Queued::Event { seq, lane, event }) => {
                    let pending = Pending { seq, event: Arc::from(event), attempts: 0, first_attempt: None };
                    lanes.push(lane, pending);
                }
                Some(Queued::Checkpoint { seq, key, value }) => {
                    checkpoints.waiting.push_back((seq, key, value));
                    checkpoints.start_next(&store, &mut jobs, &mut job_seqs);
                }
                Some(Queued::DeadLetter { seq, letter }) => {
                    let store = Arc::clone(&store);
                    let handle = jobs.spawn(async move {
                        let result = store.insert_dead_letter(&letter).await.map(|_| ()).map_err(|e| e.to_string());
                        Finished::Stored(seq, result)
                    });
                    job_seqs.insert(handle.id(), seq);
                }
                Some(Queued::Done { seq }) => {
                    let _ = acks.send(Ack { seq, result: Ok(()), refused: None });
                }
                // The sink is gone: nobody waits for acknowledgements any more.
                None => {
                    debug!("webhook dispatcher done");
                    return;
                }
            },
        }
    }
}

/// One attempt's outcome: acknowledge, schedule a retry, or dead-letter.
#[allow(clippy::too_many_arguments)]
fn on_attempt(
    lanes: &mut Lanes<LaneKey, Pending>,
    breaker: &mut Breaker,
    retries: &mut BinaryHeap<Reverse<(Instant, u64, LaneKey)>>,
    jobs: &mut JoinSet<Finished>,
    job_seqs: &mut HashMap<Id, u64>,
    store: &Arc<Store>,
    policy: &Policy,
    acks: &AckSender,
    lane: LaneKey,
    attempt: Attempt,
) {
    let Some(pending) = lanes.head_mut(&lane) else { return };
    pending.first_attempt.get_or_insert(attempt.at);
    match attempt.verdict {
        Verdict::Delivered => {
            breaker.on_success();
            if let Some(pending) = lanes.complete(&lane) {
                let _ = acks.send(Ack { seq: pending.seq, result: Ok(()), refused: None });
            }
        }
        Verdict::Retry if policy.max_attempts.is_none_or(|max| pending.attempts < max) => {
            breaker.on_failure(Instant::now());
            let delay =
                policy.backoff.delay(pending.attempts, fastrand::f64(), attempt.retry_after);
            warn!(
                lsn = %pending.event.lsn,
                topic = %pending.event.record.topic,
                webhook_id = %pending.event.id,
                attempts = pending.attempts,
                status = attempt.status,
                error = %attempt.error,
                retry_in_ms = delay.as_millis() as u64,
                "webhook delivery failed; the aggregate's later events wait for the retry"
            );
            let seq = pending.seq;
            lanes.hold(&lane);
            retries.push(Reverse((Instant::now() + delay, seq, lane)));
        }
        verdict => {
            if verdict == Verdict::Retry {
                breaker.on_failure(Instant::now());
            } else {
                // A definite answer: the receiver is up.
                breaker.on_success();
            }
            let error = if verdict == Verdict::Retry {
                format!("{} (after {} attempts, the maximum)", attempt.error, pending.attempts)
            } else {
                format!("{} (refused for good)", attempt.error)
            };
            warn!(
                lsn = %pending.event.lsn,
                topic = %pending.event.record.topic,
                webhook_id = %pending.event.id,
                attempts = pending.attempts,
                status = attempt.status,
                "webhook event dead-lettered"
            );
            let letter = letter_for(pending, &attempt, error);
            let seq = pending.seq;
            let store = Arc::clone(store);
            let handle = jobs.spawn(async move {
                let result = store.insert_dead_letter(&letter).await.map_err(|e| e.to_string());
                Finished::DeadLettered(lane, result)
            });
            job_seqs.insert(handle.id(), seq);
        }
    }
}

/// The dead letter of an event the receiver would not take.
fn letter_for(pending: &Pending, attempt: &Attempt, error: String) -> DeadLetter {
    let event = &pending.event;
    let record = &event.record;
    DeadLetter {
        event_id: Some(event.id.clone()),
        topic: Some(record.topic.to_string()),
        url: Some(event.url.clone()),
        aggregate_id: record.key.to_vec(),
        payload: record.value.to_vec(),
        headers: record.headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect(),
        body: Some(event.body.to_vec()),
        content_type: event.content_type.to_str().ok().map(str::to_owned),
        error,
        source_lsn: (!event.lsn.is_empty()).then(|| event.lsn.clone()),
        source_table: None,
        attempts: i32::try_from(pending.attempts).unwrap_or(i32::MAX),
        first_attempt: pending.first_attempt,
        last_attempt: Some(attempt.at),
        response_status: attempt.status.map(i32::from),
        response_body: attempt.body_excerpt.clone(),
    }
}

/// The acknowledgement of a dead-lettered event: refused, with its copy marked as
/// written; or failed, if the dead letter could not be written.
fn dead_lettered(pending: &Pending, written: Result<i64, String>) -> Ack {
    match written {
        Ok(id) => {
            let mut copy = pending.event.refused_copy();
            copy.headers.push((WRITTEN_HEADER.to_owned(), id.to_string().into_bytes()));
            let reason = format!("dead letter {id} in tailbox_dead_letter");
            Ack {
                seq: pending.seq,
                result: Err(DeliveryError::Refused { destination: WEBHOOK, source: reason.into() }),
                refused: Some(Box::new(copy)),
            }
        }
        Err(error) => failed(pending.seq, format!("could not write the dead letter: {error}")),
    }
}

fn failed(seq: u64, why: String) -> Ack {
    Ack { seq, result: Err(DeliveryError::Failed { source: why.into() }), refused: None }
}

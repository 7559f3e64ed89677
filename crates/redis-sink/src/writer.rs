//! The task that owns the writing connection: takes queued commands in order, writes
//! them as `MULTI … EXEC` transactions, and turns each command's reply into an
//! acknowledgement.
//!
//! # Why each batch is one MULTI/EXEC, and why a failed batch ends the writer
//! Entry IDs make a replay harmless only if what reached a stream is a *prefix* of
//! what was sent to it: an entry missing below the stream's top would be refused as
//! "already there" when it comes again, and lost. So:
//! - a batch runs atomically: errors Redis finds while queueing (out of memory,
//!   loading, read-only replica, no permission) abort all of it, never part of it;
//! - errors at run time are per command and permanent (a key of the wrong type): that
//!   record is refused and dead-lettered, not replayed;
//! - once a batch failed as a whole (connection lost, aborted, not durable in time),
//!   nothing after it is written: every later command is failed too, and the session
//!   replays from the slot on a new connection.
//!
//! # Overlapping batches: the body goes early, its EXEC waits for the previous reply
//! Sending one transaction and waiting for its reply before building and sending the
//! next left Redis idle while tailbox read the reply and built the next batch (issue 14:
//! 0.72× pg_recvlogical). So the next batch's `MULTI` and commands go out while the
//! previous one runs, but its `EXEC` is held back:
//!
//! ```text
//! tailbox ──MULTI, body k+1──▶ Redis    queued, not run (replies QUEUED)
//!         ◀────reply of EXEC k─────     k ran: its replies, in order
//!         ──EXEC k+1─────────▶          k+1 runs now…
//!         ──MULTI, body k+2──▶          …while tailbox acknowledges k
//! ```
//!
//! **Invariant: an `EXEC` goes out only after the previous batch's `EXEC` (and its
//! durability wait) replied with success.** A batch that failed as a whole is thus never
//! followed by a later one: the next batch stays queued in a transaction that nobody
//! executes, and Redis discards it when the connection closes. Only the `EXEC` waits for
//! a round trip: the body it runs is parsed and queued by then. The check is `outcome`;
//! `a_batch_aborted_as_a_whole_is_not_followed_by_later_batches` (tests/redis_streams.rs)
//! sends batches behind one that Redis aborts.
//!
//! Requests leave in the order `InFlight::send` is called (it polls each one into the
//! multiplexer's queue before returning). Were a body ever to overtake the `EXEC` before
//! it, Redis would refuse the nested `MULTI` and queue its commands into the earlier
//! transaction, still after that batch's own: the error reply makes the writer stop, and
//! what ran is still a prefix.
//!
//! Sending whole transactions back to back instead (several `EXEC`s in flight) would
//! need a guard in Redis (a script per batch checking a batch counter): measured, a Lua
//! script that does the `XADD`s costs Redis about twice the CPU per entry of `MULTI …
//! EXEC` (7 µs against 3.7 µs with 200-byte payloads), more than the overlap gains on a
//! machine where Redis, PostgreSQL and tailbox share the cores.
//!
//! The writing connection carries these transactions only: a command sent on it while a
//! body is open would be queued in that transaction. Stream claims and the check of a
//! refused entry (`is_our_replay`) use the sink's other connection.

use std::{future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};

use redis::{Cmd, Pipeline, RedisError, Value, aio::MultiplexedConnection};
use tailbox_sink::{Ack, AckSender, DeliveryError};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, warn};

use crate::{
    REDIS,
    claims::{ClaimError, StreamClaims},
    config::{Durability, Trim},
    entry::{VALUE_FIELD, refused_copy, stream_and_id},
};

/// Commands per `MULTI … EXEC` at most. Redis writes (and with `appendfsync always`
/// fsyncs) the append-only file once per `EXEC`: 2,048 instead of 512 took a quarter of
/// the fsyncs and ~13% off the time of writing 200,000 entries (docs/benchmarks.md); the
/// price is ~6 MiB more peak memory in tailbox.
pub const BATCH: usize = 2048;

/// The reply Redis gives an `XADD` whose ID is not above the stream's top entry: the
/// entry is there already (a replay), which counts as delivered.
const ALREADY_THERE: &str = "equal or smaller than the target stream top item";

/// A command waiting to be written.
pub(crate) struct Queued {
    /// Its sequence number.
    pub seq: u64,
    /// The command.
    pub cmd: Cmd,
    /// The stream of an outbox record (dead-lettered if refused); `None` for a
    /// checkpoint.
    pub stream: Option<Arc<str>>,
}

/// Connections and settings of the writer task.
pub(crate) struct Writer {
    /// Carries the transactions and nothing else.
    pub conn: MultiplexedConnection,
    /// For claims and checks of refused entries (never inside a transaction).
    pub side: MultiplexedConnection,
    /// Each batch's acknowledgements, as one message.
    pub acks: AckSender,
    pub durability: Durability,
    pub trim: Option<Trim>,
    pub claims: StreamClaims,
}

/// Writes until the sink is dropped (its sender closes).
pub(crate) async fn run(mut w: Writer, mut queue: UnboundedReceiver<Queued>) {
    let mut broken: Option<Broken> = None;
    // The batch whose EXEC is out, and the one queued behind it (MULTI and body sent,
    // EXEC held back). `open` is only ever set while `running` is.
    let mut running: Option<Running> = None;
    let mut open: Option<Open> = None;
    let mut taking = true;
    loop {
        tokio::select! {
            biased;
            // First the running batch's reply: Redis idles until the next EXEC arrives.
            replies = exec_reply(&mut running), if running.is_some() => {
                let Some(mut done) = running.take() else { continue };
                match outcome(&mut done, replies, w.durability).await {
                    Ok(replies) => {
                        if let Some(next) = open.take() {
                            running = Some(next.exec(&w.conn, w.durability).await);
                            // The body after it goes out with the EXEC: Redis queues it
                            // before the fsync, and waits for nothing but the next EXEC.
                            if let Ok(first) = queue.try_recv() {
                                open = w.open(first, &mut queue, &mut broken).await;
                            }
                            // Let the connection's task write them now, before the
                            // acknowledgements are made.
                            tokio::task::yield_now().await;
                        }
                        w.acknowledge(done.batch, replies).await;
                    }
                    Err(error) => {
                        let records = done.batch.entries.len();
                        warn!(error = %error, records, "Redis batch failed; nothing more is written on this connection");
                        // The batch queued behind it is never executed (its EXEC is not sent).
                        let behind = open.take();
                        let failure = Broken::Failed(error.to_string());
                        let entries = behind.iter().flat_map(|o| &o.batch.entries);
                        let acks = done.batch.entries.iter().chain(entries);
                        let _ = w.acks.send_batch(acks.map(|entry| failure.ack(entry.seq)).collect());
                        broken.get_or_insert(failure);
                    }
                }
            }
            // Then the next batch, queued behind the running one.
            first = queue.recv(), if taking && open.is_none() => {
                let Some(first) = first else {
                    taking = false;
                    continue;
                };
                let Some(next) = w.open(first, &mut queue, &mut broken).await else { continue };
                match &running {
                    Some(_) => open = Some(next),
                    None => running = Some(next.exec(&w.conn, w.durability).await),
                }
            }
            else => break,
        }
    }
    debug!("Redis writer done");
}

/// The running batch's EXEC reply (never called without one).
async fn exec_reply(running: &mut Option<Running>) -> Replies {
    match running {
        Some(running) => running.exec.reply().await,
        None => std::future::pending().await,
    }
}

/// Replies of a request (a pipeline that keeps per-command errors as values).
type Replies = Result<Vec<Value>, RedisError>;

/// A command of a batch (its `Cmd` went into the batch's pipeline).
struct Entry {
    seq: u64,
    stream: Option<Arc<str>>,
}

/// Up to [`BATCH`] commands: `MULTI` and the commands, as one pipeline.
struct Batch {
    body: Arc<Pipeline>,
    entries: Vec<Entry>,
}

impl Batch {
    /// `first` and what else is queued now, up to [`BATCH`].
    fn gather(first: Queued, queue: &mut UnboundedReceiver<Queued>) -> Self {
        // Room for `MULTI` and every command it will take (one allocation, no growing).
        let commands = (1 + queue.len()).min(BATCH);
        let mut body = Pipeline::with_capacity(1 + commands);
        body.ignore_errors().cmd("MULTI");
        let mut entries = Vec::with_capacity(commands);
        let mut next = Some(first);
        while let Some(Queued { seq, cmd, stream }) = next {
            body.add_command(cmd);
            entries.push(Entry { seq, stream });
            next = if entries.len() < BATCH { queue.try_recv().ok() } else { None };
        }
        Self { body: Arc::new(body), entries }
    }

    /// The commands, in the order of `entries`.
    fn cmds(&self) -> impl Iterator<Item = &Cmd> {
        self.body.cmd_iter().skip(1)
    }
}

/// A batch whose `MULTI` and commands are sent, its `EXEC` not yet.
struct Open {
    batch: Batch,
    queued: InFlight,
}

impl Open {
    async fn send(conn: &MultiplexedConnection, batch: Batch) -> Self {
        let queued = InFlight::send(conn, Arc::clone(&batch.body)).await;
        Self { batch, queued }
    }

    /// Sends the `EXEC` (and the durability wait). Only once the previous batch
    /// succeeded: see the module doc.
    async fn exec(self, conn: &MultiplexedConnection, durability: Durability) -> Running {
        let mut pipe = redis::pipe();
        pipe.ignore_errors().cmd("EXEC");
        if let Some(wait) = durability_wait(durability) {
            pipe.add_command(wait);
        }
        let exec = InFlight::send(conn, Arc::new(pipe)).await;
        Running { batch: self.batch, queued: self.queued, exec }
    }
}

/// A batch whose `EXEC` is sent.
struct Running {
    batch: Batch,
    queued: InFlight,
    exec: InFlight,
}

/// Each command's reply if the batch ran and is as durable as asked; an error if it
/// failed as a whole (then nothing after it may run: see the module doc).
async fn outcome(
    done: &mut Running,
    exec: Replies,
    durability: Durability,
) -> Result<Vec<Result<Value, RedisError>>, RedisError> {
    let expected = done.batch.entries.len();
    // Replies come in request order: the body's came before the EXEC's we hold.
    let queued = done.queued.reply().await?;
    // A command refused while queueing (OOM, READONLY, NOPERM, …) aborts the EXEC;
    // its own error says more than EXECABORT.
    if let Some(Value::ServerError(error)) =
        queued.iter().find(|v| matches!(v, Value::ServerError(_)))
    {
        return Err(error.clone().into());
    }
    if queued.len() != expected + 1 {
        return Err(unexpected("MULTI and its commands got a different number of replies"));
    }
    let mut exec = exec?.into_iter();
    let replies = match exec.next() {
        Some(Value::Array(replies)) if replies.len() == expected => replies,
        Some(Value::ServerError(error)) => return Err(error.into()),
        Some(_) => return Err(unexpected("EXEC returned a different number of replies")),
        None => return Err(unexpected("no reply to EXEC")),
    };
    check_durable(durability, exec.next())?;
    Ok(replies
        .into_iter()
        .map(|reply| match reply {
            Value::ServerError(error) => Err(error.into()),
            value => Ok(value),
        })
        .collect())
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::UnexpectedReturnType, what))
}

/// A request handed to the connection whose reply has not been read yet.
struct InFlight {
    reply: Pin<Box<dyn Future<Output = Replies> + Send>>,
    /// The reply, if the first poll already had it (a closed connection).
    done: Option<Replies>,
}

impl InFlight {
    /// Hands `pipe` to the connection before returning, so that requests go out in the
    /// order of these calls: the first poll queues it in the multiplexer's channel
    /// (`unconstrained`, so tokio's cooperative budget cannot stop that poll early).
    async fn send(conn: &MultiplexedConnection, pipe: Arc<Pipeline>) -> Self {
        let mut conn = conn.clone();
        let request = async move { pipe.query_async::<Vec<Value>>(&mut conn).await };
        let mut reply: Pin<Box<dyn Future<Output = Replies> + Send>> =
            Box::pin(tokio::task::unconstrained(request));
        let mut done = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(replies) = reply.as_mut().poll(cx) {
                done = Some(replies);
            }
            Poll::Ready(())
        })
        .await;
        Self { reply, done }
    }

    /// The reply (cancel-safe; once).
    async fn reply(&mut self) -> Replies {
        match self.done.take() {
            Some(replies) => replies,
            None => self.reply.as_mut().await,
        }
    }
}

/// The wait after `EXEC` that the durability setting asks for.
fn durability_wait(durability: Durability) -> Option<Cmd> {
    let millis = |t: Duration| t.as_millis().min(u128::from(u32::MAX)) as u64;
    match durability {
        Durability::Reply => None,
        Durability::Replicas { replicas, timeout } => {
            Some(redis::cmd("WAIT").arg(replicas).arg(millis(timeout)).clone())
        }
        Durability::Aof { replicas, timeout } => {
            Some(redis::cmd("WAITAOF").arg(1).arg(replicas).arg(millis(timeout)).clone())
        }
    }
}

/// Whether the batch is as durable as asked; an error if it is not within the timeout
/// (the batch then counts as failed and is replayed: its entries are refused as already
/// there where they are).
fn check_durable(durability: Durability, reply: Option<Value>) -> Result<(), RedisError> {
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    match (durability, reply) {
        (Durability::Reply, _) => Ok(()),
        (_, Some(Value::ServerError(error))) => Err(error.into()),
        (Durability::Replicas { replicas, .. }, Some(reply)) => {
            let acked = int(&reply).ok_or_else(|| unexpected("WAIT did not return a number"))?;
            if acked < i64::from(replicas) {
                return Err(not_durable(format!(
                    "WAIT: {acked} of {replicas} replicas have the batch"
                )));
            }
            Ok(())
        }
        (Durability::Aof { replicas, .. }, Some(Value::Array(counts))) => {
            let (Some(local), Some(remote)) =
                (counts.first().and_then(int), counts.get(1).and_then(int))
            else {
                return Err(unexpected("WAITAOF did not return two numbers"));
            };
            if local < 1 || remote < i64::from(replicas) {
                return Err(not_durable(format!(
                    "WAITAOF: fsynced locally {local}, on {remote} of {replicas} replicas"
                )));
            }
            Ok(())
        }
        (_, _) => Err(unexpected("no reply to the durability wait")),
    }
}

fn not_durable(detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "batch not durable in time", detail))
}

/// Why nothing more is written on this connection.
enum Broken {
    /// A batch failed (transient: the session replays from the slot).
    Failed(String),
    /// A stream belongs to another tailbox (a person must decide).
    Conflict(String),
}

impl Broken {
    fn ack(&self, seq: u64) -> Ack {
        match self {
            Broken::Failed(why) => failed(seq, why),
            Broken::Conflict(reason) => Ack {
                seq,
                result: Err(DeliveryError::Conflict { destination: REDIS, reason: reason.clone() }),
                refused: None,
            },
        }
    }
}

impl Writer {
    /// Gathers `first` and what else is queued into a batch, claims its streams and sends
    /// its `MULTI` and commands; `None` once broken (the batch's records are failed).
    async fn open(
        &mut self,
        first: Queued,
        queue: &mut UnboundedReceiver<Queued>,
        broken: &mut Option<Broken>,
    ) -> Option<Open> {
        let batch = Batch::gather(first, queue);
        if broken.is_none()
            && let Err(why) = self.claim(&batch).await
        {
            *broken = Some(why);
        }
        if let Some(broken) = broken {
            let _ = self
                .acks
                .send_batch(batch.entries.iter().map(|entry| broken.ack(entry.seq)).collect());
            return None;
        }
        Some(Open::send(&self.conn, batch).await)
    }

    /// Claims the batch's streams (on the side connection).
    async fn claim(&mut self, batch: &Batch) -> Result<(), Broken> {
        let streams = batch.entries.iter().filter_map(|e| e.stream.as_ref());
        match self.claims.claim_streams(&mut self.side, streams).await {
            Ok(()) => Ok(()),
            Err(ClaimError::Conflict(reason)) => Err(Broken::Conflict(reason)),
            Err(ClaimError::Redis(error)) => {
                warn!(error = %error, "claiming a Redis stream failed; nothing more is written on this connection");
                Err(Broken::Failed(error.to_string()))
            }
        }
    }

    /// The acknowledgements of a batch that ran.
    async fn acknowledge(&mut self, batch: Batch, replies: Vec<Result<Value, RedisError>>) {
        let mut acks = Vec::with_capacity(batch.entries.len());
        for ((entry, cmd), reply) in batch.entries.iter().zip(batch.cmds()).zip(replies) {
            acks.push(self.ack(entry, cmd, reply).await);
        }
        let _ = self.acks.send_batch(acks);
    }

    /// The acknowledgement of one command from its reply.
    async fn ack(&mut self, entry: &Entry, cmd: &Cmd, reply: Result<Value, RedisError>) -> Ack {
        let seq = entry.seq;
        let Err(error) = reply else { return Ack { seq, result: Ok(()), refused: None } };
        if error.detail().is_some_and(|d| d.contains(ALREADY_THERE))
            || error.to_string().contains(ALREADY_THERE)
        {
            return match is_our_replay(&mut self.side, cmd, self.trim).await {
                Ok(true) => {
                    debug!(seq, "entry already in its stream (a replay): counted as delivered");
                    Ack { seq, result: Ok(()), refused: None }
                }
                // Not ours: counting it as delivered would skip the event. Fail (the slot
                // holds) and say why.
                Ok(false) => failed(
                    seq,
                    "the stream already holds entries past this event's ID that tailbox did not write \
                     for it: another database or writer publishes to the same stream (entry IDs are \
                     this database's WAL positions); fix: give each database streams of its own \
                     (topic_template, dlq_topic)",
                ),
                Err(e) => failed(seq, &format!("checking a refused entry: {e}")),
            };
        }
        // Inside EXEC only run-time errors reach single commands, and those are about the
        // command itself (a key holding another type): refused for good.
        let result = Err(DeliveryError::Refused { destination: REDIS, source: Box::new(error) });
        let refused = entry.stream.is_some().then(|| Box::new(refused_copy(cmd, self.trim)));
        Ack { seq, result, refused }
    }
}

/// An entry's fields as XRANGE returns them.
type Fields = Vec<(String, Vec<u8>)>;

/// Whether the entry Redis refused as "not above the top" is this very event, written
/// before (a replay): the stream holds an entry with its ID whose `lsn`, `xid` and
/// payload are the event's. Anything else (no such entry, other values) is another
/// writer's, and counting the event as delivered would lose it.
async fn is_our_replay(
    conn: &mut MultiplexedConnection,
    cmd: &Cmd,
    trim: Option<Trim>,
) -> Result<bool, RedisError> {
    let Some((stream, id)) = stream_and_id(cmd, trim) else { return Ok(false) };
    let entries: Vec<(String, Fields)> =
        redis::cmd("XRANGE").arg(&stream).arg(&id).arg(&id).query_async(conn).await?;
    let Some((_, stored)) = entries.first() else { return Ok(false) };
    let ours = refused_copy(cmd, trim);
    let field = |fields: &[(String, Vec<u8>)], name: &str| {
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    let stored_value = field(stored, VALUE_FIELD);
    Ok(["lsn", "xid"].iter().all(|name| field(stored, name) == field(&ours.headers, name))
        && stored_value == ours.value)
}

fn failed(seq: u64, why: &str) -> Ack {
    let source = format!("Redis batch failed: {why}").into();
    Ack { seq, result: Err(DeliveryError::Failed { source }), refused: None }
}

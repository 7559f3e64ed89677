//! The task that owns the connection: takes queued commands in order, writes them as
//! `MULTI … EXEC` batches, and turns each command's reply into an acknowledgement.
//!
//! # Why each batch is one MULTI/EXEC, and why a failed batch ends the writer
//! Entry IDs make a replay harmless only if what reached a stream is a *prefix* of
//! what was sent to it: an entry missing below the stream's top would be refused as
//! "already there" when it comes again, and lost. So:
//! - a batch runs atomically: errors Redis finds while queueing (out of memory,
//!   loading, read-only replica) abort all of it, never part of it;
//! - errors at run time are per command and permanent (a key of the wrong type): that
//!   record is refused and dead-lettered, not replayed;
//! - once a batch failed as a whole (connection lost, aborted), nothing after it is
//!   written: every later command is failed too, and the session replays from the slot
//!   on a new connection.

use std::{sync::Arc, time::Duration};

use redis::{Cmd, RedisError, Value, aio::MultiplexedConnection};
use tailbox_sink::{Ack, DeliveryError};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::{debug, warn};

use crate::{
    REDIS,
    claims::{ClaimError, StreamClaims},
    config::{Durability, Trim},
    entry::{VALUE_FIELD, refused_copy, stream_and_id},
};

/// Commands per `MULTI … EXEC` at most.
pub const BATCH: usize = 512;

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

/// Writes until the sink is dropped (its sender closes).
pub(crate) async fn run(
    mut conn: MultiplexedConnection,
    mut queue: UnboundedReceiver<Queued>,
    acks: UnboundedSender<Ack>,
    durability: Durability,
    trim: Option<Trim>,
    mut claims: StreamClaims,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH);
    let mut broken: Option<Broken> = None;
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if broken.is_none() {
            match claims.claim_streams(&mut conn, &batch).await {
                Ok(()) => {}
                Err(ClaimError::Conflict(reason)) => broken = Some(Broken::Conflict(reason)),
                Err(ClaimError::Redis(error)) => {
                    warn!(error = %error, "claiming a Redis stream failed; nothing more is written on this connection");
                    broken = Some(Broken::Failed(error.to_string()));
                }
            }
        }
        if let Some(broken) = &broken {
            for queued in batch.drain(..) {
                let _ = acks.send(broken.ack(queued.seq));
            }
            continue;
        }
        match write(&mut conn, &batch, durability).await {
            Ok(replies) => {
                for (queued, reply) in batch.drain(..).zip(replies) {
                    let _ = acks.send(ack(&mut conn, queued, reply, trim).await);
                }
            }
            Err(error) => {
                warn!(error = %error, records = batch.len(), "Redis batch failed; nothing more is written on this connection");
                let why = error.to_string();
                for queued in batch.drain(..) {
                    let _ = acks.send(failed(queued.seq, &why));
                }
                broken = Some(Broken::Failed(why));
            }
        }
    }
    debug!("Redis writer done");
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

/// One batch: `MULTI`, the commands, `EXEC`, then the durability wait.
async fn write(
    conn: &mut MultiplexedConnection,
    batch: &[Queued],
    durability: Durability,
) -> Result<Vec<Result<Value, RedisError>>, RedisError> {
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    for queued in batch {
        pipe.add_command(queued.cmd.clone());
    }
    let replies: Vec<Result<Value, RedisError>> = pipe.query_async(conn).await?;
    if replies.len() != batch.len() {
        return Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "EXEC returned a different number of replies",
        )));
    }
    wait_for(conn, durability).await?;
    Ok(replies)
}

/// Waits until the batch is as durable as asked; an error if it is not within the
/// timeout (the batch then counts as failed and is replayed: its entries are refused as
/// already there where they are).
async fn wait_for(
    conn: &mut MultiplexedConnection,
    durability: Durability,
) -> Result<(), RedisError> {
    let millis = |t: Duration| t.as_millis().min(u128::from(u32::MAX)) as u64;
    match durability {
        Durability::Reply => Ok(()),
        Durability::Replicas { replicas, timeout } => {
            let acked: i64 =
                redis::cmd("WAIT").arg(replicas).arg(millis(timeout)).query_async(conn).await?;
            if acked < i64::from(replicas) {
                return Err(not_durable(format!(
                    "WAIT: {acked} of {replicas} replicas have the batch"
                )));
            }
            Ok(())
        }
        Durability::Aof { replicas, timeout } => {
            let (local, remote): (i64, i64) = redis::cmd("WAITAOF")
                .arg(1)
                .arg(replicas)
                .arg(millis(timeout))
                .query_async(conn)
                .await?;
            if local < 1 || remote < i64::from(replicas) {
                return Err(not_durable(format!(
                    "WAITAOF: fsynced locally {local}, on {remote} of {replicas} replicas"
                )));
            }
            Ok(())
        }
    }
}

fn not_durable(detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "batch not durable in time", detail))
}

/// The acknowledgement of one command from its reply.
async fn ack(
    conn: &mut MultiplexedConnection,
    queued: Queued,
    reply: Result<Value, RedisError>,
    trim: Option<Trim>,
) -> Ack {
    let seq = queued.seq;
    let Err(error) = reply else { return Ack { seq, result: Ok(()), refused: None } };
    if error.detail().is_some_and(|d| d.contains(ALREADY_THERE))
        || error.to_string().contains(ALREADY_THERE)
    {
        return match is_our_replay(conn, &queued, trim).await {
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
    // command itself (a key holding another type, no permission): refused for good.
    let result = Err(DeliveryError::Refused { destination: REDIS, source: Box::new(error) });
    let refused = queued.stream.is_some().then(|| Box::new(refused_copy(&queued.cmd, trim)));
    Ack { seq, result, refused }
}

/// An entry's fields as XRANGE returns them.
type Fields = Vec<(String, Vec<u8>)>;

/// Whether the entry Redis refused as "not above the top" is this very event, written
/// before (a replay): the stream holds an entry with its ID whose `lsn`, `xid` and
/// payload are the event's. Anything else (no such entry, other values) is another
/// writer's, and counting the event as delivered would lose it.
async fn is_our_replay(
    conn: &mut MultiplexedConnection,
    queued: &Queued,
    trim: Option<Trim>,
) -> Result<bool, RedisError> {
    let Some((stream, id)) = stream_and_id(&queued.cmd, trim) else { return Ok(false) };
    let entries: Vec<(String, Fields)> =
        redis::cmd("XRANGE").arg(&stream).arg(&id).arg(&id).query_async(conn).await?;
    let Some((_, stored)) = entries.first() else { return Ok(false) };
    let ours = refused_copy(&queued.cmd, trim);
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

//! The Redis sink against a real `redis-server`: order, IDs, a replay refused by Redis,
//! refusals with a copy, checkpoints, backpressure, a lost server, durability waits.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use redis::Value;
use tailbox_e2e::RedisServer;
use tailbox_outbox::OutboxRecord;
use tailbox_redis_sink::{Durability, RedisSink, RedisSinkConfig, Trim, writer::BATCH};
use tailbox_sink::{Ack, DeliveryError, EventMeta, SendOutcome, Sink};

/// The checkpoint owner the sinks of these tests write for.
const OWNER: &str = "42/tailbox/app";

fn config(server: &RedisServer) -> RedisSinkConfig {
    RedisSinkConfig {
        connection: tailbox_redis_sink::parse_url(&server.url(), None).expect("a valid URL"),
        ca_pem: None,
        checkpoint_key: "tailbox.checkpoints".into(),
        max_buffered: 10_000,
        durability: Durability::Reply,
        trim: None,
    }
}

fn record(stream: &str, key: &str, n: u32) -> OutboxRecord {
    OutboxRecord {
        topic: Arc::from(stream),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from(format!("{{\"n\":{n}}}")),
        headers: vec![(Arc::from("id"), Bytes::from(n.to_string()))],
        meta: tailbox_outbox::MetaHeaders::default(),
    }
}

fn meta(commit_lsn: u64, xid: u32) -> EventMeta {
    let mut meta = EventMeta::default();
    meta.reset(commit_lsn.into(), xid, 1_700_000_000_000_000);
    meta
}

/// The transactions of the scenario: (commit LSN, [(stream, n)]).
fn transactions() -> Vec<(u64, Vec<(&'static str, u32)>)> {
    vec![
        (0x100, vec![("orders", 1), ("orders", 2), ("users", 3)]),
        (0x200, vec![("users", 4)]),
        (0x300, vec![("orders", 5), ("users", 6)]),
    ]
}

/// Sends `txns` and returns every acknowledgement, in sequence order.
async fn send_all(sink: &mut RedisSink, txns: &[(u64, Vec<(&str, u32)>)]) -> Result<Vec<Ack>> {
    let mut sent = 0;
    for (lsn, records) in txns {
        let meta = meta(*lsn, *lsn as u32);
        for (stream, n) in records {
            let outcome = sink.send(&record(stream, "k", *n), Some(&meta))?;
            ensure!(matches!(outcome, SendOutcome::Enqueued(_)), "room for everything");
            sent += 1;
        }
    }
    take_acks(sink, sent).await
}

async fn take_acks(sink: &mut RedisSink, n: usize) -> Result<Vec<Ack>> {
    let mut acks = Vec::new();
    for _ in 0..n {
        acks.push(
            tokio::time::timeout(Duration::from_secs(10), sink.next_ack())
                .await
                .context("no acknowledgement within 10 s")?,
        );
    }
    acks.sort_by_key(|a| a.seq);
    Ok(acks)
}

async fn client(server: &RedisServer) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(server.url())?
        .get_multiplexed_async_connection_with_config(&slow_reads())
        .await?)
}

/// (id, field map) of every entry of `stream`.
async fn entries(
    server: &RedisServer,
    stream: &str,
) -> Result<Vec<(String, Vec<(String, String)>)>> {
    let mut conn = client(server).await?;
    let raw: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut conn).await?;
    Ok(raw)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn entries_arrive_in_commit_order_and_a_replay_is_refused_by_redis() -> Result<()> {
    let server = RedisServer::start()?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    let acks = send_all(&mut sink, &transactions()).await?;
    ensure!(acks.iter().all(|a| a.result.is_ok()), "{acks:?}");
    let orders = entries(&server, "orders").await?;
    let ids: Vec<&str> = orders.iter().map(|(id, _)| id.as_str()).collect();
    ensure!(ids == ["256-0", "256-1", "768-0"], "IDs are <commit LSN>-<position>: {ids:?}");
    let (_, first) = &orders[0];
    ensure!(field(first, "aggregateid") == Some("k"));
    ensure!(field(first, "payload") == Some("{\"n\":1}"));
    ensure!(field(first, "id") == Some("1"));
    ensure!(field(first, "lsn") == Some("0/100") && field(first, "xid") == Some("256"));
    ensure!(field(first, "commit_ts") == Some("1700000000000000"));
    drop(sink);

    // A restart replays from the slot: the same transactions again, then a new one.
    let mut replay = RedisSink::connect(&config(&server), OWNER).await?;
    let mut again = transactions();
    again.push((0x400, vec![("orders", 7)]));
    let acks = send_all(&mut replay, &again).await?;
    ensure!(
        acks.iter().all(|a| a.result.is_ok()),
        "a replayed entry counts as delivered: {acks:?}"
    );
    let payloads: Vec<String> = entries(&server, "orders")
        .await?
        .iter()
        .map(|(_, f)| field(f, "payload").unwrap_or_default().to_owned())
        .collect();
    ensure!(
        payloads == ["{\"n\":1}", "{\"n\":2}", "{\"n\":5}", "{\"n\":7}"],
        "no duplicates: {payloads:?}"
    );
    ensure!(entries(&server, "users").await?.len() == 3);
    Ok(())
}

#[tokio::test]
async fn a_key_of_another_type_refuses_the_record_with_a_copy_and_the_rest_goes_on() -> Result<()> {
    let server = RedisServer::start()?;
    let mut conn = client(&server).await?;
    let _: () = redis::cmd("SET").arg("taken").arg("a string").query_async(&mut conn).await?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    let txns = vec![(0x100, vec![("orders", 1), ("taken", 2), ("orders", 3)])];
    let acks = send_all(&mut sink, &txns).await?;
    ensure!(acks[0].result.is_ok() && acks[2].result.is_ok(), "{acks:?}");
    let refused = &acks[1];
    ensure!(refused.result.as_ref().is_err_and(|e| e.is_refused()), "{refused:?}");
    let copy = refused.refused.as_deref().context("a copy for the dead letters")?;
    ensure!(copy.topic == "taken" && copy.value.as_deref() == Some(b"{\"n\":2}".as_slice()));
    ensure!(entries(&server, "orders").await?.len() == 2);
    Ok(())
}

#[tokio::test]
async fn checkpoints_are_kept_in_a_hash() -> Result<()> {
    let server = RedisServer::start()?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    sink.send_checkpoint(b"42/tailbox/app", b"{\"lsn\":\"0/10\"}")?;
    sink.send_checkpoint(b"42/tailbox/app", b"{\"lsn\":\"0/20\"}")?;
    sink.send_checkpoint(b"43/tailbox/app", b"{\"lsn\":\"0/30\"}")?;
    let acks = take_acks(&mut sink, 3).await?;
    ensure!(acks.iter().all(|a| a.result.is_ok()));
    let mut other = RedisSink::connect(&config(&server), OWNER).await?;
    let read = other.read_checkpoints().await?;
    ensure!(read.len() == 2);
    ensure!(
        read.get(b"42/tailbox/app".as_slice()).map(Vec::as_slice)
            == Some(b"{\"lsn\":\"0/20\"}".as_slice())
    );
    Ok(())
}

#[tokio::test]
async fn a_full_buffer_blocks_until_acknowledgements_come() -> Result<()> {
    let server = RedisServer::start()?;
    let mut cfg = config(&server);
    cfg.max_buffered = 2;
    let mut sink = RedisSink::connect(&cfg, OWNER).await?;
    let m = meta(0x100, 1);
    ensure!(matches!(sink.send(&record("s", "k", 1), Some(&m))?, SendOutcome::Enqueued(0)));
    ensure!(matches!(sink.send(&record("s", "k", 2), Some(&m))?, SendOutcome::Enqueued(1)));
    ensure!(sink.send(&record("s", "k", 3), Some(&m))? == SendOutcome::Blocked);
    take_acks(&mut sink, 1).await?;
    ensure!(matches!(sink.send(&record("s", "k", 3), Some(&m))?, SendOutcome::Enqueued(2)));
    take_acks(&mut sink, 2).await?;
    ensure!(entries(&server, "s").await?.len() == 3);
    Ok(())
}

#[tokio::test]
async fn a_lost_server_fails_what_is_in_flight_and_everything_after() -> Result<()> {
    let mut server = RedisServer::start()?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    send_all(&mut sink, &[(0x100, vec![("s", 1)])]).await?;
    server.kill()?;
    let acks = send_all(&mut sink, &[(0x200, vec![("s", 2), ("s", 3)])]).await?;
    ensure!(acks.iter().all(|a| a.result.as_ref().is_err_and(|e| !e.is_refused())), "{acks:?}");
    server.start_again()?;
    // The same sink never writes again on a broken connection (a gap would follow).
    let acks = send_all(&mut sink, &[(0x300, vec![("s", 4)])]).await?;
    ensure!(acks[0].result.is_err(), "{acks:?}");
    ensure!(entries(&server, "s").await?.len() == 1, "the acknowledged entry survived the kill");
    Ok(())
}

#[tokio::test]
async fn waiting_for_replicas_that_are_not_there_fails_the_batch() -> Result<()> {
    let server = RedisServer::start()?;
    let mut cfg = config(&server);
    cfg.durability = Durability::Replicas { replicas: 1, timeout: Duration::from_millis(100) };
    let mut sink = RedisSink::connect(&cfg, OWNER).await?;
    let acks = send_all(&mut sink, &[(0x100, vec![("s", 1)])]).await?;
    ensure!(acks[0].result.as_ref().is_err_and(|e| !e.is_refused()), "not durable: {acks:?}");
    // The entry is there, and a replay (on a new connection) is refused as present.
    ensure!(entries(&server, "s").await?.len() == 1);
    Ok(())
}

#[tokio::test]
async fn trimming_keeps_about_the_last_entries() -> Result<()> {
    let server = RedisServer::start()?;
    let mut cfg = config(&server);
    cfg.trim = Some(Trim::MaxLen(10));
    let mut sink = RedisSink::connect(&cfg, OWNER).await?;
    let txns: Vec<(u64, Vec<(&str, u32)>)> =
        (1..=300u32).map(|n| (u64::from(n) * 0x100, vec![("s", n)])).collect();
    send_all(&mut sink, &txns).await?;
    let mut conn = client(&server).await?;
    let len: i64 = redis::cmd("XLEN").arg("s").query_async(&mut conn).await?;
    ensure!(len < 300, "trimmed (approximately) to about 10: {len}");
    let _: Value = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// The test reader's connection: a whole stream per reply may take a while on a busy
/// machine (redis-rs gives up after 500 ms by default).
fn slow_reads() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)))
}

/// Another database (or writer) publishing to the same stream puts its own WAL positions
/// there as IDs: our event is refused as "not above the top", but it is not ours, so it
/// must not count as delivered (that would skip it): the batch fails and the slot holds.
#[tokio::test]
async fn a_stream_shared_with_another_writer_fails_instead_of_skipping() -> Result<()> {
    let server = RedisServer::start()?;
    let mut conn = client(&server).await?;
    let _: String = redis::cmd("XADD")
        .arg("shared")
        .arg("99999-0")
        .arg("payload")
        .arg("theirs")
        .query_async(&mut conn)
        .await?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    let acks = send_all(&mut sink, &[(0x100, vec![("shared", 1)])]).await?;
    let result = &acks[0].result;
    ensure!(result.as_ref().is_err_and(|e| !e.is_refused()), "not delivered, retried: {acks:?}");
    ensure!(format!("{result:?}").contains("another database or writer"), "{result:?}");
    ensure!(entries(&server, "shared").await?.len() == 1, "nothing of ours was counted as there");
    Ok(())
}

#[tokio::test]
async fn a_stream_claimed_by_another_owner_is_not_written() -> Result<()> {
    let server = RedisServer::start()?;
    let mut sink = RedisSink::connect(&config(&server), OWNER).await?;
    let acks = send_all(&mut sink, &transactions()[..1]).await?;
    ensure!(acks.iter().all(|a| a.result.is_ok()), "{acks:?}");
    let mut other = RedisSink::connect(&config(&server), "7/tailbox/other").await?;
    let acks = send_all(&mut other, &transactions()[1..]).await?;
    ensure!(
        acks.iter().all(|a| matches!(&a.result, Err(DeliveryError::Conflict { reason, .. })
            if reason.contains("stream users is written by another tailbox (42/tailbox/app"))),
        "{acks:?}"
    );
    ensure!(acks.iter().all(|a| a.result.as_ref().is_err_and(|e| !e.is_transient())));
    let users = entries(&server, "users").await?;
    ensure!(users.len() == 1, "nothing written after the conflict: {users:?}");
    Ok(())
}

/// Batches overlap: the next batch's `MULTI` and commands go out while the previous one
/// runs, its `EXEC` only once the previous one succeeded. A batch Redis aborts as a whole
/// (here: a command refused while queueing, an `XADD` to a stream this user may not
/// write) must not be followed by the batches sent behind it: they would leave a gap
/// below the stream's top, and the gap's entries would be refused as "already there"
/// when replayed, and lost.
#[tokio::test]
async fn a_batch_aborted_as_a_whole_is_not_followed_by_later_batches() -> Result<()> {
    let server = RedisServer::start()?;
    let mut admin = client(&server).await?;
    let limited = ["SETUSER", "limited", "on", ">pw", "~s", "~tailbox.*", "+@all"];
    let _: () = redis::cmd("ACL").arg(&limited).query_async(&mut admin).await?;
    let mut cfg = config(&server);
    let url = server.url().replace("redis://", "redis://limited:pw@");
    cfg.connection = tailbox_redis_sink::parse_url(&url, None).map_err(anyhow::Error::msg)?;

    // Four batches' worth, queued before the writer runs: batches of BATCH records, the
    // second one holding the record for the forbidden stream.
    let forbidden_at = BATCH + 10;
    let txns: Vec<(u64, Vec<(&str, u32)>)> = (0..4 * BATCH)
        .map(|i| {
            let stream = if i == forbidden_at { "forbidden" } else { "s" };
            ((i as u64 + 1) * 0x100, vec![(stream, i as u32)])
        })
        .collect();
    let mut sink = RedisSink::connect(&cfg, OWNER).await?;
    let acks = send_all(&mut sink, &txns).await?;
    ensure!(acks[..BATCH].iter().all(|a| a.result.is_ok()), "the first batch ran");
    let later = &acks[BATCH..];
    ensure!(
        later.iter().all(|a| a.result.as_ref().is_err_and(|e| e.is_transient())),
        "the aborted batch and every later one fail, to be replayed: {:?}",
        later.iter().find(|a| !a.result.as_ref().is_err_and(|e| e.is_transient()))
    );
    ensure!(
        format!("{:?}", later[0].result).contains("no permissions"),
        "the batch's own error: {:?}",
        later[0].result
    );
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut admin).await?;
    let multis = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_multi:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse::<u32>().ok())
        .context("MULTI calls in INFO commandstats")?;
    ensure!(multis >= 3, "the third batch was sent behind the aborted one ({multis} MULTIs)");
    let ids: Vec<String> = entries(&server, "s").await?.into_iter().map(|(id, _)| id).collect();
    let first_batch: Vec<String> = (0..BATCH).map(|i| format!("{}-0", (i + 1) * 0x100)).collect();
    ensure!(ids == first_batch, "only the first batch is in: {} entries", ids.len());
    drop(sink);

    // Allowed now; the session replays from the slot: everything arrives, once, in order.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("limited")
        .arg("~forbidden")
        .query_async(&mut admin)
        .await?;
    let mut replay = RedisSink::connect(&cfg, OWNER).await?;
    let acks = send_all(&mut replay, &txns).await?;
    ensure!(acks.iter().all(|a| a.result.is_ok()), "{:?}", acks.iter().find(|a| a.result.is_err()));
    let payloads: Vec<String> = entries(&server, "s")
        .await?
        .iter()
        .map(|(_, f)| field(f, "payload").unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> =
        (0..4 * BATCH).filter(|i| *i != forbidden_at).map(|i| format!("{{\"n\":{i}}}")).collect();
    ensure!(payloads == expected, "every entry once, in order ({} entries)", payloads.len());
    ensure!(entries(&server, "forbidden").await?.len() == 1);
    Ok(())
}

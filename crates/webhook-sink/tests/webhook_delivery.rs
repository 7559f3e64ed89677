//! The webhook sink against a real receiver (tests/support's hyper server) and a real
//! PostgreSQL holding the webhook tables, driven through the `Sink` trait as the
//! pipeline drives it: per-aggregate order under retries, concurrency across
//! aggregates, dead letters written before their acknowledgement, the breaker.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use tailbox_e2e::{PgServer, Reply, WebhookReceiver, apply_sql_files};
use tailbox_outbox::{OutboxRecord, TopicTemplate};
use tailbox_replication::PgConnectionConfig;
use tailbox_sink::{Ack, EventMeta, SendOutcome, Sink};
use tailbox_webhook_sink::{
    Backoff, BodyFormat, BreakerGauge, BreakerState, SigningKey, UrlTemplate, WebhookSink,
    WebhookSinkConfig, dispatcher::WRITTEN_HEADER,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn setup() -> Result<PgServer> {
    let pg = PgServer::start()?;
    apply_sql_files(
        &pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("04_role.sql", vec!["password=tailbox-test".to_owned()]),
            ("05_webhook_tables.sql", vec![]),
        ],
    )?;
    Ok(pg)
}

fn config(pg: &PgServer, receiver: &WebhookReceiver) -> Result<WebhookSinkConfig> {
    Ok(WebhookSinkConfig {
        url: UrlTemplate::parse(&format!("{}/in/{{aggregatetype}}", receiver.url()))
            .map_err(anyhow::Error::msg)?,
        topic_template: TopicTemplate::parse("outbox.event.{aggregatetype}")?,
        body: BodyFormat::Payload { content_type: "application/json".into() },
        signing_key: Some(SigningKey::parse(SECRET).map_err(anyhow::Error::msg)?),
        headers: Default::default(),
        ca_file: None,
        concurrency: 4,
        max_attempts: None,
        request_timeout: Duration::from_millis(500),
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        breaker_failures: 0,
        breaker_cooldown: Duration::from_millis(300),
        max_buffered: 1000,
        dlq_topic: "outbox.dlq".into(),
        pg: PgConnectionConfig::parse(&pg.url())?,
    })
}

fn event(aggregate: &str, n: u32) -> OutboxRecord {
    OutboxRecord {
        topic: Arc::from("outbox.event.Order"),
        key: Bytes::from(aggregate.to_owned()),
        value: Bytes::from(format!(r#"{{"agg": "{aggregate}", "n": {n}}}"#)),
        headers: vec![(Arc::from("id"), Bytes::from(format!("{aggregate}-{n}")))],
    }
}

fn meta(lsn: u64) -> EventMeta {
    let mut meta = EventMeta::default();
    meta.reset(lsn.into(), 700, 1_700_000_000_000_000);
    meta
}

async fn acks(sink: &mut WebhookSink, n: usize, within: Duration) -> Result<HashMap<u64, Ack>> {
    let mut acks = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while acks.len() < n {
        let ack = tokio::time::timeout_at(deadline, sink.next_ack())
            .await
            .with_context(|| format!("{} of {n} acknowledgements", acks.len()))?;
        acks.insert(ack.seq, ack);
    }
    Ok(acks)
}

fn send(sink: &mut WebhookSink, record: &OutboxRecord, lsn: u64) -> Result<u64> {
    match sink.send(record, Some(&meta(lsn)))? {
        SendOutcome::Enqueued(seq) => Ok(seq),
        SendOutcome::Blocked => anyhow::bail!("blocked"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hold_only_their_aggregate_and_poison_is_dead_lettered_before_its_ack() -> Result<()>
{
    let pg = setup()?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    // a-0 fails twice (503 with Retry-After: 1, then a 500); c-0 is poison (400).
    let a0_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    receiver.set_script(move |arrival| {
        let body = String::from_utf8_lossy(&arrival.body).into_owned();
        if body.contains(r#""agg": "c", "n": 0"#) {
            return Reply::Status(400, None);
        }
        if arrival.id == "a-0" {
            return match a0_seen.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::Status(503, Some(1)),
                1 => Reply::Status(500, None),
                _ => Reply::Ok,
            };
        }
        Reply::Ok
    });
    let mut sink = WebhookSink::connect(&config(&pg, &receiver)?, BreakerGauge::default()).await?;
    let started = Instant::now();
    let mut seqs = HashMap::new();
    for (n, aggregate) in [(0, "a"), (0, "b"), (0, "c"), (1, "a"), (1, "b"), (1, "c"), (2, "a")] {
        let seq = send(&mut sink, &event(aggregate, n), 0x100 + u64::from(n))?;
        seqs.insert(format!("{aggregate}-{n}"), seq);
    }
    let acks = acks(&mut sink, 7, Duration::from_secs(20)).await?;
    let arrivals = receiver.arrivals();
    ensure!(arrivals.iter().all(|a| a.signature_ok), "every request verifies: {arrivals:?}");
    ensure!(arrivals.iter().all(|a| a.path == "/in/Order"), "URL template rendered");
    // a-0's first attempt came first, and its retry waited for Retry-After.
    let a0: Vec<_> = arrivals.iter().filter(|a| a.id == "a-0").collect();
    ensure!(
        a0.len() == 3
            && a0[0].answered == Some(503)
            && a0[1].answered == Some(500)
            && a0[2].delivered(),
        "{a0:?}"
    );
    ensure!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    // Per aggregate: arrival order is commit order, and the next only after a 2xx.
    for aggregate in ["a", "b"] {
        let ids: Vec<&str> = arrivals
            .iter()
            .filter(|a| a.delivered() && a.id.starts_with(aggregate))
            .map(|a| a.id.as_str())
            .collect();
        let expected: Vec<String> =
            (0..if aggregate == "a" { 3 } else { 2 }).map(|n| format!("{aggregate}-{n}")).collect();
        ensure!(ids == expected, "{aggregate}: {ids:?}");
    }
    let a1 = arrivals.iter().position(|a| a.id == "a-1").context("a-1 arrived")?;
    let a0_ok = arrivals.iter().position(|a| a.id == "a-0" && a.delivered()).context("a-0")?;
    ensure!(a1 > a0_ok, "a-1 waited for a-0's 2xx");
    // b went on while a waited for its retry.
    let b1 = arrivals.iter().position(|a| a.id == "b-1").context("b-1 arrived")?;
    ensure!(b1 < a0_ok, "b is not held by a's retry: {arrivals:?}");
    // The poison event: refused, with a copy saying its dead letter is written.
    let poison = &acks[&seqs["c-0"]];
    ensure!(poison.result.as_ref().is_err_and(|e| e.is_refused()), "{poison:?}");
    let copy = poison.refused.as_ref().context("a copy for the dead letters")?;
    let id = copy
        .headers
        .iter()
        .find(|(n, _)| n == WRITTEN_HEADER)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .context("dead-letter id")?;
    let row = pg.psql(&format!(
        "SELECT event_id, response_status, attempts, url FROM tailbox_dead_letter WHERE id = {id}"
    ))?;
    ensure!(row.trim() == format!("c-0|400|1|{}/in/Order", receiver.url()), "{row}");
    // c-1 went out only after c-0 was dead-lettered.
    ensure!(acks[&seqs["c-1"]].result.is_ok());
    for name in ["a-0", "a-1", "a-2", "b-0", "b-1"] {
        ensure!(acks[&seqs[name]].result.is_ok(), "{name} delivered");
    }
    // The session sends the copy back on the dead-letter topic: acknowledged, not
    // written twice.
    let mut dead = event("c", 0);
    dead.topic = Arc::from("outbox.dlq");
    dead.headers.push((Arc::from(WRITTEN_HEADER), Bytes::from(id.clone())));
    let seq = send(&mut sink, &dead, 0)?;
    let ack = sink.next_ack().await;
    ensure!(ack.seq == seq && ack.result.is_ok());
    let count = pg.psql("SELECT count(*) FROM tailbox_dead_letter")?;
    ensure!(count.trim() == "1", "{count}");
    // Checkpoints round-trip through tailbox_checkpoint.
    let SendOutcome::Enqueued(cp) = sink.send_checkpoint(b"owner", b"0/10")? else {
        anyhow::bail!("checkpoint blocked")
    };
    let ack = sink.next_ack().await;
    ensure!(ack.seq == cp && ack.result.is_ok(), "{ack:?}");
    let checkpoints = sink.read_checkpoints().await?;
    ensure!(checkpoints.get(b"owner".as_slice()).map(Vec::as_slice) == Some(b"0/10".as_slice()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_sends_nothing_while_cooling_down_then_probes_once() -> Result<()> {
    let pg = setup()?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    receiver.set_script(|_| Reply::Status(500, None));
    let mut config = config(&pg, &receiver)?;
    config.breaker_failures = 3;
    config.breaker_cooldown = Duration::from_millis(1500);
    config.backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(20) };
    let gauge = BreakerGauge::default();
    let mut sink = WebhookSink::connect(&config, Arc::clone(&gauge)).await?;
    for n in 0..6 {
        send(&mut sink, &event(&format!("k{n}"), 0), 0x200)?;
    }
    // Wait until it opened.
    let deadline = Instant::now() + Duration::from_secs(10);
    while BreakerState::from_u8(gauge.load(Ordering::Relaxed)) != BreakerState::Open {
        ensure!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let opened_with = receiver.arrivals().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = receiver.arrivals().len();
    // Requests already in flight when it opened may still land (at most concurrency).
    ensure!(during <= opened_with + config.concurrency, "{opened_with} → {during}");
    let settled = receiver.arrivals().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(receiver.arrivals().len() == settled, "nothing goes out while open");
    ensure!(sink.try_next_ack().is_none(), "nothing acknowledged while the receiver fails");
    // The receiver recovers: one probe after the cool-down closes it, then all go.
    receiver.set_script(|_| Reply::Ok);
    let acks = acks(&mut sink, 6, Duration::from_secs(10)).await?;
    ensure!(acks.values().all(|a| a.result.is_ok()));
    ensure!(BreakerState::from_u8(gauge.load(Ordering::Relaxed)) == BreakerState::Closed);
    let arrivals = receiver.arrivals();
    let first_ok = arrivals.iter().position(|a| a.delivered()).context("a delivery")?;
    ensure!(
        arrivals[first_ok + 1..].iter().all(|a| a.delivered()),
        "after the probe succeeded, everything was delivered"
    );
    Ok(())
}

//! Tests of the test fixtures themselves (tests/support): a real PostgreSQL, a
//! real Kafka broker, and the consumer helper, end to end.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tailbox_e2e::{
    ConsumedRecord, KafkaBroker, PgServer, consume_all, consume_pattern, shared_kafka, unique_name,
};

fn producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating a producer")
}

async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
    headers: &[(&str, &str)],
) -> Result<(i32, i64)> {
    let mut hs = OwnedHeaders::new();
    for (k, v) in headers {
        hs = hs.insert(Header { key: k, value: Some(v.as_bytes()) });
    }
    let record = FutureRecord::to(topic).key(key).payload(payload).headers(hs);
    let delivery = p
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("producing to {topic}"))?;
    Ok((delivery.partition, delivery.offset))
}

#[tokio::test]
async fn postgres_is_logical_and_restartable() -> Result<()> {
    let pg = PgServer::start()?;
    let dir = pg.dir().to_path_buf();
    ensure!(pg.url() == format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port()));
    ensure!(pg.psql("SHOW wal_level")? == "logical");
    ensure!(pg.psql("SHOW max_replication_slots")? == "20");

    // psql runs statements one by one, like a script
    let out = pg.psql(
        "CREATE TABLE t (id int primary key, v text);\n\
         INSERT INTO t VALUES (1, 'a'), (2, 'b');\n\
         SELECT id, v FROM t ORDER BY id;",
    )?;
    ensure!(out == "1|a\n2|b", "psql printed {out:?}");
    ensure!(pg.psql("SELECT nope FROM t").is_err());

    let client = pg.client().await?;
    let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    ensure!(n == 2);

    pg.restart("immediate")?;
    ensure!(client.query_one("SELECT 1", &[]).await.is_err(), "old connection survived a restart");
    let client = pg.client().await?;
    let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    ensure!(n == 2, "committed rows lost in an immediate restart");
    pg.restart("fast")?;
    ensure!(pg.psql("SELECT count(*) FROM t")? == "2");

    drop(client);
    drop(pg);
    ensure!(!dir.exists(), "{} was not removed", dir.display());
    Ok(())
}

#[tokio::test]
async fn two_postgres_servers_side_by_side() -> Result<()> {
    let (a, b) = (PgServer::start()?, PgServer::start()?);
    ensure!(a.port() != b.port());
    a.psql("CREATE TABLE only_in_a ()")?;
    ensure!(b.psql("SELECT to_regclass('only_in_a') IS NULL")? == "t");
    Ok(())
}

#[tokio::test]
async fn kafka_roundtrip_on_the_shared_broker() -> Result<()> {
    let kafka = shared_kafka();
    let topic = unique_name("selftest_roundtrip");
    let p = producer(kafka.bootstrap())?;
    let sent = [("k1", "one"), ("k2", "two"), ("k3", "three")];
    for (i, (k, v)) in sent.iter().enumerate() {
        let n = i.to_string();
        produce(&p, &topic, k, v, &[("n", n.as_str()), ("kind", "selftest")]).await?;
    }

    let mut got =
        consume_all(kafka.bootstrap(), std::slice::from_ref(&topic), 3, Duration::from_secs(30))
            .await?;
    ensure!(got.len() == 3, "got {} records: {got:?}", got.len());
    got.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, (rec, (k, v))) in got.iter().zip(sent).enumerate() {
        ensure!(rec.topic == topic);
        ensure!(rec.key_str() == k && rec.payload_str() == v, "{rec:?}");
        let n = i.to_string();
        ensure!(
            rec.headers
                == vec![
                    ("n".to_owned(), n.into_bytes()),
                    ("kind".to_owned(), b"selftest".to_vec())
                ],
            "{rec:?}"
        );
        ensure!(rec.header("kind") == Some(&b"selftest"[..]));
        ensure!((0..3).contains(&rec.partition), "{rec:?}");
    }
    Ok(())
}

#[tokio::test]
async fn pattern_subscription_sees_topics_created_later() -> Result<()> {
    let kafka = shared_kafka();
    let prefix = unique_name("selftest_lazy");
    let topics = [format!("{prefix}.a"), format!("{prefix}.b")];
    let regex = format!("^{}\\..*", prefix);
    let bootstrap = kafka.bootstrap().to_owned();
    let consumer = tokio::spawn(async move {
        consume_pattern(&bootstrap, &regex, 2, Duration::from_secs(40)).await
    });
    // The topics don't exist until these first writes (auto-creation).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = producer(kafka.bootstrap())?;
    produce(&p, &topics[0], "x", "to a", &[]).await?;
    produce(&p, &topics[1], "y", "to b", &[]).await?;

    let got: Vec<ConsumedRecord> = consumer.await??;
    let mut seen: Vec<(String, String)> =
        got.iter().map(|r| (r.topic.clone(), r.payload_str())).collect();
    seen.sort();
    ensure!(
        seen == vec![
            (topics[0].clone(), "to a".to_owned()),
            (topics[1].clone(), "to b".to_owned())
        ],
        "got {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn owned_broker_stops_and_starts_again_with_its_data() -> Result<()> {
    let kafka = KafkaBroker::start_owned()?;
    let dir = kafka.dir().context("owned broker has a dir")?.to_path_buf();
    let topic = unique_name("selftest_restart");
    {
        let p = producer(kafka.bootstrap())?;
        produce(&p, &topic, "before", "1", &[]).await?;
    }
    kafka.stop()?;
    ensure!(!kafka.is_running());
    kafka.start_again()?;
    ensure!(kafka.is_running());
    {
        let p = producer(kafka.bootstrap())?;
        produce(&p, &topic, "after", "2", &[]).await?;
    }
    let got =
        consume_all(kafka.bootstrap(), std::slice::from_ref(&topic), 2, Duration::from_secs(30))
            .await?;
    let mut keys: Vec<String> = got.iter().map(ConsumedRecord::key_str).collect();
    keys.sort();
    ensure!(keys == ["after", "before"], "got {got:?}");

    ensure!(shared_kafka().stop().is_err(), "the shared broker must not be stoppable");
    drop(kafka);
    ensure!(!dir.exists(), "{} was not removed", dir.display());
    Ok(())
}

#[test]
fn unique_names_are_unique_and_valid() {
    let a = unique_name("Slot-Name.X");
    let b = unique_name("Slot-Name.X");
    assert_ne!(a, b);
    for n in [&a, &b, &unique_name(""), &unique_name(&"x".repeat(200))] {
        assert!(n.len() <= 63, "{n}");
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{n}");
        assert!(n.starts_with(|c: char| c.is_ascii_lowercase()), "{n}");
    }
    assert!(a.starts_with("slot_name_x_"), "{a}");
}

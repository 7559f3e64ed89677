//! Topics on demand against a broker that does not create topics by itself
//! (`scripts/kafka.sh start-acl`: `auto.create.topics.enable=false`, an authorizer):
//! with permission, tailbox creates a missing topic with the configured settings;
//! without, it waits, says once at ERROR which topic is missing and how to create it,
//! lists it in `/status`, and goes on once an operator created it.

mod harness;

use harness::http::{free_port, http_get};

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, ensure};
use harness::{Names, apply_sql, process::Tailbox, process::base_args, wait_caught_up};
use rdkafka::{ClientConfig, admin::AdminClient, client::DefaultClientContext};
use tailbox_e2e::{KafkaAclListeners, KafkaBroker, PgServer, consume_pattern, create_topic};

/// One broker for both tests (about 10 s to start); the watchdog removes it at exit.
fn broker() -> Result<&'static KafkaAclListeners> {
    static BROKER: OnceLock<std::result::Result<(KafkaBroker, KafkaAclListeners), String>> =
        OnceLock::new();
    BROKER
        .get_or_init(|| KafkaBroker::start_acl().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(|(_, listeners)| listeners)
        .map_err(|e| anyhow!("the ACL broker did not start: {e}"))
}

fn insert(pg: &PgServer, aggregate_type: &str, n: usize) -> Result<()> {
    pg.psql(&format!(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
         SELECT '{aggregate_type}', 'a' || i, 'Created', jsonb_build_object('i', i) \
         FROM generate_series(1, {n}) AS i"
    ))?;
    Ok(())
}

fn partitions(bootstrap: &str, topic: &str) -> Result<usize> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let found = metadata.topics().iter().find(|t| t.name() == topic).context("no metadata")?;
    ensure!(found.error().is_none(), "topic {topic}: {:?}", found.error());
    Ok(found.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_created_with_the_configured_settings() -> Result<()> {
    let kafka = broker()?;
    let pg = PgServer::start()?;
    let names = Names::new("topics_create");
    apply_sql(&pg, &names)?;
    // The PLAINTEXT listener's principal may create topics.
    let mut args = base_args(&pg, &kafka.plaintext, &names);
    args.extend(["--topic-partitions".into(), "2".into()]);
    args.extend(["--topic-config".into(), "retention.ms=3600000".into()]);
    let tailbox = Tailbox::start(&args)?;
    insert(&pg, "Order", 3)?;
    insert(&pg, "Invoice", 2)?;
    let got = consume_pattern(&kafka.plaintext, &names.topic_pattern(), 5, Duration::from_secs(60))
        .await
        .with_context(|| tailbox.log_text())?;
    ensure!(got.len() == 5, "all five events arrive: {got:?}\n{}", tailbox.log_text());
    for aggregate_type in ["Order", "Invoice"] {
        let topic = format!("{}.{aggregate_type}", names.topic_prefix);
        let n = partitions(&kafka.plaintext, &topic)?;
        ensure!(n == 2, "{topic} created with --topic-partitions 2, has {n}");
    }
    wait_caught_up(&pg, &names).await?;
    let log = tailbox.stop_clean()?;
    ensure!(log.contains("created Kafka topic"), "the creation is logged:\n{log}");
    ensure!(!log.contains(" ERROR "), "no error:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_permission_to_create_tailbox_waits_names_the_fix_and_goes_on_once_created()
-> Result<()> {
    let kafka = broker()?;
    let pg = PgServer::start()?;
    let names = Names::new("topics_acl");
    apply_sql(&pg, &names)?;
    // The operator created the checkpoint topic; user tailbox may not create any.
    create_topic(&kafka.plaintext, &names.checkpoint_topic, 1).await?;
    let port = free_port()?;
    let mut args = base_args(&pg, &kafka.sasl_plaintext, &names);
    for prop in [
        "security.protocol=sasl_plaintext".to_owned(),
        "sasl.mechanisms=PLAIN".to_owned(),
        format!("sasl.username={}", kafka.user),
        format!("sasl.password={}", kafka.password()?),
    ] {
        args.extend(["--kafka-prop".into(), prop]);
    }
    args.extend(["--metrics-addr".into(), format!("127.0.0.1:{port}")]);
    let tailbox = Tailbox::start(&args)?;
    let topic = format!("{}.Order", names.topic_prefix);
    insert(&pg, "Order", 3)?;

    // It says so, once, at ERROR, with the transaction and the fix.
    let deadline = Instant::now() + Duration::from_secs(60);
    let error_line = loop {
        let log = tailbox.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("ERROR") && l.contains(&topic)) {
            break line.to_owned();
        }
        ensure!(Instant::now() < deadline, "no ERROR naming {topic}:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for part in [
        "does not exist",
        "commit lsn 0/",
        "kafka-topics.sh --bootstrap-server",
        "--create --topic",
        "kafka-acls.sh",
        "User:tailbox --operation Create",
        "TopicAuthorizationFailed",
    ] {
        ensure!(error_line.contains(part), "{part:?} missing from: {error_line}");
    }
    let (code, body) = http_get(port, "/readyz")?;
    ensure!(code == 503 && body.contains(&topic), "/readyz: {code} {body}");
    let (_, status) = http_get(port, "/status")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    ensure!(status["missing_topics"][0]["topic"] == topic.as_str(), "/status: {status}");
    ensure!(
        status["missing_topics"][0]["xid"].as_str().is_some_and(|x| x.parse::<u32>().is_ok()),
        "/status names the xid: {status}"
    );

    // An operator creates it: tailbox notices within its re-check interval (10 s).
    create_topic(&kafka.plaintext, &topic, 1).await?;
    let got = consume_pattern(&kafka.plaintext, &names.topic_pattern(), 3, Duration::from_secs(60))
        .await
        .with_context(|| tailbox.log_text())?;
    ensure!(got.len() == 3, "the events arrive once the topic exists: {got:?}");
    wait_caught_up(&pg, &names).await?;
    let (code, _) = http_get(port, "/readyz")?;
    ensure!(code == 200, "ready again: {code}");
    let log = tailbox.stop_clean()?;
    let errors = log.lines().filter(|l| l.contains("ERROR") && l.contains(&topic)).count();
    ensure!(errors == 1, "said once, not {errors} times:\n{log}");
    Ok(())
}

/// Names as psql shows them: a mixed-case schema with a space, a table with a dot in
/// its name, a publication named `Pub-1`, all given quoted on the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_mixed_case_table_and_publication_names_work() -> Result<()> {
    let kafka = broker()?;
    let pg = PgServer::start()?;
    let names = Names::new("topics_quoted");
    pg.psql(&format!(
        "CREATE SCHEMA \"My Schema\";
         CREATE TABLE \"My Schema\".\"Out.box\" (id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
             aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb NOT NULL);
         CREATE PUBLICATION \"Pub-1\" FOR TABLE \"My Schema\".\"Out.box\" WITH (publish = 'insert');
         SELECT pg_create_logical_replication_slot('{}', 'pgoutput');",
        names.slot
    ))?;
    let mut args = base_args(&pg, &kafka.plaintext, &names);
    // base_args' role has no rights on this table; run as the superuser.
    args[2] = pg.url();
    let at = args.iter().position(|a| a == "--publication").context("--publication")?;
    args[at + 1] = "\"Pub-1\"".into();
    args.extend(["--outbox-table".into(), "\"My Schema\".\"Out.box\"".into()]);
    let tailbox = Tailbox::start(&args)?;
    pg.psql(
        "INSERT INTO \"My Schema\".\"Out.box\" (aggregatetype, aggregateid, type, payload) \
         VALUES ('Order', 'o-1', 'Created', '{\"n\": 1}')",
    )?;
    let got = consume_pattern(&kafka.plaintext, &names.topic_pattern(), 1, Duration::from_secs(60))
        .await
        .with_context(|| tailbox.log_text())?;
    ensure!(got.len() == 1, "the event arrives: {got:?}\n{}", tailbox.log_text());
    wait_caught_up(&pg, &names).await?;
    tailbox.stop_clean()?;
    Ok(())
}

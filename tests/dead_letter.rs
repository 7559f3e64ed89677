//! Poison events go to the dead-letter topic with the reason, and the stream goes on.

mod harness;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    slot_and_wal, wait_for_confirmed,
};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use tailbox_e2e::{PgServer, consume_all, consume_pattern, shared_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_dead_lettered_and_the_stream_goes_on() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("dlq");
    apply_sql(&pg, &names)?;
    let dlq = format!("{}.dlq", names.topic_prefix);

    // A topic whose broker-side size limit is below what the producer allows: a large
    // record is refused at delivery time, by the broker.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &kafka).create()?;
    let small = format!("{}.Small", names.topic_prefix);
    let topic =
        NewTopic::new(&small, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "2000");
    for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    let mut args = base_args(&pg, &kafka, &names);
    args.extend(["--dlq-topic".into(), dlq.clone()]);
    // Refused by librdkafka itself, before sending.
    args.extend(["--kafka-prop".into(), "message.max.bytes=50000".into()]);
    let tailbox = Tailbox::start(&args)?;

    pg.psql("ALTER TABLE outbox ALTER COLUMN aggregatetype DROP NOT NULL")?;
    let insert = |agg: &str, id: &str, payload: &str| {
        format!(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ({agg}, '{id}', 'T', {payload})"
        )
    };
    pg.psql(&insert("'Good'", "before", "'{\"n\": 1}'"))?;
    pg.psql(&insert("NULL", "null-type", "'{\"n\": 2}'"))?;
    pg.psql(&insert("'has space'", "bad-topic", "'{\"n\": 3}'"))?;
    pg.psql(&insert("'Good'", "too-large", "jsonb_build_object('pad', repeat('x', 60000))"))?;
    pg.psql(&insert("'Small'", "broker-refused", "(SELECT jsonb_build_object('pad', string_agg(md5(random()::text), '')) FROM generate_series(1, 400))"))?;
    pg.psql(&insert("'Good'", "after", "'{\"n\": 6}'"))?;

    let dead = consume_all(&kafka, std::slice::from_ref(&dlq), 4, Duration::from_secs(60)).await?;
    let good = consume_pattern(
        &kafka,
        &format!("^{}\\.Good", names.topic_prefix.replace('.', "\\.")),
        2,
        Duration::from_secs(60),
    )
    .await?;
    let log = tailbox.log_text();
    ensure!(good.len() == 2, "the good events around the poison ones arrive: {good:?}\n{log}");
    ensure!(dead.len() == 4, "four dead letters, got {}:\n{log}", dead.len());
    for key in ["null-type", "bad-topic", "too-large", "broker-refused"] {
        let Some(record) = dead.iter().find(|r| r.key_str() == key) else {
            anyhow::bail!("dead letter {key} missing");
        };
        let error =
            String::from_utf8_lossy(record.header("error").unwrap_or_default()).into_owned();
        ensure!(!error.is_empty(), "{key}: error header");
        ensure!(
            record.header("source_table") == Some(b"public.outbox".as_slice()),
            "{key}: source_table"
        );
        ensure!(
            record.header("id").is_some() && record.header("lsn").is_some(),
            "{key}: original headers kept"
        );
        println!("{key}: {error}");
    }
    let null_type = dead.iter().find(|r| r.key_str() == "null-type").map(|r| r.payload_str());
    ensure!(
        null_type.as_deref() == Some("{\"n\": 2}"),
        "original payload bytes kept: {null_type:?}"
    );
    ensure!(dead.iter().any(|r| r.key_str() == "broker-refused" && r.payload_str().len() > 12000));

    // Everything, poison included, was handed on: the slot moves past all of it.
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(30)).await?;
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

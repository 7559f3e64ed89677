//! End-to-end tests of the core loop against a real PostgreSQL (15 unless
//! `TAILBOX_PG_MAJOR` says otherwise) and a real Apache Kafka broker: commit order, exact
//! resume after SIGKILL, idle slots, clean shutdown, startup refusals, and Kafka/PostgreSQL
//! outages. The first three run on every other major too (tests/pg_majors.rs).

mod harness;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, run_to_exit},
    scenarios, slot_and_wal,
    verify::verify,
    wait_caught_up, wait_for_confirmed,
    workload::Workload,
};
use tailbox_e2e::{KafkaBroker, PgServer, consume_pattern, shared_kafka};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_concurrent_writers_in_commit_order() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let workload = Workload::STANDARD;
    ensure!(workload.expected().len() == 20_000, "the workload writes 20,000 events");
    let (names, records) = scenarios::commit_order(&pg, &kafka, "order", workload).await?;
    ensure!(
        records
            .iter()
            .all(|r| r.header("id").is_some() && r.header("type") == Some(b"Happened".as_slice())),
        "id and type headers present"
    );
    ensure!(
        records
            .iter()
            .all(|r| r.topic.starts_with(&names.topic_prefix) && r.topic.ends_with(['0', '1'])),
        "topic from the aggregate type"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_sigkill_without_loss() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    scenarios::sigkill_resume(&pg, &kafka, "crash", Workload::STANDARD, 3, &[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_outbox_keeps_slot_close_to_wal() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    scenarios::idle_slot_follows_the_wal(&pg, &kafka, "idle", 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_confirms_and_restart_publishes_no_duplicates() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("term");
    apply_sql(&pg, &names)?;
    let args = base_args(&pg, &kafka, &names);
    let small = Workload { writers: 2, transactions: 40, aggregates: 10 };

    let tailbox = Tailbox::start(&args)?;
    small.run(&pg).await?;
    let status = tailbox.terminate(Duration::from_secs(30))?;
    ensure!(status.success(), "SIGTERM exits 0, got {status}");

    // Events written while tailbox is down, then a restart.
    let client = pg.client().await?;
    client
        .execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             VALUES ('Agg0', 'a1', 'Happened', jsonb_build_object('w', 9, 't', 9999, 'i', 0, 'xid', pg_current_xact_id()::text))",
            &[],
        )
        .await?;
    let tailbox = Tailbox::start(&args)?;
    let mut expected = small.expected();
    expected.insert((9, 9999, 0));
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: {report}");
    ensure!(report.lost == 0 && report.reordered == 0, "{report}");
    ensure!(report.duplicates == 0, "a clean stop confirms everything: {report}");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_naming_the_problem_and_fix() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("refuse");
    // The role of sql/04_role.sql; its SELECT grant follows once the table exists.
    pg.psql("CREATE ROLE tailbox LOGIN REPLICATION PASSWORD 'tailbox-test'")?;

    // Nothing set up but the role: the slot is missing, then the publication, then a column.
    let args = base_args(&pg, &kafka, &names);
    let expect_refusal = |args: &[String], needle: &str| -> Result<()> {
        let (code, log) = run_to_exit(args, Duration::from_secs(60))?;
        ensure!(code == Some(1), "exit code 1 expected, got {code:?}: {log}");
        let last = log.lines().last().unwrap_or_default().to_owned();
        ensure!(
            last.contains(needle) && last.contains("fix:"),
            "want {needle:?} with a fix, got: {last}"
        );
        Ok(())
    };
    expect_refusal(&args, &format!("replication slot \"{}\" does not exist", names.slot))?;
    pg.psql(&format!("SELECT pg_create_logical_replication_slot('{}', 'pgoutput')", names.slot))?;
    expect_refusal(&args, &format!("publication \"{}\" does not exist", names.publication))?;
    pg.psql("CREATE TABLE outbox (id uuid, aggregatetype text, aggregateid text, type text)")?;
    pg.psql(&format!(
        "CREATE PUBLICATION {} FOR TABLE outbox WITH (publish = 'insert')",
        names.publication
    ))?;
    expect_refusal(&args, "has no column \"payload\"")?;
    pg.psql("ALTER TABLE outbox ADD COLUMN payload jsonb")?;
    pg.psql("GRANT SELECT ON outbox TO tailbox")?;

    // wal_level below logical (the slot must go first: PostgreSQL refuses to start
    // with a logical slot and wal_level = replica).
    pg.psql(&format!("SELECT pg_drop_replication_slot('{}')", names.slot))?;
    pg.psql("ALTER SYSTEM SET wal_level = replica")?;
    pg.restart("fast")?;
    expect_refusal(&args, "wal_level is \"replica\"")?;

    let mut bad_slot = args;
    let i = bad_slot.iter().position(|a| a == "--slot").unwrap_or(0) + 1;
    bad_slot[i] = "Bad-Name".into();
    expect_refusal(&bad_slot, "--slot")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_recreated_slot_that_would_skip_events() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("recreate");
    apply_sql(&pg, &names)?;
    let args = base_args(&pg, &kafka, &names);
    let small = Workload { writers: 1, transactions: 4, aggregates: 3 };
    let tailbox = Tailbox::start(&args)?;
    small.run(&pg).await?;
    wait_caught_up(&pg, &names).await?;
    tailbox.terminate(Duration::from_secs(30))?;

    // Someone drops the slot, events are written with no slot, and a new slot appears.
    pg.psql(&format!("SELECT pg_drop_replication_slot('{}')", names.slot))?;
    pg.psql("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('Agg0', 'lost', 't', '{}')")?;
    pg.psql(&format!("SELECT pg_create_logical_replication_slot('{}', 'pgoutput')", names.slot))?;
    let (code, log) = run_to_exit(&args, Duration::from_secs(60))?;
    ensure!(code == Some(1), "must refuse, got {code:?}: {log}");
    ensure!(
        log.contains("ahead of the last position tailbox published") && log.contains("fix:"),
        "{log}"
    );

    // After a deliberate backfill the operator accepts the new position once.
    let mut accept = args.clone();
    accept.push("--accept-slot-position".into());
    let tailbox = Tailbox::start(&accept)?;
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60)).await?;
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_holds_the_slot_and_loses_nothing() -> Result<()> {
    let pg = PgServer::start()?;
    let broker = KafkaBroker::start_owned()?;
    let kafka = broker.bootstrap().to_owned();
    let names = Names::new("kafkadown");
    apply_sql(&pg, &names)?;
    let tailbox = Tailbox::start(&base_args(&pg, &kafka, &names))?;
    let first = Workload { writers: 2, transactions: 20, aggregates: 10 };
    first.run(&pg).await?;
    wait_caught_up(&pg, &names).await?;

    broker.stop()?;
    let client = pg.client().await?;
    let (held, _) = slot_and_wal(&client, &names.slot).await?;
    client
        .execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT 'Agg0', 'a' || i, 'Happened', jsonb_build_object('w', 7, 't', 7777, 'i', i, 'xid', pg_current_xact_id()::text) \
             FROM generate_series(0, 99) i",
            &[],
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (during, _) = slot_and_wal(&client, &names.slot).await?;
    ensure!(during <= held + 64 * 1024 || during == held, "slot advanced while Kafka was down");
    let (during_confirmed, _) = slot_and_wal(&client, &names.slot).await?;

    broker.start_again()?;
    let mut expected = first.expected();
    expected.extend((0..100).map(|i| (7, 7777, i)));
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: {report} (slot held at {during_confirmed:X})");
    ensure!(report.lost == 0 && report.reordered == 0, "{report}\n{}", tailbox.log_text());
    wait_caught_up(&pg, &names).await?;
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// With Kafka down and the in-flight window full, tailbox stops reading WAL (so it never
/// sees the walsender's keepalives) but its status timer keeps the walsender hearing
/// from it: the same walsender serves the slot for longer than `wal_sender_timeout`
/// (10 s in the test cluster), and nothing is lost once Kafka is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_outlasts_wal_sender_timeout_on_one_connection() -> Result<()> {
    let pg = PgServer::start()?;
    let broker = KafkaBroker::start_owned()?;
    let kafka = broker.bootstrap().to_owned();
    let names = Names::new("backpress");
    apply_sql(&pg, &names)?;
    let mut args = base_args(&pg, &kafka, &names);
    args.extend(["--max-in-flight".to_owned(), "10".to_owned()]);
    let tailbox = Tailbox::start(&args)?;
    let first = Workload { writers: 1, transactions: 5, aggregates: 5 };
    first.run(&pg).await?;
    wait_caught_up(&pg, &names).await?;
    let client = pg.client().await?;
    let before = active_pid(&client, &names.slot).await?;
    ensure!(before.is_some(), "slot not active before the outage");

    broker.stop()?;
    client
        .execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT 'Agg0', 'a' || i, 'Happened', jsonb_build_object('w', 9, 't', 9999, 'i', i, 'xid', pg_current_xact_id()::text) \
             FROM generate_series(0, 199) i",
            &[],
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = active_pid(&client, &names.slot).await?;
    ensure!(
        during == before,
        "the walsender changed while tailbox applied backpressure ({before:?} → {during:?}): \
         status updates stopped and wal_sender_timeout fired\n{}",
        tailbox.log_text()
    );

    broker.start_again()?;
    let mut expected = first.expected();
    expected.extend((0..200).map(|i| (9, 9999, i)));
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: {report}");
    ensure!(report.lost == 0 && report.reordered == 0, "{report}\n{}", tailbox.log_text());
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// The walsender holding `slot`, if any.
async fn active_pid(client: &tokio_postgres::Client, slot: &str) -> Result<Option<i32>> {
    let row = client
        .query_one("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_postgres_restart() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("pgrestart");
    apply_sql(&pg, &names)?;
    let mut tailbox = Tailbox::start(&base_args(&pg, &kafka, &names))?;
    let first = Workload { writers: 2, transactions: 20, aggregates: 10 };
    first.run(&pg).await?;
    pg.restart("immediate")?;
    let client = pg.client().await?;
    client
        .execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT 'Agg1', 'a' || i, 'Happened', jsonb_build_object('w', 8, 't', 8888, 'i', i, 'xid', pg_current_xact_id()::text) \
             FROM generate_series(0, 49) i",
            &[],
        )
        .await?;
    let mut expected = first.expected();
    expected.extend((0..50).map(|i| (8, 8888, i)));
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: {report}");
    ensure!(
        tailbox.is_running(),
        "tailbox must survive a PostgreSQL restart:\n{}",
        tailbox.log_text()
    );
    ensure!(report.lost == 0 && report.reordered == 0, "{report}\n{}", tailbox.log_text());
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

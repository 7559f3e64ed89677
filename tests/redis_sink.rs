//! `--sink redis` end to end: real PostgreSQL, real redis-server, the tailbox binary.
//! Commit order under concurrent writers, no duplicates after SIGKILLs (the entry IDs
//! make Redis refuse a replay), poison events set aside with the stream going on, and
//! the checkpoint kept in Redis.

mod harness;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, output_text, run_command, status_text},
    slot_and_wal,
    verify::verify,
    wait_caught_up, wait_streaming,
    workload::Workload,
};
use tailbox_e2e::{ConsumedRecord, PgServer, RedisServer};

/// A stream's entries as XRANGE returns them: (ID, fields).
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// tailbox's usual test arguments, with Redis instead of Kafka.
fn redis_args(pg: &PgServer, redis: &RedisServer, names: &Names) -> Vec<String> {
    let mut args = base_args(pg, "unused:9092", names);
    if let Some(at) = args.iter().position(|a| a == "--kafka-brokers") {
        args.drain(at..at + 2);
    }
    args.extend(["--sink".into(), "redis".into(), "--redis-url".into(), redis.url()]);
    args
}

/// Every entry of every stream whose name starts with `prefix`, as consumed records
/// (topic = stream, key = `aggregateid`, payload = `payload`, headers = the other
/// fields), each stream in ID order.
async fn read_streams(redis: &RedisServer, prefix: &str) -> Result<Vec<ConsumedRecord>> {
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection_with_config(&slow_reads())
        .await?;
    let mut streams: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await?;
    streams.sort();
    let mut records = Vec::new();
    for stream in streams {
        let entries: Entries =
            redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut conn).await?;
        for (offset, (_, fields)) in entries.into_iter().enumerate() {
            let mut record = ConsumedRecord {
                topic: stream.clone(),
                partition: 0,
                offset: offset as i64,
                key: None,
                payload: None,
                headers: Vec::new(),
                timestamp_ms: None,
            };
            for (name, value) in fields {
                match name.as_str() {
                    "aggregateid" => record.key = Some(value),
                    "payload" => record.payload = Some(value),
                    _ => record.headers.push((name, value)),
                }
            }
            records.push(record);
        }
    }
    Ok(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_get_every_event_in_order_and_none_twice_across_sigkills() -> Result<()> {
    let pg = PgServer::start()?;
    let mut redis = RedisServer::start()?;
    let names = Names::new("redis");
    apply_sql(&pg, &names)?;
    let args = redis_args(&pg, &redis, &names);
    let mut tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;

    // 4 writers, 20,000 events over 50 aggregates; 3 SIGKILLs of tailbox and one
    // restart of Redis while they write.
    let workload = Workload::STANDARD;
    let writers = {
        let url = pg.url();
        tokio::spawn(async move { workload.run_at(&url).await })
    };
    for (round, pause) in [400u64, 700, 500, 600].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if round == 2 {
            redis.start_again()?;
        } else {
            tailbox.kill()?;
            tailbox = Tailbox::start(&args)?;
        }
    }
    writers.await??;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;

    let records = read_streams(&redis, &names.topic_prefix).await?;
    let report = verify(&records, &workload.expected())?;
    println!("summary: 3 SIGKILLs, 1 Redis restart: {report}");
    ensure!(workload.expected().len() == 20_000);
    ensure!(report.lost == 0, "events lost: {report}\n{}", tailbox.log_text());
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}");
    ensure!(report.duplicates == 0, "a replay is refused by Redis: {report}");
    ensure!(report.wrong_xid == 0, "xid fields wrong: {report}");

    // The checkpoint lives in Redis, and status finds it this server's.
    let redis_url = redis.url();
    let status = status_text(&pg, &names, &["--sink", "redis", "--redis-url", &redis_url])?;
    ensure!(status.contains("matches this server"), "status:\n{status}");
    tailbox.stop_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_goes_to_the_dead_letter_stream_and_the_stream_goes_on() -> Result<()> {
    let pg = PgServer::start()?;
    let redis = RedisServer::start()?;
    let names = Names::new("redis_dlq");
    apply_sql(&pg, &names)?;
    let mut args = redis_args(&pg, &redis, &names);
    let dlq = format!("{}.dlq", names.topic_prefix);
    args.extend(["--dlq-topic".into(), dlq.clone()]);
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql("ALTER TABLE outbox ALTER COLUMN aggregatetype DROP NOT NULL")?;
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES \
         ('Order', 'o-1', 'Created', '{\"n\": 1}'), \
         (NULL, 'o-2', 'Created', '{\"n\": 2}'), \
         ('Order', 'o-3', 'Created', '{\"n\": 3}')",
    )?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    let records = read_streams(&redis, &names.topic_prefix).await?;
    let dead: Vec<&ConsumedRecord> = records.iter().filter(|r| r.topic == dlq).collect();
    let published: Vec<&ConsumedRecord> = records.iter().filter(|r| r.topic != dlq).collect();
    ensure!(published.len() == 2, "the other rows go on: {records:?}");
    ensure!(dead.len() == 1, "one dead letter: {records:?}");
    let dead = dead[0];
    ensure!(dead.payload.as_deref() == Some(b"{\"n\": 2}".as_slice()), "the payload is kept");
    ensure!(dead.header("error").is_some_and(|e| e.ends_with(b"is NULL")), "{dead:?}");
    ensure!(dead.header("source_table") == Some(b"public.outbox".as_slice()));
    ensure!(dead.header("source_lsn").is_some());
    let log = tailbox.stop_clean()?;
    ensure!(log.contains("outbox row dead-lettered"), "{log}");
    Ok(())
}

/// Two clusters set up alike (same slot, publication and stream names), one Redis: as
/// entry IDs are each database's WAL positions, they cannot share a stream. The second
/// tailbox stops before writing anything, naming the stream, both owners and the fix;
/// its slot holds; with streams of its own it publishes every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_set_up_alike_do_not_share_a_stream() -> Result<()> {
    let (first, second) = (PgServer::start()?, PgServer::start()?);
    let redis = RedisServer::start()?;
    let names = Names::new("redis_twins");
    let insert = |pg: &PgServer, source: &str| {
        pg.psql(&format!(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT 'Order', 'o-' || (i % 7), 'Created', \
                    jsonb_build_object('source', '{source}', 'n', i) FROM generate_series(1, 50) i"
        ))
    };
    for pg in [&first, &second] {
        apply_sql(pg, &names)?;
    }
    let first_tailbox = Tailbox::start(&redis_args(&first, &redis, &names))?;
    wait_streaming(&first, &names.slot, &first_tailbox).await?;
    insert(&first, "first")?;
    wait_caught_up(&first, &names).await.with_context(|| first_tailbox.log_text())?;

    insert(&second, "second")?;
    let written = second.psql("SELECT pg_current_wal_lsn()")?;
    let mut second_tailbox = Tailbox::start(&redis_args(&second, &redis, &names))?;
    let started = std::time::Instant::now();
    let exit = second_tailbox.wait(Duration::from_secs(60))?;
    let log = second_tailbox.log_text();
    println!("second tailbox stopped after {:.1?}", started.elapsed());
    ensure!(!exit.success(), "the second tailbox stops, exit {exit}:\n{log}");
    ensure!(
        log.contains("is written by another tailbox")
            && log.contains("fix: give this one streams of its own"),
        "names the conflict and the fix:\n{log}"
    );
    let records = read_streams(&redis, &names.topic_prefix).await?;
    let sources: Vec<String> = records.iter().map(|r| r.payload_str()).collect();
    ensure!(
        records.len() == 50 && sources.iter().all(|p| p.contains("\"first\"")),
        "only the first database's 50 events are in the streams: {sources:?}"
    );
    let holds = format!(
        "SELECT confirmed_flush_lsn < '{written}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot
    );
    ensure!(second.psql(&holds)? == "t", "the second slot holds before its events ({written})");

    // With streams of its own, the second database's events all arrive.
    let own_prefix = format!("{}.second", names.topic_prefix);
    let mut args = redis_args(&second, &redis, &names);
    let template = args.iter().position(|a| a == "--topic-template").context("a template")?;
    args[template + 1] = format!("{own_prefix}.{{aggregatetype}}");
    args.extend(["--dlq-topic".into(), format!("{own_prefix}.dlq")]);
    let second_tailbox = Tailbox::start(&args)?;
    wait_caught_up(&second, &names).await.with_context(|| second_tailbox.log_text())?;
    let own = read_streams(&redis, &own_prefix).await?;
    ensure!(
        own.len() == 50 && own.iter().all(|r| r.payload_str().contains("\"second\"")),
        "the second database's 50 events in its own streams: {}",
        own.len()
    );
    second_tailbox.stop_clean()?;
    first_tailbox.stop_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_holds_the_slot_and_loses_nothing() -> Result<()> {
    let pg = PgServer::start()?;
    let mut redis = RedisServer::start()?;
    let names = Names::new("redis_outage");
    apply_sql(&pg, &names)?;
    let args = redis_args(&pg, &redis, &names);
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    let before = Workload { writers: 2, transactions: 20, aggregates: 10 };
    before.run_at(&pg.url()).await?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    redis.kill()?;
    let client = pg.client().await?;
    let (_, before_outage_writes) = slot_and_wal(&client, &names.slot).await?;
    let during = Workload { writers: 2, transactions: 20, aggregates: 10 };
    during.run_numbered(&pg.url(), 10).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (confirmed, _) = slot_and_wal(&client, &names.slot).await?;
    ensure!(
        confirmed <= before_outage_writes,
        "the slot holds while Redis is down ({confirmed:X} past {before_outage_writes:X})"
    );
    redis.start_again()?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    let mut expected = before.expected();
    expected.extend(during.expected_numbered(10));
    let records = read_streams(&redis, &names.topic_prefix).await?;
    let report = verify(&records, &expected)?;
    ensure!(report.lost == 0 && report.reordered == 0 && report.duplicates == 0, "{report}");
    let log = tailbox.stop_clean()?;
    ensure!(log.contains("Redis"), "the outage is logged:\n{log}");
    Ok(())
}

/// `tailbox config check` names the Redis fields and never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_redacts_the_redis_password_and_names_bad_settings() -> Result<()> {
    let out = run_command(
        &[
            "config",
            "check",
            "--pg-url",
            "postgres://u@h/db",
            "--sink",
            "redis",
            "--redis-url",
            "redis://app:hunter2@cache:6380/1",
            "--redis-durability",
            "replicas:1:500",
        ],
        &[],
    )?;
    let text = output_text(&out);
    ensure!(out.status.success(), "{text}");
    ensure!(
        !text.contains("hunter2") && text.contains("redis://app:REDACTED@cache:6380/1"),
        "{text}"
    );
    let out = run_command(
        &[
            "config",
            "check",
            "--pg-url",
            "postgres://u@h/db",
            "--sink",
            "redis",
            "--redis-url",
            "redis://h",
            "--redis-trim",
            "lots",
        ],
        &[],
    )?;
    let text = output_text(&out);
    ensure!(
        !out.status.success() && text.contains("--redis-trim") && text.contains("maxlen:N"),
        "{text}"
    );
    let out =
        run_command(&["config", "check", "--pg-url", "postgres://u@h/db", "--sink", "redis"], &[])
            .context("running config check")?;
    let text = output_text(&out);
    ensure!(!out.status.success() && text.contains("redis_url is not set"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_a_file_works_and_a_wrong_one_stops_with_the_fix() -> Result<()> {
    let pg = PgServer::start()?;
    let secret = "s3cret-Pass";
    let redis = RedisServer::start_with_password(secret)?;
    let names = Names::new("redis_auth");
    apply_sql(&pg, &names)?;
    let dir = tailbox_e2e::scratch_dir("redis-secret");
    std::fs::create_dir_all(&dir)?;
    let (right, wrong) = (dir.join("right"), dir.join("wrong"));
    std::fs::write(&right, format!("{secret}\n"))?;
    std::fs::write(&wrong, "not-it\n")?;

    let mut args = redis_args(&pg, &redis, &names);
    args.extend(["--redis-password-file".into(), wrong.to_string_lossy().into_owned()]);
    let (code, log) = harness::process::run_to_exit(&args, Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "refused: {code:?}\n{log}");
    ensure!(log.contains("password is wrong") && !log.contains("not-it"), "{log}");

    let mut args = redis_args(&pg, &redis, &names);
    args.extend(["--redis-password-file".into(), right.to_string_lossy().into_owned()]);
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    Workload { writers: 1, transactions: 4, aggregates: 2 }.run_at(&pg.url()).await?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    let log = tailbox.stop_clean()?;
    ensure!(!log.contains(secret), "the password is never logged");
    Ok(())
}

/// The test reader's connection: a whole stream per reply may take a while on a busy
/// machine (redis-rs gives up after 500 ms by default).
fn slow_reads() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_given_ca() -> Result<()> {
    let pg = PgServer::start()?;
    let (redis, ca, other_ca) = RedisServer::start_tls()?;
    ensure!(redis.url().starts_with("rediss://"));
    let names = Names::new("redis_tls");
    apply_sql(&pg, &names)?;

    let mut args = redis_args(&pg, &redis, &names);
    args.extend(["--redis-ca".into(), other_ca.to_string_lossy().into_owned()]);
    let (code, log) = harness::process::run_to_exit(&args, Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "an unrelated CA is refused: {code:?}\n{log}");
    ensure!(log.contains("certificate is not trusted") && log.contains("redis_ca"), "{log}");

    let mut args = redis_args(&pg, &redis, &names);
    args.extend(["--redis-ca".into(), ca.to_string_lossy().into_owned()]);
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    Workload { writers: 1, transactions: 4, aggregates: 2 }.run_at(&pg.url()).await?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    tailbox.stop_clean()?;
    Ok(())
}

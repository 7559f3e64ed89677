//! The core end-to-end set on every supported PostgreSQL major besides the default 15
//! (which runs the full suite): 13, 14, 16, 17 and 18, from the servers `scripts/pg.sh
//! fetch` caches (fetched on first use if `make deps` did not). Each test runs one
//! scenario of tests/harness/scenarios.rs on a fresh server of each major in turn, with
//! smaller workloads than the full suite's; a failure names the major. A major whose
//! server cannot be fetched or started fails the test: nothing is skipped.
//!
//! Plus what only some majors have: 13 streams without pgoutput's `messages` (and says
//! once that table-less events are unavailable); 18 invalidates idle slots
//! (`idle_replication_slot_timeout`), which tailbox refuses with the fix.

mod harness;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, run_to_exit},
    scenarios, wait_caught_up,
    workload::Workload,
};
use tailbox_e2e::{OTHER_PG_MAJORS, PgServer, consume_pattern, shared_kafka};

/// Runs `scenario` on a fresh server of each major in [`OTHER_PG_MAJORS`] from `from_major`
/// on, one after the other, and prints each one's time.
async fn on_every_major(
    what: &str,
    from_major: u32,
    scenario: impl AsyncFn(&PgServer, &str) -> Result<()>,
) -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let majors: Vec<u32> = OTHER_PG_MAJORS.into_iter().filter(|m| *m >= from_major).collect();
    ensure!(!majors.is_empty(), "no major to run {what} on");
    for major in majors {
        let started = Instant::now();
        let pg = PgServer::start_major(major)?;
        ensure!(pg.major() == major, "asked for PostgreSQL {major}, got {}", pg.major());
        scenario(&pg, &kafka).await.with_context(|| format!("{what} on PostgreSQL {major}"))?;
        println!("{what}: PostgreSQL {major} passed in {:.1?}", started.elapsed());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_major_publishes_concurrent_writers_in_commit_order() -> Result<()> {
    let workload = Workload { writers: 4, transactions: 120, aggregates: 20 };
    on_every_major("commit order", 13, async |pg, kafka| {
        let (_, records) = scenarios::commit_order(pg, kafka, "major_order", workload).await?;
        ensure!(records.len() == workload.expected().len(), "{} records", records.len());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_major_resumes_after_sigkill_without_loss() -> Result<()> {
    let workload = Workload { writers: 4, transactions: 160, aggregates: 20 };
    on_every_major("SIGKILL resume", 13, async |pg, kafka| {
        scenarios::sigkill_resume(pg, kafka, "major_crash", workload, 2, &[]).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_major_keeps_an_idle_slot_close_to_the_wal() -> Result<()> {
    on_every_major("idle WAL", 13, async |pg, kafka| {
        scenarios::idle_slot_follows_the_wal(pg, kafka, "major_idle", 1).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_major_from_14_publishes_table_less_messages() -> Result<()> {
    on_every_major("table-less outbox", 14, async |pg, kafka| {
        scenarios::table_less_messages(pg, kafka, "major_messages").await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_major_exactly_once_survives_sigkill_without_duplicates() -> Result<()> {
    let workload = Workload { writers: 4, transactions: 100, aggregates: 20 };
    on_every_major("exactly-once", 13, async |pg, kafka| {
        let report =
            scenarios::sigkill_resume(pg, kafka, "major_eos", workload, 2, &["--exactly-once"])
                .await?;
        ensure!(report.duplicates == 0, "exactly-once published duplicates: {report}");
        Ok(())
    })
    .await
}

/// PostgreSQL 13's pgoutput has no `messages` option: tailbox streams without it,
/// publishes the rows, not the messages, and says so once, also across a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_13_publishes_rows_and_warns_once_that_messages_are_unavailable() -> Result<()> {
    let pg = PgServer::start_major(13)?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("pg13_messages");
    apply_sql(&pg, &names)?;
    let mut tailbox = Tailbox::start(&base_args(&pg, &kafka, &names))?;
    let first = scenarios::write_rows_and_messages(&pg, 0, 10).await?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;
    pg.restart("fast")?;
    let second = scenarios::write_rows_and_messages(&pg, 10, 10).await?;
    wait_caught_up(&pg, &names).await.with_context(|| tailbox.log_text())?;

    let rows = first.iter().chain(&second).filter(|(_, _, i)| *i == 0).count();
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), rows, Duration::from_secs(90)).await?;
    ensure!(tailbox.is_running(), "tailbox must run on 13:\n{}", tailbox.log_text());
    ensure!(
        records.len() == rows
            && records.iter().all(|r| r.header("type") == Some(b"Row".as_slice())),
        "{} records for {rows} rows; types: {:?}",
        records.len(),
        records.iter().map(|r| r.header("type").map(String::from_utf8_lossy)).collect::<Vec<_>>()
    );
    let log = tailbox.stop_clean()?;
    let warnings = log.matches("pg_logical_emit_message are not published").count();
    ensure!(warnings == 1, "the warning once, got {warnings}:\n{log}");
    ensure!(log.contains("session failed; retrying"), "the restart made tailbox reconnect:\n{log}");
    ensure!(log.contains("server_version=\"13."), "the warning names the version:\n{log}");
    Ok(())
}

/// PostgreSQL 18 invalidates a slot unused for longer than
/// `idle_replication_slot_timeout` at the next checkpoint; tailbox refuses it at startup
/// with that cause and its fix (not the `max_slot_wal_keep_size` one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_18_refuses_a_slot_invalidated_by_idle_replication_slot_timeout() -> Result<()> {
    let pg = PgServer::start_major(18)?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("pg18_idle");
    apply_sql(&pg, &names)?;
    let args = base_args(&pg, &kafka, &names);
    let tailbox = Tailbox::start(&args)?;
    pg.psql("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('A', 'a', 'T', '{}')")?;
    wait_caught_up(&pg, &names).await?;

    // While tailbox runs, the slot is active and never idle: a checkpoint leaves it alone.
    pg.psql("ALTER SYSTEM SET idle_replication_slot_timeout = '1s'")?;
    pg.psql("SELECT pg_reload_conf()")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.psql("CHECKPOINT")?;
    let reason_sql = format!(
        "SELECT coalesce(invalidation_reason, 'valid') FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot
    );
    ensure!(pg.psql(&reason_sql)? == "valid", "an active slot is not idle");
    tailbox.terminate(Duration::from_secs(30))?;

    // Stopped for longer than the timeout, then a checkpoint: invalidated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.psql("CHECKPOINT")?;
    let reason = pg.psql(&reason_sql)?;
    ensure!(reason == "idle_timeout", "the slot should be invalidated by now, reason {reason}");

    let (code, log) = run_to_exit(&args, Duration::from_secs(60))?;
    let last = log.lines().last().unwrap_or_default().to_owned();
    ensure!(code == Some(1), "tailbox must refuse, exit {code:?}: {log}");
    ensure!(
        last.contains("idle_replication_slot_timeout")
            && last.contains("invalidated")
            && last.contains("fix:")
            && !last.contains("max_slot_wal_keep_size"),
        "{last}"
    );
    Ok(())
}

//! The core end-to-end scenarios, shared by the full suite (on the default PostgreSQL)
//! and tests/pg_majors.rs (the same scenarios on every other major, smaller workloads).
//! Each sets up its own slot and publication on `pg`, runs tailbox, and fails naming what
//! broke (with tailbox's log where it helps).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tailbox_e2e::{ConsumedRecord, PgServer, consume_pattern};

use super::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    slot_and_wal,
    verify::{Report, verify},
    wait_caught_up,
    workload::{EventId, Workload},
};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

/// A tiny deterministic RNG (xorshift), seeded from the clock and printed, so a failing
/// run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42)
            | 1;
        println!("rng seed {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Concurrent writers run `workload` while tailbox publishes: nothing lost, per-aggregate
/// commit order, no duplicates, right xid headers. Returns the records and the test's
/// names for further checks.
pub async fn commit_order(
    pg: &PgServer,
    kafka: &str,
    test: &str,
    workload: Workload,
) -> Result<(Names, Vec<ConsumedRecord>)> {
    let names = Names::new(test);
    apply_sql(pg, &names)?;
    let tailbox = Tailbox::start(&base_args(pg, kafka, &names))?;
    workload.run(pg).await?;
    let expected = workload.expected();
    let records =
        consume_pattern(kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: PostgreSQL {} {report}", pg.major());
    ensure!(report.lost == 0, "events lost: {report}\n{}", tailbox.log_text());
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}\n{}", tailbox.log_text());
    ensure!(
        report.duplicates == 0,
        "a clean run publishes no duplicates: {report}\n{}",
        tailbox.log_text()
    );
    ensure!(report.wrong_xid == 0, "xid headers wrong: {report}");
    wait_caught_up(pg, &names).await?;
    tailbox.terminate(Duration::from_secs(30))?;
    Ok((names, records))
}

/// tailbox is SIGKILLed `kills` times at random moments while `workload` runs, and started
/// again each time (with `extra_args`, e.g. `--exactly-once`): nothing lost, order kept,
/// right xid headers. Returns the report (duplicates are the caller's to judge).
pub async fn sigkill_resume(
    pg: &PgServer,
    kafka: &str,
    test: &str,
    workload: Workload,
    kills: u32,
    extra_args: &[&str],
) -> Result<Report> {
    let names = Names::new(test);
    apply_sql(pg, &names)?;
    let mut args = base_args(pg, kafka, &names);
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    let mut tailbox = Tailbox::start(&args)?;
    let writers = {
        let url = pg.url();
        tokio::spawn(async move { workload.run_at(&url).await })
    };
    let mut rng = Rng::from_clock();
    for kill in 1..=kills {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1500))).await;
        tailbox.kill()?;
        println!("SIGKILL {kill}");
        tailbox = Tailbox::start(&args)?;
    }
    writers.await??;
    if let Err(err) = wait_caught_up(pg, &names).await {
        bail!("{err:#}\n{}", tailbox.log_text());
    }
    let expected = workload.expected();
    let records =
        consume_pattern(kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: PostgreSQL {} kills {kills} {report}", pg.major());
    ensure!(report.lost == 0, "events lost after SIGKILL: {report}\n{}", tailbox.log_text());
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}");
    ensure!(report.wrong_xid == 0, "xid headers wrong: {report}");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(report)
}

/// With no outbox events, only writes to another table, the slot still follows the WAL:
/// in each of `rounds`, what was the WAL's end is confirmed within 3 s of other-table
/// writes; then, after a CHECKPOINT, `restart_lsn` (the WAL the slot keeps) moves past
/// where the WAL ended before it, so an idle outbox holds no WAL back.
pub async fn idle_slot_follows_the_wal(
    pg: &PgServer,
    kafka: &str,
    test: &str,
    rounds: u32,
) -> Result<()> {
    let names = Names::new(test);
    apply_sql(pg, &names)?;
    let tailbox = Tailbox::start(&base_args(pg, kafka, &names))?;
    let client = pg.client().await?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS chatter (id bigserial PRIMARY KEY, note text)")
        .await?;
    let mut worst_lag = 0u64;
    for _ in 0..rounds {
        for _ in 0..10 {
            client
                .execute(
                    "INSERT INTO chatter (note) SELECT repeat('x', 500) FROM generate_series(1, 50)",
                    &[],
                )
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (confirmed, target) = slot_and_wal(&client, &names.slot).await?;
        worst_lag = worst_lag.max(target.saturating_sub(confirmed));
        for _ in 0..10 {
            client.execute("INSERT INTO chatter (note) VALUES ('tick')", &[]).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (confirmed, _) = slot_and_wal(&client, &names.slot).await?;
        ensure!(
            confirmed >= target,
            "PostgreSQL {}: slot confirmed {confirmed:X} still behind {target:X} after 3 s of other-table writes\n{}",
            pg.major(),
            tailbox.log_text()
        );
    }
    println!("PostgreSQL {}: worst sampled lag {worst_lag} bytes", pg.major());

    let (_, before) = slot_and_wal(&client, &names.slot).await?;
    client.batch_execute("CHECKPOINT").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let restart = slot_restart_lsn(&client, &names.slot).await?;
        if restart >= before {
            println!("PostgreSQL {}: restart_lsn {restart:X} past {before:X}", pg.major());
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "PostgreSQL {}: restart_lsn {restart:X} still behind {before:X} 30 s after a CHECKPOINT: the idle slot holds WAL back\n{}",
                pg.major(),
                tailbox.log_text()
            );
        }
        client.execute("INSERT INTO chatter (note) VALUES ('tick')", &[]).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// The slot's `restart_lsn` (0 if it has none).
pub async fn slot_restart_lsn(client: &tokio_postgres::Client, slot: &str) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT (restart_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .with_context(|| format!("reading the restart_lsn of {slot}"))?;
    let lsn: Option<i64> = row.get(0);
    Ok(lsn.unwrap_or(0) as u64)
}

/// Writes `transactions` transactions, each with one table row and one envelope message
/// (`pg_logical_emit_message`, PostgreSQL 14+ for tailbox) for the same aggregate, so
/// their relative order is checked too.
pub async fn write_rows_and_messages(
    pg: &PgServer,
    first_t: u32,
    transactions: u32,
) -> Result<Vec<EventId>> {
    let mut client = pg.client().await?;
    let mut ids = Vec::new();
    for t in first_t..first_t + transactions {
        let tx = client.transaction().await?;
        let agg = format!("a{}", t % 5);
        tx.execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             VALUES ('Agg0', $1, 'Row', jsonb_build_object('w', 0, 't', $2::int, 'i', 0, 'xid', pg_current_xact_id()::text))",
            &[&agg, &(t as i32)],
        )
        .await?;
        tx.execute(
            "SELECT pg_logical_emit_message(true, 'outbox', jsonb_build_object( \
                'aggregatetype', 'Agg0', 'aggregateid', $1::text, 'type', 'Message', 'id', gen_random_uuid(), \
                'headers', jsonb_build_object('source', 'message'), \
                'payload', jsonb_build_object('w', 0, 't', $2::int, 'i', 1, 'xid', pg_current_xact_id()::text))::text)",
            &[&agg, &(t as i32)],
        )
        .await?;
        tx.commit().await?;
        ids.push((0, t, 0));
        ids.push((0, t, 1));
    }
    Ok(ids)
}

/// Table-less events (`pg_logical_emit_message` envelopes) and rows in the same
/// transactions publish in order, with the envelope's headers; a non-transactional
/// message is not an event; after a clean restart nothing comes twice.
pub async fn table_less_messages(pg: &PgServer, kafka: &str, test: &str) -> Result<()> {
    let names = Names::new(test);
    apply_sql(pg, &names)?;
    let args = base_args(pg, kafka, &names);

    let tailbox = Tailbox::start(&args)?;
    let mut expected = write_rows_and_messages(pg, 0, 30).await?;
    // A non-transactional message is not an outbox event (no commit to order it by).
    pg.psql("SELECT pg_logical_emit_message(false, 'outbox', '{\"aggregatetype\":\"Agg0\",\"aggregateid\":\"x\",\"payload\":{}}')")?;
    wait_caught_up(pg, &names).await?;
    let status = tailbox.terminate(Duration::from_secs(30))?;
    ensure!(status.success(), "clean stop");

    // Restart: nothing already published comes again.
    let tailbox = Tailbox::start(&args)?;
    expected.extend(write_rows_and_messages(pg, 30, 10).await?);
    let records =
        consume_pattern(kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected.iter().copied().collect())?;
    println!("summary: PostgreSQL {} {report}", pg.major());
    ensure!(
        report.lost == 0 && report.reordered == 0 && report.wrong_xid == 0,
        "{report}\n{}",
        tailbox.log_text()
    );
    ensure!(report.duplicates == 0, "messages published twice after a restart: {report}");
    let message = records.iter().find(|r| r.header("type") == Some(b"Message".as_slice()));
    ensure!(
        message.is_some_and(
            |m| m.header("source") == Some(b"message".as_slice()) && m.header("id").is_some()
        ),
        "envelope headers"
    );
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

//! `tailbox backfill`: rows already in the table are published, then streaming goes on
//! with no gap and no duplicate at the boundary, while writers keep committing.

mod harness;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql_files,
    process::{Tailbox, base_args},
    slot_and_wal,
    verify::verify,
    wait_for_confirmed,
    workload::EventId,
};
use tailbox_e2e::{PgServer, consume_pattern, shared_kafka};

/// Commits transactions of 10 events until `stop` is set (or `transactions` were written).
async fn write(
    url: String,
    first_t: u32,
    transactions: u32,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Vec<EventId>> {
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut ids = Vec::new();
    for t in first_t..first_t + transactions {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT 'Agg0', 'a' || (i % 7), 'Happened', \
                    jsonb_build_object('w', 2, 't', $1::int, 'i', i, 'xid', pg_current_xact_id()::text) \
             FROM generate_series(0, 9) i",
            &[&(t as i32)],
        )
        .await?;
        tx.commit().await?;
        ids.extend((0..10).map(|i| (2, t, i)));
        tokio::time::sleep(pause).await;
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_publishes_existing_rows_then_streams_without_gap_or_duplicate() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("backfill");
    // Everything but the slot: the backfill creates it.
    apply_sql_files(
        &pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("02_publication.sql", vec![format!("publication={}", names.publication)]),
            ("04_role.sql", vec!["password=tailbox-test".to_owned()]),
        ],
    )?;
    // tailbox's role creates the slot here, so it needs REPLICATION (it has it).
    let never = Arc::new(AtomicBool::new(false));
    let mut expected = write(pg.url(), 0, 50, Duration::ZERO, never).await?;

    // Writers keep committing while the backfill creates the slot and reads the table,
    // and for a while after.
    let stop = Arc::new(AtomicBool::new(false));
    let during =
        tokio::spawn(write(pg.url(), 100, 100_000, Duration::from_millis(20), Arc::clone(&stop)));
    let mut args = base_args(&pg, &kafka, &names);
    args[0] = "backfill".into();
    let tailbox = Tailbox::start(&args)?;
    let client = pg.client().await?;
    let slot_query = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1";
    for _ in 0..600 {
        let n: i64 = client.query_one(slot_query, &[&names.slot]).await?.get(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    expected.extend(during.await??);

    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60)).await?;
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), Duration::from_secs(90))
            .await?;
    let report = verify(&records, &expected.iter().copied().collect())?;
    println!("summary: {report}");
    ensure!(report.lost == 0, "gap at the backfill boundary: {report}\n{}", tailbox.log_text());
    ensure!(report.duplicates == 0, "duplicates at the backfill boundary: {report}");
    ensure!(report.reordered == 0, "{report}");
    let backfilled =
        records.iter().filter(|r| r.header("backfill") == Some(b"true".as_slice())).count();
    println!("backfilled {backfilled}");
    ensure!(backfilled >= 500, "the 500 rows written before were backfilled, got {backfilled}");
    ensure!(backfilled < records.len(), "some rows were streamed after the boundary");
    ensure!(report.wrong_xid == 0, "xid headers (xmin for backfilled rows): {report}");

    // A second backfill refuses: the slot exists.
    let (code, log) = harness::process::run_to_exit(&args, Duration::from_secs(60))?;
    ensure!(code == Some(1) && log.contains("already exists") && log.contains("fix:"), "{log}");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

//! Slot safety: a slot invalidated by `max_slot_wal_keep_size` is refused with a clear
//! message, never silently skipped.

mod harness;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, run_to_exit},
    slot_and_wal, wait_for_confirmed,
};
use tailbox_e2e::{PgServer, shared_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_slot_invalidated_by_max_slot_wal_keep_size() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("lost");
    apply_sql(&pg, &names)?;
    let args = base_args(&pg, &kafka, &names);

    // Publish something, stop cleanly.
    let tailbox = Tailbox::start(&args)?;
    pg.psql("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('A', 'a', 'T', '{}')")?;
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60)).await?;
    tailbox.terminate(Duration::from_secs(30))?;

    // While tailbox is down, an outbox event and then more WAL than the slot may keep.
    pg.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")?;
    pg.psql("SELECT pg_reload_conf()")?;
    pg.psql("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('A', 'a', 'T', '{}')")?;
    pg.psql("CREATE TABLE filler (v text)")?;
    for _ in 0..4 {
        pg.psql("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000)")?;
        pg.psql("SELECT pg_switch_wal()")?;
        pg.psql("CHECKPOINT")?;
    }
    let status = pg.psql(&format!(
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot
    ))?;
    ensure!(
        status.trim() == "lost",
        "the slot should be invalidated by now, wal_status = {status}"
    );

    let (code, log) = run_to_exit(&args, Duration::from_secs(60))?;
    let last = log.lines().last().unwrap_or_default().to_owned();
    ensure!(code == Some(1), "tailbox must refuse, exit {code:?}: {log}");
    ensure!(
        last.contains("invalidated") && last.contains("events were lost") && last.contains("fix:"),
        "{last}"
    );
    Ok(())
}

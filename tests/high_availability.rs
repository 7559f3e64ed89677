//! High availability: a second instance on the same slot stands by and takes over
//! within seconds when the first dies.

mod harness;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    slot_and_wal, wait_for_confirmed,
};
use tailbox_e2e::{PgServer, consume_pattern, shared_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_within_seconds_when_the_active_instance_dies() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("ha");
    apply_sql(&pg, &names)?;
    let args = base_args(&pg, &kafka, &names);
    let insert = |n: u32| {
        format!(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             VALUES ('Agg0', 'a', 'Happened', jsonb_build_object('w', 0, 't', {n}, 'i', 0, 'xid', pg_current_xact_id()::text))"
        )
    };

    let active = Tailbox::start(&args)?;
    let client = pg.client().await?;
    pg.psql(&insert(0))?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60)).await?;

    let mut standby = Tailbox::start(&args)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(standby.is_running(), "the standby waits instead of exiting:\n{}", standby.log_text());
    ensure!(standby.log_text().contains("standing by"), "standby log:\n{}", standby.log_text());

    active.kill()?;
    let killed = Instant::now();
    pg.psql(&insert(1))?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(30)).await?;
    let takeover = killed.elapsed();
    println!("takeover in {takeover:?}");
    ensure!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");

    let records =
        consume_pattern(&kafka, &names.topic_pattern(), 2, Duration::from_secs(60)).await?;
    let ts: Vec<String> = records.iter().map(|r| r.payload_str()).collect();
    ensure!(
        records.len() >= 2 && ts.iter().any(|p| p.contains("\"t\": 1")),
        "event after takeover: {ts:?}"
    );
    standby.terminate(Duration::from_secs(30))?;
    Ok(())
}

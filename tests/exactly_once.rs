//! Exactly-once mode: Kafka transactions with the checkpoint inside, the slot confirmed
//! after the Kafka commit, committed transactions skipped on restart.

mod harness;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    slot_and_wal,
    verify::verify,
    wait_for_confirmed,
    workload::Workload,
};
use tailbox_e2e::{PgServer, consume_pattern, shared_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_sigkill_with_no_loss_and_no_duplicates() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("eos");
    apply_sql(&pg, &names)?;
    let mut args = base_args(&pg, &kafka, &names);
    args.push("--exactly-once".into());
    let mut tailbox = Tailbox::start(&args)?;

    let workload = Workload { writers: 4, transactions: 200, aggregates: 30 };
    let writers = {
        let url = pg.url();
        tokio::spawn(async move { workload.run_at(&url).await })
    };
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    println!("seed {seed}");
    for kill in 0..3u64 {
        tokio::time::sleep(Duration::from_millis(400 + (seed >> (kill * 8)) % 1200)).await;
        tailbox.kill()?;
        tailbox = Tailbox::start(&args)?;
    }
    writers.await??;
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    if let Err(err) =
        wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(120)).await
    {
        anyhow::bail!("{err}\n{}", tailbox.log_text());
    }

    // The test consumer reads with isolation.level=read_committed.
    let expected = workload.expected();
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), Duration::from_secs(120))
            .await?;
    let report = verify(&records, &expected)?;
    println!("summary: kills 3 {report}");
    ensure!(report.lost == 0 && report.reordered == 0 && report.wrong_xid == 0, "{report}");
    ensure!(
        report.duplicates == 0,
        "exactly-once published duplicates: {report}\n{}",
        tailbox.log_text()
    );
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

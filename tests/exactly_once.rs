//! Exactly-once mode: Kafka transactions with the checkpoint inside, the slot confirmed
//! after the Kafka commit, committed transactions skipped on restart.

mod harness;

use anyhow::{Result, ensure};
use harness::{scenarios, workload::Workload};
use tailbox_e2e::{PgServer, shared_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_sigkill_with_no_loss_and_no_duplicates() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let workload = Workload { writers: 4, transactions: 200, aggregates: 30 };
    // The test consumer reads with isolation.level=read_committed.
    let report =
        scenarios::sigkill_resume(&pg, &kafka, "eos", workload, 3, &["--exactly-once"]).await?;
    ensure!(report.duplicates == 0, "exactly-once published duplicates: {report}");
    Ok(())
}

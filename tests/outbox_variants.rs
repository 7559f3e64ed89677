//! The other ways to write outbox events: `pg_logical_emit_message` envelopes (no
//! table) and insert-then-delete in the same transaction (the table stays empty).

mod harness;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    scenarios,
    verify::verify,
};
use tailbox_e2e::{PgServer, consume_pattern, shared_kafka};

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_less_messages_publish_in_order_with_rows_and_never_twice() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    scenarios::table_less_messages(&pg, &kafka, "messages").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_then_delete_in_one_transaction_publishes_and_keeps_the_table_empty() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("insdel");
    apply_sql(&pg, &names)?;
    let tailbox = Tailbox::start(&base_args(&pg, &kafka, &names))?;
    let mut client = pg.client().await?;
    for t in 0..20 {
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
                 VALUES ('Agg1', 'a' || ($1::int % 3), 'Happened', \
                         jsonb_build_object('w', 1, 't', $1::int, 'i', 0, 'xid', pg_current_xact_id()::text)) \
                 RETURNING id::text",
                &[&t],
            )
            .await?;
        let id: String = row.try_get(0)?;
        tx.execute("DELETE FROM outbox WHERE id::text = $1", &[&id]).await?;
        tx.commit().await?;
    }
    let remaining = pg.psql("SELECT count(*) FROM outbox")?;
    ensure!(remaining.trim() == "0", "the table stays empty, has {remaining}");
    let expected = (0..20).map(|t| (1, t, 0)).collect();
    let records = consume_pattern(&kafka, &names.topic_pattern(), 20, TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("summary: {report}");
    ensure!(report.lost == 0 && report.reordered == 0 && report.duplicates == 0, "{report}");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_old_rows_in_batches_and_keeps_new_ones() -> Result<()> {
    let pg = PgServer::start()?;
    let names = Names::new("cleanup");
    apply_sql(&pg, &names)?;
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload, \"timestamp\") \
         SELECT 'Agg0', 'a', 'T', '{}', now() - interval '10 days' FROM generate_series(1, 2500)",
    )?;
    pg.psql("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) SELECT 'Agg0', 'a', 'T', '{}' FROM generate_series(1, 7)")?;
    let out = std::process::Command::new(tailbox_e2e::tailbox_bin()?)
        .args(["cleanup", "--pg-url", &pg.url(), "--older-than", "7 days", "--batch-size", "1000"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "cleanup failed: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(stdout.contains("deleted 2500 rows"), "{stdout}");
    ensure!(pg.psql("SELECT count(*) FROM outbox")?.trim() == "7", "new rows stay");
    Ok(())
}

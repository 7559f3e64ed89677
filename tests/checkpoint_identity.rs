//! A checkpoint skips transactions only when it provably belongs to this slot of this
//! database of this cluster, and only as far as this server's WAL is the WAL it was
//! taken from. Attacked with the configurations that broke it: two databases with
//! identical settings on one Kafka, a re-created cluster with the old slot name, and a
//! cluster restored from a copy (same timeline, and promoted onto a new one) after the
//! original had published more.

mod harness;

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, run_to_exit, status_text},
    slot_and_wal,
    verify::{Report, verify},
    wait_caught_up, wait_streaming,
    workload::{EventId, Workload},
};
use tailbox_e2e::{ConsumedRecord, PgServer, consume_all, consume_pattern, shared_kafka};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

/// The second database's writers are numbered from here (the payload's `w`), so that
/// the events of two databases sharing topics can be told apart.
const SECOND_WRITERS: u32 = 100;

/// The records whose writer number lies in `writers`.
fn written_by(records: &[ConsumedRecord], writers: std::ops::Range<u32>) -> Vec<ConsumedRecord> {
    records
        .iter()
        .filter(|r| {
            serde_json::from_slice::<serde_json::Value>(r.payload.as_deref().unwrap_or_default())
                .ok()
                .and_then(|p| p.get("w").and_then(|w| w.as_u64()))
                .is_some_and(|w| writers.contains(&(w as u32)))
        })
        .cloned()
        .collect()
}

/// Verifies the events of writers `writers` against `expected`: none lost, none out
/// of order, every `xid` header right.
fn verify_part(
    records: &[ConsumedRecord],
    writers: std::ops::Range<u32>,
    expected: &BTreeSet<EventId>,
    what: &str,
) -> Result<Report> {
    let report = verify(&written_by(records, writers), expected)?;
    println!("{what}: {report}");
    ensure!(report.lost == 0, "{what}: events lost: {report}");
    ensure!(report.reordered == 0, "{what}: per-aggregate order broken: {report}");
    ensure!(report.wrong_xid == 0, "{what}: xid headers wrong: {report}");
    Ok(report)
}

/// Two services, each with its own database, both running tailbox with identical
/// settings (slot, publication, topics, checkpoint topic) against one Kafka, writers on
/// both at once, each tailbox SIGKILLed in the middle. (Before checkpoint identities the
/// second tailbox took the first one's checkpoint for its own and skipped everything
/// below it.)
async fn two_databases_with_identical_settings(exactly_once: bool) -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new(if exactly_once { "twins_eos" } else { "twins" });
    let (first, second) = (PgServer::start()?, PgServer::start()?);
    apply_sql(&first, &names)?;
    apply_sql(&second, &names)?;
    let args = |pg: &PgServer| {
        let mut args = base_args(pg, &kafka, &names);
        if exactly_once {
            args.push("--exactly-once".into());
        }
        args
    };
    // The first database publishes for a while before the second starts: its
    // checkpoint then stands far ahead of every LSN the second will write.
    let mut tailbox_1 = Tailbox::start(&args(&first))?;
    let head_start = Workload { writers: 2, transactions: 100, aggregates: 30 };
    head_start.run_numbered(&first.url(), 50).await?;
    wait_caught_up(&first, &names).await.with_context(|| tailbox_1.log_text())?;
    let mut tailbox_2 = Tailbox::start(&args(&second))?;

    let workload = Workload { writers: 4, transactions: 160, aggregates: 30 };
    let writers_1 = {
        let url = first.url();
        tokio::spawn(async move { workload.run_numbered(&url, 0).await })
    };
    let writers_2 = {
        let url = second.url();
        tokio::spawn(async move { workload.run_numbered(&url, SECOND_WRITERS).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    tailbox_1.kill()?;
    tailbox_1 = Tailbox::start(&args(&first))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tailbox_2.kill()?;
    tailbox_2 = Tailbox::start(&args(&second))?;
    writers_1.await??;
    writers_2.await??;
    wait_caught_up(&first, &names).await.with_context(|| tailbox_1.log_text())?;
    wait_caught_up(&second, &names).await.with_context(|| tailbox_2.log_text())?;

    let mut expected_1 = workload.expected_numbered(0);
    expected_1.extend(head_start.expected_numbered(50));
    let expected_2 = workload.expected_numbered(SECOND_WRITERS);
    let total = expected_1.len() + expected_2.len();
    let records = consume_pattern(&kafka, &names.topic_pattern(), total, CONSUME_TIMEOUT).await?;
    let report_1 = verify_part(&records, 0..SECOND_WRITERS, &expected_1, "first database")
        .map_err(|e| e.context(tailbox_1.log_text()))?;
    let report_2 = verify_part(&records, SECOND_WRITERS..u32::MAX, &expected_2, "second database")
        .map_err(|e| e.context(tailbox_2.log_text()))?;
    if exactly_once {
        ensure!(
            report_1.duplicates + report_2.duplicates == 0,
            "read_committed consumers see each event once: {report_1} / {report_2}"
        );
    }

    // Each database keeps a checkpoint of its own.
    let checkpoints =
        consume_all(&kafka, std::slice::from_ref(&names.checkpoint_topic), 2, CONSUME_TIMEOUT)
            .await?;
    let keys: BTreeSet<String> = checkpoints.iter().map(|r| r.key_str()).collect();
    ensure!(keys.len() == 2, "two owners' checkpoint keys, found {keys:?}");
    ensure!(keys.iter().all(|k| k.ends_with(&format!("/{}/postgres", names.slot))), "{keys:?}");
    tailbox_1.stop_clean()?;
    tailbox_2.stop_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_with_identical_settings_share_one_kafka() -> Result<()> {
    two_databases_with_identical_settings(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_with_identical_settings_share_one_kafka_exactly_once() -> Result<()> {
    two_databases_with_identical_settings(true).await
}

/// A cluster destroyed and re-created (new initdb) with the same slot name, same Kafka,
/// same checkpoint topic: its LSNs lie below the old cluster's checkpoint, and every
/// event of the new cluster arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_cluster_with_the_old_slot_name_publishes_every_event() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("recreated");
    let old = PgServer::start()?;
    apply_sql(&old, &names)?;
    let tailbox = Tailbox::start(&base_args(&old, &kafka, &names))?;
    let before = Workload { writers: 2, transactions: 200, aggregates: 20 };
    before.run_numbered(&old.url(), 0).await?;
    wait_caught_up(&old, &names).await.with_context(|| tailbox.log_text())?;
    tailbox.stop_clean()?;
    let (old_checkpoint, _) = slot_and_wal(&old.client().await?, &names.slot).await?;
    drop(old);

    let new = PgServer::start()?;
    apply_sql(&new, &names)?;
    let tailbox = Tailbox::start(&base_args(&new, &kafka, &names))?;
    wait_streaming(&new, &names.slot, &tailbox).await?;
    let after = Workload { writers: 2, transactions: 40, aggregates: 20 };
    after.run_numbered(&new.url(), SECOND_WRITERS).await?;
    let (_, new_end) = slot_and_wal(&new.client().await?, &names.slot).await?;
    ensure!(
        new_end < old_checkpoint,
        "the new cluster's events must lie below the old checkpoint ({new_end:X} vs {old_checkpoint:X}), or this test proves nothing"
    );
    wait_caught_up(&new, &names).await.with_context(|| tailbox.log_text())?;

    let expected = after.expected_numbered(SECOND_WRITERS);
    let total = before.expected().len() + expected.len();
    let records = consume_pattern(&kafka, &names.topic_pattern(), total, CONSUME_TIMEOUT).await?;
    verify_part(&records, SECOND_WRITERS..u32::MAX, &expected, "re-created cluster")
        .map_err(|e| e.context(tailbox.log_text()))?;
    let log = tailbox.stop_clean()?;
    ensure!(
        log.contains("checkpoint record not used") && log.contains("a cluster this one replaced"),
        "the old cluster's checkpoint is reported once as ignored:\n{log}"
    );
    Ok(())
}

/// A backup (a cold copy, slot included) restored after the original published more:
/// restored as is (same timeline, its WAL ends before the checkpoint) and promoted from
/// recovery (a new timeline branching off before the checkpoint). Both refuse to start
/// with the LSNs, the timelines and the fix; `status` says the checkpoint does not
/// match; accepted once, every new event arrives and later starts need nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_cluster_refuses_a_checkpoint_past_its_wal_until_accepted() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("restored");
    let primary = PgServer::start()?;
    apply_sql(&primary, &names)?;
    let tailbox = Tailbox::start(&base_args(&primary, &kafka, &names))?;
    let backed_up = Workload { writers: 2, transactions: 40, aggregates: 10 };
    backed_up.run_numbered(&primary.url(), 0).await?;
    wait_caught_up(&primary, &names).await.with_context(|| tailbox.log_text())?;
    tailbox.stop_clean()?;

    // The backups: slot and WAL as they are now.
    let restored_as_is = primary.cold_copy(false)?;
    let restored_and_promoted = primary.cold_copy(true)?;

    // The original publishes events the backups never see, then is gone.
    let tailbox = Tailbox::start(&base_args(&primary, &kafka, &names))?;
    wait_streaming(&primary, &names.slot, &tailbox).await?;
    let orphaned = Workload { writers: 2, transactions: 40, aggregates: 10 };
    orphaned.run_numbered(&primary.url(), 50).await?;
    wait_caught_up(&primary, &names).await.with_context(|| tailbox.log_text())?;
    tailbox.stop_clean()?;
    drop(primary);

    // Same timeline, WAL ending before the checkpoint.
    let (code, log) =
        run_to_exit(&base_args(&restored_as_is, &kafka, &names), Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "refused, exit code {code:?}:\n{log}");
    ensure!(
        log.contains("has WAL only up to") && log.contains("--accept-checkpoint-divergence"),
        "names the positions and the fix:\n{log}"
    );
    drop(restored_as_is);

    // Promoted: timeline 2, branching off timeline 1 before the checkpoint.
    let restored = restored_and_promoted;
    restored.promote()?;
    let status = status_text(&restored, &names, &["--kafka-brokers", &kafka])?;
    ensure!(
        status.contains("timeline 2") && status.contains("DOES NOT MATCH"),
        "status shows both identities and the mismatch:\n{status}"
    );
    let (code, log) = run_to_exit(&base_args(&restored, &kafka, &names), Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "refused, exit code {code:?}:\n{log}");
    ensure!(
        log.contains("on timeline 1")
            && log.contains("timeline 2, which branched off timeline 1 at"),
        "names both timelines and the switch point:\n{log}"
    );

    // Accepted once: the events written on the new timeline all arrive.
    let mut accept = base_args(&restored, &kafka, &names);
    accept.push("--accept-checkpoint-divergence".into());
    let tailbox = Tailbox::start(&accept)?;
    wait_streaming(&restored, &names.slot, &tailbox).await?;
    let after = Workload { writers: 2, transactions: 40, aggregates: 10 };
    after.run_numbered(&restored.url(), SECOND_WRITERS).await?;
    wait_caught_up(&restored, &names).await.with_context(|| tailbox.log_text())?;
    tailbox.stop_clean()?;

    // The checkpoint is now this timeline's: a plain start streams on.
    let tailbox = Tailbox::start(&base_args(&restored, &kafka, &names))?;
    wait_streaming(&restored, &names.slot, &tailbox).await?;
    let later = Workload { writers: 2, transactions: 8, aggregates: 10 };
    later.run_numbered(&restored.url(), 2 * SECOND_WRITERS).await?;
    wait_caught_up(&restored, &names).await.with_context(|| tailbox.log_text())?;

    let expected_after = after.expected_numbered(SECOND_WRITERS);
    let expected_later = later.expected_numbered(2 * SECOND_WRITERS);
    let total = 2 * backed_up.expected().len() + expected_after.len() + expected_later.len();
    let records = consume_pattern(&kafka, &names.topic_pattern(), total, CONSUME_TIMEOUT).await?;
    verify_part(&records, 0..50, &backed_up.expected(), "before the backup")?;
    verify_part(&records, 50..SECOND_WRITERS, &orphaned.expected_numbered(50), "orphaned")?;
    let report =
        verify_part(&records, SECOND_WRITERS..2 * SECOND_WRITERS, &expected_after, "new timeline")
            .map_err(|e| e.context(tailbox.log_text()))?;
    ensure!(report.duplicates == 0, "a clean run publishes no duplicates: {report}");
    verify_part(&records, 2 * SECOND_WRITERS..u32::MAX, &expected_later, "after a plain restart")?;
    tailbox.stop_clean()?;
    Ok(())
}

//! Shared pieces of the end-to-end tests: a tailbox process, an outbox database set up
//! with the scripts in sql/, a concurrent writer workload, the checks on what a Kafka
//! consumer received, and the core scenarios every PostgreSQL major runs.

#![allow(dead_code)]

pub mod http;
pub mod process;
pub mod scenarios;
pub mod verify;
pub mod workload;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use tailbox_e2e::PgServer;
pub use tailbox_e2e::apply_sql_files;

/// Names that keep tests apart on the shared broker.
#[derive(Debug, Clone)]
pub struct Names {
    pub slot: String,
    pub publication: String,
    /// Topic prefix: topics are `{prefix}.{aggregatetype}`.
    pub topic_prefix: String,
    pub checkpoint_topic: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        let base = tailbox_e2e::unique_name(test);
        Self {
            slot: format!("{base}_slot"),
            publication: format!("{base}_pub"),
            topic_prefix: format!("{base}.event"),
            checkpoint_topic: format!("{base}.checkpoints"),
        }
    }

    /// The regex matching every outbox topic of this test.
    pub fn topic_pattern(&self) -> String {
        format!("^{}\\..*", self.topic_prefix.replace('.', "\\."))
    }

    pub fn topic_template(&self) -> String {
        format!("{}.{{aggregatetype}}", self.topic_prefix)
    }
}

/// Applies sql/01–04 (the scripts users run) with this test's names.
pub fn apply_sql(pg: &PgServer, names: &Names) -> Result<()> {
    apply_sql_files(
        pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("02_publication.sql", vec![format!("publication={}", names.publication)]),
            ("03_slot.sql", vec![format!("slot={}", names.slot)]),
            ("04_role.sql", vec!["password=tailbox-test".to_owned()]),
        ],
    )
}

/// `pg_current_wal_lsn()` and the slot's `confirmed_flush_lsn`.
pub async fn slot_and_wal(client: &tokio_postgres::Client, slot: &str) -> Result<(u64, u64)> {
    let row = client
        .query_one(
            "SELECT (SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = $1)::bigint, \
                    (pg_current_wal_lsn() - '0/0')::bigint",
            &[&slot],
        )
        .await?;
    let confirmed: Option<i64> = row.get(0);
    let current: i64 = row.get(1);
    Ok((confirmed.unwrap_or(0) as u64, current as u64))
}

/// Waits until the slot confirmed at least `target`.
pub async fn wait_for_confirmed(
    client: &tokio_postgres::Client,
    slot: &str,
    target: u64,
    timeout: Duration,
) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (confirmed, _) = slot_and_wal(client, slot).await?;
        if confirmed >= target {
            return Ok(confirmed);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("slot {slot} confirmed only {confirmed:X}, wanted {target:X} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 120 s) until the slot confirmed everything written so far.
pub async fn wait_caught_up(pg: &PgServer, names: &Names) -> Result<()> {
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(120)).await?;
    Ok(())
}

/// Waits (up to 60 s) until `slot` is held by a walsender, i.e. `tailbox` streams;
/// fails with tailbox's log otherwise.
pub async fn wait_streaming(pg: &PgServer, slot: &str, tailbox: &process::Tailbox) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let active = pg
            .psql(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"))?;
        if active.trim() == "t" {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("never streamed:\n{}", tailbox.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes `n` outbox events in one transaction (aggregate type `Order`, payload `{"i": N}`).
pub fn write_simple_events(pg: &PgServer, n: usize) -> Result<()> {
    pg.psql(&format!(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
         SELECT 'Order', 'o' || (i % 5), 'Created', jsonb_build_object('i', i) \
         FROM generate_series(1, {n}) AS i"
    ))?;
    Ok(())
}

/// Writes `n` events with [`write_simple_events`] and waits until all `n` distinct
/// payloads arrived on this test's topics (read from `bootstrap`); `context` is shown
/// on failure (e.g. tailbox's log).
pub async fn simple_events_arrive(
    pg: &PgServer,
    bootstrap: &str,
    names: &Names,
    n: usize,
    context: impl FnOnce() -> String,
) -> Result<()> {
    write_simple_events(pg, n)?;
    let records =
        tailbox_e2e::consume_pattern(bootstrap, &names.topic_pattern(), n, Duration::from_secs(90))
            .await?;
    let mut seen: Vec<String> = records.iter().map(|r| r.payload_str()).collect();
    seen.sort();
    seen.dedup();
    ensure!(seen.len() == n, "{} distinct events of {n} arrived\n{}", seen.len(), context());
    Ok(())
}

//! Writing outbox rows: the bulk load (many small transactions, already committed
//! before tailbox starts), the steady writers (a fixed rate), and the huge transaction.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::time::MissedTickBehavior;
use tokio_postgres::types::PgLsn;

use crate::env::AGGREGATE_TYPE;

/// Functions the loaders call. `bench_payload(g, pad)` is a JSON object of about
/// 90 bytes plus `pad` bytes of padding; keys spread over 1,000 aggregates.
pub const SETUP_SQL: &str = r"
CREATE EXTENSION IF NOT EXISTS pg_walinspect;

CREATE OR REPLACE FUNCTION bench_payload(g bigint, pad int) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'seq', g,
    'customer', 'customer-' || (g % 5000),
    'amount', round((g % 100000) / 100.0, 2),
    'currency', 'EUR',
    'note', repeat('x', pad))
$$;

CREATE OR REPLACE FUNCTION bench_insert(first bigint, n bigint, agg text, etype text, pad int)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
  SELECT agg, 'order-' || (g % 1000), etype, bench_payload(g, pad)
  FROM generate_series(first, first + n - 1) AS g
$$;

CREATE OR REPLACE PROCEDURE bench_load(first bigint, total bigint, txn bigint, agg text, pad int)
LANGUAGE plpgsql AS $$
DECLARE
  i bigint := 0;
BEGIN
  WHILE i < total LOOP
    PERFORM bench_insert(first + i, least(txn, total - i), agg, 'OrderCreated', pad);
    COMMIT;
    i := i + txn;
  END LOOP;
END
$$;
";

/// The padding that makes a payload's text about `bytes` long.
pub async fn pad_for(client: &tokio_postgres::Client, bytes: u32) -> Result<i32> {
    let row = client.query_one("SELECT octet_length(bench_payload(500000, 0)::text)", &[]).await?;
    let base: i32 = row.get(0);
    Ok((i64::from(bytes) - i64::from(base)).max(0) as i32)
}

/// The mean payload size (what tailbox puts in the record value: pgoutput sends
/// jsonb as its text form) over a sample of `rows` rows.
pub async fn mean_payload_bytes(
    client: &tokio_postgres::Client,
    rows: u64,
    pad: i32,
) -> Result<f64> {
    let rows = i64::try_from(rows)?;
    let step = (rows / 1000).max(1);
    let row = client
        .query_one(
            "SELECT avg(octet_length(bench_payload(g, $3)::text))::float8 \
             FROM generate_series(0::bigint, $1::bigint - 1, $2::bigint) AS g",
            &[&rows, &step, &pad],
        )
        .await?;
    Ok(row.get(0))
}

/// Rows committed; `end_lsn` is the end of the last transaction's commit record,
/// which is what the slot's `confirmed_flush_lsn` reaches once tailbox (or
/// pg_recvlogical) has confirmed that transaction.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub end_lsn: u64,
    /// Writing and committing.
    pub secs: f64,
    /// When the last COMMIT returned.
    pub committed_at: Instant,
}

/// `rows` rows in transactions of `txn`, committed with `synchronous_commit = off`
/// (the bulk is loading, not measured); the last transaction commits synchronously
/// and its commit record is located with pg_walinspect.
pub async fn bulk(
    client: &mut tokio_postgres::Client,
    rows: u64,
    txn: u64,
    pad: i32,
) -> Result<Loaded> {
    let start = Instant::now();
    let last = txn.min(rows);
    let bulk = rows - last;
    client.batch_execute("SET synchronous_commit = off").await?;
    if bulk > 0 {
        // A CALL that commits must be the only statement of its query.
        client
            .batch_execute(&format!("CALL bench_load(0, {bulk}, {txn}, '{AGGREGATE_TYPE}', {pad})"))
            .await
            .context("loading outbox rows")?;
    }
    client.batch_execute("SET synchronous_commit = on").await?;
    let (end_lsn, committed_at) = one_transaction(client, bulk, last, pad).await?;
    Ok(Loaded { end_lsn, secs: (committed_at - start).as_secs_f64(), committed_at })
}

/// One transaction of `rows` rows (the huge-transaction measurement).
pub async fn huge(client: &mut tokio_postgres::Client, rows: u64, pad: i32) -> Result<Loaded> {
    let start = Instant::now();
    client.batch_execute("SET synchronous_commit = on").await?;
    let (end_lsn, committed_at) = one_transaction(client, 0, rows, pad).await?;
    Ok(Loaded { end_lsn, secs: (committed_at - start).as_secs_f64(), committed_at })
}

/// Inserts rows `first..first+n` in one transaction, commits, and returns the end of
/// its commit record and when the commit returned.
async fn one_transaction(
    client: &mut tokio_postgres::Client,
    first: u64,
    n: u64,
    pad: i32,
) -> Result<(u64, Instant)> {
    let first = i64::try_from(first)?;
    let n = i64::try_from(n)?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT bench_insert($1, $2, $3, 'OrderCreated', $4)",
        &[&first, &n, &AGGREGATE_TYPE, &pad],
    )
    .await
    .context("inserting outbox rows")?;
    let row =
        tx.query_one("SELECT pg_current_wal_insert_lsn(), pg_current_xact_id()::text", &[]).await?;
    let before: PgLsn = row.get(0);
    let xid: String = row.get(1);
    tx.commit().await.context("committing")?;
    let committed_at = Instant::now();
    Ok((commit_end_lsn(client, before, &xid).await?, committed_at))
}

/// The end LSN of transaction `xid`'s commit record, which lies after `from`.
async fn commit_end_lsn(client: &tokio_postgres::Client, from: PgLsn, xid: &str) -> Result<u64> {
    for _ in 0..50 {
        let rows = client
            .query(
                "SELECT end_lsn FROM pg_get_wal_records_info($1, pg_current_wal_flush_lsn()) \
                 WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%' \
                   AND xid::text = $2 \
                 ORDER BY start_lsn LIMIT 1",
                &[&from, &xid],
            )
            .await
            .context("reading the commit record with pg_walinspect")?;
        if let Some(row) = rows.first() {
            return Ok(u64::from(row.get::<_, PgLsn>(0)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the commit record of xid {xid} did not show up in pg_walinspect")
}

/// What the steady writers did.
#[derive(Debug, Clone)]
pub struct Steady {
    pub events: u64,
    pub secs: f64,
    /// Each transaction's round trip as the writer saw it (statement sent → commit
    /// acknowledged), µs.
    pub commit_rtt_us: Vec<i64>,
}

/// The steady-load writers: `n` connections, kept across the warm-up and the measured
/// load (a fresh backend's first statements are slower).
pub struct Writers {
    clients: Vec<(tokio_postgres::Client, tokio_postgres::Statement)>,
    /// Distinct row numbers across calls to [`Writers::run`].
    next: i64,
}

impl Writers {
    pub async fn connect(url: &str, n: u32) -> Result<Writers> {
        let mut clients = Vec::new();
        for _ in 0..n {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .context("connecting a writer")?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    crate::progress(&format!("writer connection ended: {e}"));
                }
            });
            let stmt = client.prepare("SELECT bench_insert($1, $2, $3, $4, $5)").await?;
            clients.push((client, stmt));
        }
        Ok(Writers { clients, next: rand_ish() << 20 })
    }

    /// Each writer commits transactions of `txn` events on a fixed schedule so that
    /// together they write `rate` events/s for `duration` (`synchronous_commit = on`,
    /// as an application would). A writer that falls behind catches up (burst), so
    /// the mean rate holds while the machine keeps up. `etype` is the `type` column
    /// (the consumer tells warm-up events apart by it).
    pub async fn run(
        &mut self,
        rate: u64,
        txn: u64,
        duration: Duration,
        pad: i32,
        etype: &'static str,
    ) -> Result<Steady> {
        let writers = u32::try_from(self.clients.len())?;
        let period = Duration::from_secs_f64((f64::from(writers) * txn as f64) / rate as f64);
        let txn = i64::try_from(txn)?;
        let start = Instant::now();
        let begin = tokio::time::Instant::now();
        let deadline = begin + duration;
        let mut tasks = Vec::new();
        for (w, (client, stmt)) in (0u32..).zip(std::mem::take(&mut self.clients)) {
            let base = self.next + (i64::from(w) << 40);
            tasks.push(tokio::spawn(async move {
                // Writers are spread over one period, not all at once.
                let first = begin + period.mul_f64(f64::from(w) / f64::from(writers));
                let mut tick = tokio::time::interval_at(first, period);
                tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
                let mut next = base;
                let mut events = 0u64;
                let mut rtts = Vec::new();
                loop {
                    tick.tick().await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let sent = Instant::now();
                    client.execute(&stmt, &[&next, &txn, &AGGREGATE_TYPE, &etype, &pad]).await?;
                    rtts.push(i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX));
                    next += txn;
                    events += txn as u64;
                }
                anyhow::Ok((client, stmt, events, rtts))
            }));
        }
        let mut events = 0;
        let mut commit_rtt_us = Vec::new();
        for t in tasks {
            let (client, stmt, e, rtts) = t.await.context("writer task panicked")??;
            self.clients.push((client, stmt));
            events += e;
            commit_rtt_us.extend(rtts);
        }
        // Far enough on that the next run's row numbers don't repeat these.
        self.next += 1 << 32;
        Ok(Steady { events, secs: start.elapsed().as_secs_f64(), commit_rtt_us })
    }
}

/// A few varying bits so that repeated runs don't write identical payloads.
fn rand_ish() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    i64::from(nanos & 0xfff)
}

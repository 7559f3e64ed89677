//! The writer workload: concurrent writers commit outbox events in transactions of
//! mixed size over a fixed set of aggregates.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use tailbox_e2e::PgServer;

/// One transaction's outbox events: `$3` events with identity (w = `$1`, t = `$2`, i) and
/// the writing transaction's xid in the payload, over `$4` aggregates in two aggregate
/// types (so two topics).
pub const INSERT_EVENTS: &str = "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
     SELECT 'Agg' || (((($1::int * 7919) + ($2::int * 31) + i) % $4::int) % 2), \
            'a' || ((($1::int * 7919) + ($2::int * 31) + i) % $4::int), \
            'Happened', \
            jsonb_build_object('w', $1::int, 't', $2::int, 'i', i, 'xid', pg_current_xact_id()::text) \
     FROM generate_series(0, $3::int - 1) AS i";

/// One event's identity: (writer, transaction, index in transaction).
pub type EventId = (u32, u32, u32);

/// The shape of a workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub writers: u32,
    pub transactions: u32,
    pub aggregates: u32,
}

/// Transaction sizes cycle through this pattern (mean 50): 400 transactions → 20,000 events.
const SIZES: [u32; 8] = [1, 99, 10, 90, 25, 75, 50, 50];

impl Workload {
    /// 4 writers, 400 transactions, 20,000 events, 50 aggregates.
    pub const STANDARD: Workload = Workload { writers: 4, transactions: 400, aggregates: 50 };

    /// The number of events transaction `t` writes.
    pub fn size(t: u32) -> u32 {
        SIZES[(t as usize) % SIZES.len()]
    }

    /// Every event the workload writes.
    pub fn expected(&self) -> BTreeSet<EventId> {
        self.expected_numbered(0)
    }

    /// Every event [`Workload::run_numbered`] writes with `first_writer`.
    pub fn expected_numbered(&self, first_writer: u32) -> BTreeSet<EventId> {
        let mut all = BTreeSet::new();
        for t in 0..self.transactions {
            let w = first_writer + t % self.writers;
            for i in 0..Self::size(t) {
                all.insert((w, t, i));
            }
        }
        all
    }

    /// Runs all writers to completion. Each transaction is one multi-row INSERT plus a
    /// write to another table (which must not produce records).
    pub async fn run(&self, pg: &PgServer) -> Result<()> {
        self.run_at(&pg.url()).await
    }

    /// [`Workload::run`] against a URL (for a spawned task, which cannot borrow the server).
    pub async fn run_at(&self, url: &str) -> Result<()> {
        self.run_numbered(url, 0).await
    }

    /// [`Workload::run_at`] with writers numbered from `first_writer` (the payload's `w`),
    /// so that the events of two databases sharing topics can be told apart.
    pub async fn run_numbered(&self, url: &str, first_writer: u32) -> Result<()> {
        let setup = connect(url).await?;
        setup
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS business (id bigserial PRIMARY KEY, note text)",
            )
            .await?;
        let mut tasks = Vec::new();
        for w in 0..self.writers {
            let client = connect(url).await?;
            let this = *self;
            tasks.push(tokio::spawn(async move { this.writer(client, w, first_writer).await }));
        }
        for task in tasks {
            task.await.context("writer task panicked")??;
        }
        Ok(())
    }

    async fn writer(self, mut client: tokio_postgres::Client, w: u32, first: u32) -> Result<()> {
        let insert = client.prepare(INSERT_EVENTS).await?;
        for t in (w..self.transactions).step_by(self.writers as usize) {
            let tx = client.transaction().await?;
            tx.execute("INSERT INTO business (note) VALUES ('side effect')", &[]).await?;
            let (wi, ti, size, aggs) =
                ((first + w) as i32, t as i32, Self::size(t) as i32, self.aggregates as i32);
            tx.execute(&insert, &[&wi, &ti, &size, &aggs]).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

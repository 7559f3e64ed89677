//! The torture test (issue 4): under steady load from concurrent writers, fault cycles
//! dealt at random from shuffled decks of all five faults (seeded, seed printed), each
//! followed by a wait until the slot confirmed what was written before it (or, one
//! time in four, by the next fault at once): SIGKILL tailbox and restart it, stop and
//! restart the Kafka broker, restart PostgreSQL (`fast` and `immediate`), cut every TCP
//! connection between tailbox and PostgreSQL (tailbox reaches PostgreSQL through a
//! [`TcpProxy`]). Then the writers stop, tailbox catches up, and an independent consumer
//! checks every committed event against Kafka: nothing lost, per-aggregate order kept,
//! duplicates counted (and attributed to the fault whose replay produced them).
//!
//! Knobs (environment):
//! - `TAILBOX_TORTURE_CYCLES`: fault cycles (default 6, about a minute; `make torture`
//!   runs 40);
//! - `TAILBOX_TORTURE_SEED`: replay a run's fault sequence (timing still varies);
//! - `TAILBOX_TORTURE_STATUS_INTERVAL_MS`: tailbox's `--status-interval-ms` (default 200).
//!
//! See docs/torture.md.

mod harness;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    verify::verify,
    workload::{self, EventId},
};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tailbox_e2e::{
    ConsumeOptions, ConsumedRecord, KafkaBroker, PgServer, Subscription, TcpProxy, consume,
};
use tailbox_pgoutput::Lsn;
use tokio::task::JoinHandle;

const DEFAULT_CYCLES: u32 = 6;
const DEFAULT_STATUS_INTERVAL_MS: u64 = 200;
const WRITERS: u32 = 4;
const AGGREGATES: u32 = 50;
/// Each transaction writes 1..=MAX_TXN_EVENTS events.
const MAX_TXN_EVENTS: u64 = 50;
/// Pause between a writer's transactions: 15..25 ms.
const WRITER_PAUSE_MS: (u64, u64) = (15, 10);
/// Longest a fault may take to heal: the slot confirms what was written before it.
/// tailbox's reconnect backoff alone reaches 30 s.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one writer transaction may take before it counts as failed.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(300);

/// xorshift64*, seeded and printed so a failing run's fault sequence can be replayed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// Scrambles `seed` first (splitmix64): clock seeds taken a minute apart differ in
    /// few bits, and xorshift's first outputs would follow them.
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)).max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A duration in `[min_ms, min_ms + spread_ms)`.
    fn millis(&mut self, min_ms: u64, spread_ms: u64) -> Duration {
        Duration::from_millis(min_ms + self.below(spread_ms))
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number"))
        }
        _ => Ok(default),
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    KillTailbox,
    BounceKafka,
    RestartPgFast,
    RestartPgImmediate,
    CutPgConnections,
}

const FAULTS: [Fault; 5] = [
    Fault::KillTailbox,
    Fault::BounceKafka,
    Fault::RestartPgFast,
    Fault::RestartPgImmediate,
    Fault::CutPgConnections,
];

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::KillTailbox => "sigkill-tailbox",
            Fault::BounceKafka => "bounce-kafka",
            Fault::RestartPgFast => "restart-pg-fast",
            Fault::RestartPgImmediate => "restart-pg-immediate",
            Fault::CutPgConnections => "cut-pg-connections",
        })
    }
}

/// What one fault cycle did.
#[derive(Debug)]
struct Cycle {
    fault: Fault,
    /// Events whose commit LSN lies in `window_lo..=window_hi` may be published again
    /// because of this fault: the slot's confirmed position before the fault (or after
    /// it, if PostgreSQL's restart moved it back) up to the WAL written by the time the
    /// fault hit.
    window_lo: u64,
    window_hi: u64,
    /// `None`: the next fault came before this one healed (overlapping faults).
    recovered_in: Option<Duration>,
    /// The slot's confirmed position just before and just after the fault.
    slot_before: u64,
    slot_after: u64,
    /// The end of every outbox partition just before the fault: copies appended from
    /// here until the next fault's marks are this fault's replay.
    marks: Marks,
}

/// The next offset of every partition of the outbox topics.
type Marks = HashMap<(String, i32), i64>;

/// Reads partition ends, to tell which fault's replay a duplicate came from.
struct OffsetProbe {
    consumer: BaseConsumer,
    topics: Vec<String>,
}

impl OffsetProbe {
    fn new(bootstrap: &str, topics: Vec<String>) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", tailbox_e2e::unique_name("torture_probe"))
            .set("allow.auto.create.topics", "false")
            .set_log_level(RDKafkaLogLevel::Emerg)
            .create()
            .context("creating the offset probe")?;
        Ok(Self { consumer, topics })
    }

    fn marks(&self) -> Result<Marks> {
        let timeout = Duration::from_secs(10);
        let mut marks = Marks::new();
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    let (_, high) = self.consumer.fetch_watermarks(topic, p.id(), timeout)?;
                    marks.insert((topic.clone(), p.id()), high);
                }
            }
        }
        Ok(marks)
    }

    /// [`OffsetProbe::marks`], or `fallback` (coarser attribution) if Kafka does not
    /// answer.
    fn marks_or(&self, fallback: Option<&Marks>) -> Marks {
        match tokio::task::block_in_place(|| self.marks()) {
            Ok(marks) => marks,
            Err(e) => {
                println!("(offset probe failed, attributing coarsely: {e:#})");
                fallback.cloned().unwrap_or_default()
            }
        }
    }
}

/// Counters shared by the writers.
#[derive(Debug, Default)]
struct WriterStats {
    committed_txns: AtomicU64,
    committed_events: AtomicU64,
    failed_attempts: AtomicU64,
}

/// A transaction whose COMMIT the server acknowledged: it must be in the outbox.
type Acked = (u32, u32, u32);

/// The paced writers: each commits a transaction of 1..=50 events every ~20 ms,
/// reconnecting and retrying after its own connection errors.
struct Writers {
    stop: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
    tasks: Vec<JoinHandle<Vec<Acked>>>,
}

impl Writers {
    fn start(url: &str, seed: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let tasks = (0..WRITERS)
            .map(|w| {
                let (url, stop, stats) = (url.to_owned(), stop.clone(), stats.clone());
                let rng = Rng::new(seed ^ (u64::from(w) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                tokio::spawn(writer(url, w, rng, stop, stats))
            })
            .collect();
        Writers { stop, stats, tasks }
    }

    /// Stops the writers and returns every acknowledged transaction.
    async fn stop(self) -> Result<Vec<Acked>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut acked = Vec::new();
        for task in self.tasks {
            acked.extend(task.await.context("writer task panicked")?);
        }
        Ok(acked)
    }
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::from_str(url)?;
    config.connect_timeout(Duration::from_secs(2));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    // Errors surface on the client's next call.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// One writer. Every attempt gets a fresh transaction number `t`, so a COMMIT whose
/// reply was lost (it may or may not have committed) is never written twice under the
/// same identity: the retry is a new transaction with the same shape, and the outbox
/// table itself, read at the end, says which attempts committed.
async fn writer(
    url: String,
    w: u32,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut t: u32 = 0;
    while !stop.load(Ordering::SeqCst) {
        let c = match &mut client {
            Some(c) if !c.is_closed() => c,
            _ => match pg_connect(&url).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let size = 1 + rng.below(MAX_TXN_EVENTS) as u32;
        let outcome = tokio::time::timeout(TXN_TIMEOUT, write_txn(c, w, t, size)).await;
        match outcome {
            Ok(Ok(())) => {
                acked.push((w, t, size));
                stats.committed_txns.fetch_add(1, Ordering::Relaxed);
                stats.committed_events.fetch_add(u64::from(size), Ordering::Relaxed);
            }
            _ => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        t += 1;
        let (min, spread) = WRITER_PAUSE_MS;
        tokio::time::sleep(rng.millis(min, spread)).await;
    }
    acked
}

/// One transaction like `Workload`'s: a business write plus `size` outbox events with
/// identity (w, t, i) and the writing transaction's xid in the payload.
async fn write_txn(client: &mut tokio_postgres::Client, w: u32, t: u32, size: u32) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO business (note) VALUES ('side effect')", &[]).await?;
    let (wi, ti, si, aggs) = (w as i32, t as i32, size as i32, AGGREGATES as i32);
    tx.execute(workload::INSERT_EVENTS, &[&wi, &ti, &si, &aggs]).await?;
    tx.commit().await?;
    Ok(())
}

/// Reads the slot position over its own connection, reconnecting after PostgreSQL
/// restarts.
struct Monitor {
    url: String,
    slot: String,
    client: Option<tokio_postgres::Client>,
}

impl Monitor {
    /// (slot's confirmed_flush_lsn, pg_current_wal_lsn()).
    async fn positions(&mut self) -> Result<(u64, u64)> {
        let client = match &mut self.client {
            Some(c) if !c.is_closed() => c,
            _ => self.client.insert(pg_connect(&self.url).await?),
        };
        match harness::slot_and_wal(client, &self.slot).await {
            Ok(p) => Ok(p),
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }

    /// [`Monitor::positions`], retried while PostgreSQL comes back.
    async fn positions_retrying(&mut self, timeout: Duration) -> Result<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.positions().await {
                Ok(p) => return Ok(p),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context("reading the slot position"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Everything the cycles act on.
struct Rig {
    pg: Arc<PgServer>,
    broker: Arc<KafkaBroker>,
    proxy: TcpProxy,
    args: Vec<String>,
    tailbox: Option<Tailbox>,
    /// Log files of every tailbox process started, oldest first.
    logs: Vec<PathBuf>,
    monitor: Monitor,
}

impl Rig {
    fn start_tailbox(&mut self) -> Result<()> {
        let tailbox = Tailbox::start(&self.args)?;
        self.logs.push(tailbox.log.clone());
        self.tailbox = Some(tailbox);
        Ok(())
    }

    fn log_tail(&self, lines: usize) -> String {
        let Some(path) = self.logs.last() else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "--- last {lines} lines of {} ---\n{}",
            path.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// Fails if tailbox stopped by itself (a definite error, or a crash).
    fn ensure_tailbox_running(&mut self) -> Result<()> {
        let running = self.tailbox.as_mut().is_some_and(Tailbox::is_running);
        if !running {
            bail!("tailbox exited by itself\n{}", self.log_tail(40));
        }
        Ok(())
    }

    async fn inject(&mut self, fault: Fault, rng: &mut Rng) -> Result<String> {
        Ok(match fault {
            Fault::KillTailbox => {
                if let Some(tailbox) = self.tailbox.take() {
                    tailbox.kill()?;
                }
                self.start_tailbox()?;
                String::new()
            }
            Fault::BounceKafka => {
                let down = rng.millis(500, 3000);
                let broker = self.broker.clone();
                let started = Instant::now();
                tokio::task::spawn_blocking(move || broker.stop()).await??;
                let stopping = started.elapsed();
                tokio::time::sleep(down).await;
                let broker = self.broker.clone();
                let started = Instant::now();
                tokio::task::spawn_blocking(move || broker.start_again()).await??;
                format!(
                    " (stop {:.1} s, down {:.1} s, start {:.1} s)",
                    stopping.as_secs_f64(),
                    down.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                )
            }
            Fault::RestartPgFast | Fault::RestartPgImmediate => {
                let mode = if fault == Fault::RestartPgFast { "fast" } else { "immediate" };
                let pg = self.pg.clone();
                let started = Instant::now();
                tokio::task::spawn_blocking(move || pg.restart(mode)).await??;
                format!(" ({:.1} s)", started.elapsed().as_secs_f64())
            }
            Fault::CutPgConnections => format!(" ({} connections)", self.proxy.cut()),
        })
    }

    /// Waits until the slot confirmed `target`, failing early if tailbox died.
    async fn wait_confirmed(&mut self, target: u64, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut last = 0;
        loop {
            if let Ok((confirmed, _)) = self.monitor.positions().await {
                last = confirmed;
                if confirmed >= target {
                    return Ok(start.elapsed());
                }
            }
            self.ensure_tailbox_running()?;
            if start.elapsed() > timeout {
                bail!(
                    "slot confirmed only {last:X}, wanted {target:X} within {timeout:?}\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn event_id(payload: &[u8]) -> Result<EventId> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).context("payload is not JSON")?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .map(|v| v as u32)
            .with_context(|| format!("payload has no {name}: {value}"))
    };
    Ok((field("w")?, field("t")?, field("i")?))
}

/// Every committed event, from the outbox table itself (the ground truth).
async fn committed_events(pg: &PgServer) -> Result<BTreeSet<EventId>> {
    let client = pg_connect(&pg.url()).await?;
    let rows = client.query("SELECT payload::text FROM outbox", &[]).await?;
    rows.iter().map(|row| event_id(row.get::<_, &str>(0).as_bytes())).collect()
}

/// Every second and later copy of an event.
fn duplicates(records: &[ConsumedRecord]) -> Result<Vec<&ConsumedRecord>> {
    let mut seen = BTreeSet::new();
    let mut copies = Vec::new();
    for record in records {
        if !seen.insert(event_id(record.payload.as_deref().unwrap_or_default())?) {
            copies.push(record);
        }
    }
    Ok(copies)
}

/// What tailbox's logs say about its sessions.
#[derive(Debug, Default)]
struct LogStats {
    processes: usize,
    failed_sessions: usize,
    max_backoff_ms: u64,
}

fn log_stats(logs: &[PathBuf]) -> LogStats {
    let mut stats = LogStats { processes: logs.len(), ..LogStats::default() };
    for path in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("session failed")) {
            stats.failed_sessions += 1;
            let backoff = line
                .split("retry_in_ms=")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            stats.max_backoff_ms = stats.max_backoff_ms.max(backoff);
        }
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torture_faults_under_load_lose_nothing() -> Result<()> {
    let cycles: u32 = env_or("TAILBOX_TORTURE_CYCLES", DEFAULT_CYCLES)?;
    let seed: u64 = env_or("TAILBOX_TORTURE_SEED", clock_seed())?;
    let status_ms: u64 = env_or("TAILBOX_TORTURE_STATUS_INTERVAL_MS", DEFAULT_STATUS_INTERVAL_MS)?;
    println!(
        "torture: seed {seed}, {cycles} cycles, status interval {status_ms} ms \
         (replay with TAILBOX_TORTURE_SEED={seed})"
    );
    let began = Instant::now();
    let mut rng = Rng::new(seed);

    let pg = Arc::new(PgServer::start()?);
    let broker = Arc::new(KafkaBroker::start_owned()?);
    let kafka = broker.bootstrap().to_owned();
    let names = Names::new("torture");
    apply_sql(&pg, &names)?;
    pg.psql("CREATE TABLE business (id bigserial PRIMARY KEY, note text)")?;

    // tailbox reaches PostgreSQL only through the proxy.
    let proxy = TcpProxy::to_local_port(pg.port())?;
    let mut args = base_args(&pg, &kafka, &names);
    let direct = format!("127.0.0.1:{}/", pg.port());
    let proxied = format!("127.0.0.1:{}/", proxy.port());
    for arg in &mut args {
        if arg.contains(&direct) {
            *arg = arg.replace(&direct, &proxied);
        }
    }
    if let Some(i) = args.iter().position(|a| a == "--status-interval-ms") {
        args[i + 1] = status_ms.to_string();
    }
    ensure!(
        args.iter().any(|a| a.contains(&proxied)),
        "tailbox must connect through the proxy: {args:?}"
    );

    let mut rig = Rig {
        monitor: Monitor { url: pg.url(), slot: names.slot.clone(), client: None },
        pg: pg.clone(),
        broker: broker.clone(),
        proxy,
        args,
        tailbox: None,
        logs: Vec::new(),
    };
    rig.start_tailbox()?;
    let writers = Writers::start(&pg.url(), seed);

    // Steady state first: tailbox streams and confirms.
    let (_, wal) = rig.monitor.positions().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.wait_confirmed(wal, RECOVERY_TIMEOUT).await?;
    let outbox_topics = ["Agg0", "Agg1"].map(|a| format!("{}.{a}", names.topic_prefix));
    let probe = OffsetProbe::new(&kafka, outbox_topics.to_vec())?;

    let mut done: Vec<Cycle> = Vec::new();
    // Faults are dealt from shuffled decks of all five, so every five cycles see each.
    let mut deck: Vec<Fault> = Vec::new();
    for n in 1..=cycles {
        tokio::time::sleep(rng.millis(500, 2500)).await;
        if deck.is_empty() {
            deck = FAULTS.to_vec();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = deck.pop().context("a fault")?;
        let overlap = n < cycles && rng.below(4) == 0;
        let marks = probe.marks_or(done.last().map(|c| &c.marks));
        let (before, _) = rig.monitor.positions_retrying(RECOVERY_TIMEOUT).await?;
        let started = Instant::now();
        let detail = rig.inject(fault, &mut rng).await?;
        let took = started.elapsed();
        let (after, wal) = rig.monitor.positions_retrying(RECOVERY_TIMEOUT).await?;
        let recovered_in =
            if overlap { None } else { Some(rig.wait_confirmed(wal, RECOVERY_TIMEOUT).await?) };
        rig.ensure_tailbox_running()?;
        println!(
            "cycle {n}/{cycles} {fault}{detail}: injected in {:.1} s, {}, written so far {} events",
            took.as_secs_f64(),
            match recovered_in {
                Some(d) => format!("healed in {:.1} s", d.as_secs_f64()),
                None => "next fault overlaps".to_owned(),
            },
            writers.stats.committed_events.load(Ordering::Relaxed),
        );
        done.push(Cycle {
            fault,
            window_lo: before.min(after),
            window_hi: wal,
            recovered_in,
            slot_before: before,
            slot_after: after,
            marks,
        });
    }

    let writer_failures = writers.stats.failed_attempts.load(Ordering::Relaxed);
    let acked = writers.stop().await?;
    let (_, wal) = rig.monitor.positions_retrying(RECOVERY_TIMEOUT).await?;
    let catch_up = rig.wait_confirmed(wal, RECOVERY_TIMEOUT).await?;
    println!("writers stopped; tailbox caught up in {:.1} s", catch_up.as_secs_f64());

    // The ground truth: the outbox table. Every acknowledged commit must be there;
    // rows of attempts whose COMMIT reply was lost count as committed.
    let expected = committed_events(&pg).await?;
    let acked_events: u64 = acked.iter().map(|(_, _, size)| u64::from(*size)).sum();
    for (w, t, size) in &acked {
        ensure!(
            (0..*size).all(|i| expected.contains(&(*w, *t, i))),
            "acknowledged transaction (writer {w}, txn {t}) is not in the outbox table"
        );
    }
    let committed_txns: BTreeSet<(u32, u32)> = expected.iter().map(|(w, t, _)| (*w, *t)).collect();
    let ambiguous = committed_txns.len() - acked.len();
    ensure!(acked_events <= expected.len() as u64, "more acknowledged events than rows");

    let consume_began = Instant::now();

    let records = consume(
        &kafka,
        Subscription::Pattern(&names.topic_pattern()),
        ConsumeOptions {
            expected: expected.len(),
            timeout: CONSUME_TIMEOUT,
            quiet: Duration::from_secs(5),
        },
    )
    .await?;
    let report = verify(&records, &expected)?;
    println!(
        "consumed {} records in {:.1} s",
        records.len(),
        consume_began.elapsed().as_secs_f64()
    );

    // A copy appended after fault i's marks (and before fault i+1's) comes from fault
    // i's replay; one appended before the first fault has no fault to blame.
    let mut per_cycle = vec![0usize; done.len()];
    let mut unattributed = 0usize;
    for copy in duplicates(&records)? {
        let key = (copy.topic.clone(), copy.partition);
        let after_mark = |c: &Cycle| c.marks.get(&key).is_some_and(|m| *m <= copy.offset);
        match done.iter().rposition(after_mark) {
            Some(i) => per_cycle[i] += 1,
            None => unattributed += 1,
        }
    }
    let mut window_events = vec![0usize; done.len()];
    let mut first = BTreeSet::new();
    for record in &records {
        let id = event_id(record.payload.as_deref().unwrap_or_default())?;
        if first.insert(id)
            && let Some(lsn) = record.lsn().map(Lsn::as_u64)
        {
            for (i, c) in done.iter().enumerate() {
                if c.window_lo <= lsn && lsn <= c.window_hi {
                    window_events[i] += 1;
                }
            }
        }
    }
    let mut by_fault: HashMap<Fault, (usize, usize, usize)> = HashMap::new();
    for (i, c) in done.iter().enumerate() {
        println!(
            "  cycle {} {}: unconfirmed at the fault {}..{} ({} events), duplicates {}{}",
            i + 1,
            c.fault,
            Lsn::new(c.window_lo),
            Lsn::new(c.window_hi),
            window_events[i],
            per_cycle[i],
            if c.recovered_in.is_none() { " (overlapped)" } else { "" }
        );
        if c.slot_after < c.slot_before {
            println!(
                "    the fault moved the slot back from {} to {}",
                Lsn::new(c.slot_before),
                Lsn::new(c.slot_after)
            );
        }
        let entry = by_fault.entry(c.fault).or_default();
        entry.0 += 1;
        entry.1 += per_cycle[i];
        entry.2 = entry.2.max(per_cycle[i]);
    }
    let mut kinds: Vec<_> = by_fault.into_iter().collect();
    kinds.sort();
    for (fault, (count, dups, max)) in kinds {
        println!("  {fault}: {count} cycles, duplicates {dups} in all, at most {max} in one");
    }
    let logs = log_stats(&rig.logs);
    println!(
        "tailbox: {} processes, {} failed sessions, longest backoff {} ms; writers: {} failed attempts, \
         {} commits with a lost reply that did commit; consumer: {report}; duplicates before the first fault {unattributed}",
        logs.processes, logs.failed_sessions, logs.max_backoff_ms, writer_failures, ambiguous,
    );
    let max_one = per_cycle.iter().copied().max().unwrap_or(0);
    println!(
        "torture: cycles {cycles}, events {}, lost {}, reordered {}, duplicates {} \
         (seed {seed}, at most {max_one} from one fault, status interval {status_ms} ms, {:.0} s)",
        expected.len(),
        report.lost,
        report.reordered,
        report.duplicates,
        began.elapsed().as_secs_f64()
    );

    ensure!(report.lost == 0, "events lost (seed {seed}): {report}\n{}", rig.log_tail(60));
    ensure!(report.reordered == 0, "per-aggregate order broken (seed {seed}): {report}");
    ensure!(report.wrong_xid == 0, "xid headers wrong (seed {seed}): {report}");
    ensure!(!expected.is_empty(), "the writers committed nothing");

    if let Some(tailbox) = rig.tailbox.take() {
        let status = tailbox.terminate(Duration::from_secs(30))?;
        ensure!(status.success(), "SIGTERM exits 0, got {status}");
    }
    Ok(())
}

//! PostgreSQL high availability from tailbox's side: a failover slot that survives the
//! promotion of a standby (PostgreSQL 17), and decoding on a hot standby while the
//! application writes to the primary (PostgreSQL 16).
//!
//! The standbys are cold copies that stream from their primary through a physical slot
//! (`scripts/pg.sh standby-of`; Debian's pg_basebackup 15 cannot copy 16+). tailbox and
//! the writers reach "the primary" through a TCP proxy that is moved to the promoted
//! standby, as an operator's virtual IP or DNS name would be: tailbox is not restarted
//! and is given no other address.

mod harness;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use harness::{
    Names, apply_sql_files,
    process::{Tailbox, base_args_at, output_text, run_command},
    verify::{Report, verify},
    wait_streaming,
    workload::{EventId, INSERT_EVENTS, Workload},
};
use tailbox_e2e::{ConsumedRecord, PgServer, TcpProxy, consume_pattern, shared_kafka};
use tailbox_pgoutput::Lsn;

const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);
/// Each writer's pause after a commit: the failover workload takes a few seconds.
const WRITER_PAUSE: Duration = Duration::from_millis(40);
/// The standby's physical slot on the primary.
const PHYSICAL_SLOT: &str = "standby_1";

/// sql/01, 02 and 04 (table, publication, role): the slot is `tailbox setup`'s.
fn apply_schema(pg: &PgServer, names: &Names) -> Result<()> {
    apply_sql_files(
        pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("02_publication.sql", vec![format!("publication={}", names.publication)]),
            ("04_role.sql", vec!["password=tailbox-test".to_owned()]),
        ],
    )
}

/// The options naming this test's slot, publication and checkpoint topic, connecting
/// as `user` to `port`.
fn pg_args(names: &Names, user: &str, port: u16) -> Vec<String> {
    [
        "--pg-url",
        &format!("postgres://{user}@127.0.0.1:{port}/postgres"),
        "--slot",
        &names.slot,
        "--publication",
        &names.publication,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `tailbox run` as the least-privilege role of sql/04_role.sql, against `port`.
fn run_args(names: &Names, kafka: &str, port: u16) -> Vec<String> {
    let url = format!("postgres://tailbox:tailbox-test@127.0.0.1:{port}/postgres");
    base_args_at(&url, kafka, names)
}

/// Runs a short tailbox command (`setup`, `status`) with `args` and the pg options for
/// `port` (as the superuser); returns (success, stdout and stderr).
fn tailbox_admin(args: &[&str], names: &Names, port: u16) -> Result<(bool, String)> {
    let output = tailbox_admin_output(args, names, port)?;
    Ok((output.status.success(), output_text(&output)))
}

fn tailbox_admin_output(args: &[&str], names: &Names, port: u16) -> Result<std::process::Output> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(pg_args(names, "postgres", port));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run_command(&refs, &[])
}

/// Polls `sql` on `pg` until it prints `want` (up to `timeout`).
async fn wait_for(pg: &PgServer, sql: &str, want: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = pg.psql(sql)?;
        if got.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{sql} printed {got:?}, not {want:?}, within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `pg`'s slot confirmed `target` (an LSN as text); fails with tailbox's log.
async fn wait_confirmed(pg: &PgServer, slot: &str, target: &str, tailbox: &Tailbox) -> Result<()> {
    let sql = format!(
        "SELECT confirmed_flush_lsn >= '{target}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    wait_for(pg, &sql, "t", Duration::from_secs(120))
        .await
        .map_err(|e| e.context(tailbox.log_text()))
}

/// What the writers of [`resilient_writers`] saw.
#[derive(Debug, Default)]
struct Writes {
    /// Transactions whose COMMIT was acknowledged.
    acknowledged: BTreeSet<(u32, u32)>,
    /// Attempts that failed with the connection (their fate unknown until checked).
    failed_attempts: usize,
}

/// The workload's writers, through `url`, each transaction retried until the server
/// the URL reaches holds it: an attempt that fails (the server went away, maybe after
/// committing) is looked up on the next server, and written again only if it is not
/// there. So every transaction ends up on the surviving primary, except one whose
/// COMMIT an old primary acknowledged after the standby was promoted (PostgreSQL's
/// asynchronous replication loses it; the test counts those).
async fn resilient_writers(url: String, workload: Workload) -> Result<Writes> {
    let writes = Arc::new(Mutex::new(Writes::default()));
    let mut tasks = Vec::new();
    for w in 0..workload.writers {
        let (url, writes) = (url.clone(), Arc::clone(&writes));
        tasks.push(tokio::spawn(async move { resilient_writer(&url, workload, w, &writes).await }));
    }
    for task in tasks {
        task.await.context("writer task panicked")??;
    }
    let mut writes = writes.lock().map_err(|_| anyhow::anyhow!("writer lock poisoned"))?;
    Ok(std::mem::take(&mut *writes))
}

async fn resilient_writer(
    url: &str,
    workload: Workload,
    w: u32,
    writes: &Mutex<Writes>,
) -> Result<()> {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut unsure = false;
    for t in (w..workload.transactions).step_by(workload.writers as usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            ensure!(Instant::now() < deadline, "writer {w}: transaction {t} not written in 120 s");
            let Some(c) = client.as_mut() else {
                client = connect_primary(url).await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            };
            if unsure {
                // The last attempt failed with the connection: did it commit?
                let present = c
                    .query_one(
                        "SELECT count(*) FROM outbox WHERE payload->>'w' = $1 AND payload->>'t' = $2",
                        &[&w.to_string(), &t.to_string()],
                    )
                    .await;
                match present {
                    Ok(row) if row.get::<_, i64>(0) > 0 => {
                        unsure = false;
                        break;
                    }
                    Ok(_) => unsure = false,
                    Err(_) => {
                        client = None;
                        continue;
                    }
                }
            }
            match write_transaction(c, workload, w, t).await {
                Ok(()) => {
                    writes
                        .lock()
                        .map_err(|_| anyhow::anyhow!("writer lock poisoned"))?
                        .acknowledged
                        .insert((w, t));
                    // Paced, so that the failover happens while they write.
                    tokio::time::sleep(WRITER_PAUSE).await;
                    break;
                }
                Err(_) => {
                    writes
                        .lock()
                        .map_err(|_| anyhow::anyhow!("writer lock poisoned"))?
                        .failed_attempts += 1;
                    client = None;
                    unsure = true;
                }
            }
        }
    }
    Ok(())
}

/// A connection to `url` if it reaches a primary (not a server in recovery).
async fn connect_primary(url: &str) -> Option<tokio_postgres::Client> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(5), connect).await.ok()?.ok()?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
    (!row.get::<_, bool>(0)).then_some(client)
}

/// One transaction of the workload: the outbox events (w, t, 0..size) and a side write.
async fn write_transaction(
    client: &mut tokio_postgres::Client,
    workload: Workload,
    w: u32,
    t: u32,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO business (note) VALUES ('side effect')", &[]).await?;
    let size = Workload::size(t) as i32;
    tx.execute(INSERT_EVENTS, &[&(w as i32), &(t as i32), &size, &(workload.aggregates as i32)])
        .await?;
    tx.commit().await
}

/// Every outbox event `pg` holds, by identity, with the xid that wrote it.
fn events_held(pg: &PgServer) -> Result<BTreeMap<EventId, String>> {
    let rows = pg.psql(
        "SELECT payload->>'w', payload->>'t', payload->>'i', payload->>'xid' FROM outbox \
         WHERE payload ? 'w'",
    )?;
    let mut held = BTreeMap::new();
    for line in rows.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('|').collect();
        ensure!(fields.len() == 4, "unexpected row {line:?}");
        let id = (fields[0].parse()?, fields[1].parse()?, fields[2].parse()?);
        held.insert(id, fields[3].to_owned());
    }
    Ok(held)
}

/// Whether the surviving primary holds `record`'s event as written by the same
/// transaction (its id and xid); if not, it was published from WAL that is not part of
/// the surviving primary's history (an orphan).
fn is_held(record: &ConsumedRecord, held: &BTreeMap<EventId, String>) -> bool {
    let Ok(payload) =
        serde_json::from_slice::<serde_json::Value>(record.payload.as_deref().unwrap_or_default())
    else {
        return false;
    };
    let field = |name: &str| payload.get(name).and_then(|v| v.as_u64()).map(|v| v as u32);
    let (Some(w), Some(t), Some(i)) = (field("w"), field("t"), field("i")) else {
        return false;
    };
    let xid = payload.get("xid").and_then(|v| v.as_str()).unwrap_or_default();
    held.get(&(w, t, i)).map(String::as_str) == Some(xid)
}

/// Failover with a failover slot (PostgreSQL 17): `tailbox setup --failover` on the
/// primary, a standby with `sync_replication_slots` (and, when `guarded`,
/// `synchronized_standby_slots` naming it on the primary); writers and tailbox running
/// through the "virtual IP" (a proxy); the standby promoted, the old primary stopped, the
/// proxy moved. Returns what was published, the surviving primary's events, and
/// tailbox (still running, or exited).
struct Failover {
    standby: PgServer,
    /// The "virtual IP", now pointing at the promoted standby.
    vip: TcpProxy,
    tailbox: Tailbox,
    writers: tokio::task::JoinHandle<Result<Writes>>,
    workload: Workload,
    failover_at: Instant,
    /// Where timeline 2 branched off timeline 1.
    switch: Lsn,
}

async fn fail_over(names: &Names, kafka: &str, guarded: bool) -> Result<Failover> {
    let primary = PgServer::start_major(17)?;
    ensure!(primary.major() == 17, "PostgreSQL {}", primary.major());
    apply_schema(&primary, names)?;
    primary.psql("CREATE TABLE business (id bigserial PRIMARY KEY, note text)")?;
    let standby = primary.standby(PHYSICAL_SLOT)?;
    if guarded {
        primary.psql(&format!(
            "ALTER SYSTEM SET synchronized_standby_slots = '{PHYSICAL_SLOT}'; SELECT pg_reload_conf()"
        ))?;
    }

    let (ok, out) = tailbox_admin(&["setup", "--failover"], names, primary.port())?;
    ensure!(ok, "setup --failover:\n{out}");
    let setup_says = if guarded {
        format!("changes reach tailbox only after {PHYSICAL_SLOT}")
    } else {
        "synchronized_standby_slots is empty".to_owned()
    };
    ensure!(out.contains(&setup_says), "{out}");
    let failover = primary.psql(&format!(
        "SELECT failover FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot
    ))?;
    ensure!(failover == "t", "a failover slot on the primary");

    // The "virtual IP": tailbox and the writers know only the proxy.
    let vip = TcpProxy::to_local_port(primary.port())?;
    let tailbox = Tailbox::start(&run_args(names, kafka, vip.port()))?;
    wait_streaming(&primary, &names.slot, &tailbox).await?;

    // The standby's copy must be persistent (sync-ready) before a promotion keeps it.
    // It stays temporary while the primary's slot lies behind the position the standby
    // reserved for it, so the slot must move: a little WAL (no outbox event) with a
    // running-transactions record, which tailbox confirms, until the copy is ready.
    let ready = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND synced AND NOT temporary",
        names.slot
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while standby.psql(&ready)? != "1" {
        ensure!(
            Instant::now() < deadline,
            "the standby never synchronized the failover slot:\n{}",
            standby.psql(
                "SELECT slot_name, synced, temporary, confirmed_flush_lsn FROM pg_replication_slots"
            )?
        );
        primary.psql(
            "INSERT INTO business (note) VALUES ('tick'); SELECT pg_log_standby_snapshot()",
        )?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = tailbox_admin_output(&["status", "--json"], names, standby.port())?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("status --json:\n{}", output_text(&out)))?;
    ensure!(
        json["server"]["in_recovery"] == true
            && json["slot"]["failover"] == true
            && json["slot"]["synced"] == true,
        "status on the standby shows its synchronized copy: {json}"
    );
    let (_, out) = tailbox_admin(&["status"], names, primary.port())?;
    ensure!(out.contains("primary") && out.contains(&setup_says), "{out}");

    let workload = Workload { writers: 4, transactions: 400, aggregates: 30 };
    let writers = tokio::spawn(resilient_writers(
        format!("postgres://postgres@127.0.0.1:{}/postgres", vip.port()),
        workload,
    ));
    // Let a good part of the workload be published (and checkpointed) from the primary
    // first, while the writers go on.
    wait_for(&primary, "SELECT count(*) >= 5000 FROM outbox", "t", Duration::from_secs(60)).await?;
    let published_before = primary.psql("SELECT pg_current_wal_lsn()")?;
    wait_confirmed(&primary, &names.slot, &published_before, &tailbox).await?;
    ensure!(!writers.is_finished(), "the writers must still run at the failover");

    // Failover: promote the standby, stop the old primary, move the address.
    let failover_at = Instant::now();
    standby.promote()?;
    let history = standby.psql("SELECT pg_read_file('pg_wal/00000002.history')")?;
    let switch = history
        .lines()
        .find_map(|l| l.strip_prefix("1\t"))
        .and_then(|rest| rest.split('\t').next())
        .and_then(parse_lsn)
        .with_context(|| format!("no switch point in 00000002.history: {history:?}"))?;
    if !guarded {
        // Nothing holds the old primary's walsender back: tailbox publishes commits the
        // promoted standby never received (the writers still reach the old primary).
        wait_for(
            &primary,
            &format!(
                "SELECT confirmed_flush_lsn > '{}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
                switch,
                names.slot
            ),
            "t",
            Duration::from_secs(30),
        )
        .await
        .context("tailbox published nothing past the switch point from the old primary")?;
    }
    drop(primary);
    let cut = vip.retarget(std::net::SocketAddr::from(([127, 0, 0, 1], standby.port())));
    println!(
        "failover: tailbox had published up to {published_before} from the old primary; switch point {}; promoted, stopped and moved in {:.1?} ({cut} connections cut at the move)",
        switch,
        failover_at.elapsed()
    );
    Ok(Failover { standby, vip, tailbox, writers, workload, failover_at, switch })
}

/// What the consumer received after a failover, checked against the surviving primary:
/// every event it holds arrived (0 lost), in per-aggregate order; records of commits it
/// does not hold (published from the old primary's WAL past the switch point) are
/// counted as orphans. Returns (report, orphans).
async fn check_published(
    kafka: &str,
    names: &Names,
    failover: &Failover,
    writes: &Writes,
) -> Result<(Report, usize)> {
    let held = events_held(&failover.standby)?;
    let held_ids: BTreeSet<EventId> = held.keys().copied().collect();
    let transactions_held: BTreeSet<(u32, u32)> =
        held_ids.iter().map(|(w, t, _)| (*w, *t)).collect();
    let lost_by_postgres = writes.acknowledged.difference(&transactions_held).count();
    ensure!(
        transactions_held.len() + lost_by_postgres == failover.workload.transactions as usize,
        "every transaction but those lost with the old primary is on the new one"
    );
    let records =
        consume_pattern(kafka, &names.topic_pattern(), held_ids.len(), CONSUME_TIMEOUT).await?;
    let (kept, orphaned): (Vec<ConsumedRecord>, Vec<ConsumedRecord>) =
        records.into_iter().partition(|r| is_held(r, &held));
    let report = verify(&kept, &held_ids)?;
    println!(
        "failover: {report}; orphaned {}; acknowledged commits lost with the old primary {lost_by_postgres}; writer attempts failed {}; caught up {:.1?} after the failover",
        orphaned.len(),
        writes.failed_attempts,
        failover.failover_at.elapsed(),
    );
    let log = failover.tailbox.log_text();
    ensure!(report.lost == 0, "events lost: {report}\n{log}");
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}\n{log}");
    ensure!(report.wrong_xid == 0, "xid headers wrong: {report}");
    Ok((report, orphaned.len()))
}

/// The guarded failover (`synchronized_standby_slots` on the primary): tailbox
/// reconnects by itself to the new primary (timeline 2; its checkpoint of timeline 1
/// lies before the switch point, so no flag is needed) and publishes every event the
/// new primary holds, in per-aggregate order, and none it does not hold; duplicates are
/// counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_resumes_the_failover_slot_without_loss() -> Result<()> {
    let started = Instant::now();
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("failover");
    let mut failover = fail_over(&names, &kafka, true).await?;
    let writes = (&mut failover.writers).await.context("writers panicked")??;
    ensure!(
        failover.tailbox.is_running(),
        "tailbox exited instead of reconnecting:\n{}",
        failover.tailbox.log_text()
    );
    let end = failover.standby.psql("SELECT pg_current_wal_lsn()")?;
    wait_confirmed(&failover.standby, &names.slot, &end, &failover.tailbox).await?;
    let (report, orphaned) = check_published(&kafka, &names, &failover, &writes).await?;
    let log = failover.tailbox.log_text();
    ensure!(orphaned == 0, "{orphaned} records published from WAL the new primary lacks\n{log}");
    println!("failover: duplicates {} (test {:.1?})", report.duplicates, started.elapsed());

    // The checkpoint tailbox resumed from lies on timeline 1, before the switch point
    // of timeline 2: it is used (skipping what it covers) without any flag.
    let resumed = log
        .lines()
        .find(|l| l.contains(" streaming ") && l.contains("timeline=2"))
        .with_context(|| format!("tailbox never streamed on timeline 2:\n{log}"))?;
    println!("failover: {resumed}");
    let checkpoint = field(resumed, "checkpoint=")
        .and_then(parse_lsn)
        .with_context(|| format!("tailbox resumed without a checkpoint: {resumed}"))?;
    println!("failover: checkpoint {} on timeline 1, switch point {}", checkpoint, failover.switch);
    ensure!(checkpoint <= failover.switch, "the checkpoint lies before the switch point");
    ensure!(!log.contains("diverged"), "no divergence on a failover slot:\n{log}");
    ensure!(failover.vip.accepted() > 1, "tailbox reconnected through the moved address");
    failover.tailbox.stop_clean()?;
    Ok(())
}

/// The same failover without `synchronized_standby_slots`: the old primary's walsender
/// sends tailbox commits the standby never received, so after the promotion tailbox's
/// checkpoint lies past the switch point. tailbox refuses the new primary (exit, the
/// fix named) instead of silently skipping events; accepted once, it publishes every
/// event the new primary holds; the orphans (published, then lost with the old
/// primary) are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_synchronized_standby_slots_a_failover_is_refused_until_accepted() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("failover_unguarded");
    let mut failover = fail_over(&names, &kafka, false).await?;
    let exit = failover.tailbox.wait(Duration::from_secs(60))?;
    let log = failover.tailbox.log_text();
    ensure!(!exit.success(), "refused the diverged checkpoint, exit {exit}:\n{log}");
    ensure!(
        log.contains("timeline 2, which branched off timeline 1 at")
            && log.contains("--accept-checkpoint-divergence"),
        "names the switch point and the fix:\n{log}"
    );
    let mut accept = run_args(&names, &kafka, failover.vip.port());
    accept.push("--accept-checkpoint-divergence".into());
    failover.tailbox = Tailbox::start(&accept)?;
    let writes = (&mut failover.writers).await.context("writers panicked")??;
    let end = failover.standby.psql("SELECT pg_current_wal_lsn()")?;
    wait_confirmed(&failover.standby, &names.slot, &end, &failover.tailbox).await?;
    let (_, orphaned) = check_published(&kafka, &names, &failover, &writes).await?;
    ensure!(orphaned > 0, "records of commits the new primary lacks were published first");
    failover.tailbox.stop_clean()?;
    Ok(())
}

/// Decoding on a hot standby (PostgreSQL 16): the slot is created on the standby
/// (`tailbox setup` there; the publication comes from the primary), tailbox reads from
/// the standby while writers commit on the primary, and `status` says it reads from a
/// standby. Also: `setup --failover` is refused before 17.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailbox_reads_from_a_hot_standby_while_writers_commit_on_the_primary() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("on_standby");
    let primary = PgServer::start_major(16)?;
    ensure!(primary.major() == 16, "PostgreSQL {}", primary.major());
    apply_schema(&primary, &names)?;

    let (ok, out) = tailbox_admin(&["setup", "--failover"], &names, primary.port())?;
    ensure!(!ok && out.contains("--failover needs PostgreSQL 17"), "refused on 16:\n{out}");
    ensure!(slot_missing(&primary, &names)?, "no slot was created");

    let standby = primary.standby(PHYSICAL_SLOT)?;
    // Creating a slot on a standby waits for a running-transactions record from the
    // primary (written every 15 s when there is activity); ask for one meanwhile.
    let setup_started = Instant::now();
    let setup = {
        let (names, port) = (names.clone(), standby.port());
        std::thread::spawn(move || tailbox_admin(&["setup"], &names, port))
    };
    while !setup.is_finished() {
        primary.psql("SELECT pg_log_standby_snapshot()")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ok, out) = setup.join().map_err(|_| anyhow::anyhow!("setup thread panicked"))??;
    ensure!(ok && out.contains("created (pgoutput)"), "setup on the standby:\n{out}");
    println!("slot created on the standby in {:.1?}", setup_started.elapsed());
    ensure!(slot_missing(&primary, &names)?, "the slot lives on the standby only");

    let (_, out) = tailbox_admin(&["status"], &names, standby.port())?;
    ensure!(out.contains("standby (in recovery): tailbox reads from a hot standby"), "{out}");
    ensure!(!out.contains("synced"), "16 has no synchronized slots:\n{out}");

    let mut tailbox = Tailbox::start(&run_args(&names, &kafka, standby.port()))?;
    let workload = Workload { writers: 4, transactions: 160, aggregates: 20 };
    workload.run(&primary).await?;
    let end = primary.psql("SELECT pg_current_wal_lsn()")?;
    wait_for(
        &standby,
        &format!("SELECT pg_last_wal_replay_lsn() >= '{end}'::pg_lsn"),
        "t",
        Duration::from_secs(60),
    )
    .await?;
    wait_confirmed(&standby, &names.slot, &end, &tailbox).await?;
    ensure!(tailbox.is_running(), "{}", tailbox.log_text());

    let expected = workload.expected();
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), expected.len(), CONSUME_TIMEOUT).await?;
    let report = verify(&records, &expected)?;
    println!("decoding on a standby: {report}");
    ensure!(report.lost == 0 && report.reordered == 0 && report.wrong_xid == 0, "{report}");
    ensure!(report.duplicates == 0, "a clean run publishes no duplicates: {report}");
    tailbox.stop_clean()?;
    Ok(())
}

/// The value of `name` (e.g. `checkpoint=`) in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|word| word.strip_prefix(name))
}

/// `0/16B3748` (and spaces around it) as an LSN.
fn parse_lsn(text: &str) -> Option<Lsn> {
    text.trim().parse().ok()
}

fn slot_missing(pg: &PgServer, names: &Names) -> Result<bool> {
    let n = pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot
    ))?;
    Ok(n.trim() == "0")
}

//! `--sink webhook` end to end: real PostgreSQL, the tailbox binary, and a real HTTP
//! receiver (tests/support) that verifies every signature and answers with random
//! faults (500, 503 + Retry-After, 429, stalls past the client's timeout) and a 400 for
//! poison events, while tailbox is SIGKILLed three times under four writers; the
//! dead-letter commands against the same receiver; the JSON envelope, verified with
//! the Standard Webhooks reference library; TLS to an HTTPS receiver whose certificate a
//! private CA signed, refused without `--webhook-ca` and trusted with it.

mod harness;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql, apply_sql_files,
    process::{Tailbox, base_args, output_text, role_url, run_command, status_text},
    slot_and_wal,
    verify::verify,
    wait_for_confirmed, wait_streaming,
    workload::{EventId, Workload},
};
use tailbox_e2e::{
    Arrival, ConsumedRecord, PgServer, PgTlsFiles, Reply, WebhookReceiver,
    verify_with_standardwebhooks,
};
use tailbox_webhook_sink::sink::{CHECKPOINT_EVERY_EVENTS, LOOKAHEAD_PER_REQUEST};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The event's identity from its payload.
fn event_id(body: &[u8]) -> Option<EventId> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let f = |n: &str| v.get(n).and_then(|x| x.as_u64()).map(|x| x as u32);
    Some((f("w")?, f("t")?, f("i")?))
}

/// Poison: the receiver refuses these for good (about 1 in 500).
fn is_poison(id: EventId) -> bool {
    (id.0 * 7919 + id.1 * 104_729 + id.2 * 31).is_multiple_of(499)
}

fn webhook_args(
    pg: &PgServer,
    receiver: &WebhookReceiver,
    names: &Names,
    dir: &std::path::Path,
) -> Result<Vec<String>> {
    let mut args = base_args(pg, "unused:9092", names);
    if let Some(at) = args.iter().position(|a| a == "--kafka-brokers") {
        args.drain(at..at + 2);
    }
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET)?;
    let headers = dir.join("headers");
    std::fs::write(&headers, "Authorization: Bearer test-token\n")?;
    for (flag, value) in [
        ("--sink", "webhook".to_owned()),
        ("--webhook-url", format!("{}/hooks/{{aggregatetype}}", receiver.url())),
        ("--webhook-secret-file", secret.to_string_lossy().into_owned()),
        ("--webhook-headers-file", headers.to_string_lossy().into_owned()),
        ("--webhook-timeout-ms", "400".to_owned()),
        ("--webhook-backoff-ms", "20".to_owned()),
        ("--webhook-backoff-max-ms", "300".to_owned()),
        ("--webhook-breaker-cooldown-ms", "500".to_owned()),
    ] {
        args.extend([flag.to_owned(), value]);
    }
    Ok(args)
}

/// The options `tailbox dead-letters replay` needs to reach and sign for the receiver
/// (those of [`webhook_args`] after `run` and the replication settings).
fn replay_args(args: &[String]) -> Vec<String> {
    let at = args.iter().position(|a| a == "--sink").unwrap_or(args.len());
    args[at..].to_vec()
}

/// Waits until `done` holds, polling; an error naming `what` after `timeout`.
async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        ensure!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The delivered (2xx) requests as consumed records: topic = the URL path (one per
/// aggregate type), key = the aggregate id header, lsn and xid from tailbox's headers.
fn delivered(arrivals: &[Arrival]) -> Vec<ConsumedRecord> {
    arrivals
        .iter()
        .filter(|a| a.delivered())
        .map(|a| ConsumedRecord {
            topic: a.path.clone(),
            partition: 0,
            offset: a.index as i64,
            key: a.header("tailbox-aggregate-id").map(|v| v.as_bytes().to_vec()),
            payload: Some(a.body.clone()),
            headers: [("lsn", "tailbox-lsn"), ("xid", "tailbox-xid")]
                .iter()
                .filter_map(|(n, h)| a.header(h).map(|v| (n.to_string(), v.as_bytes().to_vec())))
                .collect(),
            timestamp_ms: None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_at_least_once_in_aggregate_order_across_faults_and_sigkills() -> Result<()>
{
    let pg = PgServer::start()?;
    let names = Names::new("webhook");
    apply_sql(&pg, &names)?;
    apply_sql_files(&pg, &[("05_webhook_tables.sql", vec![])])?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    let faults = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&faults);
    receiver.set_script(move |arrival| {
        if arrival.header("authorization") != Some("Bearer test-token") {
            return Reply::Status(401, None);
        }
        if event_id(&arrival.body).is_some_and(is_poison) {
            return Reply::Status(400, None);
        }
        // Faults by arrival, so a retry of the same event usually gets through.
        let roll = (arrival.index as u64).wrapping_mul(2_654_435_761) % 1000;
        let reply = match roll {
            0..40 => Reply::Status(500, None),
            40..50 => Reply::Status(503, Some(1)),
            50..65 => Reply::Status(429, None),
            65..70 => Reply::Stall(Duration::from_millis(700)),
            _ => Reply::Ok,
        };
        if reply != Reply::Ok {
            counted.fetch_add(1, Ordering::Relaxed);
        }
        reply
    });
    let dir = tailbox_e2e::scratch_dir("webhook-e2e");
    std::fs::create_dir_all(&dir)?;
    let args = webhook_args(&pg, &receiver, &names, &dir)?;
    let mut tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;

    let workload = Workload::STANDARD;
    let all = workload.expected();
    let writers = {
        let url = pg.url();
        tokio::spawn(async move { workload.run_at(&url).await })
    };
    // SIGKILLs while deliveries are under way: after about a fifth, a half and four
    // fifths of the events reached the receiver (by progress, not by the clock, so each
    // one lands mid-stream however fast the machine is).
    let kills = [all.len() / 5, all.len() / 2, all.len() * 4 / 5];
    for at in kills {
        wait_until(&format!("{at} requests"), Duration::from_secs(120), || receiver.count() >= at)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", tailbox.log_text()))?;
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

    let arrivals = receiver.arrivals();
    ensure!(arrivals.iter().all(|a| a.signature_ok), "every request is signed and fresh");
    let poison: BTreeSet<EventId> = all.iter().copied().filter(|id| is_poison(*id)).collect();
    let expected: BTreeSet<EventId> = all.difference(&poison).copied().collect();
    let records = delivered(&arrivals);
    let report = verify(&records, &expected)?;
    let ids: BTreeSet<String> =
        arrivals.iter().filter(|a| a.delivered()).map(|a| a.id.clone()).collect();
    // What a SIGKILL may send again (docs/guarantees.md): the dispatcher's lookahead
    // (events delivered beyond the oldest unfinished one), the events acknowledged since
    // the last checkpoint row that committed (written every CHECKPOINT_EVERY_EVENTS, so
    // at most two intervals), and the rest of a transaction that was partly delivered
    // (the largest workload transaction has 99 events).
    let lookahead = 16 * LOOKAHEAD_PER_REQUEST as usize; // at the default --webhook-concurrency
    let per_kill = lookahead + 2 * CHECKPOINT_EVERY_EVENTS as usize + 99;
    let bound = kills.len() * per_kill;
    println!(
        "summary: events {} requests {} faults {} poison {} kills {} {report} \
         distinct webhook-ids {} duplicates {} (bound {bound}: {} per kill)",
        all.len(),
        arrivals.len(),
        faults.load(Ordering::Relaxed),
        poison.len(),
        kills.len(),
        ids.len(),
        report.duplicates,
        per_kill,
    );
    ensure!(!poison.is_empty(), "the workload has poison events");
    ensure!(report.lost == 0, "events lost: {report}\n{}", tailbox.log_text());
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}");
    ensure!(report.wrong_xid == 0, "xid headers wrong: {report}");
    ensure!(report.unique == expected.len(), "{report}");
    // Duplicates share their webhook-id, so a receiver can drop them.
    ensure!(ids.len() == report.unique, "one webhook-id per event");
    ensure!(
        report.duplicates <= bound,
        "{} duplicates after {} SIGKILLs, more than the bound {bound} ({per_kill} per kill)",
        report.duplicates,
        kills.len()
    );

    // Every poison event is in the dead-letter table (a replay may have written one twice).
    let rows = pg.psql(
        "SELECT convert_from(payload, 'UTF8') || '|' || response_status FROM tailbox_dead_letter",
    )?;
    let mut dead = BTreeSet::new();
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let (payload, status) = line.rsplit_once('|').unwrap_or((line, ""));
        ensure!(status == "400", "dead-lettered for its 400: {line}");
        if let Some(id) = event_id(payload.as_bytes()) {
            dead.insert(id);
        }
    }
    ensure!(dead == poison, "dead letters {dead:?} != poison {poison:?}");

    // The checkpoint lives in tailbox_checkpoint, and status finds it this server's.
    let url = role_url(&pg);
    let webhook_url = format!("{}/hooks/{{aggregatetype}}", receiver.url());
    let status = status_text(&pg, &names, &["--sink", "webhook", "--webhook-url", &webhook_url])?;
    ensure!(status.contains("matches this server"), "status:\n{status}");

    // dead-letters list shows them; replay sends them again (still refused: exit 1).
    let list = run_command(&["dead-letters", "list", "--pg-url", &url, "--json"], &[])?;
    let listed = String::from_utf8_lossy(&list.stdout).lines().count();
    ensure!(list.status.success() && listed >= poison.len(), "{}", output_text(&list));
    let log = tailbox.stop_clean()?;
    ensure!(log.contains("webhook event dead-lettered"), "poison is logged");
    ensure!(!log.contains("test-token") && !log.contains("MfKQ9r8"), "no secret in the log");
    Ok(())
}

/// `config check` names bad webhook settings and never shows the secret or a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_names_bad_webhook_settings() -> Result<()> {
    let base = ["config", "check", "--pg-url", "postgres://u@h/db", "--sink", "webhook"];
    let out =
        run_command(&[&base[..], &["--webhook-url", "https://h/in?token=hunter2"]].concat(), &[])?;
    let text = output_text(&out);
    ensure!(out.status.success() && !text.contains("hunter2"), "{text}");
    let out =
        run_command(&[&base[..], &["--webhook-url", "https://h/{aggregateid}"]].concat(), &[])?;
    let text = output_text(&out);
    ensure!(!out.status.success() && text.contains("--webhook-url"), "{text}");
    let out = run_command(
        &[&base[..], &["--webhook-url", "https://h/x", "--webhook-body", "xml", "--exactly-once"]]
            .concat(),
        &[],
    )?;
    let text = output_text(&out);
    ensure!(
        !out.status.success() && text.contains("--webhook-body") && text.contains("at least once"),
        "{text}"
    );
    let out = run_command(&base, &[])?;
    ensure!(!out.status.success() && output_text(&out).contains("webhook_url is not set"));
    Ok(())
}

/// A poison event is dead-lettered with the receiver's answer; `dead-letters list`
/// shows it; once the receiver takes it, `dead-letters replay` delivers it exactly
/// once (same body and `webhook-id`, a fresh signature the Standard Webhooks library
/// accepts), and the row is marked replayed: no longer listed, listed as replayed by
/// `--id`, and not sent again by a second replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_and_replay_deliver_a_refused_event_once() -> Result<()> {
    let pg = PgServer::start()?;
    let names = Names::new("webhook_dl");
    apply_sql(&pg, &names)?;
    apply_sql_files(&pg, &[("05_webhook_tables.sql", vec![])])?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    let poisoned = |a: &Arrival| String::from_utf8_lossy(&a.body).contains("poison");
    receiver.set_script(move |a| if poisoned(a) { Reply::Status(400, None) } else { Reply::Ok });
    let dir = tailbox_e2e::scratch_dir("webhook-dead-letters");
    std::fs::create_dir_all(&dir)?;
    let args = webhook_args(&pg, &receiver, &names, &dir)?;
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES \
         ('Order', 'o-1', 'Placed', '{\"n\": 1}'), \
         ('Order', 'o-1', 'Placed', '{\"n\": 2, \"poison\": true}'), \
         ('Order', 'o-1', 'Placed', '{\"n\": 3}')",
    )?;
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tailbox.log_text()))?;
    let log = tailbox.stop_clean()?;

    // The aggregate's later event went out only after the poison one was dead-lettered.
    let before = receiver.arrivals();
    let order: Vec<(String, Option<u16>)> = before
        .iter()
        .map(|a| (String::from_utf8_lossy(&a.body).into_owned(), a.answered))
        .collect();
    ensure!(before.len() == 3, "one request each: {order:?}\n{log}");
    ensure!(poisoned(&before[1]) && before[1].answered == Some(400), "{order:?}");
    ensure!(before[0].delivered() && before[2].delivered(), "{order:?}");
    let poison_id = before[1].id.clone();

    // `list`: the row, with the receiver's answer; replayable, not replayed.
    let url = role_url(&pg);
    let list = |extra: &[&str]| -> Result<Vec<serde_json::Value>> {
        let out = run_command(
            &[&["dead-letters", "list", "--pg-url", &url, "--json"], extra].concat(),
            &[],
        )?;
        ensure!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).map_err(Into::into))
            .collect()
    };
    let rows = list(&[])?;
    ensure!(rows.len() == 1, "one dead letter: {rows:?}");
    let row = &rows[0];
    ensure!(row["event_id"] == poison_id.as_str(), "{row}");
    ensure!(row["response_status"] == 400 && row["attempts"] == 1, "{row}");
    ensure!(row["aggregate_id"] == "o-1" && row["replayable"] == true, "{row}");
    ensure!(row["replayed"] == false, "{row}");
    let id = row["id"].as_i64().context("the row's id")?.to_string();

    // While the receiver still refuses it, a replay fails (exit status) and marks nothing.
    let mut replay: Vec<String> =
        vec!["dead-letters".into(), "replay".into(), "--pg-url".into(), url.clone()];
    replay.extend(replay_args(&args));
    let replay_refs: Vec<&str> = replay.iter().map(String::as_str).collect();
    let out = run_command(&replay_refs, &[])?;
    ensure!(
        !out.status.success() && output_text(&out).contains("not delivered"),
        "{}",
        output_text(&out)
    );
    ensure!(list(&[])?.len() == 1, "still listed after a refused replay");

    // The receiver is fixed: `replay --id` delivers it once.
    receiver.set_script(|_| Reply::Ok);
    let out = run_command(&[&replay_refs[..], &["--id", &id]].concat(), &[])?;
    let text = output_text(&out);
    ensure!(out.status.success() && text.contains("delivered (200)"), "{text}");
    let after = receiver.arrivals();
    let replayed: Vec<&Arrival> = after[before.len()..].iter().filter(|a| poisoned(a)).collect();
    ensure!(replayed.len() == 2, "the refused replay and the delivered one: {}", after.len());
    let delivered = replayed[1];
    ensure!(delivered.delivered() && delivered.id == poison_id, "same webhook-id");
    ensure!(delivered.body == before[1].body, "same body");
    ensure!(delivered.signature_ok, "signed afresh");
    let verdicts = verify_with_standardwebhooks(SECRET, std::slice::from_ref(delivered))?;
    ensure!(verdicts == ["ok"], "the Standard Webhooks library: {verdicts:?}");

    // Marked replayed: gone from the default list, shown as replayed by --id, and a
    // second replay of everything not replayed sends nothing.
    ensure!(list(&[])?.is_empty(), "listed after its replay");
    let rows = list(&["--id", &id])?;
    ensure!(rows.len() == 1 && rows[0]["replayed"] == true, "{rows:?}");
    let replayed_at = pg.psql(&format!(
        "SELECT replayed_at IS NOT NULL, replay_status FROM tailbox_dead_letter WHERE id = {id}"
    ))?;
    ensure!(replayed_at.trim() == "t|200", "{replayed_at}");
    let count = receiver.count();
    let out = run_command(&replay_refs, &[])?;
    ensure!(out.status.success(), "{}", output_text(&out));
    ensure!(receiver.count() == count, "a second replay sent something");
    Ok(())
}

/// `--webhook-body envelope`: each request is the JSON envelope (`id`, `type`,
/// `aggregatetype`, `aggregateid`, `payload` as JSON, `metadata` with the other columns
/// and the transaction's `lsn`, `xid`, `commit_ts`), equal to the outbox rows, and its
/// signature verifies with the Standard Webhooks reference library (which also rejects
/// a tampered body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_bodies_carry_the_row_and_verify_with_the_standard_webhooks_library() -> Result<()>
{
    let pg = PgServer::start()?;
    let names = Names::new("webhook_env");
    apply_sql(&pg, &names)?;
    apply_sql_files(&pg, &[("05_webhook_tables.sql", vec![])])?;
    let receiver = WebhookReceiver::start(SECRET).await?;
    let dir = tailbox_e2e::scratch_dir("webhook-envelope");
    std::fs::create_dir_all(&dir)?;
    let mut args = webhook_args(&pg, &receiver, &names, &dir)?;
    args.extend(["--webhook-body".into(), "envelope".into()]);
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload, tracingspancontext) VALUES \
         ('Order', 'o-7', 'OrderPlaced', '{\"total\": 42, \"lines\": [1, 2]}', 'traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), \
         ('Customer', 'c-3', 'CustomerCharged', '{\"amount\": 4.5}', NULL)",
    )?;
    wait_until("two requests", Duration::from_secs(60), || receiver.count() >= 2)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tailbox.log_text()))?;
    let rows = pg.psql("SELECT id, aggregatetype, aggregateid, type, payload::text FROM outbox")?;
    let xid = pg.psql("SELECT DISTINCT xmin FROM outbox")?;
    tailbox.stop_clean()?;

    let arrivals = receiver.arrivals();
    ensure!(arrivals.len() == 2, "{} requests", arrivals.len());
    let rows: Vec<Vec<&str>> =
        rows.lines().filter(|l| !l.is_empty()).map(|l| l.split('|').collect()).collect();
    ensure!(rows.len() == 2 && rows.iter().all(|f| f.len() == 5), "{rows:?}");
    for arrival in &arrivals {
        let f = rows.iter().find(|f| f[0] == arrival.id).context("a request per row, by id")?;
        let (id, aggregate_type, aggregate_id, kind, payload) = (f[0], f[1], f[2], f[3], f[4]);
        ensure!(arrival.header("content-type") == Some("application/json"), "{arrival:?}");
        ensure!(arrival.path == format!("/hooks/{aggregate_type}"), "{}", arrival.path);
        let body: serde_json::Value = serde_json::from_slice(&arrival.body)?;
        let payload: serde_json::Value = serde_json::from_str(payload)?;
        ensure!(body["id"] == id && arrival.id == id, "id: {body}");
        ensure!(body["type"] == kind, "type: {body}");
        ensure!(body["aggregatetype"] == aggregate_type, "aggregatetype: {body}");
        ensure!(body["aggregateid"] == aggregate_id, "aggregateid: {body}");
        ensure!(body["payload"] == payload, "payload as JSON: {body}");
        let metadata = &body["metadata"];
        ensure!(metadata["xid"] == xid.trim(), "metadata.xid: {body}");
        ensure!(metadata["lsn"].as_str() == arrival.header("tailbox-lsn"), "metadata.lsn: {body}");
        ensure!(metadata["commit_ts"].as_str().is_some_and(|t| t.parse::<i64>().is_ok()), "{body}");
        ensure!(metadata["timestamp"].is_string(), "the timestamp column: {body}");
        if aggregate_type == "Order" {
            // Debezium's span context column arrives as W3C trace context.
            ensure!(
                metadata["traceparent"]
                    == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "trace context: {body}"
            );
            ensure!(metadata.get("tracingspancontext").is_none(), "not as is: {body}");
        }
    }
    let verdicts = verify_with_standardwebhooks(SECRET, &arrivals)?;
    ensure!(verdicts.iter().all(|v| v == "ok"), "the Standard Webhooks library: {verdicts:?}");
    // The library's check can fail: a changed body, or another secret.
    let mut tampered = arrivals[0].clone();
    tampered.body.push(b' ');
    let verdicts = verify_with_standardwebhooks(SECRET, &[tampered])?;
    ensure!(verdicts[0].starts_with("fail"), "a tampered body verified: {verdicts:?}");
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=";
    let verdicts = verify_with_standardwebhooks(other, &arrivals[..1])?;
    ensure!(verdicts[0].starts_with("fail"), "another secret verified: {verdicts:?}");
    Ok(())
}

/// `X/Y` (how PostgreSQL and the `tailbox-lsn` header write an LSN) as a number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

/// TLS to the receiver is verified (issue 15): an HTTPS receiver whose certificate
/// (for 127.0.0.1) a private CA signed gets nothing without `--webhook-ca` (the public
/// roots do not hold that CA) nor with an unrelated CA; tailbox retries, the slot holds
/// before the events, and each failure's log line says the certificate is not trusted
/// and names `webhook_ca`. With `--webhook-ca` of the signing CA, every event (those
/// held back and new ones) arrives signed, and the slot is confirmed past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_verified_and_webhook_ca_trusts_a_private_ca() -> Result<()> {
    let pg = PgServer::start()?;
    let names = Names::new("webhook_tls");
    apply_sql(&pg, &names)?;
    apply_sql_files(&pg, &[("05_webhook_tables.sql", vec![])])?;
    let dir = tailbox_e2e::scratch_dir("webhook-tls");
    std::fs::create_dir_all(&dir)?;
    let tls = PgTlsFiles::generate(&dir.join("tls"))?;
    let receiver = WebhookReceiver::start_tls(SECRET, &tls.server_cert, &tls.server_key).await?;
    ensure!(receiver.url().starts_with("https://127.0.0.1:"), "{}", receiver.url());
    let args = webhook_args(&pg, &receiver, &names, &dir)?;
    let client = pg.client().await?;

    // Not trusted: the public roots (no --webhook-ca), then an unrelated CA.
    // (A short shutdown timeout: the refused events stay in flight, and a SIGTERM waits
    // that long for them before it gives up and exits.)
    let untrusted = [vec![], vec!["--webhook-ca".to_owned(), path_arg(&tls.other_ca)]];
    let mut held = 0;
    for (round, extra) in untrusted.iter().enumerate() {
        let quick_stop = ["--shutdown-timeout-secs".to_owned(), "2".to_owned()];
        let tailbox = Tailbox::start(&[&args[..], &extra[..], &quick_stop[..]].concat())?;
        wait_streaming(&pg, &names.slot, &tailbox).await?;
        pg.psql(&format!(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES \
             ('Order', 'o-{round}', 'Placed', '{{\"round\": {round}, \"n\": 1}}'), \
             ('Order', 'o-{round}', 'Placed', '{{\"round\": {round}, \"n\": 2}}'), \
             ('Customer', 'c-{round}', 'Joined', '{{\"round\": {round}}}')"
        ))?;
        held += 3;
        let (_, after_insert) = slot_and_wal(&client, &names.slot).await?;
        // Refused handshakes reach the receiver, and tailbox says why.
        let failures = receiver.tls_failures().len();
        wait_until("refused TLS handshakes", Duration::from_secs(60), || {
            receiver.tls_failures().len() >= failures + 3
                && tailbox.log_text().contains("certificate is not trusted")
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tailbox.log_text()))?;
        // More time than tailbox's status interval: had it confirmed, it would show.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (running, _) = slot_and_wal(&client, &names.slot).await?;
        let log = tailbox.stop_clean()?;
        let (stopped, _) = slot_and_wal(&client, &names.slot).await?;
        ensure!(receiver.count() == 0, "a request got through an untrusted certificate:\n{log}");
        for confirmed in [running, stopped] {
            ensure!(
                confirmed < after_insert,
                "round {round}: the slot moved to {confirmed:#x}, past undelivered events \
                 (WAL at {after_insert:#x})\n{log}"
            );
        }
        let line = log
            .lines()
            .find(|l| l.contains("webhook delivery failed"))
            .with_context(|| format!("round {round}: no failed delivery logged:\n{log}"))?;
        ensure!(
            line.contains("certificate is not trusted") && line.contains("webhook_ca"),
            "round {round}: the failure names neither the cause nor the fix: {line}"
        );
        ensure!(!log.contains("test-token") && !log.contains("MfKQ9r8"), "no secret in the log");
    }
    let refusals = receiver.tls_failures();
    ensure!(
        refusals.iter().any(|r| r.to_ascii_lowercase().contains("alert")),
        "the client refused by a TLS alert: {refusals:?}"
    );

    // Trusted: --webhook-ca of the CA that signed the receiver's certificate.
    let (held_at, _) = slot_and_wal(&client, &names.slot).await?;
    let mut trusted = args.clone();
    trusted.extend(["--webhook-ca".to_owned(), path_arg(&tls.ca)]);
    let tailbox = Tailbox::start(&trusted)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES \
         ('Order', 'o-9', 'Placed', '{\"round\": 9}')",
    )?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tailbox.log_text()))?;
    let log = tailbox.stop_clean()?;
    ensure!(!log.contains("certificate is not trusted"), "{log}");

    let arrivals = receiver.arrivals();
    let rows = pg.psql("SELECT id FROM outbox ORDER BY id")?;
    let expected: BTreeSet<String> =
        rows.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    ensure!(expected.len() == held + 1, "{} outbox rows", expected.len());
    let got: BTreeSet<String> =
        arrivals.iter().filter(|a| a.delivered()).map(|a| a.id.clone()).collect();
    ensure!(got == expected, "delivered {got:?}, expected {expected:?}");
    ensure!(arrivals.iter().all(|a| a.signature_ok), "every request is signed and fresh");
    let verdicts = verify_with_standardwebhooks(SECRET, &arrivals)?;
    ensure!(verdicts.iter().all(|v| v == "ok"), "the Standard Webhooks library: {verdicts:?}");
    // The events held back lay beyond where the slot stood while they were refused.
    for a in &arrivals {
        let lsn = a.header("tailbox-lsn").and_then(parse_lsn).context("tailbox-lsn")?;
        let late = String::from_utf8_lossy(&a.body).contains("\"round\": 9");
        ensure!(late || lsn > held_at, "event at {lsn:#x} behind the held slot {held_at:#x}");
    }
    Ok(())
}

fn path_arg(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

//! `--sink webhook` end to end: real PostgreSQL, the tailbox binary, and a real HTTP
//! receiver (tests/support) that verifies every signature and answers with random
//! faults (500, 503 + Retry-After, 429, stalls past the client's timeout) and a 400 for
//! poison events, while tailbox is SIGKILLed three times under four writers.

mod harness;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, ensure};
use harness::{
    Names, apply_sql, apply_sql_files,
    process::{Tailbox, base_args, output_text, role_url, run_command, status_text},
    slot_and_wal,
    verify::verify,
    wait_for_confirmed, wait_streaming,
    workload::{EventId, Workload},
};
use tailbox_e2e::{Arrival, ConsumedRecord, PgServer, Reply, WebhookReceiver};

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

    let workload = Workload { writers: 4, transactions: 200, aggregates: 50 };
    let writers = {
        let url = pg.url();
        tokio::spawn(async move { workload.run_at(&url).await })
    };
    for pause in [700, 1200, 1500] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
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
    let all = workload.expected();
    let poison: BTreeSet<EventId> = all.iter().copied().filter(|id| is_poison(*id)).collect();
    let expected: BTreeSet<EventId> = all.difference(&poison).copied().collect();
    let records = delivered(&arrivals);
    let report = verify(&records, &expected)?;
    let ids: BTreeSet<String> =
        arrivals.iter().filter(|a| a.delivered()).map(|a| a.id.clone()).collect();
    println!(
        "summary: events {} requests {} faults {} poison {} kills 3 {report} distinct webhook-ids {}",
        all.len(),
        arrivals.len(),
        faults.load(Ordering::Relaxed),
        poison.len(),
        ids.len()
    );
    ensure!(!poison.is_empty(), "the workload has poison events");
    ensure!(report.lost == 0, "events lost: {report}\n{}", tailbox.log_text());
    ensure!(report.reordered == 0, "per-aggregate order broken: {report}");
    ensure!(report.wrong_xid == 0, "xid headers wrong: {report}");
    ensure!(report.unique == expected.len(), "{report}");
    // Duplicates share their webhook-id, so a receiver can drop them.
    ensure!(ids.len() == report.unique, "one webhook-id per event");

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

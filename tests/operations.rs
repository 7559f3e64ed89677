//! End-to-end tests of what operators use, against a real PostgreSQL 15 and a real
//! Apache Kafka broker: `tailbox setup`/`status`/`teardown`, the HTTP endpoint
//! (`/metrics`, `/healthz`, `/readyz`, `/status`), `config check` with redaction and
//! precedence, `--dry-run` and heartbeats.

mod harness;

use harness::http::{free_port, http_get};

use std::{
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use harness::{
    Names, apply_sql_files,
    process::{Tailbox, base_args, run_command},
    slot_and_wal, wait_for_confirmed, wait_streaming,
};
use tailbox_e2e::{ConsumeOptions, PgServer, Subscription, consume, consume_pattern, shared_kafka};

/// The outbox table and the least-privilege role; the slot and publication are left
/// to `tailbox setup`.
fn prepare_database(pg: &PgServer) -> Result<()> {
    apply_sql_files(
        pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("04_role.sql", vec!["password=tailbox-test".to_owned()]),
        ],
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `tailbox setup|teardown|status` against `pg` as the superuser (setup needs the
/// table's owner; the role of sql/04_role.sql is for `run`).
fn admin(pg: &PgServer, names: &Names, command: &[&str]) -> Result<Output> {
    let url = pg.url();
    let mut args = command.to_vec();
    args.extend(["--pg-url", &url, "--slot", &names.slot, "--publication", &names.publication]);
    run_command(&args, &[])
}

fn status_json(pg: &PgServer, names: &Names) -> Result<serde_json::Value> {
    let out = admin(pg, names, &["status", "--json"])?;
    let (stdout, stderr) = text(&out);
    serde_json::from_str(&stdout).with_context(|| format!("status --json: {stdout}\n{stderr}"))
}

/// Waits until `path` answers `code`.
async fn wait_for_http(port: u16, path: &str, code: u16, tailbox: &Tailbox) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(port, path) {
            Ok((got, body)) if got == code => return Ok(body),
            Ok((got, body)) => last = format!("{got} {body}"),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{path} did not answer {code} within 60 s (last: {last})\n{}", tailbox.log_text())
}

/// The value of an unlabelled sample, or the sum over a metric's labelled samples
/// whose labels contain `label_part`.
fn metric_sum(exposition: &str, name: &str, label_part: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or_default();
        if metric == name && series.contains(label_part) {
            let v: f64 = value.parse().ok()?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

async fn insert_events(pg: &PgServer, aggregate_type: &str, n: usize) -> Result<()> {
    let client = pg.client().await?;
    client
        .execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             SELECT $1, 'a' || (i % 5), 'Happened', jsonb_build_object('i', i) \
             FROM generate_series(1, $2::int) i",
            &[&aggregate_type, &(n as i32)],
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_run_endpoints_status_and_teardown() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("ops");
    prepare_database(&pg)?;

    // setup creates both, and is idempotent.
    let out = admin(&pg, &names, &["setup"])?;
    let (stdout, stderr) = text(&out);
    ensure!(out.status.success(), "setup failed: {stdout}{stderr}");
    ensure!(
        stdout.contains(&format!("publication {}: created", names.publication))
            && stdout.contains(&format!("slot {}: created", names.slot))
            && stdout.contains("ready"),
        "{stdout}"
    );
    let out = admin(&pg, &names, &["setup"])?;
    let (stdout, stderr) = text(&out);
    ensure!(out.status.success(), "second setup failed: {stdout}{stderr}");
    ensure!(stdout.matches("already exists").count() == 2, "setup is idempotent: {stdout}");
    let status = status_json(&pg, &names)?;
    ensure!(
        status["slot"]["exists"] == true
            && status["slot"]["active"] == false
            && status["slot"]["plugin"] == "pgoutput"
            && status["publication"]["operations"] == serde_json::json!(["insert"])
            && status["publication"]["tables"] == serde_json::json!(["public.outbox"]),
        "{status:#}"
    );

    // run, with the endpoint on a port of our own and a progress line every second.
    let port = free_port()?;
    let mut args = base_args(&pg, &kafka, &names);
    args.extend([
        "--metrics-addr".into(),
        format!("127.0.0.1:{port}"),
        "--progress-interval-secs".into(),
        "1".into(),
    ]);
    let mut run = Tailbox::start(&args)?;
    wait_for_http(port, "/healthz", 200, &run).await?;
    wait_for_http(port, "/readyz", 200, &run).await?;

    insert_events(&pg, "Agg0", 12).await?;
    insert_events(&pg, "Agg1", 8).await?;
    let records =
        consume_pattern(&kafka, &names.topic_pattern(), 20, Duration::from_secs(120)).await?;
    // A pattern subscription may rebalance when the second topic appears and read the
    // first one again: count each (topic, partition, offset) once.
    let distinct: std::collections::BTreeSet<_> =
        records.iter().map(|r| (r.topic.clone(), r.partition, r.offset)).collect();
    ensure!(
        distinct.len() == 20,
        "got {} records: {:?}\n{}",
        distinct.len(),
        distinct,
        run.log_text()
    );
    let client = pg.client().await?;
    let (_, current) = slot_and_wal(&client, &names.slot).await?;
    wait_for_confirmed(&client, &names.slot, current, Duration::from_secs(60)).await?;

    // /metrics: published counts by topic, state gauges, the slot's retained WAL.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (code, body) = http_get(port, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        let published = metric_sum(&body, "tailbox_published_events_total", "");
        let retained = metric_sum(&body, "tailbox_slot_retained_wal_bytes", "");
        if published == Some(20.0) && retained.is_some() {
            break body;
        }
        if Instant::now() > deadline {
            bail!("metrics incomplete after 30 s:\n{body}\n{}", run.log_text());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let agg0 = format!("topic=\"{}.Agg0\"", names.topic_prefix);
    for (name, label, want) in [
        ("tailbox_published_events_total", agg0.as_str(), Some(12.0)),
        ("tailbox_streaming", "", Some(1.0)),
        ("tailbox_kafka_ok", "", Some(1.0)),
        ("tailbox_up", "", Some(1.0)),
        ("tailbox_in_flight_records", "", Some(0.0)),
        ("tailbox_dead_lettered_total", "", Some(0.0)),
    ] {
        ensure!(
            metric_sum(&metrics, name, label) == want,
            "{name}{{{label}}} is not {want:?}:\n{metrics}"
        );
    }
    for name in [
        "tailbox_published_bytes_total",
        "tailbox_errors_total",
        "tailbox_replication_lag_seconds",
        "tailbox_confirmed_lsn",
        "tailbox_reconnects_total",
        "tailbox_info",
    ] {
        ensure!(metric_sum(&metrics, name, "").is_some(), "{name} missing:\n{metrics}");
    }
    ensure!(
        metric_sum(&metrics, "tailbox_confirmed_lsn", "").unwrap_or(0.0) > 0.0,
        "confirmed LSN reported:\n{metrics}"
    );

    // /status JSON.
    let (code, body) = http_get(port, "/status")?;
    ensure!(code == 200, "/status answered {code}");
    let status: serde_json::Value = serde_json::from_str(&body).context("/status is JSON")?;
    ensure!(
        status["published_events"] == 20
            && status["slot"] == names.slot.as_str()
            && status["ready"] == true
            && status["dry_run"] == false
            && status["replication_lag_seconds"].is_number()
            && status.get("last_error").is_some()
            && status["slot_status"]["retained_wal_bytes"].is_number(),
        "{status:#}"
    );

    // `tailbox status` sees tailbox holding the slot, caught up.
    let status = status_json(&pg, &names)?;
    ensure!(
        status["slot"]["active"] == true
            && status["slot"]["active_pid"].is_number()
            && status["slot"]["lag_bytes"].is_number()
            && status["slot"]["retained_wal_bytes"].is_number()
            && status["slot"]["wal_status"].is_string(),
        "{status:#}"
    );
    let out = admin(&pg, &names, &["status"])?;
    let (table, _) = text(&out);
    ensure!(
        out.status.success()
            && table.contains("confirmed LSN")
            && table.contains("retained WAL")
            && table.contains("active"),
        "{table}"
    );

    // teardown refuses while the slot is in use.
    let out = admin(&pg, &names, &["teardown"])?;
    let (_, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("in use") && stderr.contains("fix:"),
        "teardown of a busy slot: {stderr}"
    );

    ensure!(
        run.log_text().contains("progress"),
        "a progress line every second when not on a terminal:\n{}",
        run.log_text()
    );
    ensure!(run.is_running(), "{}", run.log_text());
    let code = run.terminate(Duration::from_secs(30))?;
    ensure!(code.success(), "{code}");

    // teardown drops both, and is idempotent.
    let out = admin(&pg, &names, &["teardown"])?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.success() && stdout.matches("dropped").count() == 2,
        "teardown: {stdout}{stderr}"
    );
    let left = pg.psql(&format!(
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}') + \
                (SELECT count(*) FROM pg_publication WHERE pubname = '{}')",
        names.slot, names.publication
    ))?;
    ensure!(left.trim() == "0", "slot or publication left: {left}");
    let out = admin(&pg, &names, &["teardown"])?;
    let (stdout, _) = text(&out);
    ensure!(out.status.success() && stdout.matches("not there").count() == 2, "{stdout}");
    let out = admin(&pg, &names, &["status"])?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(1)
            && stdout.contains("MISSING")
            && stderr.contains("tailbox setup"),
        "status without a slot: {stdout}{stderr}"
    );
    Ok(())
}

#[test]
fn config_check_redacts_secrets_and_applies_precedence() -> Result<()> {
    let dir = tailbox_e2e::scratch_dir("config");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("tailbox.toml");
    std::fs::write(
        &file,
        r#"
pg_url = "postgres://app:pg-secret-1@db.example:5432/shop"
kafka_brokers = "k1:9092,k2:9092"
slot = "file_slot"
publication = "file_pub"
max_in_flight = 1234
[kafka_props]
"linger.ms" = 10
"sasl.password" = "kafka-secret-2"
"sasl.username" = "app"
"#,
    )?;
    let file_arg = file.to_string_lossy().into_owned();
    let out = run_command(
        &[
            "config",
            "check",
            "--config",
            &file_arg,
            "--slot",
            "flag_slot",
            "--kafka-prop",
            "sasl.password=kafka-secret-4",
        ],
        &[("TAILBOX_SLOT", "env_slot"), ("TAILBOX_PUBLICATION", "env_pub")],
    )?;
    let (stdout, stderr) = text(&out);
    ensure!(out.status.success(), "config check failed: {stderr}");
    for secret in ["pg-secret-1", "kafka-secret-2", "kafka-secret-4"] {
        ensure!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked:\n{stdout}{stderr}"
        );
    }
    for line in [
        "pg_url = \"postgres://app:REDACTED@db.example:5432/shop\"",
        "slot = \"flag_slot\"  # flag --slot",
        "publication = \"env_pub\"  # env TAILBOX_PUBLICATION",
        "max_in_flight = 1234  # file",
        "status_interval_ms = 1000  # default",
        "\"linger.ms\" = \"10\"",
        "\"sasl.username\" = \"app\"  # file",
        "\"sasl.password\" = \"REDACTED\"  # flag --kafka-prop",
    ] {
        ensure!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    // A property librdkafka refuses is named, its secret value not shown.
    let out = run_command(
        &[
            "config",
            "check",
            "--config",
            &file_arg,
            "--kafka-prop",
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required password=\"kafka-secret-5\";",
        ],
        &[],
    )?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(1)
            && stderr.contains("sasl.jaas.config")
            && stderr.contains("fix:")
            && !stderr.contains("kafka-secret-5")
            && !stdout.contains("kafka-secret-5"),
        "{stdout}{stderr}"
    );

    // An unknown key is refused, named, with the fix.
    std::fs::write(
        &file,
        "pg_url = \"postgres://u@h/db\"\nkafka_brokers = \"k:9092\"\nmax_inflight = 5\n",
    )?;
    let out = run_command(&["config", "check", "--config", &file_arg], &[])?;
    let (_, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(1)
            && stderr.contains("unknown key \"max_inflight\"")
            && stderr.contains("did you mean max_in_flight?")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // An invalid value from the environment names the variable, the value and the fix.
    let out = run_command(
        &["config", "check", "--pg-url", "postgres://u@h/db", "--kafka-brokers", "k:9092"],
        &[("TAILBOX_STATUS_INTERVAL_MS", "5")],
    )?;
    let (_, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(1)
            && stderr.contains("TAILBOX_STATUS_INTERVAL_MS \"5\"")
            && stderr.contains("fix:"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_publishes_nothing_and_never_confirms() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("dryrun");
    prepare_database(&pg)?;
    let out = admin(&pg, &names, &["setup"])?;
    ensure!(out.status.success(), "{:?}", text(&out));
    let client = pg.client().await?;
    let (held, _) = slot_and_wal(&client, &names.slot).await?;

    let port = free_port()?;
    let mut args = base_args(&pg, &kafka, &names);
    args.extend(["--dry-run".into(), "--metrics-addr".into(), format!("127.0.0.1:{port}")]);
    let mut run = Tailbox::start(&args)?;
    wait_for_http(port, "/healthz", 200, &run).await?;
    // Streaming: the slot is held by tailbox's walsender.
    wait_streaming(&pg, &names.slot, &run).await?;
    insert_events(&pg, "Agg0", 10).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (code, body) = http_get(port, "/status")?;
    ensure!(code == 200, "/status answered {code}");
    let status: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(status["dry_run"] == true, "{status:#}");
    ensure!(
        !status["last_read_commit_time"].is_null(),
        "the dry run read the events: {status:#}\n{}",
        run.log_text()
    );
    ensure!(run.is_running(), "{}", run.log_text());
    let (confirmed, _) = slot_and_wal(&client, &names.slot).await?;
    ensure!(
        confirmed == held,
        "a dry run never confirms: slot moved from {held:X} to {confirmed:X}"
    );
    let records = consume(
        &kafka,
        Subscription::Pattern(&names.topic_pattern()),
        ConsumeOptions {
            expected: 0,
            timeout: Duration::from_secs(20),
            quiet: Duration::from_secs(5),
        },
    )
    .await?;
    ensure!(records.is_empty(), "a dry run published {} records", records.len());
    let code = run.terminate(Duration::from_secs(30))?;
    ensure!(code.success(), "{code}");
    let (confirmed, _) = slot_and_wal(&client, &names.slot).await?;
    ensure!(confirmed == held, "not even at shutdown: {held:X} → {confirmed:X}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_quiet_slot_advancing() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("heartbeat");
    prepare_database(&pg)?;
    let out = admin(&pg, &names, &["setup"])?;
    ensure!(out.status.success(), "{:?}", text(&out));

    let mut args = base_args(&pg, &kafka, &names);
    args.extend([
        "--heartbeat-interval-ms".into(),
        "500".into(),
        "--metrics-addr".into(),
        String::new(),
    ]);
    let mut run = Tailbox::start(&args)?;
    let client = pg.client().await?;
    // Wait until streaming; nothing else writes to this database.
    wait_streaming(&pg, &names.slot, &run).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (confirmed_before, wal_before) = slot_and_wal(&client, &names.slot).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (confirmed_after, wal_after) = slot_and_wal(&client, &names.slot).await?;
    println!(
        "wal {wal_before:X} → {wal_after:X}, confirmed {confirmed_before:X} → {confirmed_after:X}"
    );
    ensure!(
        wal_after > wal_before,
        "no WAL written in 4 s: heartbeats were not emitted\n{}",
        run.log_text()
    );
    ensure!(
        confirmed_after > confirmed_before && confirmed_after >= wal_before,
        "slot did not follow the heartbeats: confirmed {confirmed_before:X} → {confirmed_after:X}, WAL was {wal_before:X} 4 s earlier\n{}",
        run.log_text()
    );
    ensure!(run.is_running(), "{}", run.log_text());
    let code = run.terminate(Duration::from_secs(30))?;
    ensure!(code.success(), "{code}");
    Ok(())
}

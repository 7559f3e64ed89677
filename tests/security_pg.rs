//! tailbox against a PostgreSQL 15 that accepts TLS only, with SCRAM-SHA-256 passwords
//! and client certificates (`scripts/pg.sh start-tls`; the server certificate names
//! 127.0.0.1, not `localhost`). End to end through the binary: events reach Kafka under
//! verify-full, verify-ca and client-certificate authentication; wrong host names, a
//! plaintext connection and a wrong password are refused with one line naming the fix;
//! `status` works over TLS; the password never shows in `config check` or the log.
//!
//! The sslmode matrix on both connections (control and replication) is tested in
//! crates/replication/tests/tls.rs.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql, apply_sql_files,
    process::{Tailbox, base_args, output_text, run_command, run_to_exit},
    simple_events_arrive, write_simple_events,
};
use tailbox_e2e::{PgServer, PgTlsFiles, consume_pattern, scratch_dir, shared_kafka, tailbox_bin};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(90);
const EVENTS: usize = 40;

/// A password no other text in a log or a config could contain by chance.
fn secret() -> String {
    format!("pw-{}-Zq8x", std::process::id())
}

/// A TLS server with the outbox set up for `names`; the role `tailbox` has the password
/// [`secret`] (stored as a SCRAM verifier, which is checked).
fn tls_server(names: &Names) -> Result<(PgServer, PgTlsFiles)> {
    let (pg, tls) = PgServer::start_tls()?;
    apply_sql(&pg, names)?;
    pg.psql(&format!("ALTER ROLE tailbox PASSWORD '{}'", secret()))?;
    let stored = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'tailbox'")?;
    ensure!(stored.starts_with("SCRAM-SHA-256$"), "password stored as {stored:?}, not SCRAM");
    Ok((pg, tls))
}

/// A file holding `password` (mode 0600), as a Kubernetes secret mount would.
fn password_file(password: &str) -> Result<PathBuf> {
    let dir = scratch_dir("pgpass");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// `base_args` with another `--pg-url`, plus `extra`.
fn args_with(pg: &PgServer, kafka: &str, names: &Names, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = base_args(pg, kafka, names);
    if let Some(i) = args.iter().position(|a| a == "--pg-url") {
        args[i + 1] = url.to_owned();
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn url(user: &str, host: &str, pg: &PgServer, query: &str) -> String {
    format!("postgres://{user}@{host}:{}/postgres?{query}", pg.port())
}

/// Writes events, reads them back from Kafka, and checks every tailbox session on the
/// server (control and walsender) is encrypted.
async fn streams_over_tls(pg: &PgServer, kafka: &str, names: &Names, user: &str) -> Result<()> {
    simple_events_arrive(pg, kafka, names, EVENTS, String::new).await?;
    let sessions = pg.psql(&format!(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE a.backend_type = 'walsender') \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '{user}'"
    ))?;
    let counts: Vec<u32> = sessions.split('|').filter_map(|c| c.parse().ok()).collect();
    ensure!(
        matches!(counts.as_slice(), [all, tls, walsenders] if all == tls && *walsenders >= 1 && all > walsenders),
        "sessions of {user} (all, tls, walsenders): {sessions}"
    );
    Ok(())
}

/// `tailbox status --json` with `args` (and `envs`): (exit ok, stdout, stderr).
fn status(args: &[&str], envs: &[(&str, &str)]) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(tailbox_bin()?);
    cmd.arg("status").arg("--json").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running tailbox status")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The `tailbox: error:` line of a failed run, checked to name `words` and a fix.
fn error_line(log: &str, words: &[&str]) -> Result<String> {
    let line = log
        .lines()
        .find(|l| l.starts_with("tailbox: error:"))
        .with_context(|| format!("no error line in:\n{log}"))?;
    ensure!(line.contains("fix:"), "no fix in {line:?}");
    for word in words {
        ensure!(line.contains(word), "{line:?} lacks {word:?}");
    }
    Ok(line.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_scram_password_file_streams_and_status_works() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("tls_full");
    let (pg, tls) = tls_server(&names)?;
    let pw = password_file(&secret())?;
    let pw = pw.to_string_lossy();
    let pg_url = url(
        "tailbox",
        "127.0.0.1",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={}", tls.ca.display()),
    );
    let tailbox =
        Tailbox::start(&args_with(&pg, &kafka, &names, &pg_url, &["--pg-password-file", &pw]))?;
    streams_over_tls(&pg, &kafka, &names, "tailbox").await?;

    // `status` uses the control connection: same URL, same password file.
    let (ok, stdout, stderr) = status(
        &[
            "--pg-url",
            &pg_url,
            "--pg-password-file",
            &pw,
            "--slot",
            &names.slot,
            "--publication",
            &names.publication,
        ],
        &[],
    )?;
    ensure!(ok, "tailbox status failed: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).context("status --json output")?;
    ensure!(json["slot"]["exists"] == true && json["slot"]["active"] == true, "{stdout}");
    ensure!(
        !stdout.contains(&secret()) && !stderr.contains(&secret()),
        "status shows the password"
    );

    let text = tailbox.stop_clean()?;
    ensure!(text.contains("streaming"), "log:\n{text}");
    ensure!(!text.contains(&secret()), "the log shows the password:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_a_certificate_for_another_name_and_takes_the_password_from_env()
-> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("tls_ca");
    let (pg, tls) = tls_server(&names)?;
    // The certificate names 127.0.0.1 only: verify-ca checks the chain, not the name.
    let query = format!("sslmode=verify-ca&sslrootcert={}", tls.ca.display());
    let pw = password_file(&secret())?;
    let pw = pw.to_string_lossy();
    let pg_url = url("tailbox", "localhost", &pg, &query);
    let tailbox =
        Tailbox::start(&args_with(&pg, &kafka, &names, &pg_url, &["--pg-password-file", &pw]))?;
    streams_over_tls(&pg, &kafka, &names, "tailbox").await?;

    // The whole URL, password included, from the environment (TAILBOX_PG_URL).
    let with_password = url(&format!("tailbox:{}", secret()), "localhost", &pg, &query);
    let (ok, stdout, stderr) = status(
        &["--slot", &names.slot, "--publication", &names.publication],
        &[("TAILBOX_PG_URL", &with_password)],
    )?;
    ensure!(ok, "tailbox status failed: {stderr}");
    ensure!(
        !stdout.contains(&secret()) && !stderr.contains(&secret()),
        "status shows the password"
    );

    ensure!(!tailbox.stop_clean()?.contains(&secret()), "the log shows the password");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_authenticates_without_a_password() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("tls_cert");
    let (pg, tls) = tls_server(&names)?;
    let user = PgTlsFiles::CERT_USER;
    // The same least-privilege role script, for the certificate's user.
    apply_sql_files(
        &pg,
        &[("04_role.sql", vec![format!("role={user}"), "password=never-used".to_owned()])],
    )?;
    let pg_url = url(
        user,
        "127.0.0.1",
        &pg,
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            tls.ca.display(),
            tls.client_cert.display(),
            tls.client_key.display()
        ),
    );
    let tailbox = Tailbox::start(&args_with(&pg, &kafka, &names, &pg_url, &[]))?;
    streams_over_tls(&pg, &kafka, &names, user).await?;
    let (ok, _, stderr) = status(
        &["--pg-url", &pg_url, "--slot", &names.slot, "--publication", &names.publication],
        &[],
    )?;
    ensure!(ok, "tailbox status with a client certificate failed: {stderr}");
    ensure!(tailbox.terminate(Duration::from_secs(30))?.success(), "SIGTERM exits 0");
    Ok(())
}

/// A PostgreSQL restart cuts both TLS connections; tailbox reconnects over TLS and loses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_over_tls_after_postgres_restart() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("tls_restart");
    let (pg, tls) = tls_server(&names)?;
    let pw = password_file(&secret())?;
    let pg_url = url(
        "tailbox",
        "127.0.0.1",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={}", tls.ca.display()),
    );
    let mut tailbox = Tailbox::start(&args_with(
        &pg,
        &kafka,
        &names,
        &pg_url,
        &["--pg-password-file", &pw.to_string_lossy()],
    ))?;
    // Streaming over TLS first, so the restart cuts live connections.
    write_simple_events(&pg, EVENTS / 2)?;
    let first =
        consume_pattern(&kafka, &names.topic_pattern(), EVENTS / 2, CONSUME_TIMEOUT).await?;
    ensure!(first.len() >= EVENTS / 2, "{} records before the restart", first.len());
    pg.restart("immediate")?;
    // Written after the restart: must arrive over a new TLS session.
    pg.psql(&format!(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
         SELECT 'Order', 'o' || (i % 5), 'Created', jsonb_build_object('after', i) \
         FROM generate_series(1, {}) AS i",
        EVENTS / 2
    ))?;
    let records = consume_pattern(&kafka, &names.topic_pattern(), EVENTS, CONSUME_TIMEOUT).await?;
    let after = records.iter().filter(|r| r.payload_str().contains("after")).count();
    ensure!(
        after >= EVENTS / 2,
        "{after} of {} events written after the restart arrived:\n{}",
        EVENTS / 2,
        tailbox.log_text()
    );
    ensure!(tailbox.is_running(), "tailbox must survive the restart:\n{}", tailbox.log_text());
    let sessions = pg.psql(
        "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE a.backend_type = 'walsender') \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'tailbox'",
    )?;
    ensure!(sessions == "0|1", "(plain sessions, walsenders) after the restart: {sessions}");
    ensure!(tailbox.terminate(Duration::from_secs(30))?.success(), "SIGTERM exits 0");
    Ok(())
}

/// Startup refusals: each exits at once (no retry loop) with one line naming the
/// problem and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_wrong_host_name_plaintext_and_wrong_password_clearly() -> Result<()> {
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("tls_refuse");
    let (pg, tls) = tls_server(&names)?;
    let ca = tls.ca.display().to_string();
    let right = password_file(&secret())?;
    let wrong = password_file("not-the-Zq8x-password")?;
    let cases: [(&str, String, &Path, &[&str]); 4] = [
        (
            "verify-full to a name the certificate lacks",
            url("tailbox", "localhost", &pg, &format!("sslmode=verify-full&sslrootcert={ca}")),
            &right,
            &[
                "sslmode=verify-full",
                "not valid for host \"localhost\"",
                "it names 127.0.0.1",
                "verify-ca",
            ],
        ),
        (
            "a CA that did not sign the server's certificate",
            url(
                "tailbox",
                "127.0.0.1",
                &pg,
                &format!("sslmode=verify-full&sslrootcert={}", tls.other_ca.display()),
            ),
            &right,
            &["sslmode=verify-full", "not signed by a CA in sslrootcert"],
        ),
        (
            "plaintext to a TLS-only server",
            url("tailbox", "127.0.0.1", &pg, "sslmode=disable"),
            &right,
            &["sslmode=disable", "without TLS", "no encryption", "sslmode=verify-full"],
        ),
        (
            "wrong password (SCRAM)",
            url("tailbox", "127.0.0.1", &pg, &format!("sslmode=verify-full&sslrootcert={ca}")),
            &wrong,
            &["refused the password of user \"tailbox\"", "28P01", "pg_password_file"],
        ),
    ];
    for (what, pg_url, password, words) in cases {
        let started = std::time::Instant::now();
        let args = args_with(
            &pg,
            &kafka,
            &names,
            &pg_url,
            &["--pg-password-file", &password.to_string_lossy()],
        );
        let (code, log) = run_to_exit(&args, Duration::from_secs(60))?;
        ensure!(code.is_some_and(|c| c != 0), "{what}: exit code {code:?}");
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
        let line = error_line(&log, words).with_context(|| what.to_owned())?;
        println!("{what}: {line}");
        ensure!(
            !log.contains(&secret()) && !log.contains("not-the-Zq8x-password"),
            "{what}: the log shows a password:\n{log}"
        );
    }
    Ok(())
}

/// `config check` shows the TLS settings (paths are not secrets) but never a password,
/// wherever it came from; a refused `sslpassword` is not echoed either.
#[tokio::test]
async fn config_check_never_shows_secrets() -> Result<()> {
    let (pg, tls) = PgServer::start_tls()?;
    let query = format!("sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let pw = password_file(&secret())?;
    let check = |args: &[&str], envs: &[(&str, &str)]| -> Result<(bool, String)> {
        let args = [&["config", "check", "--kafka-brokers", "127.0.0.1:9"][..], args].concat();
        let out = run_command(&args, envs)?;
        Ok((out.status.success(), output_text(&out)))
    };
    let in_url = url(&format!("tailbox:{}", secret()), "127.0.0.1", &pg, &query);
    let without = url("tailbox", "127.0.0.1", &pg, &query);
    for (what, args, envs) in [
        ("password in --pg-url", vec!["--pg-url", in_url.as_str()], vec![]),
        ("password in TAILBOX_PG_URL", vec![], vec![("TAILBOX_PG_URL", in_url.as_str())]),
        (
            "password file",
            vec!["--pg-url", without.as_str(), "--pg-password-file", &pw.to_string_lossy()],
            vec![],
        ),
    ] {
        let (ok, text) = check(&args, &envs)?;
        ensure!(ok, "{what}: config check failed:\n{text}");
        ensure!(!text.contains(&secret()), "{what}: config check shows the password:\n{text}");
        ensure!(
            text.contains(&format!("sslrootcert={}", tls.ca.display()))
                && text.contains("sslmode=verify-full"),
            "{what}: TLS settings not shown:\n{text}"
        );
    }
    let with_ssl_password = format!(
        "{without}&sslcert={}&sslkey={}&sslpassword=Key-{}",
        tls.client_cert.display(),
        tls.client_key.display(),
        secret()
    );
    let (ok, text) = check(&["--pg-url", &with_ssl_password], &[])?;
    ensure!(!ok && text.contains("sslpassword") && text.contains("fix:"), "{text}");
    ensure!(!text.contains(&secret()), "the sslpassword was echoed:\n{text}");
    Ok(())
}

//! TLS and authentication against a real PostgreSQL 15 configured for them
//! (`scripts/pg.sh start-tls`: TLS only, SCRAM passwords, client certificates; the server
//! certificate names 127.0.0.1 and not `localhost`).
//!
//! Every case connects both ways tailbox talks to PostgreSQL, the control connection
//! (`tokio-postgres`) and the replication stream (our own client, `PgWalStream`),
//! and requires the same outcome from both: same `sslmode` semantics, same one-line
//! error with its fix.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tailbox_pg_support::{PgServer, PgTlsFiles, unique_name};
use tailbox_replication::{
    ControlClient, Lsn, PgConnectionConfig, PgWalStream, ReplicationError, StreamSettings,
    WalSource,
};

const PASSWORD: &str = "s3cr3t-scram";

/// One way of connecting, and what must come of it.
struct Case {
    name: &'static str,
    host: &'static str,
    user: &'static str,
    password: Option<&'static str>,
    query: String,
    /// `None`: both connections work, over TLS. `Some(words)`: both fail with a startup
    /// problem containing every one of `words` and a fix.
    refused: Option<&'static [&'static str]>,
}

fn prepare(pg: &PgServer) -> Result<()> {
    pg.psql(&format!(
        "CREATE TABLE outbox (id bigserial PRIMARY KEY, payload text);
         CREATE PUBLICATION tls_pub FOR TABLE outbox;
         CREATE ROLE tailbox LOGIN REPLICATION PASSWORD '{PASSWORD}';
         CREATE ROLE {cert} LOGIN REPLICATION;
         GRANT SELECT ON outbox TO tailbox, {cert};",
        cert = PgTlsFiles::CERT_USER
    ))?;
    // SCRAM, not md5: the server stores the verifier only.
    let stored = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'tailbox'")?;
    ensure!(stored.starts_with("SCRAM-SHA-256$"), "password stored as {stored:?}");
    Ok(())
}

fn cases(tls: &PgTlsFiles) -> Vec<Case> {
    let ca = tls.ca.display().to_string();
    let other = tls.other_ca.display().to_string();
    let cert =
        format!("&sslcert={}&sslkey={}", tls.client_cert.display(), tls.client_key.display());
    let ok = |name, host, query: String| Case {
        name,
        host,
        user: "tailbox",
        password: Some(PASSWORD),
        query,
        refused: None,
    };
    let refused = |name, host, query: String, words: &'static [&'static str]| Case {
        refused: Some(words),
        ..ok(name, host, query)
    };
    vec![
        ok(
            "verify-full, certificate names the IP",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        refused(
            "verify-full, certificate does not name localhost",
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            &["sslmode=verify-full", "not valid for host \"localhost\"", "127.0.0.1", "verify-ca"],
        ),
        ok(
            "verify-ca checks the chain, not the name",
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
        refused(
            "verify-ca, certificate from another CA",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            &["sslmode=verify-ca", "not signed by a CA in sslrootcert", "other-ca.crt"],
        ),
        refused(
            "verify-full against the public roots",
            "127.0.0.1",
            "sslmode=verify-full&sslrootcert=system".to_owned(),
            &["sslmode=verify-full", "not signed by a CA in sslrootcert (system)"],
        ),
        ok("require encrypts without checking", "localhost", "sslmode=require".to_owned()),
        refused(
            "require with a root certificate checks the chain (libpq)",
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            &["sslmode=require", "not signed by a CA"],
        ),
        ok("prefer uses TLS when offered", "127.0.0.1", String::new()),
        refused(
            "disable against a TLS-only server",
            "127.0.0.1",
            "sslmode=disable".to_owned(),
            &["without TLS", "sslmode=disable", "no encryption", "sslmode=verify-full"],
        ),
        Case {
            password: Some("wrong-password"),
            ..refused(
                "wrong password",
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={ca}"),
                &["refused the password of user \"tailbox\"", "28P01", "pg_password_file"],
            )
        },
        Case {
            user: PgTlsFiles::CERT_USER,
            password: None,
            ..ok(
                "client certificate",
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={ca}{cert}"),
            )
        },
        Case {
            user: PgTlsFiles::CERT_USER,
            password: None,
            ..refused(
                "certificate user without a certificate",
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={ca}"),
                &["client certificate", "sslcert and sslkey"],
            )
        },
    ]
}

#[tokio::test]
async fn both_connections_follow_sslmode_alike() -> Result<()> {
    let (pg, tls) = PgServer::start_tls()?;
    prepare(&pg)?;
    let mut failures = Vec::new();
    for case in cases(&tls) {
        if let Err(err) = check(&pg, &case).await {
            failures.push(format!("{}: {err:#}", case.name));
        }
    }
    ensure!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

async fn check(pg: &PgServer, case: &Case) -> Result<()> {
    let credentials = match case.password {
        Some(password) => format!("{}:{password}", case.user),
        None => case.user.to_owned(),
    };
    let url =
        format!("postgres://{credentials}@{}:{}/postgres?{}", case.host, pg.port(), case.query);
    let cfg = PgConnectionConfig::parse(&url).context("parsing the URL")?;

    let control = ControlClient::connect(&cfg).await;
    let slot = unique_name("tls");
    pg.psql(&format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"))?;
    let settings = StreamSettings {
        slot: slot.clone(),
        publication: "tls_pub".to_owned(),
        start_lsn: Lsn::ZERO,
    };
    let stream = PgWalStream::start(&cfg, &settings).await;

    let outcome = match (case.refused, control, stream) {
        (None, Ok(control), Ok(stream)) => {
            let control_ssl: bool = control
                .client()
                .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                .await?
                .get(0);
            let stream_ssl = pg.psql(&format!(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'tailbox/{slot}'"
            ))?;
            stream.stop(Duration::from_secs(5)).await?;
            ensure!(control_ssl, "control connection without TLS");
            ensure!(stream_ssl == "t", "replication connection ssl = {stream_ssl:?}");
            Ok(())
        }
        (Some(words), Err(control), Err(stream)) => {
            expect_problem("control connection", &control, words)?;
            expect_problem("replication connection", &stream, words)
        }
        (_, control, stream) => bail!(
            "control connection: {}; replication connection: {}",
            describe(&control.map(|_| ())),
            describe(&stream.map(|_| ()))
        ),
    };
    wait_inactive_and_drop(pg, &slot).await?;
    outcome
}

fn describe(result: &Result<(), ReplicationError>) -> String {
    match result {
        Ok(()) => "connected".to_owned(),
        Err(err) => format!("failed: {err}"),
    }
}

fn expect_problem(which: &str, err: &ReplicationError, words: &[&str]) -> Result<()> {
    let text = err.to_string();
    ensure!(matches!(err, ReplicationError::Startup(_)), "{which}: not a startup problem: {text}");
    ensure!(!err.is_transient(), "{which}: would be retried: {text}");
    ensure!(
        !text.contains('\n') && text.contains("; fix: "),
        "{which}: not one line with a fix: {text}"
    );
    ensure!(
        !text.contains(PASSWORD) && !text.contains("wrong-password"),
        "{which}: shows the password: {text}"
    );
    for word in words {
        ensure!(text.contains(word), "{which}: {text:?} lacks {word:?}");
    }
    Ok(())
}

async fn wait_inactive_and_drop(pg: &PgServer, slot: &str) -> Result<()> {
    for _ in 0..100 {
        let active = pg
            .psql(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"))?;
        if active == "f" {
            pg.psql(&format!("SELECT pg_drop_replication_slot('{slot}')"))?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("slot {slot} still active")
}

/// Data flows over the TLS replication connection: a row inserted now arrives.
#[tokio::test]
async fn the_tls_stream_carries_data() -> Result<()> {
    let (pg, tls) = PgServer::start_tls()?;
    prepare(&pg)?;
    let cfg = PgConnectionConfig::parse(&format!(
        "postgres://tailbox:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port(),
        tls.ca.display()
    ))?;
    stream_one_row(&pg, &cfg, "over TLS").await
}

/// And over the server's Unix socket (host = its directory; no TLS there, as libpq).
#[tokio::test]
async fn the_unix_socket_stream_carries_data() -> Result<()> {
    let (pg, _tls) = PgServer::start_tls()?;
    prepare(&pg)?;
    let dir = pg.dir().display().to_string().replace('/', "%2F");
    let cfg = PgConnectionConfig::parse(&format!(
        "postgres://tailbox@{dir}:{}/postgres?sslmode=verify-full",
        pg.port()
    ))?;
    ensure!(cfg.is_unix_socket(), "{cfg:?} is not a Unix socket");
    stream_one_row(&pg, &cfg, "over a Unix socket").await
}

/// Starts a stream on a new slot, inserts a row and waits for its commit.
async fn stream_one_row(pg: &PgServer, cfg: &PgConnectionConfig, payload: &str) -> Result<()> {
    let slot = unique_name("stream");
    pg.psql(&format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"))?;
    let settings = StreamSettings {
        slot: slot.clone(),
        publication: "tls_pub".to_owned(),
        start_lsn: Lsn::ZERO,
    };
    let mut stream = PgWalStream::start(cfg, &settings).await?;
    pg.psql(&format!("INSERT INTO outbox (payload) VALUES ('{payload}')"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut inserts = 0;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.recv())
            .await
            .context("no commit within 20 s")??;
        match event {
            Some(tailbox_replication::WalEvent::Data(bytes)) if bytes.first() == Some(&b'I') => {
                ensure!(
                    bytes.windows(payload.len()).any(|w| w == payload.as_bytes()),
                    "the insert does not carry {payload:?}"
                );
                inserts += 1;
            }
            Some(tailbox_replication::WalEvent::Data(bytes)) if bytes.first() == Some(&b'C') => {
                break;
            }
            Some(_) => {}
            None => bail!("stream ended"),
        }
    }
    ensure!(inserts == 1, "{inserts} inserts before the commit");
    stream.stop(Duration::from_secs(5)).await?;
    wait_inactive_and_drop(pg, &slot).await
}

/// `tailbox backfill`'s path: a slot with an exported snapshot, created over a TLS
/// replication connection, and the snapshot read over a TLS control connection.
#[tokio::test]
async fn backfill_snapshot_over_tls() -> Result<()> {
    let (pg, tls) = PgServer::start_tls()?;
    prepare(&pg)?;
    pg.psql("INSERT INTO outbox (payload) SELECT 'row ' || i FROM generate_series(1, 7) i")?;
    let cfg = PgConnectionConfig::parse(&format!(
        "postgres://tailbox:{PASSWORD}@localhost:{}/postgres?sslmode=verify-ca&sslrootcert={}",
        pg.port(),
        tls.ca.display()
    ))?;
    let slot = unique_name("snap");
    let snapshot = tailbox_replication::snapshot::ExportedSnapshot::create(&cfg, &slot).await?;
    ensure!(snapshot.consistent_point > Lsn::ZERO, "no consistent point");
    pg.psql("INSERT INTO outbox (payload) VALUES ('after the snapshot')")?;
    let control = ControlClient::connect(&cfg).await?;
    control
        .client()
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.snapshot_name
        ))
        .await?;
    let seen: i64 = control.client().query_one("SELECT count(*) FROM outbox", &[]).await?.get(0);
    ensure!(seen == 7, "the snapshot sees {seen} rows, not the 7 before it");
    let walsender_ssl = pg.psql(&format!(
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'tailbox-backfill/{slot}'"
    ))?;
    ensure!(walsender_ssl == "t", "exporting session ssl = {walsender_ssl:?}");
    Ok(())
}

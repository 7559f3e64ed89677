//! The replication connection's logins besides SCRAM (tested with TLS in `tls.rs`):
//! MD5 and cleartext password, against a real PostgreSQL 15 whose `pg_hba.conf` asks
//! for them, and a wrong password refused with the fix.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tailbox_pg_support::{PgServer, unique_name};
use tailbox_replication::{
    Lsn, PgConnectionConfig, PgWalStream, ReplicationError, StreamSettings, WalSource,
};

/// Puts `lines` in front of the cluster's `pg_hba.conf` (first match wins) and reloads.
fn require_methods(pg: &PgServer, lines: &str) -> Result<()> {
    let hba = pg.dir().join("data").join("pg_hba.conf");
    let rest =
        std::fs::read_to_string(&hba).with_context(|| format!("reading {}", hba.display()))?;
    std::fs::write(&hba, format!("{lines}\n{rest}"))?;
    pg.psql("SELECT pg_reload_conf()")?;
    // The postmaster reloads asynchronously.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// Creates a slot, then starts streaming it as `user`.
async fn start_stream(
    pg: &PgServer,
    user: &str,
    password: &str,
) -> Result<Result<PgWalStream, ReplicationError>> {
    let cfg = PgConnectionConfig::parse(&format!(
        "postgres://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    ))?;
    let slot = unique_name("auth");
    pg.psql(&format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"))?;
    let settings =
        StreamSettings { slot, publication: "auth_pub".to_owned(), start_lsn: Lsn::ZERO };
    Ok(PgWalStream::start(&cfg, &settings).await)
}

#[tokio::test]
async fn md5_and_cleartext_password_logins_stream() -> Result<()> {
    let pg = PgServer::start()?;
    pg.psql(
        "CREATE TABLE outbox (id bigserial PRIMARY KEY, payload text);
         CREATE PUBLICATION auth_pub FOR TABLE outbox;
         SET password_encryption = 'md5';
         CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5-secret';
         RESET password_encryption;
         CREATE ROLE plain_user LOGIN REPLICATION PASSWORD 'plain-secret';",
    )?;
    let stored = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'")?;
    ensure!(stored.starts_with("md5"), "md5_user's password stored as {stored:?}");
    require_methods(
        &pg,
        "host all md5_user 127.0.0.1/32 md5\nhost all plain_user 127.0.0.1/32 password",
    )?;

    for (user, password) in [("md5_user", "md5-secret"), ("plain_user", "plain-secret")] {
        let stream = start_stream(&pg, user, password).await?.with_context(|| user.to_owned())?;
        stream.stop(Duration::from_secs(5)).await?;
    }

    // A wrong password is refused, which also proves each method was asked for (the
    // cluster trusts everything else).
    for user in ["md5_user", "plain_user"] {
        let text = match start_stream(&pg, user, "wrong-password").await? {
            Err(err @ ReplicationError::Startup(_)) => err.to_string(),
            Err(other) => bail!("{user}, wrong password: not a startup problem: {other}"),
            Ok(_) => bail!("{user}: a wrong password was accepted"),
        };
        ensure!(text.contains("28P01") && text.contains("fix:"), "{user}: {text}");
        ensure!(!text.contains("wrong-password"), "{user}: the password is shown: {text}");
    }
    Ok(())
}

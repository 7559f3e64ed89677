//! A throwaway PostgreSQL cluster per test (`scripts/pg.sh`), of the major in
//! `TAILBOX_PG_MAJOR` (Debian's 15 by default) or one the test names.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::paths::scratch_dir;
use crate::script::run_script;

/// The major `scripts/pg.sh` runs when nothing else is asked for: Debian's.
pub const DEFAULT_PG_MAJOR: u32 = 15;
/// The other supported majors, whose servers `scripts/pg.sh fetch` caches; the core
/// end-to-end set runs on each of them (tests/pg_majors.rs).
pub const OTHER_PG_MAJORS: [u32; 5] = [13, 14, 16, 17, 18];

/// The major of `TAILBOX_PG_MAJOR`, else [`DEFAULT_PG_MAJOR`].
pub fn pg_major_from_env() -> Result<u32> {
    match std::env::var("TAILBOX_PG_MAJOR") {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("TAILBOX_PG_MAJOR={text:?} is not a number (13..18)")),
        Err(_) => Ok(DEFAULT_PG_MAJOR),
    }
}

/// A PostgreSQL cluster of its own: `wal_level = logical`, 20 replication
/// slots and WAL senders, trust authentication, listening on 127.0.0.1 only.
/// Its files live in a fresh directory under the system temp dir. Dropping it
/// stops the server and deletes the directory; if the test process dies
/// instead, a watchdog started with it does the same.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    url: String,
    major: u32,
}

/// The files of a server started with [`PgServer::start_tls`] (`scripts/pg.sh start-tls`),
/// or made on their own by [`PgTlsFiles::generate`] for another test server.
#[derive(Debug, Clone)]
pub struct PgTlsFiles {
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// The server's certificate, for IP 127.0.0.1 only, signed by `ca`.
    pub server_cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub server_key: PathBuf,
    /// A CA that signed nothing of this server's.
    pub other_ca: PathBuf,
    /// A client certificate (CN [`PgTlsFiles::CERT_USER`]) signed by `ca`.
    pub client_cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub client_key: PathBuf,
}

impl PgTlsFiles {
    /// The role that `pg_hba.conf` authenticates by client certificate (the test creates it).
    pub const CERT_USER: &'static str = "tailbox_cert";

    /// The same certificates as [`PgServer::start_tls`]'s, made in `dir` without a server
    /// (`scripts/pg.sh certs DIR`): for other servers a test runs with TLS.
    pub fn generate(dir: &Path) -> Result<PgTlsFiles> {
        run_script("pg.sh", &["certs", &dir.to_string_lossy()], &[])
            .context("making test certificates")?;
        Ok(Self::in_dir(dir))
    }

    fn in_dir(tls: &Path) -> PgTlsFiles {
        PgTlsFiles {
            ca: tls.join("ca.crt"),
            server_cert: tls.join("server.crt"),
            server_key: tls.join("server.key"),
            other_ca: tls.join("other-ca.crt"),
            client_cert: tls.join("client.crt"),
            client_key: tls.join("client.key"),
        }
    }
}

impl PgServer {
    /// initdb + start (about a second) of the major in `TAILBOX_PG_MAJOR` (default 15).
    /// Errors carry `scripts/pg.sh`'s stderr.
    pub fn start() -> Result<PgServer> {
        Self::start_with("start", pg_major_from_env()?)
    }

    /// [`PgServer::start`] of PostgreSQL `major` (13 to 18). A major not cached yet is
    /// fetched first (`scripts/pg.sh fetch`); if that fails, so does this.
    pub fn start_major(major: u32) -> Result<PgServer> {
        Self::start_with("start", major)
    }

    /// Like [`PgServer::start`], but TLS and SCRAM only (`scripts/pg.sh start-tls`): its
    /// certificate names the IP address 127.0.0.1 and not `localhost`; every role but
    /// `postgres` (trusted, for the tests' own connections) must use TLS, with a SCRAM
    /// password or, for [`PgTlsFiles::CERT_USER`], a client certificate.
    pub fn start_tls() -> Result<(PgServer, PgTlsFiles)> {
        let server = Self::start_with("start-tls", pg_major_from_env()?)?;
        let files = PgTlsFiles::in_dir(&server.dir.join("tls"));
        Ok((server, files))
    }

    /// A cold copy of this cluster, started on a port of its own: the same system
    /// identifier, slots and WAL, as a restored file-system backup has (`scripts/pg.sh
    /// copy`), and the same major. This server is stopped for the copy and started again.
    /// With `standby`, the copy stays in recovery until [`PgServer::promote`].
    pub fn cold_copy(&self, standby: bool) -> Result<PgServer> {
        let source = self.dir.to_string_lossy().into_owned();
        let mut args = vec!["copy", source.as_str()];
        if standby {
            args.push("--standby");
        }
        Self::start_in_new_dir(&args, self.major).context("copying PostgreSQL")
    }

    /// A hot standby of this server that streams from it (`scripts/pg.sh standby-of`):
    /// a cold copy without slots, started in recovery with `primary_conninfo`,
    /// `primary_slot_name = physical_slot` (created here), `hot_standby_feedback = on`
    /// and, on 17+, `sync_replication_slots = on`. Returns once it streams. This server
    /// is stopped for the copy and started again.
    pub fn standby(&self, physical_slot: &str) -> Result<PgServer> {
        let source = self.dir.to_string_lossy().into_owned();
        Self::start_in_new_dir(&["standby-of", source.as_str(), physical_slot], self.major)
            .context("starting a standby")
    }

    /// Ends recovery (`pg_ctl promote`): the server continues on a new timeline.
    pub fn promote(&self) -> Result<()> {
        run_script("pg.sh", &["promote", &self.dir.to_string_lossy()], &[])
            .context("promoting PostgreSQL")?;
        Ok(())
    }

    fn start_with(command: &str, major: u32) -> Result<PgServer> {
        Self::start_in_new_dir(&[command], major)
            .with_context(|| format!("starting PostgreSQL {major}"))
    }

    /// Runs `scripts/pg.sh ARGS… DIR` with a fresh DIR, which then holds a server of
    /// `major`.
    fn start_in_new_dir(args: &[&str], major: u32) -> Result<PgServer> {
        let dir = scratch_dir("pg");
        let dir_s = dir.to_string_lossy().into_owned();
        let mut args = args.to_vec();
        // `copy SRC DIR [--standby]` and `standby-of SRC DIR [SLOT]` take DIR second; the
        // others take it last.
        let at = if matches!(args.first(), Some(&"copy" | &"standby-of")) { 2 } else { args.len() };
        args.insert(at, &dir_s);
        let url = match run_script(
            "pg.sh",
            &args,
            &[
                ("TAILBOX_PG_PARENT_PID", std::process::id().to_string()),
                ("TAILBOX_PG_MAJOR", major.to_string()),
            ],
        ) {
            Ok(url) => url,
            Err(e) => {
                // best effort: don't leave a half-made cluster behind
                let _ = run_script("pg.sh", &["stop", &dir_s], &[]);
                return Err(e);
            }
        };
        let port = url
            .strip_prefix("postgres://postgres@127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse::<u16>().ok())
            .with_context(|| format!("scripts/pg.sh printed an unexpected URL: {url:?}"))?;
        let mut server = PgServer { dir, port, url, major };
        // What initdb wrote, so a TAILBOX_PG_BIN that overrides the major cannot mislead.
        let version = std::fs::read_to_string(server.dir.join("data/PG_VERSION"))
            .context("reading the cluster's PG_VERSION")?;
        server.major = version.trim().parse().context("PG_VERSION is not a number")?;
        Ok(server)
    }

    /// The server's major version (from its `PG_VERSION`), e.g. 13 or 18.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The URL of another database on this server.
    pub fn url_for_db(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `data/`, `postgres.log` and the unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file (warnings and errors only).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A connected client; its connection task is spawned on the current tokio runtime.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("tailbox-e2e: postgres connection ended with an error: {e}");
            }
        });
        Ok(client)
    }

    /// `pg_ctl restart -m MODE` (`fast`, `immediate` or `smart`): same port and data.
    /// Existing connections are cut.
    pub fn restart(&self, mode: &str) -> Result<()> {
        let dir = self.dir.to_string_lossy();
        run_script("pg.sh", &["restart", &dir, mode], &[])
            .with_context(|| format!("restarting PostgreSQL (-m {mode})"))?;
        Ok(())
    }

    /// Runs SQL through `psql -X -A -t -q -v ON_ERROR_STOP=1` (statements one by
    /// one, as in a script) and returns its stdout without the trailing newline:
    /// rows one per line, columns separated by `|`.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let mut child = Command::new("/usr/bin/psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&self.url)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run /usr/bin/psql (run scripts/install-deps.sh)")?;
        {
            let mut stdin = child.stdin.take().context("psql has no stdin")?;
            stdin.write_all(sql.as_bytes()).context("writing to psql")?;
        }
        let out = child.wait_with_output().context("waiting for psql")?;
        if !out.status.success() {
            bail!(
                "psql failed ({}) on:\n{sql}\n--- stderr ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let mut stdout = String::from_utf8(out.stdout).context("psql printed non-UTF-8")?;
        while stdout.ends_with('\n') {
            stdout.pop();
        }
        Ok(stdout)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy();
        if let Err(e) = run_script("pg.sh", &["stop", &dir], &[]) {
            eprintln!("tailbox-e2e: stopping PostgreSQL in {dir}: {e:#}");
        }
    }
}

/// Runs scripts of `sql/` against `pg` with psql, as users run them, each with its psql
/// variables (`-v name=value`).
pub fn apply_sql_files(pg: &PgServer, files: &[(&str, Vec<String>)]) -> Result<()> {
    let sql = crate::paths::workspace_root().join("sql");
    for (file, vars) in files {
        let mut cmd = Command::new("psql");
        cmd.arg(pg.url()).args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        for v in vars {
            cmd.arg("-v").arg(v);
        }
        let out = cmd.arg("-f").arg(sql.join(file)).output().context("running psql")?;
        if !out.status.success() {
            bail!("{file} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

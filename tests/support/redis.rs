//! A throwaway `redis-server` (Debian's package) from `scripts/redis.sh`: 127.0.0.1, a
//! port and a data directory of its own, append-only file on with `appendfsync always`
//! (an acknowledged entry survives a kill). Stopped and deleted on drop; a watchdog
//! does the same if the test process dies.

use std::path::PathBuf;

use anyhow::{Context, Result};

use tailbox_pg_support::{run_script, scratch_dir};

/// A running Redis server of the test's own.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    url: String,
    /// What `scripts/redis.sh` was given (again on a restart).
    env: Vec<(&'static str, String)>,
    /// `start` or `start-tls`.
    command: &'static str,
}

fn script_env() -> Vec<(&'static str, String)> {
    vec![("TAILBOX_REDIS_PARENT_PID", std::process::id().to_string())]
}

impl RedisServer {
    /// Starts a server on a free port (`scripts/redis.sh start`).
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`], the default user needing `password`.
    pub fn start_with_password(password: &str) -> Result<Self> {
        Self::start_with(&[("TAILBOX_REDIS_PASSWORD", password.to_owned())])
    }

    /// A server that speaks TLS only (`scripts/redis.sh start-tls`), its certificate for
    /// IP 127.0.0.1 signed by the returned CA (PEM file); the second file is a CA that
    /// signed nothing of this server's.
    pub fn start_tls() -> Result<(Self, PathBuf, PathBuf)> {
        let server = Self::start_in("start-tls", &[])?;
        let tls = server.dir.join("tls");
        Ok((server, tls.join("ca.crt"), tls.join("other-ca.crt")))
    }

    fn start_with(env: &[(&'static str, String)]) -> Result<Self> {
        Self::start_in("start", env)
    }

    fn start_in(command: &'static str, env: &[(&'static str, String)]) -> Result<Self> {
        let dir = scratch_dir("redis");
        let mut env = env.to_vec();
        env.extend(script_env());
        let url = run_script("redis.sh", &[command, &dir.to_string_lossy()], &env)
            .context("starting Redis")?;
        Ok(Self { dir, url, env, command })
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The server's process id (from its pid file), while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("redis.pid")).ok()?.trim().parse().ok()
    }

    /// SIGKILL, as a crash would (with `appendfsync always`, nothing acknowledged is lost).
    pub fn kill(&mut self) -> Result<()> {
        run_script("redis.sh", &["kill", &self.dir.to_string_lossy()], &[])
            .context("killing Redis")?;
        Ok(())
    }

    /// Starts the server again on the same port with the same data.
    pub fn start_again(&mut self) -> Result<()> {
        self.kill()?;
        run_script("redis.sh", &[self.command, &self.dir.to_string_lossy()], &self.env)
            .context("starting Redis again")?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy();
        if let Err(e) = run_script("redis.sh", &["stop", &dir], &[]) {
            eprintln!("tailbox-e2e: stopping Redis in {dir}: {e:#}");
        }
    }
}

//! A tailbox process under test.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tailbox_e2e::{PgServer, scratch_dir, tailbox_bin};

use super::Names;

/// A running `tailbox run`.
pub struct Tailbox {
    child: Child,
    pub log: PathBuf,
}

/// The arguments every test passes. tailbox connects as the least-privilege role
/// that sql/04_role.sql creates (LOGIN REPLICATION, SELECT on the outbox), so every
/// test also proves that role is enough.
pub fn base_args(pg: &PgServer, kafka: &str, names: &Names) -> Vec<String> {
    base_args_at(&role_url(pg), kafka, names)
}

/// [`base_args`] for the server at `pg_url` (e.g. through a proxy).
pub fn base_args_at(pg_url: &str, kafka: &str, names: &Names) -> Vec<String> {
    [
        "run",
        "--pg-url",
        pg_url,
        "--kafka-brokers",
        kafka,
        "--slot",
        &names.slot,
        "--publication",
        &names.publication,
        "--topic-template",
        &names.topic_template(),
        "--checkpoint-topic",
        &names.checkpoint_topic,
        "--status-interval-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The URL of `pg` as the role of sql/04_role.sql.
pub fn role_url(pg: &PgServer) -> String {
    format!("postgres://tailbox:tailbox-test@127.0.0.1:{}/postgres", pg.port())
}

/// `tailbox status` for this test's slot, publication and checkpoint store, as the role
/// of sql/04_role.sql, with the sink's `destination` arguments; stdout and stderr.
pub fn status_text(pg: &PgServer, names: &Names, destination: &[&str]) -> Result<String> {
    let url = role_url(pg);
    let mut args = vec![
        "status",
        "--pg-url",
        &url,
        "--slot",
        &names.slot,
        "--publication",
        &names.publication,
        "--checkpoint-topic",
        &names.checkpoint_topic,
    ];
    args.extend_from_slice(destination);
    Ok(output_text(&run_command(&args, &[])?))
}

impl Tailbox {
    pub fn start(args: &[String]) -> Result<Self> {
        Self::start_with_env(args, &[])
    }

    /// [`Tailbox::start`] with extra environment variables.
    pub fn start_with_env(args: &[String], envs: &[(&str, &str)]) -> Result<Self> {
        let log = scratch_dir("tailbox-log").join("tailbox.log");
        std::fs::create_dir_all(log.parent().context("log dir")?)?;
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(tailbox_bin()?);
        cmd.args(args)
            .env("TAILBOX_LOG", "info,tailbox_pipeline=debug")
            .stdout(Stdio::null())
            .stderr(file);
        for (key, value) in envs {
            cmd.env(key, value);
        }
        let child = cmd.spawn().context("spawning tailbox")?;
        Ok(Self { child, log })
    }

    /// SIGKILL: no chance to drain or confirm.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait for the exit (bounded).
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        self.wait(timeout)
    }

    /// SIGTERM; the exit must be clean (0) within 30 s. Returns the whole log.
    pub fn stop_clean(self) -> Result<String> {
        let log = self.log.clone();
        let exit = self.terminate(Duration::from_secs(30))?;
        let text = std::fs::read_to_string(&log)?;
        if !exit.success() {
            bail!("SIGTERM should exit 0, got {exit}; log:\n{text}");
        }
        Ok(text)
    }

    /// Waits for the process to exit by itself (bounded).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("tailbox did not exit within {timeout:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a short tailbox command (not `run`: `config check`, `status`, …) to completion
/// with `envs` added to the environment.
pub fn run_command(args: &[&str], envs: &[(&str, &str)]) -> Result<std::process::Output> {
    let mut cmd = Command::new(tailbox_bin()?);
    cmd.args(args).envs(envs.iter().copied());
    cmd.output().context("running tailbox")
}

/// A command's stdout and stderr, one after the other.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs tailbox to completion (for startup failures) and returns (exit code, stderr).
pub fn run_to_exit(args: &[String], timeout: Duration) -> Result<(Option<i32>, String)> {
    let mut tailbox = Tailbox::start(args)?;
    let status = tailbox.wait(timeout)?;
    Ok((status.code(), tailbox.log_text()))
}

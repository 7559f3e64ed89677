//! Running the shell scripts in `scripts/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::paths::workspace_root;

/// Path of `scripts/NAME`.
fn script_path(name: &str) -> PathBuf {
    workspace_root().join("scripts").join(name)
}

/// Runs `bash scripts/NAME ARGS...` with extra environment `envs`, and returns
/// the last non-empty line of its stdout. A non-zero exit is an error that
/// carries the script's stderr (where the scripts explain themselves).
pub fn run_script(name: &str, args: &[&str], envs: &[(&str, String)]) -> Result<String> {
    let path = script_path(name);
    let mut cmd = Command::new("bash");
    cmd.arg(&path)
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().with_context(|| format!("cannot run bash {}", path.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "`scripts/{name} {}` failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
            args.join(" "),
            out.status,
            stderr.trim_end(),
            stdout.trim_end()
        );
    }
    match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => Ok(line.trim().to_owned()),
        None => Ok(String::new()),
    }
}

//! The workspace, the `tailbox` binary, scratch directories and unique names.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// The workspace root (two levels above this package, `tests/pg-support`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_path_buf()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A short value that differs between runs (the pid alone can repeat across
/// runs against a long-lived external broker).
fn run_salt() -> u32 {
    static SALT: OnceLock<u32> = OnceLock::new();
    *SALT.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // fold the clock into 20 bits
        let mut x = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x & 0xf_ffff) as u32
    })
}

/// A name unique per process and call, made of `[a-z0-9_]` only and at most 63
/// bytes long, so it is a valid replication slot, publication, table, topic and
/// consumer-group name: `{prefix}_{pid}{salt}_{n}`. The prefix is lowercased,
/// other characters become `_`, and it is cut to 40 bytes.
pub fn unique_name(prefix: &str) -> String {
    let mut p: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' }
        })
        .take(40)
        .collect();
    if p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()) {
        p.insert(0, 't');
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{p}_{}{:05x}_{n}", std::process::id(), run_salt())
}

/// A fresh path (not created) for a server's files under the system temp dir:
/// `$TMPDIR/tailbox-{kind}-{pid}{salt}-{n}`. Short on purpose (PostgreSQL puts
/// its unix socket there).
pub fn scratch_dir(kind: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "tailbox-{kind}-{}{:05x}-{n}",
        std::process::id(),
        run_salt()
    ))
}

/// The `tailbox` binary: `$TAILBOX_BIN` if set, else built once per process with
/// `cargo build -p tailbox-cli --bin tailbox` (`--release` if
/// `$TAILBOX_TEST_RELEASE` is set) and returned from the target directory.
pub fn tailbox_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_tailbox().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_tailbox() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TAILBOX_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("TAILBOX_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = std::env::var_os("TAILBOX_TEST_RELEASE").is_some();
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "-p",
        "tailbox-cli",
        "--bin",
        "tailbox",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        bail!(
            "`cargo build -p tailbox-cli --bin tailbox{}` failed ({}):\n{}",
            if release { " --release" } else { "" },
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    // The path cargo reports, so a configured target dir is honoured.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "tailbox"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join(if release { "release" } else { "debug" }).join("tailbox");
    if bin.is_file() {
        Ok(bin)
    } else {
        bail!("cargo built tailbox but {} does not exist", bin.display())
    }
}

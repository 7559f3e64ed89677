//! Log output: `tracing` events with fields, as text or JSON, on stderr, filtered by
//! `TAILBOX_LOG` (or `RUST_LOG`), default `info`.
//!
//! On a terminal `tailbox run` also keeps a live progress line at the bottom of stderr
//! ([`show_progress`]); log lines are written above it, so the two never mix.

use std::{
    io::{IsTerminal, Write},
    sync::Mutex,
};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The progress line currently shown at the bottom of the terminal, if any.
static PROGRESS: Mutex<Option<String>> = Mutex::new(None);

/// Erases the current terminal line.
const CLEAR_LINE: &[u8] = b"\r\x1b[2K";

/// A log line being written: buffered, then written whole on drop, above the
/// progress line if one is shown.
#[derive(Default)]
pub struct StderrLine {
    buf: Vec<u8>,
}

impl Write for StderrLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let progress = PROGRESS.lock().ok();
        let shown = progress.as_ref().and_then(|p| p.as_deref());
        let mut err = std::io::stderr().lock();
        // Best effort: nowhere to report a failing stderr.
        if shown.is_some() {
            let _ = err.write_all(CLEAR_LINE);
        }
        let _ = err.write_all(&self.buf);
        if let Some(line) = shown {
            let _ = err.write_all(line.as_bytes());
        }
        let _ = err.flush();
    }
}

/// Shows (or replaces) the live progress line at the bottom of stderr.
pub fn show_progress(line: &str) {
    if let Ok(mut progress) = PROGRESS.lock() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(CLEAR_LINE);
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        *progress = Some(line.to_owned());
    }
}

/// Removes the progress line (before exit or an error message).
pub fn clear_progress() {
    if let Ok(mut progress) = PROGRESS.lock()
        && progress.take().is_some()
    {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(CLEAR_LINE);
        let _ = err.flush();
    }
}

/// Whether stderr is a terminal (live progress line, colours).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Installs the global subscriber (logs go to stderr).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TAILBOX_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrLine::default)
        .with_ansi(stderr_is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

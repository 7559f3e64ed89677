//! What the Redis sink needs to know, and reading it from a URL.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// Settings of the Redis sink.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    /// Where and as whom (parsed from `redis://[user:password@]host:port[/db]` or
    /// `rediss://…`; redis-rs keeps the password out of `Debug`).
    pub connection: ConnectionInfo,
    /// PEM of the CA that signs the server's certificate (`rediss://`); `None`: the
    /// system's trust store.
    pub ca_pem: Option<Vec<u8>>,
    /// The hash holding the checkpoint records (one field per owner).
    pub checkpoint_key: String,
    /// Records queued and not yet acknowledged before `send` answers `Blocked`.
    pub max_buffered: u64,
    /// What an acknowledgement waits for besides Redis's reply.
    pub durability: Durability,
    /// Trimming of the streams, off by default.
    pub trim: Option<Trim>,
}

/// What "acknowledged" means. Redis replies once the command ran in memory; whether
/// the entry survives a Redis crash depends on `appendonly`/`appendfsync` and replicas
/// (see docs/guarantees.md), and these make the acknowledgement wait for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Redis's reply (the server's persistence settings decide what survives).
    Reply,
    /// `WAIT replicas timeout` after each batch: that many replicas have it.
    Replicas {
        /// Replicas that must have the batch.
        replicas: u32,
        /// How long to wait for them.
        timeout: Duration,
    },
    /// `WAITAOF 1 replicas timeout` (Redis 7.2+) after each batch: fsynced to the local
    /// append-only file (and to that many replicas').
    Aof {
        /// Replicas whose AOF must have it too.
        replicas: u32,
        /// How long to wait.
        timeout: Duration,
    },
}

/// How streams are trimmed as entries are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// `MAXLEN ~ n`: keep about the last `n` entries.
    MaxLen(u64),
    /// `MINID ~ <lsn>-0` with the commit LSN this far (in bytes of WAL) behind the entry:
    /// keep about the entries of the last `n` bytes of WAL.
    MinIdBehind(u64),
}

/// Parses a `redis://` or `rediss://` URL; `password` (from a file) replaces one in the
/// URL. The error says what is wrong, never the password.
pub fn parse_url(url: &str, password: Option<&str>) -> Result<ConnectionInfo, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(
            "expected redis://[user:password@]host:port[/db], rediss://… (TLS) or unix://path"
                .into(),
        );
    }
    let info =
        url.into_connection_info().map_err(|e| format!("not a Redis URL ({})", e.category()))?;
    Ok(match password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

/// The connection as a URL with the password replaced by `redacted`.
pub fn redacted_url(info: &ConnectionInfo, redacted: &str) -> String {
    let settings = info.redis_settings();
    let user = match (settings.username(), settings.password()) {
        (Some(user), Some(_)) => format!("{user}:{redacted}@"),
        (None, Some(_)) => format!(":{redacted}@"),
        (Some(user), None) => format!("{user}@"),
        (None, None) => String::new(),
    };
    let db = if settings.db() == 0 { String::new() } else { format!("/{}", settings.db()) };
    match info.addr() {
        ConnectionAddr::TcpTls { .. } => format!("rediss://{user}{}{db}", info.addr()),
        ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
        _ => format!("redis://{user}{}{db}", info.addr()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_shown_without_the_password() {
        let info = parse_url("redis://app:hunter2@cache:6380/2", None).expect("valid");
        assert_eq!(redacted_url(&info, "REDACTED"), "redis://app:REDACTED@cache:6380/2");
        assert!(!format!("{info:?}").contains("hunter2"), "no password in Debug");
        let info = parse_url("rediss://cache:6379", Some("from-file")).expect("valid");
        assert_eq!(info.redis_settings().password(), Some("from-file"));
        assert_eq!(redacted_url(&info, "REDACTED"), "rediss://:REDACTED@cache:6379");
        assert!(parse_url("http://cache", None).is_err());
        assert!(parse_url("redis://cache:notaport", None).is_err());
    }
}

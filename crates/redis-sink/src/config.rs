//! What the Redis sink needs to know.

use std::time::Duration;

/// Settings of the Redis sink.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS).
    pub url: String,
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

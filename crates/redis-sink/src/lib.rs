//! The Redis Streams sink of tailbox: each outbox event becomes one stream entry, in
//! commit order, and a replay after a crash is refused by Redis itself.
//!
//! Place in the data path:
//!
//! ```text
//! outbox mapping ──record──▶ [THIS CRATE: RedisSink] ──XADD (pipelined)──▶ Redis
//!                                   │ acks(seq)
//!                                   ▼
//!                         pipeline checkpoint → slot confirm
//! ```
//!
//! # No duplicates, by design
//! An entry's ID is not Redis's clock but the event's place in the WAL:
//! `<commit LSN>-<position>`, the position counting the records of that transaction
//! in the order tailbox sends them ([`ids::EntryIds`]). IDs therefore grow with commit
//! order in every stream. After a crash PostgreSQL resends from the slot's confirmed
//! position, tailbox sends the same records with the same IDs, and Redis refuses each
//! one that is already there ("equal or smaller than the target stream top item"): the
//! sink counts it as delivered. Consumers never see an event twice, in any mode.
//!
//! # Order and acknowledgements
//! Records are queued by the pipeline (never waiting) and written by one task over a
//! connection of its own, as `MULTI … EXEC` transactions of up to [`writer::BATCH`]
//! commands: Redis executes them in order. The next transaction's commands go out while
//! one runs, its `EXEC` only after the previous one succeeded, so a batch that failed as
//! a whole is never followed by a later one ([`writer`]). Each command's reply becomes
//! the [`tailbox_sink::Ack`] of its sequence number. A lost connection fails every
//! command in flight (transient: the session replays from the slot, and the IDs make the
//! replay harmless).
//!
//! # Layout
//! - [`claims`]: which tailbox writes which stream (one source per stream).
//! - [`config`]: [`RedisSinkConfig`], durability ([`Durability`]) and trimming.
//! - [`ids`]: entry IDs from commit LSNs.
//! - [`entry`]: a record as an `XADD` command, and back (for dead letters).
//! - [`writer`]: the task that owns the writing connection.
//! - [`sink`]: [`RedisSink`], the [`tailbox_sink::Sink`] implementation.

pub mod claims;
pub mod config;
pub mod entry;
pub mod ids;
pub mod sink;
pub mod writer;

pub use config::{Durability, RedisSinkConfig, Trim, parse_url, redacted_url};
pub use sink::RedisSink;

/// The destination's name in error messages.
pub(crate) const REDIS: &str = "Redis";

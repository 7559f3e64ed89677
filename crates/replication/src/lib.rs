//! The replication side of tailbox: everything that talks to PostgreSQL.
//!
//! Place in the data path:
//!
//! ```text
//! PostgreSQL walsender ──CopyBoth──▶ [THIS CRATE: stream] ──WalEvent──▶ pgoutput decoder
//!                                          ▲                               │
//!                                          └──── confirm(lsn) ◀── pipeline checkpoint
//! ```
//!
//! # Layout
//! - [`source`]: the [`WalSource`] trait the pipeline reads from, and its [`WalEvent`]s.
//! - [`stream`]: [`PgWalStream`], the implementation (a logical slot, plugin
//!   `pgoutput`, `proto_version '1'`, `messages 'true'` from PostgreSQL 14 on), read by the
//!   pipeline's own task.
//! - [`server_version`]: what the server offers by its major (13–18), in one place.
//! - `wire` (private): our replication-mode connection on `postgres-protocol`: TCP, Unix
//!   socket or TLS, login (SCRAM-SHA-256, MD5, password), simple queries, CopyBoth
//!   framing into one reusable read buffer.
//! - [`identity`]: [`ServerIdentity`], which cluster, database and timeline (with its
//!   history) the stream comes from (`IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`).
//! - [`connection`]: parsing a `postgres://` URL into what both clients need.
//! - [`tls`]: TLS per libpq's `sslmode`, one rustls configuration for both connections.
//! - [`control`]: the control plane on `tokio-postgres`: startup checks (wal_level, slot,
//!   publication, table, columns) and the slot's position, with a fix for each problem.
//! - [`snapshot`]: creating a slot with an exported snapshot, for backfills.
//! - [`error`]: [`ReplicationError`], split into transient (reconnect) and definite (stop).

pub mod connection;
pub mod control;
pub mod error;
pub mod identity;
pub mod server_version;
pub mod snapshot;
pub mod source;
pub mod stream;
pub mod tls;
mod wire;

pub use connection::PgConnectionConfig;
pub use control::{ControlClient, OutboxTableSpec, RequiredColumn, SlotPosition};
pub use error::{ReplicationError, StartupProblem};
pub use identity::{ServerIdentity, TimelineHistory, TimelineSwitch};
pub use source::{WalEvent, WalSource};
pub use stream::{PgWalStream, StreamSettings};
pub use tls::{SslMode, TlsOptions};
pub use wire::ServerError;

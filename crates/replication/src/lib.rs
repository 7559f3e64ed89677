//! The replication side of tailbox: the logical replication stream from PostgreSQL, and
//! the connections and checks it needs.
//!
//! Place in the data path:
//!
//! ```text
//! PostgreSQL walsender ──CopyBoth──▶ [THIS CRATE: stream] ──WalEvent──▶ pgoutput decoder
//!                                          ▲                               │
//!                                          └──── confirm(lsn) ◀── pipeline checkpoint
//! ```
//!
//! This crate holds what `tailbox run` needs to stream: the stream itself, and the checks
//! that must pass before it starts (and that a restart repeats). What only the admin
//! commands do — `status` reports, `setup`/`teardown` and their SQL scripts, `cleanup` —
//! lives next to those commands in `tailbox-cli`.
//!
//! # Layout
//! - [`source`]: the [`WalSource`] trait the pipeline reads from, and its [`WalEvent`]s.
//! - [`stream`]: [`PgWalStream`], the implementation (a logical slot, plugin
//!   `pgoutput`, `proto_version '1'`, `messages 'true'` from PostgreSQL 14 on), read by the
//!   pipeline's own task.
//! - [`server_version`]: what the server offers by its major (13–18), in one place.
//! - [`identity`]: [`ServerIdentity`], which cluster, database and timeline (with its
//!   history) the stream comes from (`IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`).
//! - [`control`]: the control plane on `tokio-postgres`: startup checks (wal_level, slot,
//!   publication, table, columns) and the slot's position, with a fix for each problem.
//! - [`snapshot`]: creating a slot with an exported snapshot, for backfills.
//! - [`error`]: [`ReplicationError`], split into transient (reconnect) and definite (stop).
//!
//! # Connections, bottom up
//! Each module below uses only those above it, never the other way round:
//!
//! ```text
//! error      ReplicationError
//! tls        sslmode → one rustls ClientConfig and verifier (no URLs, no sockets)
//! connection a postgres:// URL parsed once: PgConnectionConfig (holds TlsOptions)
//! diagnosis  failures only a person can fix, worded once for both connections
//! transport  (private) Unix socket / TCP / TLS byte stream of the replication connection
//! wire       (private) the protocol on it: login, simple queries, CopyBoth framing
//! identity, stream, snapshot   replication commands over wire
//! control    tokio-postgres over connection + tls + diagnosis
//! ```
//!
//! So TLS settings can be tested without a socket, and the URL without TLS handshakes;
//! the control connection and the replication connection share `tls` and `diagnosis`,
//! which is what makes "the same `sslmode` rules and the same error wording on both"
//! true by construction.

pub mod connection;
pub mod control;
mod diagnosis;
pub mod error;
pub mod identity;
pub mod server_version;
pub mod snapshot;
pub mod source;
pub mod stream;
pub mod tls;
mod transport;
mod wire;

pub use connection::PgConnectionConfig;
pub use control::{ControlClient, OutboxTableSpec, SlotPosition};
pub use error::{ReplicationError, StartupProblem};
pub use identity::{ServerIdentity, TimelineHistory, TimelineSwitch};
pub use source::{WalEvent, WalSource};
pub use stream::{PgWalStream, StreamSettings};
/// WAL positions, as every LSN here is typed.
pub use tailbox_pgoutput::Lsn;
pub use tls::{SslMode, TlsOptions};
pub use wire::ServerError;

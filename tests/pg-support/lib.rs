//! Test support that needs PostgreSQL and nothing else: no Kafka client, so
//! `tailbox-replication`'s tests (and anything else that talks to PostgreSQL only) use it
//! without linking librdkafka. `tailbox-e2e` builds its Kafka, Redis and webhook support
//! on top of it and re-exports all of it.
//!
//! - [`PgServer`]: a throwaway PostgreSQL cluster (`wal_level = logical`) per test,
//!   started by `scripts/pg.sh`, stopped and deleted on drop: Debian's 15, or the major
//!   in `TAILBOX_PG_MAJOR`, or one of [`OTHER_PG_MAJORS`] by name
//!   ([`PgServer::start_major`]); [`PgTlsFiles`] for TLS tests.
//! - [`TcpProxy`]: a TCP proxy that can cut every connection through it, or move to
//!   another server.
//! - [`tailbox_bin`]: the `tailbox` binary, built once per process.
//! - [`unique_name`], [`scratch_dir`], [`workspace_root`].
//! - [`run_script`]: runs one of the scripts in `scripts/` (the servers' start and stop).
//!
//! Nothing here skips: a missing PostgreSQL is an error that says to run
//! `scripts/install-deps.sh`.

mod paths;
mod pg;
mod proxy;
mod script;

pub use paths::{scratch_dir, tailbox_bin, unique_name, workspace_root};
pub use pg::{
    DEFAULT_PG_MAJOR, OTHER_PG_MAJORS, PgServer, PgTlsFiles, apply_sql_files, pg_major_from_env,
};
pub use proxy::TcpProxy;
pub use script::run_script;

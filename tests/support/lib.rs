//! Test-support library for tailbox's end-to-end tests: real servers, no mocks.
//!
//! - [`PgServer`]: a throwaway PostgreSQL cluster (`wal_level = logical`) per
//!   test, started by `scripts/pg.sh`, stopped and deleted on drop: Debian's 15, or
//!   the major in `TAILBOX_PG_MAJOR`, or one of [`OTHER_PG_MAJORS`] by name
//!   ([`PgServer::start_major`]).
//! - [`shared_kafka`]: one real Apache Kafka broker (KRaft) per test binary,
//!   started by `scripts/kafka.sh` on first use (or `TAILBOX_TEST_KAFKA`);
//!   [`KafkaBroker::start_owned`] gives a test its own broker that it can stop
//!   and start again.
//! - [`consume_all`] / [`consume_pattern`] / [`consume`]: read back what was
//!   published, with read_committed isolation.
//! - [`RedisServer`]: a throwaway `redis-server` with its own port and data.
//! - [`WebhookReceiver`]: a real HTTP receiver that verifies Standard Webhooks
//!   signatures, records arrivals and answers with scripted faults.
//! - [`tailbox_bin`]: the `tailbox` binary, built once per process.
//! - [`unique_name`]: names for slots, publications, topics and groups.
//!
//! Nothing here skips: a missing PostgreSQL, Java or Maven is an error that says
//! to run `scripts/install-deps.sh`.
//!
//! Processes started here carry a watchdog on the test process's pid, so a test
//! binary that dies (or exits with the shared broker still up) leaks no server.

mod consume;
mod kafka;
mod paths;
mod pg;
mod proxy;
mod redis;
mod script;
mod webhook;

pub use consume::{
    ConsumeOptions, ConsumedRecord, DEFAULT_QUIET, Subscription, consume, consume_all,
    consume_pattern,
};
pub use kafka::{
    KafkaAclListeners, KafkaBroker, KafkaSecureListeners, create_topic, shared_kafka,
    try_shared_kafka,
};
pub use paths::{scratch_dir, tailbox_bin, unique_name, workspace_root};
pub use pg::{
    DEFAULT_PG_MAJOR, OTHER_PG_MAJORS, PgServer, PgTlsFiles, apply_sql_files, pg_major_from_env,
};
pub use proxy::TcpProxy;
pub use redis::RedisServer;
pub use webhook::{Arrival, Reply, Script, WebhookReceiver, verify_with_standardwebhooks};

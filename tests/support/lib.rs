//! Test-support library for tailbox's end-to-end tests: real servers, no mocks.
//!
//! - Everything of `tailbox-pg-support` (re-exported): [`PgServer`], a throwaway
//!   PostgreSQL cluster per test; [`TcpProxy`]; [`tailbox_bin`]; [`unique_name`]. Tests
//!   that need PostgreSQL only depend on that crate instead, and link no Kafka client.
//! - [`shared_kafka`]: one real Apache Kafka broker (KRaft) per test binary,
//!   started by `scripts/kafka.sh` on first use (or `TAILBOX_TEST_KAFKA`);
//!   [`KafkaBroker::start_owned`] gives a test its own broker that it can stop
//!   and start again.
//! - [`consume_all`] / [`consume_pattern`] / [`consume`]: read back what was
//!   published, with read_committed isolation.
//! - [`RedisServer`]: a throwaway `redis-server` with its own port and data.
//! - [`WebhookReceiver`]: a real HTTP (or HTTPS) receiver that verifies Standard Webhooks
//!   signatures, records arrivals and answers with scripted faults.
//!
//! Nothing here skips: a missing PostgreSQL, Java or Maven is an error that says
//! to run `scripts/install-deps.sh`.
//!
//! Processes started here carry a watchdog on the test process's pid, so a test
//! binary that dies (or exits with the shared broker still up) leaks no server.

mod consume;
mod kafka;
mod redis;
mod webhook;

pub use consume::{
    ConsumeOptions, ConsumedRecord, DEFAULT_QUIET, Subscription, consume, consume_all,
    consume_pattern,
};
pub use kafka::{
    KafkaAclListeners, KafkaBroker, KafkaSecureListeners, create_topic, shared_kafka,
    try_shared_kafka,
};
pub use redis::RedisServer;
pub use tailbox_pg_support::{
    DEFAULT_PG_MAJOR, OTHER_PG_MAJORS, PgServer, PgTlsFiles, TcpProxy, apply_sql_files,
    pg_major_from_env, scratch_dir, tailbox_bin, unique_name, workspace_root,
};
pub use webhook::{Arrival, Reply, Script, WebhookReceiver, verify_with_standardwebhooks};

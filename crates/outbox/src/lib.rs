//! Outbox mapping: turns a decoded pgoutput insert on the outbox table into a Kafka
//! record. Pure code, no I/O.
//!
//! Place in the data path:
//!
//! ```text
//! replication stream → pgoutput decoder → [THIS CRATE] → Kafka sink → checkpoint
//! ```
//!
//! The mapping follows Debezium's Outbox Event Router, so a table built for Debezium
//! works unchanged:
//!
//! | column (default name) | becomes                                        |
//! |-----------------------|------------------------------------------------|
//! | `aggregatetype`       | the topic, through a template (`outbox.event.{aggregatetype}`) |
//! | `aggregateid`         | the record key (so one aggregate stays in one partition, in order) |
//! | `payload`             | the record value, byte for byte as PostgreSQL printed it |
//! | `id`, `type`          | headers `id` and `type`                         |
//! | any other column      | a header named after the column (NULLs are left out) |
//!
//! # Layout
//! - [`config`]: [`OutboxConfig`] (table, column names, topic template) and its checks.
//! - [`topic`]: the topic template and Kafka's topic-name rules.
//! - [`mapper`]: [`OutboxMapper`], which follows Relation messages and maps inserts.
//! - [`envelope`]: the table-less outbox (`pg_logical_emit_message` envelopes).
//! - [`record`]: [`OutboxRecord`], the reusable record the mapper fills.
//! - [`headers`]: the header names tailbox writes, in one place.
//! - [`dead_letter`]: dead-letter records, built in one place.

pub mod config;
pub mod dead_letter;
pub mod envelope;
pub mod headers;
pub mod identifier;
pub mod mapper;
pub mod record;
pub mod topic;

pub use config::{ColumnNames, ConfigError, OutboxConfig, PayloadFormat};
pub use mapper::{MappingError, OutboxMapper};
pub use record::OutboxRecord;
pub use topic::TopicTemplate;

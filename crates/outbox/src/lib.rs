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
//! Every part of that is configurable per table ([`TableMapping`]): the topic from a
//! template over any columns or from a topic column, the key from any column, which
//! columns become headers, a json column expanded into headers, Debezium's span context
//! as W3C `traceparent`, tailbox's own headers, and CloudEvents instead of Debezium's
//! headers. Several tables map at once, each its own way.
//!
//! # Layout
//! - [`config`]: [`TableMapping`] (one table's mapping, as configured) checked into
//!   [`OutboxConfig`]; the columns a table must have.
//! - [`topic`]: the topic template (`{column}` placeholders) and Kafka's topic-name rules.
//! - [`trace`]: Debezium's span context column to W3C trace context.
//! - [`mapper`]: [`OutboxMapper`], which follows Relation messages and maps inserts.
//! - [`envelope`]: the table-less outbox (`pg_logical_emit_message` envelopes).
//! - [`record`]: [`OutboxRecord`], the reusable record the mapper fills.
//! - [`headers`]: the header names tailbox writes, in one place, and [`MetaHeaders`].
//! - [`dead_letter`]: dead-letter records, built in one place.

pub mod config;
pub mod dead_letter;
pub mod envelope;
pub mod headers;
pub mod identifier;
pub mod mapper;
pub mod record;
pub mod topic;
pub mod trace;

pub use config::{
    ColumnNames, ConfigError, EventFormat, OutboxConfig, PayloadFormat, RequiredColumn,
    TableMapping,
};
pub use headers::MetaHeaders;
pub use mapper::{MappingError, OutboxMapper};
pub use record::OutboxRecord;
pub use topic::TopicTemplate;

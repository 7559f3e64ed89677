//! The Kafka sink of tailbox: an ordered, idempotent producer whose acknowledgements
//! come back tagged with the sequence number of the record they belong to; it
//! implements `tailbox_sink::Sink`.
//!
//! Place in the data path:
//!
//! ```text
//! outbox mapping → [THIS CRATE: sink] ──acks(seq)──▶ pipeline checkpoint → slot confirm
//! ```
//!
//! # Ordering
//! Records are enqueued one at a time, in commit order, from a single task; nothing
//! sends concurrently, so a retry can never overtake an earlier record. With
//! `enable.idempotence=true` librdkafka keeps per-partition order across its own
//! retries (at most 5 requests in flight, sequence numbers checked by the broker).
//! Acknowledgements of different partitions may arrive in any order; the pipeline
//! therefore only ever advances over the *prefix* of sequence numbers that is
//! acknowledged.
//!
//! # Layout
//! - [`config`]: the producer settings we insist on and the pass-through of any
//!   librdkafka property.
//! - [`sink`]: [`KafkaSink`], enqueueing records and delivering [`Ack`]s.
//! - [`checkpoint_topic`]: the compacted topic holding the last checkpoint record per key.
//! - [`topics`]: destination topics on demand (created through the admin API, or
//!   reported once, with the fix, when missing).
//! - [`transaction`]: Kafka transactions for exactly-once mode.
//! - [`error`]: librdkafka's errors classified into `tailbox-sink`'s (refused for good
//!   vs worth a replay, transient vs definite).

pub mod checkpoint_topic;
pub mod config;
pub mod error;
pub mod sink;
pub mod topics;
pub mod transaction;

pub use checkpoint_topic::CheckpointTopic;
pub use config::SinkConfig;
pub use sink::KafkaSink;
pub use topics::{MissingTopic, TopicRegistry, TopicSettings};

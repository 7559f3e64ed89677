//! The HTTP webhook sink of tailbox: each outbox event becomes one POST, signed per the
//! Standard Webhooks specification, delivered in commit order per aggregate and
//! concurrently across aggregates.
//!
//! Place in the data path:
//!
//! ```text
//! outbox mapping ──record──▶ [THIS CRATE: WebhookSink] ──POST (≤ concurrency)──▶ receiver
//!                                   │ acks(seq), any order         │ checkpoints, dead letters
//!                                   ▼                              ▼
//!                         pipeline checkpoint → slot confirm   PostgreSQL tables (sql/05)
//! ```
//!
//! # The guarantee, and where it is enforced
//! - **Per-aggregate order** ([`lanes`]): one queue per aggregate (topic and key); an
//!   aggregate's next event goes out only after the previous got its 2xx or was
//!   dead-lettered, retries included. Different aggregates go out concurrently.
//! - **Nothing skipped**: each event is acknowledged by its sequence number when it is
//!   delivered; the pipeline confirms the slot only over the acknowledged prefix, so a
//!   crash replays whatever had not been delivered (the receiver deduplicates by
//!   `webhook-id`).
//! - **Dead letters before the slot moves** ([`dispatcher`], [`store`]): a refused event
//!   is committed to `tailbox_dead_letter` before its acknowledgement.
//! - **Retries and the breaker** ([`retry`], [`breaker`]): retryable failures hold the
//!   aggregate and retry with capped, jittered backoff (`Retry-After` honoured); a run
//!   of failures opens the breaker, and then nothing goes out but one probe per
//!   cool-down. Meanwhile nothing is acknowledged and the slot holds.
//!
//! # Layout
//! - [`config`]: [`WebhookSinkConfig`], the URL template, the body format, headers.
//! - [`request`]: an event as a request (URL, body, `webhook-id`, metadata headers).
//! - [`signature`]: Standard Webhooks signing.
//! - [`lanes`]: the per-aggregate scheduling rule (pure, property-tested).
//! - [`retry`], [`breaker`]: the retry policy and the circuit breaker (pure).
//! - [`http`]: the HTTP client and one attempt.
//! - [`store`]: checkpoints and dead letters in PostgreSQL.
//! - [`dispatcher`]: the task that ties them together.
//! - [`sink`]: [`WebhookSink`], the [`tailbox_sink::Sink`] implementation.
//! - [`replay`]: `tailbox dead-letters replay`.

pub mod breaker;
pub mod config;
pub mod dispatcher;
pub mod http;
pub mod lanes;
pub mod replay;
pub mod request;
pub mod retry;
pub mod signature;
pub mod sink;
pub mod store;

pub use breaker::{BreakerGauge, BreakerState};
pub use config::{BodyFormat, UrlTemplate, WebhookSinkConfig, parse_header};
pub use retry::Backoff;
pub use signature::SigningKey;
pub use sink::WebhookSink;
pub use store::{DeadLetter, DeadLetterRow, Store};

/// The destination's name in error messages.
pub(crate) const WEBHOOK: &str = "webhook";

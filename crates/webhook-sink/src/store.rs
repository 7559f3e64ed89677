//! The webhook sink's PostgreSQL tables (sql/05_webhook_tables.sql): checkpoint records
//! and dead letters, in the database tailbox reads the outbox from.
//!
//! Why there: a webhook endpoint stores nothing tailbox could read back, and the
//! database is already the one durable thing tailbox depends on. A checkpoint there
//! also travels with the WAL it describes: a restore of the database to an earlier
//! point restores the checkpoint table to that point too. Each write is one
//! autocommitted statement, acknowledged once PostgreSQL reports the commit (so it is as
//! durable as the server's `synchronous_commit` makes any commit).

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{Map, Value};
use tailbox_replication::{ControlClient, PgConnectionConfig};
use tailbox_sink::{CheckpointRecords, SinkError};
use tokio_postgres::error::SqlState;

/// The destination's name in errors.
const POSTGRES: &str = "PostgreSQL (webhook tables)";

/// A failed statement on the webhook tables.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}{}", fix.map(|f| format!("; fix: {f}")).unwrap_or_default())]
pub struct StoreError {
    context: &'static str,
    fix: Option<&'static str>,
    #[source]
    source: tokio_postgres::Error,
}

impl StoreError {
    fn new(context: &'static str, source: tokio_postgres::Error) -> Self {
        let fix = match source.code() {
            Some(c) if *c == SqlState::UNDEFINED_TABLE => {
                Some("run sql/05_webhook_tables.sql against the outbox database")
            }
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => Some(
                "grant tailbox's role SELECT, INSERT, UPDATE on the webhook tables (sql/05_webhook_tables.sql)",
            ),
            _ => None,
        };
        Self { context, fix, source }
    }

    /// Whether retrying cannot help (missing table, no privilege).
    pub fn is_definite(&self) -> bool {
        self.fix.is_some()
    }

    fn into_sink_error(self) -> SinkError {
        if self.is_definite() {
            SinkError::Config { destination: POSTGRES, reason: self.to_string() }
        } else {
            SinkError::Transient {
                destination: POSTGRES,
                context: self.context.to_owned(),
                source: Box::new(self),
            }
        }
    }
}

/// A dead letter as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetter {
    /// `webhook-id`.
    pub event_id: Option<String>,
    /// The topic it was meant for.
    pub topic: Option<String>,
    /// Where it was POSTed (`None`: never sent).
    pub url: Option<String>,
    /// The aggregate id.
    pub aggregate_id: Vec<u8>,
    /// The payload column.
    pub payload: Vec<u8>,
    /// The other columns.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body (`None`: never sent).
    pub body: Option<Vec<u8>>,
    /// Its content type.
    pub content_type: Option<String>,
    /// Why.
    pub error: String,
    /// Commit LSN of its transaction.
    pub source_lsn: Option<String>,
    /// The outbox table.
    pub source_table: Option<String>,
    /// Attempts made.
    pub attempts: i32,
    /// When the first attempt went out.
    pub first_attempt: Option<SystemTime>,
    /// When the last attempt went out.
    pub last_attempt: Option<SystemTime>,
    /// The last response's status.
    pub response_status: Option<i32>,
    /// The start of the last response's body.
    pub response_body: Option<String>,
}

/// A row of `tailbox_dead_letter`, as `tailbox dead-letters list` shows it.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    /// Its id (for `replay --id`).
    pub id: i64,
    /// When it was written.
    pub created_at: SystemTime,
    /// The letter.
    pub letter: DeadLetter,
    /// When a replay got a 2xx.
    pub replayed_at: Option<SystemTime>,
}

/// The connection to the webhook tables.
pub struct Store {
    client: ControlClient,
}

impl Store {
    /// Connects (TLS as the URL says, like every other connection of tailbox).
    pub async fn connect(pg: &PgConnectionConfig) -> Result<Self, SinkError> {
        let client = ControlClient::connect(pg).await.map_err(|e| SinkError::Transient {
            destination: POSTGRES,
            context: "connecting for the webhook tables".into(),
            source: Box::new(e),
        })?;
        Ok(Self { client })
    }

    /// Upserts one checkpoint record.
    pub async fn write_checkpoint(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.client
            .client()
            .execute(
                "INSERT INTO tailbox_checkpoint (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                &[&key, &value],
            )
            .await
            .map_err(|e| StoreError::new("writing the checkpoint to tailbox_checkpoint", e))?;
        Ok(())
    }

    /// Every checkpoint record.
    pub async fn read_checkpoints(&self) -> Result<CheckpointRecords, SinkError> {
        let rows = self
            .client
            .client()
            .query("SELECT key, value FROM tailbox_checkpoint", &[])
            .await
            .map_err(|e| StoreError::new("reading tailbox_checkpoint", e).into_sink_error())?;
        let mut records = BTreeMap::new();
        for row in rows {
            let key: Vec<u8> = row
                .try_get(0)
                .map_err(|e| StoreError::new("reading tailbox_checkpoint", e).into_sink_error())?;
            let value: Vec<u8> = row
                .try_get(1)
                .map_err(|e| StoreError::new("reading tailbox_checkpoint", e).into_sink_error())?;
            records.insert(key, value);
        }
        Ok(records)
    }

    /// Checks that both tables are there and writable by us (at startup, so a missing
    /// script fails at once with its fix, not at the first poison event).
    pub async fn check_tables(&self) -> Result<(), SinkError> {
        self.client
            .client()
            .execute("SELECT 1 FROM tailbox_dead_letter WHERE false FOR UPDATE", &[])
            .await
            .map_err(|e| StoreError::new("checking tailbox_dead_letter", e).into_sink_error())?;
        self.read_checkpoints().await.map(|_| ())
    }

    /// Writes a dead letter; its id.
    pub async fn insert_dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError> {
        let headers: Map<String, Value> = letter
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
            .collect();
        let headers = Value::Object(headers).to_string();
        let row = self
            .client
            .client()
            .query_one(
                "INSERT INTO tailbox_dead_letter (event_id, topic, url, aggregate_id, payload, \
                   headers, body, content_type, error, source_lsn, source_table, attempts, \
                   first_attempt, last_attempt, response_status, response_body) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11, $12, $13, \
                   $14, $15, $16) RETURNING id",
                &[
                    &letter.event_id,
                    &letter.topic,
                    &letter.url,
                    &letter.aggregate_id,
                    &letter.payload,
                    &headers,
                    &letter.body,
                    &letter.content_type,
                    &letter.error,
                    &letter.source_lsn,
                    &letter.source_table,
                    &letter.attempts,
                    &letter.first_attempt,
                    &letter.last_attempt,
                    &letter.response_status,
                    &letter.response_body,
                ],
            )
            .await
            .map_err(|e| StoreError::new("writing to tailbox_dead_letter", e))?;
        row.try_get(0).map_err(|e| StoreError::new("writing to tailbox_dead_letter", e))
    }

    /// Dead letters, oldest first; `ids` empty: all not replayed yet.
    pub async fn dead_letters(&self, ids: &[i64]) -> Result<Vec<DeadLetterRow>, StoreError> {
        let rows = self
            .client
            .client()
            .query(
                "SELECT id, created_at, event_id, topic, url, aggregate_id, payload, \
                   headers::text, body, content_type, error, source_lsn, source_table, attempts, \
                   first_attempt, last_attempt, response_status, response_body, replayed_at \
                 FROM tailbox_dead_letter \
                 WHERE CASE WHEN cardinality($1::int8[]) = 0 THEN replayed_at IS NULL \
                            ELSE id = ANY($1) END \
                 ORDER BY id",
                &[&ids],
            )
            .await
            .map_err(|e| StoreError::new("reading tailbox_dead_letter", e))?;
        let read = |e| StoreError::new("reading tailbox_dead_letter", e);
        let mut letters = Vec::with_capacity(rows.len());
        for row in rows {
            let headers: String = row.try_get(7).map_err(read)?;
            let headers = match serde_json::from_str::<Value>(&headers) {
                Ok(Value::Object(map)) => map
                    .into_iter()
                    .map(|(n, v)| (n, v.as_str().unwrap_or_default().as_bytes().to_vec()))
                    .collect(),
                _ => Vec::new(),
            };
            letters.push(DeadLetterRow {
                id: row.try_get(0).map_err(read)?,
                created_at: row.try_get(1).map_err(read)?,
                letter: DeadLetter {
                    event_id: row.try_get(2).map_err(read)?,
                    topic: row.try_get(3).map_err(read)?,
                    url: row.try_get(4).map_err(read)?,
                    aggregate_id: row
                        .try_get::<_, Option<Vec<u8>>>(5)
                        .map_err(read)?
                        .unwrap_or_default(),
                    payload: row
                        .try_get::<_, Option<Vec<u8>>>(6)
                        .map_err(read)?
                        .unwrap_or_default(),
                    headers,
                    body: row.try_get(8).map_err(read)?,
                    content_type: row.try_get(9).map_err(read)?,
                    error: row.try_get(10).map_err(read)?,
                    source_lsn: row.try_get(11).map_err(read)?,
                    source_table: row.try_get(12).map_err(read)?,
                    attempts: row.try_get(13).map_err(read)?,
                    first_attempt: row.try_get(14).map_err(read)?,
                    last_attempt: row.try_get(15).map_err(read)?,
                    response_status: row.try_get(16).map_err(read)?,
                    response_body: row.try_get(17).map_err(read)?,
                },
                replayed_at: row.try_get(18).map_err(read)?,
            });
        }
        Ok(letters)
    }

    /// Records a replay's outcome: `replayed_at` is set only on a 2xx.
    pub async fn mark_replayed(&self, id: i64, status: Option<u16>) -> Result<(), StoreError> {
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let status = status.map(i32::from);
        self.client
            .client()
            .execute(
                "UPDATE tailbox_dead_letter SET replay_status = $2, \
                   replayed_at = CASE WHEN $3 THEN now() ELSE replayed_at END WHERE id = $1",
                &[&id, &status, &delivered],
            )
            .await
            .map_err(|e| StoreError::new("updating tailbox_dead_letter", e))?;
        Ok(())
    }
}

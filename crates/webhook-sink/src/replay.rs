//! `tailbox dead-letters replay`: sends dead letters again, one attempt each, with the
//! body and `webhook-id` they were sent with the first time (so a receiver that took
//! one after all deduplicates it) and a fresh signature. A 2xx marks the row replayed.

use bytes::Bytes;
use reqwest::header::HeaderValue;
use tailbox_outbox::OutboxRecord;
use tailbox_sink::SinkError;

use crate::{
    config::WebhookSinkConfig, http::Http, request::Prepared, retry::Verdict, store::Store,
};

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The row.
    pub id: i64,
    /// Delivered (2xx) this time.
    pub delivered: bool,
    /// What happened, in words.
    pub outcome: String,
}

/// Replays the rows `ids` (empty: every row not replayed yet), oldest first.
pub async fn replay(config: &WebhookSinkConfig, ids: &[i64]) -> Result<Vec<Replayed>, SinkError> {
    let http = Http::new(config)?;
    let store = Store::connect(&config.pg).await?;
    let transient = |context: &str, e: crate::store::StoreError| SinkError::Transient {
        destination: crate::WEBHOOK,
        context: context.to_owned(),
        source: Box::new(e),
    };
    let rows = store.dead_letters(ids).await.map_err(|e| transient("reading dead letters", e))?;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let letter = &row.letter;
        let (Some(url), Some(body)) = (&letter.url, &letter.body) else {
            results.push(Replayed {
                id: row.id,
                delivered: false,
                outcome:
                    "never sent (the row could not become an event: fix it and insert it again)"
                        .into(),
            });
            continue;
        };
        let event = Prepared {
            url: url.clone(),
            id: letter.event_id.clone().unwrap_or_else(|| format!("dead-letter-{}", row.id)),
            body: Bytes::from(body.clone()),
            content_type: letter
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            headers: Vec::new(),
            record: OutboxRecord::default(),
            lsn: letter.source_lsn.clone().unwrap_or_default(),
        };
        let attempt = http.attempt(&event).await;
        store
            .mark_replayed(row.id, attempt.status)
            .await
            .map_err(|e| transient("recording the replay", e))?;
        let delivered = attempt.verdict == Verdict::Delivered;
        let outcome = match (delivered, attempt.status) {
            (true, Some(status)) => format!("delivered ({status})"),
            _ => attempt.error,
        };
        results.push(Replayed { id: row.id, delivered, outcome });
    }
    Ok(results)
}

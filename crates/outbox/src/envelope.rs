//! The table-less outbox: events emitted with
//! `pg_logical_emit_message(true, '<prefix>', <envelope>)`.
//!
//! The envelope is a JSON object:
//!
//! ```json
//! { "aggregatetype": "Order", "aggregateid": "o-1", "type": "OrderPlaced",
//!   "id": "4f1c…", "payload": { "total": 42 }, "headers": { "tenant": "acme" } }
//! ```
//!
//! `aggregatetype`, `aggregateid` and `payload` are required; `type`, `id` and
//! `headers` are optional. The payload is published byte for byte as written inside
//! the envelope (no re-serialisation). A transactional message is delivered at its
//! transaction's commit, in WAL order with the table rows of that transaction, so it is
//! published, checkpointed and never re-published after a restart exactly like a row.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::{mapper::MappingError, record::OutboxRecord, topic::TopicTemplate};

/// Maps envelope bytes to a record (allocates a little per message: envelopes are the
/// less common path; table rows are the zero-copy one).
pub fn map_envelope(
    content: &Bytes,
    template: &TopicTemplate,
    out: &mut OutboxRecord,
) -> Result<(), MappingError> {
    let fields: BTreeMap<&str, &RawValue> = serde_json::from_slice(content)
        .map_err(|e| MappingError::InvalidEnvelope(format!("not a JSON object: {e}")))?;
    let string = |name: &str| -> Result<Option<String>, MappingError> {
        match fields.get(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| MappingError::InvalidEnvelope(format!("\"{name}\" must be a string"))),
        }
    };
    let required = |name: &str| -> Result<String, MappingError> {
        string(name)?
            .ok_or_else(|| MappingError::InvalidEnvelope(format!("\"{name}\" is missing or null")))
    };
    let aggregate_type = required("aggregatetype")?;
    let aggregate_id = required("aggregateid")?;
    let payload = fields
        .get("payload")
        .filter(|raw| raw.get() != "null")
        .ok_or_else(|| MappingError::InvalidEnvelope("\"payload\" is missing or null".into()))?;
    out.topic =
        template.render(aggregate_type.as_bytes()).map_err(MappingError::InvalidTopic)?.into();
    out.key = Bytes::from(aggregate_id);
    out.value = slice_of(content, payload.get());
    out.headers.clear();
    for name in ["id", "type"] {
        if let Some(value) = string(name)? {
            out.headers.push((Arc::from(name), Bytes::from(value)));
        }
    }
    if let Some(headers) = fields.get("headers").filter(|raw| raw.get() != "null") {
        let headers: BTreeMap<String, serde_json::Value> = serde_json::from_str(headers.get())
            .map_err(|_| MappingError::InvalidEnvelope("\"headers\" must be an object".into()))?;
        for (name, value) in headers {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            out.headers.push((Arc::from(name.as_str()), Bytes::from(value)));
        }
    }
    Ok(())
}

/// `part` is a sub-slice of `whole`'s bytes (serde_json borrows from the input): return
/// it as a zero-copy `Bytes`.
fn slice_of(whole: &Bytes, part: &str) -> Bytes {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    whole.slice(start..start + part.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> TopicTemplate {
        TopicTemplate::parse("outbox.event.{aggregatetype}").expect("valid")
    }

    #[test]
    fn maps_an_envelope_keeping_the_payload_bytes() -> Result<(), MappingError> {
        let content = Bytes::from_static(
            br#"{"aggregatetype":"Order","aggregateid":"o-1","type":"Placed","id":"e-1",
                "payload": {"total" :  42},"headers":{"tenant":"acme","n":3}}"#,
        );
        let mut out = OutboxRecord::default();
        map_envelope(&content, &template(), &mut out)?;
        assert_eq!(&*out.topic, "outbox.event.Order");
        assert_eq!(out.key.as_ref(), b"o-1");
        assert_eq!(out.value.as_ref(), br#"{"total" :  42}"#, "payload bytes untouched");
        let headers: Vec<(&str, &[u8])> =
            out.headers.iter().map(|(k, v)| (&**k, v.as_ref())).collect();
        assert_eq!(
            headers,
            vec![("id", b"e-1".as_slice()), ("type", b"Placed"), ("n", b"3"), ("tenant", b"acme")]
        );
        Ok(())
    }

    #[test]
    fn bad_envelopes_say_why() {
        let mut out = OutboxRecord::default();
        for (content, needle) in [
            (&b"not json"[..], "not a JSON object"),
            (br#"{"aggregateid":"a","payload":1}"#, "aggregatetype"),
            (br#"{"aggregatetype":"A","aggregateid":"a"}"#, "payload"),
            (br#"{"aggregatetype":7,"aggregateid":"a","payload":1}"#, "must be a string"),
            (br#"{"aggregatetype":"A b","aggregateid":"a","payload":1}"#, "topic"),
        ] {
            let err = map_envelope(&Bytes::copy_from_slice(content), &template(), &mut out).err();
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(needle), "{text:?} should mention {needle:?}");
        }
    }
}

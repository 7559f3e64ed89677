//! One event as one request: its URL, body, `webhook-id` and metadata headers, built
//! once when the pipeline hands the record over (the record's bytes are slices of the
//! replication buffer, so what the request needs is copied here, once).

use std::sync::Arc;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, percent_encode};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tailbox_outbox::{OutboxRecord, headers};
use tailbox_sink::{EventMeta, Lsn, RefusedRecord};

use crate::config::{BodyFormat, UrlTemplate};

/// Metadata header: the commit LSN.
pub const LSN_HEADER: &str = "tailbox-lsn";
/// Metadata header: the transaction id.
pub const XID_HEADER: &str = "tailbox-xid";
/// Metadata header: the commit time, µs since the Unix epoch.
pub const COMMIT_TS_HEADER: &str = "tailbox-commit-ts";
/// Metadata header: the event type (outbox column `type`).
pub const TYPE_HEADER: &str = "tailbox-event-type";
/// Metadata header: the aggregate type.
pub const AGGREGATE_TYPE_HEADER: &str = "tailbox-aggregate-type";
/// Metadata header: the aggregate id (when it is a valid header value).
pub const AGGREGATE_ID_HEADER: &str = "tailbox-aggregate-id";

/// An event ready to be POSTed (and, should it be refused, dead-lettered).
#[derive(Debug)]
pub struct Prepared {
    /// The URL.
    pub url: String,
    /// `webhook-id`: the outbox row's id, else `<commit LSN>-<position>`.
    pub id: String,
    /// The body.
    pub body: Bytes,
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `tailbox-*` metadata headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The record (owned copies), for the dead letters.
    pub record: OutboxRecord,
    /// The commit LSN, `X/X` (empty without a transaction).
    pub lsn: String,
}

impl Prepared {
    /// The record as the pipeline's dead-letter path wants it back.
    pub fn refused_copy(&self) -> RefusedRecord {
        RefusedRecord {
            topic: self.record.topic.to_string(),
            key: Some(self.record.key.to_vec()),
            value: Some(self.record.value.to_vec()),
            headers: self
                .record
                .headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
        }
    }
}

/// `webhook-id`s for records without an `id` column: `<commit LSN>-<position in the
/// transaction>`, the same for the same event after a replay.
#[derive(Debug, Default)]
pub struct Positions {
    lsn: Option<Lsn>,
    next: u64,
}

impl Positions {
    /// The position of the next record of the transaction committed at `commit_lsn`.
    pub fn next(&mut self, commit_lsn: Lsn) -> u64 {
        if self.lsn != Some(commit_lsn) {
            self.lsn = Some(commit_lsn);
            self.next = 0;
        }
        let position = self.next;
        self.next += 1;
        position
    }
}

/// Builds the request for `record`.
pub fn prepare(
    record: &OutboxRecord,
    meta: Option<&EventMeta>,
    position: u64,
    url: &UrlTemplate,
    aggregate_type: &str,
    body: &BodyFormat,
) -> Prepared {
    let owned = OutboxRecord {
        topic: Arc::clone(&record.topic),
        key: Bytes::copy_from_slice(&record.key),
        value: Bytes::copy_from_slice(&record.value),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| (Arc::clone(name), Bytes::copy_from_slice(value)))
            .collect(),
        meta: record.meta,
    };
    let header =
        |name: &str| owned.headers.iter().find(|(n, _)| &**n == name).map(|(_, v)| v.clone());
    let lsn = meta.map(|m| m.lsn.clone()).unwrap_or_default();
    let id = header(headers::ID)
        .or_else(|| header(headers::cloudevents::ID))
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
        .filter(|id| !id.is_empty() && HeaderValue::from_str(id).is_ok())
        .unwrap_or_else(|| format!("{}-{position}", if lsn.is_empty() { "0/0" } else { &lsn }));
    let (body, content_type) = match body {
        BodyFormat::Payload { content_type } => (
            owned.value.clone(),
            // A CloudEvent's `datacontenttype` is its Content-Type.
            header(headers::cloudevents::CONTENT_TYPE)
                .and_then(|v| HeaderValue::from_bytes(&v).ok())
                .or_else(|| HeaderValue::from_str(content_type).ok())
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        ),
        BodyFormat::Envelope => (
            envelope(&owned, meta, &id, aggregate_type),
            HeaderValue::from_static("application/json"),
        ),
    };
    let mut extra = Vec::with_capacity(6);
    let mut add = |name: &'static str, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            extra.push((HeaderName::from_static(name), value));
        }
    };
    if let Some(meta) = meta {
        for (name, value) in meta.headers(record.meta) {
            match name {
                headers::LSN => add(LSN_HEADER, value.as_bytes()),
                headers::XID => add(XID_HEADER, value.as_bytes()),
                headers::COMMIT_TS => add(COMMIT_TS_HEADER, value.as_bytes()),
                headers::cloudevents::TIME => add("ce-time", value.as_bytes()),
                _ => {}
            }
        }
    }
    if let Some(kind) = header(headers::TYPE).or_else(|| header(headers::cloudevents::TYPE)) {
        add(TYPE_HEADER, &kind);
    }
    add(AGGREGATE_TYPE_HEADER, aggregate_type.as_bytes());
    add(AGGREGATE_ID_HEADER, &owned.key);
    // CloudEvents, HTTP binding (binary mode): `ce_x` attributes as `ce-x` headers,
    // their values percent-encoded as the binding asks (§3.1.3.2).
    for (name, value) in &owned.headers {
        if let Some(attribute) = name.strip_prefix(headers::cloudevents::PREFIX)
            && let Ok(name) = HeaderName::from_bytes(format!("ce-{attribute}").as_bytes())
            && let Ok(value) =
                HeaderValue::from_str(&percent_encode(value, CE_HEADER_ESCAPED).to_string())
        {
            extra.push((name, value));
        }
    }
    Prepared {
        url: url.render(aggregate_type, &owned.topic),
        id,
        body,
        content_type,
        headers: extra,
        record: owned,
        lsn,
    }
}

/// What the CloudEvents HTTP binding percent-encodes in a `ce-` header value: space,
/// `"`, `%` and everything outside printable ASCII (non-ASCII bytes always are).
const CE_HEADER_ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// The JSON envelope: the payload as JSON when it is JSON (jsonb, json), else as a
/// string; every other column and the transaction's facts under `metadata`.
fn envelope(
    record: &OutboxRecord,
    meta: Option<&EventMeta>,
    id: &str,
    aggregate_type: &str,
) -> Bytes {
    let text = |bytes: &[u8]| Value::String(String::from_utf8_lossy(bytes).into_owned());
    let payload: Value =
        serde_json::from_slice(&record.value).unwrap_or_else(|_| text(&record.value));
    let mut metadata = Map::new();
    let mut kind = Value::Null;
    for (name, value) in &record.headers {
        match &**name {
            headers::ID => {}
            headers::TYPE => kind = text(value),
            other => {
                metadata.insert(other.to_owned(), text(value));
            }
        }
    }
    if let Some(meta) = meta {
        metadata.insert(headers::LSN.into(), Value::String(meta.lsn.clone()));
        metadata.insert(headers::XID.into(), Value::String(meta.xid.clone()));
        metadata.insert(headers::COMMIT_TS.into(), Value::String(meta.commit_ts.clone()));
    }
    metadata.insert("topic".into(), Value::String(record.topic.to_string()));
    let mut envelope = Map::new();
    envelope.insert("id".into(), Value::String(id.to_owned()));
    envelope.insert("type".into(), kind);
    envelope.insert("aggregatetype".into(), Value::String(aggregate_type.to_owned()));
    envelope.insert("aggregateid".into(), text(&record.key));
    envelope.insert("payload".into(), payload);
    envelope.insert("metadata".into(), Value::Object(metadata));
    Bytes::from(serde_json::to_vec(&Value::Object(envelope)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(with_id: bool) -> OutboxRecord {
        let mut headers = vec![(Arc::from("type"), Bytes::from_static(b"OrderPlaced"))];
        if with_id {
            headers.insert(0, (Arc::from("id"), Bytes::from_static(b"4f1c")));
        }
        headers.push((Arc::from("tenant"), Bytes::from_static(b"acme")));
        OutboxRecord {
            topic: Arc::from("outbox.event.Order"),
            key: Bytes::from_static(b"o-1"),
            value: Bytes::from_static(br#"{"total": 42}"#),
            headers,
            meta: tailbox_outbox::MetaHeaders::default(),
        }
    }

    #[test]
    fn cloudevents_attributes_become_ce_headers() {
        let mut record = record(false);
        record.headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", "e-9"),
            ("ce_source", "/shop"),
            ("ce_type", "OrderPlaced"),
            ("ce_subject", "Bestellung für \"Müller\""),
            ("content-type", "application/json"),
        ]
        .map(|(k, v)| (Arc::from(k), Bytes::from_static(v.as_bytes())))
        .to_vec();
        record.meta = tailbox_outbox::MetaHeaders::CE_TIME;
        let url = UrlTemplate::parse("https://h/in").expect("valid");
        let body = BodyFormat::Payload { content_type: "text/plain".into() };
        let p = prepare(&record, Some(&meta()), 0, &url, "Order", &body);
        let header = |n: &str| {
            p.headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.to_str().unwrap_or("?").to_owned())
        };
        assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(header("ce-id").as_deref(), Some("e-9"));
        assert_eq!(header("ce-type").as_deref(), Some("OrderPlaced"));
        assert_eq!(
            header("ce-subject").as_deref(),
            Some("Bestellung%20f%C3%BCr%20%22M%C3%BCller%22")
        );
        assert_eq!(header("ce-time").as_deref(), Some("2023-11-14T22:13:20.000000Z"));
        assert_eq!(header(LSN_HEADER), None, "meta_headers = none");
        assert_eq!(p.content_type, "application/json", "datacontenttype is the Content-Type");
        assert_eq!(p.id, "e-9", "ce_id is the webhook-id");
    }

    fn meta() -> EventMeta {
        let mut meta = EventMeta::default();
        meta.reset(Lsn::new(0x16_B374_D848), 771, 1_700_000_000_000_000);
        meta
    }

    #[test]
    fn the_payload_goes_as_stored_with_metadata_headers() {
        let url = UrlTemplate::parse("https://h/{aggregatetype}").expect("valid");
        let body = BodyFormat::Payload { content_type: "application/json".into() };
        let p = prepare(&record(true), Some(&meta()), 3, &url, "Order", &body);
        assert_eq!(p.url, "https://h/Order");
        assert_eq!(p.id, "4f1c", "the id column is the webhook-id");
        assert_eq!(&p.body[..], br#"{"total": 42}"#);
        let header = |n: &str| p.headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
        assert_eq!(header(LSN_HEADER).as_ref().map(|v| v.as_bytes()), Some(&b"16/B374D848"[..]));
        assert_eq!(header(XID_HEADER).as_ref().map(|v| v.as_bytes()), Some(&b"771"[..]));
        assert_eq!(header(TYPE_HEADER).as_ref().map(|v| v.as_bytes()), Some(&b"OrderPlaced"[..]));
        assert_eq!(header(AGGREGATE_ID_HEADER).as_ref().map(|v| v.as_bytes()), Some(&b"o-1"[..]));
        let copy = p.refused_copy();
        assert_eq!(copy.topic, "outbox.event.Order");
        assert_eq!(copy.value.as_deref(), Some(&br#"{"total": 42}"#[..]));
    }

    #[test]
    fn without_an_id_column_the_id_is_the_wal_position() {
        let url = UrlTemplate::parse("https://h/x").expect("valid");
        let body = BodyFormat::Envelope;
        let p = prepare(&record(false), Some(&meta()), 7, &url, "Order", &body);
        assert_eq!(p.id, "16/B374D848-7");
        let mut positions = Positions::default();
        let (a, b) = (Lsn::new(5), Lsn::new(9));
        assert_eq!([positions.next(a), positions.next(a), positions.next(b)], [0, 1, 0]);
    }

    #[test]
    fn the_envelope_carries_the_payload_as_json_and_the_metadata() {
        let url = UrlTemplate::parse("https://h/x").expect("valid");
        let p = prepare(&record(true), Some(&meta()), 0, &url, "Order", &BodyFormat::Envelope);
        let v: Value = serde_json::from_slice(&p.body).expect("JSON");
        assert_eq!(v["id"], "4f1c");
        assert_eq!(v["type"], "OrderPlaced");
        assert_eq!(v["aggregatetype"], "Order");
        assert_eq!(v["aggregateid"], "o-1");
        assert_eq!(v["payload"]["total"], 42);
        assert_eq!(v["metadata"]["lsn"], "16/B374D848");
        assert_eq!(v["metadata"]["xid"], "771");
        assert_eq!(v["metadata"]["tenant"], "acme");
        assert_eq!(p.content_type, "application/json");
        let mut text = record(true);
        text.value = Bytes::from_static(b"not json");
        let p = prepare(&text, None, 0, &url, "Order", &BodyFormat::Envelope);
        let v: Value = serde_json::from_slice(&p.body).expect("JSON");
        assert_eq!(v["payload"], "not json", "a text payload becomes a string");
    }
}

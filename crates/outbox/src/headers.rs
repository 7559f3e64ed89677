//! The header names tailbox writes, in one place: the mapper, the sinks, the pipeline's
//! dead-letter paths and backfill all use these.

/// Commit LSN of the record's transaction, `X/X`.
pub const LSN: &str = "lsn";
/// The record's transaction id.
pub const XID: &str = "xid";
/// Commit time, µs since the Unix epoch.
pub const COMMIT_TS: &str = "commit_ts";
/// The outbox row's event id column.
pub const ID: &str = "id";
/// The outbox row's event type column.
pub const TYPE: &str = "type";
/// Dead letters: why the record could not be published.
pub const ERROR: &str = "error";
/// Dead letters: the commit LSN of the transaction the event came from.
pub const SOURCE_LSN: &str = "source_lsn";
/// Dead letters: the outbox table, `schema.table`.
pub const SOURCE_TABLE: &str = "source_table";
/// Dead letters: the topic the record was meant for, when it had one.
pub const SOURCE_TOPIC: &str = "source_topic";
/// Backfilled records: `true`.
pub const BACKFILL: &str = "backfill";
/// W3C trace context: the `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace context: the `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// CloudEvents' Kafka protocol binding, binary mode: attribute headers. (Redis entries
/// use the same field names; webhooks send them as `ce-*` HTTP headers.)
pub mod cloudevents {
    /// The prefix of every CloudEvents attribute header.
    pub const PREFIX: &str = "ce_";
    /// `specversion`, always `1.0`.
    pub const SPECVERSION: &str = "ce_specversion";
    /// `id`: the event id column.
    pub const ID: &str = "ce_id";
    /// `source`.
    pub const SOURCE: &str = "ce_source";
    /// `type`: the event type column or the configured template.
    pub const TYPE: &str = "ce_type";
    /// `time`: the commit time, RFC 3339 (added by the sink from the transaction).
    pub const TIME: &str = "ce_time";
    /// `datacontenttype`, which the binding carries as `content-type`.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// Which of tailbox's own per-transaction headers a record carries: `lsn`, `xid`,
/// `commit_ts` (all by default), and `ce_time` for CloudEvents. The sinks add them
/// from the transaction's facts; the mapper only says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeaders(u8);

impl MetaHeaders {
    /// Header `lsn`.
    pub const LSN: Self = Self(1);
    /// Header `xid`.
    pub const XID: Self = Self(2);
    /// Header `commit_ts`.
    pub const COMMIT_TS: Self = Self(4);
    /// Header `ce_time` (set by the CloudEvents format, not selectable).
    pub const CE_TIME: Self = Self(8);
    /// None of them.
    pub const NONE: Self = Self(0);

    /// The selectable names, in the order they are written.
    pub const NAMES: [(&'static str, Self); 3] =
        [(LSN, Self::LSN), (XID, Self::XID), (COMMIT_TS, Self::COMMIT_TS)];

    /// Parses `lsn,xid,commit_ts` (any subset, any order) or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") || text.is_empty() {
            return Ok(Self::NONE);
        }
        let mut out = Self::NONE;
        for part in text.split(',').map(str::trim) {
            let Some((_, bit)) = Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(part))
            else {
                return Err(format!("{part:?} is not one of lsn, xid, commit_ts, none"));
            };
            out = out.with(*bit);
        }
        Ok(out)
    }

    /// Both sets.
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every header of `other` is in this set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Default for MetaHeaders {
    fn default() -> Self {
        Self::LSN.with(Self::XID).with(Self::COMMIT_TS)
    }
}

impl std::fmt::Display for MetaHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> =
            Self::NAMES.iter().filter(|(_, b)| self.contains(*b)).map(|(n, _)| *n).collect();
        if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join(",")) }
    }
}

impl serde::Serialize for MetaHeaders {
    /// As `"lsn,xid,commit_ts"` (or `"none"`), the form it is read in.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for MetaHeaders {
    /// `"lsn,xid"`, `"none"` or `["lsn", "xid"]`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            One(String),
            List(Vec<String>),
        }
        let text = match Text::deserialize(d)? {
            Text::One(text) => text,
            Text::List(list) if list.is_empty() => "none".into(),
            Text::List(list) => list.join(","),
        };
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::MetaHeaders;

    #[test]
    fn meta_headers_parse_subsets_and_none() {
        assert_eq!(MetaHeaders::parse("lsn,xid,commit_ts"), Ok(MetaHeaders::default()));
        assert_eq!(MetaHeaders::parse("none"), Ok(MetaHeaders::NONE));
        let some = MetaHeaders::parse(" xid , lsn").expect("valid");
        assert!(some.contains(MetaHeaders::LSN) && !some.contains(MetaHeaders::COMMIT_TS));
        assert_eq!(some.to_string(), "lsn,xid");
        assert!(MetaHeaders::parse("lsn,id").is_err_and(|e| e.contains("\"id\"")));
    }
}

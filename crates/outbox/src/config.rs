//! What an outbox table looks like and how its rows become records.
//!
//! [`TableMapping`] is the one place a table's mapping is written down: its column map,
//! where its records go (topic template or topic column), its key, which columns become
//! headers, tailbox's own headers and the event format. The configuration file holds
//! one per table (serde, unknown keys refused); the command line fills the same struct.
//! [`OutboxConfig::from_mapping`] checks it once, at startup, into the form the mapper
//! uses.
//!
//! Column names follow one rule: a name the configuration gives must exist (the startup
//! check says so, per table, with the fix); Debezium's default names (`id`, `type`,
//! `aggregateid`, `aggregatetype`) are used when the table has them and skipped when it
//! has not, so a table without an event id or type column works as it is.

use serde::{Deserialize, Serialize};

use crate::{
    headers::MetaHeaders,
    topic::{AGGREGATE_TYPE, Segment, TopicTemplate, parse_segments},
};

/// The default topic template (Debezium's).
pub const DEFAULT_TOPIC_TEMPLATE: &str = "outbox.event.{aggregatetype}";
/// The column holding Debezium's serialised span context (Java properties text).
pub const DEFAULT_TRACE_COLUMN: &str = "tracingspancontext";

/// Names of the columns the mapping reads (Debezium's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    /// Event id, published as header `id` (`ce_id` in CloudEvents).
    pub id: String,
    /// Aggregate type, `{aggregatetype}` in the topic template.
    pub aggregate_type: String,
    /// Aggregate id, the record key (unless `key_column` names another).
    pub aggregate_id: String,
    /// Event type, published as header `type` (`ce_type` in CloudEvents).
    pub event_type: String,
    /// The payload, the record value.
    pub payload: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        Self {
            id: "id".into(),
            aggregate_type: "aggregatetype".into(),
            aggregate_id: "aggregateid".into(),
            event_type: "type".into(),
            payload: "payload".into(),
        }
    }
}

impl ColumnNames {
    /// Whether `name` is required for role `default` (it differs from Debezium's
    /// default name, so someone wrote it down).
    fn is_explicit(name: &str, default: &str) -> bool {
        name != default
    }
}

/// How a record carries the event's attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// Debezium's outbox router: headers `id`, `type` and one per other column.
    #[default]
    Debezium,
    /// CloudEvents 1.0, binary mode: `ce_specversion`, `ce_id`, `ce_source`, `ce_type`,
    /// `ce_time`, `content-type` headers (Kafka binding; Redis fields of the same names;
    /// `ce-*` HTTP headers for webhooks); the value is the payload.
    CloudEvents,
}

impl EventFormat {
    /// Parses `debezium` or `cloudevents`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debezium" => Some(Self::Debezium),
            "cloudevents" => Some(Self::CloudEvents),
            _ => None,
        }
    }
}

/// The format the payload column must have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// Any bytes (a `jsonb` column is valid JSON anyway).
    #[default]
    Raw,
    /// Valid JSON text (for `text`/`bytea` payload columns).
    Json,
}

impl PayloadFormat {
    /// Parses `raw` or `json`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "raw" => Some(PayloadFormat::Raw),
            "json" => Some(PayloadFormat::Json),
            _ => None,
        }
    }
}

/// One outbox table's mapping, as written in the configuration file (one per table)
/// or filled from the command line. Every field has a default: `TableMapping::default()`
/// is a Debezium-style `public.outbox`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableMapping {
    /// `schema.table` (or `table`, meaning `public.table`; SQL quoting as in psql).
    pub table: String,
    /// Event id column (header `id`); optional under its default name `id`.
    pub column_id: String,
    /// Event type column (header `type`); optional under its default name `type`.
    pub column_type: String,
    /// Aggregate type column, `{aggregatetype}` in templates.
    pub column_aggregate_type: String,
    /// Aggregate id column: the key when `key_column` is not set or NULL.
    pub column_aggregate_id: String,
    /// Payload column: the record value.
    pub column_payload: String,
    /// Topic (Redis stream) name with `{column}` placeholders.
    pub topic_template: String,
    /// A column holding the topic itself, used as is (checked per row; an invalid one
    /// dead-letters the row). Replaces `topic_template`.
    pub topic_column: Option<String>,
    /// The record key's column; when NULL, the aggregate id is used.
    pub key_column: Option<String>,
    /// Only these columns become headers (besides `id` and `type`); a list or
    /// comma-separated text.
    #[serde(deserialize_with = "some_names")]
    pub header_columns: Option<Vec<String>>,
    /// These columns never become headers (e.g. `status`, `published`, `attempts`); a
    /// list or comma-separated text.
    #[serde(deserialize_with = "names")]
    pub exclude_columns: Vec<String>,
    /// A json/jsonb column whose object keys become one header each.
    pub headers_column: Option<String>,
    /// Debezium's span context column (Java properties text), turned into W3C
    /// `traceparent`/`tracestate` headers.
    pub trace_column: String,
    /// tailbox's own headers: any of `lsn`, `xid`, `commit_ts`, or `none`.
    pub meta_headers: MetaHeaders,
    /// `debezium` or `cloudevents`.
    pub format: EventFormat,
    /// CloudEvents `source` (template; default `/tailbox/<schema>.<table>`).
    pub cloudevents_source: Option<String>,
    /// CloudEvents `type` (template); default: the event type column.
    pub cloudevents_type: Option<String>,
    /// CloudEvents `content-type`; default from the payload column's type.
    pub cloudevents_content_type: Option<String>,
    /// What the payload must be (`raw` or `json`).
    pub payload_format: PayloadFormat,
}

impl Default for TableMapping {
    fn default() -> Self {
        let c = ColumnNames::default();
        Self {
            table: "public.outbox".into(),
            column_id: c.id,
            column_type: c.event_type,
            column_aggregate_type: c.aggregate_type,
            column_aggregate_id: c.aggregate_id,
            column_payload: c.payload,
            topic_template: DEFAULT_TOPIC_TEMPLATE.into(),
            topic_column: None,
            key_column: None,
            header_columns: None,
            exclude_columns: Vec::new(),
            headers_column: None,
            trace_column: DEFAULT_TRACE_COLUMN.into(),
            meta_headers: MetaHeaders::default(),
            format: EventFormat::default(),
            cloudevents_source: None,
            cloudevents_type: None,
            cloudevents_content_type: None,
            payload_format: PayloadFormat::default(),
        }
    }
}

/// Column names as a list (`["a", "b"]`) or comma-separated text (`"a,b"`), as the
/// command line gives them.
fn names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Names::deserialize(d)? {
        Names::Text(text) => {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        Names::List(list) => list,
    })
}

fn some_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    names(d).map(Some)
}

/// Where a row's record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Rendered from columns.
    Template(TopicTemplate),
    /// A column's value, as is.
    Column(String),
}

/// The CloudEvents attributes that do not come from the event's own columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEventsConfig {
    /// `source`, with `{column}` placeholders.
    pub source: Vec<Segment>,
    /// `type`, with `{column}` placeholders; `None`: the event type column.
    pub event_type: Option<Vec<Segment>>,
    /// `content-type`; `None`: from the payload column's type.
    pub content_type: Option<String>,
}

/// The outbox table and how its rows become records: a [`TableMapping`], checked.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Schema of the outbox table.
    pub schema: String,
    /// Name of the outbox table.
    pub table: String,
    /// Column names.
    pub columns: ColumnNames,
    /// Topic template (also the table-less envelopes' and the webhook URL's).
    pub topic_template: TopicTemplate,
    /// Where each row goes: `topic_template`, or a topic column.
    pub route: Route,
    /// The key's column, before the aggregate id.
    pub key_column: Option<String>,
    /// Only these columns become headers, when set.
    pub header_columns: Option<Vec<String>>,
    /// These columns never become headers.
    pub exclude_columns: Vec<String>,
    /// A json column expanded into headers.
    pub headers_column: Option<String>,
    /// Debezium's span context column.
    pub trace_column: String,
    /// tailbox's own headers on each record.
    pub meta_headers: MetaHeaders,
    /// `None`: Debezium's headers; `Some`: CloudEvents.
    pub cloudevents: Option<CloudEventsConfig>,
    /// What the payload must be; a row whose payload is not goes to the dead-letter topic.
    pub payload_format: PayloadFormat,
}

/// A configuration value that cannot work, with the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}; fix: {fix}")]
pub struct ConfigError {
    /// The configuration field, e.g. `outbox_table` (the CLI names its flag).
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
    /// How to fix it.
    pub fix: String,
}

/// A column the table must have, and what wants it (for the startup check's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredColumn {
    /// The column.
    pub name: String,
    /// The configuration field that names it, e.g. `key_column`.
    pub field: &'static str,
    /// Whether it must be `json` or `jsonb`.
    pub json: bool,
}

impl OutboxConfig {
    /// Builds the configuration from `schema.table` (or `table`, meaning `public.table`;
    /// parts may be double-quoted as in SQL, see [`crate::identifier::parse_table`])
    /// and a topic template, everything else at its default.
    pub fn new(
        qualified_table: &str,
        columns: ColumnNames,
        topic_template: &str,
    ) -> Result<Self, ConfigError> {
        Self::from_mapping(&TableMapping {
            table: qualified_table.into(),
            column_id: columns.id,
            column_type: columns.event_type,
            column_aggregate_type: columns.aggregate_type,
            column_aggregate_id: columns.aggregate_id,
            column_payload: columns.payload,
            topic_template: topic_template.into(),
            ..TableMapping::default()
        })
    }

    /// Checks a table's mapping.
    pub fn from_mapping(m: &TableMapping) -> Result<Self, ConfigError> {
        let (schema, table) =
            crate::identifier::parse_table(&m.table).map_err(|reason| ConfigError {
                field: "outbox_table",
                value: m.table.clone(),
                reason,
                fix: "e.g. public.outbox, or \"My Schema\".\"Outbox\" as psql shows it".into(),
            })?;
        let names = [
            ("column_id", &m.column_id),
            ("column_aggregate_type", &m.column_aggregate_type),
            ("column_aggregate_id", &m.column_aggregate_id),
            ("column_type", &m.column_type),
            ("column_payload", &m.column_payload),
            ("trace_column", &m.trace_column),
        ];
        let optional = [
            ("topic_column", m.topic_column.as_ref()),
            ("key_column", m.key_column.as_ref()),
            ("headers_column", m.headers_column.as_ref()),
        ];
        let lists = [
            ("header_columns", m.header_columns.iter().flatten().collect::<Vec<_>>()),
            ("exclude_columns", m.exclude_columns.iter().collect()),
        ];
        let all = names
            .into_iter()
            .chain(optional.into_iter().filter_map(|(f, n)| n.map(|n| (f, n))))
            .chain(lists.into_iter().flat_map(|(f, l)| l.into_iter().map(move |n| (f, n))));
        for (field, name) in all {
            if name.trim().is_empty() {
                return Err(ConfigError {
                    field,
                    value: name.clone(),
                    reason: "a column name cannot be empty".into(),
                    fix: "name a column of the outbox table".into(),
                });
            }
        }
        let topic_template = TopicTemplate::parse(&m.topic_template)?;
        let route = match &m.topic_column {
            Some(column) => Route::Column(column.clone()),
            None => Route::Template(topic_template.clone()),
        };
        let template = |field: &'static str, text: &str| {
            parse_segments(text).map_err(|reason| ConfigError {
                field,
                value: text.into(),
                reason,
                fix: "write text with {column} placeholders, e.g. /shop/{aggregatetype}".into(),
            })
        };
        let cloudevents = match m.format {
            EventFormat::Debezium => None,
            EventFormat::CloudEvents => Some(CloudEventsConfig {
                source: match &m.cloudevents_source {
                    Some(text) => template("cloudevents_source", text)?,
                    None => vec![Segment::Literal(format!("/tailbox/{schema}.{table}"))],
                },
                event_type: m
                    .cloudevents_type
                    .as_deref()
                    .map(|text| template("cloudevents_type", text))
                    .transpose()?,
                content_type: m.cloudevents_content_type.clone(),
            }),
        };
        Ok(Self {
            schema,
            table,
            columns: ColumnNames {
                id: m.column_id.clone(),
                aggregate_type: m.column_aggregate_type.clone(),
                aggregate_id: m.column_aggregate_id.clone(),
                event_type: m.column_type.clone(),
                payload: m.column_payload.clone(),
            },
            topic_template,
            route,
            key_column: m.key_column.clone(),
            header_columns: m.header_columns.clone(),
            exclude_columns: m.exclude_columns.clone(),
            headers_column: m.headers_column.clone(),
            trace_column: m.trace_column.clone(),
            meta_headers: m.meta_headers,
            cloudevents,
            payload_format: m.payload_format,
        })
    }

    /// The column a template placeholder reads: `{aggregatetype}` is the aggregate-type
    /// column, any other name the column of that name.
    pub fn placeholder_column<'a>(&'a self, placeholder: &'a str) -> &'a str {
        if placeholder == AGGREGATE_TYPE { &self.columns.aggregate_type } else { placeholder }
    }

    /// The columns the table must have, each with the field that asks for it.
    pub fn required(&self) -> Vec<RequiredColumn> {
        let mut out: Vec<RequiredColumn> = Vec::new();
        let mut add = |name: &str, field: &'static str, json: bool| {
            if !out.iter().any(|r| r.name == name) {
                out.push(RequiredColumn { name: name.to_owned(), field, json });
            }
        };
        let c = &self.columns;
        let d = ColumnNames::default();
        add(&c.payload, "column_payload", false);
        match &self.route {
            Route::Column(column) => add(column, "topic_column", false),
            Route::Template(template) => {
                for placeholder in template.columns() {
                    add(self.placeholder_column(placeholder), "topic_template", false);
                }
            }
        }
        if let Some(key) = &self.key_column {
            add(key, "key_column", false);
        }
        if let Some(column) = &self.headers_column {
            add(column, "headers_column", true);
        }
        for column in self.header_columns.iter().flatten() {
            add(column, "header_columns", false);
        }
        for (name, default, field) in [
            (&c.id, &d.id, "column_id"),
            (&c.event_type, &d.event_type, "column_type"),
            (&c.aggregate_id, &d.aggregate_id, "column_aggregate_id"),
            (&c.aggregate_type, &d.aggregate_type, "column_aggregate_type"),
        ] {
            if ColumnNames::is_explicit(name, default) {
                add(name, field, false);
            }
        }
        if let Some(ce) = &self.cloudevents {
            add(&c.id, "column_id (CloudEvents needs an id)", false);
            match &ce.event_type {
                None => add(&c.event_type, "column_type (or set cloudevents_type)", false),
                Some(segments) => {
                    for s in segments {
                        if let Segment::Column(p) = s {
                            add(self.placeholder_column(p), "cloudevents_type", false);
                        }
                    }
                }
            }
            for s in &ce.source {
                if let Segment::Column(p) = s {
                    add(self.placeholder_column(p), "cloudevents_source", false);
                }
            }
        }
        out
    }

    /// The names of the columns the table must have.
    pub fn required_columns(&self) -> Vec<String> {
        self.required().into_iter().map(|r| r.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_name_defaults_to_public() -> Result<(), ConfigError> {
        let cfg = OutboxConfig::new("outbox", ColumnNames::default(), DEFAULT_TOPIC_TEMPLATE)?;
        assert_eq!((cfg.schema.as_str(), cfg.table.as_str()), ("public", "outbox"));
        let cfg = OutboxConfig::new("app.events", ColumnNames::default(), "x")?;
        assert_eq!((cfg.schema.as_str(), cfg.table.as_str()), ("app", "events"));
        Ok(())
    }

    #[test]
    fn bad_table_names_the_field() {
        let err = OutboxConfig::new("a.b.c", ColumnNames::default(), "x").err();
        assert!(err.is_some_and(|e| e.to_string().contains("outbox_table")));
    }

    #[test]
    fn debezium_defaults_require_only_payload_and_the_template_columns() -> Result<(), ConfigError>
    {
        let cfg = OutboxConfig::from_mapping(&TableMapping::default())?;
        assert_eq!(cfg.required_columns(), ["payload", "aggregatetype"]);
        let cfg = OutboxConfig::from_mapping(&TableMapping {
            column_type: "event_type".into(),
            topic_column: Some("destination_topic".into()),
            key_column: Some("partition_key".into()),
            headers_column: Some("metadata".into()),
            ..TableMapping::default()
        })?;
        let required = cfg.required();
        let names: Vec<&str> = required.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["payload", "destination_topic", "partition_key", "metadata", "event_type"]
        );
        assert!(required.iter().any(|r| r.name == "metadata" && r.json));
        Ok(())
    }

    #[test]
    fn a_table_mapping_reads_from_toml() {
        let text = r#"
            table = "public._outbox"
            column_type = "event_type"
            column_aggregate_id = "aggregate_id"
            column_payload = "event_data"
            topic_column = "destination_topic"
            key_column = "partition_key"
            exclude_columns = ["published", "published_at", "attempts"]
            header_columns = "trace_id, user_id"
            meta_headers = "lsn,xid"
            format = "cloudevents"
        "#;
        let m: TableMapping = toml::from_str(text).expect("valid TOML");
        assert_eq!(m.topic_column.as_deref(), Some("destination_topic"));
        assert_eq!(m.meta_headers, MetaHeaders::parse("lsn,xid").expect("valid"));
        assert_eq!(m.format, EventFormat::CloudEvents);
        assert_eq!(m.column_id, "id", "defaults fill the rest");
        assert_eq!(m.header_columns, Some(vec!["trace_id".to_owned(), "user_id".to_owned()]));
        assert_eq!(m.exclude_columns.len(), 3);
        let err = toml::from_str::<TableMapping>("tabel = \"x\"").expect_err("unknown key");
        assert!(err.to_string().contains("tabel"), "{err}");
    }

    #[test]
    fn cloudevents_needs_an_id_and_a_type() -> Result<(), ConfigError> {
        let mut m = TableMapping { format: EventFormat::CloudEvents, ..TableMapping::default() };
        let cfg = OutboxConfig::from_mapping(&m)?;
        assert!(cfg.required_columns().contains(&"id".to_owned()));
        assert!(cfg.required_columns().contains(&"type".to_owned()));
        m.cloudevents_type = Some("com.example.{workspace_provider}".into());
        let cfg = OutboxConfig::from_mapping(&m)?;
        assert!(!cfg.required_columns().contains(&"type".to_owned()));
        assert!(cfg.required_columns().contains(&"workspace_provider".to_owned()));
        Ok(())
    }
}

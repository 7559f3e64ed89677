//! What the outbox looks like: table, column names and the topic template.

use crate::topic::TopicTemplate;

/// Names of the columns the mapping reads (Debezium's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    /// Event id, published as header `id`.
    pub id: String,
    /// Aggregate type, substituted into the topic template.
    pub aggregate_type: String,
    /// Aggregate id, the record key.
    pub aggregate_id: String,
    /// Event type, published as header `type`.
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

/// The outbox table and how its rows become records.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Schema of the outbox table.
    pub schema: String,
    /// Name of the outbox table.
    pub table: String,
    /// Column names.
    pub columns: ColumnNames,
    /// Topic template.
    pub topic_template: TopicTemplate,
    /// What the payload must be; a row whose payload is not goes to the dead-letter topic.
    pub payload_format: PayloadFormat,
}

/// The format the payload column must have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

impl OutboxConfig {
    /// Builds the configuration from `schema.table` (or `table`, meaning `public.table`;
    /// parts may be double-quoted as in SQL, see [`crate::identifier::parse_table`])
    /// and a topic template.
    pub fn new(
        qualified_table: &str,
        columns: ColumnNames,
        topic_template: &str,
    ) -> Result<Self, ConfigError> {
        let (schema, table) =
            crate::identifier::parse_table(qualified_table).map_err(|reason| ConfigError {
                field: "outbox_table",
                value: qualified_table.into(),
                reason,
                fix: "e.g. public.outbox, or \"My Schema\".\"Outbox\" as psql shows it".into(),
            })?;
        for (field, name) in [
            ("column_id", &columns.id),
            ("column_aggregate_type", &columns.aggregate_type),
            ("column_aggregate_id", &columns.aggregate_id),
            ("column_type", &columns.event_type),
            ("column_payload", &columns.payload),
        ] {
            if name.is_empty() {
                return Err(ConfigError {
                    field,
                    value: String::new(),
                    reason: "a column name cannot be empty".into(),
                    fix: "name a column of the outbox table".into(),
                });
            }
        }
        Ok(Self {
            schema,
            table,
            columns,
            topic_template: TopicTemplate::parse(topic_template)?,
            payload_format: PayloadFormat::Raw,
        })
    }

    /// The columns the table must have.
    pub fn required_columns(&self) -> Vec<String> {
        let c = &self.columns;
        vec![c.aggregate_type.clone(), c.aggregate_id.clone(), c.payload.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_name_defaults_to_public() -> Result<(), ConfigError> {
        let cfg =
            OutboxConfig::new("outbox", ColumnNames::default(), "outbox.event.{aggregatetype}")?;
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
}

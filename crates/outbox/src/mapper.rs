//! [`OutboxMapper`]: follows Relation messages and maps inserts on the outbox table.
//!
//! pgoutput sends a Relation message before the first change of a table in each
//! session and again whenever the table's definition changed, so the layout is
//! recomputed on every one of them: an `ALTER TABLE` mid-stream just works. Column
//! positions are looked up once per Relation, never per row.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use tailbox_pgoutput::{ColumnValue, Insert, Relation};

use crate::{
    config::{OutboxConfig, PayloadFormat},
    record::OutboxRecord,
};

/// Topics cached per aggregate type before the cache is reset (bounds memory when
/// aggregate types are unbounded).
const TOPIC_CACHE_LIMIT: usize = 10_000;

/// A row that cannot become a record. Each one is definite for that row: retrying
/// gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// An insert named a relation whose Relation message never arrived (protocol violation).
    #[error("insert for relation oid {0} arrived before its Relation message")]
    UnknownRelation(u32),
    /// A column the mapping needs is NULL.
    #[error("column {column:?} is NULL")]
    NullColumn {
        /// The column.
        column: Arc<str>,
    },
    /// The outbox table has lost a column the mapping needs (ALTER TABLE … DROP COLUMN).
    #[error("outbox table {table} has no column {column:?}")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The topic derived from the aggregate type is not a valid Kafka topic name.
    #[error("invalid topic for aggregate type: {0}")]
    InvalidTopic(String),
    /// The payload is not valid in the configured format.
    #[error("payload is not valid {0}")]
    InvalidPayload(&'static str),
    /// A `pg_logical_emit_message` envelope is not what the table-less outbox expects.
    #[error("invalid outbox message envelope: {0}")]
    InvalidEnvelope(String),
    /// The row's column count does not match its Relation message.
    #[error("row has {got} columns, its relation has {expected}")]
    ColumnCount {
        /// Columns in the relation.
        expected: usize,
        /// Columns in the row.
        got: usize,
    },
}

/// What one column of the outbox relation becomes.
#[derive(Debug)]
enum ColumnRole {
    AggregateType,
    AggregateId,
    Payload,
    /// A header with this name.
    Header,
}

/// The role of each column of the outbox relation, in column order.
#[derive(Debug)]
struct OutboxLayout {
    /// `(role, column name or header name)` per column.
    columns: Vec<(ColumnRole, Arc<str>)>,
}

/// What a relation oid means to us.
#[derive(Debug)]
enum RelationKind {
    /// The outbox table: its column names, and the layout (or why it has none).
    Outbox(Vec<Arc<str>>, Result<OutboxLayout, MappingError>),
    Other,
}

/// Maps outbox inserts to records.
#[derive(Debug)]
pub struct OutboxMapper {
    config: OutboxConfig,
    relations: HashMap<u32, RelationKind>,
    topics: HashMap<Bytes, Arc<str>>,
}

impl MappingError {
    /// Whether this row alone is bad (dead-letter it, go on) rather than the stream
    /// (stop).
    pub fn is_poison(&self) -> bool {
        matches!(
            self,
            MappingError::NullColumn { .. }
                | MappingError::InvalidTopic(_)
                | MappingError::MissingColumn { .. }
                | MappingError::InvalidEnvelope(_)
                | MappingError::InvalidPayload(_)
        )
    }
}

impl OutboxMapper {
    /// The outbox table, `schema.table`.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.config.schema, self.config.table)
    }

    /// A mapper for one outbox table.
    pub fn new(config: OutboxConfig) -> Self {
        Self { config, relations: HashMap::new(), topics: HashMap::new() }
    }

    /// Records (or replaces) a relation's layout.
    pub fn on_relation(&mut self, relation: &Relation) {
        let kind = if relation.namespace == self.config.schema && relation.name == self.config.table
        {
            let names = relation.columns.iter().map(|c| Arc::from(c.name.as_str())).collect();
            RelationKind::Outbox(names, self.layout(relation))
        } else {
            RelationKind::Other
        };
        self.relations.insert(relation.oid, kind);
    }

    fn layout(&self, relation: &Relation) -> Result<OutboxLayout, MappingError> {
        let cols = &self.config.columns;
        for wanted in [&cols.aggregate_type, &cols.aggregate_id, &cols.payload] {
            if !relation.columns.iter().any(|c| &c.name == wanted) {
                return Err(MappingError::MissingColumn {
                    table: format!("{}.{}", relation.namespace, relation.name),
                    column: wanted.clone(),
                });
            }
        }
        let columns = relation
            .columns
            .iter()
            .map(|c| {
                let name = c.name.as_str();
                if name == cols.aggregate_type {
                    (ColumnRole::AggregateType, Arc::from(name))
                } else if name == cols.aggregate_id {
                    (ColumnRole::AggregateId, Arc::from(name))
                } else if name == cols.payload {
                    (ColumnRole::Payload, Arc::from(name))
                } else if name == cols.id {
                    (ColumnRole::Header, Arc::from(crate::headers::ID))
                } else if name == cols.event_type {
                    (ColumnRole::Header, Arc::from(crate::headers::TYPE))
                } else {
                    (ColumnRole::Header, Arc::from(name))
                }
            })
            .collect();
        Ok(OutboxLayout { columns })
    }

    /// Maps an insert into `out` (whose buffers are reused). Returns `Ok(false)` when
    /// the insert is not on the outbox table.
    pub fn map_insert(
        &mut self,
        insert: &Insert,
        out: &mut OutboxRecord,
    ) -> Result<bool, MappingError> {
        let layout = match self.relations.get(&insert.relation_oid) {
            Some(RelationKind::Other) => return Ok(false),
            Some(RelationKind::Outbox(_, Ok(layout))) => layout,
            Some(RelationKind::Outbox(_, Err(err))) => return Err(err.clone()),
            None => return Err(MappingError::UnknownRelation(insert.relation_oid)),
        };
        let tuple = &insert.new_tuple;
        if tuple.column_count() != layout.columns.len() {
            return Err(MappingError::ColumnCount {
                expected: layout.columns.len(),
                got: tuple.column_count(),
            });
        }
        out.headers.clear();
        let mut aggregate_type = None;
        let (mut key, mut value) = (None, None);
        for ((role, name), column) in layout.columns.iter().zip(tuple.columns()) {
            let bytes = match column {
                ColumnValue::Text(b) | ColumnValue::Binary(b) => Some(b),
                ColumnValue::Null | ColumnValue::UnchangedToast => None,
            };
            match role {
                ColumnRole::AggregateType => aggregate_type = Some(require(bytes, name)?),
                ColumnRole::AggregateId => key = Some(require(bytes, name)?),
                ColumnRole::Payload => value = Some(require(bytes, name)?),
                ColumnRole::Header => {
                    if let Some(bytes) = bytes {
                        out.headers.push((Arc::clone(name), bytes));
                    }
                }
            }
        }
        // The layout has exactly one column of each role, so all three are set here.
        let (Some(aggregate_type), Some(key), Some(value)) = (aggregate_type, key, value) else {
            return Err(MappingError::ColumnCount { expected: layout.columns.len(), got: 0 });
        };
        if self.config.payload_format == PayloadFormat::Json
            && serde_json::from_slice::<&serde_json::value::RawValue>(&value).is_err()
        {
            return Err(MappingError::InvalidPayload("JSON"));
        }
        out.key = key;
        out.value = value;
        out.topic = self.topic(aggregate_type)?;
        Ok(true)
    }

    /// Fills `out` with what can be salvaged of an outbox row that cannot be mapped, for
    /// the dead-letter topic: key = the aggregate id, value = the payload (each empty if
    /// NULL or absent), and every other non-NULL column as a header under its column
    /// name. Returns `false` if the insert is not on a known outbox relation.
    pub fn dead_letter(
        &self,
        insert: &Insert,
        dlq_topic: &Arc<str>,
        out: &mut OutboxRecord,
    ) -> bool {
        let Some(RelationKind::Outbox(names, _)) = self.relations.get(&insert.relation_oid) else {
            return false;
        };
        let cols = &self.config.columns;
        out.topic = Arc::clone(dlq_topic);
        out.key = Bytes::new();
        out.value = Bytes::new();
        out.headers.clear();
        for (name, column) in names.iter().zip(insert.new_tuple.columns()) {
            let Some(bytes) = column.as_bytes().cloned() else { continue };
            if **name == *cols.aggregate_id {
                out.key = bytes;
            } else if **name == *cols.payload {
                out.value = bytes;
            } else {
                out.headers.push((Arc::clone(name), bytes));
            }
        }
        true
    }

    /// Maps a table-less outbox message (see [`crate::envelope`]).
    pub fn map_message(&self, content: &Bytes, out: &mut OutboxRecord) -> Result<(), MappingError> {
        crate::envelope::map_envelope(content, &self.config.topic_template, out)
    }

    fn topic(&mut self, aggregate_type: Bytes) -> Result<Arc<str>, MappingError> {
        if let Some(topic) = self.topics.get(&aggregate_type) {
            return Ok(Arc::clone(topic));
        }
        let topic: Arc<str> = self
            .config
            .topic_template
            .render(&aggregate_type)
            .map_err(MappingError::InvalidTopic)?
            .into();
        if self.topics.len() >= TOPIC_CACHE_LIMIT {
            self.topics.clear();
        }
        self.topics.insert(aggregate_type, Arc::clone(&topic));
        Ok(topic)
    }
}

fn require(value: Option<Bytes>, column: &Arc<str>) -> Result<Bytes, MappingError> {
    value.ok_or_else(|| MappingError::NullColumn { column: Arc::clone(column) })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tailbox_pgoutput::{ColumnValue, Insert, Relation, RelationColumn, TupleData};

    use super::*;
    use crate::config::ColumnNames;

    fn relation(oid: u32, table: &str, columns: &[&str]) -> Relation {
        Relation {
            oid,
            namespace: "public".into(),
            name: table.into(),
            replica_identity: b'd',
            columns: columns
                .iter()
                .map(|name| RelationColumn {
                    flags: 0,
                    name: (*name).into(),
                    type_oid: 25,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    fn insert(oid: u32, values: &[Option<&str>]) -> Insert {
        let columns: Vec<ColumnValue> = values
            .iter()
            .map(|v| match v {
                Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
                None => ColumnValue::Null,
            })
            .collect();
        Insert {
            relation_oid: oid,
            new_tuple: TupleData::from_columns(&columns).expect("encodable"),
        }
    }

    fn mapper() -> OutboxMapper {
        let config = OutboxConfig::new(
            "public.outbox",
            ColumnNames::default(),
            "outbox.event.{aggregatetype}",
        )
        .expect("valid config");
        OutboxMapper::new(config)
    }

    const COLUMNS: &[&str] =
        &["id", "aggregatetype", "aggregateid", "type", "payload", "tracingspancontext"];

    #[test]
    fn maps_a_debezium_style_row() -> Result<(), MappingError> {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let row = [
            Some("e-1"),
            Some("Order"),
            Some("o-7"),
            Some("OrderPlaced"),
            Some("{\"a\": 1}"),
            None,
        ];
        assert!(m.map_insert(&insert(1, &row), &mut out)?);
        assert_eq!(&*out.topic, "outbox.event.Order");
        assert_eq!(out.key.as_ref(), b"o-7");
        assert_eq!(out.value.as_ref(), b"{\"a\": 1}");
        let headers: Vec<(&str, &[u8])> =
            out.headers.iter().map(|(k, v)| (&**k, v.as_ref())).collect();
        assert_eq!(headers, vec![("id", b"e-1".as_slice()), ("type", b"OrderPlaced".as_slice())]);
        Ok(())
    }

    #[test]
    fn json_payload_format_dead_letters_invalid_json() {
        let mut m = mapper();
        m.config.payload_format = PayloadFormat::Json;
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let bad = [Some("e"), Some("Order"), Some("o"), Some("T"), Some("{not json"), None];
        let err = m.map_insert(&insert(1, &bad), &mut out).err();
        assert!(err.as_ref().is_some_and(MappingError::is_poison), "{err:?}");
        let good = [Some("e"), Some("Order"), Some("o"), Some("T"), Some("{\"a\": [1]}"), None];
        assert_eq!(m.map_insert(&insert(1, &good), &mut out), Ok(true));
    }

    #[test]
    fn ignores_other_tables() -> Result<(), MappingError> {
        let mut m = mapper();
        m.on_relation(&relation(2, "orders", &["id", "total"]));
        let mut out = OutboxRecord::default();
        assert!(!m.map_insert(&insert(2, &[Some("1"), Some("9")]), &mut out)?);
        Ok(())
    }

    #[test]
    fn follows_alter_table_mid_stream() -> Result<(), MappingError> {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let row = [Some("e-1"), Some("Order"), Some("o-7"), Some("T"), Some("{}"), None];
        m.map_insert(&insert(1, &row), &mut out)?;
        // ALTER TABLE outbox ADD COLUMN tenant text: a new Relation message, then wider rows.
        let mut wider = COLUMNS.to_vec();
        wider.push("tenant");
        m.on_relation(&relation(1, "outbox", &wider));
        let row =
            [Some("e-2"), Some("Order"), Some("o-7"), Some("T"), Some("{}"), None, Some("acme")];
        m.map_insert(&insert(1, &row), &mut out)?;
        assert!(out.headers.iter().any(|(k, v)| &**k == "tenant" && v.as_ref() == b"acme"));
        Ok(())
    }

    #[test]
    fn poison_rows_are_named() {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let null_type = [Some("e"), None, Some("o"), Some("T"), Some("{}"), None];
        let err = m.map_insert(&insert(1, &null_type), &mut out).err();
        assert!(
            matches!(err, Some(MappingError::NullColumn { ref column }) if &**column == "aggregatetype")
        );
        let bad_topic = [Some("e"), Some("has space"), Some("o"), Some("T"), Some("{}"), None];
        assert!(matches!(
            m.map_insert(&insert(1, &bad_topic), &mut out),
            Err(MappingError::InvalidTopic(_))
        ));
        assert_eq!(
            m.map_insert(&insert(9, &bad_topic), &mut out),
            Err(MappingError::UnknownRelation(9))
        );
    }

    #[test]
    fn dead_letters_keep_the_original_bytes() {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let row = [Some("e"), None, Some("o-1"), Some("T"), Some("{\"x\": 1}"), None];
        let dlq: Arc<str> = Arc::from("outbox.dlq");
        assert!(m.dead_letter(&insert(1, &row), &dlq, &mut out));
        assert_eq!(
            (&*out.topic, out.key.as_ref(), out.value.as_ref()),
            ("outbox.dlq", b"o-1".as_slice(), b"{\"x\": 1}".as_slice())
        );
        let names: Vec<&str> = out.headers.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, vec!["id", "type"]);
        assert!(!m.dead_letter(&insert(5, &row), &dlq, &mut out), "unknown relation");
    }

    #[test]
    fn a_dropped_column_is_reported_on_the_next_row() {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", &["id", "aggregatetype", "aggregateid", "type"]));
        let mut out = OutboxRecord::default();
        let row = [Some("e"), Some("Order"), Some("o"), Some("T")];
        assert!(matches!(
            m.map_insert(&insert(1, &row), &mut out),
            Err(MappingError::MissingColumn { ref column, .. }) if column == "payload"
        ));
    }
}

//! [`OutboxMapper`]: follows Relation messages and maps inserts on the outbox tables.
//!
//! pgoutput sends a Relation message before the first change of a table in each
//! session and again whenever the table's definition changed, so the layout is
//! recomputed on every one of them: an `ALTER TABLE` mid-stream just works. What each
//! column becomes (payload, key, topic, header, …) is decided once per Relation, by
//! column position; a row is then read once into a reused list of values (zero-copy
//! slices) and the record is put together from positions, never by looking names up.
//!
//! Several tables: each configured table has its own mapping; with a catch-all mapping,
//! every other table the publication sends gets it (pgoutput only sends the
//! publication's tables). All of them arrive in one stream, in commit order.
//!
//! Allocation: with Debezium's format and no `headers_column`, mapping a row allocates
//! nothing once the buffers have grown (`tests/hot_path_allocations.rs`). A topic is
//! rendered into a reused buffer and looked up in a cache of the topics seen.

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    sync::Arc,
};

use bytes::Bytes;
use tailbox_pgoutput::{Insert, Relation};

use crate::{
    config::{EventFormat, OutboxConfig, PayloadFormat, Route, TableMapping},
    headers::{self, MetaHeaders, cloudevents as ce},
    record::{HeaderSlots, OutboxRecord},
    topic::{Segment, validate_topic},
};

/// Topics cached before the cache is reset (bounds memory when topics are unbounded).
const TOPIC_CACHE_LIMIT: usize = 10_000;
/// Header names from `headers_column` objects cached before that cache is reset.
const NAME_CACHE_LIMIT: usize = 1_000;

/// PostgreSQL type oids the layout looks at.
const JSON_OID: u32 = 114;
const JSONB_OID: u32 = 3802;
const BYTEA_OID: u32 = 17;

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
    /// The topic (from the template or the topic column) is not a valid topic name.
    #[error("invalid topic: {0}")]
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

/// Part of a template, with columns resolved to positions.
#[derive(Debug)]
enum Piece {
    Literal(Box<str>),
    Column(usize, Arc<str>),
}

/// Where the topic comes from, by position.
#[derive(Debug)]
enum TopicLayout {
    Template(Vec<Piece>),
    Column(usize, Arc<str>),
}

/// A CloudEvents attribute: fixed, a column, or a template.
#[derive(Debug)]
enum Attribute {
    Fixed(Bytes),
    Column(usize, Arc<str>),
    Template(Vec<Piece>),
}

/// The CloudEvents attributes, by position.
#[derive(Debug)]
struct CloudEventsLayout {
    id: (usize, Arc<str>),
    source: Attribute,
    event_type: Attribute,
    content_type: Bytes,
    names: [Arc<str>; 5],
}

/// What the columns of one outbox relation become, by position.
#[derive(Debug)]
struct OutboxLayout {
    columns: usize,
    payload: (usize, Arc<str>),
    /// Key columns in order of preference (key column, then aggregate id).
    keys: Vec<(usize, Arc<str>)>,
    topic: TopicLayout,
    /// Columns published as headers: `(position, header name)`, in column order.
    headers: Vec<(usize, Arc<str>)>,
    /// A json column expanded into headers.
    headers_json: Option<(usize, Arc<str>)>,
    /// Debezium's span context column.
    trace: Option<usize>,
    cloudevents: Option<CloudEventsLayout>,
    meta: MetaHeaders,
    payload_format: PayloadFormat,
}

/// What a relation oid means to us.
#[derive(Debug)]
enum RelationKind {
    /// An outbox table: which configured table, its column names, and the layout (or why
    /// it has none).
    Outbox {
        table: usize,
        names: Vec<Arc<str>>,
        layout: Box<Result<OutboxLayout, MappingError>>,
    },
    Other,
}

/// Maps outbox inserts to records.
#[derive(Debug)]
pub struct OutboxMapper {
    /// The configured tables; the first is the one table-less envelopes use.
    tables: Vec<OutboxConfig>,
    /// `schema.table` of each entry of `tables`.
    table_names: Vec<String>,
    /// The mapping of any other table the publication sends, if any.
    catch_all: Option<TableMapping>,
    relations: HashMap<u32, RelationKind>,
    /// The table of the last row mapped (for dead letters' `source_table`).
    last_table: usize,
    topics: HashSet<Arc<str>>,
    /// The topic of the last row mapped: most rows go where the last one went, and
    /// then the topic is neither looked up nor its `Arc` cloned.
    last_topic: Option<Arc<str>>,
    header_names: HashMap<String, Arc<str>>,
    /// Where the current row's values lie in its tuple, by position (no handle on the
    /// bytes is taken until a value goes into the record).
    values: Vec<Option<Range<usize>>>,
    /// Reused buffer for rendering topics.
    scratch: String,
}

impl OutboxMapper {
    /// A mapper for one outbox table.
    pub fn new(config: OutboxConfig) -> Self {
        Self::with_tables(vec![config], None)
    }

    /// A mapper for several tables (at least one), and optionally every other table of
    /// the publication with `catch_all` (its `table` is ignored).
    pub fn with_tables(tables: Vec<OutboxConfig>, catch_all: Option<TableMapping>) -> Self {
        let table_names = tables.iter().map(|t| format!("{}.{}", t.schema, t.table)).collect();
        Self {
            tables,
            table_names,
            catch_all,
            relations: HashMap::new(),
            last_table: 0,
            topics: HashSet::new(),
            last_topic: None,
            header_names: HashMap::new(),
            values: Vec::new(),
            scratch: String::new(),
        }
    }

    /// The outbox table of the last row mapped (the first configured one before any),
    /// `schema.table`.
    pub fn table_name(&self) -> String {
        self.table_name_at(self.last_table)
    }

    /// The index of the outbox table of the last row mapped (for
    /// [`OutboxMapper::table_name_at`]).
    pub fn last_table(&self) -> usize {
        self.last_table
    }

    /// The outbox table with index `index` ([`OutboxMapper::last_table`]),
    /// `schema.table`.
    pub fn table_name_at(&self, index: usize) -> String {
        self.table_names.get(index).cloned().unwrap_or_default()
    }

    /// The configuration table-less envelopes are mapped with.
    fn first(&self) -> &OutboxConfig {
        &self.tables[0]
    }

    /// Records (or replaces) a relation's layout.
    pub fn on_relation(&mut self, relation: &Relation) {
        let configured = self
            .tables
            .iter()
            .position(|t| relation.namespace == t.schema && relation.name == t.table);
        let index = match (configured, &self.catch_all) {
            (Some(index), _) => Some(index),
            (None, Some(mapping)) => {
                let table = crate::identifier::quote(&relation.namespace)
                    + "."
                    + &crate::identifier::quote(&relation.name);
                OutboxConfig::from_mapping(&TableMapping { table, ..mapping.clone() }).ok().map(
                    |config| {
                        self.table_names.push(format!("{}.{}", config.schema, config.table));
                        self.tables.push(config);
                        self.tables.len() - 1
                    },
                )
            }
            (None, None) => None,
        };
        let kind = match index {
            Some(table) => RelationKind::Outbox {
                table,
                names: relation.columns.iter().map(|c| Arc::from(c.name.as_str())).collect(),
                layout: Box::new(layout(&self.tables[table], relation)),
            },
            None => RelationKind::Other,
        };
        self.relations.insert(relation.oid, kind);
    }

    /// Maps an insert into `out` (whose buffers are reused). Returns `Ok(false)` when
    /// the insert is not on an outbox table.
    pub fn map_insert(
        &mut self,
        insert: &Insert,
        out: &mut OutboxRecord,
    ) -> Result<bool, MappingError> {
        let layout = match self.relations.get(&insert.relation_oid) {
            Some(RelationKind::Other) => return Ok(false),
            Some(RelationKind::Outbox { table, layout, .. }) => {
                self.last_table = *table;
                (**layout).as_ref().map_err(Clone::clone)?
            }
            None => return Err(MappingError::UnknownRelation(insert.relation_oid)),
        };
        let tuple = &insert.new_tuple;
        if tuple.column_count() != layout.columns {
            return Err(MappingError::ColumnCount {
                expected: layout.columns,
                got: tuple.column_count(),
            });
        }
        self.values.clear();
        self.values.extend(tuple.spans());
        let mut row = Row {
            raw: tuple.raw(),
            values: &self.values,
            topics: &mut self.topics,
            last_topic: &mut self.last_topic,
            names: &mut self.header_names,
            scratch: &mut self.scratch,
        };
        row.map(layout, out).map(|()| true)
    }

    /// Fills `out` with what can be salvaged of an outbox row that cannot be mapped, for
    /// the dead-letter topic: key = the key column's or aggregate id's value, value =
    /// the payload (each empty if NULL or absent), and every other non-NULL column as a
    /// header under its column name. Returns `false` if the insert is not on a known
    /// outbox relation.
    pub fn dead_letter(
        &self,
        insert: &Insert,
        dlq_topic: &Arc<str>,
        out: &mut OutboxRecord,
    ) -> bool {
        let Some(RelationKind::Outbox { table, names, .. }) =
            self.relations.get(&insert.relation_oid)
        else {
            return false;
        };
        let config = &self.tables[*table];
        let key_columns: Vec<&str> = config
            .key_column
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(config.columns.aggregate_id.as_str()))
            .collect();
        out.topic = Arc::clone(dlq_topic);
        out.key = Bytes::new();
        out.value = Bytes::new();
        out.headers.clear();
        out.meta = MetaHeaders::default();
        let mut key_rank = usize::MAX;
        for (name, column) in names.iter().zip(insert.new_tuple.columns()) {
            let Some(bytes) = column.as_bytes().cloned() else { continue };
            if let Some(rank) = key_columns.iter().position(|k| **k == **name) {
                if rank < key_rank {
                    key_rank = rank;
                    out.key = bytes;
                }
            } else if **name == *config.columns.payload {
                out.value = bytes;
            } else {
                out.headers.push((Arc::clone(name), bytes));
            }
        }
        true
    }

    /// Maps a table-less outbox message (see [`crate::envelope`]).
    pub fn map_message(&self, content: &Bytes, out: &mut OutboxRecord) -> Result<(), MappingError> {
        let first = self.first();
        crate::envelope::map_envelope(content, &first.topic_template, out)?;
        out.meta = first.meta_headers;
        Ok(())
    }
}

/// One row being mapped: its values and the mapper's reused buffers.
struct Row<'m> {
    /// The row's encoded columns.
    raw: &'m Bytes,
    /// Where each column's value lies in `raw` (`None`: NULL).
    values: &'m [Option<Range<usize>>],
    topics: &'m mut HashSet<Arc<str>>,
    last_topic: &'m mut Option<Arc<str>>,
    names: &'m mut HashMap<String, Arc<str>>,
    scratch: &'m mut String,
}

impl<'m> Row<'m> {
    /// Column `index`'s value, borrowed.
    fn value(&self, index: usize) -> Option<&'m [u8]> {
        let raw: &'m [u8] = self.raw;
        self.values.get(index)?.clone().and_then(|span| raw.get(span))
    }

    /// Column `index`'s value as a handle for the record (a slice of the tuple).
    fn bytes(&self, index: usize) -> Option<Bytes> {
        let span = self.values.get(index)?.clone()?;
        (span.end <= self.raw.len()).then(|| self.raw.slice(span))
    }

    fn require(&self, (index, name): &(usize, Arc<str>)) -> Result<Bytes, MappingError> {
        self.bytes(*index).ok_or_else(|| MappingError::NullColumn { column: Arc::clone(name) })
    }

    fn map(&mut self, layout: &OutboxLayout, out: &mut OutboxRecord) -> Result<(), MappingError> {
        let value = self.require(&layout.payload)?;
        if layout.payload_format == PayloadFormat::Json
            && serde_json::from_slice::<&serde_json::value::RawValue>(&value).is_err()
        {
            return Err(MappingError::InvalidPayload("JSON"));
        }
        let key = match layout.keys.iter().find_map(|(i, _)| self.bytes(*i)) {
            Some(key) => key,
            None => match layout.keys.first() {
                Some((_, name)) => {
                    return Err(MappingError::NullColumn { column: Arc::clone(name) });
                }
                None => Bytes::new(),
            },
        };
        self.topic(&layout.topic, &mut out.topic)?;
        out.meta = layout.meta;
        let mut headers = HeaderSlots::new(&mut out.headers);
        if let Some(ce) = &layout.cloudevents {
            self.cloudevents(ce, &mut headers)?;
            out.meta = out.meta.with(MetaHeaders::CE_TIME);
        }
        for (index, name) in &layout.headers {
            if let Some(bytes) = self.bytes(*index) {
                headers.push(name, bytes);
            }
        }
        if let Some(index) = layout.trace
            && let Some(bytes) = self.value(index)
        {
            let context = crate::trace::from_properties(&String::from_utf8_lossy(bytes));
            for (name, value) in [
                (headers::TRACEPARENT, context.traceparent),
                (headers::TRACESTATE, context.tracestate),
            ] {
                if let Some(value) = value {
                    headers.push(&self.name(name), Bytes::from(value));
                }
            }
        }
        if let Some(column) = &layout.headers_json
            && let Some(bytes) = self.bytes(column.0)
        {
            self.expand_json(column, bytes, &mut headers);
        }
        drop(headers);
        out.key = key;
        out.value = value;
        Ok(())
    }

    /// Renders (or reads) the topic into `out`, checks it once, and shares it through
    /// the cache.
    fn topic(&mut self, layout: &TopicLayout, out: &mut Arc<str>) -> Result<(), MappingError> {
        match layout {
            TopicLayout::Template(pieces) => self.render(pieces)?,
            TopicLayout::Column(index, name) => {
                let text = column_text(self.value(*index), name)?;
                self.scratch.clear();
                self.scratch.push_str(text);
            }
        }
        if let Some(last) = self.last_topic.as_ref()
            && **last == **self.scratch
        {
            if !Arc::ptr_eq(last, out) {
                *out = Arc::clone(last);
            }
            return Ok(());
        }
        let topic = match self.topics.get(self.scratch.as_str()) {
            Some(topic) => Arc::clone(topic),
            None => {
                validate_topic(self.scratch).map_err(MappingError::InvalidTopic)?;
                if self.topics.len() >= TOPIC_CACHE_LIMIT {
                    self.topics.clear();
                }
                let topic: Arc<str> = Arc::from(self.scratch.as_str());
                self.topics.insert(Arc::clone(&topic));
                topic
            }
        };
        *self.last_topic = Some(Arc::clone(&topic));
        *out = topic;
        Ok(())
    }

    /// Renders `pieces` into the scratch buffer.
    fn render(&mut self, pieces: &[Piece]) -> Result<(), MappingError> {
        self.scratch.clear();
        for piece in pieces {
            match piece {
                Piece::Literal(text) => self.scratch.push_str(text),
                Piece::Column(index, name) => {
                    let text = column_text(self.value(*index), name)?;
                    self.scratch.push_str(text);
                }
            }
        }
        Ok(())
    }

    fn attribute(&mut self, attribute: &Attribute) -> Result<Bytes, MappingError> {
        match attribute {
            Attribute::Fixed(bytes) => Ok(bytes.clone()),
            Attribute::Column(index, name) => self.require(&(*index, Arc::clone(name))),
            Attribute::Template(pieces) => {
                self.render(pieces)?;
                Ok(Bytes::copy_from_slice(self.scratch.as_bytes()))
            }
        }
    }

    fn cloudevents(
        &mut self,
        ce: &CloudEventsLayout,
        headers: &mut HeaderSlots<'_>,
    ) -> Result<(), MappingError> {
        let id = self.require(&ce.id)?;
        let source = self.attribute(&ce.source)?;
        let event_type = self.attribute(&ce.event_type)?;
        let [specversion, id_name, source_name, type_name, content_type] = &ce.names;
        for (name, value) in [
            (specversion, Bytes::from_static(b"1.0")),
            (id_name, id),
            (source_name, source),
            (type_name, event_type),
            (content_type, ce.content_type.clone()),
        ] {
            headers.push(name, value);
        }
        Ok(())
    }

    /// One header per key of a JSON object (strings as they are, other values as JSON
    /// text, `null`s left out); anything but an object becomes one header named after
    /// the column, as stored.
    fn expand_json(
        &mut self,
        (_, column): &(usize, Arc<str>),
        bytes: Bytes,
        headers: &mut HeaderSlots<'_>,
    ) {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(object)) => {
                for (key, value) in object {
                    let value = match value {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(text) => Bytes::from(text),
                        other => Bytes::from(other.to_string()),
                    };
                    headers.push(&self.name(&key), value);
                }
            }
            Ok(serde_json::Value::Null) => {}
            _ => headers.push(column, bytes),
        }
    }

    /// A shared header name.
    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return Arc::clone(shared);
        }
        if self.names.len() >= NAME_CACHE_LIMIT {
            self.names.clear();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), Arc::clone(&shared));
        shared
    }
}

/// Decides what each column of `relation` becomes under `config`.
fn layout(config: &OutboxConfig, relation: &Relation) -> Result<OutboxLayout, MappingError> {
    let names: Vec<&str> = relation.columns.iter().map(|c| c.name.as_str()).collect();
    let table = || format!("{}.{}", relation.namespace, relation.name);
    let position = |name: &str| names.iter().position(|n| *n == name);
    let require = |name: &str| -> Result<(usize, Arc<str>), MappingError> {
        position(name)
            .map(|i| (i, Arc::from(name)))
            .ok_or_else(|| MappingError::MissingColumn { table: table(), column: name.to_owned() })
    };
    for required in config.required() {
        require(&required.name)?;
    }
    let pieces = |segments: &[Segment]| -> Result<Vec<Piece>, MappingError> {
        segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => Ok(Piece::Literal(text.as_str().into())),
                Segment::Column(p) => {
                    require(config.placeholder_column(p)).map(|(i, n)| Piece::Column(i, n))
                }
            })
            .collect()
    };
    let c = &config.columns;
    let payload = require(&c.payload)?;
    let mut keys = Vec::new();
    if let Some(key) = &config.key_column {
        keys.push(require(key)?);
    }
    if let Some(i) = position(&c.aggregate_id)
        && !keys.iter().any(|(k, _)| *k == i)
    {
        keys.push((i, Arc::from(c.aggregate_id.as_str())));
    }
    let topic = match &config.route {
        Route::Column(column) => {
            let (i, n) = require(column)?;
            TopicLayout::Column(i, n)
        }
        Route::Template(template) => TopicLayout::Template(pieces(template.segments())?),
    };
    let headers_json = config.headers_column.as_deref().map(require).transpose()?;
    let trace = position(&config.trace_column);
    let cloudevents = match &config.cloudevents {
        None => None,
        Some(ce) => Some(CloudEventsLayout {
            id: require(&c.id)?,
            source: match ce.source.as_slice() {
                [Segment::Literal(text)] => Attribute::Fixed(Bytes::from(text.clone())),
                segments => Attribute::Template(pieces(segments)?),
            },
            event_type: match &ce.event_type {
                None => {
                    let (i, n) = require(&c.event_type)?;
                    Attribute::Column(i, n)
                }
                Some(segments) => match segments.as_slice() {
                    [Segment::Literal(text)] => Attribute::Fixed(Bytes::from(text.clone())),
                    segments => Attribute::Template(pieces(segments)?),
                },
            },
            content_type: Bytes::from(ce.content_type.clone().unwrap_or_else(|| {
                match relation.columns[payload.0].type_oid {
                    JSON_OID | JSONB_OID => "application/json",
                    BYTEA_OID => "application/octet-stream",
                    _ => "text/plain; charset=utf-8",
                }
                .to_owned()
            })),
            names: [ce::SPECVERSION, ce::ID, ce::SOURCE, ce::TYPE, ce::CONTENT_TYPE].map(Arc::from),
        }),
    };
    let format =
        if config.cloudevents.is_some() { EventFormat::CloudEvents } else { EventFormat::Debezium };
    // Columns with a job of their own are not headers unless listed in header_columns.
    let mut roles: Vec<usize> = vec![payload.0];
    roles.extend(keys.iter().map(|(i, _)| *i));
    roles.extend(position(&c.aggregate_type));
    roles.extend(headers_json.as_ref().map(|(i, _)| *i));
    roles.extend(trace);
    if let TopicLayout::Column(i, _) = &topic {
        roles.push(*i);
    }
    let id = position(&c.id);
    let event_type = position(&c.event_type);
    let mut headers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if config.exclude_columns.iter().any(|e| e == name) {
            continue;
        }
        let listed = config.header_columns.as_ref().map(|list| list.iter().any(|h| h == name));
        let passes_through = matches!(*name, headers::TRACEPARENT | headers::TRACESTATE);
        let header: Arc<str> = if Some(i) == id || Some(i) == event_type {
            // The event's identity: `id`/`type` headers (CloudEvents: `ce_id`/`ce_type`).
            match format {
                EventFormat::CloudEvents if listed != Some(true) => continue,
                EventFormat::CloudEvents => Arc::from(*name),
                EventFormat::Debezium if Some(i) == id => Arc::from(headers::ID),
                EventFormat::Debezium => Arc::from(headers::TYPE),
            }
        } else {
            match listed {
                Some(true) => Arc::from(*name),
                Some(false) if passes_through => Arc::from(*name),
                Some(false) => continue,
                None if roles.contains(&i) => continue,
                None => Arc::from(*name),
            }
        };
        headers.push((i, header));
    }
    Ok(OutboxLayout {
        columns: names.len(),
        payload,
        keys,
        topic,
        headers,
        headers_json,
        trace,
        cloudevents,
        meta: config.meta_headers,
        payload_format: config.payload_format,
    })
}

/// The text of a column's `value` (column `name`) of the current row, for a topic: NULL
/// and invalid UTF-8 are refused (the row goes to the dead letters with the reason).
fn column_text<'v>(value: Option<&'v [u8]>, name: &Arc<str>) -> Result<&'v str, MappingError> {
    let bytes = value.ok_or_else(|| MappingError::NullColumn { column: Arc::clone(name) })?;
    std::str::from_utf8(bytes)
        .map_err(|_| MappingError::InvalidTopic(format!("column {name:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tailbox_pgoutput::{ColumnValue, Insert, Relation, RelationColumn, TupleData};

    use super::*;
    use crate::config::ColumnNames;
    use crate::topic::validate_topic;

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
    fn a_reused_record_carries_only_its_own_headers() -> Result<(), MappingError> {
        // The record is reused from row to row and keeps the last row's header names
        // (see HeaderSlots): a row with fewer headers, or other names, must not show
        // any of the previous row's.
        let config = OutboxConfig::new(
            "public.outbox",
            ColumnNames::default(),
            "outbox.event.{aggregatetype}",
        )
        .expect("valid config");
        let mut m = OutboxMapper::with_tables(vec![config], Some(TableMapping::default()));
        m.on_relation(&relation(1, "outbox", COLUMNS));
        m.on_relation(&relation(2, "outbox2", &["aggregatetype", "aggregateid", "payload", "x"]));
        let mut out = OutboxRecord::default();
        let full = [Some("e-1"), Some("Order"), Some("o-7"), Some("Placed"), Some("{}"), None];
        assert!(m.map_insert(&insert(1, &full), &mut out)?);
        assert_eq!(
            header_list(&out),
            [("id".into(), "e-1".into()), ("type".into(), "Placed".into())]
        );
        out.release();
        assert!(out.headers.iter().all(|(_, v)| v.is_empty()), "values dropped");
        let no_id = [None, Some("Order"), Some("o-8"), Some("Paid"), Some("{}"), None];
        assert!(m.map_insert(&insert(1, &no_id), &mut out)?);
        assert_eq!(header_list(&out), [("type".into(), "Paid".into())]);
        out.release();
        let other_table = [Some("Order"), Some("o-9"), Some("{}"), Some("1")];
        assert!(m.map_insert(&insert(2, &other_table), &mut out)?);
        assert_eq!(header_list(&out), [("x".into(), "1".into())]);
        out.release();
        let bad = [Some("e-2"), Some("Order"), None, Some("Placed"), Some("{}"), None];
        assert!(m.map_insert(&insert(1, &bad), &mut out).is_err(), "NULL aggregate id");
        assert!(m.map_insert(&insert(1, &full), &mut out)?);
        assert_eq!(
            header_list(&out),
            [("id".into(), "e-1".into()), ("type".into(), "Placed".into())]
        );
        Ok(())
    }

    #[test]
    fn json_payload_format_dead_letters_invalid_json() {
        let mut m = mapper();
        m.tables[0].payload_format = PayloadFormat::Json;
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

    // ---- the schemas in the wild (issue 16) ----

    fn mapper_for(mapping: TableMapping) -> OutboxMapper {
        OutboxMapper::new(OutboxConfig::from_mapping(&mapping).expect("valid mapping"))
    }

    fn header_list(out: &OutboxRecord) -> Vec<(String, String)> {
        out.headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn names_of(out: &OutboxRecord) -> Vec<String> {
        out.headers.iter().map(|(k, _)| k.to_string()).collect()
    }

    const UNDERSCORE_OUTBOX: &[&str] = &[
        "id",
        "event_type",
        "aggregate_id",
        "event_data",
        "event_version",
        "destination_topic",
        "partition_key",
        "published",
        "published_at",
        "attempts",
        "last_attempt_at",
        "error_message",
        "trace_id",
        "user_id",
        "created_at",
        "updated_at",
    ];

    fn underscore_outbox() -> TableMapping {
        TableMapping {
            table: "public._outbox".into(),
            column_type: "event_type".into(),
            column_aggregate_id: "aggregate_id".into(),
            column_payload: "event_data".into(),
            topic_column: Some("destination_topic".into()),
            key_column: Some("partition_key".into()),
            exclude_columns: [
                "published",
                "published_at",
                "attempts",
                "last_attempt_at",
                "error_message",
                "updated_at",
            ]
            .map(String::from)
            .to_vec(),
            ..TableMapping::default()
        }
    }

    fn underscore_row<'a>(topic: &'a str, partition_key: Option<&'a str>) -> Vec<Option<&'a str>> {
        vec![
            Some("e-1"),
            Some("OrderPlaced"),
            Some("o-7"),
            Some("{\"a\": 1}"),
            Some("1"),
            Some(topic),
            partition_key,
            Some("f"),
            None,
            Some("0"),
            None,
            None,
            Some("t-1"),
            Some("u-1"),
            Some("2026-01-01 00:00:00+00"),
            Some("2026-01-01 00:00:00+00"),
        ]
    }

    #[test]
    fn topic_column_key_column_and_excluded_polling_columns() -> Result<(), MappingError> {
        let mut m = mapper_for(underscore_outbox());
        m.on_relation(&relation(1, "_outbox", UNDERSCORE_OUTBOX));
        let mut out = OutboxRecord::default();
        assert!(
            m.map_insert(&insert(1, &underscore_row("orders.v1", Some("customer-3"))), &mut out)?
        );
        assert_eq!(&*out.topic, "orders.v1");
        assert_eq!(out.key.as_ref(), b"customer-3");
        assert_eq!(out.value.as_ref(), b"{\"a\": 1}");
        assert_eq!(
            names_of(&out),
            ["id", "type", "event_version", "trace_id", "user_id", "created_at"],
            "no polling-era column, no topic/key/payload column"
        );
        // partition_key NULL: the aggregate id is the key.
        m.map_insert(&insert(1, &underscore_row("orders.v1", None)), &mut out)?;
        assert_eq!(out.key.as_ref(), b"o-7");
        // An invalid topic in the column: this row is poison, with the reason.
        let err = m.map_insert(&insert(1, &underscore_row("bad topic!", None)), &mut out);
        assert!(
            matches!(&err, Err(e @ MappingError::InvalidTopic(reason)) if e.is_poison() && reason.contains("' '")),
            "{err:?}"
        );
        let err = m.map_insert(&insert(1, &underscore_row("", None)), &mut out);
        assert!(matches!(err, Err(MappingError::InvalidTopic(_))), "{err:?}");
        Ok(())
    }

    #[test]
    fn a_table_without_id_type_or_aggregate_type_works() -> Result<(), MappingError> {
        let mut m = mapper_for(TableMapping {
            table: "document_outbox".into(),
            column_aggregate_id: "document_id".into(),
            topic_template: "documents.{workspace_provider}".into(),
            header_columns: Some(vec!["created_by_person_id".into()]),
            meta_headers: MetaHeaders::NONE,
            ..TableMapping::default()
        });
        let cols = [
            "id",
            "document_id",
            "workspace_provider",
            "created_by_person_id",
            "payload",
            "status",
            "created_at",
        ];
        m.on_relation(&relation(4, "document_outbox", &cols));
        let mut out = OutboxRecord::default();
        let row = [
            Some("9"),
            Some("d-1"),
            Some("gdrive"),
            Some("p-2"),
            Some("{}"),
            Some("pending"),
            Some("now"),
        ];
        m.map_insert(&insert(4, &row), &mut out)?;
        assert_eq!((&*out.topic, out.key.as_ref()), ("documents.gdrive", b"d-1".as_slice()));
        assert_eq!(
            header_list(&out),
            [("id".to_owned(), "9".to_owned()), ("created_by_person_id".into(), "p-2".into())],
            "the include list plus the event id (a bigint id is an id too)"
        );
        assert_eq!(out.meta, MetaHeaders::NONE);
        // Without an id column at all: no id header, nothing else changes.
        let mut m = mapper_for(TableMapping {
            topic_template: "documents".into(),
            column_aggregate_id: "document_id".into(),
            ..TableMapping::default()
        });
        m.on_relation(&relation(5, "outbox", &["document_id", "payload", "status"]));
        m.map_insert(&insert(5, &[Some("d-1"), Some("{}"), Some("done")]), &mut out)?;
        assert_eq!(names_of(&out), ["status"]);
        assert_eq!(out.meta, MetaHeaders::default());
        Ok(())
    }

    #[test]
    fn a_json_headers_column_becomes_one_header_per_key() -> Result<(), MappingError> {
        let mut m = mapper_for(TableMapping {
            table: "event_outbox".into(),
            column_aggregate_type: "aggregate_type".into(),
            column_aggregate_id: "aggregate_id".into(),
            column_type: "event_type".into(),
            headers_column: Some("metadata".into()),
            header_columns: Some(vec!["tenant_id".into(), "correlation_id".into()]),
            ..TableMapping::default()
        });
        let cols = [
            "id",
            "aggregate_id",
            "aggregate_type",
            "event_type",
            "payload",
            "metadata",
            "status",
            "tenant_id",
            "correlation_id",
        ];
        m.on_relation(&relation(2, "event_outbox", &cols));
        let mut out = OutboxRecord::default();
        let row = |metadata: Option<&'static str>| {
            [
                Some("e"),
                Some("o-1"),
                Some("Order"),
                Some("Placed"),
                Some("{}"),
                metadata,
                Some("NEW"),
                Some("acme"),
                None,
            ]
        };
        m.map_insert(
            &insert(2, &row(Some(r#"{"source": "web", "n": 3, "gone": null, "obj": {"a": 1}}"#))),
            &mut out,
        )?;
        assert_eq!(&*out.topic, "outbox.event.Order");
        let got = header_list(&out);
        let want = [
            ("id", "e"),
            ("type", "Placed"),
            ("tenant_id", "acme"),
            ("n", "3"),
            ("obj", "{\"a\":1}"),
            ("source", "web"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        // Not an object: one header under the column's name, as stored; JSON null: none.
        m.map_insert(&insert(2, &row(Some("[1, 2]"))), &mut out)?;
        assert!(header_list(&out).contains(&("metadata".into(), "[1, 2]".into())));
        m.map_insert(&insert(2, &row(Some("null"))), &mut out)?;
        assert_eq!(out.headers.len(), 3);
        m.map_insert(&insert(2, &row(None)), &mut out)?;
        assert_eq!(out.headers.len(), 3);
        Ok(())
    }

    #[test]
    fn debezium_span_context_becomes_traceparent() -> Result<(), MappingError> {
        let mut m = mapper();
        m.on_relation(&relation(1, "outbox", COLUMNS));
        let mut out = OutboxRecord::default();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context =
            format!("#Mon Mar 04 10:00:00 UTC 2024\ntraceparent={parent}\ntracestate=k\\=v\n");
        let row = [
            Some("e-1"),
            Some("Order"),
            Some("o-7"),
            Some("T"),
            Some("{}"),
            Some(context.as_str()),
        ];
        m.map_insert(&insert(1, &row), &mut out)?;
        let got = header_list(&out);
        assert!(got.contains(&("traceparent".into(), parent.into())), "{got:?}");
        assert!(got.contains(&("tracestate".into(), "k=v".into())), "{got:?}");
        assert!(!got.iter().any(|(k, _)| k == "tracingspancontext"));
        // A traceparent column passes through, even with an include list.
        let mut m =
            mapper_for(TableMapping { header_columns: Some(vec![]), ..TableMapping::default() });
        m.on_relation(&relation(
            3,
            "outbox",
            &["aggregatetype", "aggregateid", "payload", "traceparent", "other"],
        ));
        m.map_insert(
            &insert(3, &[Some("A"), Some("a"), Some("{}"), Some(parent), Some("x")]),
            &mut out,
        )?;
        assert_eq!(header_list(&out), [("traceparent".to_owned(), parent.to_owned())]);
        Ok(())
    }

    #[test]
    fn cloudevents_binary_mode_headers() -> Result<(), MappingError> {
        let mut m = mapper_for(TableMapping {
            format: crate::config::EventFormat::CloudEvents,
            cloudevents_source: Some("/shop/{aggregatetype}".into()),
            ..TableMapping::default()
        });
        let mut rel = relation(1, "outbox", COLUMNS);
        rel.columns[4].type_oid = JSONB_OID;
        m.on_relation(&rel);
        let mut out = OutboxRecord::default();
        let row = [Some("e-1"), Some("Order"), Some("o-7"), Some("OrderPlaced"), Some("{}"), None];
        m.map_insert(&insert(1, &row), &mut out)?;
        let want = [
            ("ce_specversion", "1.0"),
            ("ce_id", "e-1"),
            ("ce_source", "/shop/Order"),
            ("ce_type", "OrderPlaced"),
            ("content-type", "application/json"),
        ];
        assert_eq!(header_list(&out), want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(out.meta.contains(MetaHeaders::CE_TIME) && out.meta.contains(MetaHeaders::LSN));
        assert_eq!(out.value.as_ref(), b"{}");
        // No id: the row cannot be a CloudEvent.
        let no_id = [None, Some("Order"), Some("o-7"), Some("T"), Some("{}"), None];
        assert!(matches!(
            m.map_insert(&insert(1, &no_id), &mut out),
            Err(MappingError::NullColumn { .. })
        ));
        Ok(())
    }

    #[test]
    fn several_tables_each_with_its_mapping_and_a_catch_all() -> Result<(), MappingError> {
        let customer = OutboxConfig::from_mapping(&TableMapping {
            table: "customer.outbox".into(),
            topic_template: "customer.{aggregatetype}".into(),
            ..TableMapping::default()
        })
        .expect("valid");
        let catch_all =
            TableMapping { topic_template: "other.{type}".into(), ..TableMapping::default() };
        let mut m = OutboxMapper::with_tables(vec![customer], Some(catch_all));
        let mut customer_rel = relation(10, "outbox", COLUMNS);
        customer_rel.namespace = "customer".into();
        let mut product_rel = relation(11, "outbox", COLUMNS);
        product_rel.namespace = "product".into();
        m.on_relation(&customer_rel);
        m.on_relation(&product_rel);
        let row = [Some("e"), Some("Customer"), Some("c-1"), Some("Created"), Some("{}"), None];
        let mut out = OutboxRecord::default();
        m.map_insert(&insert(11, &row), &mut out)?;
        assert_eq!((&*out.topic, m.table_name().as_str()), ("other.Created", "product.outbox"));
        m.map_insert(&insert(10, &row), &mut out)?;
        assert_eq!(
            (&*out.topic, m.table_name().as_str()),
            ("customer.Customer", "customer.outbox")
        );
        Ok(())
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const COLS: &[&str] = &["id", "kind", "agg", "pk", "dest", "payload", "status", "note"];

        fn cell() -> impl Strategy<Value = Option<String>> {
            proptest::option::weighted(0.8, "[a-z.]{0,6}")
        }

        proptest! {
            /// For any decoded row: the key is the first non-NULL of (key column,
            /// aggregate id); the topic is the column's value exactly when it is a valid
            /// topic; headers are the non-NULL, non-excluded, non-role columns in column
            /// order, id/type renamed; excluded columns never appear.
            #[test]
            fn mapping_matches_a_simple_model(row in proptest::collection::vec(cell(), COLS.len())) {
                let mut m = mapper_for(TableMapping {
                    column_type: "kind".into(),
                    column_aggregate_id: "agg".into(),
                    topic_column: Some("dest".into()),
                    key_column: Some("pk".into()),
                    exclude_columns: vec!["status".into()],
                    ..TableMapping::default()
                });
                m.on_relation(&relation(1, "outbox", COLS));
                let values: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
                let mut out = OutboxRecord::default();
                let result = m.map_insert(&insert(1, &values), &mut out);
                let [id, kind, agg, pk, dest, payload, _status, note] = <[Option<&str>; 8]>::try_from(values.as_slice()).expect("8 columns");
                let expected_key = pk.or(agg);
                let topic_ok = dest.is_some_and(|d| validate_topic(d).is_ok());
                match (payload, expected_key, topic_ok) {
                    (None, _, _) => prop_assert!(matches!(result, Err(MappingError::NullColumn { ref column }) if &**column == "payload"), "{:?}", result),
                    (_, None, _) => prop_assert!(matches!(result, Err(MappingError::NullColumn { ref column }) if &**column == "pk"), "{:?}", result),
                    (_, _, false) => prop_assert!(result.as_ref().is_err_and(MappingError::is_poison)),
                    (Some(payload), Some(key), true) => {
                        prop_assert_eq!(result, Ok(true));
                        prop_assert_eq!(out.key.as_ref(), key.as_bytes());
                        prop_assert_eq!(out.value.as_ref(), payload.as_bytes());
                        prop_assert_eq!(Some(&*out.topic), dest);
                        let want: Vec<(String, String)> = [("id", id), ("type", kind), ("note", note)]
                            .into_iter()
                            .filter_map(|(n, v)| v.map(|v| (n.to_owned(), v.to_owned())))
                            .collect();
                        prop_assert_eq!(header_list(&out), want);
                    }
                }
            }
        }
    }
}

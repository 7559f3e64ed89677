//! The topic template (`outbox.event.{aggregatetype}`, `{event_type}.v1`,
//! `{tenant_id}.{aggregate_type}`) and Kafka's topic-name rules.
//!
//! A placeholder names a column of the outbox row: `{aggregatetype}` is the
//! aggregate-type column (whatever `column_aggregate_type` calls it, as Debezium's
//! `route.by.field`), any other `{name}` the column of that name. Literal parts may only
//! hold topic characters; what a column puts in is checked per row, when the topic is
//! rendered (an invalid one dead-letters that row).

use crate::config::ConfigError;

/// The placeholder replaced by the aggregate type.
pub const AGGREGATE_TYPE_PLACEHOLDER: &str = "{aggregatetype}";

/// The name inside [`AGGREGATE_TYPE_PLACEHOLDER`].
pub const AGGREGATE_TYPE: &str = "aggregatetype";

/// Kafka's limit on topic name length.
const MAX_TOPIC_LEN: usize = 249;

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text taken as is.
    Literal(String),
    /// A column's value (`{name}`): [`AGGREGATE_TYPE`] means the aggregate-type column.
    Column(String),
}

/// A topic name with placeholders naming columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    segments: Vec<Segment>,
}

impl TopicTemplate {
    /// Parses and checks a template.
    pub fn parse(template: &str) -> Result<Self, ConfigError> {
        let error = |reason: String| {
            ConfigError {
            field: "topic_template",
            value: template.into(),
            reason,
            fix: "use letters, digits, '.', '_', '-' and {column} placeholders, e.g. outbox.event.{aggregatetype}".into(),
        }
        };
        let segments = parse_segments(template).map_err(error)?;
        for segment in &segments {
            if let Segment::Literal(text) = segment
                && let Some(bad) = text.bytes().find(|b| !is_topic_byte(*b))
            {
                return Err(error(format!(
                    "character {:?} is not allowed in a topic name",
                    bad as char
                )));
            }
        }
        let this = Self { segments };
        if !this.has_columns() && validate_topic(template).is_err() {
            return Err(error("not a valid topic name".into()));
        }
        Ok(this)
    }

    /// The parts, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The columns the template reads (placeholder names; [`AGGREGATE_TYPE`] for the
    /// aggregate-type column), in order, repeats included.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether any placeholder appears.
    pub fn has_columns(&self) -> bool {
        self.columns().next().is_some()
    }

    /// Renders into `out` (cleared first), asking `value` for each placeholder's
    /// column. `Err` names a column that has no value or is not UTF-8. The caller checks
    /// the result with [`validate_topic`].
    pub fn render_into<'v>(
        &self,
        out: &mut String,
        mut value: impl FnMut(&str) -> Option<&'v [u8]>,
    ) -> Result<(), String> {
        out.clear();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Column(name) => {
                    let bytes = value(name).ok_or_else(|| format!("column {name:?} is NULL"))?;
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| format!("column {name:?} is not valid UTF-8"))?;
                    out.push_str(text);
                }
            }
        }
        Ok(())
    }

    /// The topic for an aggregate type (a template whose only placeholder is
    /// `{aggregatetype}`), or why it is not a valid topic name.
    pub fn render(&self, aggregate_type: &[u8]) -> Result<String, String> {
        let mut topic = String::new();
        self.render_into(&mut topic, |name| (name == AGGREGATE_TYPE).then_some(aggregate_type))
            .map_err(|e| {
                if e.contains("NULL") {
                    format!("{e}: a table-less event has no such field")
                } else {
                    e
                }
            })?;
        validate_topic(&topic)?;
        Ok(topic)
    }

    /// The aggregate type a topic was rendered from (the inverse of
    /// [`TopicTemplate::render`]); `None` unless the template is `prefix{aggregatetype}suffix`,
    /// or for a topic it did not render.
    pub fn aggregate_type<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let (prefix, suffix) = self.around_aggregate_type()?;
        topic.strip_prefix(prefix)?.strip_suffix(suffix)
    }

    /// Whether the template is `prefix{aggregatetype}suffix` (so the aggregate type can
    /// be recovered from a topic).
    pub fn has_placeholder(&self) -> bool {
        self.around_aggregate_type().is_some()
    }

    fn around_aggregate_type(&self) -> Option<(&str, &str)> {
        let mut prefix = "";
        let mut suffix = "";
        let mut seen = false;
        for segment in &self.segments {
            match segment {
                Segment::Column(name) if name == AGGREGATE_TYPE && !seen => seen = true,
                Segment::Column(_) => return None,
                Segment::Literal(text) if seen => suffix = text,
                Segment::Literal(text) => prefix = text,
            }
        }
        seen.then_some((prefix, suffix))
    }
}

/// Splits `template` into literals and `{column}` placeholders.
pub fn parse_segments(template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| "a '{' is not closed".to_owned())?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err("a placeholder must name a column, e.g. {aggregatetype}".into());
        }
        segments.push(Segment::Column(name.to_owned()));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a '}' without its '{'".into());
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic name must have 1 to {MAX_TOPIC_LEN} characters, has {}",
            topic.len()
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a valid topic name"));
    }
    if let Some(bad) = topic.bytes().find(|b| !is_topic_byte(*b)) {
        return Err(format!("character {:?} is not allowed in a topic name", bad as char));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_debezium_default() -> Result<(), ConfigError> {
        let t = TopicTemplate::parse("outbox.event.{aggregatetype}")?;
        assert_eq!(t.render(b"Order").as_deref(), Ok("outbox.event.Order"));
        Ok(())
    }

    #[test]
    fn renders_any_columns() -> Result<(), ConfigError> {
        let t = TopicTemplate::parse("{tenant_id}.{event_type}.v1")?;
        assert_eq!(t.columns().collect::<Vec<_>>(), ["tenant_id", "event_type"]);
        let mut out = String::new();
        let row = |name: &str| match name {
            "tenant_id" => Some(b"acme".as_slice()),
            "event_type" => Some(b"OrderPlaced".as_slice()),
            _ => None,
        };
        t.render_into(&mut out, row).map_err(|e| panic!("{e}"))?;
        assert_eq!(out, "acme.OrderPlaced.v1");
        assert!(t.render_into(&mut out, |_| None).is_err_and(|e| e.contains("tenant_id")));
        assert!(!t.has_placeholder(), "not invertible");
        Ok(())
    }

    #[test]
    fn recovers_the_aggregate_type_from_a_topic() -> Result<(), ConfigError> {
        let t = TopicTemplate::parse("app.{aggregatetype}.v1")?;
        assert_eq!(t.aggregate_type("app.Order.v1"), Some("Order"));
        assert_eq!(t.aggregate_type("other.Order.v1"), None);
        assert!(t.has_placeholder());
        let fixed = TopicTemplate::parse("all.events")?;
        assert_eq!(fixed.aggregate_type("all.events"), None);
        assert!(!fixed.has_placeholder());
        Ok(())
    }

    #[test]
    fn rejects_invalid_aggregate_types() -> Result<(), ConfigError> {
        let t = TopicTemplate::parse("outbox.event.{aggregatetype}")?;
        assert!(t.render(b"has space").is_err());
        assert!(t.render(b"\xff").is_err());
        assert!(t.render(&[b'a'; 300]).is_err());
        Ok(())
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(TopicTemplate::parse("a/{aggregatetype}").is_err());
        assert!(TopicTemplate::parse("{aggregatetype").is_err());
        assert!(TopicTemplate::parse("a}b").is_err());
        assert!(TopicTemplate::parse("{}").is_err());
        assert!(TopicTemplate::parse("").is_err());
        assert!(TopicTemplate::parse("all-events").is_ok());
        assert!(TopicTemplate::parse("{aggregatetype}{aggregatetype}").is_ok());
    }
}

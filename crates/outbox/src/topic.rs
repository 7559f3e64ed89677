//! The topic template (`outbox.event.{aggregatetype}`) and Kafka's topic-name rules.

use crate::config::ConfigError;

/// The placeholder replaced by the aggregate type.
pub const AGGREGATE_TYPE_PLACEHOLDER: &str = "{aggregatetype}";

/// Kafka's limit on topic name length.
const MAX_TOPIC_LEN: usize = 249;

/// A topic name with at most one `{aggregatetype}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    prefix: String,
    /// `None` when the template has no placeholder (every event goes to one topic).
    suffix: Option<String>,
}

impl TopicTemplate {
    /// Parses and checks a template.
    pub fn parse(template: &str) -> Result<Self, ConfigError> {
        let error = |reason: String| {
            ConfigError {
            field: "topic_template",
            value: template.into(),
            reason,
            fix: "use letters, digits, '.', '_', '-' and at most one {aggregatetype}, e.g. outbox.event.{aggregatetype}".into(),
        }
        };
        let (prefix, suffix) = match template.split_once(AGGREGATE_TYPE_PLACEHOLDER) {
            Some((prefix, suffix)) => (prefix, Some(suffix)),
            None => (template, None),
        };
        for part in std::iter::once(prefix).chain(suffix) {
            if part.contains(AGGREGATE_TYPE_PLACEHOLDER) {
                return Err(error("more than one {aggregatetype}".into()));
            }
            if let Some(bad) = part.bytes().find(|b| !is_topic_byte(*b)) {
                return Err(error(format!(
                    "character {:?} is not allowed in a topic name",
                    bad as char
                )));
            }
        }
        if suffix.is_none() && validate_topic(template).is_err() {
            return Err(error("not a valid topic name".into()));
        }
        Ok(Self { prefix: prefix.into(), suffix: suffix.map(Into::into) })
    }

    /// The topic for an aggregate type, or why it is not a valid topic name.
    pub fn render(&self, aggregate_type: &[u8]) -> Result<String, String> {
        let Some(suffix) = &self.suffix else {
            return Ok(self.prefix.clone());
        };
        let aggregate_type = std::str::from_utf8(aggregate_type)
            .map_err(|_| "aggregate type is not valid UTF-8".to_owned())?;
        let topic = format!("{}{aggregate_type}{suffix}", self.prefix);
        validate_topic(&topic)?;
        Ok(topic)
    }
}

impl TopicTemplate {
    /// The aggregate type a topic was rendered from (the inverse of
    /// [`TopicTemplate::render`]); `None` for a template without a placeholder or a topic
    /// it did not render.
    pub fn aggregate_type<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let suffix = self.suffix.as_deref()?;
        topic.strip_prefix(self.prefix.as_str())?.strip_suffix(suffix)
    }

    /// Whether the template has an `{aggregatetype}` placeholder.
    pub fn has_placeholder(&self) -> bool {
        self.suffix.is_some()
    }
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
        assert!(TopicTemplate::parse("{aggregatetype}{aggregatetype}").is_err());
        assert!(TopicTemplate::parse("").is_err());
        assert!(TopicTemplate::parse("all-events").is_ok());
    }
}

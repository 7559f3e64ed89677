//! What the webhook sink needs to know: where to POST (a URL template), what to send
//! (the payload as stored or a JSON envelope), how to sign, retry, and when to stop
//! trying (the breaker), and the PostgreSQL connection that holds checkpoints and dead
//! letters.

use std::{path::PathBuf, sync::Arc, time::Duration};

use reqwest::header::HeaderName;
pub use reqwest::header::{HeaderMap, HeaderValue};
use tailbox_outbox::TopicTemplate;
use tailbox_replication::PgConnectionConfig;

use crate::{retry::Backoff, signature::SigningKey};

/// The placeholder of [`UrlTemplate`].
pub const AGGREGATE_TYPE: &str = "{aggregatetype}";

/// Settings of the webhook sink.
#[derive(Debug, Clone)]
pub struct WebhookSinkConfig {
    /// Where each event is POSTed.
    pub url: UrlTemplate,
    /// The topic template the records were named by, to recover `{aggregatetype}`.
    pub topic_template: TopicTemplate,
    /// What the body is.
    pub body: BodyFormat,
    /// Signs each request (Standard Webhooks); `None`: unsigned.
    pub signing_key: Option<SigningKey>,
    /// Extra headers sent with every request (values marked sensitive: never logged).
    pub headers: HeaderMap,
    /// A PEM file of CA certificates to trust instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// Requests in flight at most (each to a different aggregate).
    pub concurrency: usize,
    /// Attempts per event before it is dead-lettered; `None`: retry until it succeeds
    /// or is refused.
    pub max_attempts: Option<u32>,
    /// How long one request may take, connecting included.
    pub request_timeout: Duration,
    /// Waits between attempts of one event.
    pub backoff: Backoff,
    /// Consecutive failures that open the breaker (0: never).
    pub breaker_failures: u32,
    /// How long an open breaker waits before its probe.
    pub breaker_cooldown: Duration,
    /// Events buffered (queued, in flight or waiting for a retry) before `send` answers
    /// `Blocked`.
    pub max_buffered: u64,
    /// Records to this topic are dead letters: written to the dead-letter table.
    pub dlq_topic: String,
    /// The database holding `tailbox_checkpoint` and `tailbox_dead_letter`.
    pub pg: PgConnectionConfig,
}

/// The body of each POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFormat {
    /// The payload column byte for byte, with this `Content-Type`.
    Payload {
        /// The `Content-Type` header.
        content_type: String,
    },
    /// `{"id", "type", "aggregatetype", "aggregateid", "payload", "metadata"}` as JSON
    /// (`application/json`).
    Envelope,
}

impl BodyFormat {
    /// `payload` or `envelope`; `content_type` goes with `payload`.
    pub fn parse(text: &str, content_type: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "payload" => Some(BodyFormat::Payload { content_type: content_type.to_owned() }),
            "envelope" => Some(BodyFormat::Envelope),
            _ => None,
        }
    }
}

/// `https://host/path/{aggregatetype}` or `https://host/{topic}`: the URL of each event.
/// `{aggregatetype}` is replaced by the event's aggregate type, `{topic}` by the topic
/// the topic template (over any columns) or the topic column gave it; each any number
/// of times, or never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Arc<[UrlPart]>,
}

/// One part of a [`UrlTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlPart {
    Text(String),
    AggregateType,
    Topic,
}

/// The placeholder of [`UrlTemplate`] replaced by the record's topic.
pub const TOPIC: &str = "{topic}";

impl UrlTemplate {
    /// Parses and checks a template: http or https, a host, no placeholder but
    /// `{aggregatetype}` and `{topic}`. The error never repeats the URL (it may carry
    /// credentials).
    pub fn parse(template: &str) -> Result<Self, String> {
        let only = "the only placeholders a webhook URL may hold are {aggregatetype} and {topic}";
        let segments =
            tailbox_outbox::topic::parse_segments(template).map_err(|_| only.to_owned())?;
        let parts: Vec<UrlPart> = segments
            .into_iter()
            .map(|segment| match segment {
                tailbox_outbox::topic::Segment::Literal(text) => Ok(UrlPart::Text(text)),
                tailbox_outbox::topic::Segment::Column(name) => match name.as_str() {
                    "aggregatetype" => Ok(UrlPart::AggregateType),
                    "topic" => Ok(UrlPart::Topic),
                    _ => Err(only.to_owned()),
                },
            })
            .collect::<Result<_, _>>()?;
        let this = Self { parts: parts.into() };
        let sample = this.render("Order", "outbox.event.Order");
        let url = reqwest::Url::parse(&sample).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the URL must start with http:// or https://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        if url.password().is_some() {
            return Err(
                "the URL carries a password; send credentials as a header from a file instead"
                    .into(),
            );
        }
        Ok(this)
    }

    /// Whether `{aggregatetype}` appears.
    pub fn has_placeholder(&self) -> bool {
        self.parts.contains(&UrlPart::AggregateType)
    }

    /// The URL for one event (topic-name characters only, so nothing to escape).
    pub fn render(&self, aggregate_type: &str, topic: &str) -> String {
        let mut out = String::new();
        for part in self.parts.iter() {
            out.push_str(match part {
                UrlPart::Text(text) => text,
                UrlPart::AggregateType => aggregate_type,
                UrlPart::Topic => topic,
            });
        }
        out
    }

    /// The template as given.
    pub fn as_template(&self) -> String {
        let mut out = String::new();
        for part in self.parts.iter() {
            out.push_str(match part {
                UrlPart::Text(text) => text,
                UrlPart::AggregateType => AGGREGATE_TYPE,
                UrlPart::Topic => TOPIC,
            });
        }
        out
    }
}

/// Parses `Name: value` header lines (from the configuration, or a file for secret
/// ones); the error names the header, never its value.
pub fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line.split_once(':').ok_or_else(|| "expected Name: value".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    if name.as_str().starts_with("webhook-") || name == reqwest::header::CONTENT_TYPE {
        return Err(format!("{name} is set by tailbox"));
    }
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} has characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_render_and_are_checked() {
        let t = UrlTemplate::parse("https://hooks.example/in/{aggregatetype}?v=1").expect("valid");
        assert!(t.has_placeholder());
        assert_eq!(t.render("Order", "x"), "https://hooks.example/in/Order?v=1");
        assert_eq!(t.as_template(), "https://hooks.example/in/{aggregatetype}?v=1");
        let fixed = UrlTemplate::parse("http://127.0.0.1:8080/events").expect("valid");
        assert!(!fixed.has_placeholder());
        assert!(UrlTemplate::parse("ftp://x/{aggregatetype}").is_err());
        assert!(UrlTemplate::parse("https://x/{aggregateid}").is_err());
        let any = UrlTemplate::parse("https://h/{topic}/{aggregatetype}").expect("valid");
        assert_eq!(any.render("Doc", "documents.gdrive"), "https://h/documents.gdrive/Doc");
        assert_eq!(any.as_template(), "https://h/{topic}/{aggregatetype}");
        assert!(UrlTemplate::parse("not a url").is_err());
        let err = UrlTemplate::parse("https://u:hunter2@x/").expect_err("password in URL");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn headers_are_parsed_sensitive_and_reserved_names_refused() {
        let (name, value) = parse_header("Authorization: Bearer abc").expect("valid");
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("abc"));
        assert!(parse_header("webhook-id: x").is_err());
        assert!(parse_header("Content-Type: text/plain").is_err());
        assert!(parse_header("no colon").is_err());
        let err = parse_header("X-Token: a\u{1}b").expect_err("control character");
        assert!(!err.contains("a\u{1}b"));
    }
}

//! Producer configuration: our defaults, then the user's pass-through properties.

use rdkafka::ClientConfig;

use crate::topics::TopicSettings;

/// Kafka connection and producer settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Any librdkafka property, applied after our defaults (so it wins).
    pub properties: Vec<(String, String)>,
    /// Whether and how missing destination and dead-letter topics are created.
    pub topics: TopicSettings,
}

/// Our defaults. Idempotence gives `acks=all`, at most 5 requests in flight per
/// connection and ordered, duplicate-free retries inside librdkafka.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    // Same partitions as the Java client for the same key.
    ("partitioner", "murmur2_random"),
    // Bounds librdkafka's own buffer; a full queue is backpressure, not an error.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "32768"),
    ("client.id", "tailbox"),
    // Reconnect to a returning broker within a second, not librdkafka's 10 s.
    ("reconnect.backoff.max.ms", "1000"),
];

impl SinkConfig {
    /// The `ClientConfig` for the producer.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in PRODUCER_DEFAULTS {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Client config for consumers and admin clients: brokers plus the user's
    /// connection-level properties (security.*, sasl.*, ssl.*, socket.*, client.*).
    pub fn shared_client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            if ["security.", "sasl.", "ssl.", "socket.", "broker.", "client."]
                .iter()
                .any(|prefix| key.starts_with(prefix))
            {
                config.set(key, value);
            }
        }
        config
    }
}

/// Parses `key=value`; the error names the field (`kafka_props`), the CLI its flag.
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "invalid kafka_props entry {text:?}: expected KEY=VALUE, e.g. linger.ms=10"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_override_defaults() {
        let cfg = SinkConfig {
            brokers: "b:9092".into(),
            properties: vec![
                ("linger.ms".into(), "20".into()),
                ("security.protocol".into(), "ssl".into()),
            ],
            topics: TopicSettings::default(),
        };
        let producer = cfg.producer_config();
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        let shared = cfg.shared_client_config();
        assert_eq!(shared.get("security.protocol"), Some("ssl"));
        assert_eq!(shared.get("linger.ms"), None);
    }

    #[test]
    fn properties_parse() {
        assert_eq!(parse_property("a.b=c=d"), Ok(("a.b".into(), "c=d".into())));
        assert!(parse_property("nokey").is_err());
    }
}

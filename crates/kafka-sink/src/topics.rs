//! Destination topics on demand: which topics are known to exist, creating missing
//! ones through the admin API, and naming the ones that stay missing.
//!
//! Place in the data path: consulted by [`crate::KafkaSink`]'s `send` before a record
//! goes to librdkafka.
//!
//! ```text
//! record ─▶ topic known? ─yes─▶ producer
//!              │ no: start a check (create, or look it up), answer `Blocked`
//!              ▼
//!          [background task] create_topics ─ok/exists─▶ known
//!                              └ not permitted ─▶ metadata ─exists─▶ known
//!                                                   └ missing ─▶ ERROR once, /status, re-check every 10 s
//! ```
//!
//! # Why `Blocked`
//! The sink contract keeps order by answering `Blocked`: the session stops reading WAL
//! and offers the *same* record again later. A record for a topic that is being
//! created (or is missing) therefore waits, and so does everything after it; nothing is
//! skipped, and nothing is published before it. The check runs on a task of its own,
//! so the session's timers (status updates to the walsender) keep running meanwhile.
//!
//! # The hot path
//! The sink keeps its own set of known topics and the last topic it let through; a
//! record for the same topic as the last one costs one pointer or string comparison, and
//! any other known topic one hash lookup. The shared [`TopicRegistry`] (behind a lock)
//! is only consulted for a topic the sink has not seen before.
//!
//! # Across sessions
//! The registry outlives the sessions (it is shared through [`crate::SinkConfig`]), so a
//! topic found missing is reported once per process, at ERROR, and a check started by
//! one session serves the next.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use tracing::{error, info, warn};

use crate::config::SinkConfig;

/// How long a creation or lookup may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a missing topic is looked at again (it may have been created by then).
const RECHECK_MISSING: Duration = Duration::from_secs(10);

/// How soon a check that failed for a passing reason (broker unreachable) is retried.
const RETRY_FAILED_CHECK: Duration = Duration::from_secs(1);

/// How destination and dead-letter topics are created.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// Create a missing topic through the admin API (`create_topics`).
    pub create: bool,
    /// Partitions of a created topic; `None`: the broker's `num.partitions`.
    pub partitions: Option<i32>,
    /// Replication factor of a created topic; `None`: the broker's
    /// `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// Topic configs of a created topic (`retention.ms`, `cleanup.policy`, …).
    pub configs: Vec<(String, String)>,
    /// What is known about topics, shared by every session of the process.
    pub registry: Arc<TopicRegistry>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            create: true,
            partitions: None,
            replication_factor: None,
            configs: Vec::new(),
            registry: Arc::default(),
        }
    }
}

/// A topic that records wait for and that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTopic {
    /// The topic.
    pub topic: String,
    /// Commit LSN of the first transaction found waiting for it.
    pub lsn: String,
    /// Its xid.
    pub xid: String,
    /// Why tailbox did not create it.
    pub reason: String,
    /// How to create it (a `kafka-topics.sh` command, or the ACL tailbox needs).
    pub fix: String,
}

/// What is known about one topic.
#[derive(Debug)]
enum State {
    /// A check (creation or lookup) runs.
    Checking,
    /// It exists (or was created).
    Exists,
    /// It does not exist; look again at `recheck`.
    Missing { recheck: Instant },
    /// The last check failed for a reason that may pass; try again at `retry`.
    Failed { retry: Instant },
}

/// Topics tailbox knows about: those that exist, those being checked, and those that
/// are missing (with the fix), shared by the sinks of every session and read by
/// `/status`.
#[derive(Debug, Default)]
pub struct TopicRegistry {
    states: Mutex<BTreeMap<String, State>>,
    missing: Mutex<BTreeMap<String, MissingTopic>>,
    /// Whether `missing` holds anything (read per acknowledgement batch without a lock).
    any_missing: AtomicBool,
}

/// What a record's topic allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// It exists: send.
    Open,
    /// Wait (being created, or missing): answer `Blocked`.
    Wait,
}

/// What a check found.
#[derive(Debug)]
enum Outcome {
    Exists,
    Missing { reason: String, fix: String },
    Failed(String),
}

impl TopicRegistry {
    /// Topics found missing, by name.
    pub fn missing(&self) -> Vec<MissingTopic> {
        if !self.any_missing.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.missing.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Whether `topic` was found missing and not found since.
    pub fn is_missing(&self, topic: &str) -> bool {
        self.any_missing.load(Ordering::Relaxed)
            && self.missing.lock().is_ok_and(|m| m.contains_key(topic))
    }

    /// Where `topic` stands; starts a check (on the current runtime) if none ran or the
    /// last one is due again. `lsn`/`xid` name the transaction waiting for it.
    pub(crate) fn gate(
        self: &Arc<Self>,
        topic: &str,
        lsn: &str,
        xid: &str,
        config: &SinkConfig,
    ) -> Gate {
        let Ok(mut states) = self.states.lock() else { return Gate::Open };
        let now = Instant::now();
        match states.get(topic) {
            Some(State::Exists) => return Gate::Open,
            Some(State::Checking) => return Gate::Wait,
            Some(State::Missing { recheck }) | Some(State::Failed { retry: recheck })
                if *recheck > now =>
            {
                return Gate::Wait;
            }
            _ => {}
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to check on (not the case in tailbox): let the producer try.
            return Gate::Open;
        };
        states.insert(topic.to_owned(), State::Checking);
        drop(states);
        let (registry, config) = (Arc::clone(self), config.clone());
        let (topic, lsn, xid) = (topic.to_owned(), lsn.to_owned(), xid.to_owned());
        runtime.spawn(async move {
            let outcome = check(&config, &topic).await;
            registry.finish(&topic, &lsn, &xid, outcome);
        });
        Gate::Wait
    }

    fn finish(&self, topic: &str, lsn: &str, xid: &str, outcome: Outcome) {
        let now = Instant::now();
        let state = match outcome {
            Outcome::Exists => {
                self.found(|| topic);
                State::Exists
            }
            Outcome::Missing { reason, fix } => {
                self.report_missing(MissingTopic {
                    topic: topic.to_owned(),
                    lsn: lsn.to_owned(),
                    xid: xid.to_owned(),
                    reason,
                    fix,
                });
                State::Missing { recheck: now + RECHECK_MISSING }
            }
            Outcome::Failed(error) => {
                warn!(topic, lsn, xid, error, "could not check or create the topic; retrying");
                State::Failed { retry: now + RETRY_FAILED_CHECK }
            }
        };
        if let Ok(mut states) = self.states.lock() {
            states.insert(topic.to_owned(), state);
        }
    }

    /// Records `missing`, logging it at ERROR the first time.
    pub fn report_missing(&self, missing: MissingTopic) {
        let Ok(mut all) = self.missing.lock() else { return };
        if all.contains_key(&missing.topic) {
            return;
        }
        error!(
            topic = %missing.topic, lsn = %missing.lsn, xid = %missing.xid,
            "Kafka topic {} does not exist: records of transaction {} (commit lsn {}) and everything after them wait for it; {}; fix: {}",
            missing.topic, missing.xid, missing.lsn, missing.reason, missing.fix
        );
        all.insert(missing.topic.clone(), missing);
        self.any_missing.store(true, Ordering::Relaxed);
    }

    /// The topic `topic()` names exists (again): no longer missing. Called per
    /// delivered record, so the name is only asked for while some topic is missing.
    pub fn found<'t>(&self, topic: impl FnOnce() -> &'t str) {
        if !self.any_missing.load(Ordering::Relaxed) {
            return;
        }
        let topic = topic();
        if let Ok(mut all) = self.missing.lock()
            && all.remove(topic).is_some()
        {
            info!(topic, "Kafka topic exists now; publishing resumes");
            self.any_missing.store(!all.is_empty(), Ordering::Relaxed);
        }
    }
}

/// Creates `topic` (if allowed) or looks it up.
async fn check(config: &SinkConfig, topic: &str) -> Outcome {
    let settings = &config.topics;
    let admin: AdminClient<DefaultClientContext> = match config.shared_client_config().create() {
        Ok(admin) => admin,
        Err(err) => return Outcome::Failed(format!("creating an admin client: {err}")),
    };
    let reason = if settings.create {
        let configs = &settings.configs;
        let mut new = NewTopic::new(
            topic,
            settings.partitions.unwrap_or(-1),
            TopicReplication::Fixed(settings.replication_factor.unwrap_or(-1)),
        );
        for (key, value) in configs {
            new = new.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = match admin.create_topics([&new], &options).await {
            Ok(results) => results,
            Err(err) => return Outcome::Failed(format!("creating topic {topic}: {err}")),
        };
        match results.into_iter().next() {
            Some(Ok(_)) => {
                info!(topic, "created Kafka topic");
                return Outcome::Exists;
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => return Outcome::Exists,
            Some(Err((_, code))) if is_passing(code) => {
                return Outcome::Failed(format!("creating topic {topic}: {code}"));
            }
            // Not permitted, refused by a policy, or invalid settings: it may exist
            // anyway (a topic we may write but not create), so look it up.
            Some(Err((_, code))) => format!("tailbox could not create it ({code})"),
        }
    } else {
        "tailbox does not create topics (create_topics is false)".to_owned()
    };
    let lookup = {
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(Some(&topic), ADMIN_TIMEOUT).map(|metadata| {
                metadata.topics().iter().find(|t| t.name() == topic).map(|t| t.error())
            })
        })
        .await
    };
    match lookup {
        Ok(Ok(Some(None))) => Outcome::Exists,
        Ok(Ok(Some(Some(code)))) => match RDKafkaErrorCode::from(code) {
            // Being created (by someone else, or the broker's auto-creation).
            RDKafkaErrorCode::LeaderNotAvailable => Outcome::Exists,
            RDKafkaErrorCode::UnknownTopicOrPartition => {
                Outcome::Missing { fix: fix(config, topic), reason }
            }
            code => Outcome::Missing {
                fix: fix(config, topic),
                reason: format!("{reason}; looking it up: {code}"),
            },
        },
        Ok(Ok(None)) => Outcome::Missing { fix: fix(config, topic), reason },
        Ok(Err(err)) => Outcome::Failed(format!("looking up topic {topic}: {err}")),
        Err(join) => Outcome::Failed(format!("looking up topic {topic}: {join}")),
    }
}

/// Error codes of `create_topics` that may pass by themselves.
fn is_passing(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::RequestTimedOut
            | C::OperationTimedOut
            | C::NotController
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NetworkException
            | C::CoordinatorNotAvailable
            | C::AllBrokersDown
            | C::BrokerTransportFailure
    )
}

/// How an operator creates `topic` for tailbox: the `kafka-topics.sh` command with
/// tailbox's settings, and the ACL that would let tailbox create it itself.
pub fn fix(config: &SinkConfig, topic: &str) -> String {
    let settings = &config.topics;
    let mut command = format!(
        "create it: kafka-topics.sh --bootstrap-server {} --create --topic {topic}",
        config.brokers
    );
    if let Some(partitions) = settings.partitions {
        command.push_str(&format!(" --partitions {partitions}"));
    }
    if let Some(factor) = settings.replication_factor {
        command.push_str(&format!(" --replication-factor {factor}"));
    }
    for (key, value) in &settings.configs {
        command.push_str(&format!(" --config {key}={value}"));
    }
    if settings.create {
        let principal = config
            .properties
            .iter()
            .find(|(k, _)| k == "sasl.username")
            .map_or_else(|| "<tailbox's principal>".to_owned(), |(_, user)| user.clone());
        command.push_str(&format!(
            "; or let tailbox create topics: kafka-acls.sh --bootstrap-server {} --add --allow-principal User:{principal} --operation Create --topic {topic}",
            config.brokers
        ));
    } else {
        command.push_str("; or turn create_topics on");
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(create: bool) -> SinkConfig {
        SinkConfig {
            brokers: "k:9092".into(),
            properties: vec![("sasl.username".into(), "tailbox".into())],
            topics: TopicSettings {
                create,
                partitions: Some(6),
                replication_factor: Some(3),
                configs: vec![("retention.ms".into(), "86400000".into())],
                registry: Arc::default(),
            },
        }
    }

    #[test]
    fn the_fix_names_the_command_and_the_acl() {
        let fix = fix(&config(true), "outbox.event.order");
        assert_eq!(
            fix,
            "create it: kafka-topics.sh --bootstrap-server k:9092 --create --topic outbox.event.order \
             --partitions 6 --replication-factor 3 --config retention.ms=86400000; or let tailbox \
             create topics: kafka-acls.sh --bootstrap-server k:9092 --add --allow-principal \
             User:tailbox --operation Create --topic outbox.event.order"
        );
        assert!(super::fix(&config(false), "t").ends_with("; or turn create_topics on"));
    }

    #[test]
    fn a_missing_topic_is_reported_once_and_cleared_when_found() {
        let registry = TopicRegistry::default();
        assert!(registry.missing().is_empty());
        let missing = |lsn: &str| MissingTopic {
            topic: "t".into(),
            lsn: lsn.into(),
            xid: "7".into(),
            reason: "r".into(),
            fix: "f".into(),
        };
        registry.report_missing(missing("0/1"));
        registry.report_missing(missing("0/2"));
        assert_eq!(registry.missing(), vec![missing("0/1")]);
        assert!(registry.is_missing("t"));
        registry.found(|| "t");
        assert!(registry.missing().is_empty());
        assert!(!registry.is_missing("t"));
    }
}

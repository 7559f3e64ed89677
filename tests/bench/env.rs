//! The servers and the helpers around them: schema, slots, topics, positions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tailbox_e2e::{KafkaBroker, PgServer, RedisServer, unique_name, workspace_root};
use tokio_postgres::types::PgLsn;

use crate::config::Config;

/// The outbox rows' aggregate type: every bench topic is `{prefix}.Order`.
pub const AGGREGATE_TYPE: &str = "Order";

/// PostgreSQL, Kafka and what every phase shares.
pub struct Env {
    /// Control connection (slot positions, DDL). First, so it closes before the
    /// server stops (fields drop in order).
    pub client: tokio_postgres::Client,
    pub pg: PgServer,
    pub kafka: KafkaBroker,
    /// For the Redis phase (started only when it runs).
    pub redis: Option<RedisServer>,
    pub tailbox: PathBuf,
    pub publication: String,
    pub checkpoint_topic: String,
    /// Unique per bench invocation; prefixes slots and topics.
    pub base: String,
    pub logs: PathBuf,
    pub partitions: i32,
    /// The JSON `note` padding that makes payloads about `payload_bytes` long.
    pub pad: i32,
}

/// Names of one phase of one run.
pub struct PhaseNames {
    pub slot: String,
    pub ref_slot: String,
    pub topic_prefix: String,
    pub topic: String,
}

impl Env {
    pub async fn setup(cfg: &Config, tailbox: PathBuf) -> Result<Env> {
        crate::progress("starting PostgreSQL 15 and Kafka");
        let pg = PgServer::start()?;
        let kafka = KafkaBroker::start_owned()?;
        let redis = if cfg.phases.redis { Some(RedisServer::start()?) } else { None };
        let client = pg.client().await?;
        let base = unique_name("bench");
        let publication = format!("{base}_pub");
        apply_sql(&pg, &publication)?;
        if cfg.phases.webhook {
            // The webhook sink's checkpoint and dead-letter tables (tailbox runs as the
            // superuser here, so the grants go to it).
            tailbox_e2e::apply_sql_files(
                &pg,
                &[("05_webhook_tables.sql", vec!["role=postgres".into()])],
            )?;
        }
        client
            .batch_execute(crate::load::SETUP_SQL)
            .await
            .context("creating the bench functions")?;
        let pad = crate::load::pad_for(&client, cfg.payload_bytes).await?;
        let postmaster = postmaster_pid(&pg);
        let broker = broker_pid(&kafka);
        if cfg.nice != 0 {
            // The servers alike: PostgreSQL and each destination (Redis forks its AOF
            // rewrites, which inherit its nice value).
            let pids: Vec<u32> = [postmaster, broker, redis.as_ref().and_then(RedisServer::pid)]
                .into_iter()
                .flatten()
                .collect();
            crate::measure::renice_trees(&pids, cfg.nice)
                .context("raising the priority of PostgreSQL, Kafka and Redis")?;
            for pid in &pids {
                let group =
                    std::fs::read_to_string(format!("/proc/{pid}/autogroup")).unwrap_or_default();
                crate::progress(&format!("pid {pid}: nice {}, {}", cfg.nice, group.trim()));
            }
        }
        let logs = cfg.out.join("logs");
        // Only this run's logs (the directory is the bench's own).
        if logs.exists() {
            std::fs::remove_dir_all(&logs)
                .with_context(|| format!("clearing {}", logs.display()))?;
        }
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Env {
            pg,
            kafka,
            redis,
            client,
            tailbox,
            checkpoint_topic: format!("{base}.checkpoints"),
            publication,
            base,
            logs,
            partitions: cfg.partitions,
            pad,
        })
    }

    pub fn names(&self, phase: &str, run: u32) -> PhaseNames {
        let topic_prefix = format!("{}_{phase}_r{run}", self.base);
        PhaseNames {
            slot: format!("{}_{phase}_r{run}_tb", self.base),
            ref_slot: format!("{}_{phase}_r{run}_ref", self.base),
            topic: format!("{topic_prefix}.{AGGREGATE_TYPE}"),
            topic_prefix,
        }
    }

    /// `tailbox run …` arguments for `slot`, publishing to `{topic_prefix}.{aggregatetype}`.
    pub fn tailbox_args(&self, cfg: &Config, names: &PhaseNames) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--pg-url",
            &self.pg.url(),
            "--kafka-brokers",
            self.kafka.bootstrap(),
            "--slot",
            &names.slot,
            "--publication",
            &self.publication,
            "--topic-template",
            &format!("{}.{{aggregatetype}}", names.topic_prefix),
            "--checkpoint-topic",
            &self.checkpoint_topic,
            "--status-interval-ms",
            &cfg.status_interval_ms.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(cfg.tailbox_args.iter().cloned());
        args
    }

    /// [`Env::tailbox_args`], publishing to Redis Streams instead of Kafka.
    pub fn tailbox_redis_args(&self, cfg: &Config, names: &PhaseNames, url: &str) -> Vec<String> {
        let mut args = self.tailbox_args(cfg, names);
        if let Some(at) = args.iter().position(|a| a == "--kafka-brokers") {
            args.drain(at..at + 2);
        }
        args.extend(["--sink".into(), "redis".into(), "--redis-url".into(), url.to_owned()]);
        args
    }

    pub async fn create_slot(&self, slot: &str) -> Result<()> {
        self.client
            .execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot])
            .await
            .with_context(|| format!("creating slot {slot}"))?;
        Ok(())
    }

    /// Drops `slot`, waiting (bounded) for its walsender to go away first.
    pub async fn drop_slot(&self, slot: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let res = self
                .client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
            match res {
                Ok(_) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("dropping slot {slot}")),
            }
        }
    }

    /// The slot's `confirmed_flush_lsn` and the pid of the walsender holding it.
    pub async fn slot_state(&self, slot: &str) -> Result<(u64, Option<u32>)> {
        let row = self
            .client
            .query_one(
                "SELECT confirmed_flush_lsn, active_pid FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .with_context(|| format!("reading slot {slot}"))?;
        let lsn: Option<PgLsn> = row.get(0);
        let pid: Option<i32> = row.get(1);
        Ok((lsn.map(u64::from).unwrap_or(0), pid.and_then(|p| u32::try_from(p).ok())))
    }

    pub async fn current_wal_lsn(&self) -> Result<u64> {
        let row = self.client.query_one("SELECT pg_current_wal_lsn()", &[]).await?;
        Ok(u64::from(row.get::<_, PgLsn>(0)))
    }

    /// Empties the outbox and checkpoints, so every load starts from the same state
    /// (full-page images after a checkpoint make up a good part of the WAL).
    pub async fn reset_table(&self) -> Result<()> {
        self.client
            .batch_execute("TRUNCATE outbox; CHECKPOINT")
            .await
            .context("truncating the outbox")?;
        Ok(())
    }

    /// Creates the bench topic: `partitions` partitions and `LogAppendTime`, so a
    /// consumed record's timestamp is the broker's append time (tailbox's own record
    /// timestamp, the commit time, stays in the `commit_ts` header).
    pub async fn create_topic(&self, topic: &str) -> Result<()> {
        let admin = self.admin()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let new = NewTopic::new(topic, self.partitions, TopicReplication::Fixed(1))
            .set("message.timestamp.type", "LogAppendTime");
        let results = admin
            .create_topics(&[new], &opts)
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        for r in results {
            r.map_err(|(t, code)| anyhow!("creating topic {t}: {code}"))?;
        }
        Ok(())
    }

    /// Deletes a bench topic (frees the broker's disk between runs); best effort.
    pub async fn delete_topic(&self, topic: &str) {
        let Ok(admin) = self.admin() else { return };
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        if let Err(e) = admin.delete_topics(&[topic], &opts).await {
            crate::progress(&format!("warning: deleting topic {topic}: {e}"));
        }
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        ClientConfig::new()
            .set("bootstrap.servers", self.kafka.bootstrap())
            .create()
            .context("creating a Kafka admin client")
    }

    /// Records in `topic`: the sum of its partitions' high watermarks (a fresh topic
    /// written by an idempotent, non-transactional producer has no other records).
    pub async fn records_in(&self, topic: &str) -> Result<u64> {
        let bootstrap = self.kafka.bootstrap().to_owned();
        let topic = topic.to_owned();
        let partitions = self.partitions;
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", unique_name("bench_watermarks"))
                .create()
                .context("creating a Kafka consumer")?;
            let mut sum = 0u64;
            for p in 0..partitions {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .with_context(|| format!("watermarks of {topic}/{p}"))?;
                sum += u64::try_from(high - low).unwrap_or(0);
            }
            Ok(sum)
        })
        .await
        .context("watermark task")?
    }

    /// The broker's pid (for its CPU time).
    pub fn broker_pid(&self) -> Option<u32> {
        broker_pid(&self.kafka)
    }

    /// The processes whose CPU is the bench's own: the PostgreSQL cluster, the broker,
    /// Redis and this process (with tailbox and pg_recvlogical under it).
    pub fn roots(&self) -> Vec<u32> {
        [
            postmaster_pid(&self.pg),
            self.broker_pid(),
            self.redis.as_ref().and_then(RedisServer::pid),
            Some(std::process::id()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn log_path(&self, phase: &str, run: u32) -> PathBuf {
        self.logs.join(format!("tailbox-{phase}-r{run}.log"))
    }
}

fn broker_pid(kafka: &KafkaBroker) -> Option<u32> {
    std::fs::read_to_string(kafka.dir()?.join("kafka.pid")).ok()?.trim().parse().ok()
}

fn postmaster_pid(pg: &PgServer) -> Option<u32> {
    let text = std::fs::read_to_string(pg.dir().join("data").join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// sql/01 (the outbox table) and sql/02 (the publication), as users run them.
fn apply_sql(pg: &PgServer, publication: &str) -> Result<()> {
    tailbox_e2e::apply_sql_files(
        pg,
        &[
            ("01_outbox_table.sql", vec![]),
            ("02_publication.sql", vec![format!("publication={publication}")]),
        ],
    )
}

/// Machine and version facts for the report.
pub async fn machine_info(env: &Env) -> Result<serde_json::Value> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let pg_version: String = env.client.query_one("SHOW server_version", &[]).await?.get(0);
    let kafka_version = kafka_version(env.kafka.log_path().as_deref());
    let tailbox_version = command_line(&env.tailbox, &["--version"]);
    let git = command_line(Path::new("git"), &["rev-parse", "--short", "HEAD"]);
    Ok(serde_json::json!({
        "cores": cores,
        "cpu": cpu,
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": kernel,
        "postgres": pg_version,
        "kafka": kafka_version,
        "tailbox": tailbox_version,
        "tailbox_bin": env.tailbox.display().to_string(),
        "git": git,
    }))
}

/// "Kafka version: X" from the broker's log, else the version kafka.sh starts.
fn kafka_version(log: Option<&Path>) -> String {
    let from_log = log.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|text| {
        text.lines().find_map(|l| {
            let (_, v) = l.split_once("Kafka version: ")?;
            v.split_whitespace().next().map(str::to_owned)
        })
    });
    from_log.unwrap_or_else(|| {
        std::env::var("TAILBOX_KAFKA_VERSION").unwrap_or_else(|_| "4.3.1".to_owned())
    })
}

fn command_line(cmd: &Path, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

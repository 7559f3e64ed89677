//! A real Apache Kafka broker (KRaft, single node) from `scripts/kafka.sh`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use tailbox_pg_support::{run_script, scratch_dir};

/// A single-node Kafka broker on 127.0.0.1: 3 partitions per auto-created
/// topic, replication factor 1, transactions enabled.
#[derive(Debug)]
pub struct KafkaBroker {
    bootstrap: String,
    /// `None` for an external broker (`TAILBOX_TEST_KAFKA`).
    dir: Option<PathBuf>,
    /// Stopped (and its directory deleted) on drop.
    owned: bool,
    /// Serialises stop/start_again.
    lock: Mutex<()>,
}

fn script_env() -> Vec<(&'static str, String)> {
    vec![
        ("TAILBOX_KAFKA_PARENT_PID", std::process::id().to_string()),
        ("TAILBOX_KAFKA_RM_ON_EXIT", "1".to_owned()),
    ]
}

/// The listeners of a broker from [`KafkaBroker::start_secure`]
/// (`scripts/kafka.sh start-secure`). Its certificate names the IP address 127.0.0.1
/// only, signed by `ca`.
#[derive(Debug, Clone)]
pub struct KafkaSecureListeners {
    /// PLAINTEXT (also the broker's [`KafkaBroker::bootstrap`]).
    pub plaintext: String,
    /// SSL: TLS, no client authentication.
    pub ssl: String,
    /// SASL_SSL: SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS.
    pub sasl_ssl: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing of this broker's.
    pub other_ca: PathBuf,
    /// The SASL user (all mechanisms).
    pub user: String,
    /// A file holding only its password (mode 0600).
    pub password_file: PathBuf,
}

impl KafkaSecureListeners {
    /// The SASL user's password.
    pub fn password(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.password_file)
            .with_context(|| format!("reading {}", self.password_file.display()))?;
        Ok(text.trim_end().to_owned())
    }

    fn parse(line: &str) -> Result<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
                .with_context(|| format!("no {name}= in scripts/kafka.sh's output {line:?}"))
        };
        Ok(Self {
            plaintext: field("plaintext")?,
            ssl: field("ssl")?,
            sasl_ssl: field("sasl_ssl")?,
            ca: field("ca")?.into(),
            other_ca: field("other_ca")?.into(),
            user: field("user")?,
            password_file: field("password_file")?.into(),
        })
    }
}

/// The listeners of a broker from [`KafkaBroker::start_acl`] (`scripts/kafka.sh
/// start-acl`): automatic topic creation off, an authorizer, and a SASL user that may
/// describe, read and write every topic but create none.
#[derive(Debug, Clone)]
pub struct KafkaAclListeners {
    /// PLAINTEXT: a super user (the broker's [`KafkaBroker::bootstrap`]).
    pub plaintext: String,
    /// SASL_PLAINTEXT with PLAIN, for [`Self::user`].
    pub sasl_plaintext: String,
    /// The SASL user without the Create ACL.
    pub user: String,
    /// A file holding only its password.
    pub password_file: PathBuf,
}

impl KafkaAclListeners {
    fn parse(line: &str) -> Result<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
                .with_context(|| format!("no {name}= in scripts/kafka.sh's output {line:?}"))
        };
        Ok(Self {
            plaintext: field("plaintext")?,
            sasl_plaintext: field("sasl_plaintext")?,
            user: field("user")?,
            password_file: field("password_file")?.into(),
        })
    }

    /// The SASL user's password.
    pub fn password(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.password_file)
            .with_context(|| format!("reading {}", self.password_file.display()))?;
        Ok(text.trim_end().to_owned())
    }
}

impl KafkaBroker {
    /// A broker of the caller's own with an authorizer and automatic topic creation off
    /// (`scripts/kafka.sh start-acl`), stopped and deleted on drop.
    pub fn start_acl() -> Result<(KafkaBroker, KafkaAclListeners)> {
        let (broker, line) = Self::launch_with("start-acl", true)?;
        let listeners = KafkaAclListeners::parse(&line)?;
        Ok((broker, listeners))
    }

    fn launch(owned: bool) -> Result<KafkaBroker> {
        Self::launch_with("start", owned).map(|(broker, _)| broker)
    }

    /// Runs `scripts/kafka.sh COMMAND DIR`; returns the broker and the script's last line.
    fn launch_with(command: &str, owned: bool) -> Result<(KafkaBroker, String)> {
        // The script picks free ports; another process may take one before the
        // broker binds it, so a bind failure gets a second and third try.
        let mut attempt = 1;
        let (dir, line) = loop {
            let dir = scratch_dir("kafka");
            let dir_s = dir.to_string_lossy().into_owned();
            match run_script("kafka.sh", &[command, &dir_s], &script_env()) {
                Ok(b) => break (dir, b),
                Err(e) => {
                    // best effort: don't leave a half-started broker behind
                    let _ = run_script("kafka.sh", &["stop", &dir_s, "--rm"], &[]);
                    if attempt < 3 && format!("{e:#}").contains("Address already in use") {
                        attempt += 1;
                        continue;
                    }
                    return Err(e.context("starting a Kafka broker"));
                }
            }
        };
        let bootstrap = match line.split_whitespace().find_map(|kv| kv.strip_prefix("plaintext=")) {
            Some(plaintext) => plaintext.to_owned(),
            None => line.clone(),
        };
        if !bootstrap.starts_with("127.0.0.1:") {
            bail!("scripts/kafka.sh printed an unexpected address: {line:?}");
        }
        Ok((KafkaBroker { bootstrap, dir: Some(dir), owned, lock: Mutex::new(()) }, line))
    }

    /// A broker of the caller's own with TLS and SASL listeners besides PLAINTEXT
    /// (`scripts/kafka.sh start-secure`), stopped and deleted on drop. Its
    /// [`bootstrap`](Self::bootstrap) is the PLAINTEXT listener.
    pub fn start_secure() -> Result<(KafkaBroker, KafkaSecureListeners)> {
        let (broker, line) = Self::launch_with("start-secure", true)?;
        let listeners = KafkaSecureListeners::parse(&line)?;
        Ok((broker, listeners))
    }

    /// A broker of the caller's own (a few seconds to start), stopped and deleted
    /// on drop. Unlike [`shared_kafka`], it may be stopped and started again.
    pub fn start_owned() -> Result<KafkaBroker> {
        KafkaBroker::launch(true)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn port(&self) -> u16 {
        self.bootstrap.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// The broker's directory (config, `data/`, `kafka.log`), if we started it.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The broker's log file, if we started it.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("kafka.log"))
    }

    fn own_dir(&self, what: &str) -> Result<String> {
        match (&self.dir, self.owned) {
            (Some(dir), true) => Ok(dir.to_string_lossy().into_owned()),
            _ => bail!("cannot {what} a shared or external broker: use KafkaBroker::start_owned()"),
        }
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 20 s); its data stays.
    pub fn stop(&self) -> Result<()> {
        let dir = self.own_dir("stop")?;
        let _guard = self.lock.lock().map_err(|_| anyhow!("broker lock poisoned"))?;
        run_script("kafka.sh", &["stop", &dir], &[]).context("stopping the Kafka broker")?;
        Ok(())
    }

    /// Starts the broker again after [`stop`](Self::stop): same port, same data.
    pub fn start_again(&self) -> Result<()> {
        let dir = self.own_dir("restart")?;
        let _guard = self.lock.lock().map_err(|_| anyhow!("broker lock poisoned"))?;
        let port = self.port().to_string();
        let bootstrap = run_script("kafka.sh", &["start", &dir, &port], &script_env())
            .context("starting the Kafka broker again")?;
        if bootstrap != self.bootstrap {
            bail!("broker came back on {bootstrap}, not {}", self.bootstrap);
        }
        Ok(())
    }

    /// Whether the broker process runs (always true for an external broker).
    pub fn is_running(&self) -> bool {
        match &self.dir {
            Some(dir) => run_script("kafka.sh", &["status", &dir.to_string_lossy()], &[]).is_ok(),
            None => true,
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Some(dir) = &self.dir {
            let dir = dir.to_string_lossy();
            if let Err(e) = run_script("kafka.sh", &["stop", &dir, "--rm"], &[]) {
                eprintln!("tailbox-e2e: stopping the Kafka broker in {dir}: {e:#}");
            }
        }
    }
}

static SHARED: OnceLock<std::result::Result<KafkaBroker, String>> = OnceLock::new();

/// The broker shared by all tests of this test binary, started on first use
/// (about 4 s once the jars are cached; `scripts/kafka.sh fetch` caches them).
/// It dies with the test process (watchdog) and its directory is deleted then.
/// If `TAILBOX_TEST_KAFKA` is set, that bootstrap address is used instead.
///
/// Tests sharing it must use their own topics and groups ([`crate::unique_name`]).
/// Panics if the broker cannot be started; see [`try_shared_kafka`].
pub fn shared_kafka() -> &'static KafkaBroker {
    match try_shared_kafka() {
        Ok(broker) => broker,
        Err(e) => panic!("{e:#}"),
    }
}

/// [`shared_kafka`], returning the start-up error instead of panicking. A failed
/// start is not retried by later calls: they get the same error.
pub fn try_shared_kafka() -> Result<&'static KafkaBroker> {
    SHARED
        .get_or_init(|| {
            if let Some(addr) =
                std::env::var("TAILBOX_TEST_KAFKA").ok().filter(|a| !a.trim().is_empty())
            {
                return Ok(KafkaBroker {
                    bootstrap: addr.trim().to_owned(),
                    dir: None,
                    owned: false,
                    lock: Mutex::new(()),
                });
            }
            KafkaBroker::launch(false).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("the shared Kafka broker did not start: {e}"))
}

/// Creates a topic with `partitions` partitions (replication factor 1) and waits
/// for the broker to confirm it.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &opts)
        .await
        .with_context(|| format!("creating topic {name}"))?;
    for r in results {
        r.map_err(|(topic, code)| anyhow!("creating topic {topic}: {code}"))?;
    }
    Ok(())
}

//! [`RedisSink`]: the [`Sink`] the pipeline talks to; queues commands for the writer
//! task and hands its acknowledgements back.

use std::{sync::Arc, time::Duration};

use redis::{AsyncConnectionConfig, aio::MultiplexedConnection};
use tailbox_outbox::OutboxRecord;
use tailbox_sink::{
    Ack, AckChannel, CheckpointRecords, DeliveryError, EventMeta, SendOutcome, Sink, SinkError,
};
use tokio::sync::mpsc;

use crate::{
    REDIS,
    claims::StreamClaims,
    config::{Durability, RedisSinkConfig},
    entry::xadd,
    ids::EntryIds,
    writer::{self, Queued, Writer},
};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one batch may take (a large batch on a slow link, plus `WAIT`).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The Redis Streams sink.
pub struct RedisSink {
    queue: mpsc::UnboundedSender<Queued>,
    acks: AckChannel,
    /// For reading checkpoints (shared with the writer for claims and checks; the
    /// writer has a connection of its own for the transactions).
    conn: MultiplexedConnection,
    writer: tokio::task::JoinHandle<()>,
    ids: EntryIds,
    next_seq: u64,
    config: RedisSinkConfig,
}

impl RedisSink {
    /// Connects and starts the writer task, which writes streams for `owner` (the
    /// checkpoint owner, see [`crate::claims`]).
    pub async fn connect(config: &RedisSinkConfig, owner: &str) -> Result<Self, SinkError> {
        // Our TLS (rustls) uses the ring provider; redis's asks for the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match &config.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                config.connection.clone(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            ),
            None => redis::Client::open(config.connection.clone()),
        }
        .map_err(|e| SinkError::Config { destination: REDIS, reason: e.to_string() })?;
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await
            .map_err(connect_error)?;
        // The writer's own: it carries transactions and nothing else (see `writer`).
        let writing = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await
            .map_err(connect_error)?;
        if let Durability::Aof { .. } = config.durability {
            require_waitaof(&mut conn).await?;
        }
        let (queue, queued) = mpsc::unbounded_channel();
        let (ack_tx, acks) = AckChannel::new();
        let claims = StreamClaims::new(&config.checkpoint_key, owner);
        let writer = tokio::spawn(writer::run(
            Writer {
                conn: writing,
                side: conn.clone(),
                acks: ack_tx,
                durability: config.durability,
                trim: config.trim,
                claims,
            },
            queued,
        ));
        Ok(Self {
            queue,
            acks,
            conn,
            writer,
            ids: EntryIds::default(),
            next_seq: 0,
            config: config.clone(),
        })
    }

    fn enqueue(
        &mut self,
        cmd: redis::Cmd,
        stream: Option<Arc<str>>,
    ) -> Result<SendOutcome, DeliveryError> {
        let seq = self.next_seq;
        self.queue
            .send(Queued { seq, cmd, stream })
            .map_err(|_| DeliveryError::Failed { source: "the Redis writer stopped".into() })?;
        self.next_seq += 1;
        self.acks.on_sent();
        Ok(SendOutcome::Enqueued(seq))
    }

    fn full(&self) -> bool {
        self.acks.is_full(self.config.max_buffered)
    }
}

/// A failed connection: wrong credentials or an untrusted certificate need a person (they stop tailbox with the
/// fix); anything else may pass (retried with backoff).
fn connect_error(error: redis::RedisError) -> SinkError {
    let wrong_credentials = error.kind() == redis::ErrorKind::AuthenticationFailed
        || error.code().is_some_and(|c| matches!(c, "WRONGPASS" | "NOAUTH" | "NOPERM"));
    let fix = if wrong_credentials {
        Some("the Redis user or password is wrong (redis_url or redis_password_file)")
    } else if error.to_string().to_ascii_lowercase().contains("certificate") {
        Some(
            "the server's TLS certificate is not trusted: give the CA that signed it (redis_ca), and connect by a name or address the certificate holds",
        )
    } else {
        None
    };
    if let Some(fix) = fix {
        return SinkError::Config {
            destination: REDIS,
            reason: format!("connecting to Redis: {error}; fix: {fix}"),
        };
    }
    SinkError::Transient {
        destination: REDIS,
        context: "connecting to Redis".into(),
        source: Box::new(error),
    }
}

/// `WAITAOF` exists from Redis 7.2 on: refuse the setting on an older server at once,
/// instead of failing every batch.
async fn require_waitaof(conn: &mut MultiplexedConnection) -> Result<(), SinkError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await.map_err(|e| {
        SinkError::Transient {
            destination: REDIS,
            context: "asking the server's version".into(),
            source: Box::new(e),
        }
    })?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (7, 2) {
        return Err(SinkError::Config {
            destination: REDIS,
            reason: format!(
                "waiting for the append-only file (WAITAOF) needs Redis 7.2 or later, the server is {version}; \
                 wait for replicas instead, or rely on appendfsync always"
            ),
        });
    }
    Ok(())
}

impl Sink for RedisSink {
    fn send(
        &mut self,
        record: &OutboxRecord,
        meta: Option<&EventMeta>,
    ) -> Result<SendOutcome, DeliveryError> {
        if self.full() {
            return Ok(SendOutcome::Blocked);
        }
        let id = self.ids.next(meta.map(|m| m.commit_lsn.as_u64()));
        self.enqueue(xadd(record, meta, id, self.config.trim), Some(Arc::clone(&record.topic)))
    }

    fn send_checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<SendOutcome, DeliveryError> {
        if self.full() {
            return Ok(SendOutcome::Blocked);
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&self.config.checkpoint_key).arg(key).arg(value);
        self.enqueue(cmd, None)
    }

    async fn next_ack(&mut self) -> Ack {
        self.acks.next().await
    }

    fn try_next_ack(&mut self) -> Option<Ack> {
        self.acks.try_next()
    }

    async fn read_checkpoints(&mut self) -> Result<CheckpointRecords, SinkError> {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&self.config.checkpoint_key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| SinkError::Transient {
                destination: REDIS,
                context: format!("reading the checkpoint hash {}", self.config.checkpoint_key),
                source: Box::new(e),
            })?;
        Ok(fields.into_iter().collect())
    }
}

impl Drop for RedisSink {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

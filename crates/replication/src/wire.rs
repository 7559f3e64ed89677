//! One PostgreSQL connection in replication mode, on `postgres-protocol`'s message
//! codecs: the transport (TCP, Unix socket or TLS), startup and authentication, simple
//! queries, and the framing of the CopyBoth stream.
//!
//! # Why our own client
//! It reads the socket into one large buffer and hands each message out as a
//! [`Bytes`] slice of it: no task between the socket and the pipeline, no copy and no
//! allocation per message, and every message already in the buffer is available
//! without waiting (see [`PgWire::buffered_frame`]). `tokio-postgres` has no CopyBoth;
//! the replication crates we measured spent a task hop and a fresh buffer per message.
//!
//! # Invariants enforced here
//! - A message is handed out only when all of it is in the buffer; its length is
//!   checked against [`MAX_MESSAGE_LEN`] before anything is reserved for it.
//! - Outgoing bytes are queued in `write` and removed only once the transport took
//!   them, so a cancelled [`PgWire::flush`] loses nothing: the next flush goes on.

use std::{io, time::Duration};

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::{
    authentication::{
        md5_hash,
        sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256},
    },
    message::{backend::Message, frontend},
};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::{
    connection::PgConnectionConfig,
    diagnosis,
    error::{ReplicationError, is_transient_sqlstate},
    transport::{self, Transport},
};

/// Largest backend message accepted: a row can hold up to 1 GB per column; anything
/// beyond this is a corrupt stream, not data.
pub(crate) const MAX_MESSAGE_LEN: usize = 1 << 30;
/// Free space kept in the read buffer before each read: one read takes whatever the
/// socket holds, up to this much.
const READ_CHUNK: usize = 512 * 1024;
/// How long a read may wait for how many bytes (see [`PgWire::read_more_batched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadBatch {
    /// Wake up once this much is in the socket (SO_RCVLOWAT)...
    pub bytes: i32,
    /// ...or after this long, whichever comes first.
    pub wait: Duration,
}
/// How long connecting and logging in may take, unless the URL sets `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An `ErrorResponse` from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC`.
    pub severity: String,
    /// The SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The detail line, if any.
    pub detail: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (SQLSTATE {})", self.severity, self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    fn from_fields(mut fields: postgres_protocol::message::backend::ErrorFields<'_>) -> Self {
        let mut pairs = Vec::new();
        while let Ok(Some(field)) = fields.next() {
            pairs.push((field.type_(), field.value_bytes().to_vec()));
        }
        Self::from_pairs(pairs.iter().map(|(kind, value)| (*kind, value.as_slice())))
    }

    /// Parses the body of an `ErrorResponse` or `NoticeResponse`: (type byte,
    /// NUL-terminated text) pairs, ended by a zero byte.
    pub(crate) fn parse(mut body: &[u8]) -> Self {
        let mut pairs = Vec::new();
        while let Some((&kind, rest)) = body.split_first()
            && kind != 0
        {
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            pairs.push((kind, &rest[..end]));
            body = rest.get(end + 1..).unwrap_or_default();
        }
        Self::from_pairs(pairs.into_iter())
    }

    fn from_pairs<'a>(pairs: impl Iterator<Item = (u8, &'a [u8])>) -> Self {
        let mut error = ServerError::default();
        for (kind, value) in pairs {
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                _ => {}
            }
        }
        error
    }

    /// Retrying may help (the server is starting or shutting down, out of connections,
    /// or the object is in use), or the server waits for a standby: a failover slot's
    /// changes wait for the standbys of `synchronized_standby_slots` (PostgreSQL 17+),
    /// and a walsender refuses to go on while one of their slots is inactive, missing or
    /// invalidated (SQLSTATE 55000 or 22023). That resolves when the standby is back, or
    /// when tailbox reaches the promoted standby after a failover, so it is retried.
    pub fn is_transient(&self) -> bool {
        is_transient_sqlstate(&self.code) || self.waits_for_standby()
    }

    /// The detail PostgreSQL 17+ gives every refusal caused by
    /// `synchronized_standby_slots`.
    fn waits_for_standby(&self) -> bool {
        self.detail.as_deref().is_some_and(|d| {
            d.starts_with("Logical replication is waiting on the standby associated with")
        })
    }

    /// As a [`ReplicationError`] classified by SQLSTATE.
    pub(crate) fn into_error(self, context: impl Into<String>) -> ReplicationError {
        let context = context.into();
        if self.is_transient() {
            ReplicationError::Transient { context, source: Box::new(self) }
        } else {
            ReplicationError::Definite { context, source: Box::new(self) }
        }
    }
}

/// An I/O failure: the connection is gone, reconnecting may help.
pub(crate) fn io_error(context: impl Into<String>, err: io::Error) -> ReplicationError {
    ReplicationError::Transient { context: context.into(), source: Box::new(err) }
}

/// A connection in replication mode (`replication=database`).
pub(crate) struct PgWire {
    transport: Transport,
    /// Bytes read and not yet handed out.
    read: BytesMut,
    /// Bytes queued for the server and not yet taken by the transport.
    write: BytesMut,
    /// The socket's SO_RCVLOWAT (1: wake on any byte).
    low_water: i32,
    /// The `server_version` the server announced at login.
    server_version: Option<String>,
    /// `in_hot_standby` as announced at login (PostgreSQL 14+).
    in_hot_standby: Option<String>,
}

impl PgWire {
    /// Connects per `sslmode`, logs in as a replication connection and waits until the
    /// server is ready for a command. With several hosts, tries them in order (as
    /// libpq): the first that accepts, and with `target_session_attrs=read-write` also
    /// takes writes, wins. If none does, a problem only a person can fix is returned
    /// before a transient one.
    pub(crate) async fn connect(
        cfg: &PgConnectionConfig,
        application_name: &str,
    ) -> Result<Self, ReplicationError> {
        let hosts = cfg.endpoints().len();
        let mut definite = None;
        let mut transient = None;
        for index in 0..hosts {
            let attempt = cfg.pinned(index);
            match Self::connect_host(&attempt, application_name).await {
                Ok(wire) => return Ok(wire),
                Err(err) if hosts > 1 => {
                    warn!(host = %attempt.endpoint(), error = %err, "replication connection: trying the next host");
                    if err.is_transient() {
                        transient.get_or_insert(err);
                    } else {
                        definite.get_or_insert(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(definite.or(transient).unwrap_or_else(|| protocol("no host to connect to")))
    }

    /// One host: connect, log in, and check the session is what `target_session_attrs`
    /// asks for, within `connect_timeout` (per host, as libpq).
    async fn connect_host(
        cfg: &PgConnectionConfig,
        application_name: &str,
    ) -> Result<Self, ReplicationError> {
        let timeout = cfg.connect_timeout().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut wire = tokio::time::timeout(timeout, Self::connect_now(cfg, application_name))
            .await
            .unwrap_or_else(|_| {
                Err(io_error(
                    format!(
                        "connecting for replication to {}:{} (no answer within {timeout:?})",
                        cfg.host(),
                        cfg.port()
                    ),
                    io::ErrorKind::TimedOut.into(),
                ))
            })?;
        if cfg.requires_read_write() && wire.is_read_only().await? {
            return Err(io_error(
                format!(
                    "{}:{} takes no writes (a standby?) and pg_url asks for target_session_attrs=read-write",
                    cfg.host(),
                    cfg.port()
                ),
                io::ErrorKind::ConnectionRefused.into(),
            ));
        }
        Ok(wire)
    }

    /// Whether this session is read-only: the `in_hot_standby` parameter the server
    /// reports at login (PostgreSQL 14+), else `SHOW transaction_read_only` (what libpq
    /// asks older servers; it also catches `default_transaction_read_only = on`).
    async fn is_read_only(&mut self) -> Result<bool, ReplicationError> {
        if self.in_hot_standby.as_deref() == Some("on") {
            return Ok(true);
        }
        let rows = self.simple_query("SHOW transaction_read_only").await?;
        let value = rows.first().and_then(|row| row.first()).cloned().flatten();
        Ok(value.as_deref() == Some("on"))
    }

    async fn connect_now(
        cfg: &PgConnectionConfig,
        application_name: &str,
    ) -> Result<Self, ReplicationError> {
        let transport = transport::connect(cfg).await?;
        let mut wire = PgWire {
            transport,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(1024),
            low_water: 1,
            server_version: None,
            in_hot_standby: None,
        };
        let params = [
            ("user", cfg.user()),
            ("database", cfg.database()),
            ("replication", "database"),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(params, &mut wire.write)
            .map_err(|e| io_error("encoding the startup message", e))?;
        wire.flush().await?;
        wire.authenticate(cfg).await?;
        wire.wait_ready(cfg).await?;
        Ok(wire)
    }

    /// Answers the server's authentication requests until it accepts or refuses.
    async fn authenticate(&mut self, cfg: &PgConnectionConfig) -> Result<(), ReplicationError> {
        let mut scram: Option<ScramSha256> = None;
        let password = || -> Result<&[u8], ReplicationError> {
            match cfg.password() {
                Some(password) => Ok(password.expose_secret().as_bytes()),
                None => Err(diagnosis::password_missing(cfg)),
            }
        };
        let encode = |e: io::Error| io_error("encoding an authentication message", e);
        loop {
            match self.next_message("logging in").await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?, &mut self.write).map_err(encode)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(cfg.user().as_bytes(), password()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.write).map_err(encode)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offers_scram = false;
                    let mut mechanisms = body.mechanisms();
                    while let Ok(Some(mechanism)) = mechanisms.next() {
                        offers_scram |= mechanism == SCRAM_SHA_256;
                    }
                    if !offers_scram {
                        return Err(unsupported_auth(cfg, "a SASL mechanism other than SCRAM"));
                    }
                    // Channel binding ("-PLUS") is not offered: "n" tells the server so.
                    let state = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        state.message(),
                        &mut self.write,
                    )
                    .map_err(encode)?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().ok_or_else(|| protocol("SASL continue first"))?;
                    state.update(body.data()).map_err(|e| scram_error(cfg, e))?;
                    frontend::sasl_response(state.message(), &mut self.write).map_err(encode)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram.as_mut().ok_or_else(|| protocol("SASL final first"))?;
                    state.finish(body.data()).map_err(|e| scram_error(cfg, e))?;
                    continue;
                }
                Message::ErrorResponse(body) => {
                    return Err(login_error(cfg, ServerError::from_fields(body.fields())));
                }
                Message::NoticeResponse(body) => log_notice(body.fields()),
                Message::AuthenticationKerberosV5 => return Err(unsupported_auth(cfg, "Kerberos")),
                Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => {
                    return Err(unsupported_auth(cfg, "GSSAPI"));
                }
                Message::AuthenticationSspi => return Err(unsupported_auth(cfg, "SSPI")),
                _ => return Err(protocol("unexpected message while logging in")),
            }
            self.flush().await?;
        }
    }

    /// Reads the session parameters until `ReadyForQuery`; keeps `server_version`.
    async fn wait_ready(&mut self, cfg: &PgConnectionConfig) -> Result<(), ReplicationError> {
        loop {
            match self.next_message("logging in").await? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(body)
                    if body.name().is_ok_and(|name| name == "server_version") =>
                {
                    self.server_version = body.value().ok().map(str::to_owned);
                }
                Message::ParameterStatus(body)
                    if body.name().is_ok_and(|name| name == "in_hot_standby") =>
                {
                    self.in_hot_standby = body.value().ok().map(str::to_owned);
                }
                Message::ErrorResponse(body) => {
                    return Err(login_error(cfg, ServerError::from_fields(body.fields())));
                }
                Message::NoticeResponse(body) => log_notice(body.fields()),
                _ => {}
            }
        }
    }

    /// The `server_version` the server announced at login, if it did.
    pub(crate) fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// Runs one command with the simple query protocol; returns its rows as text.
    pub(crate) async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        frontend::query(sql, &mut self.write).map_err(|e| io_error("encoding a query", e))?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.next_message("running a replication command").await? {
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let mut row = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) =
                        ranges.next().map_err(|e| io_error("reading a data row", e))?
                    {
                        row.push(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()));
                    }
                    rows.push(row);
                }
                Message::ErrorResponse(body) => {
                    failed = Some(ServerError::from_fields(body.fields()));
                }
                Message::NoticeResponse(body) => log_notice(body.fields()),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(error) => Err(error.into_error(format!("running {sql:?}"))),
            None => Ok(rows),
        }
    }

    /// Sends `sql` (a `START_REPLICATION` command) and waits for `CopyBothResponse`.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<(), CommandFailure> {
        frontend::query(sql, &mut self.write).map_err(|e| io_error("encoding a query", e))?;
        self.flush().await?;
        loop {
            // postgres-protocol does not know CopyBothResponse ('W'): take it here.
            if self.read.first() == Some(&b'W') {
                if self.buffered_frame()?.is_some() {
                    return Ok(());
                }
            } else {
                match Message::parse(&mut self.read)
                    .map_err(|e| io_error("reading the server's answer", e))?
                {
                    // The server sends ReadyForQuery after it; the caller closes.
                    Some(Message::ErrorResponse(body)) => {
                        return Err(CommandFailure::Refused(ServerError::from_fields(
                            body.fields(),
                        )));
                    }
                    Some(Message::NoticeResponse(body)) => log_notice(body.fields()),
                    Some(_) => {}
                    None => self.read_more("starting replication").await?,
                }
                continue;
            }
            self.read_more("starting replication").await?;
        }
    }

    /// The next complete message already in the read buffer, as (tag, body), without
    /// reading from the socket.
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<(u8, BytesMut)>, ReplicationError> {
        let Some(header) = self.read.get(..5) else { return Ok(None) };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if !(4..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(protocol(format!("message of {len} bytes (tag {:#04x})", header[0])));
        }
        let total = len + 1;
        if self.read.len() < total {
            // Room for the whole message, so that it arrives in as few reads as possible.
            self.read.reserve(total - self.read.len());
            return Ok(None);
        }
        let mut frame = self.read.split_to(total);
        let tag = frame[0];
        frame.advance(5);
        Ok(Some((tag, frame)))
    }

    /// Reads whatever the socket holds (waiting for at least one byte); an error if the
    /// server closed the connection.
    pub(crate) async fn read_more(&mut self, context: &str) -> Result<(), ReplicationError> {
        self.read_more_batched(context, None).await
    }

    /// [`PgWire::read_more`]; with a `batch`, first waits up to `batch.wait` for
    /// `batch.bytes` to arrive.
    ///
    /// The walsender writes every message with its own `send()`, and each one wakes a
    /// reader that waits for "readable": tens of thousands of wake-ups per second, each
    /// carrying one or two events, and their cost lands on both sides (ours and the
    /// walsender's CPU). With a batch the kernel wakes us only once `batch.bytes` are
    /// there (SO_RCVLOWAT), so one wake-up carries many events; the timer bounds the
    /// added delay, and lowering the mark again makes the kernel report what is there
    /// at once.
    pub(crate) async fn read_more_batched(
        &mut self,
        context: &str,
        batch: Option<ReadBatch>,
    ) -> Result<(), ReplicationError> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        let want = batch.map_or(1, |b| b.bytes);
        if want != self.low_water && self.set_recv_low_water(want) {
            self.low_water = want;
        }
        if let Some(batch) = batch
            && self.low_water > 1
        {
            let read = tokio::select! {
                read = self.transport.read_buf(&mut self.read) => Some(read),
                () = tokio::time::sleep(batch.wait) => None,
            };
            if let Some(read) = read {
                return read_result(context, read);
            }
            if self.set_recv_low_water(1) {
                self.low_water = 1;
            }
        }
        read_result(context, self.transport.read_buf(&mut self.read).await)
    }

    /// Sets SO_RCVLOWAT on a TCP transport (TLS included); whether it took effect.
    fn set_recv_low_water(&self, bytes: i32) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match &self.transport {
            Transport::Tcp(tcp) => tcp.as_raw_fd(),
            Transport::Tls(tls) => tls.get_ref().0.as_raw_fd(),
            Transport::Unix(_) => return false,
        };
        let value: libc::c_int = bytes;
        // SAFETY: `fd` is an open socket owned by `self.transport` for the duration of
        // the call, and `value` is a live c_int whose size is passed along with it.
        #[allow(unsafe_code)]
        let result = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            debug!(error = %io::Error::last_os_error(), "SO_RCVLOWAT not set");
        }
        result == 0
    }

    /// Queues a CopyData message holding `payload`.
    pub(crate) fn queue_copy_data(&mut self, payload: &[u8]) {
        self.write.extend_from_slice(b"d");
        self.write.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        self.write.extend_from_slice(payload);
    }

    /// Queues CopyDone.
    pub(crate) fn queue_copy_done(&mut self) {
        frontend::copy_done(&mut self.write);
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_pending_writes(&self) -> bool {
        !self.write.is_empty()
    }

    /// Writes everything queued. Cancel-safe: what was not written stays queued.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        while !self.write.is_empty() {
            let n = self
                .transport
                .write(&self.write)
                .await
                .map_err(|e| io_error("writing to PostgreSQL", e))?;
            if n == 0 {
                return Err(io_error("writing to PostgreSQL", io::ErrorKind::WriteZero.into()));
            }
            self.write.advance(n);
        }
        self.transport.flush().await.map_err(|e| io_error("writing to PostgreSQL", e))
    }

    /// Sends Terminate and closes the connection (best effort).
    pub(crate) async fn close(mut self) {
        frontend::terminate(&mut self.write);
        let _ = self.flush().await;
        let _ = self.transport.shutdown().await;
    }

    async fn next_message(&mut self, context: &str) -> Result<Message, ReplicationError> {
        loop {
            if let Some(message) = Message::parse(&mut self.read)
                .map_err(|e| io_error(format!("{context}: reading the server's answer"), e))?
            {
                return Ok(message);
            }
            self.read_more(context).await?;
        }
    }
}

fn read_result(context: &str, read: io::Result<usize>) -> Result<(), ReplicationError> {
    match read {
        Ok(0) => Err(io_error(context, io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(io_error(context, e)),
    }
}

/// Why `START_REPLICATION` failed: the caller words a refusal by what was refused.
#[derive(Debug)]
pub(crate) enum CommandFailure {
    /// The server answered with an error (missing slot, slot in use, …).
    Refused(ServerError),
    /// The connection failed (I/O, protocol).
    Connection(ReplicationError),
}

impl From<ReplicationError> for CommandFailure {
    fn from(error: ReplicationError) -> Self {
        CommandFailure::Connection(error)
    }
}

/// A stream that does not follow the protocol: reconnecting starts over cleanly.
pub(crate) fn protocol(what: impl Into<String>) -> ReplicationError {
    let what = what.into();
    ReplicationError::Transient {
        context: "reading the replication protocol".into(),
        source: what.into(),
    }
}

pub(crate) fn log_notice(fields: postgres_protocol::message::backend::ErrorFields<'_>) {
    ServerError::from_fields(fields).log_as_notice();
}

impl ServerError {
    /// Logs a `NoticeResponse` at its level.
    pub(crate) fn log_as_notice(&self) {
        let message = &self.message;
        match self.severity.as_str() {
            "WARNING" => warn!(%message, "PostgreSQL (replication connection)"),
            "NOTICE" | "INFO" => info!(%message, "PostgreSQL (replication connection)"),
            severity => debug!(%severity, %message, "PostgreSQL (replication connection)"),
        }
    }
}

/// A login refused by the server: with its fix if only a person can help.
fn login_error(cfg: &PgConnectionConfig, error: ServerError) -> ReplicationError {
    diagnosis::auth_problem(cfg, &error.code, &error.message).unwrap_or_else(|| {
        error.into_error(format!("logging in for replication to {}:{}", cfg.host(), cfg.port()))
    })
}

fn scram_error(cfg: &PgConnectionConfig, err: io::Error) -> ReplicationError {
    ReplicationError::startup(
        format!(
            "SCRAM authentication of user {:?} with {}:{} failed: {err}",
            cfg.user(),
            cfg.host(),
            cfg.port()
        ),
        "check the password; if the server's proof does not verify, check that `pg_url` points at the right server",
    )
}

fn unsupported_auth(cfg: &PgConnectionConfig, method: &str) -> ReplicationError {
    ReplicationError::startup(
        format!(
            "PostgreSQL at {}:{} asks user {:?} to authenticate with {method}, which tailbox does not support",
            cfg.host(),
            cfg.port(),
            cfg.user()
        ),
        "use scram-sha-256 (or md5, password, cert, trust) for tailbox's user in pg_hba.conf",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a PostgreSQL 17 walsender of a failover slot sends while the standby of
    /// `synchronized_standby_slots` is gone (seen when the old primary shuts down after
    /// its standby was promoted): retried, unlike other 55000 refusals.
    #[test]
    fn waiting_for_a_standby_is_transient() {
        let error = |code: &str, message: &str, detail: Option<&str>| ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            detail: detail.map(str::to_owned),
        };
        let waiting = error(
            "55000",
            "replication slot \"standby_1\" specified in parameter \"synchronized_standby_slots\" does not have active_pid",
            Some(
                "Logical replication is waiting on the standby associated with replication slot \"standby_1\".",
            ),
        );
        assert!(waiting.is_transient());
        let missing = error(
            "22023",
            "replication slot \"gone\" specified in parameter \"synchronized_standby_slots\" does not exist",
            Some(
                "Logical replication is waiting on the standby associated with replication slot \"gone\".",
            ),
        );
        assert!(missing.is_transient());
        let wal_level =
            error("55000", "logical decoding requires \"wal_level\" >= \"logical\"", None);
        assert!(!wal_level.is_transient());
    }

    fn wire_with(bytes: &[u8]) -> Result<PgWire, io::Error> {
        // A transport is needed to build a PgWire; these tests only use the buffers.
        let (a, _b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        let transport = Transport::Unix(tokio::net::UnixStream::from_std(a)?);
        Ok(PgWire {
            transport,
            read: BytesMut::from(bytes),
            write: BytesMut::new(),
            low_water: 1,
            server_version: None,
            in_hot_standby: None,
        })
    }

    #[tokio::test]
    async fn frames_come_out_whole_and_only_whole() -> Result<(), Box<dyn std::error::Error>> {
        let mut bytes = vec![b'd', 0, 0, 0, 7, b'a', b'b', b'c'];
        bytes.extend_from_slice(&[b'd', 0, 0, 0, 6, b'x']);
        let mut wire = wire_with(&bytes)?;
        let (tag, body) = wire.buffered_frame()?.ok_or("first frame")?;
        assert_eq!((tag, &body[..]), (b'd', &b"abc"[..]));
        assert!(wire.buffered_frame()?.is_none(), "second frame is incomplete");
        wire.read.extend_from_slice(b"y");
        let (_, body) = wire.buffered_frame()?.ok_or("second frame")?;
        assert_eq!(&body[..], b"xy");
        assert!(wire.buffered_frame()?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn absurd_lengths_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let mut wire = wire_with(&[b'd', 0xff, 0xff, 0xff, 0xff, 0])?;
        assert!(wire.buffered_frame().is_err());
        let mut wire = wire_with(&[b'd', 0, 0, 0, 3])?;
        assert!(wire.buffered_frame().is_err(), "shorter than its own length field");
        Ok(())
    }

    #[test]
    fn error_bodies_are_parsed() {
        let error = ServerError::parse(
            b"SERROR\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Rfoo\0\0",
        );
        assert_eq!(error.code, "42704");
        assert_eq!(error.severity, "ERROR");
        assert_eq!(error.message, "replication slot \"x\" does not exist");
        assert_eq!(
            ServerError::parse(b"Mtruncated"),
            ServerError { message: "truncated".into(), ..ServerError::default() }
        );
        assert_eq!(ServerError::parse(b""), ServerError::default());
    }

    #[tokio::test]
    async fn server_errors_carry_their_sqlstate() {
        let error = ServerError {
            severity: "FATAL".into(),
            code: "57P03".into(),
            message: "the database system is starting up".into(),
            detail: None,
        };
        assert!(error.is_transient());
        assert!(error.to_string().contains("(SQLSTATE 57P03)"));
        assert!(error.clone().into_error("x").is_transient());
        let error = ServerError { code: "42704".into(), ..error };
        assert!(!error.into_error("x").is_transient());
    }
}

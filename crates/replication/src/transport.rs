//! The replication connection's byte stream: a Unix socket, TCP, or TLS over TCP per
//! `sslmode` (an SSLRequest, then our rustls handshake with the configuration of
//! [`crate::tls`]). [`crate::wire`] speaks the protocol over it.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpStream, UnixStream},
};

use crate::{
    connection::PgConnectionConfig,
    diagnosis::{handshake_error, server_refuses_tls},
    error::ReplicationError,
    tls::SslMode,
};

/// The byte stream under the protocol.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects the transport: a Unix socket when the host is a directory, else TCP.
pub(crate) async fn connect_socket(cfg: &PgConnectionConfig) -> Result<Transport, io::Error> {
    if cfg.is_unix_socket() {
        let path = format!("{}/.s.PGSQL.{}", cfg.host(), cfg.port());
        return Ok(Transport::Unix(UnixStream::connect(path).await?));
    }
    let tcp = TcpStream::connect((cfg.host().as_str(), cfg.port())).await?;
    tcp.set_nodelay(true)?;
    Ok(Transport::Tcp(tcp))
}

/// Reads the one-byte answer to an SSLRequest.
pub(crate) async fn ssl_answer(tcp: &mut TcpStream) -> Result<u8, io::Error> {
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    Ok(answer[0])
}

/// The name the handshake checks (and sends as SNI when it is a DNS name): the host of
/// the URL, as `tokio-postgres-rustls` does for the control connection.
fn server_name(cfg: &PgConnectionConfig) -> Result<ServerName<'static>, ReplicationError> {
    ServerName::try_from(cfg.host()).map_err(|e| {
        ReplicationError::startup(
            format!("host {:?} in `pg_url` is not a valid TLS server name: {e}", cfg.host()),
            "use a DNS name or an IP address as the host",
        )
    })
}

/// Opens the replication connection's transport per `sslmode`: a Unix socket or TCP,
/// then (unless `disable`, or `prefer` and the server declines) an SSLRequest and our
/// TLS handshake.
pub(crate) async fn connect(cfg: &PgConnectionConfig) -> Result<Transport, ReplicationError> {
    let transient = |context: &str, err: io::Error| ReplicationError::Transient {
        context: format!("{context} ({}:{})", cfg.host(), cfg.port()),
        source: Box::new(err),
    };
    let transport =
        connect_socket(cfg).await.map_err(|e| transient("connecting for replication", e))?;
    let tls = cfg.tls();
    let Transport::Tcp(mut tcp) = transport else { return Ok(transport) };
    if tls.mode == SslMode::Disable {
        return Ok(Transport::Tcp(tcp));
    }
    let config = tls.client_config()?;
    let name = server_name(cfg)?;
    match ssl_answer(&mut tcp).await.map_err(|e| transient("requesting TLS", e))? {
        b'S' => {}
        b'N' if tls.mode == SslMode::Prefer => return Ok(Transport::Tcp(tcp)),
        b'N' => return Err(server_refuses_tls(cfg)),
        other => {
            return Err(ReplicationError::Definite {
                context: format!("requesting TLS from {}:{}", cfg.host(), cfg.port()),
                source: format!("unexpected answer byte {other:#04x} to SSLRequest").into(),
            });
        }
    }
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_error(cfg, "TLS handshake for replication", e))?;
    Ok(Transport::Tls(Box::new(stream)))
}

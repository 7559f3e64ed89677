//! A real HTTP receiver for the webhook sink's tests (hyper, on 127.0.0.1; HTTPS with
//! a certificate of the test's own by [`WebhookReceiver::start_tls`]): it checks
//! each request's Standard Webhooks signature with its own HMAC (independent of
//! tailbox's code), records every arrival in order, and answers as its script says:
//! 200, any status (with `Retry-After`), a stall longer than the client's timeout, or
//! a dropped connection.
//!
//! [`verify_with_standardwebhooks`] checks recorded arrivals a second way, with the
//! Standard Webhooks reference library (npm `standardwebhooks`, installed by
//! `scripts/standardwebhooks.sh fetch`, which `make deps` runs), as a receiver
//! built on the published library would.

use std::{
    convert::Infallible,
    future::poll_fn,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use hyper::{
    Request, Response, StatusCode,
    body::{Body, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use rustls::{
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Arrival order (0, 1, …) over all requests.
    pub index: usize,
    /// The request path.
    pub path: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    /// Whether `webhook-signature` verified with the receiver's secret.
    pub signature_ok: bool,
    /// The request body.
    pub body: Vec<u8>,
    /// Every header, lower-case name → value.
    pub headers: Vec<(String, String)>,
    /// The status the receiver answered (`None`: it stalled or dropped the connection).
    pub answered: Option<u16>,
    /// When its headers arrived.
    pub received_at: SystemTime,
}

impl Arrival {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether it got a 2xx.
    pub fn delivered(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200.
    Ok,
    /// This status, with `Retry-After: secs` if given.
    Status(u16, Option<u64>),
    /// Waits this long before answering 200 (longer than the client's timeout: a
    /// timeout for the client, which retries).
    Stall(Duration),
}

/// Decides each reply from the arrival (before `answered` is set).
pub type Script = Arc<dyn Fn(&Arrival) -> Reply + Send + Sync>;

struct State {
    arrivals: Vec<Arrival>,
    script: Script,
    tls_failures: Vec<String>,
}

/// A receiver on a port of its own; stops when dropped.
pub struct WebhookReceiver {
    addr: std::net::SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts one (inside a tokio runtime) that verifies with `secret` (`whsec_…`) and
    /// answers 200 until told otherwise.
    pub async fn start(secret: &str) -> Result<Self> {
        Self::start_with(secret, None).await
    }

    /// [`WebhookReceiver::start`], but HTTPS only, serving `cert` (a PEM chain, e.g.
    /// [`crate::PgTlsFiles::generate`]'s `server_cert`, for IP 127.0.0.1) and `key`.
    /// Handshakes that fail (a client that does not trust the certificate) are counted
    /// by [`WebhookReceiver::tls_failures`], not recorded as arrivals.
    pub async fn start_tls(secret: &str, cert: &Path, key: &Path) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} holds no PEM certificate", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading the private key {}", key.display()))?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .context("the receiver's certificate and key")?;
        Self::start_with(secret, Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(secret: &str, tls: Option<TlsAcceptor>) -> Result<Self> {
        let key = STANDARD
            .decode(secret.trim().trim_start_matches("whsec_"))
            .context("the test secret is not base64")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            arrivals: Vec::new(),
            script: Arc::new(|_| Reply::Ok),
            tls_failures: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let key = Arc::new(key);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&shared);
                let key = Arc::clone(&key);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, state, key).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => serve(stream, state, key).await,
                            Err(error) => {
                                if let Ok(mut state) = state.lock() {
                                    state.tls_failures.push(error.to_string());
                                }
                            }
                        },
                    }
                });
            }
        });
        Ok(Self { addr, scheme, state, task })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when started by
    /// [`WebhookReceiver::start_tls`].
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Why each failed TLS handshake failed, as the receiver saw it (e.g. the client's
    /// alert that it does not know the CA).
    pub fn tls_failures(&self) -> Vec<String> {
        self.state.lock().map(|s| s.tls_failures.clone()).unwrap_or_default()
    }

    /// Replaces the script.
    pub fn set_script(&self, script: impl Fn(&Arrival) -> Reply + Send + Sync + 'static) {
        if let Ok(mut state) = self.state.lock() {
            state.script = Arc::new(script);
        }
    }

    /// Every arrival so far, in order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.lock().map(|s| s.arrivals.clone()).unwrap_or_default()
    }

    /// How many requests arrived so far (without copying them).
    pub fn count(&self) -> usize {
        self.state.lock().map(|s| s.arrivals.len()).unwrap_or_default()
    }

    /// How many requests got a 2xx so far (without copying them).
    pub fn delivered(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.arrivals.iter().filter(|a| a.delivered()).count())
            .unwrap_or_default()
    }
}

/// Verifies each arrival's signature with the Standard Webhooks reference library
/// (`scripts/standardwebhooks.sh verify`, Node.js): `"ok"` or `"fail: why"` per
/// arrival, in order. An error (not a failed verification) if the library is not
/// installed: `make deps` installs it.
pub fn verify_with_standardwebhooks(secret: &str, arrivals: &[Arrival]) -> Result<Vec<String>> {
    use std::io::Write;
    let mut input = Vec::new();
    for a in arrivals {
        let line = serde_json::json!({
            "secret": secret,
            "id": a.id,
            "timestamp": a.timestamp,
            "signature": a.header("webhook-signature").unwrap_or_default(),
            "body_base64": STANDARD.encode(&a.body),
        });
        writeln!(input, "{line}")?;
    }
    let script = crate::workspace_root().join("scripts/standardwebhooks.sh");
    let mut child = std::process::Command::new("bash")
        .arg(&script)
        .arg("verify")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    child.stdin.take().context("verifier stdin")?.write_all(&input)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} verify failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    anyhow::ensure!(
        verdicts.len() == arrivals.len(),
        "the verifier answered {} lines for {} requests",
        verdicts.len(),
        arrivals.len()
    );
    Ok(verdicts)
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection (plain or TLS) until the client closes it.
async fn serve<S>(stream: S, state: Arc<Mutex<State>>, key: Arc<Vec<u8>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        let key = Arc::clone(&key);
        async move { Ok::<_, Infallible>(answer(req, &state, &key).await) }
    });
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

async fn answer(req: Request<Incoming>, state: &Mutex<State>, key: &[u8]) -> Response<String> {
    let received_at = SystemTime::now();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let id = get("webhook-id").unwrap_or_default();
    let timestamp: i64 = get("webhook-timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    let signature_ok = get("webhook-signature").is_some_and(|header| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return false };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&bytes);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        header.split(' ').any(|s| s == expected)
    });
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let fresh = (now - timestamp).abs() <= 300;
    let (index, reply) = {
        let Ok(mut state) = state.lock() else {
            return Response::new(String::new());
        };
        let index = state.arrivals.len();
        let arrival = Arrival {
            index,
            path,
            id,
            timestamp,
            signature_ok: signature_ok && fresh,
            body: bytes,
            headers,
            answered: None,
            received_at,
        };
        let reply = (state.script)(&arrival);
        state.arrivals.push(arrival);
        (index, reply)
    };
    let status = match reply {
        Reply::Ok => 200,
        Reply::Status(status, _) => status,
        Reply::Stall(wait) => {
            tokio::time::sleep(wait).await;
            200
        }
    };
    // Recorded only once answered: a stalled request the client gave up on counts as
    // answered here, but the client saw a timeout (tests tell them apart by `Stall`).
    if let Ok(mut state) = state.lock()
        && let Some(arrival) = state.arrivals.get_mut(index)
    {
        arrival.answered = if matches!(reply, Reply::Stall(_)) { None } else { Some(status) };
    }
    let mut response = Response::new(String::new());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Reply::Status(_, Some(secs)) = reply
        && let Ok(value) = secs.to_string().parse()
    {
        response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
    }
    response
}

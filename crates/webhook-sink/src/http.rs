//! The HTTP side: one client (reqwest over hyper, rustls with the ring provider, our
//! own roots), and one attempt at one event.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use tailbox_sink::SinkError;

use crate::{
    WEBHOOK,
    config::WebhookSinkConfig,
    request::Prepared,
    retry::{Verdict, classify, parse_retry_after},
    signature::SigningKey,
};

/// How much of a failed response's body is kept for the dead letters.
pub const BODY_EXCERPT: usize = 1024;
/// How much of a successful response's body is read (so the connection can be reused).
const DRAIN_LIMIT: usize = 64 * 1024;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Delivered, retry, or refused for good.
    pub verdict: Verdict,
    /// The response's status, if one came.
    pub status: Option<u16>,
    /// `Retry-After`, if the response had one we understood.
    pub retry_after: Option<Duration>,
    /// What went wrong (empty when delivered).
    pub error: String,
    /// The start of the response body, when it failed.
    pub body_excerpt: Option<String>,
    /// When the request went out.
    pub at: SystemTime,
}

/// The client and what every request carries.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    key: Option<SigningKey>,
    headers: HeaderMap,
}

impl Http {
    /// Builds the client: TLS verified against the public roots (webpki-roots), or only
    /// the CAs in `ca_file`; no proxy from the environment; HTTP/1.1.
    pub fn new(config: &WebhookSinkConfig) -> Result<Self, SinkError> {
        let roots = match &config.ca_file {
            Some(path) => load_roots(path)?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Config { destination: WEBHOOK, reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(config.concurrency.max(1))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tailbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Config { destination: WEBHOOK, reason: e.to_string() })?;
        Ok(Self { client, key: config.signing_key.clone(), headers: config.headers.clone() })
    }

    /// POSTs `event` once, signed with the current time.
    pub async fn attempt(&self, event: &Prepared) -> Attempt {
        let at = SystemTime::now();
        let timestamp =
            at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut request = self
            .client
            .post(&event.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, event.content_type.clone())
            .header(HeaderName::from_static("webhook-timestamp"), timestamp);
        if let Ok(id) = HeaderValue::from_str(&event.id) {
            request = request.header(HeaderName::from_static("webhook-id"), id);
        }
        if let Some(key) = &self.key {
            let signature = key.sign(&event.id, timestamp, &event.body);
            if let Ok(value) = HeaderValue::from_str(&signature) {
                request = request.header(HeaderName::from_static("webhook-signature"), value);
            }
        }
        for (name, value) in &event.headers {
            request = request.header(name.clone(), value.clone());
        }
        let response = match request.body(event.body.clone()).send().await {
            Ok(response) => response,
            Err(error) => {
                return Attempt {
                    verdict: Verdict::Retry,
                    status: None,
                    retry_after: None,
                    error: describe(&error),
                    body_excerpt: None,
                    at,
                };
            }
        };
        let status = response.status().as_u16();
        let verdict = classify(status);
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let limit = if verdict == Verdict::Delivered { DRAIN_LIMIT } else { BODY_EXCERPT };
        let body = read_some(response, limit).await;
        if verdict == Verdict::Delivered {
            return Attempt {
                verdict,
                status: Some(status),
                retry_after,
                error: String::new(),
                body_excerpt: None,
                at,
            };
        }
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned();
        Attempt {
            verdict,
            status: Some(status),
            retry_after,
            error: format!("the receiver answered {status}"),
            body_excerpt: Some(excerpt),
            at,
        }
    }
}

/// Reads up to `limit` bytes of the body (errors end the read: what came is enough).
async fn read_some(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())])
            }
            _ => break,
        }
    }
    body
}

/// A transport error in one line with its causes (reqwest's own message says little).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if untrusted_certificate(&text) {
        text.push_str(
            "; fix: the receiver's TLS certificate is not trusted: give the CA that signed it \
             (webhook_ca), and use a URL host the certificate names",
        );
    }
    text
}

/// rustls's words for a refused server certificate (unknown issuer, wrong name,
/// expired…), `rustls::Error::InvalidCertificate`. Matched in the text: reqwest hands the
/// error over boxed by hyper and its own connector, and a downcast does not reach it.
const INVALID_CERTIFICATE: &str = "invalid peer certificate";

/// Whether a transport error's text (from [`describe`]) is a refused certificate.
fn untrusted_certificate(text: &str) -> bool {
    text.contains(INVALID_CERTIFICATE)
}

fn load_roots(path: &Path) -> Result<RootCertStore, SinkError> {
    let config = |reason: String| SinkError::Config {
        destination: WEBHOOK,
        reason: format!("webhook_ca {}: {reason}", path.display()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| config(format!("cannot read it ({e})")))?
        .collect::<Result<_, _>>()
        .map_err(|e| config(format!("not PEM certificates ({e})")))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(config("holds no usable CA certificate".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_certificates_are_recognised_by_rustls_words() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let text = format!("could not connect: client error (Connect): {refused}");
        assert!(untrusted_certificate(&text), "rustls changed its words: {text}");
        assert!(!untrusted_certificate("could not connect: connection refused"));
    }
}

//! TLS to PostgreSQL with libpq's `sslmode` semantics, the same on both connections.
//!
//! The URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` become one [`TlsOptions`];
//! it builds one rustls [`ClientConfig`] with one certificate verifier, which both
//! connections use:
//!
//! - the control connection (`tokio-postgres`) through `tokio-postgres-rustls`;
//! - the replication connection (`transport`): we open the TCP connection, send the
//!   SSLRequest and make the TLS handshake with `tokio-rustls`.
//!
//! This module knows nothing of URLs or sockets (it sits below [`crate::connection`]);
//! what a failed handshake means to a person is worded in `diagnosis`.
//!
//! So one function decides for both connections, and every libpq rule below holds on
//! both: verify-ca accepts a certificate for another host, verify-full checks IP
//! subjectAltNames too.
//!
//! | sslmode | TLS | server certificate checked against sslrootcert | host name checked |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (default) | if the server offers it | no | no |
//! | `require` | always | only if a root certificate is given (libpq) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes (subjectAltName, DNS or IP) |

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::error::ReplicationError;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::ParsedCertificate,
};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, without checking its certificate (libpq's default).
    #[default]
    Prefer,
    /// Always TLS; the certificate is checked only if a root certificate is given.
    Require,
    /// Always TLS; the certificate must chain to `sslrootcert`. The host name is not
    /// checked.
    VerifyCa,
    /// Always TLS; the certificate must chain to `sslrootcert` and name the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "disable" => Some(SslMode::Disable),
            "prefer" => Some(SslMode::Prefer),
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection fails rather than going on without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (`sslrootcert=/path`, or libpq's default `~/.postgresql/root.crt`).
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla root set compiled into tailbox (webpki-roots).
    System,
}

/// What is checked about the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Nothing (encryption only).
    None,
    /// The chain up to a trusted root, not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS settings of a `postgres://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, or `~/.postgresql/root.crt` if that exists (as in libpq).
    pub root_cert: Option<RootCert>,
    /// `sslcert`: the client certificate (PEM), for `cert` authentication.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: its private key (PEM, unencrypted).
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// What is checked about the server's certificate under these options.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Verification::None,
            // libpq: "if a root CA file exists, the behavior of sslmode=require will be
            // the same as that of verify-ca".
            SslMode::Require if matches!(self.root_cert, Some(RootCert::File(_))) => {
                Verification::Chain
            }
            SslMode::Require => Verification::None,
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::Full,
        }
    }

    /// Checks the combination and reads every file once, so that `config check` and
    /// startup report a missing or unreadable file before connecting.
    pub(crate) fn validate(&self) -> Result<(), ReplicationError> {
        if self.mode == SslMode::Disable {
            return Ok(());
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => {
                return Err(ReplicationError::startup(
                    "sslcert is set in `pg_url` but sslkey is not",
                    "give both sslcert (the client certificate) and sslkey (its private key)",
                ));
            }
            (None, Some(_)) => {
                return Err(ReplicationError::startup(
                    "sslkey is set in `pg_url` but sslcert is not",
                    "give both sslcert (the client certificate) and sslkey (its private key)",
                ));
            }
            _ => {}
        }
        if self.root_cert == Some(RootCert::System) && self.mode != SslMode::VerifyFull {
            return Err(ReplicationError::startup(
                format!(
                    "sslrootcert=system with sslmode={} would trust every public CA without checking the host name",
                    self.mode.as_str()
                ),
                "use sslmode=verify-full with sslrootcert=system (as libpq requires)",
            ));
        }
        if self.verification() != Verification::None && self.root_cert.is_none() {
            return Err(ReplicationError::startup(
                format!(
                    "sslmode={} needs the CA certificate that signed the server's certificate, but sslrootcert is not set and ~/.postgresql/root.crt does not exist",
                    self.mode.as_str()
                ),
                "add sslrootcert=/path/to/ca.crt to `pg_url` (sslrootcert=system for a publicly trusted server certificate)",
            ));
        }
        self.client_config().map(|_| ())
    }

    /// The rustls configuration both connections use (files are read on every call, so
    /// renewed certificates are picked up at the next connection).
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, ReplicationError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verification = self.verification();
        let roots = match (&self.root_cert, verification) {
            (_, Verification::None) | (None, _) => RootCertStore::empty(),
            (Some(RootCert::System), _) => {
                RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
            }
            (Some(RootCert::File(path)), _) => load_roots(path)?,
        };
        let verifier = PgVerifier {
            verification,
            roots: Arc::new(roots),
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                ReplicationError::startup(
                    format!("cannot set up TLS: {e}"),
                    "report this as a tailbox bug",
                )
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = load_client_chain(cert)?;
                let key_der = load_client_key(key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    ReplicationError::startup(
                        format!(
                            "sslcert {} and sslkey {} do not make a usable client certificate: {e}",
                            cert.display(),
                            key.display()
                        ),
                        "check that sslkey is the private key of the certificate in sslcert",
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// libpq's default root certificate file, if it exists.
pub(crate) fn default_root_cert() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql").join("root.crt");
    path.is_file().then_some(path)
}

fn load_roots(path: &Path) -> Result<RootCertStore, ReplicationError> {
    let certs = read_certs(path, "sslrootcert")?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ReplicationError::startup(
            format!("sslrootcert {} holds no usable CA certificate", path.display()),
            "point sslrootcert at the PEM file of the CA that signed the server's certificate",
        ));
    }
    Ok(roots)
}

fn load_client_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ReplicationError> {
    read_certs(path, "sslcert")
}

fn read_certs(path: &Path, param: &str) -> Result<Vec<CertificateDer<'static>>, ReplicationError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ReplicationError::startup(
            format!("{param} {}: cannot read it: {e}", path.display()),
            format!("point {param} in `pg_url` at a readable PEM certificate file"),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(ReplicationError::startup(
            format!("{param} {} holds no PEM certificate", path.display()),
            format!(
                "point {param} in `pg_url` at a PEM certificate file (-----BEGIN CERTIFICATE-----)"
            ),
        ));
    }
    Ok(certs)
}

fn load_client_key(path: &Path) -> Result<PrivateKeyDer<'static>, ReplicationError> {
    let text = std::fs::read(path).map_err(|e| {
        ReplicationError::startup(
            format!("sslkey {}: cannot read it: {e}", path.display()),
            "point sslkey in `pg_url` at the client certificate's private key (PEM)",
        )
    })?;
    if text.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(ReplicationError::startup(
            format!("sslkey {} is encrypted; tailbox reads unencrypted keys only", path.display()),
            "decrypt it (openssl pkey -in KEY -out KEY.plain), make it readable by tailbox's user only (chmod 600) and point sslkey at it",
        ));
    }
    check_key_permissions(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        ReplicationError::startup(
            format!("sslkey {} holds no usable private key: {e}", path.display()),
            "use a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
        )
    })
}

/// libpq refuses a private key that others can read; so do we.
#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), ReplicationError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o777;
    // Owned by us: 0600 or less. Owned by root: 0640 or less (libpq's rule).
    let too_open = if meta.uid() == 0 { mode & 0o037 != 0 } else { mode & 0o077 != 0 };
    if too_open {
        return Err(ReplicationError::startup(
            format!("sslkey {} has group or world access (mode {mode:o})", path.display()),
            format!("chmod 600 {} (or 640 if owned by root)", path.display()),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), ReplicationError> {
    Ok(())
}

/// The one certificate verifier of both connections.
#[derive(Debug)]
struct PgVerifier {
    verification: Verification,
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verification == Verification::None {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.verification == Verification::Full {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature is checked in every mode: it proves the server holds the
    // key of the certificate it sent.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_verify_as_libpq() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SslMode::parse("allow"), None);
        let with = |mode, root: Option<RootCert>| {
            TlsOptions { mode, root_cert: root, ..TlsOptions::default() }.verification()
        };
        let ca = || Some(RootCert::File("/ca.crt".into()));
        assert_eq!(with(SslMode::Prefer, ca()), Verification::None);
        assert_eq!(with(SslMode::Require, None), Verification::None);
        assert_eq!(with(SslMode::Require, ca()), Verification::Chain, "libpq's require + root");
        assert_eq!(with(SslMode::VerifyCa, ca()), Verification::Chain);
        assert_eq!(with(SslMode::VerifyFull, ca()), Verification::Full);
    }

    #[test]
    fn verification_without_a_root_certificate_names_the_fix() {
        let options = TlsOptions { mode: SslMode::VerifyFull, ..TlsOptions::default() };
        let text = options.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("sslmode=verify-full") && text.contains("fix: add sslrootcert="),
            "{text}"
        );
        let options = TlsOptions {
            mode: SslMode::Require,
            root_cert: Some(RootCert::System),
            ..TlsOptions::default()
        };
        let text = options.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("verify-full"), "{text}");
    }

    #[test]
    fn missing_files_are_named() {
        let options = TlsOptions {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File("/nonexistent/ca.crt".into())),
            ..TlsOptions::default()
        };
        let text = options.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("sslrootcert /nonexistent/ca.crt") && text.contains("fix:"),
            "{text}"
        );
        let options = TlsOptions {
            mode: SslMode::Require,
            client_cert: Some("/nonexistent/c.crt".into()),
            ..TlsOptions::default()
        };
        let text = options.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("sslkey is not"), "{text}");
    }
}

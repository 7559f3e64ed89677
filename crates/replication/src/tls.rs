//! TLS to PostgreSQL with libpq's `sslmode` semantics, the same on both connections.
//!
//! The URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` become one [`TlsOptions`];
//! it builds one rustls [`ClientConfig`] with one certificate verifier, which both
//! connections use:
//!
//! - the control connection (`tokio-postgres`) through `tokio-postgres-rustls`;
//! - the replication connection ([`crate::wire`]): we open the TCP connection, send the
//!   SSLRequest and make the TLS handshake with `tokio-rustls`.
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
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    connection::PgConnectionConfig,
    error::ReplicationError,
    wire::{self, Transport},
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
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

// ---------------------------------------------------------------------------------------
// The replication connection's transport.
// ---------------------------------------------------------------------------------------

/// Opens the replication connection's transport per `sslmode`: a Unix socket or TCP,
/// then (unless `disable`, or `prefer` and the server declines) an SSLRequest and our
/// TLS handshake.
pub(crate) async fn connect_replication_transport(
    cfg: &PgConnectionConfig,
) -> Result<Transport, ReplicationError> {
    let transient = |context: &str, err: io::Error| ReplicationError::Transient {
        context: format!("{context} ({}:{})", cfg.host(), cfg.port()),
        source: Box::new(err),
    };
    let transport =
        wire::connect_socket(cfg).await.map_err(|e| transient("connecting for replication", e))?;
    let tls = cfg.tls();
    let Transport::Tcp(mut tcp) = transport else { return Ok(transport) };
    if tls.mode == SslMode::Disable {
        return Ok(Transport::Tcp(tcp));
    }
    let config = tls.client_config()?;
    let name = server_name(cfg)?;
    match wire::ssl_answer(&mut tcp).await.map_err(|e| transient("requesting TLS", e))? {
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

// ---------------------------------------------------------------------------------------
// Connection failures that only a person can fix, worded once for both connections.
// ---------------------------------------------------------------------------------------

fn server_refuses_tls(cfg: &PgConnectionConfig) -> ReplicationError {
    ReplicationError::startup(
        format!(
            "the PostgreSQL server at {}:{} does not accept TLS connections, and sslmode={} requires TLS",
            cfg.host(),
            cfg.port(),
            cfg.tls().mode.as_str()
        ),
        "turn TLS on in the server (ssl = on, ssl_cert_file, ssl_key_file), or, on a trusted network only, use sslmode=prefer or sslmode=disable",
    )
}

/// A failed TLS handshake: certificate problems become a [`ReplicationError::Startup`]
/// with the fix; I/O trouble stays transient.
pub(crate) fn handshake_error(
    cfg: &PgConnectionConfig,
    context: &str,
    err: io::Error,
) -> ReplicationError {
    if let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return tls_problem(cfg, tls);
    }
    ReplicationError::Transient {
        context: format!("{context} ({}:{})", cfg.host(), cfg.port()),
        source: Box::new(err),
    }
}

/// The rustls error somewhere in `err`'s chain (io::Error hides its payload from
/// `source()`, so look inside those too).
fn find_rustls_error<'a>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        err = err.source()?;
    }
}

fn tls_problem(cfg: &PgConnectionConfig, err: &rustls::Error) -> ReplicationError {
    let mode = cfg.tls().mode.as_str();
    let at = format!("{}:{}", cfg.host(), cfg.port());
    let root = match &cfg.tls().root_cert {
        Some(RootCert::File(path)) => path.display().to_string(),
        Some(RootCert::System) => "system".to_owned(),
        None => "not set".to_owned(),
    };
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            let names = match err {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    presented,
                    ..
                }) if !presented.is_empty() => {
                    let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            ReplicationError::startup(
                format!(
                    "TLS: the server certificate of {at} is not valid for host {:?}{names}, and sslmode={mode} checks the host name",
                    cfg.host()
                ),
                format!(
                    "connect to a host name or address the certificate carries in subjectAltName, re-issue the certificate with {:?} in subjectAltName, or use sslmode=verify-ca to check the CA chain only",
                    cfg.host()
                ),
            )
        }
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => ReplicationError::startup(
            format!(
                "TLS: the server certificate of {at} is not signed by a CA in sslrootcert ({root}) (sslmode={mode})"
            ),
            "point sslrootcert in `pg_url` at the CA certificate that issued the server's certificate",
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => ReplicationError::startup(
            format!("TLS: the server certificate of {at} is not valid now: {err} (sslmode={mode})"),
            "renew the server's certificate (or correct this machine's clock)",
        ),
        rustls::Error::AlertReceived(alert) => {
            let fix = if cfg.tls().client_cert.is_some() {
                "the server does not accept the client certificate in sslcert: use one signed by a CA in the server's ssl_ca_file"
            } else {
                "if the server requires a client certificate, give sslcert and sslkey in `pg_url`; otherwise check the server's TLS settings (ssl_min_protocol_version, ssl_ciphers)"
            };
            ReplicationError::startup(
                format!(
                    "TLS: the server at {at} refused the handshake ({alert:?}) (sslmode={mode})"
                ),
                fix,
            )
        }
        other => ReplicationError::startup(
            format!("TLS handshake with {at} failed: {other} (sslmode={mode})"),
            "check sslmode, sslrootcert, sslcert and sslkey in `pg_url`",
        ),
    }
}

/// `IpAddress(127.0.0.1)` / `DnsName("db")` as rustls presents a certificate's names →
/// `127.0.0.1` / `db`.
fn presented_name(name: &str) -> &str {
    let inner = name.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')).unwrap_or(name);
    inner.trim_matches('"')
}

/// A server refusal of the login (SQLSTATE class 28), worded with the fix.
pub(crate) fn auth_problem(
    cfg: &PgConnectionConfig,
    code: &str,
    message: &str,
) -> Option<ReplicationError> {
    let user = cfg.user();
    let mode = cfg.tls().mode.as_str();
    match code {
        "28P01" => Some(ReplicationError::startup(
            format!("PostgreSQL refused the password of user {user:?}: {message} (SQLSTATE 28P01)"),
            format!(
                "check the password: the one in `pg_password_file` or in `pg_url` must be the role's (ALTER ROLE {user} PASSWORD ...)"
            ),
        )),
        "28000" if message.contains("no encryption") => Some(ReplicationError::startup(
            format!(
                "PostgreSQL refused the connection without TLS (sslmode={mode}): {message} (SQLSTATE 28000)"
            ),
            "the server accepts this user only over TLS: add sslmode=verify-full&sslrootcert=/path/to/ca.crt to `pg_url` (sslmode=require encrypts without checking the server)",
        )),
        "28000" if message.contains("certificate") => Some(ReplicationError::startup(
            format!(
                "PostgreSQL refused the client certificate of user {user:?}: {message} (SQLSTATE 28000)"
            ),
            format!(
                "give sslcert and sslkey in `pg_url`: a client certificate signed by a CA in the server's ssl_ca_file, whose CN is the user name ({user})"
            ),
        )),
        "28000" => Some(ReplicationError::startup(
            format!(
                "PostgreSQL refused the connection of user {user:?} (sslmode={mode}): {message} (SQLSTATE 28000)"
            ),
            "allow this user, database and address in the server's pg_hba.conf (hostssl for TLS), or connect as a user it allows",
        )),
        _ => None,
    }
}

/// Maps a failed `tokio-postgres` connect to a problem with its fix, if it is one.
pub(crate) fn control_connect_problem(
    cfg: &PgConnectionConfig,
    err: &tokio_postgres::Error,
) -> Option<ReplicationError> {
    if let Some(db) = err.as_db_error() {
        return auth_problem(cfg, db.code().code(), db.message());
    }
    if let Some(tls) = find_rustls_error(err) {
        return Some(tls_problem(cfg, tls));
    }
    let text = err.to_string();
    if text.contains("server does not support TLS") {
        return Some(server_refuses_tls(cfg));
    }
    if text.contains("password missing") {
        return Some(password_missing(cfg));
    }
    None
}

/// The server asks for a password and the URL has none.
pub(crate) fn password_missing(cfg: &PgConnectionConfig) -> ReplicationError {
    ReplicationError::startup(
        format!("PostgreSQL asks user {:?} for a password but none was given", cfg.user()),
        "set `pg_password_file` to a file holding the password, put it in `pg_url`, or give sslcert/sslkey if the server accepts client certificates",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_are_shown_plainly() {
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(presented_name("plain"), "plain");
    }

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

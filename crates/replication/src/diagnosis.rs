//! Connection failures that only a person can fix, worded once for both connections
//! (the control connection's `tokio-postgres` errors and our replication connection's):
//! TLS certificate problems, login refusals (SQLSTATE class 28), a missing password.
//! Each becomes a [`ReplicationError::Startup`] naming the setting to change.

use std::io;

use rustls::CertificateError;

use crate::{connection::PgConnectionConfig, error::ReplicationError, tls::RootCert};

pub(crate) fn server_refuses_tls(cfg: &PgConnectionConfig) -> ReplicationError {
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
}

//! One `postgres://` URL, read once, handed to both PostgreSQL clients: the control
//! connection (`tokio-postgres`) and the replication connection ([`crate::wire`]).
//!
//! libpq's TLS parameters (`sslmode` with all five values, `sslrootcert`, `sslcert`,
//! `sslkey`) are read here, not by `tokio-postgres` (which knows only three `sslmode`
//! values and none of the files): they are taken out of the URL before the rest goes to
//! `tokio_postgres::Config`, and become one [`TlsOptions`] that both connections use
//! (see [`crate::tls`]).

use std::{path::PathBuf, str::FromStr};

use tokio_postgres::config::{ChannelBinding, Host, SslMode as PgSslMode, SslNegotiation};

use crate::{
    error::ReplicationError,
    tls::{self, RootCert, SslMode, TlsOptions},
};

/// Where and how to connect to PostgreSQL.
#[derive(Clone)]
pub struct PgConnectionConfig {
    control: tokio_postgres::Config,
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
    tls: TlsOptions,
}

impl std::fmt::Debug for PgConnectionConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The URL parameters tailbox reads itself.
const TLS_PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"];

fn invalid_url(err: tokio_postgres::Error) -> ReplicationError {
    // "invalid connection string" alone does not say which part.
    let problem = match std::error::Error::source(&err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    ReplicationError::startup(
        format!("invalid --pg-url: {problem}"),
        "use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.crt]",
    )
}

impl PgConnectionConfig {
    /// Parses a libpq-style URL (`postgres://user:pass@host:port/db?sslmode=verify-full&sslrootcert=ca.crt`)
    /// or key/value string (`host=db user=app sslmode=require`).
    pub fn parse(url: &str) -> Result<Self, ReplicationError> {
        let (rest, params) = take_tls_params(url);
        let mut control = tokio_postgres::Config::from_str(&rest).map_err(invalid_url)?;
        let host = match control.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
            None => "localhost".to_owned(),
        };
        let port = control.get_ports().first().copied().unwrap_or(5432);
        let user = control.get_user().unwrap_or("postgres").to_owned();
        let password = control
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = control.get_dbname().unwrap_or(&user).to_owned();

        let param =
            |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if param("sslpassword").is_some() {
            return Err(ReplicationError::startup(
                "sslpassword in --pg-url: encrypted client keys are not supported",
                "decrypt the key (openssl pkey -in KEY -out KEY.plain), make it readable by tailbox's user only (chmod 600), point sslkey at it and drop sslpassword",
            ));
        }
        let mode = match param("sslmode") {
            None => SslMode::default(),
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                ReplicationError::startup(
                    format!(
                        "invalid --pg-url: sslmode {text:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    ),
                    "use sslmode=verify-full (with sslrootcert) to encrypt and check the server; prefer is the default",
                )
            })?,
        };
        let root_cert = match param("sslrootcert") {
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(PathBuf::from(path))),
            None => tls::default_root_cert().map(RootCert::File),
        };
        let tls = TlsOptions {
            mode,
            root_cert,
            client_cert: param("sslcert").map(PathBuf::from),
            client_key: param("sslkey").map(PathBuf::from),
        };
        if control.get_channel_binding() == ChannelBinding::Require {
            return Err(ReplicationError::startup(
                "channel_binding=require in --pg-url: the replication connection cannot bind SCRAM to the TLS channel",
                "drop channel_binding (the control connection still binds when the server offers it); use sslmode=verify-full to authenticate the server",
            ));
        }
        if control.get_ssl_negotiation() == SslNegotiation::Direct {
            return Err(ReplicationError::startup(
                "sslnegotiation=direct in --pg-url is not supported",
                "drop sslnegotiation (TLS is negotiated with an SSLRequest, which every PostgreSQL version accepts)",
            ));
        }
        let unix_socket = matches!(control.get_hosts().first(), Some(Host::Unix(_)));
        // TLS does not apply to Unix sockets (libpq ignores sslmode there too).
        control.ssl_mode(match mode {
            _ if unix_socket => PgSslMode::Disable,
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        if !unix_socket {
            tls.validate()?;
        }
        Ok(Self { control, host, port, user, password, database, tls })
    }

    /// The host (or Unix socket directory).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// Whether the host is a Unix socket directory (no TLS there).
    pub fn is_unix_socket(&self) -> bool {
        matches!(self.control.get_hosts().first(), Some(Host::Unix(_)))
    }

    pub(crate) fn control(&self) -> &tokio_postgres::Config {
        &self.control
    }

    /// The password ("" if none).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// The URL's `connect_timeout`, if set.
    pub(crate) fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.control.get_connect_timeout().copied()
    }
}

/// Takes libpq's TLS parameters out of a URL's query string or a key/value string;
/// returns the rest (for `tokio_postgres::Config`) and the parameters, values decoded.
fn take_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url { take_from_url(url) } else { take_from_key_value(url) }
}

fn take_from_url(url: &str) -> (String, Vec<(String, String)>) {
    // As tokio-postgres (and libpq) read it: the credentials end at the first '@', and
    // the query starts at the first '?' after them.
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let after_credentials = url[scheme_end..].find('@').map_or(scheme_end, |i| scheme_end + i + 1);
    let Some(q) = url[after_credentials..].find('?').map(|i| after_credentials + i) else {
        return (url.to_owned(), Vec::new());
    };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if TLS_PARAMS.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, taken)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key = value` pairs (values bare or single-quoted, backslash escapes), as libpq reads
/// them. On a syntax error the string is returned unchanged, for tokio-postgres to
/// report.
fn take_from_key_value(text: &str) -> (String, Vec<(String, String)>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|(_, c)| *c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |(o, _)| *o);
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i).is_none() {
            break;
        }
        let start = i;
        let mut key = String::new();
        while let Some(c) = at(i)
            && !c.is_whitespace()
            && c != '='
        {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            return (text.to_owned(), Vec::new());
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i) {
                    None => return (text.to_owned(), Vec::new()),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        if let Some(c) = at(i + 1) {
                            value.push(c);
                        }
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(i)
                && !c.is_whitespace()
            {
                if c == '\\' {
                    if let Some(next) = at(i + 1) {
                        value.push(next);
                    }
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        let raw = &text[offset(start)..offset(i.min(chars.len()))];
        if TLS_PARAMS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(raw);
        }
    }
    (kept.join(" "), taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_parts() -> Result<(), ReplicationError> {
        let cfg = PgConnectionConfig::parse("postgres://app:s3cret@db.example:6543/shop")?;
        assert_eq!(cfg.host(), "db.example");
        assert_eq!(cfg.port(), 6543);
        assert_eq!(cfg.user(), "app");
        assert_eq!(cfg.password, "s3cret");
        assert_eq!(cfg.database(), "shop");
        assert_eq!(cfg.tls().mode, SslMode::Prefer, "libpq's default");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        Ok(())
    }

    #[test]
    fn rejects_garbage_with_a_fix() {
        let err = PgConnectionConfig::parse("postgres://a:b@h:notaport/db").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("--pg-url") && text.contains("fix:"), "{text}");
        let err = PgConnectionConfig::parse("postgres://a@h/db?sslcrl=/x.crl").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("sslcrl"), "names the unknown option: {text}");
    }

    #[test]
    fn takes_tls_parameters_out_of_urls() {
        let (rest, taken) = take_tls_params(
            "postgres://u:p%3Fw?x@h:5/db?application_name=a&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.crt&connect_timeout=3",
        );
        assert_eq!(rest, "postgres://u:p%3Fw?x@h:5/db?application_name=a&connect_timeout=3");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/ca x.crt".to_owned())
            ]
        );
        let (rest, taken) = take_tls_params("postgresql://h/db?sslmode=disable");
        assert_eq!(rest, "postgresql://h/db");
        assert_eq!(taken.len(), 1);
        let (rest, taken) = take_tls_params("postgres://h/db");
        assert_eq!((rest.as_str(), taken.len()), ("postgres://h/db", 0));
    }

    #[test]
    fn takes_tls_parameters_out_of_key_value_strings() {
        let (rest, taken) = take_tls_params(
            "host=db sslmode = verify-ca user=app sslrootcert='/a b/c\\'s.crt' password='x y'",
        );
        assert_eq!(rest, "host=db user=app password='x y'");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-ca".to_owned()),
                ("sslrootcert".to_owned(), "/a b/c's.crt".to_owned())
            ]
        );
    }

    #[test]
    fn every_sslmode_is_understood() -> Result<(), ReplicationError> {
        for (mode, control) in [
            ("disable", PgSslMode::Disable),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
        ] {
            let cfg = PgConnectionConfig::parse(&format!("postgres://u@h/db?sslmode={mode}"))?;
            assert_eq!(cfg.tls().mode.as_str(), mode);
            assert_eq!(cfg.control().get_ssl_mode(), control);
        }
        let err = PgConnectionConfig::parse("postgres://u@h/db?sslmode=allow").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("sslmode \"allow\"") && text.contains("fix:"), "{text}");
        let err =
            PgConnectionConfig::parse("host=h user=u sslmode=verify-full sslrootcert=/nope/ca.crt")
                .err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("sslrootcert /nope/ca.crt"), "{text}");
        // Unix sockets: no TLS, whatever sslmode says (as libpq).
        let cfg = PgConnectionConfig::parse("postgres://u@%2Ftmp/db?sslmode=verify-full")?;
        assert!(cfg.is_unix_socket());
        assert_eq!(cfg.control().get_ssl_mode(), PgSslMode::Disable);
        Ok(())
    }

    #[test]
    fn sslpassword_is_refused_without_showing_it() {
        let err = PgConnectionConfig::parse(
            "postgres://u@h/db?sslmode=require&sslkey=/k&sslcert=/c&sslpassword=hunter2",
        )
        .err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("sslpassword") && text.contains("fix:"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn channel_binding_require_is_refused() {
        let err = PgConnectionConfig::parse("postgres://u@h/db?channel_binding=require").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("channel_binding") && text.contains("fix:"), "{text}");
    }
}

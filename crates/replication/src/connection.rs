//! One `postgres://` URL, parsed once into a `tokio_postgres::Config` and handed to
//! both PostgreSQL clients: the control connection (`tokio-postgres`) and the
//! replication connection (`wire`).
//!
//! libpq's TLS parameters (`sslmode` with all five values, `sslrootcert`, `sslcert`,
//! `sslkey`) are read here, not by `tokio-postgres` (which knows only three `sslmode`
//! values and none of the files): they are taken out of the URL before the rest goes to
//! `tokio_postgres::Config`, and become one [`TlsOptions`] that both connections use
//! (see [`crate::tls`]).
//!
//! The password is held as a [`SecretString`] (zeroed on drop, never in `Debug`) and
//! put into a copy of the `tokio_postgres::Config` only for the moment of connecting.
//! [`PgConnectionConfig::redacted`] renders the parsed configuration back as a URL with
//! the password replaced, for logs and `tailbox config check`.
//!
//! Several hosts (`postgres://h1,h2:5433/db`, as libpq) are tried in order by both
//! clients; `target_session_attrs=read-write` skips a host whose sessions are read-only
//! (a standby).
//!
//! Errors name the configuration *field* (`pg_url`), never a flag: the CLI says which
//! flag, variable or file key that was.

use std::{fmt::Write as _, path::PathBuf, str::FromStr, time::Duration};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::{
    ChannelBinding, Host, SslMode as PgSslMode, SslNegotiation, TargetSessionAttrs,
};

use crate::{
    error::ReplicationError,
    tls::{self, RootCert, SslMode, TlsOptions},
};

/// The configuration field this module reads, as errors name it.
pub const PG_URL_FIELD: &str = "pg_url";

/// Shown instead of a password.
pub const REDACTED: &str = "REDACTED";

/// Where and how to connect to PostgreSQL.
#[derive(Clone)]
pub struct PgConnectionConfig {
    /// As parsed, TLS parameters taken out; the password lives in `password` only.
    control: tokio_postgres::Config,
    password: Option<SecretString>,
    tls: TlsOptions,
    /// The TLS parameters as given (for the redacted view).
    tls_params: Vec<(String, String)>,
    /// The one host a replication connection attempt goes to (index into
    /// [`Self::endpoints`]); `None`: the first.
    pinned: Option<usize>,
}

/// One host of the URL, with its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, address, or Unix socket directory.
    pub host: String,
    /// The port (5432 unless given).
    pub port: u16,
    /// Whether `host` is a Unix socket directory.
    pub unix: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::fmt::Debug for PgConnectionConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnectionConfig").field("url", &self.redacted()).finish()
    }
}

/// The URL parameters tailbox reads itself.
const TLS_PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"];

/// The password was given twice (in the URL and from a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pg_url already carries a password")]
pub struct PasswordGivenTwice;

fn invalid_url(err: tokio_postgres::Error) -> ReplicationError {
    // "invalid connection string" alone does not say which part.
    let problem = match std::error::Error::source(&err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    ReplicationError::startup(
        format!("invalid {PG_URL_FIELD}: {problem}"),
        "use postgres://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT2]…]/DATABASE[?sslmode=verify-full&sslrootcert=CA.crt]",
    )
}

impl PgConnectionConfig {
    /// Parses a libpq-style URL (`postgres://user:pass@host:port/db?sslmode=verify-full&sslrootcert=ca.crt`,
    /// several hosts separated by commas) or key/value string (`host=db user=app sslmode=require`).
    pub fn parse(url: &str) -> Result<Self, ReplicationError> {
        let (rest, params) = take_tls_params(url);
        let mut control = tokio_postgres::Config::from_str(&rest).map_err(invalid_url)?;
        let password = control
            .get_password()
            .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned()));
        let param =
            |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if param("sslpassword").is_some() {
            return Err(ReplicationError::startup(
                format!("sslpassword in {PG_URL_FIELD}: encrypted client keys are not supported"),
                "decrypt the key (openssl pkey -in KEY -out KEY.plain), make it readable by tailbox's user only (chmod 600), point sslkey at it and drop sslpassword",
            ));
        }
        let mode = match param("sslmode") {
            None => SslMode::default(),
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                ReplicationError::startup(
                    format!(
                        "invalid {PG_URL_FIELD}: sslmode {text:?} is not one of disable, prefer, require, verify-ca, verify-full"
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
                format!(
                    "channel_binding=require in {PG_URL_FIELD}: the replication connection cannot bind SCRAM to the TLS channel"
                ),
                "drop channel_binding (the control connection still binds when the server offers it); use sslmode=verify-full to authenticate the server",
            ));
        }
        if control.get_ssl_negotiation() == SslNegotiation::Direct {
            return Err(ReplicationError::startup(
                format!("sslnegotiation=direct in {PG_URL_FIELD} is not supported"),
                "drop sslnegotiation (TLS is negotiated with an SSLRequest, which every PostgreSQL version accepts)",
            ));
        }
        let hosts = control.get_hosts().len();
        let ports = control.get_ports().len();
        if ports > 1 && ports != hosts {
            return Err(ReplicationError::startup(
                format!("{PG_URL_FIELD} lists {hosts} hosts but {ports} ports"),
                "give one port per host (h1:5432,h2:5433) or one port for all",
            ));
        }
        let all_unix = control.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        // TLS does not apply to Unix sockets (libpq ignores sslmode there too).
        control.ssl_mode(match mode {
            _ if hosts > 0 && all_unix => PgSslMode::Disable,
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        if !(hosts > 0 && all_unix) {
            tls.validate()?;
        }
        Ok(Self { control, password, tls, tls_params: params, pinned: None })
    }

    /// Sets the password (from a password file); refused if the URL carries one.
    pub fn set_password(&mut self, password: SecretString) -> Result<(), PasswordGivenTwice> {
        if self.password.is_some() {
            return Err(PasswordGivenTwice);
        }
        self.password = Some(password);
        Ok(())
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Every host with its port, in the order they are tried.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let hosts = self.control.get_hosts();
        let ports = self.control.get_ports();
        let port = |i: usize| match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        };
        if hosts.is_empty() {
            return vec![Endpoint { host: "localhost".to_owned(), port: port(0), unix: false }];
        }
        hosts
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => Endpoint { host: name.clone(), port: port(i), unix: false },
                Host::Unix(path) => Endpoint {
                    host: path.to_string_lossy().into_owned(),
                    port: port(i),
                    unix: true,
                },
            })
            .collect()
    }

    /// The host (or Unix socket directory) of this attempt, else the first one.
    pub fn host(&self) -> String {
        self.endpoint().host
    }

    /// The port of [`Self::host`].
    pub fn port(&self) -> u16 {
        self.endpoint().port
    }

    /// The endpoint of this attempt, else the first one.
    pub(crate) fn endpoint(&self) -> Endpoint {
        let all = self.endpoints();
        let i = self.pinned.unwrap_or(0).min(all.len().saturating_sub(1));
        all.get(i).cloned().unwrap_or(Endpoint {
            host: "localhost".to_owned(),
            port: 5432,
            unix: false,
        })
    }

    /// This configuration for one attempt at the `index`th host.
    pub(crate) fn pinned(&self, index: usize) -> Self {
        Self { pinned: Some(index), ..self.clone() }
    }

    /// Every host as `host:port`, comma-separated, for messages.
    pub fn hosts_display(&self) -> String {
        self.endpoints().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.control.get_dbname().unwrap_or_else(|| self.user())
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.control.get_user().unwrap_or("postgres")
    }

    /// The TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// Whether the host of this attempt (else the first) is a Unix socket directory
    /// (no TLS there).
    pub fn is_unix_socket(&self) -> bool {
        self.endpoint().unix
    }

    /// Whether only a host accepting writes will do (`target_session_attrs=read-write`).
    pub fn requires_read_write(&self) -> bool {
        self.control.get_target_session_attrs() == TargetSessionAttrs::ReadWrite
    }

    /// The configuration for `tokio-postgres`, password included.
    pub(crate) fn control(&self) -> tokio_postgres::Config {
        let mut control = self.control.clone();
        if let Some(password) = &self.password {
            control.password(password.expose_secret());
        }
        control
    }

    /// The password, if any.
    pub(crate) fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }

    /// The URL's `connect_timeout`, if set.
    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.control.get_connect_timeout().copied()
    }

    /// The parsed configuration as a `postgres://` URL, the password replaced by
    /// [`REDACTED`]; TLS file paths are shown (they are not secrets).
    pub fn redacted(&self) -> String {
        let c = &self.control;
        let mut url = String::from("postgres://");
        if let Some(user) = c.get_user() {
            url.push_str(&encode(user));
            if self.password.is_some() {
                let _ = write!(url, ":{REDACTED}");
            }
            url.push('@');
        }
        let ports = c.get_ports();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                    Host::Tcp(name) => encode(name),
                    Host::Unix(path) => {
                        utf8_percent_encode(&path.to_string_lossy(), NON_ALPHANUMERIC).to_string()
                    }
                };
                match ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }) {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect();
        url.push_str(&hosts.join(","));
        if let Some(db) = c.get_dbname() {
            let _ = write!(url, "/{}", encode(db));
        }
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(name) = c.get_application_name() {
            query.push(("application_name".into(), name.into()));
        }
        if let Some(options) = c.get_options() {
            query.push(("options".into(), options.into()));
        }
        if let Some(timeout) = c.get_connect_timeout() {
            query.push(("connect_timeout".into(), timeout.as_secs().to_string()));
        }
        if self.requires_read_write() {
            query.push(("target_session_attrs".into(), "read-write".into()));
        }
        if c.get_channel_binding() == ChannelBinding::Disable {
            query.push(("channel_binding".into(), "disable".into()));
        }
        query.extend(self.tls_params.iter().cloned());
        for (i, (key, value)) in query.iter().enumerate() {
            let _ = write!(url, "{}{key}={}", if i == 0 { '?' } else { '&' }, encode(value));
        }
        url
    }
}

/// What a URL component must escape: everything but unreserved characters and `/`
/// (file paths stay readable).
const COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
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
    percent_decode_str(text).decode_utf8_lossy().into_owned()
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
        assert_eq!(cfg.password().map(|p| p.expose_secret()), Some("s3cret"));
        assert_eq!(cfg.database(), "shop");
        assert_eq!(cfg.tls().mode, SslMode::Prefer, "libpq's default");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        Ok(())
    }

    #[test]
    fn rejects_garbage_with_a_fix() {
        let err = PgConnectionConfig::parse("postgres://a:b@h:notaport/db").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("pg_url") && text.contains("fix:"), "{text}");
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

//! One `postgres://` URL, read once, handed to both PostgreSQL clients: the control
//! connection (`tokio-postgres`) and the replication connection (`pgwire-replication`).

use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode};

use crate::error::ReplicationError;

/// Where and how to connect to PostgreSQL.
#[derive(Clone)]
pub struct PgConnectionConfig {
    control: tokio_postgres::Config,
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
}

impl std::fmt::Debug for PgConnectionConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl PgConnectionConfig {
    /// Parses a libpq-style URL (`postgres://user:pass@host:port/db?sslmode=disable`) or
    /// key/value string.
    pub fn parse(url: &str) -> Result<Self, ReplicationError> {
        let control = tokio_postgres::Config::from_str(url).map_err(|err| {
            ReplicationError::startup(
                format!("invalid --pg-url: {err}"),
                "use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            )
        })?;
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
        if control.get_ssl_mode() == SslMode::Require {
            return Err(ReplicationError::startup(
                "sslmode=require in --pg-url is not supported by this build",
                "use sslmode=disable (TLS to PostgreSQL is tracked in the security work)",
            ));
        }
        Ok(Self { control, host, port, user, password, database })
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

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    pub(crate) fn control(&self) -> &tokio_postgres::Config {
        &self.control
    }
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
        assert_eq!(cfg.password(), "s3cret");
        assert_eq!(cfg.database(), "shop");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        Ok(())
    }

    #[test]
    fn rejects_garbage_with_a_fix() {
        let err = PgConnectionConfig::parse("postgres://a:b@h:notaport/db").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("--pg-url") && text.contains("fix:"), "{text}");
    }
}

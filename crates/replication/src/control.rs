//! The control plane of `tailbox run`: a `tokio-postgres` connection (TLS per
//! `sslmode`) used for startup checks and to read the slot's position. It never touches
//! the replication stream itself. (What the admin commands query and change lives in
//! `tailbox-cli`: `catalog.rs`, `scripts.rs`.)
//!
//! Every check turns a server state that would make streaming fail or lose events into
//! a [`crate::StartupProblem`] with the fix, so the binary can exit with one clear line.

use std::sync::Arc;

use tailbox_pgoutput::Lsn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{Client, Connection, NoTls, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use crate::{connection::PgConnectionConfig, diagnosis, error::ReplicationError};

/// Drives a control connection in the background until its client is dropped.
fn spawn_connection<S, T>(connection: Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            warn!(error = %err, "control connection ended");
        }
    });
}

/// The outbox table the publication must carry, and the columns it must have.
#[derive(Debug, Clone)]
pub struct OutboxTableSpec {
    /// Schema name, e.g. `public`.
    pub schema: String,
    /// Table name, e.g. `outbox`.
    pub table: String,
    /// Columns the mapping reads.
    pub required_columns: Vec<String>,
}

/// Where a replication slot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPosition {
    /// Everything before this LSN has been confirmed by the consumer; streaming resumes
    /// here.
    pub confirmed_flush_lsn: Lsn,
    /// The oldest WAL the slot retains.
    pub restart_lsn: Lsn,
    /// `pg_replication_slots.wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
    /// PID of the walsender holding the slot, if any.
    pub active_pid: Option<i32>,
}

/// An LSN column read as `::text` (tokio-postgres has no `pg_lsn` type of ours); `None`
/// when it is NULL or not an LSN.
fn lsn_column(row: &tokio_postgres::Row, index: usize) -> Option<Lsn> {
    row.get::<_, Option<String>>(index).and_then(|text| text.parse().ok())
}

/// A control connection to PostgreSQL.
pub struct ControlClient {
    client: Client,
}

/// Names that are pasted into replication commands must be plain identifiers.
/// `field` is the configuration field (`slot`, `publication`), as errors name it.
pub fn validate_identifier(field: &str, value: &str) -> Result<(), ReplicationError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::startup(
            format!("`{field}` {value:?} is not a valid name"),
            format!("use 1 to 63 characters of a-z, 0-9 and _ for `{field}`"),
        ))
    }
}

impl ControlClient {
    /// Connects (TLS per the URL's `sslmode`, with the same rustls configuration as the
    /// replication connection, see [`crate::tls`]); the connection task runs in the
    /// background until the client is dropped.
    pub async fn connect(cfg: &PgConnectionConfig) -> Result<Self, ReplicationError> {
        let failed = |err: tokio_postgres::Error| {
            diagnosis::control_connect_problem(cfg, &err).unwrap_or_else(|| {
                ReplicationError::from_pg("connecting the control connection", err)
            })
        };
        let client = if cfg.control().get_ssl_mode() == SslMode::Disable {
            let (client, connection) = cfg.control().connect(NoTls).await.map_err(failed)?;
            spawn_connection(connection);
            client
        } else {
            let tls = MakeRustlsConnect::new(Arc::unwrap_or_clone(cfg.tls().client_config()?));
            let (client, connection) = cfg.control().connect(tls).await.map_err(failed)?;
            spawn_connection(connection);
            client
        };
        Ok(Self { client })
    }

    /// The underlying client, for callers with queries of their own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Checks everything streaming needs; the first problem found is returned with its fix.
    pub async fn check_ready(
        &self,
        slot: &str,
        publication: &str,
        table: &OutboxTableSpec,
    ) -> Result<SlotPosition, ReplicationError> {
        self.check_wal_level().await?;
        let position = self.check_slot(slot).await?;
        self.check_publication(publication, table).await?;
        self.check_table(table).await?;
        Ok(position)
    }

    /// The checks of [`ControlClient::check_ready`] but the slot's (a backfill creates
    /// the slot).
    pub async fn check_ready_without_slot(
        &self,
        publication: &str,
        table: &OutboxTableSpec,
    ) -> Result<(), ReplicationError> {
        self.check_wal_level().await?;
        self.check_publication(publication, table).await?;
        self.check_table(table).await
    }

    async fn check_wal_level(&self) -> Result<(), ReplicationError> {
        let row = self
            .client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| ReplicationError::from_pg("reading wal_level", e))?;
        let level: String = row.get(0);
        if level != "logical" {
            return Err(ReplicationError::startup(
                format!("wal_level is {level:?}, logical decoding needs \"logical\""),
                "set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL",
            ));
        }
        Ok(())
    }

    async fn check_slot(&self, slot: &str) -> Result<SlotPosition, ReplicationError> {
        let row = self
            .client
            .query_opt(
                // invalidation_reason exists from PostgreSQL 17 on: read through to_jsonb so
                // that the same query runs on 13 to 16 (where it is NULL).
                "SELECT plugin, slot_type, database, to_jsonb(s) ->> 'invalidation_reason' \
                 FROM pg_replication_slots s WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_replication_slots", e))?;
        let Some(row) = row else {
            return Err(ReplicationError::startup(
                format!("replication slot {slot:?} does not exist"),
                format!(
                    "create it with sql/03_slot.sql (SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput'))"
                ),
            ));
        };
        let plugin: Option<String> = row.get(0);
        let slot_type: String = row.get(1);
        let database: Option<String> = row.get(2);
        let invalidation_reason: Option<String> = row.get(3);
        if slot_type != "logical" || plugin.as_deref() != Some("pgoutput") {
            return Err(ReplicationError::startup(
                format!(
                    "replication slot {slot:?} is a {slot_type} slot with plugin {:?}, tailbox needs a logical slot with plugin pgoutput",
                    plugin.unwrap_or_default()
                ),
                format!(
                    "drop it and create it again with pg_create_logical_replication_slot('{slot}', 'pgoutput')"
                ),
            ));
        }
        let current_db: String = self
            .client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(|e| ReplicationError::from_pg("reading current_database()", e))?
            .get(0);
        if database.as_deref() != Some(current_db.as_str()) {
            return Err(ReplicationError::startup(
                format!(
                    "replication slot {slot:?} belongs to database {:?}, not {current_db:?}",
                    database.unwrap_or_default()
                ),
                "point `pg_url` at the slot's database",
            ));
        }
        let position = self.slot_position(slot).await?;
        if let Some(reason) = invalidation_reason {
            return Err(slot_invalidated(slot, &reason));
        }
        if position.wal_status.as_deref() == Some("lost") {
            return Err(slot_lost(slot));
        }
        Ok(position)
    }

    async fn check_publication(
        &self,
        publication: &str,
        table: &OutboxTableSpec,
    ) -> Result<(), ReplicationError> {
        let row = self
            .client
            .query_opt("SELECT pubinsert FROM pg_publication WHERE pubname = $1", &[&publication])
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_publication", e))?;
        // SQL in the fixes names things quoted, so any case and character survive.
        let (q_pub, q_table) = (
            quote_identifier(publication),
            format!("{}.{}", quote_identifier(&table.schema), quote_identifier(&table.table)),
        );
        let Some(row) = row else {
            return Err(ReplicationError::startup(
                format!("publication {publication:?} does not exist"),
                format!(
                    "create it with sql/02_publication.sql (CREATE PUBLICATION {q_pub} FOR TABLE {q_table} WITH (publish = 'insert'))"
                ),
            ));
        };
        let publishes_inserts: bool = row.get(0);
        if !publishes_inserts {
            return Err(ReplicationError::startup(
                format!("publication {publication:?} does not publish inserts"),
                format!("ALTER PUBLICATION {q_pub} SET (publish = 'insert')"),
            ));
        }
        let carried = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                &[&publication, &table.schema, &table.table],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_publication_tables", e))?;
        if carried.is_none() {
            return Err(ReplicationError::startup(
                format!(
                    "publication {publication:?} does not include table {}.{}",
                    table.schema, table.table
                ),
                format!("ALTER PUBLICATION {q_pub} ADD TABLE {q_table}"),
            ));
        }
        Ok(())
    }

    async fn check_table(&self, table: &OutboxTableSpec) -> Result<(), ReplicationError> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.schema, &table.table],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading the outbox table's columns", e))?;
        if rows.is_empty() {
            return Err(ReplicationError::startup(
                format!("outbox table {}.{} does not exist", table.schema, table.table),
                "create it with sql/01_outbox_table.sql, or point `outbox_table` at yours (unquoted \
                 names fold to lower case as in psql: write a mixed-case name in double quotes, \
                 e.g. '\"App\".\"Outbox\"')",
            ));
        }
        let columns: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        for wanted in &table.required_columns {
            if !columns.iter().any(|c| c == wanted) {
                return Err(ReplicationError::startup(
                    format!(
                        "outbox table {}.{} has no column {wanted:?}",
                        table.schema, table.table
                    ),
                    format!(
                        "add the column (see sql/01_outbox_table.sql) or map yours with the matching `column_*` option; it has: {}",
                        columns.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads the slot's current position. Called right after START_REPLICATION too: the
    /// slot is then held by our walsender, so the value cannot move under us.
    pub async fn slot_position(&self, slot: &str) -> Result<SlotPosition, ReplicationError> {
        let row = self
            .client
            .query_opt(
                "SELECT confirmed_flush_lsn::text, restart_lsn::text, wal_status, active_pid \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading the slot position", e))?;
        let Some(row) = row else {
            return Err(ReplicationError::startup(
                format!("replication slot {slot:?} disappeared (dropped while tailbox ran?)"),
                "recreate the slot; events written since it was dropped must be backfilled",
            ));
        };
        let lsn = |i: usize| lsn_column(&row, i).unwrap_or_default();
        Ok(SlotPosition {
            confirmed_flush_lsn: lsn(0),
            restart_lsn: lsn(1),
            wal_status: row.get(2),
            active_pid: row.get(3),
        })
    }
}

/// The slot was invalidated because it fell behind `max_slot_wal_keep_size`.
pub fn slot_lost(slot: &str) -> ReplicationError {
    ReplicationError::startup(
        format!(
            "replication slot {slot:?} was invalidated (wal_status = lost): WAL it needed was removed, events were lost"
        ),
        "drop and recreate the slot, backfill the outbox rows written meanwhile, and raise max_slot_wal_keep_size",
    )
}

/// A slot PostgreSQL invalidated, by `pg_replication_slots.invalidation_reason` (17+; on
/// older servers only `wal_status = lost` tells, which is `wal_removed`). It can never be
/// streamed from again, so each case names its cause and the setting to change.
pub fn slot_invalidated(slot: &str, reason: &str) -> ReplicationError {
    match reason {
        "wal_removed" => slot_lost(slot),
        "idle_timeout" => ReplicationError::startup(
            format!(
                "replication slot {slot:?} was invalidated by idle_replication_slot_timeout (invalidation_reason = idle_timeout): it was unused for longer than the timeout and can no longer be streamed from; events written since its last confirmed position are not published"
            ),
            "drop and recreate the slot, backfill the outbox rows written meanwhile (tailbox backfill), and raise idle_replication_slot_timeout (or set it to 0, off) so that a stopped tailbox does not lose its slot",
        ),
        other => ReplicationError::startup(
            format!(
                "replication slot {slot:?} was invalidated (invalidation_reason = {other}) and can no longer be streamed from; events written since its last confirmed position are not published"
            ),
            "drop and recreate the slot and backfill the outbox rows written meanwhile (tailbox backfill)",
        ),
    }
}

/// [`slot_invalidated`] for a START_REPLICATION refusal, whose detail names the reason
/// from PostgreSQL 18 on (`This replication slot has been invalidated due to "idle_timeout".`);
/// without one the slot ran out of WAL ([`slot_lost`]).
pub(crate) fn slot_invalidated_by_detail(slot: &str, detail: Option<&str>) -> ReplicationError {
    let reason = detail
        .and_then(|d| d.split_once("invalidated due to \""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(reason, _)| reason);
    match reason {
        Some(reason) => slot_invalidated(slot, reason),
        None => slot_lost(slot),
    }
}

/// Quotes an SQL identifier (`"name"`, inner quotes doubled).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidated_slots_name_their_cause_and_fix() {
        let idle = slot_invalidated_by_detail(
            "s",
            Some("This replication slot has been invalidated due to \"idle_timeout\"."),
        )
        .to_string();
        assert!(idle.contains("idle_replication_slot_timeout"), "{idle}");
        let lost = slot_invalidated_by_detail(
            "s",
            Some("This slot has been invalidated because it exceeded the maximum reserved size."),
        )
        .to_string();
        assert!(lost.contains("max_slot_wal_keep_size"), "{lost}");
        assert_eq!(slot_invalidated("s", "wal_removed").to_string(), slot_lost("s").to_string());
        let other = slot_invalidated("s", "rows_removed").to_string();
        assert!(other.contains("rows_removed"), "{other}");
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("slot", "tailbox_1").is_ok());
        let err = validate_identifier("slot", "Bad-Slot").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`slot`") && e.contains("fix:")));
    }
}

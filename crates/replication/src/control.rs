//! The control plane: a plain `tokio-postgres` connection used for startup checks and to
//! read the slot's position. It never touches the replication stream itself.
//!
//! Every check turns a server state that would make streaming fail or lose events into
//! a [`StartupProblem`] with the fix, so the binary can exit with one clear line.

use tailbox_pgoutput::parse_lsn;
use tokio_postgres::{Client, NoTls};
use tracing::warn;

use crate::{connection::PgConnectionConfig, error::ReplicationError};

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
    pub confirmed_flush_lsn: u64,
    /// The oldest WAL the slot retains.
    pub restart_lsn: u64,
    /// `pg_replication_slots.wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
    /// PID of the walsender holding the slot, if any.
    pub active_pid: Option<i32>,
}

/// A control connection to PostgreSQL.
pub struct ControlClient {
    client: Client,
}

/// Names that are pasted into replication commands must be plain identifiers.
pub fn validate_identifier(field: &str, value: &str) -> Result<(), ReplicationError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::startup(
            format!("{field} {value:?} is not a valid name"),
            format!("use 1 to 63 characters of a-z, 0-9 and _ for {field}"),
        ))
    }
}

impl ControlClient {
    /// Connects; the connection task runs in the background until the client is dropped.
    pub async fn connect(cfg: &PgConnectionConfig) -> Result<Self, ReplicationError> {
        let (client, connection) =
            cfg.control().connect(NoTls).await.map_err(|err| {
                ReplicationError::from_pg("connecting the control connection", err)
            })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                warn!(error = %err, "control connection ended");
            }
        });
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
                "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = $1",
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
                "point --pg-url at the slot's database",
            ));
        }
        let position = self.slot_position(slot).await?;
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
        let Some(row) = row else {
            return Err(ReplicationError::startup(
                format!("publication {publication:?} does not exist"),
                format!(
                    "create it with sql/02_publication.sql (CREATE PUBLICATION {publication} FOR TABLE {}.{} WITH (publish = 'insert'))",
                    table.schema, table.table
                ),
            ));
        };
        let publishes_inserts: bool = row.get(0);
        if !publishes_inserts {
            return Err(ReplicationError::startup(
                format!("publication {publication:?} does not publish inserts"),
                format!("ALTER PUBLICATION {publication} SET (publish = 'insert')"),
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
                format!(
                    "ALTER PUBLICATION {publication} ADD TABLE {}.{}",
                    table.schema, table.table
                ),
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
                "create it with sql/01_outbox_table.sql, or point --outbox-table at yours",
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
                        "add the column (see sql/01_outbox_table.sql) or map yours with the matching --column-* option; it has: {}",
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
        let lsn = |i: usize| -> u64 {
            row.get::<_, Option<String>>(i).as_deref().and_then(parse_lsn).unwrap_or(0)
        };
        Ok(SlotPosition {
            confirmed_flush_lsn: lsn(0),
            restart_lsn: lsn(1),
            wal_status: row.get(2),
            active_pid: row.get(3),
        })
    }

    /// `pg_current_wal_lsn()`.
    pub async fn current_wal_lsn(&self) -> Result<u64, ReplicationError> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_current_wal_lsn()", e))?;
        let text: String = row.get(0);
        Ok(parse_lsn(&text).unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("--slot", "tailbox_1").is_ok());
        let err = validate_identifier("--slot", "Bad-Slot").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("--slot") && e.contains("fix:")));
    }
}

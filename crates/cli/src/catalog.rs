//! What `tailbox status` (and the retained-WAL gauge of `tailbox run`) reads from
//! PostgreSQL's catalogs on a control connection: the slot, the server's role and WAL
//! position, the publication. Reports only; `tailbox run`'s own checks stay in
//! `tailbox-replication` (`ControlClient::check_ready`).

use tailbox_pgoutput::Lsn;
use tailbox_replication::{ControlClient, ReplicationError};
use tokio_postgres::types::PgLsn;

/// A `tokio-postgres` error while doing `what`, classified by SQLSTATE.
pub(crate) fn pg_error(what: impl AsRef<str>, err: tokio_postgres::Error) -> ReplicationError {
    ReplicationError::from_pg_error(what.as_ref(), err)
}

/// A `pg_lsn` column (NULL: `None`).
fn lsn(row: &tokio_postgres::Row, index: usize) -> Option<Lsn> {
    row.get::<_, Option<PgLsn>>(index).map(|lsn| Lsn::new(u64::from(lsn)))
}

/// A replication slot as `pg_replication_slots` and the server's WAL position see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    /// Slot name.
    pub slot: String,
    /// Output plugin (`pgoutput` for tailbox).
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// The database the slot decodes.
    pub database: Option<String>,
    /// Whether a walsender holds the slot.
    pub active: bool,
    /// PID of that walsender.
    pub active_pid: Option<i32>,
    /// Everything before this was confirmed by the consumer.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// The oldest WAL the slot retains.
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot is invalidated, if
    /// `max_slot_wal_keep_size` limits it.
    pub safe_wal_size: Option<i64>,
    /// The server's current WAL position (`pg_current_wal_lsn()`, or the replay
    /// position on a standby).
    pub current_wal_lsn: Lsn,
    /// `current_wal_lsn − restart_lsn`: WAL kept on disk because of this slot.
    pub retained_wal_bytes: Option<u64>,
    /// `current_wal_lsn − confirmed_flush_lsn`: WAL written but not yet confirmed.
    pub lag_bytes: Option<u64>,
    /// `pg_replication_slots.failover` (PostgreSQL 17+, `None` before): standbys with
    /// `sync_replication_slots = on` keep a copy of the slot that survives promotion.
    pub failover: Option<bool>,
    /// `pg_replication_slots.synced` (PostgreSQL 17+): on a standby, this is a copy
    /// synchronized from the primary (read-only until promotion); on a primary it can
    /// only be left over from a promotion.
    pub synced: Option<bool>,
}

/// The server tailbox talks to, as `tailbox status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// `server_version_num`, e.g. 170010.
    pub version_num: i32,
    /// `pg_is_in_recovery()`: a hot standby (logical decoding on standby, 16+).
    pub in_recovery: bool,
    /// `synchronized_standby_slots` (PostgreSQL 17+; `None` before): the physical slots
    /// of the standbys a failover slot's changes wait for before logical walsenders send
    /// them. Empty means no standby is waited for.
    pub synchronized_standby_slots: Option<String>,
}

/// A publication as `pg_publication` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationReport {
    /// Publication name.
    pub publication: String,
    /// `FOR ALL TABLES`.
    pub all_tables: bool,
    /// Operations published: `insert`, `update`, `delete`, `truncate`.
    pub operations: Vec<String>,
    /// Tables carried, `schema.table`.
    pub tables: Vec<String>,
}

/// `SHOW wal_level`.
pub async fn wal_level(control: &ControlClient) -> Result<String, ReplicationError> {
    let row = control
        .client()
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| pg_error("reading wal_level", e))?;
    Ok(row.get(0))
}

/// The slot's state and WAL figures in one query; `None` if the slot does not exist.
pub async fn slot_report(
    control: &ControlClient,
    slot: &str,
) -> Result<Option<SlotReport>, ReplicationError> {
    let current = server_wal_lsn(control).await?;
    let row = control
        .client()
        .query_opt(
            // failover and synced exist from PostgreSQL 17 on: read through to_jsonb so
            // that the same query runs on 13 to 16 (where they are NULL).
            "SELECT slot_name::text, plugin::text, slot_type, database::text, active, active_pid, \
                    confirmed_flush_lsn, restart_lsn, wal_status, safe_wal_size, \
                    (to_jsonb(s) ->> 'failover')::boolean, (to_jsonb(s) ->> 'synced')::boolean \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error("reading pg_replication_slots", e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let confirmed_flush_lsn = lsn(&row, 6);
    let restart_lsn = lsn(&row, 7);
    Ok(Some(SlotReport {
        slot: row.get(0),
        plugin: row.get(1),
        slot_type: row.get(2),
        database: row.get(3),
        active: row.get(4),
        active_pid: row.get(5),
        confirmed_flush_lsn,
        restart_lsn,
        wal_status: row.get(8),
        safe_wal_size: row.get(9),
        current_wal_lsn: current,
        retained_wal_bytes: restart_lsn.map(|r| current.bytes_since(r)),
        lag_bytes: confirmed_flush_lsn.map(|c| current.bytes_since(c)),
        failover: row.get(10),
        synced: row.get(11),
    }))
}

/// The server's version, whether it is a standby, and (17+) the standby slots
/// failover slots wait for.
pub async fn server_report(control: &ControlClient) -> Result<ServerReport, ReplicationError> {
    let row = control
        .client()
        .query_one(
            "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), \
                    current_setting('synchronized_standby_slots', true)",
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the server's role", e))?;
    Ok(ServerReport {
        version_num: row.get(0),
        in_recovery: row.get(1),
        synchronized_standby_slots: row.get(2),
    })
}

/// The server's WAL position: `pg_current_wal_lsn()` on a primary, the last
/// replayed position on a standby.
pub async fn server_wal_lsn(control: &ControlClient) -> Result<Lsn, ReplicationError> {
    let row = control
        .client()
        .query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                     ELSE pg_current_wal_lsn() END)",
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the current WAL position", e))?;
    Ok(lsn(&row, 0).unwrap_or_default())
}

/// The publication's settings and tables; `None` if it does not exist.
pub async fn publication_report(
    control: &ControlClient,
    publication: &str,
) -> Result<Option<PublicationReport>, ReplicationError> {
    let row = control
        .client()
        .query_opt(
            "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate \
             FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("reading pg_publication", e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let operations = ["insert", "update", "delete", "truncate"]
        .iter()
        .enumerate()
        .filter(|(i, _)| row.get::<_, bool>(i + 1))
        .map(|(_, op)| (*op).to_owned())
        .collect();
    let tables = control
        .client()
        .query(
            "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("reading pg_publication_tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(PublicationReport {
        publication: publication.to_owned(),
        all_tables: row.get(0),
        operations,
        tables,
    }))
}

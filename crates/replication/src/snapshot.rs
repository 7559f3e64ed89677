//! Creating a slot together with an exported snapshot, for backfills.
//!
//! `CREATE_REPLICATION_SLOT … LOGICAL pgoutput EXPORT_SNAPSHOT` on a replication
//! connection returns the slot's consistent point and the name of a snapshot that sees
//! exactly the transactions committed before that point. Reading the outbox table in
//! that snapshot and then streaming the slot from the consistent point covers every
//! event once: no gap and no overlap at the boundary. The snapshot lives only while the
//! replication connection that exported it stays idle, so [`ExportedSnapshot`] holds
//! that connection until the caller is done reading.

use tailbox_pgoutput::Lsn;

use crate::{
    connection::PgConnectionConfig,
    error::ReplicationError,
    identity::ServerIdentity,
    wire::{PgWire, ServerError},
};

/// A new slot and the snapshot exported with it. Dropping this releases the snapshot;
/// the slot stays.
pub struct ExportedSnapshot {
    /// Keeps the exporting session (and so the snapshot) alive.
    _session: PgWire,
    /// The slot streams transactions that commit at or after this LSN.
    pub consistent_point: Lsn,
    /// For `SET TRANSACTION SNAPSHOT`.
    pub snapshot_name: String,
    /// The server the slot was created on (whose checkpoint the backfill writes).
    pub identity: ServerIdentity,
}

impl ExportedSnapshot {
    /// Creates `slot` (plugin pgoutput) and exports its snapshot.
    pub async fn create(conn: &PgConnectionConfig, slot: &str) -> Result<Self, ReplicationError> {
        crate::control::validate_identifier("slot", slot)?;
        let mut session = PgWire::connect(conn, &format!("tailbox-backfill/{slot}")).await?;
        let identity = ServerIdentity::query(&mut session).await?;
        let rows = session
            .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT"))
            .await
            .map_err(|e| {
                let duplicate = std::error::Error::source(&e)
                    .and_then(|cause| cause.downcast_ref::<ServerError>())
                    .is_some_and(|cause| cause.code == "42710");
                if duplicate {
                    ReplicationError::startup(
                        format!("replication slot {slot:?} already exists; a backfill creates it, with the snapshot that makes the boundary exact"),
                        "drop it first (tailbox teardown) if nothing depends on it, then run tailbox backfill",
                    )
                } else {
                    e
                }
            })?;
        // Columns: slot_name, consistent_point, snapshot_name, output_plugin.
        let column = |i: usize| rows.first().and_then(|row| row.get(i)).and_then(|v| v.clone());
        let consistent_point = column(1).and_then(|v| v.parse::<Lsn>().ok());
        let snapshot_name = column(2);
        match (consistent_point, snapshot_name) {
            (Some(consistent_point), Some(snapshot_name)) => {
                Ok(Self { _session: session, consistent_point, snapshot_name, identity })
            }
            _ => Err(ReplicationError::Definite {
                context: "CREATE_REPLICATION_SLOT returned no consistent point or snapshot".into(),
                source: "unexpected reply".into(),
            }),
        }
    }
}

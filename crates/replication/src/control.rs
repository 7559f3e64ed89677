//! The control plane: a `tokio-postgres` connection (TLS per `sslmode`) used for startup
//! checks and to read the slot's position. It never touches the replication stream itself.
//!
//! Every check turns a server state that would make streaming fail or lose events into
//! a [`StartupProblem`] with the fix, so the binary can exit with one clear line.

use std::sync::Arc;

use tailbox_pgoutput::parse_lsn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{Client, Connection, NoTls, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use crate::{connection::PgConnectionConfig, error::ReplicationError, tls};

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
    pub required_columns: Vec<RequiredColumn>,
}

/// A column the outbox table must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredColumn {
    /// The column.
    pub name: String,
    /// The configuration field that names it (for the fix), e.g. `key_column`.
    pub field: String,
    /// Whether it must be `json` or `jsonb`.
    pub json: bool,
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
            tls::control_connect_problem(cfg, &err).unwrap_or_else(|| {
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

    /// Checks one more outbox table (of several): the publication carries it and it
    /// has the columns its mapping reads.
    pub async fn check_outbox_table(
        &self,
        publication: &str,
        table: &OutboxTableSpec,
    ) -> Result<(), ReplicationError> {
        self.check_publication(publication, table).await?;
        self.check_table(table).await
    }

    /// The tables the publication carries, `(schema, table)`.
    pub async fn publication_tables(
        &self,
        publication: &str,
    ) -> Result<Vec<(String, String)>, ReplicationError> {
        let rows = self
            .client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1 ORDER BY 1, 2",
                &[&publication],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_publication_tables", e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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

    /// Deletes outbox rows whose `column` is older than `older_than` (a PostgreSQL
    /// interval such as `7 days`), at most `batch` rows per statement so locks stay short
    /// and autovacuum keeps up; returns the number deleted. Publishing is unaffected:
    /// the publication carries inserts only.
    pub async fn delete_older_than(
        &self,
        table: &OutboxTableSpec,
        column: &str,
        older_than: &str,
        batch: i64,
    ) -> Result<u64, ReplicationError> {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let sql = format!(
            "DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {t} WHERE {c} < now() - $1::text::interval LIMIT $2))",
            t = format!("{}.{}", quote(&table.schema), quote(&table.table)),
            c = quote(column),
        );
        let statement = self.client.prepare(&sql).await.map_err(|e| {
            ReplicationError::from_pg(
                format!("preparing the cleanup of {}.{}", table.schema, table.table),
                e,
            )
        })?;
        let mut total = 0;
        loop {
            let deleted = self
                .client
                .execute(&statement, &[&older_than, &batch])
                .await
                .map_err(|e| ReplicationError::from_pg("deleting old outbox rows", e))?;
            total += deleted;
            if deleted < batch as u64 {
                return Ok(total);
            }
        }
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
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
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
        let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        check_columns(&table.schema, &table.table, &columns, &table.required_columns)
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
}

/// Whether `columns` (`(name, type)` of the table, in order) hold every required
/// column with the right type; the error names the table, the column, the field that
/// asked for it and the fix (with the closest existing name for a likely typo).
pub fn check_columns(
    schema: &str,
    table: &str,
    columns: &[(String, String)],
    required: &[RequiredColumn],
) -> Result<(), ReplicationError> {
    let qualified = format!("{}.{}", quote_identifier(schema), quote_identifier(table));
    for wanted in required {
        let Some((_, kind)) = columns.iter().find(|(name, _)| *name == wanted.name) else {
            let closest = columns
                .iter()
                .map(|(name, _)| (strsim::jaro_winkler(name, &wanted.name), name))
                .filter(|(score, _)| *score > 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, name)| format!("did you mean {name:?}? "))
                .unwrap_or_default();
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            return Err(ReplicationError::startup(
                format!(
                    "outbox table {schema}.{table} has no column {:?} (named by {})",
                    wanted.name, wanted.field
                ),
                format!(
                    "{closest}set {} to one of its columns ({}), or add the column (see sql/01_outbox_table.sql)",
                    wanted.field,
                    names.join(", ")
                ),
            ));
        };
        if wanted.json && kind != "json" && kind != "jsonb" {
            return Err(ReplicationError::startup(
                format!(
                    "column {:?} of outbox table {schema}.{table} is {kind}, but {} needs json or jsonb",
                    wanted.name, wanted.field
                ),
                format!(
                    "ALTER TABLE {qualified} ALTER COLUMN {} TYPE jsonb USING {}::jsonb, or unset {}",
                    quote_identifier(&wanted.name),
                    quote_identifier(&wanted.name),
                    wanted.field
                ),
            ));
        }
    }
    Ok(())
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
    fn missing_and_mistyped_columns_name_the_field_and_the_fix() {
        let columns: Vec<(String, String)> =
            [("id", "uuid"), ("partitionkey", "text"), ("metadata", "text")]
                .map(|(n, t)| (n.to_owned(), t.to_owned()))
                .to_vec();
        let need = |name: &str, field: &str, json: bool| {
            vec![RequiredColumn { name: name.into(), field: field.into(), json }]
        };
        let err = check_columns(
            "public",
            "_outbox",
            &columns,
            &need("partition_key", "key_column", false),
        )
        .expect_err("missing column")
        .to_string();
        assert!(err.contains("\"partition_key\" (named by key_column)"), "{err}");
        assert!(err.contains("did you mean \"partitionkey\"? set key_column"), "{err}");
        let err =
            check_columns("public", "_outbox", &columns, &need("metadata", "headers_column", true))
                .expect_err("text is not json")
                .to_string();
        assert!(err.contains("is text, but headers_column needs json or jsonb"), "{err}");
        assert!(err.contains("TYPE jsonb USING \"metadata\"::jsonb"), "{err}");
        assert!(
            check_columns("public", "_outbox", &columns, &need("id", "column_id", false)).is_ok()
        );
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("slot", "tailbox_1").is_ok());
        let err = validate_identifier("slot", "Bad-Slot").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`slot`") && e.contains("fix:")));
    }
}

// ---------------------------------------------------------------------------------------
// Setup, teardown and status (used by `tailbox setup`, `tailbox teardown`,
// `tailbox status` and the retained-WAL gauge of `tailbox run`).
// ---------------------------------------------------------------------------------------

/// `sql/02_publication.sql`: creates the publication if missing.
pub const PUBLICATION_SQL: &str = include_str!("../../../sql/02_publication.sql");
/// `sql/03_slot.sql`: creates the slot if missing.
pub const SLOT_SQL: &str = include_str!("../../../sql/03_slot.sql");
/// `sql/99_teardown.sql`: drops the slot and the publication if present.
pub const TEARDOWN_SQL: &str = include_str!("../../../sql/99_teardown.sql");

/// The comment line in each `sql/` script after which plain SQL follows: psql runs the whole
/// file (its `\if`/`SET … = :'var'` lines set the `tailbox.*` settings from psql
/// variables); tailbox sets the same settings with `set_config` and runs only what
/// follows this line. One copy of the SQL, two ways to run it.
pub const SCRIPT_BODY_MARKER: &str = "-- tailbox:plain-sql";

/// The statements of a `sql/` script that tailbox runs itself: everything after
/// [`SCRIPT_BODY_MARKER`], split into statements (comments dropped). `None` if the
/// script has no marker.
pub fn script_statements(script: &str) -> Option<Vec<String>> {
    let start = script.find(SCRIPT_BODY_MARKER)?;
    // The marker line is a comment to its end.
    let body = script[start..].split_once('\n').map_or("", |(_, body)| body);
    Some(split_sql(body))
}

/// Splits SQL text into statements at `;` outside quotes, dollar quotes and comments.
/// Enough for the scripts in `sql/` (which psql runs too); not a general SQL lexer.
pub fn split_sql(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut dollar_tag: Option<String> = None;
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if let Some(tag) = &dollar_tag {
            current.push(c);
            if c == '$' && current.ends_with(tag.as_str()) {
                dollar_tag = None;
            }
            continue;
        }
        if in_string {
            current.push(c);
            if c == '\'' {
                in_string = false;
            }
            continue;
        }
        match c {
            '-' if chars.peek() == Some(&'-') => {
                // A comment: skip to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '\'' => {
                in_string = true;
                current.push(c);
            }
            '$' => {
                // $tag$ … $tag$ (tag possibly empty).
                let mut tag = String::from("$");
                let mut lookahead = chars.clone();
                let mut closed = false;
                for n in lookahead.by_ref() {
                    tag.push(n);
                    if n == '$' {
                        closed = true;
                        break;
                    }
                    if !(n.is_ascii_alphanumeric() || n == '_') {
                        break;
                    }
                }
                if closed {
                    for _ in 1..tag.len() {
                        chars.next();
                    }
                    current.push_str(&tag);
                    dollar_tag = Some(tag);
                } else {
                    current.push(c);
                }
            }
            ';' => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    statements
}

/// Quotes an SQL identifier (`"name"`, inner quotes doubled).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
    pub confirmed_flush_lsn: Option<u64>,
    /// The oldest WAL the slot retains.
    pub restart_lsn: Option<u64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot is invalidated, if
    /// `max_slot_wal_keep_size` limits it.
    pub safe_wal_size: Option<i64>,
    /// The server's current WAL position (`pg_current_wal_lsn()`, or the replay
    /// position on a standby).
    pub current_wal_lsn: u64,
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

/// What `setup`/`teardown` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was created (setup) or dropped (teardown).
    Done,
    /// Nothing to do: it already existed (setup) or was already absent (teardown).
    AlreadyThere,
}

impl ControlClient {
    /// `SHOW wal_level`.
    pub async fn wal_level(&self) -> Result<String, ReplicationError> {
        let row = self
            .client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| ReplicationError::from_pg("reading wal_level", e))?;
        Ok(row.get(0))
    }

    /// The slot's state and WAL figures in one query; `None` if the slot does not exist.
    pub async fn slot_report(&self, slot: &str) -> Result<Option<SlotReport>, ReplicationError> {
        let current = self.server_wal_lsn().await?;
        let row = self
            .client
            .query_opt(
                // failover and synced exist from PostgreSQL 17 on: read through to_jsonb so
                // that the same query runs on 13 to 16 (where they are NULL).
                "SELECT slot_name::text, plugin::text, slot_type, database::text, active, active_pid, \
                        confirmed_flush_lsn::text, restart_lsn::text, wal_status, safe_wal_size, \
                        (to_jsonb(s) ->> 'failover')::boolean, (to_jsonb(s) ->> 'synced')::boolean \
                 FROM pg_replication_slots s WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_replication_slots", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let lsn = |i: usize| -> Option<u64> {
            row.get::<_, Option<String>>(i).as_deref().and_then(parse_lsn)
        };
        let confirmed_flush_lsn = lsn(6);
        let restart_lsn = lsn(7);
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
            retained_wal_bytes: restart_lsn.map(|r| current.saturating_sub(r)),
            lag_bytes: confirmed_flush_lsn.map(|c| current.saturating_sub(c)),
            failover: row.get(10),
            synced: row.get(11),
        }))
    }

    /// The server's version, whether it is a standby, and (17+) the standby slots
    /// failover slots wait for.
    pub async fn server_report(&self) -> Result<ServerReport, ReplicationError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), \
                        current_setting('synchronized_standby_slots', true)",
                &[],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading the server's role", e))?;
        Ok(ServerReport {
            version_num: row.get(0),
            in_recovery: row.get(1),
            synchronized_standby_slots: row.get(2),
        })
    }

    /// The server's WAL position: `pg_current_wal_lsn()` on a primary, the last
    /// replayed position on a standby.
    pub async fn server_wal_lsn(&self) -> Result<u64, ReplicationError> {
        let row = self
            .client
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                         ELSE pg_current_wal_lsn() END)::text",
                &[],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading the current WAL position", e))?;
        let text: Option<String> = row.get(0);
        Ok(text.as_deref().and_then(parse_lsn).unwrap_or(0))
    }

    /// The publication's settings and tables; `None` if it does not exist.
    pub async fn publication_report(
        &self,
        publication: &str,
    ) -> Result<Option<PublicationReport>, ReplicationError> {
        let row = self
            .client
            .query_opt(
                "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate \
                 FROM pg_publication WHERE pubname = $1",
                &[&publication],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_publication", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let operations = ["insert", "update", "delete", "truncate"]
            .iter()
            .enumerate()
            .filter(|(i, _)| row.get::<_, bool>(i + 1))
            .map(|(_, op)| (*op).to_owned())
            .collect();
        let tables = self
            .client
            .query(
                "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1 ORDER BY 1",
                &[&publication],
            )
            .await
            .map_err(|e| ReplicationError::from_pg("reading pg_publication_tables", e))?
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

    /// Creates the publication for `outbox_table` (`schema.table`) unless it exists,
    /// running the statements of `sql/02_publication.sql`.
    pub async fn create_publication(
        &self,
        publication: &str,
        schema: &str,
        table: &str,
    ) -> Result<Change, ReplicationError> {
        let existed = self.publication_report(publication).await?.is_some();
        let qualified = format!("{}.{}", quote_identifier(schema), quote_identifier(table));
        self.run_script(
            "sql/02_publication.sql",
            PUBLICATION_SQL,
            &[("tailbox.publication", publication), ("tailbox.outbox_table", &qualified)],
        )
        .await
        .map_err(|e| {
            setup_problem(e, &format!("creating publication {publication:?} for {schema}.{table}"))
        })?;
        Ok(if existed { Change::AlreadyThere } else { Change::Done })
    }

    /// Creates the logical slot (plugin pgoutput) unless it exists, running the
    /// statements of `sql/03_slot.sql`; with `failover`, a failover slot (PostgreSQL 17+;
    /// the script refuses older servers, and an existing slot that is not one).
    pub async fn create_slot(
        &self,
        slot: &str,
        failover: bool,
    ) -> Result<Change, ReplicationError> {
        let existed = self.slot_report(slot).await?.is_some();
        let failover = if failover { "true" } else { "false" };
        self.run_script(
            "sql/03_slot.sql",
            SLOT_SQL,
            &[("tailbox.slot", slot), ("tailbox.failover", failover)],
        )
        .await
        .map_err(|e| setup_problem(e, &format!("creating replication slot {slot:?}")))?;
        Ok(if existed { Change::AlreadyThere } else { Change::Done })
    }

    /// Drops the slot and the publication if present, running the statements of
    /// `sql/99_teardown.sql`. A slot held by a running tailbox is refused.
    pub async fn drop_slot_and_publication(
        &self,
        slot: &str,
        publication: &str,
    ) -> Result<(Change, Change), ReplicationError> {
        let slot_report = self.slot_report(slot).await?;
        if let Some(report) = &slot_report
            && report.active
        {
            return Err(ReplicationError::startup(
                format!(
                    "replication slot {slot:?} is in use by PID {}",
                    report.active_pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                ),
                "stop the tailbox (or other client) streaming from it, then run teardown again",
            ));
        }
        let publication_existed = self.publication_report(publication).await?.is_some();
        self.run_script(
            "sql/99_teardown.sql",
            TEARDOWN_SQL,
            &[("tailbox.slot", slot), ("tailbox.publication", publication)],
        )
        .await
        .map_err(|e| {
            setup_problem(e, &format!("dropping slot {slot:?} and publication {publication:?}"))
        })?;
        let change = |existed: bool| {
            if existed { Change::Done } else { Change::AlreadyThere }
        };
        Ok((change(slot_report.is_some()), change(publication_existed)))
    }

    /// Sets `settings` (session-level) and runs the plain-SQL part of `script`.
    async fn run_script(
        &self,
        name: &str,
        script: &str,
        settings: &[(&str, &str)],
    ) -> Result<(), ReplicationError> {
        let Some(statements) = script_statements(script) else {
            return Err(ReplicationError::startup(
                format!("{name} has no {SCRIPT_BODY_MARKER:?} line"),
                "restore the file from the tailbox release",
            ));
        };
        for (key, value) in settings {
            self.client
                .execute("SELECT set_config($1, $2, false)", &[key, value])
                .await
                .map_err(|e| ReplicationError::from_pg(format!("setting {key}"), e))?;
        }
        for statement in statements {
            self.client
                .batch_execute(&statement)
                .await
                .map_err(|e| ReplicationError::from_pg(format!("running {name}"), e))?;
        }
        Ok(())
    }
}

/// Turns a server refusal during setup/teardown into a problem with a fix.
fn setup_problem(err: ReplicationError, what: &str) -> ReplicationError {
    let (message, code, hint) = match &err {
        ReplicationError::Definite { source, .. } | ReplicationError::Transient { source, .. } => {
            match source.downcast_ref::<tokio_postgres::Error>() {
                Some(pg) => match pg.as_db_error() {
                    Some(db) => (
                        db.message().to_owned(),
                        db.code().code().to_owned(),
                        db.hint().map(str::to_owned),
                    ),
                    None => return err,
                },
                None => return err,
            }
        }
        ReplicationError::Startup(_) | ReplicationError::SlotInUse { .. } => return err,
    };
    // The scripts' own refusals (sql/03_slot.sql's failover checks) carry their fix.
    if let Some(hint) = hint {
        return ReplicationError::startup(format!("{what}: {message} (SQLSTATE {code})"), hint);
    }
    let fix = match code.as_str() {
        "42501" => {
            "run setup/teardown as a superuser or the outbox table's owner with REPLICATION (e.g. `pg_url` postgres://postgres@HOST/DB); tailbox run itself only needs the role of sql/04_role.sql"
        }
        "42P01" => {
            "create the outbox table first (sql/01_outbox_table.sql), or point outbox_table at yours"
        }
        "55000" => "set wal_level = logical in postgresql.conf and restart PostgreSQL",
        "53400" => "raise max_replication_slots (restart required) or drop an unused slot",
        "55006" => "stop the client streaming from the slot, then try again",
        "25006" => {
            "this server is a standby (read-only): create the publication on the primary (sql/02_publication.sql or `tailbox setup` there); the slot for decoding on this standby is then created here"
        }
        _ => "see the PostgreSQL error above",
    };
    ReplicationError::startup(format!("{what}: {message} (SQLSTATE {code})"), fix)
}

#[cfg(test)]
mod script_tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_dollar_quotes() {
        let sql = "-- a comment; with a semicolon\nSELECT 'a;b';\nDO $$ BEGIN PERFORM 1; END $$;\n\
                   DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$;\nSELECT $1";
        let statements = split_sql(sql);
        assert_eq!(
            statements,
            vec![
                "SELECT 'a;b'",
                "DO $$ BEGIN PERFORM 1; END $$",
                "DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$",
                "SELECT $1",
            ]
        );
    }

    /// The scripts users run with psql and the statements `tailbox setup`/`teardown`
    /// run are the same file: each has the marker, plain SQL after it, and uses the
    /// `tailbox.*` settings that both ways set.
    #[test]
    fn sql_scripts_have_a_plain_sql_body() {
        for (name, script, settings) in [
            (
                "02_publication.sql",
                PUBLICATION_SQL,
                &["tailbox.publication", "tailbox.outbox_table"][..],
            ),
            ("03_slot.sql", SLOT_SQL, &["tailbox.slot", "tailbox.failover"][..]),
            ("99_teardown.sql", TEARDOWN_SQL, &["tailbox.slot", "tailbox.publication"][..]),
        ] {
            let statements = script_statements(script);
            let Some(statements) = statements else {
                panic!("{name} lacks the {SCRIPT_BODY_MARKER:?} line");
            };
            assert!(!statements.is_empty(), "{name}");
            for statement in &statements {
                assert!(
                    !statement.contains(":'") && !statement.contains('\\'),
                    "{name}: psql-only syntax after the marker: {statement}"
                );
            }
            let body = statements.join(";\n");
            for setting in settings {
                assert!(body.contains(setting), "{name} does not read {setting}");
                let psql_part = script.split(SCRIPT_BODY_MARKER).next().unwrap_or_default();
                assert!(
                    psql_part.contains(&format!("SET {setting} = :'")),
                    "{name}: psql does not set {setting}"
                );
            }
        }
    }
}

//! `tailbox status`, `tailbox setup`, `tailbox teardown`: PostgreSQL, on a control
//! connection (status also asks the server's identity on a replication connection and,
//! with Kafka configured, reads the checkpoint topic to say whose checkpoint it holds).
//!
//! setup and teardown run the statements of sql/02_publication.sql, sql/03_slot.sql
//! and sql/99_teardown.sql themselves (built into the binary), so the scripts users
//! run with psql and these commands cannot drift apart.

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use tailbox_kafka_sink::CheckpointTopic;
use tailbox_pgoutput::Lsn;
use tailbox_pipeline::resume::{self, CheckpointOwner, Scan};
use tailbox_pipeline::settings::Destination;
use tailbox_redis_sink::RedisSink;
use tailbox_replication::{
    ControlClient, OutboxTableSpec, ReplicationError, ServerIdentity, control::quote_identifier,
};
use tailbox_sink::Sink;

use crate::{
    catalog::{self, PublicationReport, ServerReport, SlotReport},
    config::Config,
    progress::human_bytes,
    scripts::{self, Change},
};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn connect(config: &Config) -> Result<ControlClient> {
    let pg = config.pg()?;
    ControlClient::connect(&pg)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}:{}", pg.host(), pg.port()))
}

/// `tailbox status [--json]`.
pub fn status(config: &Config, as_json: bool) -> Result<()> {
    runtime()?.block_on(async {
        let control = connect(config).await?;
        let server = catalog::server_report(&control).await?;
        let slot = catalog::slot_report(&control, &config.slot).await?;
        let publication = catalog::publication_report(&control, &config.publication).await?;
        let current = match &slot {
            Some(s) => s.current_wal_lsn,
            None => catalog::server_wal_lsn(&control).await?,
        };
        let identity = IdentityStatus::gather(config).await;
        if as_json {
            let mut value = status_json(&config.slot, &config.publication, &server, slot.as_ref(), publication.as_ref(), current);
            value["checkpoint"] = identity.json();
            println!(
                "{}",
                serde_json::to_string_pretty(&value).context("encoding JSON")?
            );
        } else {
            print!(
                "{}",
                status_table(&config.slot, &config.publication, &server, slot.as_ref(), publication.as_ref(), current)
            );
            print!("{}", identity.table());
        }
        match (&slot, &publication) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(anyhow!(
                "{} missing; fix: run `tailbox setup` (or sql/02_publication.sql and sql/03_slot.sql)",
                [
                    slot.is_none().then(|| format!("slot {:?}", config.slot)),
                    publication
                        .is_none()
                        .then(|| format!("publication {:?}", config.publication)),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
            )),
        }
    })
}

/// The JSON form of `tailbox status`.
pub fn status_json(
    slot_name: &str,
    publication_name: &str,
    server: &ServerReport,
    slot: Option<&SlotReport>,
    publication: Option<&PublicationReport>,
    current_wal_lsn: Lsn,
) -> serde_json::Value {
    let slot = match slot {
        Some(s) => json!({
            "name": s.slot,
            "exists": true,
            "plugin": s.plugin,
            "slot_type": s.slot_type,
            "database": s.database,
            "active": s.active,
            "active_pid": s.active_pid,
            "confirmed_flush_lsn": s.confirmed_flush_lsn.map(|lsn| lsn.to_string()),
            "restart_lsn": s.restart_lsn.map(|lsn| lsn.to_string()),
            "wal_status": s.wal_status,
            "safe_wal_size_bytes": s.safe_wal_size,
            "retained_wal_bytes": s.retained_wal_bytes,
            "lag_bytes": s.lag_bytes,
            "failover": s.failover,
            "synced": s.synced,
        }),
        None => json!({ "name": slot_name, "exists": false }),
    };
    let publication = match publication {
        Some(p) => json!({
            "name": p.publication,
            "exists": true,
            "all_tables": p.all_tables,
            "operations": p.operations,
            "tables": p.tables,
        }),
        None => json!({ "name": publication_name, "exists": false }),
    };
    json!({
        "current_wal_lsn": current_wal_lsn.to_string(),
        "server": {
            "role": if server.in_recovery { "standby" } else { "primary" },
            "in_recovery": server.in_recovery,
            "version_num": server.version_num,
            "synchronized_standby_slots": server.synchronized_standby_slots,
        },
        "slot": slot,
        "publication": publication,
    })
}

/// The table form of `tailbox status`.
pub fn status_table(
    slot_name: &str,
    publication_name: &str,
    server: &ServerReport,
    slot: Option<&SlotReport>,
    publication: Option<&PublicationReport>,
    current_wal_lsn: Lsn,
) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push((
        "role",
        if server.in_recovery {
            "standby (in recovery): tailbox reads from a hot standby (logical decoding on standby, PostgreSQL 16+)".into()
        } else {
            "primary".into()
        },
    ));
    let lsn = |l: Option<Lsn>| l.map(|lsn| lsn.to_string()).unwrap_or_else(|| "-".into());
    match slot {
        Some(s) => {
            rows.push((
                "slot",
                format!(
                    "{} ({} slot, plugin {}, database {})",
                    s.slot,
                    s.slot_type,
                    s.plugin.as_deref().unwrap_or("-"),
                    s.database.as_deref().unwrap_or("-")
                ),
            ));
            rows.push((
                "active",
                match (s.active, s.active_pid) {
                    (true, Some(pid)) => format!("yes, pid {pid}"),
                    (true, None) => "yes".into(),
                    (false, _) => "no".into(),
                },
            ));
            rows.push(("failover", failover_row(server, s)));
            if let Some(synced) = s.synced {
                rows.push(("synced", synced_row(server, synced)));
            }
            rows.push(("wal_status", s.wal_status.clone().unwrap_or_else(|| "-".into())));
            rows.push(("confirmed LSN", lsn(s.confirmed_flush_lsn)));
            rows.push(("restart LSN", lsn(s.restart_lsn)));
            rows.push(("current WAL LSN", current_wal_lsn.to_string()));
            rows.push((
                "retained WAL",
                s.retained_wal_bytes
                    .map(|b| format!("{} (current WAL − restart LSN)", human_bytes(b)))
                    .unwrap_or_else(|| "-".into()),
            ));
            rows.push((
                "lag",
                s.lag_bytes
                    .map(|b| format!("{} (current WAL − confirmed LSN)", human_bytes(b)))
                    .unwrap_or_else(|| "-".into()),
            ));
            if let Some(safe) = s.safe_wal_size {
                rows.push((
                    "safe WAL size",
                    format!("{} before invalidation", human_bytes(safe.max(0) as u64)),
                ));
            }
        }
        None => {
            rows.push(("slot", format!("{slot_name}: MISSING (create it with `tailbox setup`)")));
            rows.push(("current WAL LSN", current_wal_lsn.to_string()));
        }
    }
    match publication {
        Some(p) => rows.push((
            "publication",
            format!(
                "{} (publishes {}; tables: {})",
                p.publication,
                if p.operations.is_empty() { "nothing".into() } else { p.operations.join(", ") },
                if p.all_tables {
                    "ALL TABLES".into()
                } else if p.tables.is_empty() {
                    "none".into()
                } else {
                    p.tables.join(", ")
                }
            ),
        )),
        None => rows.push((
            "publication",
            format!("{publication_name}: MISSING (create it with `tailbox setup`)"),
        )),
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

/// Whether the slot survives a promotion of a standby (failover slots, PostgreSQL 17+).
fn failover_row(server: &ServerReport, slot: &SlotReport) -> String {
    match (slot.failover, server.in_recovery) {
        (None, _) => "no (PostgreSQL 17+ has failover slots)".into(),
        (Some(false), _) => {
            "no: a promoted standby will not have this slot (`tailbox setup --failover` creates one)"
                .into()
        }
        (Some(true), true) => "yes".into(),
        (Some(true), false) => match server.synchronized_standby_slots.as_deref() {
            Some(standbys) if !standbys.is_empty() => format!(
                "yes: standbys with sync_replication_slots = on keep a copy; changes reach tailbox only after {standbys} (synchronized_standby_slots) have them"
            ),
            _ => "yes, but synchronized_standby_slots is empty: tailbox may publish changes a standby has not received yet (see docs/runbook.md)".into(),
        },
    }
}

/// What `pg_replication_slots.synced` means on this server.
fn synced_row(server: &ServerReport, synced: bool) -> String {
    match (synced, server.in_recovery) {
        (true, true) => {
            "yes: synchronized from the primary's failover slot (read-only until this standby is promoted)".into()
        }
        (false, true) => "no: created on this standby (decoding on standby)".into(),
        (true, false) => "yes (left over from this server's promotion)".into(),
        (false, false) => "no (this is the primary; on a standby, status shows its copy)".into(),
    }
}

/// Whose checkpoint the checkpoint topic holds, next to this server's identity.
pub struct IdentityStatus {
    /// The checkpoint topic.
    pub topic: String,
    /// The server's identity (`IDENTIFY_SYSTEM`), or why it could not be asked.
    pub server: Result<ServerIdentity, String>,
    /// What the topic (Kafka) or hash (Redis) holds for this slot, or why it was not
    /// read; `None` without the sink's settings.
    pub checkpoint: Option<Result<Scan, String>>,
}

impl IdentityStatus {
    async fn gather(config: &Config) -> Self {
        let server = match config.pg() {
            Ok(pg) => ServerIdentity::fetch(&pg).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let checkpoint = match (&server, config.destination()) {
            (_, Err(_)) => None,
            (Err(_), Ok(_)) => Some(Err("the server's identity is unknown".into())),
            (Ok(server), Ok(destination)) => {
                let owner = CheckpointOwner::new(server, &config.slot);
                let read = match destination {
                    Destination::Kafka(kafka) => {
                        CheckpointTopic::new(&config.checkpoint_topic).read(&kafka).await
                    }
                    Destination::Redis(redis) => {
                        match RedisSink::connect(&redis, owner.name()).await {
                            Ok(mut sink) => sink.read_checkpoints().await,
                            Err(e) => Err(e),
                        }
                    }
                    Destination::Webhook(webhook) => {
                        match tailbox_webhook_sink::Store::connect(&webhook.pg).await {
                            Ok(store) => store.read_checkpoints().await,
                            Err(e) => Err(e),
                        }
                    }
                };
                Some(read.map_err(|e| e.to_string()).map(|records| {
                    resume::scan(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), &owner)
                }))
            }
        };
        Self { topic: config.checkpoint_topic.clone(), server, checkpoint }
    }

    /// Whether our checkpoint covers WAL this server has: `Ok(None)` when there is none.
    fn verdict(&self) -> Option<Result<Lsn, String>> {
        let (Ok(server), Some(Ok(scan))) = (&self.server, &self.checkpoint) else { return None };
        let ours = scan.ours.as_ref()?;
        Some(match resume::decide(Some(ours), server, false) {
            Ok(_) => Ok(ours.lsn),
            Err(divergence) => Err(divergence.to_string()),
        })
    }

    /// The rows of the table form.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = Vec::new();
        rows.push((
            "server",
            match &self.server {
                Ok(server) => server.to_string(),
                Err(why) => format!("unknown ({why})"),
            },
        ));
        let checkpoint = match &self.checkpoint {
            None => "not read (no Kafka or Redis settings)".to_owned(),
            Some(Err(why)) => format!("not read from {}: {why}", self.topic),
            Some(Ok(scan)) => match (&scan.ours, self.verdict()) {
                (Some(cp), Some(Ok(_))) => format!(
                    "{} on timeline {}, of {} (matches this server)",
                    cp.lsn, cp.owner.timeline, cp.owner
                ),
                (Some(cp), _) => format!(
                    "{} on timeline {}, of {}: DOES NOT MATCH this server's WAL",
                    cp.lsn, cp.owner.timeline, cp.owner
                ),
                (None, _) => format!("none of this slot of this server in {}", self.topic),
            },
        };
        rows.push(("checkpoint", checkpoint));
        if let Some(Err(problem)) = self.verdict() {
            rows.push(("checkpoint problem", problem));
        }
        if let Some(Ok(scan)) = &self.checkpoint {
            for why in &scan.ignored {
                rows.push(("not ours", why.clone()));
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
    }

    /// The `checkpoint` object of the JSON form.
    pub fn json(&self) -> serde_json::Value {
        let server = match &self.server {
            Ok(s) => json!({
                "system_id": s.system_id.to_string(),
                "database": s.database,
                "timeline": s.timeline,
                "wal_flush_lsn": s.wal_flush_lsn.to_string(),
            }),
            Err(why) => json!({ "error": why }),
        };
        let mut value = json!({ "topic": self.topic, "server": server });
        match &self.checkpoint {
            None => value["read"] = json!(false),
            Some(Err(why)) => value["error"] = json!(why),
            Some(Ok(scan)) => {
                value["read"] = json!(true);
                value["ours"] = match &scan.ours {
                    Some(cp) => json!({
                        "system_id": cp.owner.system_id.to_string(),
                        "database": cp.owner.database,
                        "slot": cp.owner.slot,
                        "timeline": cp.owner.timeline,
                        "lsn": cp.lsn.to_string(),
                    }),
                    None => serde_json::Value::Null,
                };
                value["matches_server"] = match self.verdict() {
                    Some(Ok(_)) => json!(true),
                    Some(Err(_)) => json!(false),
                    None => serde_json::Value::Null,
                };
                if let Some(Err(problem)) = self.verdict() {
                    value["problem"] = json!(problem);
                }
                value["ignored"] = json!(scan.ignored);
            }
        }
        value
    }
}

fn describe(change: Change, done: &str, already: &str) -> String {
    match change {
        Change::Done => done.to_owned(),
        Change::AlreadyThere => already.to_owned(),
    }
}

/// `tailbox cleanup`: deletes old outbox rows in batches.
pub fn cleanup(config: &Config, older_than: &str, column: &str, batch: i64) -> Result<()> {
    let spec = config.table_spec()?;
    runtime()?.block_on(async {
        let control = connect(config).await?;
        let deleted = delete_older_than(&control, &spec, column, older_than, batch).await?;
        println!(
            "deleted {deleted} rows older than {older_than} from {}.{}",
            spec.schema, spec.table
        );
        Ok(())
    })
}

/// Deletes outbox rows whose `column` is older than `older_than` (a PostgreSQL
/// interval such as `7 days`), at most `batch` rows per statement so locks stay short
/// and autovacuum keeps up; returns the number deleted. Publishing is unaffected:
/// the publication carries inserts only.
pub async fn delete_older_than(
    control: &ControlClient,
    table: &OutboxTableSpec,
    column: &str,
    older_than: &str,
    batch: i64,
) -> Result<u64, ReplicationError> {
    let quote = quote_identifier;
    let sql = format!(
        "DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {t} WHERE {c} < now() - $1::text::interval LIMIT $2))",
        t = format!("{}.{}", quote(&table.schema), quote(&table.table)),
        c = quote(column),
    );
    let statement = control.client().prepare(&sql).await.map_err(|e| {
        let what = format!("preparing the cleanup of {}.{}", table.schema, table.table);
        ReplicationError::from_pg_error(&what, e)
    })?;
    let mut total = 0;
    loop {
        let deleted = control
            .client()
            .execute(&statement, &[&older_than, &batch])
            .await
            .map_err(|e| ReplicationError::from_pg_error("deleting old outbox rows", e))?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// `tailbox setup [--failover]`: publication, then slot (a failover slot with
/// `failover`, PostgreSQL 17+), then the same checks `run` makes.
pub fn setup(config: &Config, failover: bool) -> Result<()> {
    let spec = config.table_spec()?;
    runtime()?.block_on(async {
        let control = connect(config).await?;
        let server = catalog::server_report(&control).await?;
        if failover && server.version_num < 170_000 {
            return Err(anyhow!(
                "--failover needs PostgreSQL 17 or later (failover slots), this server is {}.{}; fix: run setup without --failover — before 17 a logical slot is not kept on standbys, so after a promotion it must be created again and what was committed meanwhile backfilled (docs/runbook.md)",
                server.version_num / 10_000,
                server.version_num % 10_000
            ));
        }
        let level = catalog::wal_level(&control).await?;
        if level != "logical" {
            return Err(anyhow!(
                "wal_level is {level:?}, logical decoding needs \"logical\"; fix: ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL"
            ));
        }
        let publication =
            scripts::create_publication(&control, &config.publication, &spec.schema, &spec.table)
                .await?;
        println!(
            "publication {}: {}",
            config.publication,
            describe(
                publication,
                &format!("created for {}.{} (inserts only)", spec.schema, spec.table),
                "already exists"
            )
        );
        let slot = scripts::create_slot(&control, &config.slot, failover).await?;
        let at = catalog::slot_report(&control, &config.slot)
            .await?
            .and_then(|s| s.confirmed_flush_lsn)
            .map(|lsn| lsn.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "slot {}: {}",
            config.slot,
            describe(
                slot,
                &format!("created (pgoutput) at {at}; events committed from now on will be published"),
                &format!("already exists (confirmed LSN {at})")
            )
        );
        if failover {
            match server.synchronized_standby_slots.as_deref() {
                Some(standbys) if !standbys.is_empty() => println!(
                    "failover: standbys with sync_replication_slots = on keep a copy of slot {}; changes reach tailbox only after {standbys} (synchronized_standby_slots) have them",
                    config.slot
                ),
                _ => println!(
                    "failover: slot {} is a failover slot, but synchronized_standby_slots is empty on this primary: set it to the standbys' physical slots so that a promoted standby's copy is never behind what tailbox published (docs/runbook.md)",
                    config.slot
                ),
            }
        }
        control
            .check_ready(&config.slot, &config.publication, &spec)
            .await
            .context("checking the result as `tailbox run` will")?;
        println!("ready: `tailbox run` will accept this slot and publication");
        Ok(())
    })
}

/// `tailbox teardown`: slot, then publication (refused while the slot is in use).
pub fn teardown(config: &Config) -> Result<()> {
    runtime()?.block_on(async {
        let control = connect(config).await?;
        let (slot, publication) =
            scripts::drop_slot_and_publication(&control, &config.slot, &config.publication).await?;
        println!("slot {}: {}", config.slot, describe(slot, "dropped", "not there"));
        println!(
            "publication {}: {}",
            config.publication,
            describe(publication, "dropped", "not there")
        );
        Ok(())
    })
}

/// `tailbox dead-letters list`: the webhook sink's dead letters, oldest first.
pub fn dead_letters_list(config: &Config, ids: &[i64], as_json: bool) -> Result<()> {
    let pg = config.pg()?;
    runtime()?.block_on(async {
        let store = tailbox_webhook_sink::Store::connect(&pg).await?;
        let rows = store.dead_letters(ids).await?;
        for row in &rows {
            let l = &row.letter;
            let when = |t: Option<std::time::SystemTime>| {
                t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs())
            };
            if as_json {
                let line = json!({
                    "id": row.id,
                    "event_id": l.event_id,
                    "topic": l.topic,
                    "aggregate_id": String::from_utf8_lossy(&l.aggregate_id),
                    "error": l.error,
                    "source_lsn": l.source_lsn,
                    "attempts": l.attempts,
                    "first_attempt_unix": when(l.first_attempt),
                    "last_attempt_unix": when(l.last_attempt),
                    "response_status": l.response_status,
                    "response_body": l.response_body,
                    "replayable": l.body.is_some(),
                    "replayed": row.replayed_at.is_some(),
                });
                println!("{line}");
            } else {
                println!(
                    "{:>6}  {}  {}  aggregate {}  lsn {}  attempts {}  status {}  {}",
                    row.id,
                    l.event_id.as_deref().unwrap_or("-"),
                    l.topic.as_deref().unwrap_or("-"),
                    String::from_utf8_lossy(&l.aggregate_id),
                    l.source_lsn.as_deref().unwrap_or("-"),
                    l.attempts,
                    l.response_status.map_or("-".to_owned(), |s| s.to_string()),
                    l.error,
                );
            }
        }
        if !as_json {
            eprintln!("tailbox: {} dead letter(s)", rows.len());
        }
        Ok(())
    })
}

/// `tailbox dead-letters replay`: POSTs dead letters again, one attempt each.
pub fn dead_letters_replay(config: &Config, ids: &[i64]) -> Result<()> {
    let webhook = config.webhook()?;
    runtime()?.block_on(async {
        let results = tailbox_webhook_sink::replay::replay(&webhook, ids).await?;
        let failed = results.iter().filter(|r| !r.delivered).count();
        for r in &results {
            println!("{:>6}  {}", r.id, r.outcome);
        }
        eprintln!("tailbox: {} replayed, {failed} not delivered", results.len() - failed);
        if failed > 0 {
            anyhow::bail!("{failed} dead letter(s) not delivered");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> SlotReport {
        SlotReport {
            slot: "tailbox".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            database: Some("app".into()),
            active: true,
            active_pid: Some(42),
            confirmed_flush_lsn: Some(Lsn::new(0x100)),
            restart_lsn: Some(Lsn::new(0x80)),
            wal_status: Some("reserved".into()),
            safe_wal_size: None,
            current_wal_lsn: Lsn::new(0x180),
            retained_wal_bytes: Some(0x100),
            lag_bytes: Some(0x80),
            failover: Some(true),
            synced: Some(false),
        }
    }

    fn primary() -> ServerReport {
        ServerReport {
            version_num: 170_010,
            in_recovery: false,
            synchronized_standby_slots: Some("standby_1".into()),
        }
    }

    #[test]
    fn status_forms() {
        let publication = PublicationReport {
            publication: "tailbox".into(),
            all_tables: false,
            operations: vec!["insert".into()],
            tables: vec!["public.outbox".into()],
        };
        let table = status_table(
            "tailbox",
            "tailbox",
            &primary(),
            Some(&slot()),
            Some(&publication),
            Lsn::new(0x180),
        );
        assert!(table.contains("active           yes, pid 42"), "{table}");
        assert!(table.contains("retained WAL     256 B"), "{table}");
        assert!(table.contains("publishes insert; tables: public.outbox"), "{table}");
        assert!(table.contains("role             primary"), "{table}");
        assert!(table.contains("failover         yes: standbys"), "{table}");
        assert!(table.contains("standby_1"), "{table}");
        let value =
            status_json("tailbox", "tailbox", &primary(), Some(&slot()), None, Lsn::new(0x180));
        assert_eq!(value["slot"]["failover"], true);
        assert_eq!(value["slot"]["synced"], false);
        assert_eq!(value["server"]["role"], "primary");
        assert_eq!(value["slot"]["confirmed_flush_lsn"], "0/100");
        assert_eq!(value["slot"]["lag_bytes"], 128);
        assert_eq!(value["publication"]["exists"], false);
        let missing = status_table("s", "p", &primary(), None, None, Lsn::new(1));
        assert!(missing.contains("s: MISSING"), "{missing}");
    }

    #[test]
    fn status_tells_a_standby_and_its_synchronized_copy() {
        let standby = ServerReport {
            version_num: 170_010,
            in_recovery: true,
            synchronized_standby_slots: Some(String::new()),
        };
        let copy = SlotReport { synced: Some(true), ..slot() };
        let table =
            status_table("tailbox", "tailbox", &standby, Some(&copy), None, Lsn::new(0x180));
        assert!(table.contains("role             standby (in recovery)"), "{table}");
        assert!(table.contains("synced           yes: synchronized from the primary"), "{table}");
        let value = status_json("tailbox", "tailbox", &standby, Some(&copy), None, Lsn::new(0x180));
        assert_eq!(value["server"]["in_recovery"], true);
        assert_eq!(value["slot"]["synced"], true);

        let unguarded = ServerReport { in_recovery: false, ..standby };
        let table =
            status_table("tailbox", "tailbox", &unguarded, Some(&slot()), None, Lsn::new(0x180));
        assert!(table.contains("synchronized_standby_slots is empty"), "{table}");

        let sixteen = ServerReport { version_num: 160_014, ..primary() };
        let old = SlotReport { failover: None, synced: None, ..slot() };
        let table = status_table("tailbox", "tailbox", &sixteen, Some(&old), None, Lsn::new(0x180));
        assert!(table.contains("failover         no (PostgreSQL 17+"), "{table}");
        assert!(!table.contains("synced"), "{table}");
        assert_eq!(
            status_json("t", "t", &sixteen, Some(&old), None, Lsn::ZERO)["slot"]["failover"],
            json!(null)
        );
    }
}

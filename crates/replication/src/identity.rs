//! Which server, which database and which stretch of WAL history we stream from:
//! `IDENTIFY_SYSTEM` and `TIMELINE_HISTORY` on the replication connection.
//!
//! An LSN means nothing on its own. Two clusters, a re-created cluster and a cluster
//! restored to an earlier point all hand out overlapping LSNs for different
//! transactions. What pins an LSN down is the cluster's *system identifier* (set by
//! `initdb`, kept by physical copies and standbys, new after `pg_upgrade`), the database
//! (a slot decodes one database), and the *timeline* (a promotion or a point-in-time
//! restore starts a new one, branching off its parent at a switch point: below it the
//! two share their WAL, above it they differ).
//!
//! Both commands run on the replication connection itself, before `START_REPLICATION`,
//! so the identity is that of the very server the stream comes from (with several hosts
//! or after a failover, a separate connection could reach another one).

use tailbox_pgoutput::Lsn;

use crate::{
    connection::PgConnectionConfig,
    error::ReplicationError,
    wire::{PgWire, protocol},
};

/// What `IDENTIFY_SYSTEM` says about the server, plus its timeline's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The cluster's system identifier (`pg_control_system().system_identifier`).
    pub system_id: u64,
    /// The timeline the server is on now.
    pub timeline: u32,
    /// The server's WAL flush position when asked.
    pub wal_flush_lsn: Lsn,
    /// The database this connection decodes.
    pub database: String,
    /// How the current timeline descends from timeline 1 (empty on timeline 1).
    pub history: TimelineHistory,
}

impl ServerIdentity {
    /// Asks the server on `wire` (a replication connection, before it streams).
    pub(crate) async fn query(wire: &mut PgWire) -> Result<Self, ReplicationError> {
        let rows = wire.simple_query("IDENTIFY_SYSTEM").await?;
        // Columns: systemid, timeline, xlogpos, dbname.
        let column = |i: usize| rows.first().and_then(|row| row.get(i)).and_then(|v| v.clone());
        let system_id = column(0).and_then(|v| v.parse::<u64>().ok());
        let timeline = column(1).and_then(|v| v.parse::<u32>().ok());
        let wal_flush_lsn = column(2).and_then(|v| v.parse::<Lsn>().ok());
        let (Some(system_id), Some(timeline), Some(wal_flush_lsn)) =
            (system_id, timeline, wal_flush_lsn)
        else {
            return Err(protocol(format!("IDENTIFY_SYSTEM returned an unexpected row: {rows:?}")));
        };
        let database = column(3).unwrap_or_default();
        let history = if timeline > 1 {
            let rows = wire.simple_query(&format!("TIMELINE_HISTORY {timeline}")).await?;
            // Columns: filename, content (the history file's text).
            let content = rows.first().and_then(|row| row.get(1)).and_then(|v| v.clone());
            let content =
                content.ok_or_else(|| protocol("TIMELINE_HISTORY returned no content"))?;
            TimelineHistory::parse(&content).map_err(|line| {
                protocol(format!("timeline {timeline}'s history has an unreadable line: {line:?}"))
            })?
        } else {
            TimelineHistory::default()
        };
        Ok(Self { system_id, timeline, wal_flush_lsn, database, history })
    }

    /// Connects for replication, asks, and disconnects (for `tailbox status`).
    pub async fn fetch(conn: &PgConnectionConfig) -> Result<Self, ReplicationError> {
        let mut wire = PgWire::connect(conn, "tailbox/identify").await?;
        let identity = Self::query(&mut wire).await;
        wire.close().await;
        identity
    }

    /// The last LSN at which `timeline`'s WAL is also this server's: the whole of it if
    /// it is the current timeline (up to the flush position), up to its switch point if
    /// it is an ancestor, `None` if it is not part of this server's history at all.
    pub fn shared_end_of(&self, timeline: u32) -> Option<Lsn> {
        if timeline == self.timeline {
            Some(self.wal_flush_lsn)
        } else {
            self.history.switch_point(timeline)
        }
    }
}

impl std::fmt::Display for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "system {} database {:?} timeline {} (WAL at {})",
            self.system_id, self.database, self.timeline, self.wal_flush_lsn
        )
    }
}

/// One line of a timeline history file: `timeline` ended at `switch_point`, where its
/// child began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSwitch {
    /// The ancestor timeline.
    pub timeline: u32,
    /// First LSN that is no longer part of `timeline` on this server's history.
    pub switch_point: Lsn,
}

/// The ancestors of a timeline with their switch points, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineHistory(pub Vec<TimelineSwitch>);

impl TimelineHistory {
    /// Parses a history file: lines `parentTLI<TAB>switchpoint<TAB>reason`; blank lines
    /// and `#` comments are skipped. Returns the first unreadable line on error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut switches = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let timeline = fields.next().and_then(|f| f.parse::<u32>().ok());
            let switch_point = fields.next().and_then(|f| f.parse::<Lsn>().ok());
            match (timeline, switch_point) {
                (Some(timeline), Some(switch_point)) => {
                    switches.push(TimelineSwitch { timeline, switch_point })
                }
                _ => return Err(line.to_owned()),
            }
        }
        Ok(Self(switches))
    }

    /// Where `timeline` ended on this history, if it is an ancestor.
    pub fn switch_point(&self, timeline: u32) -> Option<Lsn> {
        self.0.iter().find(|s| s.timeline == timeline).map(|s| s.switch_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_files_are_parsed() {
        let text =
            "1\t0/3000000\tno recovery target specified\n\n2\t0/5000A8\tat restore point \"x\"\n";
        let history = TimelineHistory::parse(text).expect("valid history");
        assert_eq!(history.switch_point(1), Some(Lsn::new(0x300_0000)));
        assert_eq!(history.switch_point(2), Some(Lsn::new(0x50_00A8)));
        assert_eq!(history.switch_point(3), None);
        assert_eq!(TimelineHistory::parse("1 nonsense"), Err("1 nonsense".to_owned()));
    }

    #[test]
    fn the_current_timeline_is_shared_up_to_the_flush_position() {
        let identity = ServerIdentity {
            system_id: 7,
            timeline: 3,
            wal_flush_lsn: Lsn::new(0x900),
            database: "app".into(),
            history: TimelineHistory(vec![
                TimelineSwitch { timeline: 1, switch_point: Lsn::new(0x100) },
                TimelineSwitch { timeline: 2, switch_point: Lsn::new(0x500) },
            ]),
        };
        assert_eq!(identity.shared_end_of(3), Some(Lsn::new(0x900)));
        assert_eq!(identity.shared_end_of(2), Some(Lsn::new(0x500)));
        assert_eq!(identity.shared_end_of(1), Some(Lsn::new(0x100)));
        assert_eq!(identity.shared_end_of(4), None);
    }
}

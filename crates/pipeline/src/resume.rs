//! Whose checkpoint is it, and how much of the WAL may it skip?
//!
//! On startup tailbox skips every transaction that its checkpoint says is published
//! already (that is what makes exactly-once mode exact, and what keeps at-least-once
//! duplicates bounded). Skipping on the strength of somebody else's checkpoint loses
//! events silently, so a checkpoint skips anything only when it *provably* covers WAL
//! this server has:
//!
//! 1. **It is ours.** A checkpoint record names its owner: the cluster's system
//!    identifier, the database and the slot ([`CheckpointOwner`]). The record key holds
//!    all three, so two databases (or a re-created cluster) with identical settings
//!    never overwrite or read each other's records. A record we cannot attribute
//!    (another owner, the old format keyed by the slot name alone, unreadable bytes) is
//!    never used; [`scan`] lists it for one warning.
//! 2. **Its WAL is this server's.** The record also holds the timeline it was written
//!    on. On the same timeline, the server's WAL up to its flush position is the WAL the
//!    checkpoint was taken from; on a descendant timeline, only up to the point where
//!    this server's history branched off the checkpoint's timeline. A checkpoint beyond
//!    that shared part means events were published from WAL this server does not have
//!    (a restore to an earlier point, a promoted standby that had not received them):
//!    [`decide`] refuses, naming both positions, unless the operator accepted it — and
//!    then only the shared part is skipped.

use tailbox_pgoutput::Lsn;
use tailbox_replication::ServerIdentity;

/// Version of the checkpoint record's value written by this build.
const FORMAT: u64 = 2;

/// Who wrote a checkpoint: one slot of one database of one cluster, on one timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOwner {
    /// The cluster's system identifier (`IDENTIFY_SYSTEM`).
    pub system_id: u64,
    /// The database the slot decodes.
    pub database: String,
    /// The slot.
    pub slot: String,
    /// The timeline the server was on when the checkpoint was written (not part of the
    /// key: a failover keeps the owner and moves the timeline).
    pub timeline: u32,
    key: String,
}

impl CheckpointOwner {
    /// The owner of checkpoints written for `slot` on `server`.
    pub fn new(server: &ServerIdentity, slot: &str) -> Self {
        Self::from_parts(server.system_id, &server.database, slot, server.timeline)
    }

    fn from_parts(system_id: u64, database: &str, slot: &str, timeline: u32) -> Self {
        // Slot names are [a-z0-9_], so the key splits back unambiguously.
        let key = format!("{system_id}/{slot}/{database}");
        Self { system_id, database: database.to_owned(), slot: slot.to_owned(), timeline, key }
    }

    /// The checkpoint record's key: system identifier, slot and database.
    pub fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The key as text (`<system identifier>/<slot>/<database>`), e.g. to claim a
    /// destination with.
    pub fn name(&self) -> &str {
        &self.key
    }

    /// The checkpoint record's value for `lsn`.
    pub fn encode(&self, lsn: Lsn) -> Vec<u8> {
        serde_json::json!({
            "format": FORMAT,
            // A string: JSON readers that hold numbers as doubles would round it.
            "system_id": self.system_id.to_string(),
            "database": self.database,
            "slot": self.slot,
            "timeline": self.timeline,
            "lsn": lsn.to_string(),
        })
        .to_string()
        .into_bytes()
    }

    /// The default `transactional.id` of exactly-once mode: one per owner, so instances
    /// of the same slot fence each other and nobody else's.
    pub fn transactional_id(&self) -> String {
        format!("tailbox-{}-{}-{}", self.system_id, self.slot, self.database)
    }

    fn same_owner(&self, other: &CheckpointOwner) -> bool {
        self.system_id == other.system_id
            && self.database == other.database
            && self.slot == other.slot
    }
}

impl std::fmt::Display for CheckpointOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slot {:?} of database {:?} on system {}",
            self.slot, self.database, self.system_id
        )
    }
}

/// A checkpoint read back: its owner (with the timeline it was written on) and LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Who wrote it.
    pub owner: CheckpointOwner,
    /// Every event of transactions committed before this LSN was published.
    pub lsn: Lsn,
}

impl StoredCheckpoint {
    /// Decodes a value written by [`CheckpointOwner::encode`]; `None` for anything else.
    pub fn decode(value: &[u8]) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(value).ok()?;
        if value.get("format")?.as_u64()? != FORMAT {
            return None;
        }
        let text = |name: &str| value.get(name).and_then(|v| v.as_str());
        let owner = CheckpointOwner::from_parts(
            text("system_id")?.parse().ok()?,
            text("database")?,
            text("slot")?,
            u32::try_from(value.get("timeline")?.as_u64()?).ok()?,
        );
        Some(Self { owner, lsn: text("lsn")?.parse().ok()? })
    }
}

/// What the checkpoint topic holds for us.
#[derive(Debug, Default)]
pub struct Scan {
    /// Our checkpoint, if the topic has one.
    pub ours: Option<StoredCheckpoint>,
    /// Records that might have been meant for us but cannot be attributed, each with
    /// why it is ignored (for one warning).
    pub ignored: Vec<String>,
}

/// Finds our checkpoint among the topic's records (the last value of each key), and
/// the records that look related but are not provably ours.
pub fn scan<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    owner: &CheckpointOwner,
) -> Scan {
    let mut scan = Scan::default();
    let mut same_slot_elsewhere = Vec::new();
    for (key, value) in records {
        let stored = StoredCheckpoint::decode(value);
        if key == owner.key() {
            match stored {
                Some(stored) if stored.owner.same_owner(owner) => scan.ours = Some(stored),
                Some(stored) => scan.ignored.push(format!(
                    "a record under this slot's key names another owner ({}); ignored",
                    stored.owner
                )),
                None => scan.ignored.push(format!(
                    "the record under this slot's key is in an unknown format ({} bytes); ignored",
                    value.len()
                )),
            }
        } else if key == owner.slot.as_bytes() {
            scan.ignored.push(format!(
                "a checkpoint of slot {:?} in the format of tailbox before checkpoint identities \
                 (keyed by the slot name alone, no system identifier or database) cannot be \
                 attributed to this server; ignored, and this start resumes from the slot's \
                 position alone",
                owner.slot
            ));
        } else if let Some(stored) = stored.filter(|s| s.owner.slot == owner.slot) {
            same_slot_elsewhere.push(format!(
                "a checkpoint of a slot of the same name belongs to {} (this is {}): another \
                 database sharing the topic, or a cluster this one replaced; ignored",
                stored.owner, owner
            ));
        }
    }
    // Another database's checkpoint is only worth a warning while we have none of our
    // own: then it is what an older tailbox would have resumed from.
    if scan.ours.is_none() {
        scan.ignored.extend(same_slot_elsewhere);
    }
    scan
}

/// How to resume, given our checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No checkpoint of ours: publish everything the slot sends.
    FromSlot,
    /// Transactions that committed before this LSN are published already.
    SkipBefore(Lsn),
    /// The checkpoint diverged and the operator accepted it: skip only the shared
    /// part, and write a checkpoint of this timeline at the first occasion.
    Diverged {
        /// Skip transactions committed before this LSN.
        skip_before: Lsn,
        /// The divergence that was accepted.
        divergence: Divergence,
    },
}

impl Resume {
    /// Transactions committed before this LSN are not published again.
    pub fn skip_before(&self) -> Lsn {
        match self {
            Resume::FromSlot => Lsn::ZERO,
            Resume::SkipBefore(lsn) | Resume::Diverged { skip_before: lsn, .. } => *lsn,
        }
    }

    /// The position our checkpoint vouches for on this server, if any.
    pub fn covered(&self) -> Option<Lsn> {
        match self {
            Resume::FromSlot => None,
            _ => Some(self.skip_before()),
        }
    }
}

/// A checkpoint of ours that lies beyond the WAL this server shares with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Whose checkpoint.
    pub owner: CheckpointOwner,
    /// Its LSN.
    pub checkpoint_lsn: Lsn,
    /// The timeline it was written on.
    pub checkpoint_timeline: u32,
    /// The server's timeline now.
    pub server_timeline: u32,
    /// Where the server's WAL stops being the checkpoint timeline's (`None`: that
    /// timeline is not in the server's history at all).
    pub shared_end: Option<Lsn>,
}

impl std::error::Error for Divergence {}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checkpoint = self.checkpoint_lsn;
        let shared = self.shared_end.unwrap_or_default();
        write!(
            f,
            "the checkpoint of {} is at {checkpoint} on timeline {}, but this server {}: events up to \
             {checkpoint} were published from WAL this server does not have (it was restored to an \
             earlier point, or a standby that had not received them was promoted); fix: find the \
             events published from past {shared} (their lsn header is higher) and decide what to do \
             with them, then start once with `accept_checkpoint_divergence` (tailbox then skips only \
             what lies before {shared} and publishes the rest from the slot's position)",
            self.owner,
            self.checkpoint_timeline,
            self.server_side(),
        )
    }
}

impl Divergence {
    /// Where the server stands relative to the checkpoint's timeline.
    fn server_side(&self) -> String {
        match self.shared_end {
            Some(end) if self.checkpoint_timeline == self.server_timeline => {
                format!("has WAL only up to {end} on timeline {}", self.server_timeline)
            }
            Some(end) => format!(
                "is on timeline {}, which branched off timeline {} at {end}",
                self.server_timeline, self.checkpoint_timeline
            ),
            None => format!(
                "is on timeline {}, whose history does not contain timeline {}",
                self.server_timeline, self.checkpoint_timeline
            ),
        }
    }
}

/// Decides how far our checkpoint (`ours`, from [`scan`]) may skip on `server`.
///
/// The checkpoint skips up to its LSN only if that LSN lies within the WAL the server
/// shares with the checkpoint's timeline ([`ServerIdentity::shared_end_of`]);
/// otherwise it is a [`Divergence`], refused unless `accept_divergence`, in which case
/// only the shared part is skipped.
pub fn decide(
    ours: Option<&StoredCheckpoint>,
    server: &ServerIdentity,
    accept_divergence: bool,
) -> Result<Resume, Divergence> {
    let Some(checkpoint) = ours else { return Ok(Resume::FromSlot) };
    let shared_end = server.shared_end_of(checkpoint.owner.timeline);
    if shared_end.is_some_and(|end| checkpoint.lsn <= end) {
        return Ok(Resume::SkipBefore(checkpoint.lsn));
    }
    let divergence = Divergence {
        owner: checkpoint.owner.clone(),
        checkpoint_lsn: checkpoint.lsn,
        checkpoint_timeline: checkpoint.owner.timeline,
        server_timeline: server.timeline,
        shared_end,
    };
    if accept_divergence {
        Ok(Resume::Diverged { skip_before: shared_end.unwrap_or_default(), divergence })
    } else {
        Err(divergence)
    }
}

#[cfg(test)]
mod tests {
    use tailbox_replication::{TimelineHistory, TimelineSwitch};

    use super::*;

    fn server(timeline: u32, flush: u64, history: &[(u32, u64)]) -> ServerIdentity {
        ServerIdentity {
            system_id: 42,
            timeline,
            wal_flush_lsn: Lsn::new(flush),
            database: "app".into(),
            history: TimelineHistory(
                history
                    .iter()
                    .map(|&(timeline, at)| TimelineSwitch { timeline, switch_point: Lsn::new(at) })
                    .collect(),
            ),
        }
    }

    fn checkpoint(timeline: u32, lsn: u64) -> StoredCheckpoint {
        let lsn = Lsn::new(lsn);
        StoredCheckpoint { owner: CheckpointOwner::from_parts(42, "app", "tailbox", timeline), lsn }
    }

    #[test]
    fn values_round_trip_and_nothing_else_decodes() {
        let owner = CheckpointOwner::from_parts(7_301_234_567_890_123_456, "app/db", "s_1", 3);
        let decoded =
            StoredCheckpoint::decode(&owner.encode(Lsn::new(0x1_0000_00A0))).expect("decodes");
        assert_eq!(
            decoded,
            StoredCheckpoint { owner: owner.clone(), lsn: Lsn::new(0x1_0000_00A0) }
        );
        assert_eq!(owner.key(), b"7301234567890123456/s_1/app/db");
        // The format before identities, and garbage.
        assert_eq!(StoredCheckpoint::decode(br#"{"slot":"s_1","lsn":"0/10"}"#), None);
        assert_eq!(StoredCheckpoint::decode(b"garbage"), None);
        let future = String::from_utf8_lossy(&owner.encode(Lsn::new(1)))
            .replace("\"format\":2", "\"format\":3");
        assert_eq!(StoredCheckpoint::decode(future.as_bytes()), None);
    }

    #[test]
    fn only_our_own_record_is_used() {
        let owner = CheckpointOwner::from_parts(42, "app", "tailbox", 1);
        let other_system = CheckpointOwner::from_parts(43, "app", "tailbox", 1);
        let other_db = CheckpointOwner::from_parts(42, "billing", "tailbox", 1);
        let other_slot = CheckpointOwner::from_parts(42, "app", "other", 1);
        let records: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (other_system.key().to_vec(), other_system.encode(Lsn::new(0x900))),
            (other_db.key().to_vec(), other_db.encode(Lsn::new(0x900))),
            (other_slot.key().to_vec(), other_slot.encode(Lsn::new(0x900))),
            (b"tailbox".to_vec(), br#"{"slot":"tailbox","lsn":"0/900"}"#.to_vec()),
        ];
        let view = |extra: Option<(Vec<u8>, Vec<u8>)>| {
            let all: Vec<_> = records.iter().cloned().chain(extra).collect();
            let scan = scan(all.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), &owner);
            (scan.ours.map(|c| c.lsn), scan.ignored.len())
        };
        // Without our own: the old-format record and both same-slot owners are reported.
        assert_eq!(view(None), (None, 3));
        // With our own: only the old-format record is still worth a word.
        assert_eq!(
            view(Some((owner.key().to_vec(), owner.encode(Lsn::new(0x100))))),
            (Some(Lsn::new(0x100)), 1)
        );
        // Our key with another owner's value, or garbage, is never used.
        assert_eq!(
            view(Some((owner.key().to_vec(), other_system.encode(Lsn::new(0x100))))),
            (None, 4)
        );
        assert_eq!(view(Some((owner.key().to_vec(), b"{}".to_vec()))), (None, 4));
    }

    #[test]
    fn same_timeline_skips_up_to_the_checkpoint_within_the_servers_wal() {
        let s = server(1, 0x500, &[]);
        assert_eq!(decide(None, &s, false), Ok(Resume::FromSlot));
        assert_eq!(
            decide(Some(&checkpoint(1, 0x400)), &s, false),
            Ok(Resume::SkipBefore(Lsn::new(0x400)))
        );
        assert_eq!(
            decide(Some(&checkpoint(1, 0x500)), &s, false),
            Ok(Resume::SkipBefore(Lsn::new(0x500)))
        );
        // Restored to an earlier point on the same timeline: the checkpoint is beyond the WAL.
        let refused = decide(Some(&checkpoint(1, 0x600)), &s, false).expect_err("diverged");
        assert_eq!(refused.shared_end, Some(Lsn::new(0x500)));
        let text = refused.to_string();
        for needle in ["0/600", "0/500", "timeline 1", "`accept_checkpoint_divergence`"] {
            assert!(text.contains(needle), "{needle} missing in: {text}");
        }
    }

    #[test]
    fn a_new_timeline_skips_only_up_to_its_switch_point() {
        let s = server(3, 0x900, &[(1, 0x300), (2, 0x500)]);
        assert_eq!(
            decide(Some(&checkpoint(1, 0x300)), &s, false),
            Ok(Resume::SkipBefore(Lsn::new(0x300)))
        );
        assert_eq!(
            decide(Some(&checkpoint(2, 0x450)), &s, false),
            Ok(Resume::SkipBefore(Lsn::new(0x450)))
        );
        let refused = decide(Some(&checkpoint(2, 0x600)), &s, false).expect_err("past the switch");
        assert!(refused.to_string().contains("timeline 3, which branched off timeline 2 at 0/500"));
        assert_eq!(
            decide(Some(&checkpoint(2, 0x600)), &s, true).map(|r| r.skip_before()),
            Ok(Lsn::new(0x500)),
            "accepted: only the shared part is skipped"
        );
        // A timeline this server does not descend from, or a later one: nothing is shared.
        let s = server(2, 0x900, &[(1, 0x300)]);
        for foreign in [checkpoint(3, 0x100), checkpoint(4, 0x100)] {
            let refused = decide(Some(&foreign), &s, false).expect_err("not in the history");
            assert_eq!(refused.shared_end, None);
            assert_eq!(decide(Some(&foreign), &s, true).map(|r| r.skip_before()), Ok(Lsn::ZERO));
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use tailbox_replication::{TimelineHistory, TimelineSwitch};

    use super::*;

    proptest! {
        /// Whatever the checkpoint, the server's history and the operator's choice,
        /// what is skipped never reaches past the WAL the server shares with the
        /// checkpoint's timeline, nor past the checkpoint; and a checkpoint that lies
        /// within it is used in full.
        #[test]
        fn never_skips_wal_the_server_does_not_share(
            switches in prop::collection::vec(1u64..1_000, 0..4),
            flush_after in 0u64..1_000,
            cp_timeline in 1u32..7,
            cp_lsn in 0u64..6_000,
            accept in any::<bool>(),
        ) {
            // Timelines 1..=n+1, each ancestor ending at a growing switch point.
            let mut at = 0;
            let history: Vec<TimelineSwitch> = switches.iter().enumerate().map(|(i, step)| {
                at += step;
                TimelineSwitch { timeline: i as u32 + 1, switch_point: Lsn::new(at) }
            }).collect();
            let server = ServerIdentity {
                system_id: 1,
                timeline: history.len() as u32 + 1,
                wal_flush_lsn: Lsn::new(at + flush_after),
                database: "d".into(),
                history: TimelineHistory(history),
            };
            let cp_lsn = Lsn::new(cp_lsn);
            let cp = StoredCheckpoint { owner: CheckpointOwner::from_parts(1, "d", "s", cp_timeline), lsn: cp_lsn };
            let shared = server.shared_end_of(cp_timeline);
            match decide(Some(&cp), &server, accept) {
                Ok(resume) => {
                    let skip = resume.skip_before();
                    prop_assert!(skip <= cp_lsn);
                    prop_assert!(skip <= shared.unwrap_or_default());
                    if shared.is_some_and(|end| cp_lsn <= end) {
                        prop_assert_eq!(resume, Resume::SkipBefore(cp_lsn));
                    } else {
                        prop_assert!(accept, "a divergence is only ever used when accepted");
                    }
                }
                Err(divergence) => {
                    prop_assert!(!accept);
                    prop_assert!(shared.is_none_or(|end| cp_lsn > end));
                    prop_assert_eq!(divergence.shared_end, shared);
                }
            }
        }
    }
}

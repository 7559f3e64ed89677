//! Entry IDs from the WAL: `<commit LSN>-<position>`.
//!
//! # The invariant
//! IDs handed out by one [`EntryIds`] strictly increase: the commit LSN part never
//! decreases (records arrive in commit order) and the position counts up within one
//! commit LSN. A Redis stream accepts an `XADD` only with an ID above its top entry, so
//! every stream's IDs are in commit order, and a record sent again after a crash (same
//! transaction, same place in it: same ID) is refused instead of stored twice.
//!
//! A record sent without its transaction (the dead-letter copy of a record refused
//! after it was enqueued) takes the next ID of the transaction being sent: still
//! increasing, so the stream accepts it.

/// A stream entry ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    /// The commit LSN of the event's transaction, as a number (Redis IDs are two
    /// decimal numbers).
    pub lsn: u64,
    /// Its place among the records sent for that transaction.
    pub position: u64,
}

impl EntryId {
    /// The most bytes an ID's text takes: two `u64`s and the dash.
    pub const MAX_TEXT_BYTES: usize = 20 + 1 + 20;
}

/// The ID as Redis reads it, `<lsn>-<position>` (the one place its text is made:
/// `XADD` writes it straight into the command with `write!`, without a `String`).
impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.lsn, self.position)
    }
}

/// Hands out entry IDs in send order.
#[derive(Debug, Default)]
pub struct EntryIds {
    last: Option<EntryId>,
}

impl EntryIds {
    /// The ID of the next record; `commit_lsn` is its transaction's (`None`: continue
    /// the current one). A commit LSN below the last one is taken as the last one, so
    /// IDs never go backwards.
    pub fn next(&mut self, commit_lsn: Option<u64>) -> EntryId {
        let id = match (self.last, commit_lsn) {
            (Some(last), Some(lsn)) if lsn > last.lsn => EntryId { lsn, position: 0 },
            (Some(last), _) => EntryId { lsn: last.lsn, position: last.position + 1 },
            (None, lsn) => EntryId { lsn: lsn.unwrap_or(0), position: 0 },
        };
        self.last = Some(id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_within_a_transaction_and_restart_with_the_next() {
        let mut ids = EntryIds::default();
        let got: Vec<String> =
            [Some(10), Some(10), None, Some(20), Some(20)].map(|l| ids.next(l).to_string()).into();
        assert_eq!(got, ["10-0", "10-1", "10-2", "20-0", "20-1"]);
    }

    #[test]
    fn ids_never_go_backwards() {
        let mut ids = EntryIds::default();
        let mut last = ids.next(Some(50));
        for lsn in [Some(40), None, Some(50), Some(60), Some(55)] {
            let id = ids.next(lsn);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }

    #[test]
    fn a_replay_gets_the_same_ids() {
        let sends = [Some(100), Some(100), Some(200), Some(300), Some(300), Some(300)];
        let mut first = EntryIds::default();
        let mut again = EntryIds::default();
        let a: Vec<EntryId> = sends.iter().map(|l| first.next(*l)).collect();
        let b: Vec<EntryId> = sends.iter().map(|l| again.next(*l)).collect();
        assert_eq!(a, b);
    }
}

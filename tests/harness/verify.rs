//! What an independent consumer checks: nothing lost, per-aggregate commit order,
//! duplicates counted.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use tailbox_e2e::ConsumedRecord;
use tailbox_pgoutput::Lsn;

use super::workload::EventId;

/// The verdict on a consumed stream.
#[derive(Debug, Default)]
pub struct Report {
    pub received: usize,
    pub unique: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub reordered: usize,
    /// Records whose `xid` header disagrees with the transaction that wrote them.
    pub wrong_xid: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received {} unique {} lost {} duplicates {} reordered {} wrong_xid {}",
            self.received, self.unique, self.lost, self.duplicates, self.reordered, self.wrong_xid
        )
    }
}

/// Checks `records` against the `expected` events.
///
/// Order: for each aggregate (topic and record key), the first occurrences of its events, in the
/// order the consumer read them (one partition per key, so offset order), must be
/// sorted by (commit LSN from the `lsn` header, index within the transaction). A
/// replay after a crash repeats a suffix; repeats are counted as duplicates and do not
/// count as reorderings.
pub fn verify(records: &[ConsumedRecord], expected: &BTreeSet<EventId>) -> Result<Report> {
    let mut report = Report { received: records.len(), ..Report::default() };
    let mut seen: HashSet<EventId> = HashSet::new();
    let mut last_by_aggregate: HashMap<(String, Vec<u8>), (Lsn, u32, u32)> = HashMap::new();
    for record in records {
        let payload: serde_json::Value =
            serde_json::from_slice(record.payload.as_deref().unwrap_or_default())
                .context("payload is not JSON")?;
        let field = |name: &str| payload.get(name).and_then(|v| v.as_u64()).map(|v| v as u32);
        let id = (field("w").context("w")?, field("t").context("t")?, field("i").context("i")?);
        let xid = payload.get("xid").and_then(|v| v.as_str()).unwrap_or_default();
        if record.header("xid") != Some(xid.as_bytes()) {
            report.wrong_xid += 1;
        }
        if !seen.insert(id) {
            report.duplicates += 1;
            continue;
        }
        let lsn = record.lsn().context("lsn header")?;
        let position = (lsn, id.1, id.2);
        // An aggregate is its type (the topic) and its id (the key).
        let key = (record.topic.clone(), record.key.clone().unwrap_or_default());
        if let Some(last) = last_by_aggregate.get(&key)
            && *last >= position
        {
            report.reordered += 1;
        }
        last_by_aggregate.insert(key, position);
    }
    report.unique = seen.len();
    report.lost = expected.iter().filter(|id| !seen.contains(id)).count();
    Ok(report)
}

//! A record as an `XADD` command, and back.
//!
//! Fields of an entry, in this order: `aggregateid` (the record key), `payload` (the
//! value, bytes as stored), then every header of the record (`id`, `type`, other
//! columns; for dead letters `error`, `source_lsn`, `source_table`, `source_topic`),
//! then `lsn`, `xid` and `commit_ts` of its transaction.

use redis::{Arg, Cmd};
use tailbox_outbox::{OutboxRecord, headers};
use tailbox_sink::{EventMeta, RefusedRecord};

use crate::{config::Trim, ids::EntryId};

/// The entry field holding the record key.
pub const KEY_FIELD: &str = "aggregateid";
/// The entry field holding the record value.
pub const VALUE_FIELD: &str = "payload";

/// `XADD <stream> [trim] <id> aggregateid <key> payload <value> <headers…> [lsn xid commit_ts]`.
pub fn xadd(
    record: &OutboxRecord,
    meta: Option<&EventMeta>,
    id: EntryId,
    trim: Option<Trim>,
) -> Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&*record.topic);
    match trim {
        Some(Trim::MaxLen(n)) => {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        Some(Trim::MinIdBehind(bytes)) => {
            cmd.arg("MINID").arg("~").arg(format!("{}-0", id.lsn.saturating_sub(bytes)));
        }
        None => {}
    }
    cmd.arg(id.to_string());
    cmd.arg(KEY_FIELD).arg(record.key.as_ref()).arg(VALUE_FIELD).arg(record.value.as_ref());
    for (name, value) in &record.headers {
        cmd.arg(&**name).arg(value.as_ref());
    }
    if let Some(meta) = meta {
        cmd.arg(headers::LSN).arg(&meta.lsn);
        cmd.arg(headers::XID).arg(&meta.xid);
        cmd.arg(headers::COMMIT_TS).arg(&meta.commit_ts);
    }
    cmd
}

/// The stream and entry ID of an `XADD` built by [`xadd`].
pub fn stream_and_id(cmd: &Cmd, trim: Option<Trim>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let _xadd = args.next()?;
    let stream = args.next()?.to_vec();
    let id = args.nth(if trim.is_some() { 3 } else { 0 })?.to_vec();
    Some((stream, id))
}

/// The record an `XADD` built by [`xadd`] carried, for its dead-letter copy.
pub fn refused_copy(cmd: &Cmd, trim: Option<Trim>) -> RefusedRecord {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let _xadd = args.next();
    let topic = args.next().map(|t| String::from_utf8_lossy(t).into_owned()).unwrap_or_default();
    let skip = if trim.is_some() { 3 } else { 0 } + 1; // trim arguments, then the ID
    let mut args = args.skip(skip);
    let mut copy = RefusedRecord { topic, ..RefusedRecord::default() };
    while let (Some(name), Some(value)) = (args.next(), args.next()) {
        match name {
            n if n == KEY_FIELD.as_bytes() => copy.key = Some(value.to_vec()),
            n if n == VALUE_FIELD.as_bytes() => copy.value = Some(value.to_vec()),
            n => copy.headers.push((String::from_utf8_lossy(n).into_owned(), value.to_vec())),
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_record_goes_in_and_comes_back_out() {
        let record = OutboxRecord {
            topic: Arc::from("outbox.event.Order"),
            key: Bytes::from_static(b"o-1"),
            value: Bytes::from_static(b"{\"n\":1}"),
            headers: vec![(Arc::from("id"), Bytes::from_static(b"7"))],
        };
        let mut meta = EventMeta::default();
        meta.reset(0x10.into(), 5, 1_700_000_000_000_000);
        for trim in [None, Some(Trim::MaxLen(1000)), Some(Trim::MinIdBehind(64))] {
            let cmd = xadd(&record, Some(&meta), EntryId { lsn: 0x10, position: 2 }, trim);
            let copy = refused_copy(&cmd, trim);
            assert_eq!(copy.topic, "outbox.event.Order");
            assert_eq!(copy.key.as_deref(), Some(b"o-1".as_slice()));
            assert_eq!(copy.value.as_deref(), Some(b"{\"n\":1}".as_slice()));
            let names: Vec<&str> = copy.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["id", "lsn", "xid", "commit_ts"]);
            let (stream, id) = stream_and_id(&cmd, trim).expect("an XADD");
            assert_eq!(
                (stream.as_slice(), id.as_slice()),
                (b"outbox.event.Order".as_slice(), b"16-2".as_slice())
            );
        }
    }
}

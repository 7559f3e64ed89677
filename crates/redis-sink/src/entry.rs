//! A record as an `XADD` command, and back.
//!
//! Fields of an entry, in this order: `aggregateid` (the record key), `payload` (the
//! value, bytes as stored), then every header of the record (`id`, `type`, other
//! columns; for dead letters `error`, `source_lsn`, `source_table`, `source_topic`),
//! then those of `lsn`, `xid`, `commit_ts` (and `ce_time` for CloudEvents) of its
//! transaction that the table's `meta_headers` select.

use std::io::Write as _;

use redis::{Arg, Cmd, RedisWrite as _};
use tailbox_outbox::OutboxRecord;
use tailbox_sink::{EventMeta, RefusedRecord};

use crate::{config::Trim, ids::EntryId};

/// The entry field holding the record key.
pub const KEY_FIELD: &str = "aggregateid";
/// The entry field holding the record value.
pub const VALUE_FIELD: &str = "payload";

/// `XADD <stream> [trim] <id> aggregateid <key> payload <value> <headers…> [lsn xid commit_ts]`.
///
/// The command's buffers are allocated once, large enough for every argument, and the
/// ID's text is written straight into them (no `String` between).
pub fn xadd(
    record: &OutboxRecord,
    meta: Option<&EventMeta>,
    id: EntryId,
    trim: Option<Trim>,
) -> Cmd {
    let meta_headers = || meta.into_iter().flat_map(|m| m.headers(record.meta));
    let (trim_args, trim_bytes) = if trim.is_some() { (3, MAX_TRIM_BYTES) } else { (0, 0) };
    let fields = 2 + record.headers.len() + meta_headers().count();
    let field_bytes = KEY_FIELD.len()
        + record.key.len()
        + VALUE_FIELD.len()
        + record.value.len()
        + record.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>()
        + meta_headers().map(|(name, value)| name.len() + value.len()).sum::<usize>();
    let mut cmd = Cmd::with_capacity(
        3 + trim_args + 2 * fields,
        "XADD".len() + record.topic.len() + trim_bytes + EntryId::MAX_TEXT_BYTES + field_bytes,
    );
    cmd.arg("XADD").arg(&*record.topic);
    match trim {
        Some(Trim::MaxLen(n)) => {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        Some(Trim::MinIdBehind(bytes)) => {
            cmd.arg("MINID").arg("~");
            write_id(&mut cmd, EntryId { lsn: id.lsn.saturating_sub(bytes), position: 0 });
        }
        None => {}
    }
    write_id(&mut cmd, id);
    cmd.arg(KEY_FIELD).arg(record.key.as_ref()).arg(VALUE_FIELD).arg(record.value.as_ref());
    for (name, value) in &record.headers {
        cmd.arg(&**name).arg(value.as_ref());
    }
    for (name, value) in meta_headers() {
        cmd.arg(name).arg(value);
    }
    cmd
}

/// The most bytes the trim arguments take: `MAXLEN ~ <u64>` or `MINID ~ <id>`.
const MAX_TRIM_BYTES: usize = "MAXLEN".len() + "~".len() + EntryId::MAX_TEXT_BYTES;

/// `id` as the command's next argument, its text written straight into the command.
fn write_id(cmd: &mut Cmd, id: EntryId) {
    // Writing into the command's buffer cannot fail.
    let _ = write!(cmd.writer_for_next_arg(), "{id}");
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

    /// A record with one header of its own and the default meta headers, and its
    /// transaction's metadata.
    fn order_record() -> (OutboxRecord, EventMeta) {
        let record = OutboxRecord {
            topic: Arc::from("outbox.event.Order"),
            key: Bytes::from_static(b"o-1"),
            value: Bytes::from_static(b"{\"n\":1}"),
            headers: vec![(Arc::from("id"), Bytes::from_static(b"7"))],
            meta: tailbox_outbox::MetaHeaders::default(),
        };
        let mut meta = EventMeta::default();
        meta.reset(0x10.into(), 5, 1_700_000_000_000_000);
        (record, meta)
    }

    #[test]
    fn cloudevents_attributes_and_the_selected_meta_headers_become_fields() {
        let record = OutboxRecord {
            topic: Arc::from("outbox.event.Order"),
            key: Bytes::from_static(b"o-1"),
            value: Bytes::from_static(b"{}"),
            headers: vec![
                (Arc::from("ce_specversion"), Bytes::from_static(b"1.0")),
                (Arc::from("ce_id"), Bytes::from_static(b"e-1")),
            ],
            meta: tailbox_outbox::MetaHeaders::XID.with(tailbox_outbox::MetaHeaders::CE_TIME),
        };
        let mut meta = EventMeta::default();
        meta.reset(0x10.into(), 5, 0);
        let cmd = xadd(&record, Some(&meta), EntryId { lsn: 0x10, position: 0 }, None);
        let copy = refused_copy(&cmd, None);
        let fields: Vec<(&str, &[u8])> =
            copy.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        assert_eq!(
            fields,
            [
                ("ce_specversion", b"1.0".as_slice()),
                ("ce_id", b"e-1"),
                ("xid", b"5"),
                ("ce_time", b"1970-01-01T00:00:00.000000Z"),
            ]
        );
    }

    #[test]
    fn the_command_holds_the_arguments_in_order() {
        let (record, meta) = order_record();
        let id = EntryId { lsn: u64::MAX, position: 12_345 };
        let fields = [
            "aggregateid",
            "o-1",
            "payload",
            "{\"n\":1}",
            "id",
            "7",
            "lsn",
            "0/10",
            "xid",
            "5",
            "commit_ts",
            "1700000000000000",
        ];
        for (trim, trim_args) in [
            (None, vec![]),
            (Some(Trim::MaxLen(1000)), vec!["MAXLEN", "~", "1000"]),
            (Some(Trim::MinIdBehind(64)), vec!["MINID", "~", "18446744073709551551-0"]),
        ] {
            let cmd = xadd(&record, Some(&meta), id, trim);
            let args: Vec<String> = cmd
                .args_iter()
                .map(|a| match a {
                    Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    _ => "?".to_owned(),
                })
                .collect();
            let mut expected = vec!["XADD", "outbox.event.Order"];
            expected.extend(trim_args);
            expected.push("18446744073709551615-12345");
            expected.extend(fields);
            assert_eq!(args, expected);
        }
    }

    #[test]
    fn a_record_goes_in_and_comes_back_out() {
        let (record, meta) = order_record();
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

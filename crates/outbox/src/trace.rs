//! Trace context: Debezium's `tracingspancontext` column to W3C `traceparent` and
//! `tracestate` headers.
//!
//! Debezium's outbox helpers (`debezium-quarkus-outbox`, the OpenTelemetry
//! instrumentation) write the span context with `java.util.Properties.store`: text like
//!
//! ```text
//! #Mon Mar 04 10:00:00 UTC 2024
//! traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
//! tracestate=rojo\=00f067aa0ba902b7
//! ```
//!
//! (`#`/`!` comments, `key=value` or `key: value`, backslash escapes). The older
//! OpenTracing/Jaeger form `uber-trace-id=<trace>:<span>:<parent>:<flags>` is converted
//! to a `traceparent`. Anything that is no valid trace context yields no header: a
//! broken span context is no reason to hold an event back.

/// The W3C headers a span context becomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`, checked (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero).
    pub traceparent: Option<String>,
    /// `tracestate`, as given.
    pub tracestate: Option<String>,
}

/// Reads a Java properties span context.
pub fn from_properties(text: &str) -> TraceContext {
    let mut out = TraceContext::default();
    for line in logical_lines(text) {
        let Some((key, value)) = split_property(&line) else { continue };
        match key.as_str() {
            "traceparent" if is_traceparent(&value) => out.traceparent = Some(value),
            "tracestate" if !value.is_empty() => out.tracestate = Some(value),
            "uber-trace-id" if out.traceparent.is_none() => out.traceparent = from_jaeger(&value),
            _ => {}
        }
    }
    out
}

/// Lines with continuations (a line ending in an odd number of `\`) joined, comments
/// and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if current.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            current.push_str(&line[..line.len() - 1]);
        } else {
            current.push_str(line);
            lines.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `key=value`, `key: value` or `key value`, unescaped.
fn split_property(line: &str) -> Option<(String, String)> {
    let mut key = String::new();
    let mut chars = line.chars();
    let mut escaped = false;
    for c in chars.by_ref() {
        if escaped {
            key.push(unescape(c));
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            break;
        } else {
            key.push(c);
        }
    }
    let rest = chars.as_str().trim_start_matches(|c: char| c.is_whitespace());
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                value.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some(c) => value.push(unescape(c)),
            None => {}
        }
    }
    (!key.is_empty()).then(|| (key, value.trim_end().to_owned()))
}

fn unescape(c: char) -> char {
    match c {
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'f' => '\u{c}',
        other => other,
    }
}

/// Whether `value` is a version-00 W3C `traceparent`.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [version, trace, span, flags]
        if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'))
}

/// `uber-trace-id` (`trace:span:parent:flags`, hex, leading zeros optional) as a
/// `traceparent`.
fn from_jaeger(value: &str) -> Option<String> {
    let mut parts = value.split(':');
    let (trace, span, _parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if trace.len() > 32 || span.len() > 16 {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1;
    let candidate = format!(
        "00-{:0>32}-{:0>16}-{sampled:02x}",
        trace.to_ascii_lowercase(),
        span.to_ascii_lowercase()
    );
    is_traceparent(&candidate).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn reads_debezium_properties() {
        let text = format!(
            "#Mon Mar 04 10:00:00 UTC 2024\ntraceparent={PARENT}\ntracestate=rojo\\=00f067aa0ba902b7,congo\\=t61rcWkgMzE\n"
        );
        let ctx = from_properties(&text);
        assert_eq!(ctx.traceparent.as_deref(), Some(PARENT));
        assert_eq!(ctx.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    }

    #[test]
    fn converts_jaeger_and_refuses_garbage() {
        let ctx = from_properties(
            "uber-trace-id=af7651916cd43dd8448eb211c80319c\\:b7ad6b7169203331\\:0\\:1",
        );
        assert_eq!(ctx.traceparent.as_deref(), Some(PARENT));
        for bad in [
            "traceparent=00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "traceparent: zz",
            "",
            "just text",
        ] {
            assert_eq!(from_properties(bad).traceparent, None, "{bad:?}");
        }
        let ctx = from_properties(&format!("traceparent : {PARENT}"));
        assert_eq!(ctx.traceparent.as_deref(), Some(PARENT), "`key : value` form");
    }

    proptest! {
        /// Whatever a `traceparent` the properties carry, it comes out exactly when it
        /// is valid; nothing panics on arbitrary text.
        #[test]
        fn any_valid_traceparent_round_trips(
            trace in "[0-9a-f]{32}", span in "[0-9a-f]{16}", flags in "[0-9a-f]{2}",
            noise in "\\PC{0,40}",
        ) {
            let parent = format!("00-{trace}-{span}-{flags}");
            let ctx = from_properties(&format!("#{noise}\ntraceparent={parent}\n"));
            let valid = trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0');
            prop_assert_eq!(ctx.traceparent, valid.then_some(parent));
            let _ = from_properties(&noise);
        }
    }
}

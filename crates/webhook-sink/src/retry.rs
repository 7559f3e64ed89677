//! What a receiver's answer means, and how long to wait before the next attempt.
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | delivered |
//! | connection error, timeout, 408, 429, 5xx | retry later (the aggregate's later events wait) |
//! | any other status (3xx, 4xx) | refused for good: dead letter |
//!
//! Waits grow exponentially from `initial` to `max` with "equal jitter" (half fixed,
//! half random, so many aggregates failing together do not retry in lockstep); a
//! `Retry-After` header (seconds, or an HTTP date) is honoured when it asks for longer,
//! up to [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` we honour: a receiver asking for more is waited for this
/// long and asked again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How one attempt ended, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// May pass: try again later.
    Retry,
    /// Refused for good.
    Permanent,
}

/// The verdict on an HTTP status.
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th consecutive failure of one event (1-based);
    /// `unit` in [0, 1) is the random part; `retry_after` the receiver's wish.
    pub fn delay(&self, failures: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let base = self.initial.saturating_mul(1u32 << exp.min(31)).min(self.max);
        let jittered = base / 2 + base.mul_f64(unit.clamp(0.0, 1.0) / 2.0);
        match retry_after {
            Some(wish) => jittered.max(wish.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an IMF-fixdate
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. `None` if it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's preferred date format).
fn parse_imf_fixdate(text: &str) -> Option<SystemTime> {
    let mut parts = text.split_ascii_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Verdict::Delivered);
        assert_eq!(classify(204), Verdict::Delivered);
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(status), Verdict::Retry, "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(status), Verdict::Permanent, "{status}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
        assert_eq!(b.delay(1, 0.0, None), Duration::from_millis(50));
        assert_eq!(b.delay(1, 0.999_999, None).as_millis(), 99);
        assert_eq!(b.delay(3, 0.0, None), Duration::from_millis(200));
        assert_eq!(b.delay(40, 0.0, None), Duration::from_millis(2500), "capped at max");
        assert!(b.delay(40, 0.999, None) <= Duration::from_secs(5));
        // Retry-After wins when longer, never beyond the cap.
        assert_eq!(b.delay(1, 0.0, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(b.delay(1, 0.0, Some(Duration::from_secs(86_400))), MAX_RETRY_AFTER);
        assert_eq!(b.delay(3, 0.0, Some(Duration::ZERO)), Duration::from_millis(200));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 CET", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}

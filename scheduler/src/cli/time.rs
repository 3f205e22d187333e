//! RFC 3339 (UTC) rendering of protobuf timestamps and parsing of `--since` times (the calendar
//! is jiff's).

use std::time::SystemTime;

use prost_types::Timestamp;

/// "2026-11-27T11:20:00.123Z": UTC, always with milliseconds.
pub(super) fn rfc3339_millis(ts: &Timestamp) -> String {
    format!("{:.3}", instant(ts))
}

/// "2026-11-27T11:20:00Z": UTC, whole seconds (for tables).
pub(super) fn rfc3339_seconds(ts: &Timestamp) -> String {
    format!("{:.0}", instant(ts))
}

/// "2026-11-27T11:20:00.123456789Z": UTC, nanoseconds (log timestamps, as Docker prints them).
pub(super) fn rfc3339_nanos(ts: &Timestamp) -> String {
    format!("{:.9}", instant(ts))
}

/// A protobuf timestamp as a jiff one: nanoseconds outside 0..1e9 are clamped into it, and a
/// time beyond jiff's range (years -9999 to 9999) to its ends.
fn instant(ts: &Timestamp) -> jiff::Timestamp {
    let nanos = ts.nanos.clamp(0, 999_999_999);
    jiff::Timestamp::new(ts.seconds, nanos).unwrap_or(if ts.seconds < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// Parses RFC 3339 (`2026-11-27T10:00:00Z`, `2026-11-27T12:00:00.5+02:00`). None when it is
/// not one, or before 1970.
pub(super) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .filter(|t| *t >= jiff::Timestamp::UNIX_EPOCH)
        .and_then(|t| SystemTime::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(rfc3339_millis(&ts(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(&ts(1_795_778_400, 123_456_789)),
            "2026-11-27T11:20:00.123Z"
        );
        assert_eq!(
            rfc3339_seconds(&ts(1_795_778_400, 999_999_999)),
            "2026-11-27T11:20:00Z"
        );
        assert_eq!(
            rfc3339_millis(&ts(951_782_400, 0)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339_millis(&ts(-1, 0)), "1969-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_millis(&ts(0, -5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_utc_and_offsets_and_round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.000000042Z"), Some(t));
        assert_eq!(
            rfc3339_nanos(&ts(1_795_000_000, 42)),
            "2026-11-18T11:06:40.000000042Z"
        );
        assert_eq!(
            parse_rfc3339(" 2026-11-18T13:06:40+02:00 "),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        for bad in [
            "10m",
            "2026-11-18",
            "2026-11-18T11:06:40",
            "2026-02-30Tx",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

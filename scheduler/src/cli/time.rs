//! RFC 3339 (UTC) rendering of protobuf timestamps, without a date library.

use prost_types::Timestamp;

/// "2026-11-27T11:20:00.123Z": UTC, always with milliseconds.
pub(super) fn rfc3339_millis(ts: &Timestamp) -> String {
    let (date, time) = civil(ts);
    let millis = ts.nanos.clamp(0, 999_999_999) / 1_000_000;
    format!("{date}T{time}.{millis:03}Z")
}

/// "2026-11-27T11:20:00Z": UTC, whole seconds (for tables).
pub(super) fn rfc3339_seconds(ts: &Timestamp) -> String {
    let (date, time) = civil(ts);
    format!("{date}T{time}Z")
}

/// "2026-11-27T11:20:00.123456789Z": UTC, nanoseconds (log timestamps, as Docker prints them).
pub(super) fn rfc3339_nanos(ts: &Timestamp) -> String {
    let (date, time) = civil(ts);
    let nanos = ts.nanos.clamp(0, 999_999_999);
    format!("{date}T{time}.{nanos:09}Z")
}

/// Parses RFC 3339 (`2026-11-27T10:00:00Z`, `2026-11-27T12:00:00.5+02:00`). None when it is
/// not one, or before 1970.
pub(super) fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        for (k, d) in b[start..end].iter().take(9).enumerate() {
            nanos += i64::from(d - b'0') * 10i64.pow(8 - k as u32);
        }
        i = end;
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos as u32))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date ("YYYY-MM-DD") and time of day ("hh:mm:ss") of a timestamp.
fn civil(ts: &Timestamp) -> (String, String) {
    let days = ts.seconds.div_euclid(86_400);
    let second_of_day = ts.seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        ),
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), by Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod rfc3339_parse_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_utc_and_offsets_and_round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.000000042Z"), Some(t));
        let ts = Timestamp {
            seconds: 1_795_000_000,
            nanos: 42,
        };
        assert_eq!(rfc3339_nanos(&ts), "2026-11-18T11:06:40.000000042Z");
        assert_eq!(
            parse_rfc3339("2026-11-18T13:06:40+02:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        for bad in ["10m", "2026-11-18", "2026-11-18T11:06:40", "2026-02-30Tx"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
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
}

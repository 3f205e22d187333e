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

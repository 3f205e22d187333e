//! Time formatting without a calendar dependency: RFC 3339 in UTC, as containerd labels and
//! json-file logs use it.

use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339 in UTC with second precision: `2026-11-18T11:06:40Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (date, secs, _) = split(t);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// RFC 3339 in UTC with nanoseconds: `2026-11-18T11:06:40.123456789Z`.
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    let (date, secs, nanos) = split(t);
    format!(
        "{date}T{:02}:{:02}:{:02}.{nanos:09}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn split(t: SystemTime) -> (String, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    (
        format!("{y:04}-{m:02}-{day:02}"),
        secs % 86_400,
        d.subsec_nanos(),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        assert_eq!(rfc3339_nanos(t), "2026-11-18T11:06:40.000000042Z");
    }
}

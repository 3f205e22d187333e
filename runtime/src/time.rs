//! RFC 3339 timestamps in UTC, as containerd labels and json-file logs write them (the calendar
//! is jiff's).

use std::time::SystemTime;

use jiff::Timestamp;

/// RFC 3339 in UTC with second precision: `2026-11-18T11:06:40Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    format!("{:.0}", timestamp(t))
}

/// RFC 3339 in UTC with nanoseconds: `2026-11-18T11:06:40.123456789Z`.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    format!("{:.9}", timestamp(t))
}

/// `t` as a jiff timestamp; a time outside jiff's range (years -9999 to 9999) is clamped to it.
fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(if t < SystemTime::UNIX_EPOCH {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Parses RFC 3339 (`2026-11-18T11:06:40Z`, `2026-11-18T11:06:40.5+02:00`; a space or `t`
/// may separate date and time, `z` may end it). None when it is not one, or before 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    text.parse::<Timestamp>()
        .ok()
        .filter(|t| *t >= Timestamp::UNIX_EPOCH)
        .and_then(|t| SystemTime::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        assert_eq!(rfc3339_nanos(t), "2026-11-18T11:06:40.000000042Z");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_795_000_000, 42),
            UNIX_EPOCH + Duration::from_secs(951_782_400),
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_nanos(t)), Some(t));
            assert_eq!(
                parse_rfc3339(&rfc3339(t)),
                Some(
                    UNIX_EPOCH
                        + Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap().as_secs())
                )
            );
        }
        assert_eq!(
            parse_rfc3339("2026-11-18T13:06:40.5+02:00"),
            Some(UNIX_EPOCH + Duration::new(1_795_000_000, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-18 11:06:40z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        for bad in [
            "",
            "2026-11-18",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-18T11:06:40",
            "1969-12-31T23:59:59Z",
            "2026-11-18T11:06:40.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

//! The grammar of durations in Berth's flags: humantime's, plus a bare number of seconds.

use std::time::Duration;

/// Why a text is not a duration (humantime's description of the problem).
pub type DurationError = humantime::DurationError;

/// Parses a duration as Berth's flags take it: humantime's grammar (`30s`, `5m`, `1h30m`,
/// `1h 30m`, `500ms`, `1.5s`, `2days`) or a bare number of seconds (`60`, `1.5`).
/// Surrounding whitespace is ignored.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let bare_seconds = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.bytes().any(|b| b.is_ascii_digit());
    if bare_seconds {
        humantime::parse_duration(&format!("{text}s"))
    } else {
        humantime::parse_duration(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_and_bare_seconds() {
        let cases = [
            ("60", Duration::from_secs(60)),
            (" 10 ", Duration::from_secs(10)),
            ("1.5", Duration::from_millis(1500)),
            ("1.5s", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2days", Duration::from_secs(2 * 86_400)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), Some(want), "{text:?}");
        }
        for bad in [
            "",
            "-1",
            "soon",
            ".",
            "1..5",
            "1.2.3",
            "5 parsecs",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}

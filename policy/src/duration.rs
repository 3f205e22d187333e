//! The grammar of durations in Berth's flags: humantime's, plus a bare number of seconds.

use std::fmt;
use std::time::Duration;

/// Parses a duration as Berth's flags take it: humantime's grammar (`30s`, `5m`, `1h30m`,
/// `1h 30m`, `500ms`, `1.5s`, `2days`) or a bare number of seconds (`60`, `1.5`).
/// Surrounding whitespace is ignored.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let bare_seconds = trimmed.bytes().any(|b| b.is_ascii_digit())
        && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && trimmed.bytes().filter(|b| *b == b'.').count() <= 1;
    let parsed = if bare_seconds {
        humantime::parse_duration(&format!("{trimmed}s"))
    } else {
        humantime::parse_duration(trimmed)
    };
    parsed.map_err(|reason| DurationError {
        text: trimmed.to_owned(),
        reason,
    })
}

/// Why a text is not a duration: the text, humantime's description of the problem, and what
/// to write instead.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationError {
    text: String,
    reason: humantime::DurationError,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration ({}): use seconds like 60, or 500ms, 30s, 2m, 1h30m",
            self.text, self.reason
        )
    }
}

// The reason is part of the message, so it is not also a source.
impl std::error::Error for DurationError {}

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

    #[test]
    fn errors_say_what_to_write() {
        let message = parse_duration(" soon ").unwrap_err().to_string();
        assert!(
            message.starts_with("`soon` is not a duration ("),
            "{message}"
        );
        assert!(
            message.ends_with("): use seconds like 60, or 500ms, 30s, 2m, 1h30m"),
            "{message}"
        );
    }
}

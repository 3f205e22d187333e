//! Runtime outcomes as the proto carries them: times, log lines and errors with their causes.

use std::time::{SystemTime, UNIX_EPOCH};

/// A runtime log entry as a proto log line.
pub(crate) fn log_line(entry: berth_runtime::LogEntry) -> berth_proto::v1::LogLine {
    let output = match entry.stream {
        berth_runtime::LogStream::Stdout => berth_proto::v1::LogOutput::Stdout,
        berth_runtime::LogStream::Stderr => berth_proto::v1::LogOutput::Stderr,
    };
    berth_proto::v1::LogLine {
        output: output as i32,
        time: Some(timestamp(entry.time)),
        text: entry.text,
    }
}

/// A time as a proto timestamp (the epoch for a time before it).
pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An error with every cause in its chain, `outer: inner: innermost`, for text that travels
/// alone (a stop reason, a log stream's end, a health check's detail). The runtime's errors
/// keep their causes as sources and never repeat them in their own message, so nothing is
/// written twice.
pub(crate) struct Causes<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(source) = cause {
            write!(f, ": {source}")?;
            cause = source.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Causes;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read log file /x")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_written_once_each_outermost_first() {
        let e = Outer(std::io::Error::from_raw_os_error(13));
        let text = Causes(&e).to_string();
        assert!(
            text.starts_with("cannot read log file /x: Permission denied"),
            "{text}"
        );
        assert_eq!(text.matches("Permission denied").count(), 1, "{text}");
    }
}

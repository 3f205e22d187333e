//! Runtime outcomes as the proto carries them: times and log lines.

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

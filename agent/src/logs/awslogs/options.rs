//! A container's awslogs options (as the registration checked them) read into what the
//! shipper needs: where the events go, how lines become events, and how the queue behaves.

use std::collections::HashMap;

use berth_runtime::ForwardMode;
use regex::Regex;

use super::datetime;

/// ECS's default `max-buffer-size` for non-blocking mode (1 MiB); also the queue of blocking
/// mode, where a full queue stalls the container instead of dropping.
pub(crate) const DEFAULT_BUFFER_BYTES: u64 = 1 << 20;

/// Why a container's awslogs options cannot be used (the scheduler checks them at
/// registration; these guard what an older scheduler or a hand-made assignment sends).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum OptionsError {
    #[error("awslogs option {0} is required")]
    Missing(&'static str),
    #[error("awslogs option {name} has an invalid value `{value}`: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("awslogs option {0} is not supported")]
    Unknown(String),
}

/// Everything the awslogs driver takes from a container's `logConfiguration`.
#[derive(Debug, Clone)]
pub(crate) struct AwsLogsOptions {
    pub(crate) group: String,
    pub(crate) region: String,
    pub(crate) stream_prefix: Option<String>,
    pub(crate) create_group: bool,
    pub(crate) mode: ForwardMode,
    pub(crate) buffer_bytes: u64,
    /// Where a multi-line event starts (awslogs-multiline-pattern, or the regex made of
    /// awslogs-datetime-format); None: every line is an event.
    pub(crate) event_start: Option<Regex>,
}

impl AwsLogsOptions {
    /// Reads the options of the proto's map.
    pub(crate) fn parse(options: &HashMap<String, String>) -> Result<Self, OptionsError> {
        let mut parsed = Self {
            group: String::new(),
            region: String::new(),
            stream_prefix: None,
            create_group: false,
            mode: ForwardMode::Blocking,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            event_start: None,
        };
        let invalid = |name, value: &str, expected| OptionsError::Invalid {
            name,
            value: value.to_owned(),
            expected,
        };
        for (name, value) in options {
            match name.as_str() {
                "awslogs-group" => parsed.group = value.clone(),
                "awslogs-region" => parsed.region = value.clone(),
                "awslogs-stream-prefix" => {
                    parsed.stream_prefix = (!value.is_empty()).then(|| value.clone());
                }
                "awslogs-create-group" => {
                    parsed.create_group = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid("awslogs-create-group", value, "true or false")),
                    }
                }
                "mode" => {
                    parsed.mode = match value.as_str() {
                        "blocking" => ForwardMode::Blocking,
                        "non-blocking" => ForwardMode::NonBlocking,
                        _ => return Err(invalid("mode", value, "blocking or non-blocking")),
                    }
                }
                "max-buffer-size" => {
                    parsed.buffer_bytes = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid("max-buffer-size", value, "a number of bytes"))?;
                }
                "awslogs-multiline-pattern" => {
                    parsed.event_start = Some(Regex::new(value).map_err(|_| {
                        invalid("awslogs-multiline-pattern", value, "a regular expression")
                    })?);
                }
                "awslogs-datetime-format" => {
                    parsed.event_start = Some(datetime::start_pattern(value).ok_or_else(|| {
                        invalid("awslogs-datetime-format", value, "a strftime format")
                    })?);
                }
                other => return Err(OptionsError::Unknown(other.to_owned())),
            }
        }
        if parsed.group.is_empty() {
            return Err(OptionsError::Missing("awslogs-group"));
        }
        if parsed.region.is_empty() {
            return Err(OptionsError::Missing("awslogs-region"));
        }
        Ok(parsed)
    }

    /// The container's log stream, as the ECS agent names it: `prefix/container/task-id`;
    /// without a prefix, `container/task-id`.
    pub(crate) fn stream_name(&self, container: &str, task_id: &str) -> String {
        match &self.stream_prefix {
            Some(prefix) => format!("{prefix}/{container}/{task_id}"),
            None => format!("{container}/{task_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn options_are_read_with_ecs_defaults() {
        let o = AwsLogsOptions::parse(&options(&[
            ("awslogs-group", "/ecs/app"),
            ("awslogs-region", "eu-west-1"),
            ("awslogs-stream-prefix", "ecs"),
        ]))
        .unwrap();
        assert_eq!(o.mode, ForwardMode::Blocking);
        assert_eq!(o.buffer_bytes, DEFAULT_BUFFER_BYTES);
        assert!(!o.create_group);
        assert!(o.event_start.is_none());
        assert_eq!(o.stream_name("web", "t-1"), "ecs/web/t-1");
        let bare = AwsLogsOptions::parse(&options(&[
            ("awslogs-group", "g"),
            ("awslogs-region", "us-east-1"),
            ("mode", "non-blocking"),
            ("max-buffer-size", "4096"),
            ("awslogs-create-group", "true"),
            ("awslogs-datetime-format", "%Y-%m-%d"),
        ]))
        .unwrap();
        assert_eq!(bare.stream_name("web", "t-1"), "web/t-1");
        assert_eq!(
            (bare.mode, bare.buffer_bytes, bare.create_group),
            (ForwardMode::NonBlocking, 4096, true)
        );
        assert!(bare.event_start.unwrap().is_match("2024-01-31 up"));
    }

    #[test]
    fn bad_options_are_named() {
        assert_eq!(
            AwsLogsOptions::parse(&options(&[("awslogs-region", "r")])).unwrap_err(),
            OptionsError::Missing("awslogs-group")
        );
        assert_eq!(
            AwsLogsOptions::parse(&options(&[("awslogs-group", "g"), ("x", "1")]))
                .unwrap_err()
                .to_string(),
            "awslogs option x is not supported"
        );
        assert_eq!(
            AwsLogsOptions::parse(&options(&[("awslogs-group", "g"), ("mode", "fast")]))
                .unwrap_err()
                .to_string(),
            "awslogs option mode has an invalid value `fast`: blocking or non-blocking"
        );
    }
}

//! The `awslogs` log driver's options (CloudWatch Logs, as the ECS agent ships it): which are
//! known, which are required, and what each value may be. The agent reads them back from the
//! proto's option map; the registration refuses what the agent could not honour.

use std::collections::BTreeMap;

use super::error::Problem;
use super::walk;

/// The options Berth's awslogs driver honours (ECS's names); others are refused by name.
pub(super) const AWSLOGS_OPTIONS: &[&str] = &[
    "awslogs-group",
    "awslogs-region",
    "awslogs-stream-prefix",
    "awslogs-create-group",
    "awslogs-datetime-format",
    "awslogs-multiline-pattern",
    "mode",
    "max-buffer-size",
];

/// The strftime directives `awslogs-datetime-format` may use (Docker's set).
pub(super) const DATETIME_DIRECTIVES: &str = "aAbBdfHIjLmMpSUwWyYzZ%";

/// Checks awslogs options; returns them as the agent reads them (names and values as given,
/// `max-buffer-size` resolved to bytes).
pub(super) fn options(
    options: BTreeMap<String, String>,
    options_path: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for required in ["awslogs-group", "awslogs-region"] {
        if options.get(required).is_none_or(|v| v.trim().is_empty()) {
            problems.push(Problem::at(
                &walk::key_path(options_path, required),
                "required by the awslogs driver (the CloudWatch Logs group and its region)",
            ));
        }
    }
    for (name, value) in options {
        let path = walk::key_path(options_path, &name);
        let problem = match name.as_str() {
            "awslogs-group" => check_group(&value),
            "awslogs-region" => check_region(&value),
            "awslogs-stream-prefix" => check_prefix(&value),
            "awslogs-create-group" => match value.as_str() {
                "true" | "false" => None,
                _ => Some(format!("`{value}` is not a boolean: use true or false")),
            },
            "awslogs-datetime-format" => check_datetime_format(&value),
            "awslogs-multiline-pattern" => regex::Regex::new(&value)
                .err()
                .map(|e| format!("`{value}` is not a regular expression: {e}")),
            "mode" => match value.as_str() {
                "blocking" | "non-blocking" => None,
                _ => Some(format!(
                    "`{value}` is not a mode: use blocking or non-blocking"
                )),
            },
            "max-buffer-size" => match super::convert::parse_size(&value) {
                Some(bytes) if bytes > 0 => {
                    kept.insert(name, bytes.to_string());
                    continue;
                }
                _ => Some(format!(
                    "`{value}` is not a size: use a positive number of bytes with an optional \
                     k, m or g suffix, e.g. 1m"
                )),
            },
            other => {
                problems.push(Problem::with_message(
                    &path,
                    format!(
                        "{path}: option {other} is not supported by Berth's awslogs driver; \
                         supported: {}",
                        AWSLOGS_OPTIONS.join(", ")
                    ),
                ));
                continue;
            }
        };
        match problem {
            Some(message) => problems.push(Problem::at(&path, message)),
            None => {
                kept.insert(name, value);
            }
        }
    }
    if kept.contains_key("awslogs-datetime-format")
        && kept.contains_key("awslogs-multiline-pattern")
    {
        problems.push(Problem::at(
            options_path,
            "awslogs-datetime-format and awslogs-multiline-pattern cannot both be set: keep the \
             one that marks where an entry starts",
        ));
    }
    kept
}

/// CloudWatch's rule for group names: 1 to 512 of `[.\-_/#A-Za-z0-9]`.
fn check_group(value: &str) -> Option<String> {
    let ok = (1..=512).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
    (!ok).then(|| {
        format!("`{value}` is not a log group name: use 1 to 512 letters, digits and . _ - / #")
    })
}

fn check_region(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| format!("`{value}` is not an AWS region: use a name such as eu-west-1"))
}

/// The prefix is the first part of a stream name (`prefix/container/task-id`), which may not
/// hold `:` or `*` and is at most 512 characters long.
fn check_prefix(value: &str) -> Option<String> {
    let ok = value.len() <= 400 && !value.contains([':', '*']);
    (!ok).then(|| {
        format!("`{value}` is not a stream prefix: use at most 400 characters without : or *")
    })
}

fn check_datetime_format(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("empty: give a strftime format such as %Y-%m-%d %H:%M:%S".into());
    }
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some(d) if DATETIME_DIRECTIVES.contains(d) => {}
            Some(d) => {
                return Some(format!(
                    "`%{d}` is not a supported directive; supported: {}",
                    DATETIME_DIRECTIVES
                        .chars()
                        .map(|d| format!("%{d}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            None => return Some("ends with a lone %: write %% for a percent sign".into()),
        }
    }
    None
}

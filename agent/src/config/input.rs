//! One value as a layer gives it (a TOML value from the file, the text of an environment
//! variable or a flag), and how each kind of value is parsed from it: each parser returns the
//! typed value or what was expected, for the error that names the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse;

/// One value as read from a layer, before parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
    Flag(&'a str),
}

impl Input<'_> {
    /// The value as the operator wrote it: TOML syntax from the file, raw text otherwise.
    pub(super) fn shown(&self) -> String {
        match self {
            Input::Toml(value) => value.to_string(),
            Input::Env(text) | Input::Flag(text) => (*text).to_owned(),
        }
    }

    /// The text of a TOML string, or of an environment variable or flag.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Input::Toml(toml::Value::String(s)) => Some(s),
            Input::Toml(_) => None,
            Input::Env(text) | Input::Flag(text) => Some(text),
        }
    }

    pub(super) fn is_toml(&self) -> bool {
        matches!(self, Input::Toml(_))
    }
}

const DURATION: &str = r#"a duration like "30s", "5m" or "1h30m""#;
const POSITIVE_DURATION: &str = r#"a duration greater than zero like "30s", "5m" or "1h30m""#;

pub(super) fn text_where(
    input: Input<'_>,
    valid: fn(&str) -> bool,
    expected: &str,
) -> Result<String, String> {
    input
        .text()
        .filter(|t| valid(t))
        .map(str::to_owned)
        .ok_or_else(|| expected.to_owned())
}

pub(super) fn endpoint(input: Input<'_>) -> Result<String, String> {
    input
        .text()
        .filter(|t| parse::endpoint(t).is_some())
        .map(|t| t.strip_suffix('/').unwrap_or(t).to_owned())
        .ok_or_else(|| "an http:// or https:// URL with a host and an optional port, like https://scheduler.example:7700".to_owned())
}

pub(super) fn absolute_path(input: Input<'_>, expected: &str) -> Result<PathBuf, String> {
    input
        .text()
        .map(Path::new)
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .ok_or_else(|| expected.to_owned())
}

/// Absolute paths without `..`, in the order given, without duplicates; `what` and `example`
/// say what they are in the message of a bad value ("directories", "/srv/data").
pub(super) fn absolute_paths(
    input: Input<'_>,
    what: &str,
    example: &str,
) -> Result<Vec<PathBuf>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        format!(r#"an array of absolute {what} like "{example}" (without "..")"#)
    } else {
        format!("comma-separated absolute {what} like {example} (without ..)")
    };
    let items = items
        .filter(|items| {
            items.iter().all(|i| {
                let path = Path::new(i);
                path.is_absolute()
                    && !path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
            })
        })
        .ok_or(expected)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for item in items {
        let path = PathBuf::from(item);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

pub(super) fn boolean(input: Input<'_>) -> Result<bool, String> {
    match input {
        Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Input::Toml(_) => Err("true or false".to_owned()),
        Input::Env(text) | Input::Flag(text) => {
            parse::boolean(text).ok_or_else(|| "true or false".to_owned())
        }
    }
}

pub(super) fn unsigned(input: Input<'_>) -> Option<u64> {
    match input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => parse::unsigned(text),
    }
}

/// A whole percentage from 1 to 100.
pub(super) fn percent(input: Input<'_>) -> Result<u8, String> {
    unsigned(input)
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| "a whole percentage from 1 to 100".to_owned())
}

pub(super) fn duration(input: Input<'_>, positive: bool) -> Result<Duration, String> {
    let parsed = match input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok().map(Duration::from_secs),
        other => other
            .text()
            .and_then(|t| berth_policy::parse_duration(t).ok()),
    };
    let expected = if positive {
        POSITIVE_DURATION
    } else {
        DURATION
    };
    parsed
        .filter(|d| !positive || !d.is_zero())
        .ok_or_else(|| expected.to_owned())
}

/// Port numbers, sorted and without duplicates.
/// MAC addresses (`0a:1b:2c:3d:4e:5f`), without duplicates, in the order given.
pub(super) fn macs(input: Input<'_>) -> Result<Vec<berth_runtime::MacAddr>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        r#"an array of MAC addresses like "0a:1b:2c:3d:4e:5f""#
    } else {
        "comma-separated MAC addresses like 0a:1b:2c:3d:4e:5f"
    };
    let mut macs = Vec::new();
    for item in items.ok_or_else(|| expected.to_owned())? {
        let mac = item
            .parse::<berth_runtime::MacAddr>()
            .map_err(|_| expected.to_owned())?;
        if !macs.contains(&mac) {
            macs.push(mac);
        }
    }
    Ok(macs)
}

pub(super) fn ports(input: Input<'_>) -> Result<Vec<u16>, String> {
    let parsed: Option<Vec<u16>> = match input {
        Input::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .and_then(parse::port)
            })
            .collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => parse::comma_list(text)
            .into_iter()
            .map(|item| parse::unsigned(item).and_then(parse::port))
            .collect(),
    };
    let expected = if input.is_toml() {
        "an array of port numbers from 1 to 65535"
    } else {
        "comma-separated port numbers from 1 to 65535"
    };
    let mut ports = parsed.ok_or_else(|| expected.to_owned())?;
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

pub(super) fn registries(input: Input<'_>) -> Result<Vec<String>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        r#"an array of registry hosts like "127.0.0.1:5000" (host[:port], no scheme)"#
    } else {
        "comma-separated registry hosts like 127.0.0.1:5000 (host[:port], no scheme)"
    };
    items
        .filter(|items| items.iter().all(|i| parse::is_registry_host(i)))
        .map(|items| items.into_iter().map(str::to_owned).collect())
        .ok_or_else(|| expected.to_owned())
}

/// Registry hosts to the absolute path of the executable that prints a token for each: a
/// TOML table, or `host=/path` pairs separated by commas.
pub(super) fn token_commands(input: Input<'_>) -> Result<BTreeMap<String, PathBuf>, String> {
    let pairs: Vec<(&str, &str)> = match input {
        Input::Toml(toml::Value::Table(table)) => table
            .iter()
            .map(|(host, value)| {
                value.as_str().map(|v| (host.as_str(), v)).ok_or_else(|| {
                    format!("a table of registry hosts to command paths, but `{host}` is {value}")
                })
            })
            .collect::<Result<_, _>>()?,
        Input::Toml(_) => {
            return Err(r#"a table of registry hosts to command paths, like { "ecr.example" = "/usr/local/bin/ecr-token" }"#.to_owned());
        }
        Input::Env(text) | Input::Flag(text) => parse::comma_list(text)
            .into_iter()
            .map(|item| {
                item.split_once('=')
                    .map(|(host, path)| (host.trim(), path.trim()))
                    .ok_or_else(|| {
                        format!("comma-separated host=/path pairs, but `{item}` has no `=`")
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut commands = BTreeMap::new();
    for (host, command) in pairs {
        if !parse::is_registry_host(host) {
            return Err(format!(
                "registry hosts like 127.0.0.1:5000 (host[:port], no scheme), not `{host}`"
            ));
        }
        let command = Path::new(command);
        if !command.is_absolute() {
            return Err(format!(
                "the absolute path of an executable for {host}, not `{}`",
                command.display()
            ));
        }
        if commands
            .insert(host.to_owned(), command.to_path_buf())
            .is_some()
        {
            return Err(format!("each registry once, but `{host}` is repeated"));
        }
    }
    Ok(commands)
}

/// Capability names as Docker reads them (any case, with or without `CAP_`), or `ALL`; kept in
/// the kernel's spelling without `CAP_`, without duplicates.
pub(super) fn capabilities(input: Input<'_>) -> Result<Vec<String>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        r#"an array of capability names like "NET_ADMIN" (or "ALL")"#
    } else {
        "comma-separated capability names like NET_ADMIN (or ALL)"
    };
    let items = items.ok_or_else(|| expected.to_owned())?;
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let name = if berth_policy::is_all(item) {
            "ALL"
        } else {
            berth_policy::capability(item)
                .ok_or_else(|| format!("{expected}, but `{item}` is not a Linux capability"))?
        };
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

const ATTRIBUTE_NAME: &str =
    "attribute names of 1 to 128 letters, digits, '_', '-', '.', '/' or '\\'";
const ATTRIBUTE_VALUE: &str = "attribute values of 1 to 128 letters, digits, spaces, '_', '-', '.', '@', '/', '\\' or ':' without leading or trailing spaces";

pub(super) fn attributes(input: Input<'_>) -> Result<BTreeMap<String, String>, String> {
    let pairs: Vec<(&str, &str)> = match input {
        Input::Toml(toml::Value::Table(table)) => table
            .iter()
            .map(|(name, value)| {
                value.as_str().map(|v| (name.as_str(), v)).ok_or_else(|| {
                    format!("a table of attribute names to strings, but `{name}` is {value}")
                })
            })
            .collect::<Result<_, _>>()?,
        Input::Toml(_) => return Err("a table of attribute names to strings".to_owned()),
        Input::Env(text) | Input::Flag(text) => parse::comma_list(text)
            .into_iter()
            .map(|item| {
                item.split_once('=')
                    .map(|(name, value)| (name.trim(), value.trim()))
                    .ok_or_else(|| {
                        format!("comma-separated name=value pairs, but `{item}` has no `=`")
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut attributes = BTreeMap::new();
    for (name, value) in pairs {
        if !parse::is_attribute_name(name) {
            return Err(format!("{ATTRIBUTE_NAME}, not `{name}`"));
        }
        if !parse::is_attribute_value(value) {
            return Err(format!("{ATTRIBUTE_VALUE}, not `{value}`"));
        }
        // The agent reports berth.* itself; placement must be able to trust them.
        if name.starts_with("berth.") {
            return Err(format!(
                "names outside berth.*, which the agent reports itself, not `{name}` (choose another name, e.g. `{}`)",
                name.trim_start_matches("berth.")
            ));
        }
        if attributes
            .insert(name.to_owned(), value.to_owned())
            .is_some()
        {
            return Err(format!(
                "each attribute name once, but `{name}` is repeated"
            ));
        }
    }
    Ok(attributes)
}

pub(super) fn log_level(input: Input<'_>) -> Result<String, String> {
    input
        .text()
        .filter(|t| !t.trim().is_empty())
        .filter(|t| tracing_subscriber::EnvFilter::builder().parse(t).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            r#"error, warn, info, debug, trace or a tracing filter like "info,berth_agent=debug""#
                .to_owned()
        })
}

/// An AWS endpoint override: an http:// or https:// URL.
pub(super) fn endpoint_url(input: Input<'_>) -> Result<Option<String>, String> {
    input
        .text()
        .filter(|t| {
            let rest = t
                .strip_prefix("http://")
                .or_else(|| t.strip_prefix("https://"));
            rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        })
        .map(|t| Some(t.to_owned()))
        .ok_or_else(|| "an http:// or https:// URL, like http://127.0.0.1:4566".to_owned())
}

//! The `berth:` section of a `#cloud-config` user data document: the cluster, the scheduler
//! endpoint, the CA pin and the join token, each with the line it is on. A document that is not
//! cloud-config (a shell script, MIME multipart) or has no `berth:` section gives nothing; a
//! broken one is an error that names its line.

use std::path::{Path, PathBuf};

use super::yaml::{self, Node, Value};
use super::{Found, Origin};

/// The first line of a cloud-config document, as cloud-init recognises it.
const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

/// The user data is not what Berth can use: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("user data {}, line {line}: {message}", path.display())]
pub struct UserDataError {
    /// The user data file.
    pub path: PathBuf,
    /// The line to fix, 1-based.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

/// The keys of the `berth:` section. Unknown keys are refused: a misspelt key would otherwise
/// be ignored and the agent start without it. `scheduler_endpoint` is required: a section that
/// does not say where the scheduler is names nothing to join.
const SECTION_KEYS: [&str; 4] = [
    "cluster",
    "scheduler_endpoint",
    "scheduler_ca_pin",
    "join_token",
];

/// What the document at `path` (its text `text`) gives Berth: `None` when it is not
/// cloud-config or has no `berth:` section.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Option<Vec<Found>>, UserDataError> {
    let first_line = text.lines().next().unwrap_or_default().trim_end();
    if first_line != CLOUD_CONFIG_HEADER {
        return Ok(None);
    }
    let has_content = text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#') && l != "---" && l != "..."
    });
    if !has_content {
        return Ok(None);
    }
    let error = |line: usize, message: String| UserDataError {
        path: path.to_owned(),
        line,
        message,
    };
    let document = yaml::parse(text).map_err(|e| error(e.line, e.message))?;
    let Some(values) = document
        .map(|d| section(&d))
        .transpose()
        .map_err(|(line, message)| error(line, message))?
        .flatten()
    else {
        return Ok(None);
    };
    let mut found = Vec::new();
    for (key, value) in values {
        let Some(value) = value else { continue };
        let line = key_line(text, key);
        if let Err(expected) = crate::config::check_text(key, &value) {
            let shown = if key == "join_token" {
                "(secret)".to_owned()
            } else {
                format!("{value:?}")
            };
            return Err(error(
                line,
                format!("berth.{key} is {shown}: expected {expected}"),
            ));
        }
        found.push(Found {
            key,
            value,
            origin: Origin::UserData {
                path: path.to_owned(),
                line,
            },
        });
    }
    Ok(Some(found))
}

/// Each key of the `berth:` section with its value, if it has one.
type SectionValues = Vec<(&'static str, Option<String>)>;

/// The values of the document's `berth:` section in [`SECTION_KEYS`]' order, each `None` when
/// absent or null; `None` for no (or a null) section. An error is its line and message.
fn section(document: &Node) -> Result<Option<SectionValues>, (usize, String)> {
    let Value::Mapping(entries) = &document.value else {
        if document.is_null() {
            return Ok(None);
        }
        return Err((
            document.line,
            format!("invalid type: {}, expected a mapping", document.kind()),
        ));
    };
    let mut berth = None;
    for (key, value) in entries {
        if matches!(&key.value, Value::Scalar { text, .. } if text == "berth") {
            if berth.is_some() {
                return Err((key.line, "duplicate field `berth`".to_owned()));
            }
            berth = Some(value);
        }
    }
    let Some(berth) = berth.filter(|b| !b.is_null()) else {
        return Ok(None);
    };
    let Value::Mapping(entries) = &berth.value else {
        return Err((
            berth.line,
            format!(
                "berth: invalid type: {}, expected the berth section (a mapping)",
                berth.kind()
            ),
        ));
    };
    let mut values: SectionValues = SECTION_KEYS.iter().map(|k| (*k, None)).collect();
    let mut seen = [false; SECTION_KEYS.len()];
    for (key, value) in entries {
        let Value::Scalar { text: name, .. } = &key.value else {
            return Err((
                key.line,
                format!("berth: invalid type: {}, expected a field name", key.kind()),
            ));
        };
        let Some(i) = SECTION_KEYS.iter().position(|k| k == name) else {
            let expected = SECTION_KEYS.map(|k| format!("`{k}`")).join(", ");
            return Err((
                key.line,
                format!("berth: unknown field `{name}`, expected one of {expected}"),
            ));
        };
        if seen[i] {
            return Err((key.line, format!("berth: duplicate field `{name}`")));
        }
        seen[i] = true;
        if value.is_null() && name != "scheduler_endpoint" {
            continue;
        }
        let Value::Scalar { text, .. } = &value.value else {
            return Err((
                value.line,
                format!(
                    "berth.{name}: invalid type: {}, expected a string",
                    value.kind()
                ),
            ));
        };
        values[i].1 = Some(text.clone());
    }
    if values[1].1.is_none() {
        return Err((
            berth.line,
            "berth: missing field `scheduler_endpoint`".to_owned(),
        ));
    }
    Ok(Some(values))
}

/// The line of `key` inside the top-level `berth:` block (block style, as the README writes
/// it); the line of `berth:` itself when the key is not found that way (flow style).
fn key_line(text: &str, key: &str) -> usize {
    let mut section_line = None;
    for (i, line) in text.lines().enumerate() {
        let top_level = !line.starts_with([' ', '\t']) && !line.trim().is_empty();
        match section_line {
            None => {
                if top_level && line.trim_end().starts_with("berth:") {
                    section_line = Some(i + 1);
                }
            }
            Some(_) if top_level && !line.starts_with('#') => break,
            Some(_) => {
                let trimmed = line.trim_start();
                if let Some(rest) = trimmed.strip_prefix(key)
                    && rest.trim_start().starts_with(':')
                {
                    return i + 1;
                }
            }
        }
    }
    section_line.unwrap_or(1)
}

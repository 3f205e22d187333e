//! The `berth:` section of a `#cloud-config` user data document: the cluster, the scheduler
//! endpoint, the CA pin and the join token, each with the line it is on. A document that is not
//! cloud-config (a shell script, MIME multipart) or has no `berth:` section gives nothing; a
//! broken one is an error that names its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// The whole document: only `berth:` is Berth's; cloud-init's own keys are left to it.
#[derive(Debug, Deserialize)]
struct Document {
    #[serde(default)]
    berth: Option<Section>,
}

/// The `berth:` section. Unknown keys are refused: a misspelt key would otherwise be ignored
/// and the agent start without it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    cluster: Option<String>,
    /// Required: a section that does not say where the scheduler is names nothing to join.
    scheduler_endpoint: String,
    scheduler_ca_pin: Option<String>,
    join_token: Option<String>,
}

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
    let document: Document = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, message) = yaml_message(&e);
        error(line, message)
    })?;
    let Some(section) = document.berth else {
        return Ok(None);
    };
    let values = [
        ("cluster", section.cluster),
        ("scheduler_endpoint", Some(section.scheduler_endpoint)),
        ("scheduler_ca_pin", section.scheduler_ca_pin),
        ("join_token", section.join_token),
    ];
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

/// The line of a YAML error and its message without the position serde_yaml appends. A syntax
/// error found at the end of what was left open (an unclosed quote) names where that began:
/// its line is the one to fix.
fn yaml_message(error: &serde_yaml_ng::Error) -> (usize, String) {
    let text = error.to_string();
    if let Some((line, message)) = opened_at(&text) {
        return (line, message);
    }
    match error.location() {
        Some(at) => {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            (at.line(), text.replacen(&suffix, "", 1))
        }
        None => (1, text),
    }
}

/// libyaml's "<problem> at line A column B, while <context> at line N column M": line N, and
/// the message with "<context> starting at column M".
fn opened_at(text: &str) -> Option<(usize, String)> {
    let (problem, context) = text.split_once(", while ")?;
    let (what, position) = context.rsplit_once(" at line ")?;
    let (line, column) = position.split_once(" column ")?;
    let line = line.parse().ok()?;
    let problem = problem.split(" at line ").next().unwrap_or(problem);
    Some((
        line,
        format!("{problem}, while {what} starting at column {column}"),
    ))
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

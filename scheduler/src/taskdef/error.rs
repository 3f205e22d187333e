//! Errors of task-definition parsing: one message for a person, naming every problem and where.

use std::fmt;

/// Why a task definition was refused. `Display` is the whole message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskDefError {
    /// The text is not JSON.
    #[error("task definition is not valid JSON: {reason} at line {line} column {column}")]
    Syntax {
        /// serde_json's description, e.g. "expected `,` or `}`".
        reason: String,
        line: usize,
        column: usize,
    },
    /// The JSON is not an object.
    #[error("task definition must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    /// The JSON has the wrong shape or fails validation; every problem found is listed.
    #[error("{}", Problems(problems))]
    Invalid { problems: Vec<Problem> },
}

/// One problem of a task definition, with the JSON path of the field or object it concerns
/// (e.g. `containerDefinitions[0].memory`; empty for the top level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    path: String,
    message: String,
}

impl Problem {
    /// A problem with the value at `path`: shown as "path: message".
    pub(super) fn at(path: &str, message: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            message: format!("{path}: {message}"),
        }
    }

    /// A problem whose message places the path itself.
    pub(super) fn with_message(path: &str, message: String) -> Self {
        Self {
            path: path.to_owned(),
            message,
        }
    }

    /// The JSON path of the field or object concerned; empty for the top level.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A list of problems: a single one as itself, several as a counted list, one a line.
struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("task definition is invalid"),
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "task definition has {} problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

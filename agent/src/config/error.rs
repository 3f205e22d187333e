//! Configuration errors: each names the key, where its value came from, and what was expected.

use std::fmt;
use std::path::PathBuf;

use super::Source;
use super::keys::Key;

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {} does not exist", path.display())]
    MissingFile { path: PathBuf },
    /// The file exists but could not be read.
    #[error("cannot read config file {}: {reason}", path.display())]
    ReadFile { path: PathBuf, reason: String },
    /// The file is not TOML.
    #[error("invalid TOML in {} at line {line}, column {column}: {message}", path.display())]
    Toml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key in the file that the agent does not know.
    #[error("unknown key `{key}` in {}{}", path.display(), did_you_mean(*suggestion))]
    UnknownKey {
        key: String,
        path: PathBuf,
        suggestion: Option<&'static str>,
    },
    /// A `BERTH_*` environment variable that is no agent key and belongs to no known tool.
    #[error("unknown environment variable `{name}`{}", did_you_mean(*suggestion))]
    UnknownEnv {
        name: String,
        suggestion: Option<&'static str>,
    },
    /// A `BERTH_*` environment variable whose name or value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode { name: String },
    /// A value that does not parse or does not pass validation.
    #[error("{}: expected {expected}", describe(key, origin, value))]
    InvalidValue {
        /// The TOML key.
        key: &'static str,
        /// Where the value came from.
        origin: Source,
        /// The value as written: TOML syntax for the file and defaults, raw text otherwise.
        value: String,
        expected: String,
    },
    /// Some but not all of the three TLS files are set.
    #[error(
        "{} set but {} not: expected all three tls files or none",
        list_given(given),
        list_missing(missing)
    )]
    TlsIncomplete {
        given: Vec<(&'static str, Source)>,
        missing: Vec<&'static str>,
    },
}

/// Every problem found, in the order: file, environment, flags, then checks across keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(": did you mean `{s}`?"))
}

/// `key = value (file)`, `BERTH_KEY=value (environment)` or `--key=value (command line)`.
pub(crate) fn describe(key: &str, origin: &Source, value: &str) -> String {
    match origin {
        Source::Default => format!("{key} = {value} (default)"),
        Source::File(path) => format!("{key} = {value} ({})", path.display()),
        Source::Env(name) => format!("{name}={value} (environment)"),
        Source::Flag => {
            let flag =
                Key::from_name(key).map_or_else(|| key.replace('_', "-"), |k| k.flag().to_owned());
            format!("{flag}={value} (command line)")
        }
    }
}

fn list_given(given: &[(&str, Source)]) -> String {
    let parts: Vec<String> = given
        .iter()
        .map(|(key, origin)| format!("{key} ({origin})"))
        .collect();
    let verb = if parts.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", join_and(&parts))
}

fn list_missing(missing: &[&str]) -> String {
    let parts: Vec<String> = missing.iter().map(|s| (*s).to_owned()).collect();
    let verb = if parts.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", join_and(&parts))
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

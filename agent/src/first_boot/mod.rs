//! `berth-agent first-boot`: where a new instance's agent takes its cluster, scheduler
//! endpoint, CA pin and join token from, in order: the `berth:` section of its cloud-init user
//! data, its EC2 instance tags (`berth:<key>`, through IMDSv2), then the configuration file.
//! What the first two give is checked with the agent's own rules and written once, mode 0600,
//! to the first-boot file beside the configuration file ([`crate::config::FIRST_BOOT_FILE`]),
//! which every later start reads as a layer over the configuration file; with that file
//! present, the first boot has been done and does nothing. The agent removes the join token
//! from whichever file it came from once it has joined (`token.rs`).
//!
//! It runs as its own oneshot unit, `berth-agent-first-boot.service`, ordered after cloud-init
//! and before `berth-agent.service` (see ARCHITECTURE.md).

mod imds;
mod token;
mod user_data;
mod yaml;

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, ConfigErrors, Overrides};

pub use imds::ImdsError;
pub(crate) use token::forget_used_token;
pub use user_data::UserDataError;

/// Where cloud-init keeps the instance's user data as it was given.
pub const DEFAULT_USER_DATA: &str = "/var/lib/cloud/instance/user-data.txt";
/// EC2's instance metadata service.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The prefix of the instance tags Berth reads: `berth:cluster`, `berth:scheduler_endpoint`, …
pub const TAG_PREFIX: &str = "berth:";

/// The keys a first boot may set, in the order they are written.
const KEYS: [&str; 4] = [
    "cluster",
    "scheduler_endpoint",
    "scheduler_ca_pin",
    "join_token",
];

/// What a first boot reads.
#[derive(Debug, Clone)]
pub struct FirstBoot {
    /// The agent's configuration file (`--config`), `None` for the default path: the first-boot
    /// file goes beside it.
    pub config: Option<PathBuf>,
    /// The user data file cloud-init left.
    pub user_data: PathBuf,
    /// The metadata service's address; `None` does not ask it.
    pub imds_endpoint: Option<String>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    UserData { path: PathBuf, line: usize },
    Tag { name: String },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::UserData { path, line } => {
                write!(f, "user data {}, line {line}", path.display())
            }
            Origin::Tag { name } => write!(f, "EC2 tag {name}"),
        }
    }
}

/// One value a source gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) key: &'static str,
    pub(crate) value: String,
    pub(crate) origin: Origin,
}

/// What a first boot did.
#[derive(Debug)]
pub enum Outcome {
    /// The first-boot file exists: a first boot was done before.
    AlreadyDone(PathBuf),
    /// The first-boot file was written.
    Written {
        path: PathBuf,
        /// Each key taken and where from (the values are not repeated: one is a secret).
        taken: Vec<(&'static str, String)>,
        /// Why the user data and the tags gave nothing, when they did not.
        notes: Vec<String>,
    },
}

/// Why a first boot failed.
#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    #[error("cannot read the user data {path}")]
    ReadUserData {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    UserData(#[from] user_data::UserDataError),
    #[error("EC2 tag {name} is not a Berth key{}: the tags Berth reads are {}", suggestion.map_or_else(String::new, |s| format!(" (did you mean {TAG_PREFIX}{s}?)")), tag_names())]
    UnknownTag {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("EC2 tag {name} is {shown}: expected {expected}")]
    BadTag {
        name: String,
        shown: String,
        expected: String,
    },
    #[error("cannot read the instance tags")]
    Imds(#[from] imds::ImdsError),
    #[error("the configuration with what the first boot found is not valid:\n{0}")]
    Config(ConfigErrors),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FirstBootError {
    /// Whether the instance's own input is wrong (user data, tags, configuration): running
    /// again does not help, the operator must fix it.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            FirstBootError::UserData(_)
                | FirstBootError::UnknownTag { .. }
                | FirstBootError::BadTag { .. }
                | FirstBootError::Config(_)
        )
    }
}

fn tag_names() -> String {
    KEYS.map(|k| format!("{TAG_PREFIX}{k}")).join(", ")
}

/// Runs the first boot: nothing when the first-boot file exists; otherwise reads the user data
/// and the tags, checks the configuration they make with the file, and writes the first-boot
/// file (even when they gave nothing, so later starts do not ask again).
pub async fn run(options: &FirstBoot) -> Result<Outcome, FirstBootError> {
    let config_path = options
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    let target = config::first_boot_path(&config_path);
    if target.exists() {
        return Ok(Outcome::AlreadyDone(target));
    }
    let mut notes = Vec::new();
    let from_user_data = match std::fs::read(&options.user_data) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let found = user_data::parse(&options.user_data, &text)?;
            if found.is_none() {
                notes.push(format!(
                    "user data {} has no berth: section in a #cloud-config document",
                    options.user_data.display()
                ));
            }
            found.unwrap_or_default()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!("no user data at {}", options.user_data.display()));
            Vec::new()
        }
        Err(source) => {
            return Err(FirstBootError::ReadUserData {
                path: options.user_data.clone(),
                source,
            });
        }
    };
    let from_tags = match &options.imds_endpoint {
        None => {
            notes.push("instance tags not asked for".to_owned());
            Vec::new()
        }
        Some(endpoint) => match imds::Imds::new(endpoint)?.tags(TAG_PREFIX).await? {
            imds::Tags::NoService(why) => {
                notes.push(format!("no EC2 instance metadata service: {why}"));
                Vec::new()
            }
            imds::Tags::NotExposed => {
                notes.push("the instance's tags are not in its metadata (turn on \"allow tags in instance metadata\" to use berth: tags)".to_owned());
                Vec::new()
            }
            imds::Tags::Found(tags) => tag_values(tags)?,
        },
    };
    let chosen = choose(from_user_data, from_tags);
    let text = render(&chosen);
    check(options.config.as_deref(), &text)?;
    write_private(&target, &text)?;
    Ok(Outcome::Written {
        path: target,
        taken: chosen
            .into_iter()
            .map(|f| (f.key, f.origin.to_string()))
            .collect(),
        notes,
    })
}

/// Checks the configuration the agent will load with `first_boot` as its first-boot file.
/// Problems of the environment alone (an unknown `BERTH_*` variable) are the agent's to report
/// when it starts, not the first boot's: the first boot's unit may not see the same.
fn check(config_path: Option<&Path>, first_boot: &str) -> Result<(), FirstBootError> {
    match config::load_from_system_with_first_boot(config_path, first_boot, &Overrides::default()) {
        Ok(_) => Ok(()),
        Err(ConfigErrors(errors)) => {
            let ours: Vec<ConfigError> = errors
                .into_iter()
                .filter(|e| {
                    !matches!(
                        e,
                        ConfigError::UnknownEnv { .. } | ConfigError::NotUnicode { .. }
                    )
                })
                .collect();
            if ours.is_empty() {
                Ok(())
            } else {
                Err(FirstBootError::Config(ConfigErrors(ours)))
            }
        }
    }
}

/// The `berth:` tags as values, each checked; any other `berth:` tag is an error (a misspelt
/// key would otherwise be ignored).
fn tag_values(tags: Vec<(String, String)>) -> Result<Vec<Found>, FirstBootError> {
    let mut found = Vec::new();
    for (name, value) in tags {
        let bare = name.strip_prefix(TAG_PREFIX).unwrap_or(&name);
        let Some(key) = KEYS.into_iter().find(|k| *k == bare) else {
            let suggestion = KEYS
                .into_iter()
                .map(|k| (k, strsim::jaro_winkler(k, bare)))
                .filter(|(_, score)| *score > 0.8)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k);
            return Err(FirstBootError::UnknownTag { name, suggestion });
        };
        let value = value.trim().to_owned();
        if let Err(expected) = config::check_text(key, &value) {
            let shown = if key == "join_token" {
                "(secret)".to_owned()
            } else {
                format!("{value:?}")
            };
            return Err(FirstBootError::BadTag {
                name,
                shown,
                expected,
            });
        }
        found.push(Found {
            key,
            value,
            origin: Origin::Tag { name },
        });
    }
    Ok(found)
}

/// For each key, the user data's value, else the tags', in [`KEYS`]' order.
fn choose(user_data: Vec<Found>, tags: Vec<Found>) -> Vec<Found> {
    KEYS.into_iter()
        .filter_map(|key| {
            user_data
                .iter()
                .chain(&tags)
                .find(|f| f.key == key)
                .cloned()
        })
        .collect()
}

/// The first-boot file: what it is, then each value with its origin.
fn render(chosen: &[Found]) -> String {
    let mut out = String::from(
        "# Written once by `berth-agent first-boot`: what this instance's user data (berth: section)\n\
         # and EC2 tags (berth:<key>) gave the agent. Read over agent.toml beside it, and under\n\
         # BERTH_* variables and flags. Edit it to change these values; remove it to run the first\n\
         # boot again at the next start. The agent removes join_token once it has joined.\n",
    );
    if chosen.is_empty() {
        out.push_str("#\n# The user data and the tags gave nothing: agent.toml alone applies.\n");
    }
    for found in chosen {
        out.push_str(&format!(
            "\n# from {}\n{} = {}\n",
            found.origin,
            found.key,
            toml::Value::String(found.value.clone())
        ));
    }
    out
}

/// Writes `text` to `path` atomically, readable by root alone (it may hold the join token).
fn write_private(path: &Path, text: &str) -> Result<(), FirstBootError> {
    let err = |source| FirstBootError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    // A leftover of an interrupted write would keep its mode through `truncate`.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

//! Loading: the layers read (the file, the first-boot file, the environment, flags), parsed
//! key by key into a `Partial` and resolved, every problem reported at once.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, ConfigErrors};
use super::flags::Overrides;
use super::input::Input;
use super::keys::{self, Key};
use super::layer::Partial;
use super::{DEFAULT_CONFIG_PATH, LoadedConfig, Source, first_boot_path};

/// Loads the configuration from what the caller read: `file` names the TOML file (the default
/// path when `None`), `file_text` is its content or `None` when it does not exist (an error only
/// when `explicit_file`), `env` is the process environment and `flags` the parsed command line.
///
/// Pure: it does not look at the filesystem, so it does not check that the TLS files exist
/// ([`load_from_system`] does).
pub fn load(
    file: Option<&Path>,
    explicit_file: bool,
    file_text: Option<&str>,
    env: &[(String, String)],
    flags: &Overrides,
) -> Result<LoadedConfig, ConfigErrors> {
    load_with(file, explicit_file, file_text, env, flags, &|_| true)
}

/// [`load`] with the first-boot file beside `file` holding `first_boot_text` (`None`: there
/// is none), as the agent reads it over the file. Pure.
pub fn load_with_first_boot(
    file: &Path,
    file_text: Option<&str>,
    first_boot_text: Option<&str>,
    env: &[(String, String)],
    flags: &Overrides,
) -> Result<LoadedConfig, ConfigErrors> {
    let first_boot = first_boot_path(file);
    let layers = Layers {
        file: Some(file),
        explicit_file: true,
        file_text,
        first_boot: first_boot_text.map(|text| (first_boot.as_path(), text)),
    };
    load_layers(&layers, env, flags, &|_| true)
}

/// Reads the file (`config_path`, or [`DEFAULT_CONFIG_PATH`] which may be absent), the
/// first-boot file beside it (if any) and the process environment, then [`load`]s, also
/// checking that the TLS files exist.
pub fn load_from_system(
    config_path: Option<&Path>,
    flags: &Overrides,
) -> Result<LoadedConfig, ConfigErrors> {
    load_system_layers(config_path, None, flags)
}

/// [`load_from_system`], with `first_boot` (when given) as the first-boot file's text instead
/// of what is on disk: how `berth-agent first-boot` checks the file before writing it.
pub fn load_from_system_with_first_boot(
    config_path: Option<&Path>,
    first_boot: &str,
    flags: &Overrides,
) -> Result<LoadedConfig, ConfigErrors> {
    load_system_layers(config_path, Some(first_boot), flags)
}

fn read_optional(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(ConfigError::ReadFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            None
        }
    }
}

fn load_system_layers(
    config_path: Option<&Path>,
    first_boot: Option<&str>,
    flags: &Overrides,
) -> Result<LoadedConfig, ConfigErrors> {
    let (path, explicit) = match config_path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG_PATH), false),
    };
    let mut errors = Vec::new();
    let text = read_optional(path, &mut errors);
    let first_boot_path = first_boot_path(path);
    let first_boot_text = match first_boot {
        Some(text) => Some(text.to_owned()),
        None => read_optional(&first_boot_path, &mut errors),
    };
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.to_str(), value.to_str()) {
            (Some(name), Some(value)) => env.push((name.to_owned(), value.to_owned())),
            _ => {
                let name = name.to_string_lossy();
                if name.starts_with(keys::ENV_PREFIX) {
                    errors.push(ConfigError::NotUnicode {
                        name: name.into_owned(),
                    });
                }
            }
        }
    }
    let explicit = explicit
        && errors
            .iter()
            .all(|e| !matches!(e, ConfigError::ReadFile { .. }));
    let layers = Layers {
        file: Some(path),
        explicit_file: explicit,
        file_text: text.as_deref(),
        first_boot: first_boot_text
            .as_deref()
            .map(|text| (first_boot_path.as_path(), text)),
    };
    let loaded = load_layers(&layers, &env, flags, &|p| p.is_file());
    match loaded {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

pub(super) fn load_with(
    file: Option<&Path>,
    explicit_file: bool,
    file_text: Option<&str>,
    env: &[(String, String)],
    flags: &Overrides,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<LoadedConfig, ConfigErrors> {
    let layers = Layers {
        file,
        explicit_file,
        file_text,
        first_boot: None,
    };
    load_layers(&layers, env, flags, file_exists)
}

/// The files a load reads, as the caller read them.
struct Layers<'a> {
    /// The configuration file ([`DEFAULT_CONFIG_PATH`] when `None`).
    file: Option<&'a Path>,
    /// A missing file is an error (`--config` named it).
    explicit_file: bool,
    file_text: Option<&'a str>,
    /// The first-boot file and its text, when it exists: applied over the file.
    first_boot: Option<(&'a Path, &'a str)>,
}

fn load_layers(
    layers: &Layers<'_>,
    env: &[(String, String)],
    flags: &Overrides,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Result<LoadedConfig, ConfigErrors> {
    let path = layers.file.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let mut partial = Partial::default();
    let mut errors = Vec::new();

    match layers.file_text {
        Some(text) => apply_file(&mut partial, path, text, &mut errors),
        None if layers.explicit_file => errors.push(ConfigError::MissingFile {
            path: path.to_path_buf(),
        }),
        None => {}
    }
    if let Some((first_boot, text)) = layers.first_boot {
        apply_file(&mut partial, first_boot, text, &mut errors);
    }
    apply_env(&mut partial, env, &mut errors);
    for (key, value) in flags.entries() {
        if let Err(e) = partial.apply(key, Input::Flag(value), &Source::Flag) {
            errors.push(e);
        }
    }

    match partial.resolve(file_exists) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

fn apply_file(partial: &mut Partial, path: &Path, text: &str, errors: &mut Vec<ConfigError>) {
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            errors.push(ConfigError::Toml {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().replace('\n', "; "),
            });
            return;
        }
    };
    let origin = Source::File(path.to_path_buf());
    for (name, value) in &table {
        match Key::from_name(name) {
            Some(key) => {
                if let Err(e) = partial.apply(key, Input::Toml(value), &origin) {
                    errors.push(e);
                }
            }
            None => errors.push(ConfigError::UnknownKey {
                key: name.clone(),
                path: path.to_path_buf(),
                suggestion: Key::nearest(name).map(Key::name),
            }),
        }
    }
}

/// Applies every `BERTH_*` variable, sorted by name so that errors come in a stable order.
fn apply_env(partial: &mut Partial, env: &[(String, String)], errors: &mut Vec<ConfigError>) {
    let vars: BTreeMap<&str, &str> = env
        .iter()
        .filter(|(name, _)| name.starts_with(keys::ENV_PREFIX) && !keys::is_ignored_env(name))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    for (name, value) in vars {
        match Key::from_env(name) {
            Some(key) => {
                if let Err(e) = partial.apply(key, Input::Env(value), &Source::Env(name.to_owned()))
                {
                    errors.push(e);
                }
            }
            None => errors.push(ConfigError::UnknownEnv {
                name: name.to_owned(),
                suggestion: name
                    .strip_prefix(keys::ENV_PREFIX)
                    .and_then(Key::nearest)
                    .map(Key::env),
            }),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

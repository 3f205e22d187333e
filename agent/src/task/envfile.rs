//! ECS `environmentFiles` of type `file`: Docker env-file syntax read from the host when a
//! task starts. `NAME=value` lines (the value taken verbatim, `=` included), `#` comment lines
//! and blank lines; the files are applied in order, a later one overriding an earlier one, and
//! the definition's own `environment` wins over all of them.
//!
//! The agent reads them as root, for a task definition anyone with access to the scheduler
//! may write, so a file is read only below one of the agent's `environment_file_paths`, walked
//! from that directory without following a symlink, and only when it is a regular file (a
//! FIFO cannot hang the task, a device cannot exhaust the agent): at most [`MAX_FILES`] files
//! a container, [`MAX_FILE_BYTES`] each, within [`READ_DEADLINE`]. Errors name the file and
//! the line, never what a line holds.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use berth_runtime::{SafeReadError, Symlinks};

use super::error::{EnvLine, InputError};

/// The most environment files one container may name (ECS's own limit).
pub(crate) const MAX_FILES: usize = 10;
/// The largest environment file.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;
/// How long reading one container's files may take.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(10);

/// The variables of one env file's text; `path` only names the file in errors.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<(String, String)>, InputError> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let refuse = |problem| InputError::EnvFileLine {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(refuse(EnvLine::NotNameValue));
        };
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('\0') {
            return Err(refuse(EnvLine::BadName));
        }
        if value.contains('\0') {
            return Err(refuse(EnvLine::NulInValue));
        }
        vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// The allowed directory `path` lies in, and the rest of it: compared component by component
/// (`/srv/env2` is not below `/srv/env`), and never with `..`.
fn split_allowed<'a>(
    path: &'a Path,
    allowed: &'a [PathBuf],
) -> Result<(&'a Path, &'a Path), InputError> {
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(InputError::EnvFileNotAbsolute(path.to_path_buf()));
    }
    if allowed.is_empty() {
        return Err(InputError::EnvFileNoneAllowed(path.to_path_buf()));
    }
    allowed
        .iter()
        .find_map(|dir| {
            path.strip_prefix(dir)
                .ok()
                .filter(|rest| !rest.as_os_str().is_empty())
                .map(|rest| (dir.as_path(), rest))
        })
        .ok_or_else(|| InputError::EnvFileNotAllowed {
            path: path.to_path_buf(),
            allowed: allowed.to_vec(),
        })
}

/// Reads one file as described in the module's doc, on a blocking thread.
async fn read(path: &Path, allowed: &[PathBuf]) -> Result<String, InputError> {
    let (dir, rest) = split_allowed(path, allowed)?;
    let (dir, rest) = (dir.to_path_buf(), rest.to_path_buf());
    let refused = |error| InputError::EnvFileRefused {
        path: path.to_path_buf(),
        error,
    };
    let data = tokio::task::spawn_blocking(move || {
        berth_runtime::read_below(&dir, &rest, Symlinks::Refuse, MAX_FILE_BYTES)
    })
    .await
    .map_err(|e| refused(SafeReadError::Io(std::io::Error::other(e.to_string()))))?
    .map_err(refused)?;
    String::from_utf8(data).map_err(|_| InputError::EnvFileNotText(path.to_path_buf()))
}

/// Reads one container's `paths` in order and merges their variables, a later file overriding
/// an earlier one, all within [`READ_DEADLINE`].
pub(crate) async fn load(
    paths: &[String],
    allowed: &[PathBuf],
) -> Result<BTreeMap<String, String>, InputError> {
    if paths.len() > MAX_FILES {
        return Err(InputError::EnvFileTooMany {
            count: paths.len(),
            max: MAX_FILES,
        });
    }
    let all = async {
        let mut merged = BTreeMap::new();
        for path in paths {
            let path = Path::new(path);
            let text = read(path, allowed).await?;
            merged.extend(parse(&text, path)?);
        }
        Ok(merged)
    };
    tokio::time::timeout(READ_DEADLINE, all)
        .await
        .unwrap_or(Err(InputError::EnvFileDeadline {
            deadline: READ_DEADLINE,
        }))
}

/// Every container's variables from its files, by container name; the first error.
pub(crate) async fn load_task(
    containers: Vec<(String, Vec<String>)>,
    allowed: Vec<PathBuf>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, InputError> {
    let mut by_container = BTreeMap::new();
    for (name, paths) in containers {
        let vars = load(&paths, &allowed)
            .await
            .map_err(|e| InputError::in_container(&name, e))?;
        by_container.insert(name, vars);
    }
    Ok(by_container)
}

/// Adds the files' variables to a container's environment where the definition's own
/// `environment` does not set them.
pub(crate) fn apply(
    environment: &mut BTreeMap<String, String>,
    from_files: BTreeMap<String, String>,
) {
    for (name, value) in from_files {
        environment.entry(name).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_env_file_syntax() {
        let text = "# settings\n\nA=1\n  B=two words \nC=x=y\nEMPTY=\n";
        assert_eq!(
            parse(text, Path::new("/etc/app.env")).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words ".into()),
                ("C".into(), "x=y".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    #[test]
    fn bad_lines_name_file_and_line_but_not_what_they_hold() {
        let refused = |text| parse(text, Path::new("/e.env")).unwrap_err().to_string();
        assert_eq!(
            refused("A=1\nroot:$6$secret:19000:0:99999:7:::\n"),
            "environment file /e.env line 2 is not NAME=value"
        );
        assert_eq!(
            refused("=x\n"),
            "environment file /e.env line 1 does not start with a variable name (one word before =)"
        );
        assert_eq!(
            refused("secret word=x\n"),
            "environment file /e.env line 1 does not start with a variable name (one word before =)"
        );
        assert_eq!(
            refused("A=1\nB=x\0y\n"),
            "environment file /e.env line 2 has a NUL byte in its value"
        );
    }

    fn paths(list: &[&Path]) -> Vec<String> {
        list.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn later_files_override_and_explicit_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.env");
        let second = dir.path().join("b.env");
        std::fs::write(&first, "A=first\nB=first\nC=first\n").unwrap();
        std::fs::write(&second, "B=second\n").unwrap();
        let merged = load(&paths(&[&first, &second]), &[dir.path().to_path_buf()])
            .await
            .unwrap();
        let mut env = BTreeMap::from([("C".to_owned(), "explicit".to_owned())]);
        apply(&mut env, merged);
        assert_eq!(
            env,
            BTreeMap::from([
                ("A".to_owned(), "first".to_owned()),
                ("B".to_owned(), "second".to_owned()),
                ("C".to_owned(), "explicit".to_owned()),
            ])
        );
    }

    #[tokio::test]
    async fn only_regular_files_below_the_allowed_directories_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("env");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("ok.env"), "A=1\n").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", allowed.join("shadow")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", allowed.join("zero")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(allowed.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(
            allowed.join("big.env"),
            vec![b'#'; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        std::fs::write(allowed.join("binary.env"), [b'A', b'=', 0xff]).unwrap();
        let list = [allowed.clone()];
        let err = |path: &Path| {
            let list = list.clone();
            let path = path.to_string_lossy().into_owned();
            async move { load(&[path], &list).await.unwrap_err().to_string() }
        };
        let show = allowed.display();
        assert!(
            load(&paths(&[&allowed.join("ok.env")]), &list)
                .await
                .is_ok()
        );
        assert_eq!(
            err(Path::new("/etc/shadow")).await,
            format!(
                "environment file /etc/shadow is outside the directories this agent allows; \
                 environment_file_paths: {show}"
            )
        );
        assert_eq!(
            err(&allowed.join("shadow")).await,
            format!(
                "environment file {show}/shadow is a symbolic link, which is not followed here"
            )
        );
        assert_eq!(
            err(&allowed.join("zero")).await,
            format!("environment file {show}/zero is a symbolic link, which is not followed here")
        );
        assert_eq!(
            err(&allowed.join("fifo")).await,
            format!("environment file {show}/fifo is a FIFO, not a regular file")
        );
        assert_eq!(
            err(&allowed.join("big.env")).await,
            format!(
                "environment file {show}/big.env is 1048577 bytes, more than the 1048576 it may have"
            )
        );
        assert_eq!(
            err(&allowed.join("binary.env")).await,
            format!("environment file {show}/binary.env is not UTF-8 text")
        );
        assert_eq!(
            err(&allowed.join("../env/ok.env")).await,
            format!("environment file {show}/../env/ok.env is not an absolute path without ..")
        );
        assert_eq!(
            load(&["/etc/shadow".to_owned()], &[])
                .await
                .unwrap_err()
                .to_string(),
            "environment file /etc/shadow cannot be read: this agent allows no environment files \
             (set environment_file_paths, BERTH_ENVIRONMENT_FILE_PATHS, to the directories they \
             may be read from)"
        );
        let eleven = vec![allowed.join("ok.env").to_string_lossy().into_owned(); 11];
        assert_eq!(
            load(&eleven, &list).await.unwrap_err().to_string(),
            "11 environment files, more than the 10 a container may have"
        );
    }
}

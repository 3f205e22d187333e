//! ECS `environmentFiles` of type `file`: Docker env-file syntax read from the host when a
//! task starts. `NAME=value` lines (the value taken verbatim, `=` included), `#` comment lines
//! and blank lines; the files are applied in order, a later one overriding an earlier one, and
//! the definition's own `environment` wins over all of them.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{EnvLine, InputError};

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
            return Err(refuse(EnvLine::NotNameValue(raw.to_owned())));
        };
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('\0') {
            return Err(refuse(EnvLine::BadName(name.to_owned())));
        }
        if value.contains('\0') {
            return Err(refuse(EnvLine::NulInValue(name.to_owned())));
        }
        vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// Reads `paths` in order and merges their variables, a later file overriding an earlier one.
/// A missing or unreadable file is an error that names it.
pub(crate) async fn load(paths: &[String]) -> Result<BTreeMap<String, String>, InputError> {
    let mut merged = BTreeMap::new();
    for path in paths {
        let path = Path::new(path);
        let text = tokio::fs::read_to_string(path).await.map_err(|error| {
            InputError::EnvFileUnreadable {
                path: path.to_path_buf(),
                error,
            }
        })?;
        merged.extend(parse(&text, path)?);
    }
    Ok(merged)
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
    fn bad_lines_name_file_and_line() {
        let refused = |text| parse(text, Path::new("/e.env")).unwrap_err().to_string();
        assert_eq!(
            refused("A=1\nJUSTNAME\n"),
            "environment file /e.env line 2: \"JUSTNAME\" is not NAME=value"
        );
        assert_eq!(
            refused("=x\n"),
            "environment file /e.env line 1: \"\" is not a variable name"
        );
        assert_eq!(
            refused("A=1\nB=x\0y\n"),
            "environment file /e.env line 2: the value of B has a NUL byte"
        );
    }

    #[tokio::test]
    async fn later_files_override_and_explicit_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.env");
        let second = dir.path().join("b.env");
        std::fs::write(&first, "A=first\nB=first\nC=first\n").unwrap();
        std::fs::write(&second, "B=second\n").unwrap();
        let paths = [
            first.to_string_lossy().into_owned(),
            second.to_string_lossy().into_owned(),
        ];
        let merged = load(&paths).await.unwrap();
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
    async fn a_missing_file_is_named() {
        let err = load(&["/nonexistent/berth.env".to_owned()])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read environment file /nonexistent/berth.env on the host: "),
            "{err}"
        );
    }
}

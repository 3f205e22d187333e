//! Removing the join token from the file it came from once the agent has joined: the token is
//! a secret that is of no more use, and a copy left on disk (or in a machine image made from
//! the disk) is one more to leak.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::JoinConfig;

/// The token could not be removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot rewrite {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} sets join_token in a form that cannot be removed line by line; remove it by hand"
    )]
    NotRemovable { path: PathBuf },
}

/// After a successful join: removes the token from the file it was read from, or says where
/// else it still is. Never fails the agent: the join is done either way.
pub(crate) fn forget_used_token(join: &JoinConfig) {
    match &join.token_file {
        Some(path) => match remove_join_token(path) {
            Ok(true) => tracing::info!(path = %path.display(), "removed the used join token"),
            Ok(false) => {}
            Err(error) => tracing::warn!(
                error = &error as &(dyn std::error::Error + 'static),
                "the used join token stays on disk"
            ),
        },
        None => tracing::info!(
            "joined with a join token from the environment or the command line; it is not needed any more and can be removed there (BERTH_JOIN_TOKEN in /etc/default/berth-agent)"
        ),
    }
}

/// Removes every `join_token = …` line of the TOML file at `path` (and the first-boot file's
/// comment naming its origin, the line before), keeping its mode; whether there was one.
pub(crate) fn remove_join_token(path: &Path) -> Result<bool, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let Some(kept) = without_join_token(&text) else {
        return Ok(false);
    };
    let still_set = kept
        .parse::<toml::Table>()
        .map_or(true, |table| table.contains_key("join_token"));
    if still_set {
        return Err(TokenError::NotRemovable {
            path: path.to_owned(),
        });
    }
    let write_err = |source| TokenError::Write {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(write_err)?
        .permissions()
        .mode();
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode & 0o7777)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(kept.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)?;
    Ok(true)
}

/// The text without its `join_token` lines (and a `# from …` comment just before one); `None`
/// when it has none.
fn without_join_token(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_token = |line: &str| {
        line.trim_start()
            .strip_prefix("join_token")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    if !lines.iter().any(|l| is_token(l)) {
        return None;
    }
    let mut kept = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let origin_comment =
            line.starts_with("# from ") && lines.get(i + 1).is_some_and(|next| is_token(next));
        if !is_token(line) && !origin_comment {
            kept.push_str(line);
        }
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_line_and_its_origin_go_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("first-boot.toml");
        let text = "# header\n\n# from user data /u, line 3\ncluster = \"prod\"\n# from EC2 tag berth:join_token\njoin_token = \"berth-join-abc\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(remove_join_token(&path).unwrap());
        let kept = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            kept,
            "# header\n\n# from user data /u, line 3\ncluster = \"prod\"\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!remove_join_token(&path).unwrap(), "nothing left to remove");
    }

    #[test]
    fn a_token_in_a_form_lines_cannot_remove_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "join_token = \"a\"\n\"join_token\" = \"b\"\n").unwrap();
        let err = remove_join_token(&path).unwrap_err();
        assert!(matches!(err, TokenError::NotRemovable { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "join_token = \"a\"\n\"join_token\" = \"b\"\n",
            "left untouched"
        );
    }
}

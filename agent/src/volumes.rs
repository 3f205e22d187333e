//! Which host paths a task may bind-mount: ECS `host.sourcePath` is checked against the agent's
//! `volume_host_paths` when the task is assigned, so that a task definition cannot mount the
//! host's root or any directory the operator did not hand out.
//!
//! Both sides are compared as the host resolves them at that moment: `..` and symlinks are
//! resolved (`canonicalize`), and a path is allowed only when it is one of the allowed
//! directories or lies below one, component by component (`/srv/data2` is not below
//! `/srv/data`).

use std::path::{Path, PathBuf};

/// The host path to bind for `source`, resolved, when it lies in one of `allowed`; otherwise
/// why not, for people (the reason a task fails to start).
pub fn allowed_host_path(
    volume: &str,
    source: &str,
    allowed: &[PathBuf],
) -> Result<PathBuf, String> {
    let refuse = |why: String| format!("volume {volume}: host path {source} {why}");
    let path = Path::new(source);
    if !path.is_absolute() {
        return Err(refuse("is not an absolute path".to_owned()));
    }
    if allowed.is_empty() {
        return Err(refuse(
            "cannot be mounted: this agent allows no host paths (set volume_host_paths to the directories tasks may mount)"
                .to_owned(),
        ));
    }
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| refuse(format!("cannot be resolved on this host: {e}")))?;
    let inside = allowed
        .iter()
        .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| resolved.starts_with(&dir)));
    if inside {
        Ok(resolved)
    } else {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        let shown = if resolved == path {
            String::new()
        } else {
            format!(" (resolved to {})", resolved.display())
        };
        Err(refuse(format!(
            "is outside the directories this agent allows{shown}; volume_host_paths: {}",
            list.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        /// `allowed/data/file`, `allowed2/`, `secret/` and a few symlinks.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join("allowed/data")).unwrap();
            std::fs::write(root.join("allowed/data/file"), "x").unwrap();
            std::fs::create_dir_all(root.join("allowed2")).unwrap();
            std::fs::create_dir_all(root.join("secret")).unwrap();
            std::os::unix::fs::symlink(root.join("secret"), root.join("allowed/escape")).unwrap();
            std::os::unix::fs::symlink(root.join("allowed/data"), root.join("link-in")).unwrap();
            Host { dir }
        }

        fn path(&self, rel: &str) -> String {
            format!("{}/{rel}", self.dir.path().display())
        }

        fn allowed(&self) -> Vec<PathBuf> {
            vec![PathBuf::from(self.path("allowed"))]
        }
    }

    #[test]
    fn paths_inside_an_allowed_directory_are_resolved_and_allowed() {
        let host = Host::new();
        let resolved = std::fs::canonicalize(host.path("allowed/data")).unwrap();
        assert_eq!(
            allowed_host_path("v", &host.path("allowed/data"), &host.allowed()),
            Ok(resolved.clone())
        );
        assert_eq!(
            allowed_host_path("v", &host.path("allowed"), &host.allowed()),
            Ok(std::fs::canonicalize(host.path("allowed")).unwrap())
        );
        assert_eq!(
            allowed_host_path("v", &host.path("allowed/data/file"), &host.allowed()),
            Ok(resolved.join("file"))
        );
        // A symlink outside that points inside is what it points to.
        assert_eq!(
            allowed_host_path("v", &host.path("link-in"), &host.allowed()),
            Ok(resolved)
        );
    }

    #[test]
    fn dot_dot_and_symlink_escapes_are_refused() {
        let host = Host::new();
        for escape in [
            "allowed/../secret",
            "allowed/data/../../secret",
            "allowed/escape",
        ] {
            let err = allowed_host_path("v", &host.path(escape), &host.allowed()).unwrap_err();
            assert!(
                err.contains("is outside the directories this agent allows (resolved to")
                    && err.contains("secret"),
                "{escape}: {err}"
            );
        }
    }

    #[test]
    fn a_sibling_with_the_same_prefix_is_not_inside() {
        let host = Host::new();
        let err = allowed_host_path("v", &host.path("allowed2"), &host.allowed()).unwrap_err();
        assert!(err.contains("is outside the directories"), "{err}");
    }

    #[test]
    fn the_host_root_is_refused_with_what_is_allowed() {
        let host = Host::new();
        assert_eq!(
            allowed_host_path("data", "/", &host.allowed()).unwrap_err(),
            format!(
                "volume data: host path / is outside the directories this agent allows; volume_host_paths: {}",
                host.path("allowed")
            )
        );
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert_eq!(
            allowed_host_path("data", "/srv/data", &[]).unwrap_err(),
            "volume data: host path /srv/data cannot be mounted: this agent allows no host paths (set volume_host_paths to the directories tasks may mount)"
        );
    }

    #[test]
    fn missing_and_relative_paths_are_refused() {
        let host = Host::new();
        let err =
            allowed_host_path("v", &host.path("allowed/missing"), &host.allowed()).unwrap_err();
        assert!(err.contains("cannot be resolved on this host"), "{err}");
        assert_eq!(
            allowed_host_path("v", "srv", &host.allowed()).unwrap_err(),
            "volume v: host path srv is not an absolute path"
        );
    }
}

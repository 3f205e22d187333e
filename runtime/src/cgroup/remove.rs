//! Removing a cgroup directory tree: children first, tolerating ENOENT, retrying EBUSY briefly.

use std::io;
use std::path::Path;
use std::thread;
use std::time::Duration;

use nix::errno::Errno;

use super::error::CgroupError;

/// Waits between rmdir attempts of a busy cgroup (the kernel may still be tearing down the last
/// task's css): 10 + 20 + 40 + 80 ms, then one last attempt; about 150 ms in all.
const BUSY_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
];

/// Removes the cgroup at `dir` and any leftover child cgroups under it, deepest first.
///
/// A missing directory is success. Only directories are removed: on cgroupfs, rmdir removes a
/// cgroup together with its interface files, and regular files cannot be unlinked anyway.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Io {
            op: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        // file_type does not follow symlinks: a symlink to elsewhere is never descended into.
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "stat",
                    path: entry.path(),
                    source,
                });
            }
        };
        if is_dir {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    rmdir_with_retry(dir)
}

fn rmdir_with_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut delays = BUSY_RETRY_DELAYS.iter();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(path = %dir.display(), ?delay, "cgroup busy, retrying rmdir");
                    thread::sleep(*delay);
                }
                None => {
                    return Err(CgroupError::Remove {
                        path: dir.to_path_buf(),
                        source: e,
                    });
                }
            },
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_nested_empty_directories_and_tolerates_missing_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let task = tmp.path().join("berth/t1");
        std::fs::create_dir_all(task.join("app/leftover")).expect("mkdir");
        std::fs::create_dir_all(task.join("sidecar")).expect("mkdir");
        remove_cgroup_tree(&task).expect("removed");
        assert!(!task.exists());
        assert!(tmp.path().join("berth").is_dir(), "the parent stays");
        remove_cgroup_tree(&task).expect("missing is fine");
    }

    #[test]
    fn failure_names_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let task = tmp.path().join("t1");
        std::fs::create_dir_all(task.join("app")).expect("mkdir");
        // A regular file: a plain directory (unlike cgroupfs) refuses rmdir with ENOTEMPTY, which
        // is not retried.
        std::fs::write(task.join("app/stray"), "x").expect("write");
        let err = remove_cgroup_tree(&task).expect_err("not empty");
        assert_eq!(
            err.to_string(),
            format!("cannot remove cgroup {}", task.join("app").display())
        );
        assert!(task.exists());
    }
}

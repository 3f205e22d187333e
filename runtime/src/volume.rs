//! Per-task volumes on the host: `<volume root>/<task-id>/<volume-name>`, a plain directory or
//! a tmpfs mounted there (so that every container of the task binds the same one), and the
//! staging points of its host paths (`host_bind.rs`), removed with the task. The root is a
//! parameter, so plain directories are unit-tested without root.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::cgroup::validate_id;
use crate::error::Error;
use crate::model::{TaskVolume, TaskVolumeKind};

mod host_bind;

/// Creates every volume of a task under `root` (idempotent: an existing directory is kept, a
/// tmpfs already mounted is not mounted again) and returns each one's host path by name.
pub(crate) fn create(
    root: &Path,
    task_id: &str,
    volumes: &[TaskVolume],
) -> Result<BTreeMap<String, PathBuf>, Error> {
    validate_id("task id", task_id)?;
    let task_dir = root.join(task_id);
    let mut paths = BTreeMap::new();
    for volume in volumes {
        validate_id("volume name", &volume.name)?;
        if let TaskVolumeKind::HostPath { path } = &volume.kind {
            let staged = host_bind::bind(&task_dir, &volume.name, path)?;
            paths.insert(volume.name.clone(), staged);
            continue;
        }
        let dir = task_dir.join(&volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("create the task volume directory", dir.clone(), e))?;
        if let TaskVolumeKind::Tmpfs { device, options } = &volume.kind
            && !is_mount_point(&dir)?
        {
            let (flags, data) = tmpfs_options(options);
            let source = if device.is_empty() { "tmpfs" } else { device };
            nix::mount::mount(
                Some(source),
                &dir,
                Some("tmpfs"),
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .map_err(|e| Error::io("mount the task's tmpfs volume", dir.clone(), e.into()))?;
        }
        paths.insert(volume.name.clone(), dir);
    }
    Ok(paths)
}

/// Unmounts every tmpfs of a task's volumes and removes its volume directory. Idempotent; it
/// needs nothing but the task ID, so it also works after an agent restart.
pub(crate) fn remove(root: &Path, task_id: &str) -> Result<(), Error> {
    validate_id("task id", task_id)?;
    let task_dir = root.join(task_id);
    // The host paths first: the removal below must never descend into one.
    host_bind::unbind_all(&task_dir)?;
    let entries = match std::fs::read_dir(&task_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read the task's volumes", task_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read the task's volumes", task_dir.clone(), e))?;
        let dir = entry.path();
        // Lazily, so that a container still holding it does not keep the directory busy; a
        // mount point is never followed by the removal below.
        while is_mount_point(&dir)? {
            nix::mount::umount2(&dir, MntFlags::MNT_DETACH)
                .map_err(|e| Error::io("unmount the task's tmpfs volume", dir.clone(), e.into()))?;
        }
    }
    match std::fs::remove_dir_all(&task_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove the task's volumes", task_dir, e)),
    }
}

/// Whether `dir` is the root of a mount other than its parent's: a different device (as for a
/// tmpfs). A symlink is never one.
fn is_mount_point(dir: &Path) -> Result<bool, Error> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("inspect the task volume", dir.to_path_buf(), e)),
    };
    if !meta.is_dir() {
        return Ok(false);
    }
    let parent = dir.parent().unwrap_or(dir);
    let parent_meta = std::fs::metadata(parent)
        .map_err(|e| Error::io("inspect the task volume", parent.to_path_buf(), e))?;
    Ok(meta.dev() != parent_meta.dev())
}

/// Splits tmpfs options into mount flags and the filesystem's data string; a task's tmpfs is
/// always `nosuid,nodev` (the agent refuses `suid` and `dev` unless privileged containers are
/// allowed, and the container's bind of it is `nosuid,nodev` as well).
fn tmpfs_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "suid" | "dev" | "exec" | "atime" | "diratime" | "norelatime" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> TaskVolume {
        TaskVolume {
            name: name.to_owned(),
            kind: TaskVolumeKind::Directory,
        }
    }

    #[test]
    fn directories_are_created_per_task_and_removed_with_it() {
        let root = tempfile::tempdir().unwrap();
        let paths = create(root.path(), "t-1", &[dir("data"), dir("cache")]).unwrap();
        assert_eq!(paths["data"], root.path().join("t-1/data"));
        assert!(paths["cache"].is_dir());
        std::fs::write(paths["data"].join("file"), "x").unwrap();
        // Again (a retried start): kept as it is.
        create(root.path(), "t-1", &[dir("data")]).unwrap();
        assert!(paths["data"].join("file").exists());
        create(root.path(), "t-2", &[dir("data")]).unwrap();
        remove(root.path(), "t-1").unwrap();
        assert!(!root.path().join("t-1").exists());
        assert!(
            root.path().join("t-2/data").is_dir(),
            "other tasks are kept"
        );
        remove(root.path(), "t-1").unwrap();
        remove(root.path(), "never-created").unwrap();
    }

    #[test]
    fn names_that_are_not_one_path_component_are_refused() {
        let root = tempfile::tempdir().unwrap();
        for name in ["..", "a/b", ""] {
            assert!(create(root.path(), "t", &[dir(name)]).is_err(), "{name:?}");
        }
        assert!(create(root.path(), "../t", &[dir("a")]).is_err());
        assert!(remove(root.path(), "..").is_err());
    }

    #[test]
    fn a_plain_directory_is_not_a_mount_point() {
        let root = tempfile::tempdir().unwrap();
        let paths = create(root.path(), "t", &[dir("data")]).unwrap();
        assert!(!is_mount_point(&paths["data"]).unwrap());
        assert!(!is_mount_point(&root.path().join("missing")).unwrap());
    }

    #[test]
    fn tmpfs_options_split_into_flags_and_data() {
        let options: Vec<String> = ["size=64m", "noexec", "mode=1777", "nosuid", "rw"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (flags, data) = tmpfs_options(&options);
        assert_eq!(
            flags,
            MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(data, "size=64m,mode=1777");
    }
}

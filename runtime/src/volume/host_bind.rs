//! Host paths bound into a task from what the agent checked, with no window between the check
//! and the mount: the path (absolute, as the agent resolved it when it allowed it) is opened
//! one component at a time from `/` with `O_PATH | O_NOFOLLOW`, refusing any symlink, so a
//! symlink swapped in since the check fails the task instead of being followed; what was
//! opened is bind-mounted through its descriptor (`/proc/self/fd/N`) onto a staging point the
//! agent owns, `<volume root>/<task-id>/.host/<volume>`, and the containers bind that. A later
//! swap of the host path changes nothing the task sees. The staging points are unmounted with
//! the task's volumes ([`super::remove`]), which needs only the task ID.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag, fstat};

use crate::error::Error;
use crate::safe_read::{SafeReadError, Symlinks, open_below};

/// The directory of a task's staging points, inside its volume directory. Volume names never
/// start with a dot, so it cannot meet a volume.
pub(super) const STAGING_DIR: &str = ".host";

/// Opens `path` without following any symlink and binds what it opened onto
/// `<task_dir>/.host/<name>`; returns that staging point. A staging point already there (a
/// retried start) is unmounted and bound again from a fresh open.
pub(super) fn bind(task_dir: &Path, name: &str, path: &Path) -> Result<PathBuf, Error> {
    let opened = open_checked(path)?;
    let kind = SFlag::from_bits_truncate(
        fstat(&opened)
            .map_err(|e| Error::io("inspect the host path", path.to_path_buf(), e.into()))?
            .st_mode,
    ) & SFlag::S_IFMT;
    let staging = task_dir.join(STAGING_DIR);
    std::fs::create_dir_all(&staging)
        .map_err(|e| Error::io("create the host path staging directory", staging.clone(), e))?;
    let target = staging.join(name);
    unmount_all(&target)?;
    // The mount point has the type of what is bound: a directory for a directory, an empty
    // file for anything else (a file, a socket, a device node).
    let made = if kind == SFlag::S_IFDIR {
        std::fs::create_dir_all(&target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map(drop)
    };
    made.map_err(|e| Error::io("create the host path staging point", target.clone(), e))?;
    let source = PathBuf::from(format!("/proc/self/fd/{}", opened.as_raw_fd()));
    nix::mount::mount(
        Some(&source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io("bind the checked host path", path.to_path_buf(), e.into()))?;
    tracing::debug!(host.path = %path.display(), staging = %target.display(), "host path bound from its descriptor");
    Ok(target)
}

/// An `O_PATH` descriptor of `path`, walked from `/` without following any symlink.
fn open_checked(path: &Path) -> Result<OwnedFd, Error> {
    let failed = |e: SafeReadError| {
        let reason = format!("{e}; it changed since the task was checked");
        Error::io(
            "open the host path without following symlinks",
            path.to_path_buf(),
            std::io::Error::other(reason),
        )
    };
    if !path.is_absolute() {
        return Err(failed(SafeReadError::NotFound));
    }
    let root = openat(
        nix::fcntl::AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open the host's root", PathBuf::from("/"), e.into()))?;
    open_below(&root, path, Symlinks::Refuse).map_err(failed)
}

/// Unmounts everything stacked on `target` (lazily, so a container still holding it does not
/// keep it busy), never following a symlink. Nothing there, or no mount there, is fine.
pub(super) fn unmount_all(target: &Path) -> Result<(), Error> {
    loop {
        match nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::io(
                    "unmount the host path staging point",
                    target.to_path_buf(),
                    e.into(),
                ));
            }
        }
    }
}

/// Unmounts every staging point of the task whose volume directory is `task_dir`.
pub(super) fn unbind_all(task_dir: &Path) -> Result<(), Error> {
    let staging = task_dir.join(STAGING_DIR);
    let entries = match std::fs::read_dir(&staging) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read the host path staging points", staging, e)),
    };
    for entry in entries {
        let entry = entry
            .map_err(|e| Error::io("read the host path staging points", staging.clone(), e))?;
        unmount_all(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_anywhere_on_the_checked_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("swapped")).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert!(open_checked(&root.join("real")).is_ok());
        let err = open_checked(&root.join("swapped")).unwrap_err().to_string();
        assert!(
            err.contains("is a symbolic link, which is not followed here; it changed since the task was checked"),
            "{err}"
        );
        assert!(open_checked(&root.join("swapped/etc")).is_err());
        assert!(open_checked(Path::new("relative")).is_err());
    }

    #[test]
    fn nothing_mounted_is_nothing_to_unmount() {
        let dir = tempfile::tempdir().unwrap();
        unmount_all(&dir.path().join("missing")).unwrap();
        std::fs::create_dir(dir.path().join("plain")).unwrap();
        unmount_all(&dir.path().join("plain")).unwrap();
        unbind_all(dir.path()).unwrap();
    }
}

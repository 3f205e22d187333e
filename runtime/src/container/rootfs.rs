//! Reading files from a container's prepared root filesystem before it starts: the user
//! database that resolves `user` names, as containerd's client does with a temporary
//! read-only mount. The image is someone else's, so each file is found inside that mount by
//! [`crate::safe_read`] (symlinks resolved within the image, never through a host path; a
//! regular file only, at most [`MAX_IMAGE_FILE_BYTES`]), and the caller bounds the whole read
//! by [`READ_DEADLINE`]. The mount is undone on every path.

use std::path::Path;
use std::time::Duration;

use containerd_client::types::Mount;
use nix::mount::{MntFlags, MsFlags};

use crate::safe_read::{SafeReadError, Symlinks, read_below};

/// The largest file read from an image: a user database of many thousands of entries.
pub(crate) const MAX_IMAGE_FILE_BYTES: u64 = 4 << 20;
/// How long reading an image's user database may take.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(30);

/// The image's /etc/passwd and /etc/group (each absent when the image has none).
#[derive(Debug, Default)]
pub(crate) struct UserDatabase {
    pub(crate) passwd: Option<String>,
    pub(crate) group: Option<String>,
}

/// Why the user database could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RootfsError {
    /// The snapshot could not be mounted to read it.
    #[error("cannot mount the image's root filesystem to read its user database: {0}")]
    Mount(std::io::Error),
    /// A file the image has in a form that is not read.
    #[error("the image's {path} {error}")]
    File {
        path: &'static str,
        error: SafeReadError,
    },
    /// A file that is not text.
    #[error("the image's {0} is not UTF-8 text")]
    NotText(&'static str),
}

/// Mounts the snapshot read-only under `scratch`, reads the two files, unmounts.
pub(crate) fn read_user_database(
    mounts: &[Mount],
    scratch: &Path,
) -> Result<UserDatabase, RootfsError> {
    std::fs::create_dir_all(scratch).map_err(RootfsError::Mount)?;
    let mounted = mount_all(mounts, scratch).map_err(RootfsError::Mount);
    let result = mounted.and_then(|()| {
        Ok(UserDatabase {
            passwd: read_file(scratch, "/etc/passwd")?,
            group: read_file(scratch, "/etc/group")?,
        })
    });
    // Unmount on every path; a failed mount left nothing to unmount.
    let _ = nix::mount::umount2(scratch, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(scratch);
    result
}

/// The text of the image's file `path` under `root`, None when the image has none.
fn read_file(root: &Path, path: &'static str) -> Result<Option<String>, RootfsError> {
    match read_below(
        root,
        Path::new(path),
        Symlinks::InRoot,
        MAX_IMAGE_FILE_BYTES,
    ) {
        Ok(data) => String::from_utf8(data)
            .map(Some)
            .map_err(|_| RootfsError::NotText(path)),
        Err(SafeReadError::NotFound) => Ok(None),
        Err(error) => Err(RootfsError::File { path, error }),
    }
}

fn mount_all(mounts: &[Mount], target: &Path) -> std::io::Result<()> {
    let [m] = mounts else {
        return Err(std::io::Error::other(format!(
            "expected one mount for the snapshot, containerd gave {}",
            mounts.len()
        )));
    };
    let (flags, data) = parse_options(&m.options);
    nix::mount::mount(
        Some(m.source.as_str()),
        target,
        Some(m.r#type.as_str()),
        flags | MsFlags::MS_RDONLY,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Splits mount options into flags and the filesystem-specific data string.
fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_files_are_refused_by_what_they_are() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::os::unix::fs::symlink("/dev/zero", etc.join("passwd")).unwrap();
        assert!(read_file(root.path(), "/etc/passwd").unwrap().is_none());
        std::fs::remove_file(etc.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/shadow", etc.join("passwd")).unwrap();
        assert_eq!(
            read_file(root.path(), "/etc/passwd")
                .unwrap_err()
                .to_string(),
            "the image's /etc/passwd is a symbolic link that points outside the image's root \
             filesystem"
        );
        std::fs::remove_file(etc.join("passwd")).unwrap();
        nix::unistd::mkfifo(&etc.join("passwd"), nix::sys::stat::Mode::S_IRUSR).unwrap();
        assert_eq!(
            read_file(root.path(), "/etc/passwd")
                .unwrap_err()
                .to_string(),
            "the image's /etc/passwd is a FIFO, not a regular file"
        );
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        assert_eq!(
            read_file(root.path(), "/etc/group").unwrap().as_deref(),
            Some("root:x:0:\n")
        );
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = [
            "index=off",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
            "ro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, data) = parse_options(&opts);
        assert!(flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(data, "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w");
        let (flags, data) = parse_options(&["rbind".to_string(), "rw".to_string()]);
        assert!(flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(data.is_empty());
    }
}

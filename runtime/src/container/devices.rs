//! The host's device nodes: all of them for a privileged container (Docker's `--privileged`
//! lists every character and block device under `/dev`), and those a container maps (ECS
//! `devices`, Docker's `--device`).

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

/// Directories under `/dev` that are never copied: the container mounts its own pts, shm and
/// mqueue, and udev's and lxc's private state is not a device.
const SKIPPED_DIRS: [&str; 5] = ["pts", "shm", "mqueue", ".lxc", ".udev"];

/// Every character and block device below `dev_root` (the host's `/dev`), as it appears in the
/// container under `/dev`, sorted by path. Symbolic links are not followed.
pub(crate) fn host_devices(dev_root: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let mut devices = Vec::new();
    walk(dev_root, Path::new("/dev"), 0, &mut devices)?;
    devices.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(devices)
}

/// The device nodes of a mapping: `host_path` itself when it is a device, or every device
/// below it when it is a directory, as Docker's `--device` maps a directory; each as it
/// appears in the container below `container_path`. `host_path` is the path the agent resolved
/// when it allowed it: it is opened again without following any symlink (one swapped in since
/// fails the mapping), and the type, major and minor come from what was opened, never from a
/// second lookup of the path. Anything else is an error of kind InvalidInput that says what
/// the path is.
pub(crate) fn mapped_devices(
    host_path: &Path,
    container_path: &Path,
) -> std::io::Result<Vec<LinuxDevice>> {
    let opened = open_checked(host_path)?;
    // The descriptor's magic link names the opened file itself: stat and read_dir through it
    // look at what was opened, not at whatever the path names now.
    let by_fd = std::path::PathBuf::from(format!("/proc/self/fd/{}", opened.as_raw_fd()));
    let meta = std::fs::metadata(&by_fd)?;
    if meta.is_dir() {
        let mut devices = Vec::new();
        walk(&by_fd, container_path, 1, &mut devices)?;
        devices.sort_by(|a, b| a.path().cmp(b.path()));
        return Ok(devices);
    }
    node(container_path.to_path_buf(), &meta)
        .map(|device| vec![device])
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is neither a character nor a block device, nor a directory of them",
            )
        })
}

/// An `O_PATH` descriptor of the absolute `path`, walked from `/` refusing any symlink.
fn open_checked(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    let root = nix::fcntl::openat(
        nix::fcntl::AT_FDCWD,
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    crate::safe_read::open_below(&root, path, crate::safe_read::Symlinks::Refuse).map_err(|e| {
        let kind = match e {
            crate::safe_read::SafeReadError::NotFound => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, format!("{e}; it changed since the task was checked"))
    })
}

/// The OCI device of a character or block device's metadata, at `path` in the container.
fn node(path: std::path::PathBuf, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let file_type = meta.file_type();
    let typ = if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let (major, minor) = split_rdev(meta.rdev());
    let mut device = LinuxDevice::default();
    device.set_path(path);
    device.set_typ(typ);
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(Some(meta.mode() & 0o7777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    Some(device)
}

fn walk(
    dir: &Path,
    in_container: &Path,
    depth: usize,
    devices: &mut Vec<LinuxDevice>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let meta = match std::fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            // A device that disappeared while listing is simply not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file_type = meta.file_type();
        let path = in_container.join(&name);
        if file_type.is_dir() {
            let skipped = depth == 0 && SKIPPED_DIRS.iter().any(|d| name == *d);
            if !skipped {
                walk(&entry.path(), &path, depth + 1, devices)?;
            }
            continue;
        }
        if let Some(device) = node(path, &meta) {
            devices.push(device);
        }
    }
    Ok(())
}

/// glibc's `major()` and `minor()` of a `dev_t`.
fn split_rdev(rdev: u64) -> (i64, i64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        i64::try_from(major).unwrap_or(i64::MAX),
        i64::try_from(minor).unwrap_or(i64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_splits_like_glibc() {
        assert_eq!(split_rdev(0x0103), (1, 3));
        // glibc's makedev() of major 259, minor 65536 (an NVMe partition far down the list).
        let (major, minor) = (259u64, 65536u64);
        let rdev = ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12);
        assert_eq!(split_rdev(rdev), (259, 65536));
    }

    #[test]
    fn the_hosts_null_device_is_listed_and_pts_is_skipped() {
        let devices = host_devices(Path::new("/dev")).expect("list /dev");
        let null = devices
            .iter()
            .find(|d| d.path() == Path::new("/dev/null"))
            .expect("/dev/null");
        assert_eq!(
            (null.typ(), null.major(), null.minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        assert!(devices.iter().all(|d| !d.path().starts_with("/dev/pts")));
    }

    #[test]
    fn a_mapped_device_keeps_its_numbers_at_its_container_path() {
        let devices =
            mapped_devices(Path::new("/dev/null"), Path::new("/dev/nothing")).expect("/dev/null");
        assert_eq!(devices.len(), 1);
        let null = &devices[0];
        assert_eq!(
            (
                null.path().as_path(),
                null.typ(),
                null.major(),
                null.minor()
            ),
            (Path::new("/dev/nothing"), LinuxDeviceType::C, 1, 3)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("file"), "x").expect("write");
        let err =
            mapped_devices(&dir.path().join("file"), Path::new("/dev/x")).expect_err("a file");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(
            mapped_devices(&dir.path().join("missing"), Path::new("/dev/x"))
                .expect_err("missing")
                .kind(),
            std::io::ErrorKind::NotFound
        );
        // A directory maps the devices below it; a plain one has none.
        assert_eq!(
            mapped_devices(dir.path(), Path::new("/dev/d")).expect("dir"),
            Vec::new()
        );
    }

    #[test]
    fn a_symlink_swapped_in_after_the_check_is_never_followed() {
        // The agent hands over the path as it resolved it; a symlink there now (to another
        // device, or to a directory of them) was swapped in since, and fails the mapping.
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("disk");
        std::os::unix::fs::symlink("/dev/null", &link).expect("symlink");
        let err = mapped_devices(&link, Path::new("/dev/x")).expect_err("a symlink");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::os::unix::fs::symlink("/dev", dir.path().join("devs")).expect("symlink");
        assert!(mapped_devices(&dir.path().join("devs"), Path::new("/dev/d")).is_err());
    }

    #[test]
    fn a_tree_without_devices_gives_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/file"), "x").expect("write");
        assert_eq!(host_devices(dir.path()).expect("list"), Vec::new());
    }
}

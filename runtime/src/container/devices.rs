//! The host's device nodes, which a privileged container gets all of (Docker's `--privileged`
//! lists every character and block device under `/dev`).

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
        let typ = if file_type.is_char_device() {
            LinuxDeviceType::C
        } else if file_type.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
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
        devices.push(device);
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
    fn a_tree_without_devices_gives_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/file"), "x").expect("write");
        assert_eq!(host_devices(dir.path()).expect("list"), Vec::new());
    }
}

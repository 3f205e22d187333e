//! Which host devices a task may map: ECS `linuxParameters.devices` are checked against the
//! agent's `allowed_devices` when the task is assigned, so that a task definition cannot reach
//! the host's disks, memory or any device the operator did not hand out.
//!
//! Both sides are compared as the host resolves them at that moment (`..` and symlinks, so
//! `/dev/disk/by-id/...` is the disk it names), and a device is allowed when it is one of the
//! allowed paths or lies below one, component by component (`/dev/fuse2` is not below
//! `/dev/fuse`; `/dev/snd/pcmC0D0p` is below `/dev/snd`). The path must be a character or
//! block device, or a directory of them (which maps every device below it, as Docker does).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The host path to map for `host_path`, resolved, when it is a device (or a directory) inside
/// `allowed`; otherwise why not, for people (the reason a task fails to start).
pub fn allowed_device(
    container: &str,
    host_path: &str,
    allowed: &[PathBuf],
) -> Result<PathBuf, String> {
    let refuse = |why: String| format!("container {container}: device {host_path} {why}");
    let path = Path::new(host_path);
    if !path.is_absolute() {
        return Err(refuse("is not an absolute path".to_owned()));
    }
    if allowed.is_empty() {
        return Err(refuse(
            "cannot be mapped: this agent allows no host devices (set allowed_devices, \
             BERTH_ALLOWED_DEVICES, to the devices tasks may use)"
                .to_owned(),
        ));
    }
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| refuse(format!("cannot be resolved on this host: {e}")))?;
    let shown = if resolved == path {
        String::new()
    } else {
        format!(" (resolved to {})", resolved.display())
    };
    let inside = allowed
        .iter()
        .any(|dev| std::fs::canonicalize(dev).is_ok_and(|dev| resolved.starts_with(&dev)));
    if !inside {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        return Err(refuse(format!(
            "is not among the devices this agent allows{shown}; allowed_devices: {}",
            list.join(", ")
        )));
    }
    let file_type = std::fs::metadata(&resolved)
        .map_err(|e| refuse(format!("cannot be read on this host: {e}")))?
        .file_type();
    if file_type.is_char_device() || file_type.is_block_device() || file_type.is_dir() {
        Ok(resolved)
    } else {
        Err(refuse(format!(
            "is not a device{shown}: map a character or block device, or a directory of them"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowed_device_is_resolved_and_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let allowed = [PathBuf::from("/dev/null")];
        assert_eq!(
            allowed_device("app", "/dev/null", &allowed),
            Ok(PathBuf::from("/dev/null"))
        );
        assert_eq!(
            allowed_device("app", &link.to_string_lossy(), &allowed),
            Ok(PathBuf::from("/dev/null")),
            "a symlink is the device it names"
        );
        // A directory allows what lies below it, and may be mapped whole.
        let dev = [PathBuf::from("/dev")];
        assert_eq!(
            allowed_device("app", "/dev/zero", &dev),
            Ok(PathBuf::from("/dev/zero"))
        );
        assert_eq!(
            allowed_device("app", "/dev", &dev),
            Ok(PathBuf::from("/dev"))
        );
    }

    #[test]
    fn devices_outside_the_allowed_ones_are_refused_with_the_list() {
        let allowed = [PathBuf::from("/dev/null")];
        assert_eq!(
            allowed_device("app", "/dev/zero", &allowed).unwrap_err(),
            "container app: device /dev/zero is not among the devices this agent allows; \
             allowed_devices: /dev/null"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = allowed_device("app", &link.to_string_lossy(), &allowed).unwrap_err();
        assert!(
            err.contains("is not among the devices this agent allows (resolved to /dev/zero)"),
            "{err}"
        );
        // Same prefix, another name: not below it.
        let err = allowed_device("app", "/dev/null", &[PathBuf::from("/dev/nul")]).unwrap_err();
        assert!(err.contains("is not among the devices"), "{err}");
    }

    #[test]
    fn nothing_is_allowed_by_default_and_files_are_not_devices() {
        assert_eq!(
            allowed_device("app", "/dev/fuse", &[]).unwrap_err(),
            "container app: device /dev/fuse cannot be mapped: this agent allows no host devices \
             (set allowed_devices, BERTH_ALLOWED_DEVICES, to the devices tasks may use)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let file = std::fs::canonicalize(file).unwrap();
        let err = allowed_device("app", &file.to_string_lossy(), std::slice::from_ref(&file))
            .unwrap_err();
        assert!(
            err.ends_with(
                "is not a device: map a character or block device, or a directory of them"
            ),
            "{err}"
        );
        let err =
            allowed_device("app", "/dev/no-such-device", &[PathBuf::from("/dev")]).unwrap_err();
        assert!(err.contains("cannot be resolved on this host"), "{err}");
        assert_eq!(
            allowed_device("app", "dev/fuse", &[PathBuf::from("/dev")]).unwrap_err(),
            "container app: device dev/fuse is not an absolute path"
        );
    }
}

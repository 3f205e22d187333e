//! Which host devices a task may map: ECS `linuxParameters.devices` are checked against the
//! agent's `allowed_devices` when the task starts, before anything is pulled (see `allow.rs`
//! for how paths are compared). The path must be a character or block device, or a directory
//! of them (which maps every device below it, as Docker does).

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use super::allow::resolve_allowed;
use super::error::{HostPath, InputError};

/// The host path to map for `host_path`, resolved, when it is a device (or a directory) inside
/// `allowed`.
pub(crate) fn allowed_device(
    container: &str,
    host_path: &str,
    allowed: &[PathBuf],
) -> Result<PathBuf, InputError> {
    let subject = HostPath::Device {
        container: container.to_owned(),
        path: host_path.to_owned(),
    };
    let resolved = resolve_allowed(subject.clone(), allowed)?;
    let file_type = match std::fs::metadata(&resolved) {
        Ok(meta) => meta.file_type(),
        Err(error) => return Err(InputError::Unreadable { subject, error }),
    };
    if file_type.is_char_device() || file_type.is_block_device() || file_type.is_dir() {
        Ok(resolved)
    } else {
        Err(InputError::NotADevice { subject, resolved })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(container: &str, host_path: &str, allowed: &[PathBuf]) -> String {
        allowed_device(container, host_path, allowed)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_allowed_device_is_resolved_and_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let allowed = [PathBuf::from("/dev/null")];
        assert_eq!(
            allowed_device("app", "/dev/null", &allowed).unwrap(),
            PathBuf::from("/dev/null")
        );
        assert_eq!(
            allowed_device("app", &link.to_string_lossy(), &allowed).unwrap(),
            PathBuf::from("/dev/null"),
            "a symlink is the device it names"
        );
        // A directory allows what lies below it, and may be mapped whole.
        let dev = [PathBuf::from("/dev")];
        assert_eq!(
            allowed_device("app", "/dev/zero", &dev).unwrap(),
            PathBuf::from("/dev/zero")
        );
        assert_eq!(
            allowed_device("app", "/dev", &dev).unwrap(),
            PathBuf::from("/dev")
        );
    }

    #[test]
    fn devices_outside_the_allowed_ones_are_refused_with_the_list() {
        let allowed = [PathBuf::from("/dev/null")];
        assert_eq!(
            refused("app", "/dev/zero", &allowed),
            "container app: device /dev/zero is not among the devices this agent allows; \
             allowed_devices: /dev/null"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = refused("app", &link.to_string_lossy(), &allowed);
        assert!(
            err.contains("is not among the devices this agent allows (resolved to /dev/zero)"),
            "{err}"
        );
        // Same prefix, another name: not below it.
        let err = refused("app", "/dev/null", &[PathBuf::from("/dev/nul")]);
        assert!(err.contains("is not among the devices"), "{err}");
    }

    #[test]
    fn nothing_is_allowed_by_default_and_files_are_not_devices() {
        assert_eq!(
            refused("app", "/dev/fuse", &[]),
            "container app: device /dev/fuse cannot be mapped: this agent allows no host devices \
             (set allowed_devices, BERTH_ALLOWED_DEVICES, to the devices tasks may use)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let file = std::fs::canonicalize(file).unwrap();
        let err = refused("app", &file.to_string_lossy(), std::slice::from_ref(&file));
        assert!(
            err.ends_with(
                "is not a device: map a character or block device, or a directory of them"
            ),
            "{err}"
        );
        let err = refused("app", "/dev/no-such-device", &[PathBuf::from("/dev")]);
        assert!(err.contains("cannot be resolved on this host"), "{err}");
        assert_eq!(
            refused("app", "dev/fuse", &[PathBuf::from("/dev")]),
            "container app: device dev/fuse is not an absolute path"
        );
    }
}

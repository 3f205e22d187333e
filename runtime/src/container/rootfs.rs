//! Reading files from a container's prepared root filesystem before it starts: the user
//! database that resolves `user` names, as containerd's client does with a temporary mount.

use std::path::Path;

use containerd_client::types::Mount;
use nix::mount::{MntFlags, MsFlags};

/// The image's /etc/passwd and /etc/group (each absent when the image has none).
#[derive(Debug, Default)]
pub(crate) struct UserDatabase {
    pub(crate) passwd: Option<String>,
    pub(crate) group: Option<String>,
}

/// Mounts the snapshot read-only under `scratch`, reads the two files, unmounts.
pub(crate) fn read_user_database(
    mounts: &[Mount],
    scratch: &Path,
) -> std::io::Result<UserDatabase> {
    std::fs::create_dir_all(scratch)?;
    let mounted = mount_all(mounts, scratch);
    let result = mounted.and_then(|()| {
        let read = |name: &str| match std::fs::read_to_string(scratch.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        Ok(UserDatabase {
            passwd: read("etc/passwd")?,
            group: read("etc/group")?,
        })
    });
    // Unmount on every path; a failed mount left nothing to unmount.
    let _ = nix::mount::umount2(scratch, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(scratch);
    result
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

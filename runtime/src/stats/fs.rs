//! How full a filesystem is (statvfs), for the disk use of the agent's data dir.

use std::path::Path;

use nix::sys::statvfs::statvfs;

use crate::cgroup::CgroupError;

/// Size and free space of the filesystem holding a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesystemUsage {
    pub total_bytes: u64,
    /// Free for unprivileged users (what a task writing there can still use).
    pub free_bytes: u64,
}

/// The usage of the filesystem that holds `path`.
pub fn filesystem_usage(path: &Path) -> Result<FilesystemUsage, CgroupError> {
    let stat = statvfs(path).map_err(|errno| CgroupError::Io {
        op: "statvfs",
        path: path.to_path_buf(),
        source: errno.into(),
    })?;
    let block = stat.fragment_size();
    Ok(FilesystemUsage {
        total_bytes: stat.blocks().saturating_mul(block),
        free_bytes: stat.blocks_available().saturating_mul(block),
    })
}

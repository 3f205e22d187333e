//! Whether a daemon's stderr is the journal stream systemd connected it to, so both daemons
//! decide the same way between native journald logging and plain stderr.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Whether stderr is the stream JOURNAL_STREAM (`"<device>:<inode>"`) names, as
/// sd_journal_stream_fd(3) recommends checking: a process that inherited the variable but
/// writes elsewhere (a redirect, a pipe) keeps its plain output.
pub fn stderr_is_journal() -> bool {
    let Some((device, inode)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .as_deref()
        .and_then(parse_journal_stream)
    else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|meta| meta.dev() == device && meta.ino() == inode)
}

/// Parses JOURNAL_STREAM's `"<device>:<inode>"`.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }
}

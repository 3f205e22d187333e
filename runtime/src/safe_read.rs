//! Reading a file that someone else controls (a file of an image, an environment file in a
//! directory the operator handed out) without letting its owner choose what the agent opens:
//! the path is walked one component at a time from a directory already open, each component
//! opened with `O_PATH | O_NOFOLLOW`, so nothing is resolved through a host path.
//!
//! - Inside an image's root ([`Symlinks::InRoot`]) a symlink is followed as the container
//!   would see it (an absolute target starts again at the root); one whose `..` climbs above
//!   the root is refused, as is a chain of more than 40 links.
//! - For host files ([`Symlinks::Refuse`]) any symlink is refused.
//!
//! Only a regular file is opened for reading, after its type is checked on the `O_PATH`
//! descriptor, so a FIFO cannot block the reader and a device is never opened; at most `max`
//! bytes are read. The walk is blocking: callers run it on a blocking thread under a deadline.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat};

/// How symlinks met on the way are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed inside the directory, which stands for `/` (an image's root filesystem).
    InRoot,
    /// Refused wherever they are.
    Refuse,
}

/// The most symlinks one walk follows, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Why a file was not read. The messages say what the file is, never what it holds; the
/// caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum SafeReadError {
    #[error("does not exist")]
    NotFound,
    #[error("is a symbolic link, which is not followed here")]
    Symlink,
    #[error("is a symbolic link that points outside the image's root filesystem")]
    OutsideRoot,
    #[error("climbs above its directory with ..")]
    ParentDir,
    #[error("passes through more than {MAX_LINKS} symbolic links")]
    TooManyLinks,
    #[error("has a component that is not a directory")]
    NotADirectory,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {size} bytes, more than the {max} it may have")]
    TooLarge { size: u64, max: u64 },
    /// The OS's reason is part of the message (the text travels alone, inside a stop
    /// reason), so it is not also a source.
    #[error("cannot be read: {0}")]
    Io(std::io::Error),
}

impl From<Errno> for SafeReadError {
    fn from(errno: Errno) -> Self {
        match errno {
            Errno::ENOENT => Self::NotFound,
            Errno::ENOTDIR => Self::NotADirectory,
            other => Self::Io(other.into()),
        }
    }
}

/// Reads the regular file at `path` below the directory `dir` (opened by the caller, so the
/// directory itself is trusted), at most `max` bytes.
pub fn read_below(
    dir: &Path,
    path: &Path,
    symlinks: Symlinks,
    max: u64,
) -> Result<Vec<u8>, SafeReadError> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let file = open_below(&root, path, symlinks)?;
    read_regular(&file, max)
}

/// The components of a relative or absolute path, `.` and empty ones left out.
fn parts(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// An `O_PATH` descriptor of what `path` names below `root`.
pub(crate) fn open_below(
    root: &OwnedFd,
    path: &Path,
    symlinks: Symlinks,
) -> Result<OwnedFd, SafeReadError> {
    let mut todo: std::collections::VecDeque<PathBuf> = parts(path).into();
    // The directories walked so far; the first is the root.
    let mut stack: Vec<OwnedFd> = vec![root.try_clone().map_err(SafeReadError::Io)?];
    let mut links = 0;
    let mut last: Option<OwnedFd> = None;
    while let Some(name) = todo.pop_front() {
        if let Some(dir) = last.take() {
            stack.push(dir);
        }
        if name.as_os_str() == ".." {
            if stack.len() == 1 {
                return Err(match symlinks {
                    Symlinks::InRoot => SafeReadError::OutsideRoot,
                    Symlinks::Refuse => SafeReadError::ParentDir,
                });
            }
            stack.pop();
            continue;
        }
        let parent = stack.last().ok_or(SafeReadError::NotFound)?;
        let fd = openat(
            parent.as_fd(),
            name.as_path(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let kind = SFlag::from_bits_truncate(fstat(&fd)?.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if symlinks == Symlinks::Refuse {
                return Err(SafeReadError::Symlink);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(SafeReadError::TooManyLinks);
            }
            let target = PathBuf::from(readlinkat(parent.as_fd(), name.as_path())?);
            if target.is_absolute() {
                stack.truncate(1);
            }
            for part in parts(&target).into_iter().rev() {
                todo.push_front(part);
            }
            continue;
        }
        if !todo.is_empty() && kind != SFlag::S_IFDIR {
            return Err(SafeReadError::NotADirectory);
        }
        last = Some(fd);
    }
    match last {
        Some(fd) => Ok(fd),
        None => stack.pop().ok_or(SafeReadError::NotFound),
    }
}

/// What a file of type `kind` is, for a message.
fn describe(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "a special file",
    }
}

/// Reads the regular file `path_fd` (an `O_PATH` descriptor) names, at most `max` bytes.
pub(crate) fn read_regular(path_fd: &OwnedFd, max: u64) -> Result<Vec<u8>, SafeReadError> {
    let stat = fstat(path_fd)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        return Err(SafeReadError::NotRegular(describe(kind)));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if size > max {
        return Err(SafeReadError::TooLarge { size, max });
    }
    // Reopens the very inode the walk checked; O_NONBLOCK in case it changed type meanwhile.
    let proc_path = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
    let fd = openat(
        nix::fcntl::AT_FDCWD,
        proc_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let opened = file.metadata().map_err(SafeReadError::Io)?;
    if !opened.is_file() {
        return Err(SafeReadError::NotRegular("a special file"));
    }
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(SafeReadError::Io)?;
    let read = data.len() as u64;
    if read > max {
        return Err(SafeReadError::TooLarge { size: read, max });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn read(dir: &Path, path: &str, symlinks: Symlinks) -> Result<String, String> {
        read_below(dir, Path::new(path), symlinks, 64)
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        symlink("/usr/lib/passwd", r.join("etc/passwd")).unwrap();
        symlink("../usr/lib/passwd", r.join("etc/relative")).unwrap();
        symlink("../../../../../../etc/hostname", r.join("etc/escape")).unwrap();
        symlink("/etc/loop", r.join("etc/loop")).unwrap();
        std::fs::write(r.join("etc/big"), vec![b'x'; 65]).unwrap();
        nix::unistd::mkfifo(&r.join("etc/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        symlink("/dev/null", r.join("etc/null")).unwrap();

        let passwd = "root:x:0:0::/:/bin/sh\n";
        assert_eq!(read(r, "/etc/passwd", Symlinks::InRoot), Ok(passwd.into()));
        assert_eq!(read(r, "etc/relative", Symlinks::InRoot), Ok(passwd.into()));
        assert_eq!(
            read(r, "/etc/escape", Symlinks::InRoot),
            Err("is a symbolic link that points outside the image's root filesystem".into())
        );
        assert_eq!(
            read(r, "/etc/loop", Symlinks::InRoot),
            Err("passes through more than 40 symbolic links".into())
        );
        assert_eq!(
            read(r, "/etc/fifo", Symlinks::InRoot),
            Err("is a FIFO, not a regular file".into())
        );
        // /dev/null of the image, which has none: never the host's.
        assert_eq!(
            read(r, "/etc/null", Symlinks::InRoot),
            Err("does not exist".into())
        );
        assert_eq!(
            read(r, "/etc/big", Symlinks::InRoot),
            Err("is 65 bytes, more than the 64 it may have".into())
        );
        assert_eq!(
            read(r, "/etc", Symlinks::InRoot),
            Err("is a directory, not a regular file".into())
        );
        assert_eq!(
            read(r, "/etc/passwd/x", Symlinks::InRoot),
            Err("has a component that is not a directory".into())
        );
        assert_eq!(
            read(r, "/etc/passwd", Symlinks::Refuse),
            Err("is a symbolic link, which is not followed here".into())
        );
        assert_eq!(
            read(r, "usr/lib/passwd", Symlinks::Refuse),
            Ok(passwd.into())
        );
    }

    #[test]
    fn a_device_is_never_opened() {
        assert_eq!(
            read(Path::new("/"), "/dev/zero", Symlinks::Refuse),
            Err("is a character device, not a regular file".into())
        );
    }
}

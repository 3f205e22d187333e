//! Named, persistent network namespaces (bind-mounted under a run dir, as `ip netns` does) and
//! running code inside one on a dedicated OS thread, never on a tokio worker.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{FsType, statfs};

use super::error::NetworkError;

/// The default directory of task namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/run/berth/netns";

/// `NSFS_MAGIC`: the filesystem type of a namespace file (or a bind mount of one).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// A network namespace held by a file (a bind mount of `/proc/<tid>/ns/net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Creates the namespace `dir/name`, or returns the one already there (idempotent). A stale
    /// plain file left by a crash is mounted over.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs, NetworkError> {
        let path = dir.join(name);
        let err = |what, error| NetworkError::Namespace {
            what,
            path: path.clone(),
            error,
        };
        if is_namespace(&path) {
            return Ok(NetNs { path });
        }
        fs::create_dir_all(dir).map_err(|e| err("create its directory", e))?;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err("create its mount point", e))?;
        let mounted = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<()> {
                // This thread alone moves into the new namespace, and ends right after.
                unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        });
        if let Err(e) = mounted {
            let _ = fs::remove_file(&path);
            return Err(err("create", e));
        }
        Ok(NetNs { path })
    }

    /// The namespace held at `path` (not checked until used).
    pub fn open(path: impl Into<PathBuf>) -> NetNs {
        NetNs { path: path.into() }
    }

    /// The namespace's file, to join it (e.g. in an OCI spec).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the namespace's file is there and holds a namespace.
    pub fn exists(&self) -> bool {
        is_namespace(&self.path)
    }

    /// Unmounts and removes the namespace's file; nothing there is not an error.
    pub fn delete(&self) -> Result<(), NetworkError> {
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => {
                return Err(NetworkError::Namespace {
                    what: "unmount",
                    path: self.path.clone(),
                    error: e.into(),
                });
            }
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(NetworkError::Namespace {
                what: "remove",
                path: self.path.clone(),
                error,
            }),
        }
    }

    /// Runs `f` on a new OS thread that has entered this namespace, and waits for it. Sockets
    /// `f` opens stay in the namespace; processes it spawns start in it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetworkError> {
        let err = |what, error| NetworkError::Namespace {
            what,
            path: self.path.clone(),
            error,
        };
        let file = fs::File::open(&self.path).map_err(|e| err("open", e))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| err("enter", e.into()))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(err(
                    "run code in",
                    io::Error::other("the namespace thread panicked"),
                ))
            })
        })
    }

    /// The names of the namespaces held in `dir` (an absent dir has none).
    pub fn list(dir: &Path) -> Result<Vec<String>, NetworkError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(NetworkError::Namespace {
                    what: "list the namespaces in",
                    path: dir.to_owned(),
                    error,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Runs `f` in `ns`, or on the calling thread when `ns` is `None` (the process's namespace).
pub(crate) fn run_in<T: Send>(
    ns: Option<&NetNs>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetworkError> {
    match ns {
        Some(ns) => ns.run(f),
        None => Ok(f()),
    }
}

fn is_namespace(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == FsType(NSFS_MAGIC))
        .unwrap_or(false)
}

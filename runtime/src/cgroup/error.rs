//! Errors of the cgroup layer: what failed, on which path, task or controller.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Failure to detect, create, remove or read a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// /proc/self/mountinfo could not be read.
    #[error("cannot read {path}")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A line of mountinfo text does not have the kernel's format.
    #[error("malformed mountinfo line {line}: {reason}")]
    Mountinfo { line: usize, reason: &'static str },

    /// Neither a cgroup2 root nor any cgroup v1 controller is mounted.
    #[error("no cgroup2 filesystem mounted at /sys/fs/cgroup and no cgroup v1 controller mounted")]
    NoCgroupMount,

    /// A task ID, container name or parent name breaks the naming rule.
    #[error("invalid {kind} {value:?}: {rule}")]
    InvalidId {
        kind: &'static str,
        value: String,
        rule: &'static str,
    },

    /// A relative cgroup path is not made of valid names.
    #[error("invalid cgroup path {path:?}: expected /<name>/<name>... of valid names")]
    InvalidPath { path: String },

    /// A path given for a hierarchy is not valid UTF-8 (cgroups-rs would panic on it).
    #[error("cgroup mount point {path} is not valid UTF-8")]
    NonUtf8MountPoint { path: PathBuf },

    /// A controller needed for a limit or a counter is not mounted (v1) or not offered (v2).
    #[error("controller {controller} is not available for cgroup {path}")]
    ControllerUnavailable {
        path: String,
        controller: &'static str,
    },

    /// cgroups-rs failed to create the task cgroup.
    #[error("cannot create cgroup {path} for task {task_id}")]
    Create {
        task_id: String,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// cgroups-rs failed to write a limit file.
    #[error("cannot set {file} of cgroup {path} for task {task_id}")]
    SetLimit {
        task_id: String,
        path: String,
        file: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A limit does not fit the kernel's byte or microsecond counters.
    #[error("{what} {value} of task {task_id} is too large for the kernel")]
    LimitTooLarge {
        task_id: String,
        what: &'static str,
        value: u64,
    },

    /// A cpuset hierarchy has no CPUs or memory nodes to hand down to a new cgroup.
    #[error("cannot set up {file} of {path}: its parent's is empty")]
    CpusetEmpty { path: PathBuf, file: &'static str },

    /// Reading or writing a cgroup file failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A cgroup directory could not be removed (after retries when it was busy).
    #[error("cannot remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A kernel cgroup file does not have the expected content.
    #[error("cannot parse {file}: {reason}")]
    Parse { file: String, reason: String },
}

/// Every problem found in a task's and its containers' limits, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsError {
    /// One human-readable sentence per problem, in a stable order.
    pub problems: Vec<String>,
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for LimitsError {}

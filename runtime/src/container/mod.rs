//! Containers: create one from a [`ContainerSpec`] (image config merged into an OCI spec, a
//! snapshot prepared from the image's top chain ID, a containerd container), start it (its
//! containerd task with stdout/stderr FIFOs, or one stdout FIFO with a terminal, and a stdin
//! FIFO held open when asked), wait for its exit (exit code, time, OOM kill), stop it (SIGTERM
//! to its main process, then SIGKILL to all its processes after the stop timeout) and delete
//! everything it had; run an extra process inside a running container (`exec.rs`, for health
//! checks).

mod devices;
mod exec;
mod forward;
mod lifecycle;
mod log;
mod logread;
mod rootfs;

use std::time::SystemTime;

use crate::containerd::{Containerd, ContainerdError};
use crate::error::Error;

pub use exec::ExecOutcome;
pub use forward::{
    DropCount, ForwardMode, ForwardedLine, ForwardedLines, LogForward, QueueShare, log_forward,
};
pub(crate) use lifecycle::Containers;
pub use lifecycle::KillScope;
pub use log::LogRotation;
pub use logread::{LogEntry, LogQuery, LogReadError, LogReader, LogStream, MAX_FILE_LINE};

/// Label naming the scheduler's task ID on every containerd object Berth creates.
pub const LABEL_TASK_ID: &str = "berth.task-id";
/// Label naming the container (its name within the task).
pub const LABEL_CONTAINER_NAME: &str = "berth.container-name";

/// Label recording the container's stop timeout in milliseconds, so the agent still honours
/// it after a restart.
pub const LABEL_STOP_TIMEOUT: &str = "berth.stop-timeout-ms";

/// containerd's ID of a container Berth created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// The ID for a task's container: `<task-id>.<name>` when neither part contains a dot and
    /// the result is a valid containerd ID of at most 76 characters, else `berth-` and 40 hex
    /// digits of a hash of both. Deterministic, so the agent finds its containers again after a
    /// restart, and never the same for two different (task, name) pairs.
    pub fn for_container(task_id: &str, name: &str) -> Self {
        let readable = format!("{task_id}.{name}");
        if !task_id.contains('.')
            && !name.contains('.')
            && readable.len() <= 76
            && is_valid_containerd_id(&readable)
        {
            return Self(readable);
        }
        use sha2::Digest;
        let hash = sha2::Sha256::digest(format!("{task_id}/{name}").as_bytes());
        Self(format!("berth-{}", &hex::encode(hash)[..40]))
    }

    /// Wraps an ID read back from containerd.
    pub fn from_containerd(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// NotFound from the Containers or Tasks service means the container has no task (or does not
/// exist).
fn not_found_or(client: &dyn Containerd, id: &ContainerId, e: ContainerdError) -> Error {
    if e.is_not_found() {
        Error::NotFound {
            id: id.to_string(),
            namespace: client.namespace().to_owned(),
        }
    } else {
        e.into()
    }
}

/// containerd's identifier rule: alphanumeric runs joined by single `.`, `_` or `-`.
fn is_valid_containerd_id(id: &str) -> bool {
    let mut prev_sep = true;
    for c in id.chars() {
        let sep = matches!(c, '.' | '_' | '-');
        if sep && prev_sep {
            return false;
        }
        if !sep && !c.is_ascii_alphanumeric() {
            return false;
        }
        prev_sep = sep;
    }
    !prev_sep
}

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + signal number when a signal ended it, as shells report it.
    pub code: u32,
    pub exited_at: SystemTime,
    /// The kernel's OOM killer ended it (from the container's or its task's memory cgroup).
    pub oom_killed: bool,
}

/// What containerd says a container's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// The container record exists but no task (never started, or deleted).
    NoTask,
    Created,
    Running,
    Stopped,
    Paused,
    Unknown,
}

/// A container Berth owns, as found in containerd (for rebuilding state after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: ContainerId,
    pub task_id: String,
    pub name: String,
    pub image: String,
    pub status: ContainerStatus,
    pub pid: Option<u32>,
    /// Exit code, when the status is Stopped.
    pub exit_code: Option<u32>,
    /// The stop timeout the container was created with, if it had one.
    pub stop_timeout: Option<std::time::Duration>,
    /// Its process was started at least once (a marker written just before the first start):
    /// a container without a task that was started before lost its process (its shim ended),
    /// one that never was is still to be started.
    pub started: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_readable_when_possible() {
        assert_eq!(ContainerId::for_container("t1", "web").as_str(), "t1.web");
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            ContainerId::for_container(uuid, "app").as_str(),
            "0f8fad5b-d9cb-469f-a165-70867728950e.app"
        );
        let long = ContainerId::for_container(uuid, &"x".repeat(60));
        assert!(long.as_str().starts_with("berth-") && long.as_str().len() == 46);
        // Double separators are not valid containerd IDs: hashed, and still deterministic.
        let odd = ContainerId::for_container("t", "_sidecar");
        assert_eq!(odd, ContainerId::for_container("t", "_sidecar"));
        assert!(odd.as_str().starts_with("berth-"));
        assert_ne!(
            ContainerId::for_container("a", "b.c"),
            ContainerId::for_container("a.b", "c")
        );
        assert!(
            !is_valid_containerd_id("a..b")
                && !is_valid_containerd_id("-a")
                && !is_valid_containerd_id("a-")
        );
    }
}

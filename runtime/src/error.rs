//! The runtime's error type: one enum whose variants carry the layer's own error, each of
//! which names what failed and on what.

use std::path::PathBuf;

use crate::cgroup::{CgroupError, LimitsError};
use crate::containerd::{ConnectError, ContainerdError};
use crate::image::{LocalImageError, PullError};
use crate::spec::SpecError;

/// Everything a runtime call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Image(#[from] LocalImageError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    TaskNamespaces(#[from] crate::task_ns::TaskNamespaceError),
    /// The cause's text is part of the message (it travels as a task's stop reason), so it is
    /// not also a source.
    #[error("cannot {what} at {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file read from the container's image that is refused or unreadable (see
    /// `container/rootfs.rs`); the reason travels as the task's stop reason.
    #[error("container {id}: {reason}")]
    ImageFile { id: String, reason: String },
    #[error("container {id} has no task in containerd namespace {namespace}")]
    NotFound { id: String, namespace: String },
    #[error("{what} of container {id} timed out after {seconds}s")]
    Timeout {
        what: &'static str,
        id: String,
        seconds: u64,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: PathBuf, error: std::io::Error) -> Self {
        Self::Io { what, path, error }
    }
}

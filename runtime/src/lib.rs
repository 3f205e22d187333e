//! berth-runtime: Berth's runtime layer over containerd, cgroups and (later) netlink.
//!
//! It pulls OCI images into containerd by itself (resolve, write blobs through the Content
//! service, unpack with the Diff service under a lease), builds OCI runtime specs from ECS-style
//! container specs, creates per-task cgroups, and runs containers through containerd's Containers
//! and Tasks services. No containerd-client type crosses this crate's public API.

mod cgroup;
mod container;
mod containerd;
mod error;
mod image;
mod model;
mod runtime;
mod spec;
mod time;

pub use cgroup::{CgroupError, LimitsError};
pub use container::{
    ContainerId, ContainerInfo, ContainerStatus, ExitStatus, LABEL_CONTAINER_NAME,
    LABEL_STOP_TIMEOUT, LABEL_TASK_ID, LogRotation,
};
pub use containerd::{ConnectError, ContainerdError};
pub use error::Error;
pub use image::LocalImageError;
pub use image::{ProgressSender, PullError, PullProgress, PulledImage, RegistryAuth};
pub use model::{
    CapabilityChanges, ContainerLimits, ContainerSpec, HostEntry, MIN_MEMORY_MIB, NetworkNamespace,
    TaskLimits, TmpfsMount, Ulimit,
};
pub use runtime::{DEFAULT_INIT_PATH, Runtime, RuntimeConfig};
pub use spec::SpecError;

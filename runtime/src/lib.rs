//! berth-runtime: Berth's runtime layer over containerd, cgroups and (later) netlink.
//!
//! It pulls OCI images into containerd by itself (resolve, write blobs through the Content
//! service, unpack with the Diff service under a lease), builds OCI runtime specs from ECS-style
//! container specs, creates per-task cgroups, and runs containers through containerd's Containers
//! and Tasks services. No containerd-client type crosses this crate's public API.

mod cgroup;
mod model;
mod spec;

pub use model::{
    ContainerLimits, ContainerSpec, MIN_MEMORY_MIB, NetworkNamespace, TaskLimits, Ulimit,
};

//! Task and container cgroups (v1 and v2).
//!
//! Each task gets a parent cgroup `/<parent>/<task-id>` (normally `/berth/<task-id>`), created
//! with cgroups-rs in every hierarchy that matters and carrying the task-level limits; runc
//! creates each container's cgroup under it from the OCI spec's `cgroupsPath`
//! (`Cgroups::container_path`). Whether a task's containers can limit swap is read from its
//! cgroup's interface files (`Cgroups::swap_support`). Hierarchy roots are parameters
//! (`CgroupLayout`), so everything here is tested on tempdir trees.

mod error;
mod hierarchy;
mod holder;
mod ids;
mod layout;
mod limits;
mod manager;
mod oom;
mod remove;

pub use error::{CgroupError, LimitsError};
pub(crate) use ids::validate_id;
pub(crate) use layout::CgroupLayout;
pub(crate) use limits::validate_limits;
pub(crate) use manager::Cgroups;

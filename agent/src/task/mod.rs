//! What a task definition asks of the host, made ready for the runtime. This is the agent's
//! one conversion between proto and runtime types, and the one place that reads or checks
//! what a task names on the host; it depends on neither the engine nor the endpoint, which
//! both use it.
//!
//! - `spec.rs`: each container's `ContainerSpec`, the task's cgroup limits, registry auth.
//! - `volumes.rs`: the task's volumes, each container's binds, the host paths it may bind.
//! - `devices.rs`: the host devices it may map. Both go through one allow-list check
//!   (`allow.rs`: resolved on the host, inside one of the allowed paths).
//! - `envfile.rs`, `seccomp.rs`: environment files and seccomp profiles read from the host
//!   when the task starts; `capabilities.rs`: what a container may add beyond Docker's defaults.
//! - `network.rs`: the pure plan of its network mode's namespaces, what is reported of them,
//!   and the metadata URL each container gets.
//! - `health.rs`: each container's health check as a process to exec.
//! - `report.rs`: runtime outcomes (times, log lines, errors with their causes) as the proto
//!   carries them.
//!
//! Whatever is refused is an [`InputError`], whose message is the task's stoppedReason.

mod allow;
pub(crate) mod capabilities;
pub(crate) mod devices;
pub(crate) mod envfile;
mod error;
mod health;
pub(crate) mod network;
mod report;
pub(crate) mod seccomp;
mod spec;
pub(crate) mod volumes;

pub(crate) use error::InputError;
pub(crate) use health::{Check, health_check};
pub(crate) use network::{METADATA_ENV, host_dns, metadata_uri, task_of_namespace};
pub(crate) use report::{Causes, log_line, timestamp};
pub(crate) use spec::{
    auth_for, container_spec, seccomp_profile_path, seccomp_unconfined, swap_note, task_limits,
};

/// A container of the module's tests: essential, with this cpu, memory and reservation.
#[cfg(test)]
fn test_container(
    name: &str,
    cpu: u32,
    memory_mib: u64,
    reservation_mib: u64,
) -> berth_proto::v1::ContainerDefinition {
    berth_proto::v1::ContainerDefinition {
        name: name.into(),
        image: "127.0.0.1:5000/app:1".into(),
        cpu,
        memory_mib,
        memory_reservation_mib: reservation_mib,
        essential: true,
        ..Default::default()
    }
}

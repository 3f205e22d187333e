//! berth-agent: the host daemon. It registers the host with a scheduler, keeps one session,
//! and drives every assigned task through `berth-runtime` to its desired state, reporting each
//! state change durably (kept on disk until the scheduler acknowledges it).
//!
//! The binary uses [`cli`] (its flags, shared with the generated man page), [`config`] (load and check the configuration), [`telemetry`] (logging),
//! [`first_boot`] (`berth-agent first-boot`) and [`run`]; everything else is private to the crate:
//!
//! - `agent`: wiring and shutdown.
//! - `session`: registration, the bidirectional session, heartbeats, the outbox; `logs`: the
//!   scheduler's log requests, served on the session.
//! - `engine`: the task engine (one owner of task state) and its per-task drivers.
//! - `task`: what a task definition asks of the host, made ready for the runtime: the one
//!   proto ↔ runtime conversion, the network plan, and the host inputs a task names (host
//!   paths, devices, environment files, seccomp profiles), checked or read when it starts.
//! - `runtime`, `network`: the seams to `berth-runtime`'s containers and task networks.
//! - `endpoint`: the task metadata endpoint containers reach at 169.254.170.2.
//! - `metrics`: resource sampling, the agent's counters and the local introspection endpoint
//!   (`/metrics`, `/v1/metadata`, `/v1/tasks`, `/healthz`, `/readyz`) on `metrics_listen`.
//! - `store`: the agent's durable state.
//! - `sweep`: the orphan sweep (what belongs to no known task is reported, then removed).
//! - `health`: the agent's own health (containerd, data dir, engine lag, metrics), sent on
//!   every heartbeat.
//! - `host`: identity, resources, attributes.
//! - `backoff`: retry delays.
//! - `images`: pull behaviours, the table of the images tasks hold, the image collector.

mod agent;
mod aws;
mod backoff;
pub mod cli;
pub mod config;
mod disk;
mod drain;
mod endpoint;
mod engine;
pub mod first_boot;
mod guard;
mod health;
mod host;
mod images;
pub mod last_exit;
mod logs;
mod metrics;
mod network;
mod runtime;
mod secrets;
mod service;
mod session;
mod store;
mod sweep;
mod task;
pub mod telemetry;
mod trust;

pub use agent::{run, shutdown_signal};

/// The image collector's decision, pure, for benchmarks and tools: which images go and why,
/// given each image's size, last use and whether a task needs it, and the disk's use.
pub mod image_gc {
    pub use crate::images::{Candidate, Disk, Policy, Reason, Removal, decide, repository};
}

//! berth-agent: the host daemon. It registers the host with a scheduler, keeps one session,
//! and drives every assigned task through `berth-runtime` to its desired state, reporting each
//! state change durably (kept on disk until the scheduler acknowledges it).
//!
//! - `config`: the typed configuration (file, environment, flags, with sources).
//! - `agent`: wiring and shutdown.
//! - `session`: registration, the bidirectional session, heartbeats, the outbox.
//! - `engine`: the task engine (one owner of task state) and its per-task drivers.
//! - `runtime`: the seam to the container runtime.
//! - `store`: the agent's durable state.
//! - `convert`: proto ↔ runtime types, in one place.
//! - `host`: identity, resources, attributes.
//! - `volumes`: which host paths a task may bind-mount; `devices`: which host devices a task
//!   may map.
//! - `envfile`, `seccomp`: files a task names on the host, read when it starts.

mod agent;
mod backoff;
pub mod config;
pub mod convert;
pub mod devices;
pub mod endpoint;
pub mod engine;
pub mod envfile;
pub mod host;
pub mod logs;
pub mod network;
pub mod runtime;
pub mod seccomp;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod volumes;

pub use agent::{run, shutdown_signal};

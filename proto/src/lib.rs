//! The gRPC contract between berth-agent and a scheduler (package `berth.v1`): the
//! `AgentService` the agent dials (Register, Session, StreamMetrics), the `ControlService` that
//! berthctl and other clients use, and the shared task, container and instance types. The
//! `.proto` files in `berth/v1/` are the source of truth; this crate only generates code.

#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

/// Generated code for package `berth.v1`.
pub mod v1 {
    tonic::include_proto!("berth.v1");
}

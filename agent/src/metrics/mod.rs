//! Telemetry: the agent samples its containers, tasks and host every `metrics_interval`
//! (`collect.rs`, through `berth-runtime`'s sampler and `host.rs`) and serves the latest
//! sample with its own counters (`counters.rs`) on the local introspection endpoint
//! (`server.rs`): Prometheus text under cAdvisor's names (`exposition.rs`) and the ECS
//! introspection API (`introspection.rs`). Each pass is also a batch for the scheduler,
//! streamed on its own connection through a bounded drop-oldest buffer (`stream.rs`).

mod collect;
mod counters;
mod exposition;
mod host;
mod introspection;
mod server;
mod stream;

pub(crate) use collect::{Sinks, Snapshot, TaskMetrics, run as collect};
pub(crate) use counters::{AGENT, RemovalLabels};
#[cfg(test)]
pub(crate) use host::HostSample;
pub(crate) use host::HostSampler;
pub(crate) use server::{Introspection, serve};
pub(crate) use stream::{BUFFER_BATCHES, BatchBuffer, run as stream};

#[cfg(test)]
mod tests;

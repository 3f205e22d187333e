//! A task driver: runs one task's lifecycle on its own tokio task, reporting each step to the
//! engine as a [`TaskEvent`]. It owns nothing the engine owns; it only acts on the host and
//! reports. The steps, in order:
//!
//! - `prepare.rs`: the checks that need nothing pulled, the pulls beside the network's setup
//!   (`net.rs`), the task's volumes and cgroup, the containers created;
//! - `supervise.rs`: the containers started in dependency order and watched from their start
//!   (`watch.rs`: waits, health checks, restarts in place) until every one has exited;
//! - `finish.rs`: the stops, the network released before STOPPED, the cleanup after the
//!   wait; and a task taken up again after an agent restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{HealthStatus, TaskAssignment, TaskState};
use berth_runtime::{ContainerId, ContainerInfo};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod finish;
mod net;
mod prepare;
mod supervise;
mod watch;

use super::deps::Plan;
use super::{Command, EngineConfig, TaskEvent};
use crate::network::TaskNetworking;
use crate::runtime::ContainerRuntime;
use prepare::{Interrupted, Prepared, Stalled};

/// What the engine tells a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// Stop every container (SIGTERM, then SIGKILL after its stop timeout).
    Stop,
    /// A container's health changed (containers waiting for it to be HEALTHY may start).
    Health { name: String, status: HealthStatus },
}

/// What a driver resuming after an agent restart knows.
#[derive(Debug, Clone)]
pub(super) struct Resume {
    pub(super) state: TaskState,
    pub(super) containers: Vec<ContainerInfo>,
    /// Why the task is taken over when it is not an agent restart (its driver failed): the
    /// reason a task that had not started, or whose containers are gone, fails with.
    pub(super) reason: Option<String>,
}

pub(super) struct Driver<R: ContainerRuntime> {
    pub(super) runtime: Arc<R>,
    pub(super) network: Arc<dyn TaskNetworking>,
    pub(super) config: EngineConfig,
    pub(super) events: mpsc::Sender<Command>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) cancel: CancellationToken,
    pub(super) assignment: TaskAssignment,
    /// Restart counts already reported, by container name (after an agent restart).
    pub(super) restart_counts: HashMap<String, u32>,
    /// Each container's task endpoint ID, for its metadata URL.
    pub(super) endpoint_ids: Arc<crate::store::EndpointIds>,
}

/// A container the driver created: its name, containerd ID and stop timeout.
#[derive(Debug, Clone)]
struct Created {
    name: String,
    id: ContainerId,
    stop_timeout: Duration,
}

impl<R: ContainerRuntime> Driver<R> {
    fn task_id(&self) -> &str {
        &self.assignment.task_id
    }

    async fn report(&self, event: TaskEvent) {
        let _ = self
            .events
            .send(Command::Event {
                task_id: self.assignment.task_id.clone(),
                event,
            })
            .await;
    }

    /// Waits until the engine has applied (and persisted) every event reported so far. Events
    /// and the barrier share one queue, which the engine applies in order.
    async fn applied(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.events.send(Command::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub(super) async fn run(mut self, resume: Option<Resume>) {
        let definition = self.assignment.definition.clone().unwrap_or_default();
        match resume {
            Some(r) => {
                if let Some((created, running)) = self.resume(&definition, r).await {
                    self.report(TaskEvent::Resumed).await;
                    // Every container was started before the restart: only watching is left.
                    let plan =
                        Plan::new(&definition).unwrap_or_else(|_| Plan::independent(&definition));
                    self.supervise(plan, created, Some(running)).await;
                }
            }
            None => match self.prepare(&definition).await {
                Ok(Prepared { plan, created }) => {
                    self.supervise(plan, created, None).await;
                }
                Err(Stalled {
                    interrupted: Interrupted::Shutdown,
                    ..
                }) => {}
                Err(Stalled {
                    created,
                    interrupted: Interrupted::Stop,
                }) => {
                    self.stop_and_clean(created, 0).await;
                }
                Err(Stalled {
                    created,
                    interrupted: Interrupted::Failed(error),
                }) => {
                    let reason = error.to_string();
                    tracing::warn!(%reason, "task failed to start");
                    self.report(TaskEvent::Failed { reason }).await;
                    self.stop_and_clean(created, 0).await;
                }
            },
        }
    }

    /// Runs `fut` unless a stop order or shutdown comes first.
    async fn interruptible<F: std::future::Future>(
        &mut self,
        fut: F,
    ) -> Result<F::Output, Interrupted> {
        tokio::select! {
            out = fut => Ok(out),
            Some(Control::Stop) = self.control.recv() => Err(Interrupted::Stop),
            _ = self.cancel.cancelled() => Err(Interrupted::Shutdown),
        }
    }
}

/// A container's stop timeout: its own `stopTimeout`, else the agent's.
fn stop_timeout(seconds: u32, default: Duration) -> Duration {
    if seconds > 0 {
        Duration::from_secs(u64::from(seconds))
    } else {
        default
    }
}

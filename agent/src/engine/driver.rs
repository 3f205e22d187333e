//! A task driver: runs one task's lifecycle on its own tokio task, reporting each step to the
//! engine as a [`TaskEvent`]. It owns nothing the engine owns; it only acts on the host and
//! reports. The steps, in order:
//!
//! - `prepare.rs`: the checks that need nothing pulled, the pulls beside the network's setup
//!   (`net.rs`), the task's volumes and cgroup, the containers created;
//! - `supervise.rs`: the containers started in dependency order and watched from their start
//!   (`watch.rs`: waits, health checks, restarts in place; `holder.rs`: the task's namespace
//!   holder, whose death stops the task) until every one has exited;
//! - `finish.rs`: the stops, the network released before STOPPED, the cleanup after the
//!   wait;
//! - `resume.rs`: a task taken up again after an agent restart, from where it stood.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{HealthStatus, TaskAssignment, TaskDefinition, TaskState};
use berth_runtime::{ContainerId, ContainerInfo};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod finish;
mod holder;
mod namespaces;
mod net;
mod prepare;
mod resume;
mod secrets;
mod supervise;
mod watch;

use super::deps::Plan;
use super::{Command, EngineConfig, TaskEvent};
use crate::network::TaskNetworking;
use crate::runtime::ContainerRuntime;
#[cfg(test)]
pub(in crate::engine) use holder::HOLDER_WATCH;
use prepare::{Interrupted, Prepared, Stalled};
use resume::Resumed;
#[cfg(test)]
pub(super) use resume::{GONE_WHILE_AWAY, REMOVED_WHILE_AWAY};

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
    /// The images tasks need and their last uses (the image collector's table).
    pub(super) images: Arc<crate::images::ImageUse>,
    /// The secrets of the engine's tasks, in memory only.
    pub(super) secrets: Arc<crate::secrets::SecretBook>,
    /// Registry credentials from the task's `repositoryCredentials`, by image reference:
    /// ahead of every other source of credentials.
    pub(super) registry_auth: HashMap<String, berth_runtime::RegistryAuth>,
    /// The pulls running now and how far each got, for the scheduler.
    pub(super) pulls: Arc<crate::images::PullBoard>,
    /// The digest each image reference resolved to before the agent restarted, for a start
    /// it continues: those images are taken from the cache when it still holds that digest,
    /// so the task's containers all run what its first pull resolved, and no registry round
    /// trip delays the resume.
    pub(super) resolved: HashMap<String, String>,
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
        if let Some(r) = &resume {
            self.resolved = r
                .state
                .containers
                .iter()
                .filter(|c| !c.image_digest.is_empty())
                .map(|c| (c.image.clone(), c.image_digest.clone()))
                .collect();
        }
        match resume {
            Some(r) => match self.resume(&definition, r).await {
                Resumed::Done => {}
                Resumed::Watch { created, initially } => {
                    self.report(TaskEvent::Resumed).await;
                    // Every container was started before the restart: only watching is left.
                    let plan =
                        Plan::new(&definition).unwrap_or_else(|_| Plan::independent(&definition));
                    self.supervise(plan, created, initially, false).await;
                }
                Resumed::Continue { existing } => {
                    tracing::info!(
                        found = existing.len(),
                        "continuing the start the agent was making when it stopped"
                    );
                    self.start(&definition, &existing, true).await;
                }
            },
            None => self.start(&definition, &[], false).await,
        }
    }

    /// Prepares the task and supervises its start. `existing` holds the containers an earlier
    /// run of the agent left while it was starting the task (empty for a new task): they are
    /// not created again, and those that were started are watched, not started again.
    /// `resuming`: the agent restarted while starting it (the resume completes once the
    /// containers are all there).
    async fn start(
        &mut self,
        definition: &TaskDefinition,
        existing: &[ContainerInfo],
        resuming: bool,
    ) {
        match self.prepare(definition, existing).await {
            Ok(Prepared { plan, created }) => {
                let initially = created
                    .iter()
                    .map(|c| resume::while_starting(existing.iter().find(|i| i.id == c.id)))
                    .collect();
                if resuming {
                    self.report(TaskEvent::Resumed).await;
                }
                self.supervise(plan, created, initially, true).await;
            }
            Err(Stalled {
                interrupted: Interrupted::Shutdown,
                ..
            }) => {}
            Err(Stalled {
                created,
                interrupted,
            }) => {
                if let Interrupted::Failed(error) = interrupted {
                    let reason = error.to_string();
                    tracing::warn!(%reason, "task failed to start");
                    self.report(TaskEvent::Failed { reason }).await;
                }
                // What an earlier run created is stopped and removed too, the containers it
                // started first.
                let mut all = created;
                for c in self.all_containers(definition) {
                    if !all.iter().any(|a| a.id == c.id) && existing.iter().any(|e| e.id == c.id) {
                        all.push(c);
                    }
                }
                let (mut ordered, rest): (Vec<Created>, Vec<Created>) =
                    all.into_iter().partition(|c| {
                        resume::while_starting(existing.iter().find(|i| i.id == c.id))
                            == supervise::Initially::Running
                    });
                let started = ordered.len();
                ordered.extend(rest);
                self.stop_and_clean(ordered, started).await;
            }
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

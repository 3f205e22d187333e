//! The task engine: the one owner of task state. It receives a closed set of commands (an
//! assignment, a stop order, a state request, and the progress events of task drivers),
//! applies them to each task's state (statuses only move forward), persists every change and
//! queues it for the scheduler. Each task is driven by its own driver task, so a slow pull or a
//! container that takes minutes to stop never holds up another task.

mod command;
mod deps;
mod driver;
mod found;
mod handle;
mod health;
mod restart;
mod resume;
mod salvage;
mod state;
mod unsaved;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{
    ContainerStatus, DesiredStatus, HealthStatus, StopCode, StopTaskOrder, TaskAssignment,
    TaskDefinition, TaskState, TaskStatus,
};
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::images::ImageUse;
use crate::network::TaskNetworking;
use crate::runtime::ContainerRuntime;
use crate::store::{Store, StoreError};
pub(crate) use command::{Command, LogTarget, TaskView};
pub(crate) use driver::Control;
use driver::Driver;
pub(crate) use handle::EngineHandle;
pub(crate) use health::Probe;
pub(crate) use state::{ContainerNetwork, NetworkReport, TaskEvent};

/// How tasks are run.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// SIGTERM → SIGKILL wait for containers without their own stopTimeout.
    pub stop_timeout: Duration,
    /// Time between STOPPED and the removal of the task's containers.
    pub cleanup_wait: Duration,
    /// Delay before the first restart of a container that keeps crashing (ECS restartPolicy);
    /// it doubles with each consecutive restart up to `restart_backoff_max`. Not an operator
    /// setting: [`RESTART_BACKOFF`] and [`RESTART_BACKOFF_MAX`] in production, short in tests.
    pub restart_backoff: Duration,
    /// The longest delay between two restarts of a container.
    pub restart_backoff_max: Duration,
    /// Host directories whose contents tasks may bind-mount (ECS `host.sourcePath`).
    pub volume_host_paths: Vec<std::path::PathBuf>,
    /// Whether containers may run privileged (ECS `privileged`); a task that asks for it on an
    /// agent that does not allow it stops before anything is pulled.
    pub allow_privileged: bool,
    /// Whether tasks may ask for the host's PID or IPC namespace (ECS `pidMode`/`ipcMode`
    /// host); a task that asks for it on an agent that does not allow it stops before anything
    /// is pulled.
    pub allow_host_pid_ipc: bool,
    /// The host's name servers and search domains usable from a task (see
    /// [`crate::task::host_dns`]), the default of every task's resolv.conf.
    pub host_dns: berth_runtime::DnsConfig,
    /// Host devices tasks may map (ECS `linuxParameters.devices`); a task that maps another
    /// stops before anything is pulled.
    pub allowed_devices: Vec<std::path::PathBuf>,
    /// Whether a container may run without a seccomp filter (`seccomp=unconfined`).
    pub allow_unconfined_seccomp: bool,
    /// Capabilities beyond Docker's defaults that containers may add (`ALL`: any).
    pub allowed_capabilities: Vec<String>,
    /// Host directories whose regular files tasks may read as `environmentFiles`.
    pub environment_file_paths: Vec<std::path::PathBuf>,
    /// When a task's start asks the registry (the agent's `image_pull_behavior`), unless its
    /// definition says otherwise.
    pub pull_behavior: berth_policy::PullBehavior,
    /// Where a task's secrets come from when the agent does not hold them (after a restart).
    pub secret_source: Arc<dyn crate::secrets::SecretSource>,
    /// Where secrets that live in AWS (SSM Parameter Store, Secrets Manager) are read.
    pub aws_secrets: Arc<dyn crate::secrets::AwsSecretSource>,
    /// The awslogs log driver (CloudWatch Logs) of containers that use it.
    pub awslogs: crate::logs::awslogs::AwsLogs,
}

/// The first restart delay of a crashing container, as the kubelet's.
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// The longest restart delay of a crashing container, as the kubelet's.
pub(crate) const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(300);

struct Entry {
    state: TaskState,
    /// As assigned, for a driver that takes the task over.
    assignment: TaskAssignment,
    definition: Arc<TaskDefinition>,
    control: mpsc::UnboundedSender<Control>,
    essential: Vec<String>,
    /// The health of each container with a health check, by name.
    health: HashMap<String, health::Tracker>,
    /// The essential containers with a health check: the task's health is theirs.
    checked_essential: Vec<String>,
    /// Its driver is resuming it after an agent restart, and the resume is recorded in the
    /// store until it completes (see `resume.rs`).
    resuming: bool,
    /// A driver already took it over after its first driver failed.
    salvaged: bool,
    /// Each container's task endpoint ID, kept in the store with the task.
    endpoint_ids: Arc<crate::store::EndpointIds>,
}

impl Entry {
    /// What the endpoints see of the task.
    fn view(&self) -> TaskView {
        TaskView {
            definition: Arc::clone(&self.definition),
            state: self.state.clone(),
            endpoint_ids: Arc::clone(&self.endpoint_ids),
        }
    }
}

/// How a driver takes a task up.
enum Start {
    /// A new assignment: pull, create, start.
    Fresh,
    /// After an agent restart: pick up what the earlier run left.
    Resume(Box<driver::Resume>),
    /// After the task's driver failed: list the task's containers and take it over as after a
    /// restart, to stop what runs and clean up; `reason` is the failure.
    Salvage { reason: String },
    /// Re-adopted after a store loss (see `found.rs`): list the task's containers and take it
    /// up as after a restart.
    Adopt,
}

/// The engine. Build it with [`Engine::new`], then `run` it on its own task.
pub(crate) struct Engine<R: ContainerRuntime> {
    runtime: Arc<R>,
    network: Arc<dyn TaskNetworking>,
    store: Arc<Store>,
    config: EngineConfig,
    tasks: HashMap<String, Entry>,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    outbox: Arc<Notify>,
    drivers: TaskTracker,
    cancel: CancellationToken,
    /// Whether the data dir takes writes (see [`crate::disk`]).
    disk: Arc<crate::disk::Disk>,
    /// What the store did not take while degraded.
    unsaved: unsaved::Unsaved,
    /// The images the tasks need and their last uses, shared with the image collector.
    images: Arc<ImageUse>,
    /// The secrets of the tasks, in memory only (never in the store).
    secrets: Arc<crate::secrets::SecretBook>,
    /// The progress of the pulls the drivers run now.
    pulls: Arc<crate::images::PullBoard>,
    /// This run and how the last one ended, for the resume crash-loop guard.
    runs: crate::last_exit::Runs,
    /// The containers of tasks a store that started empty has no record of, until adopted.
    found: found::Found,
}

impl<R: ContainerRuntime> std::fmt::Debug for Engine<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl<R: ContainerRuntime> Engine<R> {
    /// `outbox` is notified whenever a state change was queued for the scheduler.
    pub(crate) fn new(
        runtime: Arc<R>,
        network: Arc<dyn TaskNetworking>,
        store: Arc<Store>,
        config: EngineConfig,
        outbox: Arc<Notify>,
        cancel: CancellationToken,
    ) -> (Self, EngineHandle) {
        let (tx, rx) = mpsc::channel(256);
        let data_dir = store.path().parent().unwrap_or(std::path::Path::new("."));
        let disk = Arc::new(crate::disk::Disk::new(data_dir));
        let images = Arc::new(ImageUse::load(Arc::clone(&store)));
        let runs = crate::last_exit::Runs::of_this_process(data_dir);
        let engine = Self {
            images,
            runtime,
            network,
            store,
            config,
            tasks: HashMap::new(),
            rx,
            tx: tx.clone(),
            outbox,
            drivers: TaskTracker::new(),
            cancel,
            disk,
            unsaved: unsaved::Unsaved::default(),
            secrets: Arc::default(),
            pulls: Arc::default(),
            runs,
            found: found::Found::default(),
        };
        (engine, EngineHandle { tx })
    }

    /// Replaces what the engine knows of runs (tests play several runs in one process).
    #[cfg(test)]
    pub(crate) fn set_runs(&mut self, runs: crate::last_exit::Runs) {
        self.runs = runs;
    }

    /// The data dir's condition, which the engine degrades when a store write fails.
    pub(crate) fn disk(&self) -> Arc<crate::disk::Disk> {
        Arc::clone(&self.disk)
    }

    /// The table of the images the engine's tasks need, for the image collector.
    pub(crate) fn images(&self) -> Arc<ImageUse> {
        Arc::clone(&self.images)
    }

    /// The progress of the pulls running now, for the scheduler.
    pub(crate) fn pulls(&self) -> Arc<crate::images::PullBoard> {
        Arc::clone(&self.pulls)
    }

    /// Takes back the tasks of an earlier run, then applies commands until cancelled. Stopping
    /// the engine stops no container: drivers just stop watching.
    pub(crate) async fn run(mut self) -> Result<(), StoreError> {
        self.resume_stored().await?;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                command = self.rx.recv() => match command {
                    // Only a command that may commit tells the runtime this thread blocks:
                    // that hands the worker's other tasks to another thread, which a read
                    // from memory (a barrier, a view) need not pay for.
                    Some(c) if c.may_commit() => crate::store::blocking_ok(|| self.handle(c))?,
                    Some(c) => self.handle(c)?,
                    None => break,
                },
            }
        }
        self.drivers.close();
        if tokio::time::timeout(Duration::from_secs(5), self.drivers.wait())
            .await
            .is_err()
        {
            tracing::warn!("task drivers did not stop within 5s");
        }
        Ok(())
    }

    fn handle(&mut self, command: Command) -> Result<(), StoreError> {
        match command {
            Command::Assign(a) => self.assign(*a),
            Command::Stop(order) => self.stop(order),
            Command::FullState(reply) => {
                let refused = self.unsaved.refused.iter().cloned();
                let _ = reply.send(
                    self.tasks
                        .values()
                        .map(|e| e.state.clone())
                        .chain(refused)
                        .collect(),
                );
                Ok(())
            }
            Command::Found { report, reply } => {
                let _ = reply.send(self.found.report(report, tokio::time::Instant::now()));
                Ok(())
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.flush());
                Ok(())
            }
            Command::Event { task_id, event } => self.apply(&task_id, event),
            Command::DriverFailed { task_id, reason } => self.driver_failed(&task_id, &reason),
            Command::Barrier(reply) => {
                let _ = reply.send(());
                Ok(())
            }
            Command::LogTarget {
                task_id,
                container,
                reply,
            } => {
                let _ = reply.send(self.log_target(&task_id, &container));
                Ok(())
            }
            Command::TaskAt { address, reply } => {
                let _ = reply.send(self.task_at(address));
                Ok(())
            }
            Command::Views(reply) => {
                let mut views: Vec<TaskView> = self.tasks.values().map(Entry::view).collect();
                views.sort_by(|a, b| a.state.task_id.cmp(&b.state.task_id));
                let _ = reply.send(views);
                Ok(())
            }
            Command::TaskById { task_id, reply } => {
                let view = self
                    .tasks
                    .get(&task_id)
                    .filter(|e| e.state.status < TaskStatus::Stopped as i32)
                    .map(Entry::view);
                let _ = reply.send(view);
                Ok(())
            }
        }
    }

    fn task_at(&self, address: std::net::Ipv4Addr) -> Option<TaskView> {
        let id = state::task_at(self.tasks.values().map(|e| &e.state), address)?
            .task_id
            .clone();
        self.tasks.get(&id).map(Entry::view)
    }

    fn log_target(&self, task_id: &str, container: &str) -> Option<LogTarget> {
        let entry = self.tasks.get(task_id)?;
        let state = entry
            .state
            .containers
            .iter()
            .find(|c| c.name == container)?;
        // A container's STOPPED is reported once its wait returned, which is after its output
        // was drained into the log.
        let finished = state.status >= ContainerStatus::Stopped as i32
            || entry.state.status >= TaskStatus::Stopped as i32;
        Some(LogTarget {
            path: self.runtime.log_path(task_id, container),
            finished,
        })
    }

    fn assign(&mut self, mut a: TaskAssignment) -> Result<(), StoreError> {
        // The secrets stay in memory: the assignment is stored, and tracked, without them.
        if let Some(secrets) = a.secrets.take() {
            self.secrets.put(&a.task_id, secrets.into());
        }
        if self.tasks.contains_key(&a.task_id) {
            // Resent by the scheduler: already ours.
            return self.applied(a.seq);
        }
        if self.refuse_when_degraded(&a) {
            return Ok(());
        }
        let (initial, start) = if a.adopt {
            let containers = self.found.take(&a.task_id).unwrap_or_default();
            (found::adopted_state(&a, &containers), Start::Adopt)
        } else {
            (state::initial(&a), Start::Fresh)
        };
        // The assignment and its first state in one commit: the ack waits for one fsync.
        match self.store.accept_assignment_queued(&a, &initial) {
            Ok(Some(_)) => self.outbox.notify_one(),
            Ok(None) => return Ok(()),
            Err(error) => {
                self.disk.store_failed(self.store.path(), &error);
                self.refuse_when_degraded(&a);
                return Ok(());
            }
        }
        if a.adopt {
            tracing::info!(task.id = %a.task_id, seq = a.seq, status = initial.status, "re-adopting a task found in containerd after the store was lost");
        } else {
            tracing::info!(task.id = %a.task_id, seq = a.seq, "task assigned");
        }
        self.spawn(a, initial, start);
        Ok(())
    }

    /// Tracks a task (replacing what was tracked of it) without a driver yet; returns the
    /// receiving end of its control channel, for a driver to take.
    fn track(&mut self, a: &TaskAssignment, state: TaskState) -> mpsc::UnboundedReceiver<Control> {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let essential = a
            .definition
            .as_ref()
            .map(|d| {
                d.containers
                    .iter()
                    .filter(|c| c.essential)
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let checked: Vec<(String, bool, u32)> = a
            .definition
            .as_ref()
            .map(|d| {
                d.containers
                    .iter()
                    .filter_map(|c| {
                        crate::task::health_check(c)
                            .map(|check| (c.name.clone(), c.essential, check.retries))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let health = checked
            .iter()
            .map(|(name, _, retries)| {
                // After an agent restart, the last reported health stands until a result moves it.
                let last = state
                    .containers
                    .iter()
                    .find(|c| c.name == *name)
                    .and_then(|c| HealthStatus::try_from(c.health_status).ok())
                    .unwrap_or(HealthStatus::Unknown);
                (name.clone(), health::Tracker::new(*retries, last))
            })
            .collect();
        let checked_essential = checked
            .into_iter()
            .filter(|(_, essential, _)| *essential)
            .map(|(name, _, _)| name)
            .collect();
        // Held from now until the task has stopped: the collector never removes them.
        if state.status < TaskStatus::Stopped as i32 {
            self.images.hold(&a.task_id, task_images(a));
        }
        let endpoint_ids = self.store.endpoint_ids(&a.task_id).unwrap_or_else(|error| {
            // The task still runs; only its containers' metadata URLs answer 404.
            tracing::warn!(task.id = %a.task_id, %error, "cannot read the task's endpoint ids");
            crate::store::EndpointIds::new()
        });
        self.tasks.insert(
            a.task_id.clone(),
            Entry {
                state,
                assignment: a.clone(),
                definition: Arc::new(a.definition.clone().unwrap_or_default()),
                control: control_tx,
                essential,
                health,
                checked_essential,
                resuming: false,
                salvaged: false,
                endpoint_ids: Arc::new(endpoint_ids),
            },
        );
        control_rx
    }

    /// Tracks a task and starts its driver on the tracker. A driver that panics is reported
    /// as [`Command::DriverFailed`] rather than leaving its task undriven.
    fn spawn(&mut self, a: TaskAssignment, state: TaskState, start: Start) {
        let wants_stop = state.desired_status == DesiredStatus::Stopped as i32;
        let restart_counts = state
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.restart_count))
            .collect();
        let salvage_state =
            matches!(start, Start::Salvage { .. } | Start::Adopt).then(|| state.clone());
        let control = self.track(&a, state);
        let task_id = a.task_id.clone();
        let endpoint_ids = self
            .tasks
            .get(&task_id)
            .map(|e| Arc::clone(&e.endpoint_ids))
            .unwrap_or_default();
        let span = tracing::info_span!("task", task.id = %task_id);
        let driver = Driver {
            runtime: Arc::clone(&self.runtime),
            network: Arc::clone(&self.network),
            config: self.config.clone(),
            events: self.tx.clone(),
            control,
            cancel: self.cancel.child_token(),
            assignment: a,
            restart_counts,
            endpoint_ids,
            images: Arc::clone(&self.images),
            secrets: Arc::clone(&self.secrets),
            registry_auth: HashMap::new(),
            pulls: Arc::clone(&self.pulls),
            resolved: HashMap::new(),
        };
        // Boxed: a driver's future is large, and its task's stack should not carry it.
        let run: BoxFuture<'static, ()> = match (start, salvage_state) {
            (Start::Fresh, _) => Box::pin(driver.run(None)),
            (Start::Resume(resume), _) => Box::pin(driver.run(Some(*resume))),
            (start @ (Start::Salvage { .. } | Start::Adopt), state) => {
                let reason = match start {
                    Start::Salvage { reason } => Some(reason),
                    _ => None,
                };
                let runtime = Arc::clone(&self.runtime);
                let cancel = self.cancel.clone();
                let id = task_id.clone();
                Box::pin(async move {
                    let Some(all) = resume::list_with_retry(&*runtime, &cancel).await else {
                        return;
                    };
                    let resume = driver::Resume {
                        state: state.unwrap_or_default(),
                        containers: all.into_iter().filter(|c| c.task_id == id).collect(),
                        reason,
                    };
                    driver.run(Some(resume)).await;
                })
            }
        };
        let events = self.tx.clone();
        self.drivers
            .spawn(salvage::supervised(run, task_id.clone(), events).instrument(span));
        if wants_stop && let Some(entry) = self.tasks.get(&task_id) {
            let _ = entry.control.send(Control::Stop);
        }
    }

    fn stop(&mut self, order: StopTaskOrder) -> Result<(), StoreError> {
        let code = StopCode::try_from(order.stop_code).unwrap_or(StopCode::UserInitiated);
        let reason = if order.reason.is_empty() {
            "Task stopped by user".to_owned()
        } else {
            order.reason
        };
        // Record the stop before marking the order applied: a crash in between then means the
        // scheduler resends the order (harmless, the first reason wins), never that it is lost.
        self.request_stop(&order.task_id, code, &reason)?;
        self.applied(order.seq)
    }

    /// Marks a task to stop (first reason wins) and tells its driver.
    fn request_stop(
        &mut self,
        task_id: &str,
        code: StopCode,
        reason: &str,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.tasks.get_mut(task_id) else {
            tracing::warn!(task.id = %task_id, "stop order for a task this agent does not know");
            return Ok(());
        };
        if state::mark_stopping(&mut entry.state, code, reason, SystemTime::now()) {
            tracing::info!(task.id = %task_id, stop_code = ?code, %reason, "stopping task");
            let _ = entry.control.send(Control::Stop);
            let snapshot = entry.state.clone();
            self.record(&snapshot)?;
        }
        Ok(())
    }

    fn apply(&mut self, task_id: &str, event: TaskEvent) -> Result<(), StoreError> {
        if let TaskEvent::Health { name, probe } = &event {
            return self.health_result(task_id, name, probe);
        }
        if let TaskEvent::Resumed = event {
            return self.resume_finished(task_id);
        }
        let Some(entry) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        if let TaskEvent::ContainerRestarted { name, .. } = &event
            && let Some(tracker) = entry.health.get_mut(name)
        {
            // A new process: its health starts over, with a new start period.
            tracker.restarted();
            state::set_health(
                &mut entry.state,
                name,
                HealthStatus::Unknown,
                &entry.checked_essential,
            );
            let _ = entry.control.send(Control::Health {
                name: name.clone(),
                status: HealthStatus::Unknown,
            });
        }
        let essential_exit = match &event {
            TaskEvent::ContainerExited { name, .. } | TaskEvent::ContainerVanished { name, .. } => {
                entry.essential.contains(name)
            }
            _ => false,
        };
        let failed = match &event {
            TaskEvent::Failed { reason } => Some(reason.clone()),
            // An essential container that cannot start stops the task; another does not.
            TaskEvent::ContainerCannotStart { name, reason } if entry.essential.contains(name) => {
                Some(reason.clone())
            }
            _ => None,
        };
        let holder_gone = match &event {
            TaskEvent::HolderGone { reason } => Some(reason.clone()),
            _ => None,
        };
        let released = matches!(event, TaskEvent::Released);
        if matches!(event, TaskEvent::Stopped) {
            // Its images were in use until now: their age counts from here, and the collector
            // may take them (its containers, kept until the cleanup, hold their snapshots).
            let images: Vec<String> = task_images(&entry.assignment).collect();
            self.images.touch(&images, SystemTime::now(), false);
            self.images.release(task_id);
        }
        let changed = state::apply(&mut entry.state, event, SystemTime::now());
        let snapshot = entry.state.clone();
        if changed {
            self.record(&snapshot)?;
        }
        if snapshot.status >= TaskStatus::Stopped as i32 {
            // A resumed task that stopped has been taken back: its resume completed.
            self.resume_finished(task_id)?;
        }
        if let Some(reason) = failed {
            self.request_stop(task_id, StopCode::TaskFailedToStart, &reason)?;
        } else if let Some(reason) = holder_gone {
            self.request_stop(task_id, StopCode::EssentialContainerExited, &reason)?;
        } else if essential_exit {
            self.request_stop(
                task_id,
                StopCode::EssentialContainerExited,
                "Essential container in task exited",
            )?;
        }
        if released {
            // The release is in the outbox (recorded above) until the scheduler acknowledges
            // it; the task itself is done here.
            self.tasks.remove(task_id);
            self.forget(task_id)?;
            self.images.release(task_id);
            self.secrets.forget(task_id);
        }
        Ok(())
    }

    /// Applies one health check result of a container: its tracker decides its health; a change
    /// is reported (and told to the driver, for HEALTHY dependencies), and an essential container
    /// that turns UNHEALTHY stops the task, as on ECS. Results for a task that is stopping no
    /// longer count (its containers are being stopped, their checks fail for that reason).
    fn health_result(
        &mut self,
        task_id: &str,
        name: &str,
        probe: &Probe,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        if entry.state.desired_status == DesiredStatus::Stopped as i32 {
            return Ok(());
        }
        let Some(tracker) = entry.health.get_mut(name) else {
            return Ok(());
        };
        if !probe.passed {
            tracing::debug!(task.id = %task_id, container.name = %name, detail = %probe.detail, in_start_period = probe.in_start_period, "health check failed");
        }
        let previous = tracker.status();
        let Some(status) = tracker.record(probe) else {
            return Ok(());
        };
        let failures = tracker.failures();
        tracing::info!(task.id = %task_id, container.name = %name, from = ?previous, health = ?status, detail = %probe.detail, "container health changed");
        let _ = entry.control.send(Control::Health {
            name: name.to_owned(),
            status,
        });
        let essential = entry.essential.iter().any(|e| e == name);
        let changed = state::set_health(&mut entry.state, name, status, &entry.checked_essential);
        let snapshot = entry.state.clone();
        if changed {
            self.record(&snapshot)?;
        }
        if status == HealthStatus::Unhealthy && essential {
            let reason = format!(
                "Task failed container health checks: essential container {name} is unhealthy after {failures} consecutive failed checks (last: {})",
                probe.detail
            );
            self.request_stop(task_id, StopCode::EssentialContainerExited, &reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// The images a task's containers run.
fn task_images(a: &TaskAssignment) -> impl Iterator<Item = String> + '_ {
    a.definition
        .iter()
        .flat_map(|d| d.containers.iter().map(|c| c.image.clone()))
}

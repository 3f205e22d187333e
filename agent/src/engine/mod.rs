//! The task engine: the one owner of task state. It receives a closed set of commands (an
//! assignment, a stop order, a state request, and the progress events of task drivers),
//! applies them to each task's state (statuses only move forward), persists every change and
//! queues it for the scheduler. Each task is driven by its own driver task, so a slow pull or a
//! container that takes minutes to stop never holds up another task.

mod deps;
mod driver;
mod restart;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{
    DesiredStatus, StopCode, StopTaskOrder, TaskAssignment, TaskState, TaskStatus,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::runtime::ContainerRuntime;
use crate::store::{Store, StoreError};
pub use driver::Control;
use driver::{Driver, Resume};
pub use state::TaskEvent;

/// How tasks are run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// SIGTERM → SIGKILL wait for containers without their own stopTimeout.
    pub stop_timeout: Duration,
    /// Time between STOPPED and the removal of the task's containers.
    pub cleanup_wait: Duration,
    /// Deadline of one image pull.
    pub pull_timeout: Duration,
    /// Delay before the first restart of a container that keeps crashing (ECS restartPolicy);
    /// it doubles with each consecutive restart up to `restart_backoff_max`. Not an operator
    /// setting: [`RESTART_BACKOFF`] and [`RESTART_BACKOFF_MAX`] in production, short in tests.
    pub restart_backoff: Duration,
    /// The longest delay between two restarts of a container.
    pub restart_backoff_max: Duration,
    /// Whether containers may run privileged (ECS `privileged`); a task that asks for it on an
    /// agent that does not allow it stops before anything is pulled.
    pub allow_privileged: bool,
}

/// The first restart delay of a crashing container, as the kubelet's.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// The longest restart delay of a crashing container, as the kubelet's.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the engine acts on.
#[derive(Debug)]
pub enum Command {
    Assign(TaskAssignment),
    Stop(StopTaskOrder),
    /// Every task the agent knows, for the scheduler's reconciliation.
    FullState(oneshot::Sender<Vec<TaskState>>),
    /// Progress of a task driver.
    Event {
        task_id: String,
        event: TaskEvent,
    },
    /// Answered once every command sent before it has been applied (and persisted).
    Barrier(oneshot::Sender<()>),
}

/// A cloneable handle to send commands to the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

impl EngineHandle {
    /// Sends a command; false when the engine has shut down.
    pub async fn send(&self, command: Command) -> bool {
        self.tx.send(command).await.is_ok()
    }

    /// Waits until every command sent before has been applied and persisted. False when the
    /// engine has shut down.
    pub async fn barrier(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Barrier(tx)).await && rx.await.is_ok()
    }

    /// Every task's current state.
    pub async fn full_state(&self) -> Vec<TaskState> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::FullState(tx)).await {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

struct Entry {
    state: TaskState,
    control: mpsc::UnboundedSender<Control>,
    essential: Vec<String>,
}

/// The engine. Build it with [`Engine::new`], then `run` it on its own task.
pub struct Engine<R: ContainerRuntime> {
    runtime: Arc<R>,
    store: Arc<Store>,
    config: EngineConfig,
    tasks: HashMap<String, Entry>,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    outbox: Arc<Notify>,
    drivers: TaskTracker,
    cancel: CancellationToken,
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
    pub fn new(
        runtime: Arc<R>,
        store: Arc<Store>,
        config: EngineConfig,
        outbox: Arc<Notify>,
        cancel: CancellationToken,
    ) -> (Self, EngineHandle) {
        let (tx, rx) = mpsc::channel(256);
        let engine = Self {
            runtime,
            store,
            config,
            tasks: HashMap::new(),
            rx,
            tx: tx.clone(),
            outbox,
            drivers: TaskTracker::new(),
            cancel,
        };
        (engine, EngineHandle { tx })
    }

    /// Takes back the tasks of an earlier run, then applies commands until cancelled. Stopping
    /// the engine stops no container: drivers just stop watching.
    pub async fn run(mut self) -> Result<(), StoreError> {
        self.resume_stored().await?;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                command = self.rx.recv() => match command {
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

    async fn resume_stored(&mut self) -> Result<(), StoreError> {
        let stored = self.store.tasks()?;
        if stored.is_empty() {
            return Ok(());
        }
        let mut attempt = 0u32;
        // Never guess: a task whose containers cannot be listed is not "gone". Retry until
        // containerd answers (it may still be starting) or the agent stops.
        let containers = loop {
            match self.runtime.list().await {
                Ok(list) => break list,
                Err(error) => {
                    attempt += 1;
                    let delay = Duration::from_millis(250)
                        .saturating_mul(1u32 << attempt.min(7))
                        .min(Duration::from_secs(30));
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot list containers to resume tasks; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => return Ok(()),
                    }
                }
            }
        };
        for task in stored {
            let id = task.state.task_id.clone();
            if task.state.status >= TaskStatus::Deprovisioned as i32 {
                self.store.forget_task(&id)?;
                continue;
            }
            tracing::info!(task.id = %id, status = task.state.status, "resuming task after restart");
            let resume = Resume {
                state: task.state.clone(),
                containers: containers
                    .iter()
                    .filter(|c| c.task_id == id)
                    .cloned()
                    .collect(),
            };
            self.spawn(task.assignment, task.state, Some(resume));
        }
        Ok(())
    }

    fn handle(&mut self, command: Command) -> Result<(), StoreError> {
        match command {
            Command::Assign(a) => self.assign(a),
            Command::Stop(order) => self.stop(order),
            Command::FullState(reply) => {
                let _ = reply.send(self.tasks.values().map(|e| e.state.clone()).collect());
                Ok(())
            }
            Command::Event { task_id, event } => self.apply(&task_id, event),
            Command::Barrier(reply) => {
                let _ = reply.send(());
                Ok(())
            }
        }
    }

    fn assign(&mut self, a: TaskAssignment) -> Result<(), StoreError> {
        if self.tasks.contains_key(&a.task_id) {
            // Resent by the scheduler: already ours.
            return self.store.mark_applied(a.seq);
        }
        let initial = state::initial(&a);
        if !self.store.accept_assignment(&a, &initial)? {
            return Ok(());
        }
        self.store.record_state(&initial)?;
        self.outbox.notify_one();
        tracing::info!(task.id = %a.task_id, seq = a.seq, "task assigned");
        self.spawn(a, initial, None);
        Ok(())
    }

    fn spawn(&mut self, a: TaskAssignment, state: TaskState, resume: Option<Resume>) {
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
        let wants_stop = state.desired_status == DesiredStatus::Stopped as i32;
        let restart_counts = state
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.restart_count))
            .collect();
        self.tasks.insert(
            a.task_id.clone(),
            Entry {
                state,
                control: control_tx.clone(),
                essential,
            },
        );
        let span = tracing::info_span!("task", task.id = %a.task_id);
        let driver = Driver {
            runtime: Arc::clone(&self.runtime),
            config: self.config.clone(),
            events: self.tx.clone(),
            control: control_rx,
            cancel: self.cancel.child_token(),
            assignment: a,
            restart_counts,
        };
        self.drivers.spawn(driver.run(resume).instrument(span));
        if wants_stop {
            let _ = control_tx.send(Control::Stop);
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
        self.store.mark_applied(order.seq)
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
        let Some(entry) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        let essential_exit = match &event {
            TaskEvent::ContainerExited { name, .. } => entry.essential.contains(name),
            _ => false,
        };
        let failed = match &event {
            TaskEvent::Failed { reason } => Some(reason.clone()),
            _ => None,
        };
        let deprovisioned = matches!(event, TaskEvent::Deprovisioned);
        let changed = state::apply(&mut entry.state, event, SystemTime::now());
        let snapshot = entry.state.clone();
        if changed {
            self.record(&snapshot)?;
        }
        if let Some(reason) = failed {
            self.request_stop(task_id, StopCode::TaskFailedToStart, &reason)?;
        } else if essential_exit {
            self.request_stop(
                task_id,
                StopCode::EssentialContainerExited,
                "Essential container in task exited",
            )?;
        }
        if deprovisioned {
            self.tasks.remove(task_id);
            self.store.forget_task(task_id)?;
        }
        Ok(())
    }

    fn record(&self, state: &TaskState) -> Result<(), StoreError> {
        self.store.record_state(state)?;
        self.outbox.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests;

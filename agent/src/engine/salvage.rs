//! Driver failures: a driver that panics is caught where it runs, its task stops with the
//! failure as its reason, and a new driver takes the task over to stop what runs and clean
//! up. One task's failure never takes the engine, the session or another task down.

use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

use berth_proto::v1::StopCode;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Command, Engine, Start, TaskEvent, state};
use crate::runtime::ContainerRuntime;
use crate::store::StoreError;

impl<R: ContainerRuntime> Engine<R> {
    /// A task's driver failed: the failure becomes the task's stop reason (unless it was
    /// stopping already), and a new driver takes the task over as after an agent restart, to
    /// stop what runs and clean up. Should that driver fail too, the task is reported STOPPED
    /// and what it has on the host is left as it is. The engine and every other task go on.
    pub(super) fn driver_failed(&mut self, task_id: &str, reason: &str) -> Result<(), StoreError> {
        let Some(salvaged) = self.tasks.get(task_id).map(|e| e.salvaged) else {
            return Ok(());
        };
        tracing::error!(task.id = %task_id, %reason, "task driver failed");
        self.request_stop(task_id, StopCode::TaskFailedToStart, reason)?;
        let Some(entry) = self.tasks.get_mut(task_id) else {
            return Ok(());
        };
        if salvaged {
            tracing::error!(task.id = %task_id, "the driver that took the task over failed too; the task is reported STOPPED and its containers and resources are left on the host");
            if state::apply(&mut entry.state, TaskEvent::Stopped, SystemTime::now()) {
                let snapshot = entry.state.clone();
                self.record(&snapshot)?;
            }
            return self.resume_finished(task_id);
        }
        let (assignment, state) = (entry.assignment.clone(), entry.state.clone());
        let resuming = entry.resuming;
        self.spawn(
            assignment,
            state,
            Start::Salvage {
                reason: reason.to_owned(),
            },
        );
        if let Some(entry) = self.tasks.get_mut(task_id) {
            entry.salvaged = true;
            entry.resuming = resuming;
        }
        Ok(())
    }
}

/// Runs a task's driver. A panic in it is caught here and sent to the engine as
/// [`Command::DriverFailed`], naming the failure, so the task is stopped with that reason
/// instead of being left undriven; the agent and its other tasks are not affected.
pub(super) async fn supervised(
    run: BoxFuture<'static, ()>,
    task_id: String,
    events: mpsc::Sender<Command>,
) {
    if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let reason = format!("the agent's driver of this task failed: {message}");
        let _ = events.send(Command::DriverFailed { task_id, reason }).await;
    }
}

//! The handle through which everything else reaches the engine: commands sent on its queue,
//! and the questions (full state, views, log targets, a flush of what a full disk kept from
//! the store) answered on a oneshot channel.

use berth_proto::v1::{FoundContainer, TaskState};
use tokio::sync::{mpsc, oneshot};

use super::{Command, LogTarget, TaskView};
use crate::store::StoreError;

/// A cloneable handle to send commands to the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineHandle {
    pub(super) tx: mpsc::Sender<Command>,
}

impl EngineHandle {
    /// A handle whose commands arrive on `tx`'s receiver, for tests that answer them.
    #[cfg(test)]
    pub(crate) fn from_sender(tx: mpsc::Sender<Command>) -> Self {
        EngineHandle { tx }
    }

    /// Sends a command; false when the engine has shut down.
    pub(crate) async fn send(&self, command: Command) -> bool {
        self.tx.send(command).await.is_ok()
    }

    /// Waits until every command sent before has been applied and persisted. False when the
    /// engine has shut down.
    pub(crate) async fn barrier(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Barrier(tx)).await && rx.await.is_ok()
    }

    /// Every task's current state.
    pub(crate) async fn full_state(&self) -> Vec<TaskState> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::FullState(tx)).await {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The containers found at start that no task record names, while held for adoption
    /// (see `found.rs`); `report`: they are sent to the scheduler now.
    pub(crate) async fn found(&self, report: bool) -> Vec<FoundContainer> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Found { report, reply }).await {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Writes what the store did not take while the agent was degraded; the first store error
    /// when it still does not (or the engine has shut down).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        let gone = || StoreError::Db {
            op: "flush",
            reason: "the task engine has stopped".into(),
            errno: None,
        };
        if !self.send(Command::Flush(reply)).await {
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Where a task's container logs and whether it has stopped; None when the engine does
    /// not know the task or container (or has shut down).
    pub(crate) async fn log_target(&self, task_id: &str, container: &str) -> Option<LogTarget> {
        let (reply, rx) = oneshot::channel();
        let command = Command::LogTarget {
            task_id: task_id.to_owned(),
            container: container.to_owned(),
            reply,
        };
        if !self.send(command).await {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// The task that has `address`; None when none has it (or the engine has shut down).
    pub(crate) async fn task_at(&self, address: std::net::Ipv4Addr) -> Option<TaskView> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::TaskAt { address, reply }).await {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// Every task with its definition, in task ID order; empty when the engine has shut down.
    pub(crate) async fn views(&self) -> Vec<TaskView> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Views(reply)).await {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// A task that is not stopped, by ID; None otherwise (or when the engine has shut down).
    pub(crate) async fn task_by_id(&self, task_id: &str) -> Option<TaskView> {
        let (reply, rx) = oneshot::channel();
        let command = Command::TaskById {
            task_id: task_id.to_owned(),
            reply,
        };
        if !self.send(command).await {
            return None;
        }
        rx.await.ok().flatten()
    }
}

//! What the engine is sent (the closed set of commands) and the views of tasks and logs it
//! answers some of them with.

use std::sync::Arc;

use berth_proto::v1::{FoundContainer, StopTaskOrder, TaskAssignment, TaskDefinition, TaskState};
use tokio::sync::oneshot;

use super::TaskEvent;
use crate::store::StoreError;

/// What the engine acts on.
#[derive(Debug)]
pub(crate) enum Command {
    Assign(Box<TaskAssignment>),
    Stop(StopTaskOrder),
    /// Every task the agent knows, for the scheduler's reconciliation.
    FullState(oneshot::Sender<Vec<TaskState>>),
    /// The containers found at start whose tasks a store that started empty has no record
    /// of, while they are held for adoption; `report`: they go to the scheduler now.
    Found {
        report: bool,
        reply: oneshot::Sender<Vec<FoundContainer>>,
    },
    /// Progress of a task driver.
    Event {
        task_id: String,
        event: TaskEvent,
    },
    /// A task's driver ended abnormally (it panicked); the reason names the failure.
    DriverFailed {
        task_id: String,
        reason: String,
    },
    /// Answered once every command sent before it has been applied (and persisted).
    Barrier(oneshot::Sender<()>),
    /// Where a container's log is and whether the container has stopped; None when the task
    /// or container is unknown.
    LogTarget {
        task_id: String,
        container: String,
        reply: oneshot::Sender<Option<LogTarget>>,
    },
    /// The task that has this address (awsvpc: its attachment's; bridge: one of its
    /// containers'), for the task endpoint; None when no task has it.
    TaskAt {
        address: std::net::Ipv4Addr,
        reply: oneshot::Sender<Option<TaskView>>,
    },
    /// Every task the engine holds, with its definition (telemetry and introspection).
    Views(oneshot::Sender<Vec<TaskView>>),
    /// Writes what could not be written while the agent was degraded (see `unsaved.rs`);
    /// answered with the first store error, if any.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// A task by its ID, for the task endpoint; None when unknown or stopped.
    TaskById {
        task_id: String,
        reply: oneshot::Sender<Option<TaskView>>,
    },
}

impl Command {
    /// Whether applying it may write to the store (the others answer from memory).
    pub(super) fn may_commit(&self) -> bool {
        match self {
            Command::Assign(_)
            | Command::Stop(_)
            | Command::Event { .. }
            | Command::DriverFailed { .. }
            | Command::Flush(_) => true,
            Command::FullState(_)
            | Command::Found { .. }
            | Command::Barrier(_)
            | Command::LogTarget { .. }
            | Command::TaskAt { .. }
            | Command::Views(_)
            | Command::TaskById { .. } => false,
        }
    }
}

/// A task as the task endpoint shows it: its definition and its current state.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    pub definition: Arc<TaskDefinition>,
    pub state: TaskState,
    /// Each container's task endpoint ID, by name (the secret part of its metadata URL).
    pub endpoint_ids: Arc<crate::store::EndpointIds>,
}

/// A container's log file, for reading it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogTarget {
    /// The current file; rotated ones are beside it.
    pub path: std::path::PathBuf,
    /// The container (or its whole task) has stopped, and its output is all in the log.
    pub finished: bool,
}

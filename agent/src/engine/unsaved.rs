//! The engine's writes to the store, and what it does when they fail (a full disk): the task
//! engine goes on with its tasks in memory, keeps what it could not write in [`Unsaved`], and
//! the agent degrades ([`crate::disk`]). While degraded, no write is attempted (no error per
//! write); new assignments are refused with the reason, reported to the scheduler in the
//! agent's full state. [`Command::Flush`](super::Command::Flush), sent by the recovery probe,
//! opens the store again if it latched the failure and writes everything kept: each task's
//! latest state (a full snapshot, so the outbox gets the newest), the scheduler's last applied
//! sequence number, the tasks to forget and the resumes that completed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::SystemTime;

use berth_proto::v1::{DesiredStatus, StopCode, TaskAssignment, TaskState, TaskStatus};

use super::{Engine, state};
use crate::runtime::ContainerRuntime;
use crate::store::{Store, StoreError};

/// How many refused assignments the engine remembers for the scheduler's reconciliation.
const REFUSED_KEPT: usize = 256;

/// What the engine could not write, to be written once the store takes writes again.
#[derive(Debug, Default)]
pub(super) struct Unsaved {
    /// The latest state of each task whose state is not stored.
    states: BTreeMap<String, TaskState>,
    /// The highest scheduler sequence number applied and not stored (0: none).
    applied: u64,
    /// Tasks released whose records are still in the store.
    forget: BTreeSet<String>,
    /// Tasks whose resume completed and whose resume record is still in the store.
    resumed: BTreeSet<String>,
    /// Assignments refused while degraded, reported STOPPED in the full state (newest last).
    pub(super) refused: VecDeque<TaskState>,
}

impl Unsaved {
    fn is_empty(&self) -> bool {
        self.states.is_empty()
            && self.applied == 0
            && self.forget.is_empty()
            && self.resumed.is_empty()
    }
}

impl<R: ContainerRuntime> Engine<R> {
    /// Runs one write unless the agent is degraded; a failure degrades it. None when the write
    /// was not made.
    fn write<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Option<T> {
        if self.disk.is_degraded() {
            return None;
        }
        match f(&self.store) {
            Ok(v) => Some(v),
            Err(error) => {
                self.disk.store_failed(self.store.path(), &error);
                None
            }
        }
    }

    /// Stores a task's state and queues it for the scheduler; kept for later when the store
    /// does not take it.
    pub(super) fn record(&mut self, state: &TaskState) -> Result<(), StoreError> {
        if self.write(|s| s.record_state(state)).is_some() {
            self.outbox.notify_one();
        } else {
            self.unsaved
                .states
                .insert(state.task_id.clone(), state.clone());
        }
        Ok(())
    }

    /// Stores the highest scheduler sequence number applied.
    pub(super) fn applied(&mut self, seq: u64) -> Result<(), StoreError> {
        if self.write(|s| s.mark_applied(seq)).is_none() {
            self.unsaved.applied = self.unsaved.applied.max(seq);
        }
        Ok(())
    }

    /// Forgets a released task in the store.
    pub(super) fn forget(&mut self, task_id: &str) -> Result<(), StoreError> {
        if self.write(|s| s.forget_task(task_id)).is_none() {
            self.unsaved.forget.insert(task_id.to_owned());
        }
        Ok(())
    }

    /// Drops a completed resume's record.
    pub(super) fn resume_cleared(&mut self, task_id: &str) -> Result<(), StoreError> {
        if self.write(|s| s.clear_resume_record(task_id)).is_none() {
            self.unsaved.resumed.insert(task_id.to_owned());
        }
        Ok(())
    }

    /// Refuses a new assignment when the agent cannot write its data dir: nothing of it runs,
    /// and it is reported STOPPED with the reason (in the full state, which the session sends
    /// after a refusal). True when refused.
    pub(super) fn refuse_when_degraded(&mut self, a: &TaskAssignment) -> bool {
        let Some(degraded) = self.disk.degraded() else {
            return false;
        };
        let reason = format!("Task refused: {}", degraded.reason());
        let mut refused = state::initial(a);
        let now = SystemTime::now();
        state::mark_stopping(&mut refused, StopCode::TaskFailedToStart, &reason, now);
        state::apply(&mut refused, state::TaskEvent::Stopped, now);
        refused.desired_status = DesiredStatus::Stopped as i32;
        refused.status = TaskStatus::Stopped as i32;
        tracing::warn!(task.id = %a.task_id, seq = a.seq, %reason, "assignment refused");
        self.unsaved.refused.retain(|t| t.task_id != a.task_id);
        if self.unsaved.refused.len() >= REFUSED_KEPT {
            self.unsaved.refused.pop_front();
        }
        self.unsaved.refused.push_back(refused);
        self.unsaved.applied = self.unsaved.applied.max(a.seq);
        true
    }

    /// Writes everything kept while degraded, after opening the store again if it latched an
    /// I/O failure. The first error ends it (what is left stays kept).
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        self.store.reopen_if_failed()?;
        if self.unsaved.is_empty() {
            // Nothing waits: one write tells whether the store takes them again.
            return self.store.mark_applied(0);
        }
        if self.unsaved.applied > 0 {
            self.store.mark_applied(self.unsaved.applied)?;
            self.unsaved.applied = 0;
        }
        while let Some(entry) = self.unsaved.states.first_entry() {
            self.store.record_state(entry.get())?;
            entry.remove();
            self.outbox.notify_one();
        }
        while let Some(id) = self.unsaved.forget.first().cloned() {
            self.store.forget_task(&id)?;
            self.unsaved.forget.remove(&id);
        }
        while let Some(id) = self.unsaved.resumed.first().cloned() {
            self.store.clear_resume_record(&id)?;
            self.unsaved.resumed.remove(&id);
        }
        tracing::info!("the engine wrote what it kept while the data dir took no writes");
        Ok(())
    }
}

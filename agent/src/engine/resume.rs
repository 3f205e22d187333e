//! Taking tasks back after an agent restart, under a crash-loop guard. A task whose resume
//! began [`CRASH_LOOP_RESUMES`] times within [`CRASH_LOOP_WINDOW`] and never completed (the
//! agent died each time before it did) is not resumed a further time: it is reported STOPPED
//! with a reason saying so, and left as it is on the host, so one poisoned task can never keep
//! a host down. Each resume is recorded in the store before its driver starts, and the record
//! is dropped once the resume completed: the task's containers are reattached, or the task
//! stopped, or only its timed cleanup is left. So an operator who restarts a healthy agent
//! many times never trips the guard.

use std::time::{Duration, SystemTime};

use berth_proto::v1::StopCode;

use super::driver::Resume;
use super::{Engine, Start, TaskEvent, state};
use crate::backoff::{host_retries, retry};
use crate::runtime::ContainerRuntime;
use crate::store::{ResumeRecord, StoreError, StoredTask};
use crate::task::network;

/// How many resumes of one task may begin within [`CRASH_LOOP_WINDOW`] without completing
/// before the agent stops resuming it.
pub(super) const CRASH_LOOP_RESUMES: usize = 3;
/// The period over which [`CRASH_LOOP_RESUMES`] unfinished resumes count as a crash loop.
pub(super) const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10 * 60);

/// What the guard decides for a task about to be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Guard {
    /// Resume it, with this record (the recent unfinished resumes and this one) stored first.
    Resume(ResumeRecord),
    /// Do not: this many recent resumes never completed.
    GiveUp { unfinished: usize },
}

/// The guard's rule, pure: unfinished resumes older than the window no longer count.
pub(super) fn guard(record: &ResumeRecord, now: SystemTime) -> Guard {
    let mut started: Vec<SystemTime> = record
        .started
        .iter()
        .copied()
        .filter(|t| now.duration_since(*t).unwrap_or_default() < CRASH_LOOP_WINDOW)
        .collect();
    if record.given_up || started.len() >= CRASH_LOOP_RESUMES {
        return Guard::GiveUp {
            unfinished: started.len(),
        };
    }
    started.push(now);
    Guard::Resume(ResumeRecord {
        started,
        given_up: false,
    })
}

/// The reason a task the guard gave up on is STOPPED with.
pub(super) fn give_up_reason(unfinished: usize) -> String {
    format!(
        "the agent stopped {unfinished} times within {} min while resuming this task after a \
         restart, so it is no longer resumed; whatever it has on the host (containers, network, \
         cgroup, volumes) is left as it is for an operator to inspect and remove",
        CRASH_LOOP_WINDOW.as_secs() / 60
    )
}

impl<R: ContainerRuntime> Engine<R> {
    pub(super) async fn resume_stored(&mut self) -> Result<(), StoreError> {
        let stored = self.store.tasks()?;
        self.repair_network(&stored).await;
        if stored.is_empty() {
            return Ok(());
        }
        // Never guess: a task whose containers cannot be listed is not "gone". Retry until
        // containerd answers (it may still be starting) or the agent stops.
        let Some(containers) = self.list_containers().await else {
            return Ok(());
        };
        let now = SystemTime::now();
        for task in stored {
            let id = task.state.task_id.clone();
            if state::released(&task.state) {
                // Reported (the outbox keeps the report until acknowledged); only the
                // forgetting was cut short.
                self.store.forget_task(&id)?;
                continue;
            }
            match guard(&self.store.resume_record(&id)?, now) {
                Guard::GiveUp { unfinished } => self.give_up(task, unfinished)?,
                Guard::Resume(record) => {
                    // Durable before the driver starts: if resuming kills the agent, the next
                    // start knows.
                    self.store.set_resume_record(&id, &record)?;
                    tracing::info!(task.id = %id, status = task.state.status, attempt = record.started.len(), "resuming task after restart");
                    let resume = Resume {
                        state: task.state.clone(),
                        containers: containers
                            .iter()
                            .filter(|c| c.task_id == id)
                            .cloned()
                            .collect(),
                        reason: None,
                    };
                    self.spawn(task.assignment, task.state, Start::Resume(Box::new(resume)));
                    if let Some(entry) = self.tasks.get_mut(&id) {
                        entry.resuming = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// The task's resume (after an agent restart), if any, completed: its record goes.
    pub(super) fn resume_finished(&mut self, task_id: &str) -> Result<(), StoreError> {
        match self.tasks.get_mut(task_id) {
            Some(entry) if entry.resuming => {
                entry.resuming = false;
                self.store.clear_resume_record(task_id)
            }
            _ => Ok(()),
        }
    }

    /// The containers Berth owns, retried with backoff until containerd answers; None when the
    /// agent stops first.
    pub(super) async fn list_containers(&self) -> Option<Vec<berth_runtime::ContainerInfo>> {
        list_with_retry(&*self.runtime, &self.cancel).await
    }

    /// Keeps a task the guard gave up on without a driver: STOPPED with the guard's reason
    /// (unless it was stopped already), and marked so that no later start resumes it either.
    fn give_up(&mut self, task: StoredTask, unfinished: usize) -> Result<(), StoreError> {
        let id = task.state.task_id.clone();
        let record = ResumeRecord {
            given_up: true,
            ..self.store.resume_record(&id)?
        };
        self.store.set_resume_record(&id, &record)?;
        let mut state = task.state.clone();
        let reason = give_up_reason(unfinished);
        let now = SystemTime::now();
        let stopping = state::mark_stopping(&mut state, StopCode::TaskFailedToStart, &reason, now);
        let stopped = state::apply(&mut state, TaskEvent::Stopped, now);
        if stopping || stopped {
            tracing::error!(task.id = %id, unfinished, %reason, "not resuming a task that kept stopping the agent");
            self.record(&state)?;
        } else {
            tracing::warn!(task.id = %id, "not resuming a stopped task that kept stopping the agent; its cleanup is left undone");
        }
        self.track(&task.assignment, state);
        Ok(())
    }

    /// Removes what a crash left of the network of tasks this agent no longer has (a setup or
    /// teardown cut short). The tasks still stored keep theirs: their drivers tear it down.
    pub(super) async fn repair_network(&self, stored: &[StoredTask]) {
        let live = network::live_namespaces(stored.iter().filter_map(|t| {
            let def = t.assignment.definition.as_ref()?;
            (!state::released(&t.state)).then_some((t.state.task_id.as_str(), def))
        }));
        match self.network.repair(&live).await {
            Ok(repaired) if repaired.is_empty() => {}
            Ok(repaired) => {
                tracing::info!(namespaces = ?repaired, "removed the network leftovers of tasks this agent no longer runs");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot remove every network leftover of earlier tasks; the next start retries");
            }
        }
    }
}

/// Lists the containers Berth owns, retrying with capped backoff until containerd answers or
/// `cancel` fires (then None).
pub(super) async fn list_with_retry<R: ContainerRuntime>(
    runtime: &R,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<Vec<berth_runtime::ContainerInfo>> {
    retry(
        host_retries(),
        cancel,
        || runtime.list(),
        |error, delay| {
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot list containers to resume tasks; retrying");
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn record(started: &[u64]) -> ResumeRecord {
        ResumeRecord {
            started: started.iter().map(|s| at(*s)).collect(),
            given_up: false,
        }
    }

    #[test]
    fn the_first_resumes_are_recorded_and_allowed() {
        assert_eq!(
            guard(&ResumeRecord::default(), at(0)),
            Guard::Resume(record(&[0]))
        );
        assert_eq!(
            guard(&record(&[0, 60]), at(120)),
            Guard::Resume(record(&[0, 60, 120]))
        );
    }

    #[test]
    fn as_many_unfinished_resumes_within_the_window_stop_the_next() {
        let window = CRASH_LOOP_WINDOW.as_secs();
        assert_eq!(
            guard(&record(&[0, 60, 120]), at(window - 1)),
            Guard::GiveUp { unfinished: 3 }
        );
        // The oldest fell out of the window: two recent ones, one more is allowed.
        assert_eq!(
            guard(&record(&[0, 60, 120]), at(window)),
            Guard::Resume(record(&[60, 120, window]))
        );
        // Old crashes never count: a host that crashed hours ago resumes normally.
        assert_eq!(
            guard(&record(&[0, 1, 2]), at(10 * window)),
            Guard::Resume(record(&[10 * window]))
        );
    }

    #[test]
    fn a_task_given_up_on_stays_given_up() {
        let gave_up = ResumeRecord {
            started: Vec::new(),
            given_up: true,
        };
        assert_eq!(guard(&gave_up, at(0)), Guard::GiveUp { unfinished: 0 });
    }

    #[test]
    fn a_clock_set_back_counts_the_resume_as_recent() {
        assert_eq!(
            guard(&record(&[100, 200, 300]), at(50)),
            Guard::GiveUp { unfinished: 3 }
        );
    }
}

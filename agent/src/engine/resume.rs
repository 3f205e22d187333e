//! Taking tasks back after an agent restart, under a crash-loop guard. A task whose resumes
//! were cut short [`CRASH_LOOP_RESUMES`] times within [`CRASH_LOOP_WINDOW`] by a crash of the
//! agent itself is not resumed a further time: it is reported STOPPED with a reason saying so,
//! and left as it is on the host, so one poisoned task can never keep a host down.
//!
//! Each resume is recorded in the store, with the run that began it, before its driver starts,
//! and the record is dropped once the resume completed: the task's containers are reattached,
//! or the task stopped, or only its timed cleanup is left. At the next start, a resume still
//! in progress counts against its task only when the run that began it crashed (systemd's
//! account of that run, see [`crate::last_exit`]: a fault, an abort, an OOM kill, the
//! watchdog, an error exit). An agent stopped or killed from outside (`systemctl stop`,
//! `kill -9`, a reboot), however often and however early, never trips the guard.

use std::time::{Duration, SystemTime};

use berth_proto::v1::StopCode;

use super::driver::Resume;
use super::{Engine, Start, TaskEvent, found, state};
use crate::backoff::{host_retries, retry};
use crate::last_exit::Runs;
use crate::runtime::ContainerRuntime;
use crate::store::{InProgress, ResumeRecord, StoreError, StoredTask};
use crate::task::network;

/// How many resumes of one task an agent crash may cut short within [`CRASH_LOOP_WINDOW`]
/// before the agent stops resuming it.
pub(super) const CRASH_LOOP_RESUMES: usize = 3;
/// The period over which [`CRASH_LOOP_RESUMES`] crashes count as a crash loop.
pub(super) const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10 * 60);

/// What the guard decides for a task about to be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Guard {
    /// Resume it, with this record (the recent crashes and this resume in progress) stored
    /// first.
    Resume(ResumeRecord),
    /// Do not: this many recent resumes were cut short by a crash of the agent.
    GiveUp { crashed: usize },
}

/// Settles a record's resume in progress, begun by an earlier run: it becomes a crash when
/// `runs` says that run crashed, and is dropped otherwise. Pure. Also returns what the run
/// died of when it counted.
pub(super) fn settle(record: &ResumeRecord, runs: &Runs) -> (ResumeRecord, Option<String>) {
    let mut settled = ResumeRecord {
        in_progress: None,
        ..record.clone()
    };
    let crash = record.in_progress.as_ref().and_then(|p| {
        let crash = runs.crash_of(&p.run)?;
        settled.crashed.push(p.since);
        Some(crash)
    });
    (settled, crash)
}

/// The guard's rule, pure: `record` is settled first ([`settle`]), and crashes older than the
/// window no longer count. `run` is this run, which begins the resume.
pub(super) fn guard(record: &ResumeRecord, runs: &Runs, now: SystemTime) -> Guard {
    let (settled, _) = settle(record, runs);
    let crashed: Vec<SystemTime> = settled
        .crashed
        .iter()
        .copied()
        .filter(|t| now.duration_since(*t).unwrap_or_default() < CRASH_LOOP_WINDOW)
        .collect();
    if settled.given_up || crashed.len() >= CRASH_LOOP_RESUMES {
        return Guard::GiveUp {
            crashed: crashed.len(),
        };
    }
    Guard::Resume(ResumeRecord {
        crashed,
        in_progress: Some(InProgress {
            run: runs.current.clone(),
            since: now,
        }),
        given_up: false,
    })
}

/// The reason a task the guard gave up on is STOPPED with.
pub(super) fn give_up_reason(crashed: usize) -> String {
    format!(
        "the agent crashed {crashed} times within {} min while resuming this task after a \
         restart, so it is no longer resumed; whatever it has on the host (containers, network, \
         cgroup, volumes) is left as it is for an operator to inspect and remove",
        CRASH_LOOP_WINDOW.as_secs() / 60
    )
}

impl<R: ContainerRuntime> Engine<R> {
    pub(super) async fn resume_stored(&mut self) -> Result<(), StoreError> {
        let stored = self.store.tasks()?;
        let mut listed = None;
        if self.store.rebuilt()?.is_some() {
            // The store started empty: what containerd still runs of the tasks it lost is held
            // for the scheduler to claim (see `found.rs`), its network included.
            let Some(containers) = self.list_containers().await else {
                return Ok(());
            };
            let known = stored.iter().map(|t| t.state.task_id.as_str()).collect();
            self.found = found::Found::of(&containers, &known);
            let held = self.found.task_ids(tokio::time::Instant::now());
            if !held.is_empty() {
                tracing::warn!(tasks = ?held, "the store started empty and containerd runs containers of tasks it has no record of; they are held for the scheduler to re-adopt");
            }
            listed = Some(containers);
        }
        let held = self.found.task_ids(tokio::time::Instant::now());
        self.repair_network(&stored, &held).await;
        if stored.is_empty() {
            return Ok(());
        }
        // Never guess: a task whose containers cannot be listed is not "gone". Retry until
        // containerd answers (it may still be starting) or the agent stops.
        let containers = match listed {
            Some(c) => c,
            None => match self.list_containers().await {
                Some(c) => c,
                None => return Ok(()),
            },
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
            let record = self.store.resume_record(&id)?;
            if let (_, Some(crash)) = settle(&record, &self.runs) {
                tracing::warn!(task.id = %id, %crash, "the agent's last run crashed while resuming this task");
            }
            match guard(&record, &self.runs, now) {
                Guard::GiveUp { crashed } => self.give_up(task, crashed)?,
                Guard::Resume(record) => {
                    // Durable before the driver starts: if resuming kills the agent, the next
                    // start knows.
                    self.store.set_resume_record(&id, &record)?;
                    tracing::info!(task.id = %id, status = task.state.status, crashed = record.crashed.len(), "resuming task after restart");
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
                tracing::info!(task.id = %task_id, status = entry.state.status, "task resumed after restart");
                self.resume_cleared(task_id)
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
    fn give_up(&mut self, task: StoredTask, crashed: usize) -> Result<(), StoreError> {
        let id = task.state.task_id.clone();
        let (settled, _) = settle(&self.store.resume_record(&id)?, &self.runs);
        let record = ResumeRecord {
            given_up: true,
            ..settled
        };
        self.store.set_resume_record(&id, &record)?;
        let mut state = task.state.clone();
        let reason = give_up_reason(crashed);
        let now = SystemTime::now();
        let stopping = state::mark_stopping(&mut state, StopCode::TaskFailedToStart, &reason, now);
        let stopped = state::apply(&mut state, TaskEvent::Stopped, now);
        if stopping || stopped {
            tracing::error!(task.id = %id, crashed, %reason, "not resuming a task that kept crashing the agent");
            self.record(&state)?;
        } else {
            tracing::warn!(task.id = %id, "not resuming a stopped task that kept crashing the agent; its cleanup is left undone");
        }
        self.track(&task.assignment, state);
        Ok(())
    }

    /// Removes what a crash left of the network of tasks this agent no longer has (a setup or
    /// teardown cut short). The tasks still stored keep theirs: their drivers tear it down; so
    /// do the tasks in `held` (found in containerd, held for re-adoption).
    pub(super) async fn repair_network(
        &self,
        stored: &[StoredTask],
        held: &std::collections::BTreeSet<String>,
    ) {
        let live = network::live_namespaces(stored.iter().filter_map(|t| {
            let def = t.assignment.definition.as_ref()?;
            (!state::released(&t.state)).then_some((t.state.task_id.as_str(), def))
        }));
        match self.network.repair(&live, held).await {
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
    use crate::last_exit::Ending;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// This run is "now"; the last one ("before") ended with `exit_code`/`exit_status`.
    fn runs(exit_code: &str, exit_status: &str) -> Runs {
        Runs {
            current: "now".into(),
            last_ending: Some(Ending {
                invocation: "before".into(),
                service_result: String::new(),
                exit_code: exit_code.into(),
                exit_status: exit_status.into(),
            }),
        }
    }

    fn crashed() -> Runs {
        runs("dumped", "SEGV")
    }

    fn record(crashed: &[u64], in_progress: Option<(&str, u64)>) -> ResumeRecord {
        ResumeRecord {
            crashed: crashed.iter().map(|s| at(*s)).collect(),
            in_progress: in_progress.map(|(run, since)| InProgress {
                run: run.into(),
                since: at(since),
            }),
            given_up: false,
        }
    }

    #[test]
    fn the_first_resumes_are_recorded_as_in_progress_by_this_run() {
        assert_eq!(
            guard(&ResumeRecord::default(), &crashed(), at(0)),
            Guard::Resume(record(&[], Some(("now", 0))))
        );
        assert_eq!(
            guard(&record(&[0], Some(("before", 60))), &crashed(), at(120)),
            Guard::Resume(record(&[0, 60], Some(("now", 120))))
        );
    }

    #[test]
    fn resumes_cut_short_from_outside_never_count() {
        // Killed every second, stopped, or ended without any record: a hundred restarts in a
        // minute leave nothing against the task.
        for last in [
            runs("killed", "KILL"),
            runs("killed", "TERM"),
            runs("exited", "0"),
            Runs {
                current: "now".into(),
                last_ending: None,
            },
        ] {
            let mut rec = ResumeRecord::default();
            for restart in 0..100u64 {
                let runs = Runs {
                    current: format!("run-{restart}"),
                    last_ending: last.last_ending.clone().map(|e| Ending {
                        invocation: restart
                            .checked_sub(1)
                            .map(|r| format!("run-{r}"))
                            .unwrap_or_default(),
                        ..e
                    }),
                };
                match guard(&rec, &runs, at(restart / 2)) {
                    Guard::Resume(next) => {
                        assert!(next.crashed.is_empty(), "{last:?} restart {restart}");
                        rec = next;
                    }
                    Guard::GiveUp { .. } => panic!("gave up after {restart} outside kills"),
                }
            }
        }
    }

    #[test]
    fn only_a_crash_of_the_run_that_began_the_resume_counts() {
        // The recorded crash is of another run (an older one, or one whose resume of this
        // task had completed): the resume in progress is dropped, not counted.
        let record = record(&[0, 10], Some(("older", 20)));
        assert_eq!(
            guard(&record, &crashed(), at(30)),
            Guard::Resume(self::record(&[0, 10], Some(("now", 30))))
        );
    }

    #[test]
    fn as_many_crashes_within_the_window_stop_the_next_resume() {
        let window = CRASH_LOOP_WINDOW.as_secs();
        // Two counted, the third is the previous run's crash.
        assert_eq!(
            guard(
                &record(&[0, 60], Some(("before", 120))),
                &crashed(),
                at(window - 1)
            ),
            Guard::GiveUp { crashed: 3 }
        );
        for (code, status) in [("killed", "ABRT"), ("exited", "101")] {
            assert_eq!(
                guard(
                    &record(&[0, 60], Some(("before", 120))),
                    &runs(code, status),
                    at(200)
                ),
                Guard::GiveUp { crashed: 3 }
            );
        }
        // The oldest fell out of the window: two recent ones, one more is allowed.
        assert_eq!(
            guard(&record(&[0, 60, 120], None), &crashed(), at(window)),
            Guard::Resume(record(&[60, 120], Some(("now", window))))
        );
        // Old crashes never count: a host that crashed hours ago resumes normally.
        assert_eq!(
            guard(&record(&[0, 1, 2], None), &crashed(), at(10 * window)),
            Guard::Resume(record(&[], Some(("now", 10 * window))))
        );
    }

    #[test]
    fn a_task_given_up_on_stays_given_up() {
        let gave_up = ResumeRecord {
            given_up: true,
            ..ResumeRecord::default()
        };
        assert_eq!(
            guard(&gave_up, &runs("exited", "0"), at(0)),
            Guard::GiveUp { crashed: 0 }
        );
    }

    #[test]
    fn a_clock_set_back_counts_the_crash_as_recent() {
        assert_eq!(
            guard(&record(&[100, 200, 300], None), &crashed(), at(50)),
            Guard::GiveUp { crashed: 3 }
        );
    }

    #[test]
    fn settling_says_what_the_run_died_of() {
        let (settled, crash) = settle(&record(&[], Some(("before", 5))), &runs("oom-kill", ""));
        assert_eq!(
            crash, None,
            "no service result given: exit code alone decides"
        );
        assert_eq!(settled, ResumeRecord::default());
        let mut oom = runs("killed", "KILL");
        if let Some(e) = oom.last_ending.as_mut() {
            e.service_result = "oom-kill".into();
        }
        let (settled, crash) = settle(&record(&[], Some(("before", 5))), &oom);
        assert_eq!(crash.as_deref(), Some("killed by the kernel's OOM killer"));
        assert_eq!(settled, record(&[5], None));
    }
}

//! Re-adoption after the agent lost its store. A store that started empty (lost, reset, moved
//! aside) knows no task, yet containerd may still run the containers of the tasks the earlier
//! store knew. At start the engine lists them by their labels ([`Found`]), keeps them out of
//! the orphan sweep's reach, and reports them in its full state; the scheduler answers each
//! task it still wants RUNNING on this instance with its assignment again, marked `adopt`, and
//! the engine takes that task up from what containerd has, as after a normal restart (nothing
//! is created or started twice). The found tasks the scheduler does not claim within
//! [`ADOPTION_WINDOW`] of being reported are orphans like any other: the sweep removes them
//! after its grace.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_proto::v1::{ContainerStatus, FoundContainer, TaskAssignment, TaskState, TaskStatus};
use berth_runtime::{ContainerInfo, ContainerStatus as RtStatus};
use tokio::time::Instant;

use super::state;

/// How long after the found containers were first reported to the scheduler the sweep keeps
/// off them: the scheduler answers in the same session, well within it.
pub(crate) const ADOPTION_WINDOW: Duration = Duration::from_secs(15);

/// The containers of tasks the store has no record of, by task, until adopted or the window
/// passed.
#[derive(Debug, Default)]
pub(super) struct Found {
    tasks: BTreeMap<String, Vec<ContainerInfo>>,
    /// When they were first reported to the scheduler.
    reported_at: Option<Instant>,
}

impl Found {
    /// The containers of `listed` whose tasks are not among `known`.
    pub(super) fn of(listed: &[ContainerInfo], known: &BTreeSet<&str>) -> Self {
        let mut tasks: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in listed
            .iter()
            .filter(|c| !known.contains(c.task_id.as_str()))
        {
            tasks.entry(c.task_id.clone()).or_default().push(c.clone());
        }
        Found {
            tasks,
            reported_at: None,
        }
    }

    /// Whether the window is still open at `now` (it opens when they are first reported).
    fn held(&self, now: Instant) -> bool {
        self.reported_at
            .is_none_or(|at| now.saturating_duration_since(at) < ADOPTION_WINDOW)
    }

    /// The task IDs the sweep keeps off, at `now`.
    pub(super) fn task_ids(&self, now: Instant) -> BTreeSet<String> {
        if self.held(now) {
            self.tasks.keys().cloned().collect()
        } else {
            BTreeSet::new()
        }
    }

    /// What the full state reports at `now`; with `report`, the window opens (once).
    pub(super) fn report(&mut self, report: bool, now: Instant) -> Vec<FoundContainer> {
        if !self.held(now) {
            if !self.tasks.is_empty() {
                tracing::info!(tasks = ?self.tasks.keys().collect::<Vec<_>>(), "the scheduler claimed none of the other containers found at start; they are orphans now");
            }
            self.tasks.clear();
            return Vec::new();
        }
        if report && !self.tasks.is_empty() && self.reported_at.is_none() {
            self.reported_at = Some(now);
        }
        self.tasks
            .values()
            .flatten()
            .map(|c| FoundContainer {
                task_id: c.task_id.clone(),
                container_name: c.name.clone(),
                image: c.image.clone(),
                running: c.status == RtStatus::Running,
            })
            .collect()
    }

    /// The containers of a task being adopted; they are no longer held as found.
    pub(super) fn take(&mut self, task_id: &str) -> Option<Vec<ContainerInfo>> {
        self.tasks.remove(task_id)
    }
}

/// Whether containerd has (or had) a process for the container.
fn has_process(status: RtStatus) -> bool {
    matches!(
        status,
        RtStatus::Running | RtStatus::Stopped | RtStatus::Paused | RtStatus::Unknown
    )
}

/// The state an adopted task starts from, by what containerd had of it at start: RUNNING when
/// every container of its definition was started, or when none is left (the driver then
/// watches them, and reports the ones gone: a task whose containers were all removed stops
/// rather than starting afresh); CREATED when it was left half started (the driver continues
/// the start, creating and starting only what is missing). Pure.
pub(super) fn adopted_state(a: &TaskAssignment, containers: &[ContainerInfo]) -> TaskState {
    let mut state = state::initial(a);
    let defined = a
        .definition
        .as_ref()
        .map(|d| d.containers.as_slice())
        .unwrap_or_default();
    let info = |name: &str| containers.iter().find(|c| c.name == name);
    let all_started = defined
        .iter()
        .all(|c| info(&c.name).is_some_and(|i| i.started || has_process(i.status)));
    state.status = if all_started || containers.is_empty() {
        TaskStatus::Running as i32
    } else {
        TaskStatus::Created as i32
    };
    for c in &mut state.containers {
        let Some(i) = info(&c.name) else {
            continue;
        };
        c.runtime_id = i.id.as_str().to_owned();
        c.status = if has_process(i.status) || i.started {
            ContainerStatus::Running as i32
        } else {
            ContainerStatus::Created as i32
        };
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerDefinition, TaskDefinition};
    use berth_runtime::ContainerId;

    fn info(task: &str, name: &str, status: RtStatus, started: bool) -> ContainerInfo {
        ContainerInfo {
            id: ContainerId::for_container(task, name),
            task_id: task.into(),
            name: name.into(),
            image: "img:1".into(),
            status,
            pid: None,
            exit_code: None,
            stop_timeout: None,
            started,
        }
    }

    fn assignment(names: &[&str]) -> TaskAssignment {
        TaskAssignment {
            task_id: "t".into(),
            definition: Some(TaskDefinition {
                containers: names
                    .iter()
                    .map(|n| ContainerDefinition {
                        name: (*n).into(),
                        image: "img:1".into(),
                        essential: true,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            adopt: true,
            ..Default::default()
        }
    }

    #[test]
    fn only_containers_of_unknown_tasks_are_found() {
        let listed = [
            info("known", "app", RtStatus::Running, true),
            info("lost", "app", RtStatus::Running, true),
            info("lost", "side", RtStatus::Stopped, true),
        ];
        let mut found = Found::of(&listed, &BTreeSet::from(["known"]));
        let now = Instant::now();
        assert_eq!(found.task_ids(now), BTreeSet::from(["lost".to_owned()]));
        let reported = found.report(true, now);
        assert_eq!(reported.len(), 2);
        assert!(reported.iter().all(|c| c.task_id == "lost"));
        assert!(reported[0].running && !reported[1].running);
        assert_eq!(found.take("lost").map(|c| c.len()), Some(2));
        assert!(found.task_ids(now).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_opens_at_the_first_report_and_then_they_are_orphans() {
        let listed = [info("lost", "app", RtStatus::Running, true)];
        let mut found = Found::of(&listed, &BTreeSet::new());
        // Held however long the scheduler takes to ask: the sweep's queries do not report.
        tokio::time::sleep(ADOPTION_WINDOW * 10).await;
        assert_eq!(
            found.report(false, Instant::now()),
            found.report(false, Instant::now())
        );
        assert_eq!(found.task_ids(Instant::now()).len(), 1);
        assert_eq!(found.report(true, Instant::now()).len(), 1);
        tokio::time::sleep(ADOPTION_WINDOW - Duration::from_secs(1)).await;
        assert_eq!(found.task_ids(Instant::now()).len(), 1);
        assert_eq!(
            found.report(true, Instant::now()).len(),
            1,
            "the window opens once"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(found.task_ids(Instant::now()).is_empty());
        assert!(found.report(true, Instant::now()).is_empty());
        assert!(found.take("lost").is_none());
    }

    #[test]
    fn a_task_whose_containers_all_started_is_adopted_running() {
        let a = assignment(&["app", "side"]);
        let state = adopted_state(
            &a,
            &[
                info("t", "app", RtStatus::Running, true),
                info("t", "side", RtStatus::Stopped, true),
            ],
        );
        assert_eq!(state.status, TaskStatus::Running as i32);
        assert!(
            state
                .containers
                .iter()
                .all(|c| c.status == ContainerStatus::Running as i32 && !c.runtime_id.is_empty())
        );
    }

    #[test]
    fn a_task_left_half_started_continues_its_start() {
        let a = assignment(&["app", "side"]);
        let state = adopted_state(&a, &[info("t", "app", RtStatus::Running, true)]);
        assert_eq!(state.status, TaskStatus::Created as i32);
        assert_eq!(state.containers[0].status, ContainerStatus::Running as i32);
        assert_eq!(state.containers[1].status, ContainerStatus::Pending as i32);
        // Nothing left: watched as RUNNING, so the containers are reported gone and the task
        // stops, never started afresh.
        let state = adopted_state(&a, &[]);
        assert_eq!(state.status, TaskStatus::Running as i32);
    }
}

//! A task taken up again after an agent restart (or after its driver failed), from what the
//! store and containerd show. A container is never created or started twice:
//!
//! - STOPPED before: only the timed cleanup is left;
//! - RUNNING: every container was started; those containerd still has are watched (one that
//!   exited while the agent was away is reported by its wait, with its real exit code and
//!   time), those it lost are reported STOPPED with a reason saying so, and the
//!   essential-container rule applies to both;
//! - PENDING, PULLED or CREATED: the start continues. The pulls, the network, the volumes and
//!   the cgroup are done again (each is idempotent), containers containerd has are taken as
//!   they are and only the missing ones created, and the supervision starts those not started
//!   yet while watching those that were.

use std::time::{Duration, SystemTime};

use berth_proto::v1::{DesiredStatus, TaskDefinition, TaskStatus};
use berth_runtime::{ContainerId, ContainerInfo, ContainerStatus as RtStatus};

use super::super::TaskEvent;
use super::finish::NetState;
use super::supervise::Initially;
use super::{Created, Driver, Resume, stop_timeout};
use crate::runtime::ContainerRuntime;

/// The reason of a started container whose process containerd no longer had when the agent
/// came back.
pub(in crate::engine) const GONE_WHILE_AWAY: &str = "the container's process was gone from containerd \
     when the agent restarted (its shim ended while the agent was away), so its exit code is \
     unknown";

/// The reason of a started container whose record containerd no longer had when the agent came
/// back.
pub(in crate::engine) const REMOVED_WHILE_AWAY: &str = "the container was gone from containerd when the \
     agent restarted (its record was removed while the agent was away), so its exit code is \
     unknown";

/// What the driver does with a task it took up again.
pub(super) enum Resumed {
    /// Nothing more: the task was finished here (stopped, cleaned up, or left).
    Done,
    /// Every container was started before: supervise them from where each stands.
    Watch {
        created: Vec<Created>,
        initially: Vec<Initially>,
    },
    /// The agent died while starting the task: continue the start, with these containers
    /// found in containerd.
    Continue { existing: Vec<ContainerInfo> },
}

/// Whether containerd has a process (or had one, exited) for the container.
fn has_process(status: RtStatus) -> bool {
    matches!(
        status,
        RtStatus::Running | RtStatus::Stopped | RtStatus::Paused | RtStatus::Unknown
    )
}

/// Where a container of a task that was RUNNING stands (every one was started).
pub(super) fn after_running(info: Option<&ContainerInfo>) -> Initially {
    match info {
        None => Initially::Vanished(REMOVED_WHILE_AWAY.to_owned()),
        Some(i) if has_process(i.status) => Initially::Running,
        Some(_) => Initially::Vanished(GONE_WHILE_AWAY.to_owned()),
    }
}

/// Where a container of a task the agent died while starting stands: one containerd has a
/// process for was started; one without a task that was started lost its process; any other
/// (missing, created, or whose process was made but not started) is still to start.
pub(super) fn while_starting(info: Option<&ContainerInfo>) -> Initially {
    match info {
        Some(i) if has_process(i.status) => Initially::Running,
        Some(i) if i.status == RtStatus::NoTask && i.started => {
            Initially::Vanished(GONE_WHILE_AWAY.to_owned())
        }
        _ => Initially::Waiting,
    }
}

impl<R: ContainerRuntime> Driver<R> {
    /// The task's containers as the definition names them, with their containerd IDs.
    pub(super) fn all_containers(&self, def: &TaskDefinition) -> Vec<Created> {
        let task_id = self.task_id();
        def.containers
            .iter()
            .map(|c| Created {
                name: c.name.clone(),
                id: ContainerId::for_container(task_id, &c.name),
                stop_timeout: stop_timeout(c.stop_timeout_seconds, self.config.stop_timeout),
            })
            .collect()
    }

    /// Picks a task up after an agent restart (or its failed driver's), and says what is left.
    pub(super) async fn resume(&mut self, def: &TaskDefinition, resume: Resume) -> Resumed {
        let created = self.all_containers(def);
        let status = resume.state.status;
        if status >= TaskStatus::Stopped as i32 {
            self.resume_cleanup(&resume, created).await;
            return Resumed::Done;
        }
        let task_id = self.task_id().to_owned();
        let info = |c: &Created| resume.containers.iter().find(|i| i.id == c.id);
        for c in &created {
            // Its output still goes to the FIFOs the earlier run read: read them again (and
            // ship it again, with awslogs).
            let Some(i) = info(c).filter(|i| i.status != RtStatus::NoTask) else {
                continue;
            };
            let forward = match def.containers.iter().find(|d| d.name == c.name) {
                Some(d) => self.awslogs_forward(&task_id, d).unwrap_or_else(|error| {
                    tracing::warn!(container.name = %c.name, %error, "cannot ship container logs");
                    None
                }),
                None => None,
            };
            if let Err(error) = self.runtime.reattach(&i.id, &task_id, &c.name, forward) {
                tracing::warn!(container.name = %c.name, %error, "cannot reattach container output");
            }
        }
        let starting = status < TaskStatus::Running as i32;
        let wants_stop = resume.state.desired_status == DesiredStatus::Stopped as i32;
        if starting && (wants_stop || resume.reason.is_some()) {
            // Stopped while it was starting (or its driver failed then): stop what runs and
            // clean up, running ones first.
            if let Some(reason) = resume.reason.clone() {
                self.report(TaskEvent::Failed { reason }).await;
            }
            let (mut ordered, rest): (Vec<Created>, Vec<Created>) = created
                .into_iter()
                .partition(|c| info(c).is_some_and(|i| has_process(i.status)));
            let started = ordered.len();
            ordered.extend(rest);
            self.stop_and_clean(ordered, started).await;
            return Resumed::Done;
        }
        if starting {
            let existing = created.iter().filter_map(|c| info(c).cloned()).collect();
            return Resumed::Continue { existing };
        }
        let initially = created.iter().map(|c| after_running(info(c))).collect();
        Resumed::Watch { created, initially }
    }

    /// A task that was STOPPED before the restart: only its cleanup is left, after what is
    /// left of its cleanup wait.
    async fn resume_cleanup(&mut self, resume: &Resume, created: Vec<Created>) {
        let elapsed = resume
            .state
            .stopped_at
            .and_then(|t| {
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(t.seconds.max(0) as u64, 0))
            })
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let wait = self.config.cleanup_wait.saturating_sub(elapsed);
        if !wait.is_zero() {
            // Taken back: only the timed cleanup is left.
            self.report(TaskEvent::Resumed).await;
        }
        // Released before STOPPED, unless an early version stopped it (tearing down what is
        // gone already costs nothing).
        self.cleanup_after(wait, created, NetState::MaybeHeld).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(status: RtStatus, started: bool) -> ContainerInfo {
        ContainerInfo {
            id: ContainerId::for_container("t", "app"),
            task_id: "t".into(),
            name: "app".into(),
            image: "img".into(),
            status,
            pid: None,
            exit_code: None,
            stop_timeout: None,
            started,
        }
    }

    #[test]
    fn a_running_tasks_containers_are_watched_or_reported_gone() {
        for status in [
            RtStatus::Running,
            RtStatus::Stopped,
            RtStatus::Paused,
            RtStatus::Unknown,
        ] {
            assert_eq!(
                after_running(Some(&info(status, true))),
                Initially::Running,
                "{status:?}"
            );
        }
        assert_eq!(
            after_running(Some(&info(RtStatus::NoTask, true))),
            Initially::Vanished(GONE_WHILE_AWAY.into())
        );
        assert_eq!(
            after_running(None),
            Initially::Vanished(REMOVED_WHILE_AWAY.into())
        );
    }

    #[test]
    fn a_starting_tasks_containers_are_started_once() {
        // Missing or never started: still to start (created first when missing).
        assert_eq!(while_starting(None), Initially::Waiting);
        assert_eq!(
            while_starting(Some(&info(RtStatus::NoTask, false))),
            Initially::Waiting
        );
        // Its process was made, and the start never went through.
        assert_eq!(
            while_starting(Some(&info(RtStatus::Created, true))),
            Initially::Waiting
        );
        // Started: watched, never started again.
        assert_eq!(
            while_starting(Some(&info(RtStatus::Running, true))),
            Initially::Running
        );
        assert_eq!(
            while_starting(Some(&info(RtStatus::Stopped, true))),
            Initially::Running
        );
        // Started, and its process is gone with its shim.
        assert_eq!(
            while_starting(Some(&info(RtStatus::NoTask, true))),
            Initially::Vanished(GONE_WHILE_AWAY.into())
        );
    }
}

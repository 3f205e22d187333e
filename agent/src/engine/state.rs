//! Pure task-state transitions: how each driver event changes a task's reported state.
//! Statuses only move forward and end at STOPPED (the host's later release of the rest is a
//! time, not a status); a stop's first reason wins.

use std::collections::HashMap;
use std::time::SystemTime;

use berth_proto::v1::{
    ContainerState, ContainerStatus, DesiredStatus, HealthStatus, NetworkAttachment,
    NetworkBinding, StopCode, TaskAssignment, TaskState, TaskStatus,
};
use berth_runtime::ExitStatus;

use super::health::{self, Probe};
use crate::task::timestamp;

/// What a task driver reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskEvent {
    PullStarted,
    /// Every image is pulled; digests by container name.
    Pulled {
        digests: HashMap<String, String>,
    },
    /// Every container is created; containerd IDs by container name, and where the task is
    /// on the network (one event, so one durable write, for both).
    Created {
        runtime_ids: HashMap<String, String>,
        network: NetworkReport,
    },
    /// Every container is started.
    Started,
    ContainerExited {
        name: String,
        exit: ExitStatus,
    },
    /// A container that was started is gone from containerd (its record, or its process with
    /// its shim) and its exit code is lost: it is STOPPED with this reason and no exit code.
    /// An essential one stops the task, as an exit does.
    ContainerVanished {
        name: String,
        reason: String,
    },
    /// A container exited and was restarted in place under its restart policy; this is its
    /// restart count since the task started. Its status stays RUNNING and it keeps no exit
    /// code (as on ECS, which reports only restartCount): `exit_code` is for its final exit.
    ContainerRestarted {
        name: String,
        restart_count: u32,
    },
    /// One health check of a running container ended (the engine's trackers turn results into
    /// health, see `health.rs`).
    Health {
        name: String,
        probe: Probe,
    },
    /// Something about a container people should know although it runs (what the host could
    /// not apply of its definition); it becomes the container's reason unless it has one.
    ContainerNote {
        name: String,
        note: String,
    },
    /// A created container's process could not be started (ECS's CannotStartContainerError):
    /// the container is STOPPED with this reason, without an exit code. Only an essential one
    /// stops the task.
    ContainerCannotStart {
        name: String,
        reason: String,
    },
    /// The task cannot start; the reason is for people.
    Failed {
        reason: String,
    },
    /// The task's namespace holder (`pidMode`/`ipcMode` task) died while the task ran: the
    /// task stops, as on ECS when its essential namespace pause container stops. The reason
    /// names the holder, and becomes the reason of each container without an exit yet.
    HolderGone {
        reason: String,
    },
    /// Every container has exited (or never started) and the task's network is released.
    Stopped,
    /// Everything else the stopped task held on the host is removed (after the cleanup wait).
    Released,
    /// After an agent restart, the driver took the task back: its containers are reattached,
    /// or only its timed cleanup is left. Changes no state (the engine's crash-loop guard
    /// counts it as a resume that completed).
    Resumed,
}

/// Where a task is on the network: its attachment (awsvpc) and each container's own address
/// and port bindings (bridge and host modes), by container name. Empty in mode none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetworkReport {
    pub attachments: Vec<NetworkAttachment>,
    pub containers: HashMap<String, ContainerNetwork>,
}

/// A container's place on the network, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerNetwork {
    /// Its own address (bridge mode); empty when it shares the task's or the host's.
    pub address: String,
    /// Host ports bound to its ports.
    pub bindings: Vec<NetworkBinding>,
}

/// The state of a task the agent has just accepted.
pub(super) fn initial(a: &TaskAssignment) -> TaskState {
    let containers = a
        .definition
        .as_ref()
        .map(|d| {
            d.containers
                .iter()
                .map(|c| ContainerState {
                    name: c.name.clone(),
                    status: ContainerStatus::Pending as i32,
                    image: c.image.clone(),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    TaskState {
        task_id: a.task_id.clone(),
        status: TaskStatus::Pending as i32,
        desired_status: if a.desired_status == DesiredStatus::Stopped as i32 {
            DesiredStatus::Stopped as i32
        } else {
            DesiredStatus::Running as i32
        },
        containers,
        ..Default::default()
    }
}

/// Whether the host released everything the task held: the agent reported it and forgets the
/// task. A status past STOPPED is how an early version recorded the same.
pub(super) fn released(state: &TaskState) -> bool {
    state.resources_released_at.is_some() || state.status > TaskStatus::Stopped as i32
}

/// The task that has `address` (awsvpc: its attachment's; bridge: one of its containers'), for
/// the task endpoint; stopped tasks have none. A stopping task releases its address just before
/// it reports STOPPED and a new task may get it in between: the task that is not stopping is the
/// one that calls.
pub(super) fn task_at<'a>(
    states: impl Iterator<Item = &'a TaskState>,
    address: std::net::Ipv4Addr,
) -> Option<&'a TaskState> {
    let address = address.to_string();
    let mut holders = states.filter(|s| {
        s.status < TaskStatus::Stopped as i32
            && (s
                .attachments
                .iter()
                .any(|a| a.private_ipv4_address == address)
                || s.containers
                    .iter()
                    .any(|c| c.private_ipv4_address == address))
    });
    let first = holders.next()?;
    if first.desired_status != DesiredStatus::Stopped as i32 {
        return Some(first);
    }
    Some(
        holders
            .find(|s| s.desired_status != DesiredStatus::Stopped as i32)
            .unwrap_or(first),
    )
}

/// Moves the task's status forward to `to`; false when it is already there or beyond.
fn advance(state: &mut TaskState, to: TaskStatus) -> bool {
    if state.status < to as i32 {
        state.status = to as i32;
        true
    } else {
        false
    }
}

fn advance_containers(state: &mut TaskState, to: ContainerStatus) {
    for c in &mut state.containers {
        if c.status < to as i32 {
            c.status = to as i32;
        }
    }
}

/// Records a request to stop. False when the task was already stopping.
pub(super) fn mark_stopping(
    state: &mut TaskState,
    code: StopCode,
    reason: &str,
    now: SystemTime,
) -> bool {
    if state.desired_status == DesiredStatus::Stopped as i32
        && state.stop_code != StopCode::Unspecified as i32
    {
        return false;
    }
    state.desired_status = DesiredStatus::Stopped as i32;
    state.stop_code = code as i32;
    state.stopped_reason = reason.to_owned();
    if state.stopping_at.is_none() {
        state.stopping_at = Some(timestamp(now));
    }
    true
}

/// Sets a container's health and derives the task's from its essential containers with a
/// health check (`checked_essential`). Returns whether anything changed.
pub(super) fn set_health(
    state: &mut TaskState,
    name: &str,
    status: HealthStatus,
    checked_essential: &[String],
) -> bool {
    let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
        return false;
    };
    let container_changed = c.health_status != status as i32;
    c.health_status = status as i32;
    let task = health::task_health(&state.containers, checked_essential) as i32;
    let task_changed = state.health_status != task;
    state.health_status = task;
    container_changed || task_changed
}

/// Applies an event. Returns whether anything changed (and so must be reported).
pub(super) fn apply(state: &mut TaskState, event: TaskEvent, now: SystemTime) -> bool {
    if released(state) {
        return false;
    }
    match event {
        TaskEvent::PullStarted => {
            if state.pull_started_at.is_some() {
                return false;
            }
            state.pull_started_at = Some(timestamp(now));
            true
        }
        TaskEvent::Pulled { digests } => {
            state.pull_stopped_at.get_or_insert(timestamp(now));
            for c in &mut state.containers {
                if let Some(d) = digests.get(&c.name) {
                    c.image_digest = d.clone();
                }
            }
            advance_containers(state, ContainerStatus::Pulled);
            advance(state, TaskStatus::Pulled)
        }
        TaskEvent::Created {
            runtime_ids,
            network,
        } => {
            state.attachments = network.attachments;
            for c in &mut state.containers {
                if let Some(id) = runtime_ids.get(&c.name) {
                    c.runtime_id = id.clone();
                }
                if let Some(n) = network.containers.get(&c.name) {
                    c.private_ipv4_address = n.address.clone();
                    c.network_bindings = n.bindings.clone();
                }
            }
            advance_containers(state, ContainerStatus::Created);
            advance(state, TaskStatus::Created)
        }
        TaskEvent::Started => {
            if state.status >= TaskStatus::Running as i32 {
                return false;
            }
            state.started_at = Some(timestamp(now));
            for c in &mut state.containers {
                if c.status < ContainerStatus::Running as i32 && c.exit_code.is_none() {
                    c.status = ContainerStatus::Running as i32;
                }
            }
            advance(state, TaskStatus::Running)
        }
        TaskEvent::ContainerExited { name, exit } => {
            let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            if c.exit_code.is_some() {
                return false;
            }
            c.status = ContainerStatus::Stopped as i32;
            c.exit_code = Some(i32::try_from(exit.code).unwrap_or(i32::MAX));
            c.exited_at = Some(timestamp(exit.exited_at));
            c.oom_killed = exit.oom_killed;
            if exit.oom_killed {
                c.reason = "OutOfMemoryError: container killed due to memory usage".to_owned();
            }
            true
        }
        TaskEvent::ContainerVanished { name, reason } => {
            let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            if c.exit_code.is_some() || c.status >= ContainerStatus::Stopped as i32 {
                return false;
            }
            c.status = ContainerStatus::Stopped as i32;
            c.reason = reason;
            true
        }
        TaskEvent::ContainerRestarted {
            name,
            restart_count,
        } => {
            let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            // A late report for a container that has since ended for good changes nothing.
            if c.exit_code.is_some() || c.restart_count >= restart_count {
                return false;
            }
            c.restart_count = restart_count;
            c.status = ContainerStatus::Running as i32;
            true
        }
        // A result alone changes nothing reported: the engine's tracker decides (set_health).
        TaskEvent::Health { .. } => false,
        TaskEvent::ContainerNote { name, note } => {
            let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            if !c.reason.is_empty() || c.exit_code.is_some() {
                return false;
            }
            c.reason = note;
            true
        }
        TaskEvent::ContainerCannotStart { name, reason } => {
            let Some(c) = state.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            if c.exit_code.is_some() || c.status >= ContainerStatus::Stopped as i32 {
                return false;
            }
            c.status = ContainerStatus::Stopped as i32;
            c.reason = reason;
            true
        }
        TaskEvent::Failed { reason } | TaskEvent::HolderGone { reason } => {
            let mut changed = false;
            for c in &mut state.containers {
                if c.exit_code.is_none() && c.reason.is_empty() {
                    c.reason = reason.clone();
                    changed = true;
                }
            }
            changed
        }
        TaskEvent::Stopped => stop(state, now),
        TaskEvent::Released => {
            // Only a stopped task is released; should the order ever be broken, it stops too.
            stop(state, now);
            state.resources_released_at = Some(timestamp(now));
            true
        }
        TaskEvent::Resumed => false,
    }
}

fn stop(state: &mut TaskState, now: SystemTime) -> bool {
    if state.status >= TaskStatus::Stopped as i32 {
        return false;
    }
    state.stopped_at = Some(timestamp(now));
    advance_containers(state, ContainerStatus::Stopped);
    if state.desired_status != DesiredStatus::Stopped as i32 {
        state.desired_status = DesiredStatus::Stopped as i32;
    }
    advance(state, TaskStatus::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerDefinition, TaskDefinition};
    use std::time::UNIX_EPOCH;

    fn assignment() -> TaskAssignment {
        TaskAssignment {
            seq: 1,
            task_id: "t".into(),
            desired_status: DesiredStatus::Running as i32,
            definition: Some(TaskDefinition {
                containers: vec![
                    ContainerDefinition {
                        name: "a".into(),
                        image: "img".into(),
                        essential: true,
                        ..Default::default()
                    },
                    ContainerDefinition {
                        name: "b".into(),
                        image: "img".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        let mut s = initial(&assignment());
        let now = UNIX_EPOCH;
        assert!(apply(&mut s, TaskEvent::Started, now));
        assert_eq!(s.status, TaskStatus::Running as i32);
        assert!(!apply(
            &mut s,
            TaskEvent::Created {
                runtime_ids: HashMap::new(),
                network: NetworkReport::default(),
            },
            now
        ));
        assert_eq!(s.status, TaskStatus::Running as i32);
        assert!(apply(&mut s, TaskEvent::Stopped, now));
        assert!(!apply(&mut s, TaskEvent::Started, now));
        assert!(apply(&mut s, TaskEvent::Released, now));
        assert_eq!(
            s.status,
            TaskStatus::Stopped as i32,
            "STOPPED is the last status"
        );
        assert!(s.resources_released_at.is_some() && released(&s));
        assert!(!apply(&mut s, TaskEvent::Stopped, now));
        assert!(!apply(&mut s, TaskEvent::Released, now), "released once");
        let legacy = TaskState {
            status: TaskStatus::Stopped as i32 + 1,
            ..Default::default()
        };
        assert!(released(&legacy), "an early version's status past STOPPED");
    }

    #[test]
    fn an_address_belongs_to_the_task_that_is_not_stopping() {
        let at = |id: &str, status: TaskStatus, desired: DesiredStatus| TaskState {
            task_id: id.into(),
            status: status as i32,
            desired_status: desired as i32,
            attachments: vec![NetworkAttachment {
                private_ipv4_address: "10.0.0.2".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let address = "10.0.0.2".parse().unwrap();
        let old = at("old", TaskStatus::Running, DesiredStatus::Stopped);
        let new = at("new", TaskStatus::Created, DesiredStatus::Running);
        let gone = at("gone", TaskStatus::Stopped, DesiredStatus::Stopped);
        let id = |states: &[&TaskState]| {
            task_at(states.iter().copied(), address).map(|s| s.task_id.clone())
        };
        assert_eq!(id(&[&old, &new]).as_deref(), Some("new"));
        assert_eq!(id(&[&new, &old]).as_deref(), Some("new"));
        assert_eq!(id(&[&gone, &old]).as_deref(), Some("old"), "still stopping");
        assert_eq!(id(&[&gone]), None, "a stopped task has no address");
        assert_eq!(
            task_at([&new].into_iter(), "10.0.0.9".parse().unwrap()),
            None
        );
    }

    #[test]
    fn a_container_that_cannot_start_is_stopped_with_its_reason_and_no_exit_code() {
        let mut s = initial(&assignment());
        let now = UNIX_EPOCH;
        let reason = "CannotStartContainerError: container b: permission denied".to_owned();
        assert!(apply(
            &mut s,
            TaskEvent::ContainerCannotStart {
                name: "b".into(),
                reason: reason.clone()
            },
            now
        ));
        assert!(apply(&mut s, TaskEvent::Started, now));
        assert_eq!(s.status, TaskStatus::Running as i32, "the task goes on");
        assert_eq!(s.containers[0].status, ContainerStatus::Running as i32);
        assert_eq!(s.containers[1].status, ContainerStatus::Stopped as i32);
        assert_eq!(s.containers[1].exit_code, None);
        assert_eq!(s.containers[1].reason, reason);
        let later = TaskEvent::Failed {
            reason: "later".into(),
        };
        assert!(apply(&mut s, later, now));
        assert_eq!(s.containers[1].reason, reason, "its own reason stays");
    }

    #[test]
    fn exits_are_recorded_once_with_oom() {
        let mut s = initial(&assignment());
        let exit = ExitStatus {
            code: 137,
            exited_at: UNIX_EPOCH,
            oom_killed: true,
        };
        assert!(apply(
            &mut s,
            TaskEvent::ContainerExited {
                name: "a".into(),
                exit: exit.clone()
            },
            UNIX_EPOCH
        ));
        assert!(!apply(
            &mut s,
            TaskEvent::ContainerExited {
                name: "a".into(),
                exit
            },
            UNIX_EPOCH
        ));
        assert_eq!(s.containers[0].exit_code, Some(137));
        assert!(s.containers[0].oom_killed);
        assert!(s.containers[0].reason.starts_with("OutOfMemoryError"));
    }

    #[test]
    fn restarts_keep_the_container_running_and_count_once() {
        let mut s = initial(&assignment());
        let restarted = |n| TaskEvent::ContainerRestarted {
            name: "a".into(),
            restart_count: n,
        };
        assert!(apply(&mut s, restarted(1), UNIX_EPOCH));
        assert!(!apply(&mut s, restarted(1), UNIX_EPOCH), "a duplicate");
        assert_eq!(s.containers[0].restart_count, 1);
        assert_eq!(s.containers[0].status, ContainerStatus::Running as i32);
        assert_eq!(s.containers[0].exit_code, None);
        let exit = ExitStatus {
            code: 3,
            exited_at: UNIX_EPOCH,
            oom_killed: false,
        };
        assert!(apply(
            &mut s,
            TaskEvent::ContainerExited {
                name: "a".into(),
                exit
            },
            UNIX_EPOCH
        ));
        assert!(
            !apply(&mut s, restarted(2), UNIX_EPOCH),
            "after its final exit"
        );
        assert_eq!(s.containers[0].exit_code, Some(3));
        assert_eq!(s.containers[0].restart_count, 1);
    }

    #[test]
    fn first_stop_reason_wins() {
        let mut s = initial(&assignment());
        assert!(mark_stopping(
            &mut s,
            StopCode::EssentialContainerExited,
            "Essential container in task exited",
            UNIX_EPOCH
        ));
        assert!(!mark_stopping(
            &mut s,
            StopCode::UserInitiated,
            "later",
            UNIX_EPOCH
        ));
        assert_eq!(s.stop_code, StopCode::EssentialContainerExited as i32);
        assert_eq!(s.desired_status, DesiredStatus::Stopped as i32);
        assert!(s.stopping_at.is_some());
    }

    #[test]
    fn health_is_set_per_container_and_derived_for_the_task() {
        let mut s = initial(&assignment());
        let checked = vec!["a".to_owned()];
        assert!(set_health(&mut s, "b", HealthStatus::Healthy, &checked));
        assert_eq!(
            s.health_status,
            HealthStatus::Unknown as i32,
            "b is not essential"
        );
        assert!(set_health(&mut s, "a", HealthStatus::Healthy, &checked));
        assert_eq!(s.health_status, HealthStatus::Healthy as i32);
        assert!(!set_health(&mut s, "a", HealthStatus::Healthy, &checked));
        assert!(set_health(&mut s, "a", HealthStatus::Unhealthy, &checked));
        assert_eq!(
            s.containers[0].health_status,
            HealthStatus::Unhealthy as i32
        );
        assert_eq!(s.health_status, HealthStatus::Unhealthy as i32);
        assert!(!set_health(&mut s, "zz", HealthStatus::Healthy, &checked));
    }

    #[test]
    fn pulled_records_digests_and_times() {
        let mut s = initial(&assignment());
        apply(&mut s, TaskEvent::PullStarted, UNIX_EPOCH);
        let digests = HashMap::from([("a".to_owned(), "sha256:x".to_owned())]);
        assert!(apply(&mut s, TaskEvent::Pulled { digests }, UNIX_EPOCH));
        assert_eq!(s.containers[0].image_digest, "sha256:x");
        assert!(s.pull_started_at.is_some() && s.pull_stopped_at.is_some());
        assert_eq!(s.containers[1].status, ContainerStatus::Pulled as i32);
    }

    #[test]
    fn a_note_becomes_the_reason_of_a_container_without_one() {
        let mut s = initial(&assignment());
        let note = |name: &str, text: &str| TaskEvent::ContainerNote {
            name: name.into(),
            note: text.into(),
        };
        assert!(apply(&mut s, note("a", "swap not applied"), UNIX_EPOCH));
        assert_eq!(s.containers[0].reason, "swap not applied");
        assert!(
            !apply(&mut s, note("a", "another"), UNIX_EPOCH),
            "the first reason stays"
        );
        assert!(!apply(&mut s, note("nosuch", "x"), UNIX_EPOCH));
    }
}

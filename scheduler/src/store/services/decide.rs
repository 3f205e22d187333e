//! The service scheduler's decisions, pure: from a service, its tasks and the cluster's
//! instances, which tasks to stop (and why) and how many to start (REPLICA) or where (DAEMON).
//!
//! Everything here is derived from what the store holds, so a scheduler restarted at any point
//! decides again from the same facts: a task it started before dying is one of the service's
//! tasks now and is counted, never started twice.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{self as pb, DesiredStatus, HealthStatus, TaskStatus};

use super::{DAEMON, DRAINING_SERVICE};
use crate::store::placement::ACTIVE;
use crate::store::records::InstanceRecord;

/// ECS's default minimumHealthyPercent.
pub(crate) const DEFAULT_MINIMUM_HEALTHY_PERCENT: u32 = 100;
/// ECS's default maximumPercent.
pub(crate) const DEFAULT_MAXIMUM_PERCENT: u32 = 200;

/// The reason of a task stopped because its containers failed their health checks.
pub(crate) const UNHEALTHY_REASON: &str = "Task failed container health checks";

/// What the service scheduler sees of one service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) service: &'a pb::Service,
    /// The service's tasks (any status).
    pub(crate) tasks: &'a [&'a pb::Task],
    /// The service's cluster's instances.
    pub(crate) instances: &'a [InstanceRecord],
    /// Instances with a live session whose agent can take tasks.
    pub(crate) connected: &'a HashSet<String>,
    /// The task definitions (family:revision) of the tasks that have a health check: their
    /// tasks count as healthy only once HEALTHY.
    pub(crate) checked: &'a HashSet<String>,
    /// The PRIMARY deployment FAILED without a rollback: nothing new starts and the tasks it
    /// would replace keep serving.
    pub(crate) halted: bool,
    pub(crate) now: SystemTime,
}

/// Where new tasks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// REPLICA: this many, wherever placement puts them.
    Count(u32),
    /// DAEMON: one on each of these instances.
    On(Vec<String>),
}

/// What the service scheduler does to one service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) start: Start,
    /// Task IDs to stop, each with its reason.
    pub(crate) stop: Vec<(String, String)>,
    /// DAEMON: the desired count (the instances that should run one); None for REPLICA.
    pub(crate) daemon_desired: Option<u32>,
    /// Nothing to do, every wanted task RUNNING: the service is in a steady state.
    pub(crate) steady: bool,
}

impl Plan {
    /// Whether the plan changes nothing.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.stop.is_empty()
            && match &self.start {
                Start::Count(n) => *n == 0,
                Start::On(on) => on.is_empty(),
            }
    }
}

/// A task the service still counts: desired RUNNING and not STOPPED.
pub(crate) fn is_live(t: &pb::Task) -> bool {
    t.desired_status == DesiredStatus::Running as i32 && t.last_status < TaskStatus::Stopped as i32
}

fn is_running(t: &pb::Task) -> bool {
    t.last_status == TaskStatus::Running as i32
}

/// A task that holds a place under maximumPercent: not yet STOPPED, whatever its desired
/// status (a task ordered to stop still runs until its host reports it STOPPED).
fn is_occupying(t: &pb::Task) -> bool {
    t.last_status < TaskStatus::Stopped as i32
}

/// The minimum healthy and maximum percents, ECS's defaults where not given.
pub(crate) fn percents(service: &pb::Service) -> (u32, u32) {
    let config = service.deployment_configuration.as_ref();
    let min = config
        .filter(|c| c.minimum_healthy_percent_set)
        .map_or(DEFAULT_MINIMUM_HEALTHY_PERCENT, |c| {
            c.minimum_healthy_percent
        });
    let max = config
        .filter(|c| c.maximum_percent_set)
        .map_or(DEFAULT_MAXIMUM_PERCENT, |c| c.maximum_percent);
    (min, max)
}

impl View<'_> {
    fn instance_status(&self, id: &str) -> Option<&str> {
        self.instances
            .iter()
            .find(|i| i.instance.container_instance_id == id)
            .map(|i| i.instance.status.as_str())
    }

    /// UNHEALTHY after the grace period (ECS ignores failing checks until it has passed).
    fn unhealthy(&self, t: &pb::Task) -> bool {
        if t.health_status != HealthStatus::Unhealthy as i32 {
            return false;
        }
        let grace = Duration::from_secs(u64::from(self.service.health_check_grace_period_seconds));
        let started = t
            .started_at
            .or(t.created_at)
            .and_then(|s| SystemTime::try_from(s).ok());
        started.is_none_or(|s| s + grace <= self.now)
    }

    /// Why a live task must be replaced while it still serves: it runs another task
    /// definition, or its instance takes no new task.
    fn outdated(&self, t: &pb::Task) -> Option<String> {
        match self.instance_status(&t.container_instance_id) {
            Some(ACTIVE) => {}
            Some(status) => {
                return Some(format!(
                    "Container instance {} is {status}",
                    t.container_instance_id
                ));
            }
            None => {
                return Some(format!(
                    "Container instance {} left the cluster",
                    t.container_instance_id
                ));
            }
        }
        (t.task_definition != self.service.task_definition).then(|| {
            format!(
                "Task definition {} replaced by {}",
                t.task_definition, self.service.task_definition
            )
        })
    }

    /// RUNNING and, where its definition has a health check, HEALTHY: what counts towards
    /// minimumHealthyPercent and a steady state.
    pub(crate) fn healthy(&self, t: &pb::Task) -> bool {
        is_running(t)
            && (!self.checked.contains(&t.task_definition)
                || t.health_status == HealthStatus::Healthy as i32)
    }

    fn desired(&self) -> u32 {
        if self.service.status == DRAINING_SERVICE {
            0
        } else {
            self.service.desired_count
        }
    }
}

/// Newest first among those not RUNNING, then the newest RUNNING: the order scale-in stops in.
fn stop_order(tasks: &mut [&pb::Task]) {
    tasks.sort_by_key(|t| {
        (
            is_running(t),
            std::cmp::Reverse(t.created_at.map(|c| (c.seconds, c.nanos))),
            t.task_id.clone(),
        )
    });
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The plan for one service.
pub(crate) fn plan(view: &View<'_>) -> Plan {
    if view.service.scheduling_strategy == DAEMON {
        daemon(view)
    } else {
        replica(view)
    }
}

fn replica(view: &View<'_>) -> Plan {
    let name = &view.service.service_name;
    let desired = view.desired();
    let (min_percent, max_percent) = percents(view.service);
    let mut stop = Vec::new();
    let mut current: Vec<&pb::Task> = Vec::new();
    let mut outdated: Vec<(&pb::Task, String)> = Vec::new();
    for t in view.tasks.iter().copied().filter(|t| is_live(t)) {
        if view.unhealthy(t) {
            stop.push((t.task_id.clone(), UNHEALTHY_REASON.to_owned()));
        } else if let Some(why) = view.outdated(t) {
            outdated.push((t, why));
        } else {
            current.push(t);
        }
    }
    // Scale-in: the surplus goes at once, the ones not yet RUNNING first.
    if count(current.len()) > desired {
        stop_order(&mut current);
        let surplus = current.len() - desired as usize;
        for t in current.drain(..surplus) {
            stop.push((
                t.task_id.clone(),
                format!("Scaling activity initiated by (service {name})"),
            ));
        }
    }
    let max_total = u64::from(desired) * u64::from(max_percent) / 100;
    let min_healthy = (u64::from(desired) * u64::from(min_percent)).div_ceil(100);
    // Every task not yet STOPPED holds a place, those being stopped too: maximumPercent is
    // never exceeded, even while stop orders are on their way.
    let occupying = view.tasks.iter().filter(|t| is_occupying(t)).count() as u64;
    let missing = u64::from(desired).saturating_sub(current.len() as u64);
    let start = if view.halted {
        0
    } else {
        missing.min(max_total.saturating_sub(occupying))
    };
    // Outdated tasks go while enough healthy ones stay: those not healthy count for nothing
    // and go first; healthy ones within the healthy surplus.
    let healthy = current.iter().filter(|t| view.healthy(t)).count()
        + outdated.iter().filter(|(t, _)| view.healthy(t)).count();
    let mut budget = (healthy as u64).saturating_sub(min_healthy);
    outdated.sort_by_key(|(t, _)| (view.healthy(t), t.created_at.map(|c| (c.seconds, c.nanos))));
    for (t, why) in outdated {
        if view.halted {
            // A failed deployment replaces nothing.
        } else if !view.healthy(t) {
            stop.push((t.task_id.clone(), why));
        } else if budget > 0 {
            budget -= 1;
            stop.push((t.task_id.clone(), why));
        }
    }
    let start = Start::Count(u32::try_from(start).unwrap_or(u32::MAX));
    let steady = !view.halted
        && stop.is_empty()
        && start == Start::Count(0)
        && count(current.len()) == desired
        && current.iter().all(|t| view.healthy(t))
        && view.tasks.iter().filter(|t| is_live(t)).count() == current.len();
    Plan {
        start,
        stop,
        daemon_desired: None,
        steady,
    }
}

fn daemon(view: &View<'_>) -> Plan {
    let draining = view.service.status == DRAINING_SERVICE;
    // The instances that should run one: ACTIVE and connected.
    let eligible: Vec<&str> = if draining {
        Vec::new()
    } else {
        view.instances
            .iter()
            .map(|i| &i.instance)
            .filter(|i| i.status == ACTIVE && view.connected.contains(&i.container_instance_id))
            .map(|i| i.container_instance_id.as_str())
            .collect()
    };
    let mut stop = Vec::new();
    let mut by_instance: BTreeMap<&str, Vec<&pb::Task>> = BTreeMap::new();
    for t in view.tasks.iter().copied().filter(|t| is_live(t)) {
        if view.unhealthy(t) {
            stop.push((t.task_id.clone(), UNHEALTHY_REASON.to_owned()));
            continue;
        }
        let on = t.container_instance_id.as_str();
        let status = view.instance_status(on);
        if draining || status.is_some_and(|s| s != ACTIVE) || status.is_none() {
            let why = if draining {
                format!("Service {} is being deleted", view.service.service_name)
            } else {
                view.outdated(t)
                    .unwrap_or_else(|| format!("Container instance {on} takes no task"))
            };
            stop.push((t.task_id.clone(), why));
        } else {
            by_instance.entry(on).or_default().push(t);
        }
    }
    let mut start = Vec::new();
    let mut all_running = true;
    for id in &eligible {
        let mut here = by_instance.remove(id).unwrap_or_default();
        // Keep one of the current definition (RUNNING first, then the oldest); the rest go.
        here.sort_by_key(|t| {
            (
                t.task_definition != view.service.task_definition,
                !is_running(t),
                t.created_at.map(|c| (c.seconds, c.nanos)),
                t.task_id.clone(),
            )
        });
        let mut rest = here.into_iter();
        match rest.next() {
            Some(keep) if keep.task_definition == view.service.task_definition => {
                all_running &= view.healthy(keep);
            }
            // A failed deployment replaces nothing.
            Some(_) if view.halted => all_running = false,
            None if view.halted => all_running = false,
            Some(old) => {
                let why = view.outdated(old).unwrap_or_default();
                stop.push((old.task_id.clone(), why));
                start.push((*id).to_owned());
            }
            None => start.push((*id).to_owned()),
        }
        for extra in rest {
            stop.push((
                extra.task_id.clone(),
                format!(
                    "More than one task of daemon service {} on {id}",
                    view.service.service_name
                ),
            ));
        }
    }
    // Tasks on ACTIVE instances that are not connected stay until the instance is lost.
    let steady = !view.halted && stop.is_empty() && start.is_empty() && all_running;
    Plan {
        start: Start::On(start),
        stop,
        daemon_desired: Some(count(eligible.len())),
        steady,
    }
}

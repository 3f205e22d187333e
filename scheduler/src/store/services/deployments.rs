//! A service's deployments, as ECS's `deployments` shows them: each a task definition the
//! service scheduler rolls out, with an ID (`ecs-svc/` and 19 digits) its tasks carry as
//! startedBy, a status (PRIMARY, ACTIVE, INACTIVE), a rollout state (IN_PROGRESS, COMPLETED,
//! FAILED) and counts. CreateService makes the first one and UpdateService a new one when the
//! task definition changes; the service scheduler's step moves them on ([`advance`] before it
//! decides, [`settle`] after) inside its write transaction, so a scheduler killed at any point
//! finds them as they were committed with the tasks they led to.
//!
//! The circuit breaker counts the PRIMARY deployment's failed tasks from the tasks the store
//! holds (never lowering the count it recorded), so counting again after a restart finds the
//! same tasks and counts none twice.

use std::time::{Duration, SystemTime};

use berth_proto::v1::{self as pb, StopCode, TaskStatus};
use rand::Rng;

use super::decide::{UNHEALTHY_REASON, is_live};
use super::events;
use crate::store::now;

/// A deployment's statuses.
pub(crate) const PRIMARY: &str = "PRIMARY";
pub(crate) const ACTIVE_DEPLOYMENT: &str = "ACTIVE";
pub(crate) const INACTIVE_DEPLOYMENT: &str = "INACTIVE";
/// A deployment's rollout states.
pub(crate) const IN_PROGRESS: &str = "IN_PROGRESS";
pub(crate) const COMPLETED: &str = "COMPLETED";
pub(crate) const FAILED: &str = "FAILED";

/// ECS's circuit breaker threshold: half the desired count (rounded up), at least 3, at most
/// 200 failed tasks.
pub(crate) fn threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// A new deployment ID: `ecs-svc/` and 19 digits, as ECS's.
fn new_id() -> String {
    let n: u64 = rand::rng().random_range(1_000_000_000_000_000_000..10_000_000_000_000_000_000);
    format!("ecs-svc/{n}")
}

fn in_progress_reason(id: &str) -> String {
    format!("ECS deployment {id} in progress.")
}

/// The PRIMARY deployment (the newest), if the service has any.
pub(crate) fn primary(service: &pb::Service) -> Option<&pb::Deployment> {
    service.deployments.first().filter(|d| d.status == PRIMARY)
}

/// Makes `task_definition` the service's new PRIMARY deployment (the PRIMARY before it turns
/// ACTIVE; its tasks are replaced) and returns its ID. `reason` is its rolloutStateReason,
/// ECS's "in progress" one when None.
pub(super) fn begin(
    service: &mut pb::Service,
    task_definition: &str,
    reason: Option<String>,
) -> String {
    let at = now();
    for d in &mut service.deployments {
        if d.status == PRIMARY {
            d.status = ACTIVE_DEPLOYMENT.to_owned();
            d.updated_at = Some(at);
        }
    }
    let id = new_id();
    service.deployments.insert(
        0,
        pb::Deployment {
            id: id.clone(),
            status: PRIMARY.to_owned(),
            task_definition: task_definition.to_owned(),
            desired_count: service.desired_count,
            created_at: Some(at),
            updated_at: Some(at),
            rollout_state: IN_PROGRESS.to_owned(),
            rollout_state_reason: reason.unwrap_or_else(|| in_progress_reason(&id)),
            ..Default::default()
        },
    );
    id
}

/// A service stored before deployments existed gets one: PRIMARY, of its task definition,
/// with the ID its tasks already carry (`ecs-svc/<service ID>`).
pub(super) fn adopt_legacy(service: &mut pb::Service) {
    if !service.deployments.is_empty() {
        return;
    }
    let at = now();
    let id = format!("ecs-svc/{}", service.service_id);
    service.deployments.push(pb::Deployment {
        rollout_state_reason: in_progress_reason(&id),
        id,
        status: PRIMARY.to_owned(),
        task_definition: service.task_definition.clone(),
        desired_count: service.desired_count,
        created_at: Some(at),
        updated_at: Some(at),
        rollout_state: IN_PROGRESS.to_owned(),
        ..Default::default()
    });
}

/// A task that counts against its deployment: it stopped on its own (it could not start, or
/// an essential container exited) or the service scheduler stopped it as UNHEALTHY.
fn failed(t: &pb::Task) -> bool {
    t.last_status >= TaskStatus::Stopped as i32
        && (t.stop_code == StopCode::TaskFailedToStart as i32
            || t.stop_code == StopCode::EssentialContainerExited as i32
            || t.stopped_reason == UNHEALTHY_REASON)
}

/// The circuit breaker, before the step decides: counts the IN_PROGRESS PRIMARY deployment's
/// failed tasks and, with the breaker enabled and the threshold reached, marks it FAILED and
/// (with rollback) starts a new deployment of the last COMPLETED one's task definition.
/// Returns the events, and the task definition rolled back to (its live tasks join the new
/// deployment).
pub(super) fn advance(
    service: &mut pb::Service,
    tasks: &[&pb::Task],
) -> (Vec<String>, Option<String>) {
    let name = service.service_name.clone();
    let breaker = service
        .deployment_configuration
        .and_then(|c| c.deployment_circuit_breaker)
        .unwrap_or_default();
    let desired = service.desired_count;
    let Some(d) = service.deployments.first_mut() else {
        return (Vec::new(), None);
    };
    if d.status != PRIMARY || d.rollout_state != IN_PROGRESS {
        return (Vec::new(), None);
    }
    let counted = tasks
        .iter()
        .filter(|t| t.started_by == d.id && failed(t))
        .count();
    let counted = u32::try_from(counted).unwrap_or(u32::MAX);
    if counted > d.failed_tasks {
        d.failed_tasks = counted;
        d.updated_at = Some(now());
    }
    if !breaker.enable || d.failed_tasks < threshold(desired) {
        return (Vec::new(), None);
    }
    let failed_id = d.id.clone();
    d.rollout_state = FAILED.to_owned();
    d.rollout_state_reason = "ECS deployment circuit breaker: tasks failed to start.".to_owned();
    d.updated_at = Some(now());
    let mut said = vec![events::deployment_failed(&name, &failed_id)];
    tracing::warn!(service = %name, deployment = %failed_id, failed_tasks = d.failed_tasks, "deployment circuit breaker tripped");
    if !breaker.rollback {
        return (said, None);
    }
    let Some(target) = service
        .deployments
        .iter()
        .skip(1)
        .find(|d| d.rollout_state == COMPLETED)
        .map(|d| (d.id.clone(), d.task_definition.clone()))
    else {
        said.push(events::no_rollback(&name, &failed_id));
        return (said, None);
    };
    let (target_id, task_definition) = target;
    service.task_definition.clone_from(&task_definition);
    let id = begin(
        service,
        &task_definition,
        Some(format!(
            "ECS deployment circuit breaker: rolling back to deploymentId {target_id}."
        )),
    );
    said.push(events::rolling_back(&name, &target_id));
    tracing::warn!(service = %name, deployment = %id, to = %target_id, task_definition = %task_definition, "rolling back");
    (said, Some(task_definition))
}

/// How long a service must stay steady before its IN_PROGRESS PRIMARY deployment completes.
/// Two tasks that crash a moment after they start can both be RUNNING at once: without the
/// window, that instant would complete the deployment before the circuit breaker saw them
/// fail. The service scheduler steps every 2 s, so completion comes 5 to 7 s after the
/// service turned steady.
pub(crate) const STABLE_FOR: Duration = Duration::from_secs(5);

/// After the step: the PRIMARY's desired count follows the service's, an ACTIVE one's is
/// what it still runs; a service that has stayed steady for [`STABLE_FOR`] (on the
/// scheduler's clock, `at`) completes its IN_PROGRESS PRIMARY, and the others turn INACTIVE
/// and leave the list. Returns the events.
pub(super) fn settle(
    service: &mut pb::Service,
    tasks: &[&pb::Task],
    steady: bool,
    at: SystemTime,
) -> Vec<String> {
    let desired = service.desired_count;
    let inactive = service.status == super::INACTIVE_SERVICE;
    let mut said = Vec::new();
    for d in &mut service.deployments {
        let before = d.clone();
        if inactive {
            d.status = INACTIVE_DEPLOYMENT.to_owned();
        }
        if d.status == PRIMARY {
            d.desired_count = desired;
            if d.rollout_state != IN_PROGRESS || !steady {
                d.steady_since = None;
            } else if stable(d, at) {
                d.steady_since = None;
                d.rollout_state = COMPLETED.to_owned();
                d.rollout_state_reason = format!("ECS deployment {} completed.", d.id);
                said.push(events::deployment_completed(&service.service_name, &d.id));
                tracing::info!(service = %service.service_name, deployment = %d.id, "deployment completed");
            }
        } else {
            let live = tasks
                .iter()
                .filter(|t| t.started_by == d.id && is_live(t))
                .count();
            d.desired_count = u32::try_from(live).unwrap_or(u32::MAX);
        }
        if *d != before {
            d.updated_at = Some(now());
        }
    }
    let completed = primary(service).is_some_and(|p| p.rollout_state == COMPLETED);
    if completed {
        service.deployments.retain(|d| d.status == PRIMARY);
    }
    said
}

/// Steady since at least [`STABLE_FOR`] before `at`; the first steady step starts the window.
/// A `steady_since` after `at` (the scheduler's clock went back) starts it again.
fn stable(d: &mut pb::Deployment, at: SystemTime) -> bool {
    let since = d
        .steady_since
        .and_then(|s| SystemTime::try_from(s).ok())
        .filter(|s| *s <= at);
    match since {
        Some(since) => at.duration_since(since).unwrap_or_default() >= STABLE_FOR,
        None => {
            d.steady_since = Some(at.into());
            false
        }
    }
}

/// Fills each deployment's running and pending counts from its tasks.
pub(super) fn with_counts(service: &mut pb::Service, tasks: &[&pb::Task]) {
    for d in &mut service.deployments {
        let live: Vec<&&pb::Task> = tasks
            .iter()
            .filter(|t| t.started_by == d.id && is_live(t))
            .collect();
        let running = live
            .iter()
            .filter(|t| t.last_status == TaskStatus::Running as i32)
            .count();
        d.running_count = u32::try_from(running).unwrap_or(u32::MAX);
        d.pending_count = u32::try_from(live.len() - running).unwrap_or(u32::MAX);
    }
}

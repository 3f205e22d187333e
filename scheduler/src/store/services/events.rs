//! Service events in ECS's wording, kept newest first and bounded per service.

use berth_proto::v1 as pb;

use crate::store::placement::{Demand, Shortage};
use crate::store::{new_id, now};

/// The most events one service keeps (ECS shows up to 100).
pub(crate) const MAX_EVENTS: usize = 100;

/// Adds `message` as the service's newest event, dropping the oldest beyond [`MAX_EVENTS`].
/// The same message as the newest is not repeated (a service that cannot place a task says so
/// once until something else happens).
pub(crate) fn push(service: &mut pb::Service, message: String) -> bool {
    if service.events.first().is_some_and(|e| e.message == message) {
        return false;
    }
    service.events.insert(
        0,
        pb::ServiceEvent {
            id: new_id(),
            created_at: Some(now()),
            message,
        },
    );
    service.events.truncate(MAX_EVENTS);
    true
}

fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn started(service: &str, ids: &[String]) -> String {
    format!(
        "(service {service}) has started {} tasks: {}.",
        ids.len(),
        task_list(ids)
    )
}

pub(crate) fn stopped(service: &str, ids: &[String]) -> String {
    format!(
        "(service {service}) has stopped {} running tasks: {}.",
        ids.len(),
        task_list(ids)
    )
}

pub(crate) fn steady(service: &str) -> String {
    format!("(service {service}) has reached a steady state.")
}

pub(crate) fn deleted(service: &str) -> String {
    format!("(service {service}) has been deleted: its tasks are stopped.")
}

pub(super) const UNABLE: &str =
    "was unable to place a task because no container instance met all of its requirements.";

/// No instance can take tasks at all (none connected and ACTIVE).
pub(crate) fn no_instances(service: &str) -> String {
    format!(
        "(service {service}) {UNABLE} Reason: No Container Instances were found in your cluster."
    )
}

/// No instance has the platform the definition asks for.
pub(crate) fn no_platform(service: &str, closest: &str, why: &str) -> String {
    format!(
        "(service {service}) {UNABLE} The closest matching (container-instance {closest}) {why}."
    )
}

/// The candidates lack room or ports, as placement found.
pub(crate) fn unplaced(service: &str, demand: &Demand, shortage: &Shortage) -> String {
    match shortage {
        Shortage::Ports(taken) => {
            let ports: Vec<String> = taken.iter().map(ToString::to_string).collect();
            format!(
                "(service {service}) {UNABLE} Every container instance is already using a port required by your task ({}).",
                ports.join(", ")
            )
        }
        Shortage::Room(Some(closest)) => {
            let what = if closest.memory_mib < demand.memory_mib {
                "memory"
            } else {
                "CPU units"
            };
            format!(
                "(service {service}) {UNABLE} The closest matching (container-instance {}) has insufficient {what} available.",
                closest.instance_id
            )
        }
        Shortage::Room(None) => no_instances(service),
    }
}

pub(crate) fn deployment_completed(service: &str, deployment: &str) -> String {
    format!("(service {service}) (deployment {deployment}) deployment completed.")
}

pub(crate) fn deployment_failed(service: &str, deployment: &str) -> String {
    format!(
        "(service {service}) (deployment {deployment}) deployment failed: tasks failed to start."
    )
}

pub(crate) fn rolling_back(service: &str, to: &str) -> String {
    format!("(service {service}) rolling back to deployment {to}.")
}

pub(crate) fn no_rollback(service: &str, deployment: &str) -> String {
    format!(
        "(service {service}) (deployment {deployment}) cannot roll back: the service has no COMPLETED deployment."
    )
}

//! Deployments: the rolling decisions under health checks, maximumPercent and a halted
//! deployment (pure), the circuit breaker and rollback, and deployments against a real store.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{self as pb, DesiredStatus, HealthStatus, StopCode, TaskStatus};

use super::decide::{Start, View, plan};
use super::deployments::{self, COMPLETED, FAILED, IN_PROGRESS, PRIMARY, STABLE_FOR, threshold};
use super::*;
use crate::store::DEFAULT_CLUSTER;
use crate::store::records::InstanceRecord;

fn instance(id: &str) -> InstanceRecord {
    InstanceRecord {
        instance: pb::ContainerInstance {
            container_instance_id: id.into(),
            cluster: DEFAULT_CLUSTER.into(),
            status: "ACTIVE".into(),
            ..Default::default()
        },
        capabilities: vec![],
    }
}

fn service(desired: u32, min: u32, max: u32) -> pb::Service {
    pb::Service {
        service_name: "web".into(),
        cluster: DEFAULT_CLUSTER.into(),
        service_id: "svc".into(),
        task_definition: "web:2".into(),
        desired_count: desired,
        scheduling_strategy: REPLICA.into(),
        status: ACTIVE_SERVICE.into(),
        deployment_configuration: Some(pb::DeploymentConfiguration {
            minimum_healthy_percent: min,
            maximum_percent: max,
            minimum_healthy_percent_set: true,
            maximum_percent_set: true,
            deployment_circuit_breaker: None,
        }),
        ..Default::default()
    }
}

fn task(id: &str, def: &str, by: &str, status: TaskStatus) -> pb::Task {
    pb::Task {
        task_id: id.into(),
        cluster: DEFAULT_CLUSTER.into(),
        task_definition: def.into(),
        container_instance_id: "a".into(),
        last_status: status as i32,
        desired_status: DesiredStatus::Running as i32,
        started_by: by.into(),
        group: "service:svc".into(),
        created_at: Some(prost_types::Timestamp {
            seconds: 1000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn decide(
    s: &pb::Service,
    tasks: &[pb::Task],
    checked: &[&str],
    halted: bool,
) -> super::decide::Plan {
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let instances = [instance("a")];
    let up: HashSet<String> = ["a".to_owned()].into();
    let checked: HashSet<String> = checked.iter().map(|c| (*c).to_owned()).collect();
    plan(&View {
        service: s,
        tasks: &refs,
        instances: &instances,
        connected: &up,
        checked: &checked,
        halted,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(10_000),
    })
}

/// Four RUNNING tasks of web:1 being replaced by web:2.
fn old_four() -> Vec<pb::Task> {
    (0..4)
        .map(|i| {
            task(
                &format!("old{i}"),
                "web:1",
                "ecs-svc/1",
                TaskStatus::Running,
            )
        })
        .collect()
}

#[test]
fn tasks_being_stopped_count_against_maximum_percent() {
    // min 100, max 150 on 4: two new tasks at a time; two old ones still stopping hold their
    // places, so nothing more starts until they are STOPPED.
    let mut tasks = old_four();
    for t in &mut tasks[..2] {
        t.desired_status = DesiredStatus::Stopped as i32;
    }
    tasks.push(task("new0", "web:2", "ecs-svc/2", TaskStatus::Running));
    tasks.push(task("new1", "web:2", "ecs-svc/2", TaskStatus::Running));
    let p = decide(&service(4, 100, 150), &tasks, &[], false);
    assert_eq!(p.start, Start::Count(0));
    // Four healthy (two old, two new) and a minimum of four: no more old ones go yet.
    assert!(p.stop.is_empty(), "{p:?}");
    // Once the first two are STOPPED, two places are free.
    for t in &mut tasks[..2] {
        t.last_status = TaskStatus::Stopped as i32;
    }
    let p = decide(&service(4, 100, 150), &tasks, &[], false);
    assert_eq!(p.start, Start::Count(2));
}

#[test]
fn a_task_with_health_checks_counts_as_healthy_only_once_healthy() {
    let mut tasks = old_four();
    for i in 0..4 {
        tasks.push(task(
            &format!("new{i}"),
            "web:2",
            "ecs-svc/2",
            TaskStatus::Running,
        ));
    }
    // RUNNING but not yet HEALTHY: no old task may go (min 100), and no steady state.
    let p = decide(&service(4, 100, 200), &tasks, &["web:2"], false);
    assert!(p.stop.is_empty(), "{p:?}");
    assert!(!p.steady);
    // Two HEALTHY: two old ones may go.
    for t in &mut tasks[4..6] {
        t.health_status = HealthStatus::Healthy as i32;
    }
    let p = decide(&service(4, 100, 200), &tasks, &["web:2"], false);
    assert_eq!(p.stop.len(), 2);
    assert!(p.stop.iter().all(|(id, _)| id.starts_with("old")));
    // Without checks RUNNING is enough: all four old ones go.
    let p = decide(&service(4, 100, 200), &tasks, &[], false);
    assert_eq!(p.stop.len(), 4);
}

#[test]
fn a_halted_deployment_starts_nothing_and_replaces_nothing() {
    let mut tasks = old_four();
    tasks.push(task("new0", "web:2", "ecs-svc/2", TaskStatus::Running));
    let p = decide(&service(4, 50, 200), &tasks, &[], true);
    assert_eq!(p.start, Start::Count(0));
    assert!(p.stop.is_empty());
    assert!(!p.steady);
}

#[test]
fn the_breaker_threshold_is_half_the_desired_count_within_3_and_200() {
    assert_eq!(threshold(0), 3);
    assert_eq!(threshold(1), 3);
    assert_eq!(threshold(4), 3);
    assert_eq!(threshold(7), 4);
    assert_eq!(threshold(10), 5);
    assert_eq!(threshold(399), 200);
    assert_eq!(threshold(1000), 200);
}

/// A service whose first deployment (web:1) COMPLETED and whose second (web:2) is in
/// progress, with the breaker as given.
fn deploying(enable: bool, rollback: bool) -> pb::Service {
    let mut s = service(4, 100, 200);
    s.task_definition = "web:1".into();
    deployments::begin(&mut s, "web:1", None);
    s.deployments[0].rollout_state = COMPLETED.into();
    s.task_definition = "web:2".into();
    deployments::begin(&mut s, "web:2", None);
    if let Some(c) = &mut s.deployment_configuration {
        c.deployment_circuit_breaker = Some(pb::DeploymentCircuitBreaker { enable, rollback });
    }
    s
}

fn crashed(id: &str, by: &str) -> pb::Task {
    let mut t = task(id, "web:2", by, TaskStatus::Stopped);
    t.stop_code = StopCode::EssentialContainerExited as i32;
    t
}

#[test]
fn the_breaker_fails_the_deployment_at_the_threshold_and_rolls_back() {
    let mut s = deploying(true, true);
    let (first, second) = (s.deployments[1].id.clone(), s.deployments[0].id.clone());
    assert_eq!(s.deployments[0].status, PRIMARY);
    assert_eq!(s.deployments[0].rollout_state, IN_PROGRESS);
    // Two failures: below the threshold (3), counted.
    let mut tasks = vec![crashed("c0", &second), crashed("c1", &second)];
    // A task stopped by the scheduler for a replacement is no failure.
    let mut replaced = task("r0", "web:2", &second, TaskStatus::Stopped);
    replaced.stop_code = StopCode::ServiceSchedulerInitiated as i32;
    tasks.push(replaced);
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let (said, rolled) = deployments::advance(&mut s, &refs);
    assert!(said.is_empty());
    assert_eq!(rolled, None);
    assert_eq!(s.deployments[0].failed_tasks, 2);
    // Counting the same tasks again (a restarted scheduler) counts none twice.
    let (said, _) = deployments::advance(&mut s, &refs);
    assert!(said.is_empty());
    assert_eq!(s.deployments[0].failed_tasks, 2);
    // The third trips the breaker; the service goes back to web:1 in a new deployment.
    tasks.push(crashed("c2", &second));
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let (said, rolled) = deployments::advance(&mut s, &refs);
    assert_eq!(rolled.as_deref(), Some("web:1"));
    assert_eq!(s.task_definition, "web:1");
    assert_eq!(
        said,
        vec![
            format!(
                "(service web) (deployment {second}) deployment failed: tasks failed to start."
            ),
            format!("(service web) rolling back to deployment {first}."),
        ]
    );
    let statuses: Vec<(&str, &str, &str)> = s
        .deployments
        .iter()
        .map(|d| {
            (
                d.status.as_str(),
                d.task_definition.as_str(),
                d.rollout_state.as_str(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (PRIMARY, "web:1", IN_PROGRESS),
            ("ACTIVE", "web:2", FAILED),
            ("ACTIVE", "web:1", COMPLETED),
        ]
    );
    assert_eq!(
        s.deployments[1].rollout_state_reason,
        "ECS deployment circuit breaker: tasks failed to start."
    );
    // Steady starts the stabilisation window; a step that is not steady ends it.
    let t0 = SystemTime::now();
    assert!(deployments::settle(&mut s, &[], true, t0).is_empty());
    assert!(s.deployments[0].steady_since.is_some());
    assert!(deployments::settle(&mut s, &[], false, t0 + STABLE_FOR).is_empty());
    assert_eq!(s.deployments[0].steady_since, None);
    assert_eq!(s.deployments[0].rollout_state, IN_PROGRESS);
    // Steady again, but not yet for the whole window.
    let t1 = t0 + STABLE_FOR;
    assert!(deployments::settle(&mut s, &[], true, t1).is_empty());
    let almost = t1 + STABLE_FOR - Duration::from_millis(1);
    assert!(deployments::settle(&mut s, &[], true, almost).is_empty());
    assert_eq!(s.deployments[0].rollout_state, IN_PROGRESS);
    // Completing the rollback leaves only it.
    let said = deployments::settle(&mut s, &[], true, t1 + STABLE_FOR);
    assert_eq!(said.len(), 1);
    assert!(said[0].ends_with("deployment completed."));
    assert_eq!(s.deployments.len(), 1);
    assert_eq!(s.deployments[0].rollout_state, COMPLETED);
}

#[test]
fn without_rollback_the_deployment_fails_and_stays_primary() {
    let mut s = deploying(true, false);
    let id = s.deployments[0].id.clone();
    let tasks: Vec<pb::Task> = (0..3).map(|i| crashed(&format!("c{i}"), &id)).collect();
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let (said, rolled) = deployments::advance(&mut s, &refs);
    assert_eq!(said.len(), 1);
    assert_eq!(rolled, None);
    assert_eq!(s.task_definition, "web:2");
    assert_eq!(s.deployments[0].status, PRIMARY);
    assert_eq!(s.deployments[0].rollout_state, FAILED);
    // A disabled breaker counts but never fails a deployment.
    let mut s = deploying(false, false);
    let id = s.deployments[0].id.clone();
    let tasks: Vec<pb::Task> = (0..5).map(|i| crashed(&format!("c{i}"), &id)).collect();
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let (said, _) = deployments::advance(&mut s, &refs);
    assert!(said.is_empty());
    assert_eq!(s.deployments[0].failed_tasks, 5);
    assert_eq!(s.deployments[0].rollout_state, IN_PROGRESS);
}

#[test]
fn a_first_deployment_that_fails_has_nothing_to_roll_back_to() {
    let mut s = service(4, 100, 200);
    s.deployment_configuration = Some(pb::DeploymentConfiguration {
        deployment_circuit_breaker: Some(pb::DeploymentCircuitBreaker {
            enable: true,
            rollback: true,
        }),
        ..Default::default()
    });
    deployments::begin(&mut s, "web:2", None);
    let id = s.deployments[0].id.clone();
    let tasks: Vec<pb::Task> = (0..3).map(|i| crashed(&format!("c{i}"), &id)).collect();
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let (said, rolled) = deployments::advance(&mut s, &refs);
    assert_eq!(rolled, None);
    assert_eq!(said.len(), 2);
    assert!(said[1].contains("no COMPLETED deployment"), "{said:?}");
}

/// A store with two instances and two revisions of `web`.
fn store_with_definitions() -> (tempfile::TempDir, Store, Vec<String>) {
    let (dir, store, ids) = super::tests::store_with_instances(2);
    store
        .register_task_definition(pb::TaskDefinition {
            family: "web".into(),
            containers: vec![pb::ContainerDefinition {
                name: "app".into(),
                image: "busybox:2".into(),
                cpu: 256,
                memory_mib: 256,
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("register revision 2");
    (dir, store, ids)
}

#[test]
fn an_update_with_a_new_task_definition_starts_a_deployment_that_completes() {
    let (_dir, store, ids) = store_with_definitions();
    let created = store
        .create_service(
            DEFAULT_CLUSTER,
            pb::Service {
                service_name: "web".into(),
                task_definition: "web:1".into(),
                desired_count: 2,
                ..Default::default()
            },
            "test",
        )
        .expect("create");
    assert_eq!(created.deployments.len(), 1);
    let first = created.deployments[0].id.clone();
    let up: HashSet<String> = ids.iter().cloned().collect();
    let step = |store: &Store| {
        store
            .reconcile_service(
                DEFAULT_CLUSTER,
                "web",
                &up,
                &BTreeMap::new(),
                SystemTime::now(),
            )
            .expect("step")
    };
    let done = step(&store);
    assert_eq!(done.started.len(), 2);
    assert!(done.started.iter().all(|t| t.started_by == first));
    // The same task definition again, or only a new count: no new deployment.
    let same = store
        .update_service(
            DEFAULT_CLUSTER,
            "web",
            ServiceUpdate {
                task_definition: Some("web:1".into()),
                ..Default::default()
            },
        )
        .expect("update");
    assert_eq!(same.deployments.len(), 1);
    let updated = store
        .update_service(
            DEFAULT_CLUSTER,
            "web",
            ServiceUpdate {
                task_definition: Some("web:2".into()),
                ..Default::default()
            },
        )
        .expect("update");
    assert_eq!(updated.deployments.len(), 2);
    assert_eq!(updated.deployments[0].status, PRIMARY);
    assert_eq!(updated.deployments[0].task_definition, "web:2");
    assert_eq!(updated.deployments[1].status, "ACTIVE");
    assert_eq!(updated.deployments[1].id, first);
    assert_eq!(updated.deployments[1].pending_count, 2);
    let second = updated.deployments[0].id.clone();
    // Max 200: two new tasks start beside the two old ones, tagged with the new deployment.
    let done = step(&store);
    assert_eq!(done.started.len(), 2);
    assert!(done.started.iter().all(|t| t.started_by == second));
    let (services, _) = store
        .describe_services(DEFAULT_CLUSTER, &["web".into()])
        .expect("describe");
    assert_eq!(services[0].deployments[0].pending_count, 2);
    assert_eq!(services[0].deployments[0].rollout_state, IN_PROGRESS);
}

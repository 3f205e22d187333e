//! The service scheduler's decisions (pure) and its steps against a real store.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{self as pb, DesiredStatus, HealthStatus, TaskStatus};

use super::decide::{Plan, Start, View, plan};
use super::*;
use crate::store::DEFAULT_CLUSTER;
use crate::store::records::InstanceRecord;

fn service(desired: u32) -> pb::Service {
    pb::Service {
        service_name: "web".into(),
        cluster: DEFAULT_CLUSTER.into(),
        service_id: "svc".into(),
        task_definition: "web:1".into(),
        desired_count: desired,
        scheduling_strategy: REPLICA.into(),
        status: ACTIVE_SERVICE.into(),
        ..Default::default()
    }
}

fn instance(id: &str, status: &str) -> InstanceRecord {
    InstanceRecord {
        instance: pb::ContainerInstance {
            container_instance_id: id.into(),
            cluster: DEFAULT_CLUSTER.into(),
            status: status.into(),
            ..Default::default()
        },
        capabilities: vec![],
    }
}

fn task(id: &str, on: &str, status: TaskStatus) -> pb::Task {
    pb::Task {
        task_id: id.into(),
        cluster: DEFAULT_CLUSTER.into(),
        task_definition: "web:1".into(),
        container_instance_id: on.into(),
        last_status: status as i32,
        desired_status: DesiredStatus::Running as i32,
        started_by: "ecs-svc/svc".into(),
        created_at: Some(prost_types::Timestamp {
            seconds: 1000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn connected(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn decide(s: &pb::Service, tasks: &[pb::Task], instances: &[InstanceRecord], up: &[&str]) -> Plan {
    let refs: Vec<&pb::Task> = tasks.iter().collect();
    let up = connected(up);
    plan(&View {
        service: s,
        tasks: &refs,
        instances,
        connected: &up,
        checked: &HashSet::new(),
        halted: false,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(10_000),
    })
}

fn stopped_ids(p: &Plan) -> Vec<&str> {
    p.stop.iter().map(|(id, _)| id.as_str()).collect()
}

#[test]
fn replica_starts_what_is_missing_and_counts_what_exists() {
    let instances = [instance("a", "ACTIVE")];
    let p = decide(
        &service(3),
        &[task("t1", "a", TaskStatus::Running)],
        &instances,
        &["a"],
    );
    assert_eq!(p.start, Start::Count(2));
    assert!(p.stop.is_empty());
    assert!(!p.steady);
}

#[test]
fn a_stopped_task_is_replaced_and_a_stopping_one_is_not_counted() {
    let instances = [instance("a", "ACTIVE")];
    let mut gone = task("t1", "a", TaskStatus::Stopped);
    gone.desired_status = DesiredStatus::Stopped as i32;
    let mut stopping = task("t2", "a", TaskStatus::Running);
    stopping.desired_status = DesiredStatus::Stopped as i32;
    let p = decide(&service(2), &[gone, stopping], &instances, &["a"]);
    assert_eq!(p.start, Start::Count(2));
}

#[test]
fn steady_when_every_wanted_task_runs() {
    let instances = [instance("a", "ACTIVE")];
    let tasks = [
        task("t1", "a", TaskStatus::Running),
        task("t2", "a", TaskStatus::Running),
    ];
    let p = decide(&service(2), &tasks, &instances, &["a"]);
    assert!(p.is_idle());
    assert!(p.steady);
    // One still pending: nothing to do, but not steady yet.
    let tasks = [
        task("t1", "a", TaskStatus::Running),
        task("t2", "a", TaskStatus::Pending),
    ];
    let p = decide(&service(2), &tasks, &instances, &["a"]);
    assert!(p.is_idle());
    assert!(!p.steady);
}

#[test]
fn scale_in_stops_the_pending_first_then_the_newest() {
    let instances = [instance("a", "ACTIVE")];
    let mut newest = task("new", "a", TaskStatus::Running);
    newest.created_at = Some(prost_types::Timestamp {
        seconds: 2000,
        nanos: 0,
    });
    let tasks = [
        task("old", "a", TaskStatus::Running),
        newest,
        task("pending", "a", TaskStatus::Pending),
    ];
    let p = decide(&service(1), &tasks, &instances, &["a"]);
    assert_eq!(stopped_ids(&p), vec!["pending", "new"]);
    assert!(
        p.stop[0]
            .1
            .contains("Scaling activity initiated by (service web)")
    );
    assert_eq!(p.start, Start::Count(0));
}

#[test]
fn an_unhealthy_task_is_stopped_and_replaced_after_the_grace_period() {
    let instances = [instance("a", "ACTIVE")];
    let mut sick = task("sick", "a", TaskStatus::Running);
    sick.health_status = HealthStatus::Unhealthy as i32;
    sick.started_at = Some(prost_types::Timestamp {
        seconds: 9_990,
        nanos: 0,
    });
    let mut s = service(1);
    let p = decide(&s, std::slice::from_ref(&sick), &instances, &["a"]);
    assert_eq!(stopped_ids(&p), vec!["sick"]);
    assert_eq!(p.stop[0].1, decide::UNHEALTHY_REASON);
    assert_eq!(p.start, Start::Count(1));
    // Within the grace period its failing checks are ignored.
    s.health_check_grace_period_seconds = 60;
    let p = decide(&s, &[sick], &instances, &["a"]);
    assert!(p.is_idle());
}

#[test]
fn a_draining_instance_gets_its_replacement_before_its_task_stops() {
    let instances = [instance("a", "DRAINING"), instance("b", "ACTIVE")];
    let old = task("old", "a", TaskStatus::Running);
    // Step 1: the replacement starts (within maximumPercent 200), the old one keeps serving.
    let p = decide(
        &service(1),
        std::slice::from_ref(&old),
        &instances,
        &["a", "b"],
    );
    assert_eq!(p.start, Start::Count(1));
    assert!(p.stop.is_empty());
    // Step 2: the replacement is pending: still nothing stops.
    let new = task("new", "b", TaskStatus::Pending);
    let p = decide(&service(1), &[old.clone(), new], &instances, &["a", "b"]);
    assert!(p.is_idle());
    // Step 3: it runs: the old one stops, saying why.
    let new = task("new", "b", TaskStatus::Running);
    let p = decide(&service(1), &[old, new], &instances, &["a", "b"]);
    assert_eq!(stopped_ids(&p), vec!["old"]);
    assert!(p.stop[0].1.contains("is DRAINING"), "{}", p.stop[0].1);
}

#[test]
fn the_percents_bound_a_replacement() {
    let instances = [instance("a", "DRAINING"), instance("b", "ACTIVE")];
    let tasks: Vec<pb::Task> = (0..4)
        .map(|i| task(&format!("t{i}"), "a", TaskStatus::Running))
        .collect();
    // min 50, max 100: no room above 4 tasks, but two of them may stop at once.
    let mut s = service(4);
    s.deployment_configuration = Some(pb::DeploymentConfiguration {
        minimum_healthy_percent: 50,
        maximum_percent: 100,
        minimum_healthy_percent_set: true,
        maximum_percent_set: true,
        ..Default::default()
    });
    let p = decide(&s, &tasks, &instances, &["a", "b"]);
    assert_eq!(p.start, Start::Count(0));
    assert_eq!(p.stop.len(), 2);
    // min 100, max 150: two replacements at a time, nothing stops before they run.
    s.deployment_configuration = Some(pb::DeploymentConfiguration {
        minimum_healthy_percent: 100,
        maximum_percent: 150,
        minimum_healthy_percent_set: true,
        maximum_percent_set: true,
        ..Default::default()
    });
    let p = decide(&s, &tasks, &instances, &["a", "b"]);
    assert_eq!(p.start, Start::Count(2));
    assert!(p.stop.is_empty());
}

#[test]
fn a_deleted_service_stops_everything() {
    let instances = [instance("a", "ACTIVE")];
    let mut s = service(2);
    s.status = DRAINING_SERVICE.into();
    let tasks = [
        task("t1", "a", TaskStatus::Running),
        task("t2", "a", TaskStatus::Running),
    ];
    let p = decide(&s, &tasks, &instances, &["a"]);
    assert_eq!(p.stop.len(), 2);
    assert_eq!(p.start, Start::Count(0));
}

#[test]
fn a_daemon_runs_one_task_on_every_connected_active_instance() {
    let mut s = service(0);
    s.scheduling_strategy = DAEMON.into();
    let instances = [
        instance("a", "ACTIVE"),
        instance("b", "ACTIVE"),
        instance("c", "DRAINING"),
        instance("d", "ACTIVE"),
    ];
    let tasks = [
        task("on-a", "a", TaskStatus::Running),
        task("twice-a", "a", TaskStatus::Pending),
        task("on-c", "c", TaskStatus::Running),
    ];
    // d is not connected: nothing starts there.
    let p = decide(&s, &tasks, &instances, &["a", "b", "c"]);
    assert_eq!(p.start, Start::On(vec!["b".into()]));
    let mut stopped = stopped_ids(&p);
    stopped.sort_unstable();
    assert_eq!(stopped, vec!["on-c", "twice-a"]);
    assert_eq!(p.daemon_desired, Some(2));
}

pub(super) fn store_with_instances(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    store
        .register_task_definition(pb::TaskDefinition {
            family: "web".into(),
            containers: vec![pb::ContainerDefinition {
                name: "app".into(),
                image: "busybox".into(),
                cpu: 256,
                memory_mib: 256,
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("register definition");
    let ids = (0..n)
        .map(|i| {
            store
                .register_instance(&pb::RegisterRequest {
                    cluster: DEFAULT_CLUSTER.into(),
                    instance_identity: format!("host-{i}"),
                    resources: Some(pb::Resources {
                        cpu: 1024,
                        memory_mib: 1024,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .expect("register instance")
        })
        .collect();
    (dir, store, ids)
}

fn create(store: &Store, desired: u32, strategy: &str) -> pb::Service {
    store
        .create_service(
            DEFAULT_CLUSTER,
            pb::Service {
                service_name: "web".into(),
                task_definition: "web".into(),
                desired_count: desired,
                scheduling_strategy: strategy.into(),
                ..Default::default()
            },
            "test",
        )
        .expect("create service")
}

fn step(store: &Store, up: &[String]) -> Reconciled {
    let up: HashSet<String> = up.iter().cloned().collect();
    store
        .reconcile_service(
            DEFAULT_CLUSTER,
            "web",
            &up,
            &BTreeMap::new(),
            SystemTime::now(),
        )
        .expect("step")
}

fn live(store: &Store) -> Vec<pb::Task> {
    store
        .list_tasks(DEFAULT_CLUSTER, None, None)
        .expect("list")
        .into_iter()
        .filter(is_live)
        .collect()
}

#[test]
fn a_step_creates_the_tasks_once_even_across_a_reopened_store() {
    let (dir, store, ids) = store_with_instances(2);
    let created = create(&store, 3, "");
    assert_eq!(created.task_definition, "web:1");
    assert_eq!(created.scheduling_strategy, REPLICA);
    let done = step(&store, &ids);
    assert_eq!(done.started.len(), 3);
    assert!(
        done.started
            .iter()
            .all(|t| t.started_by == created.deployments[0].id && t.group == "service:web")
    );
    assert!(created.deployments[0].id.starts_with("ecs-svc/"));
    assert_eq!(created.deployments[0].id.len(), "ecs-svc/".len() + 19);
    assert_eq!(done.events.len(), 1);
    assert!(done.events[0].starts_with("(service web) has started 3 tasks: (task "));
    // Again: nothing more.
    assert_eq!(step(&store, &ids), Reconciled::default());
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(step(&store, &ids), Reconciled::default());
    assert_eq!(live(&store).len(), 3);
    let (services, missing) = store
        .describe_services(DEFAULT_CLUSTER, &["web".into(), "nope".into()])
        .expect("describe");
    assert_eq!(missing, vec!["nope".to_owned()]);
    assert_eq!(services[0].pending_count, 3);
    assert_eq!(services[0].running_count, 0);
}

#[test]
fn what_does_not_fit_is_an_event_naming_the_closest_instance() {
    let (_dir, store, ids) = store_with_instances(1);
    create(&store, 5, "");
    let done = step(&store, &ids);
    // 1024 MiB over 256 MiB tasks: four fit.
    assert_eq!(done.started.len(), 4);
    let unable = done
        .events
        .iter()
        .find(|e| e.contains("was unable to place a task"))
        .expect("an unable-to-place event");
    assert!(
        unable.contains(&format!("(container-instance {}) has insufficient", ids[0])),
        "{unable}"
    );
    // Not repeated while nothing changes.
    let again = step(&store, &ids);
    assert!(again.events.is_empty(), "{again:?}");
    // No connected instance at all.
    store
        .update_service(
            DEFAULT_CLUSTER,
            "web",
            ServiceUpdate {
                desired_count: Some(6),
                ..Default::default()
            },
        )
        .expect("update");
    let done = step(&store, &[]);
    assert!(
        done.events[0].contains("No Container Instances were found"),
        "{:?}",
        done.events
    );
}

#[test]
fn delete_needs_force_above_zero_and_ends_inactive() {
    let (_dir, store, ids) = store_with_instances(1);
    create(&store, 1, "");
    step(&store, &ids);
    let refused = store
        .delete_service(DEFAULT_CLUSTER, "web", false)
        .unwrap_err();
    assert!(refused.to_string().contains("--force"), "{refused}");
    let deleted = store
        .delete_service(DEFAULT_CLUSTER, "web", true)
        .expect("delete");
    assert_eq!(deleted.status, DRAINING_SERVICE);
    let done = step(&store, &ids);
    assert_eq!(done.stopped.len(), 1);
    // The task reported STOPPED by its host: the service is INACTIVE and its name free.
    let tasks = store.list_tasks(DEFAULT_CLUSTER, None, None).expect("list");
    assert_eq!(tasks[0].desired_status, DesiredStatus::Stopped as i32);
    assert!(
        store
            .list_services(DEFAULT_CLUSTER, None)
            .expect("list")
            .len()
            == 1
    );
    let exists = store
        .create_service(
            DEFAULT_CLUSTER,
            pb::Service {
                service_name: "web".into(),
                task_definition: "web".into(),
                ..Default::default()
            },
            "test",
        )
        .unwrap_err();
    assert!(exists.to_string().contains("already exists"), "{exists}");
}

#[test]
fn bad_input_is_refused_with_what_to_change() {
    let (_dir, store, _ids) = store_with_instances(0);
    let bad = |s: pb::Service| {
        store
            .create_service(DEFAULT_CLUSTER, s, "test")
            .unwrap_err()
            .to_string()
    };
    let base = pb::Service {
        service_name: "web".into(),
        task_definition: "web".into(),
        ..Default::default()
    };
    assert!(
        bad(pb::Service {
            service_name: "no spaces".into(),
            ..base.clone()
        })
        .contains("invalid service name")
    );
    assert!(
        bad(pb::Service {
            scheduling_strategy: "EVERYWHERE".into(),
            ..base.clone()
        })
        .contains("neither REPLICA nor DAEMON")
    );
    assert!(
        bad(pb::Service {
            deployment_configuration: Some(pb::DeploymentConfiguration {
                maximum_percent: 50,
                maximum_percent_set: true,
                ..Default::default()
            }),
            ..base.clone()
        })
        .contains("maximumPercent 50 is below 100")
    );
    assert!(
        bad(pb::Service {
            placement_constraints: vec![pb::PlacementConstraint {
                r#type: "memberOf".into(),
                expression: String::new(),
            }],
            ..base.clone()
        })
        .contains("needs an expression")
    );
    assert!(
        bad(pb::Service {
            task_definition: "nosuch".into(),
            ..base
        })
        .contains("nosuch")
    );
}

#[test]
fn one_step_keeps_distinct_instance_and_spread_among_the_tasks_it_places() {
    let (_dir, store, ids) = store_with_instances(3);
    let service = |name: &str, desired, constraint: &str, strategy: &str| pb::Service {
        service_name: name.into(),
        task_definition: "web".into(),
        desired_count: desired,
        placement_constraints: (!constraint.is_empty())
            .then(|| pb::PlacementConstraint {
                r#type: constraint.into(),
                expression: String::new(),
            })
            .into_iter()
            .collect(),
        placement_strategy: (!strategy.is_empty())
            .then(|| pb::PlacementStrategy {
                r#type: "spread".into(),
                field: strategy.into(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let up: HashSet<String> = ids.iter().cloned().collect();
    let step = |name: &str| {
        store
            .reconcile_service(
                DEFAULT_CLUSTER,
                name,
                &up,
                &BTreeMap::new(),
                SystemTime::now(),
            )
            .expect("step")
    };
    let on = |done: &Reconciled| -> BTreeMap<String, usize> {
        let mut on = BTreeMap::new();
        for t in &done.started {
            *on.entry(t.container_instance_id.clone()).or_default() += 1;
        }
        on
    };
    // Three tasks placed in one step land on three instances; a fourth has nowhere to go.
    store
        .create_service(
            DEFAULT_CLUSTER,
            service("distinct", 4, "distinctInstance", ""),
            "test",
        )
        .expect("create");
    let done = step("distinct");
    assert_eq!(done.started.len(), 3, "{done:?}");
    assert!(on(&done).values().all(|n| *n == 1), "{done:?}");
    assert!(done.started.iter().all(|t| t.group == "service:distinct"));
    // Spread over instances in one step: two on each of the three.
    store
        .create_service(
            DEFAULT_CLUSTER,
            service("spread", 6, "", "instanceId"),
            "test",
        )
        .expect("create");
    let done = step("spread");
    assert_eq!(done.started.len(), 6, "{done:?}");
    assert_eq!(on(&done).len(), 3, "{done:?}");
    assert!(on(&done).values().all(|n| *n == 2), "{done:?}");
}

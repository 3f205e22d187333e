//! Unit tests of the store on a tempdir database.

use std::collections::HashSet;

use berth_proto::v1::{self as pb, TaskStatus, scheduler_message};

use super::codec::get_rec;
use super::definitions::parse_reference;
use super::records::InstanceRecord;
use super::views::task_size;
use super::*;

fn def(family: &str, cpu: u32, memory_mib: u64) -> pb::TaskDefinition {
    pb::TaskDefinition {
        family: family.into(),
        containers: vec![pb::ContainerDefinition {
            name: "app".into(),
            image: "nginx".into(),
            cpu,
            memory_mib,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn register(store: &Store, identity: &str, cpu: u64, memory_mib: u64) -> String {
    store
        .register_instance(&pb::RegisterRequest {
            cluster: DEFAULT_CLUSTER.into(),
            instance_identity: identity.into(),
            resources: Some(pb::Resources {
                cpu,
                memory_mib,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap()
}

fn run(store: &Store, family: &str, connected: &[&str]) -> Result<Vec<pb::Task>, StoreError> {
    let connected: HashSet<String> = connected.iter().map(|s| s.to_string()).collect();
    store.run_tasks(
        RunTasks {
            cluster: DEFAULT_CLUSTER,
            task_definition: family,
            count: 1,
            started_by: "",
            group: "",
            network_attachment: None,
            container_instance: None,
            storage_degraded: None,
            placement_constraints: &[],
            placement_strategy: &[],
        },
        &connected,
    )
}

fn state(task_id: &str, status: TaskStatus) -> pb::TaskState {
    pb::TaskState {
        task_id: task_id.into(),
        status: status as i32,
        ..Default::default()
    }
}

#[test]
fn ids_are_version_4_uuids() {
    let id = new_id();
    assert_eq!(id.len(), 36);
    assert_eq!(id.matches('-').count(), 4);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    assert_ne!(id, new_id());
}

#[test]
fn references_parse() {
    assert_eq!(parse_reference("web").unwrap(), ("web", None));
    assert_eq!(parse_reference("web:3").unwrap(), ("web", Some(3)));
    assert!(parse_reference("web:0").is_err());
    assert!(parse_reference("web:x").is_err());
    assert!(parse_reference(":1").is_err());
    assert!(parse_reference("").is_err());
}

#[test]
fn task_size_falls_back_to_the_containers() {
    let mut d = def("f", 100, 0);
    d.containers.push(pb::ContainerDefinition {
        cpu: 28,
        memory_reservation_mib: 64,
        ..Default::default()
    });
    d.containers[0].memory_mib = 128;
    assert_eq!(task_size(&d), (128, 192));
    d.cpu = 1024;
    d.memory_mib = 2048;
    assert_eq!(task_size(&d), (1024, 2048));
}

#[test]
fn cluster_messages_read_well() {
    let e = StoreError::ClusterInUse {
        name: "prod".into(),
        instances: 2,
        active_tasks: 1,
    };
    assert_eq!(
        e.to_string(),
        "cluster prod has 2 container instances and 1 running task; stop the tasks and deregister the instances first"
    );
    let e = StoreError::ClusterInUse {
        name: "prod".into(),
        instances: 0,
        active_tasks: 3,
    };
    assert_eq!(
        e.to_string(),
        "cluster prod has 3 running tasks; stop the tasks first"
    );
}

#[test]
fn outbox_sequence_ack_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(def("web", 256, 512))
        .unwrap();
    let id = register(&store, "h", 1024, 2048);
    assert_eq!(
        store
            .open_session(DEFAULT_CLUSTER, &id, 0)
            .unwrap()
            .last_received_seq,
        0
    );
    let t1 = run(&store, "web", &[&id]).unwrap().remove(0);
    let t2 = run(&store, "web:1", &[&id]).unwrap().remove(0);
    let out = store.outbox_after(&id, 0).unwrap();
    assert_eq!(out.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
    assert!(matches!(
        &out[0].1.message,
        Some(scheduler_message::Message::Assignment(a)) if a.task_id == t1.task_id
    ));
    assert_eq!(store.ack(&id, 1).unwrap(), 1);
    assert_eq!(store.outbox_after(&id, 0).unwrap().len(), 1);

    // A hello or an ack past what was issued is refused and drops nothing.
    let err = store.open_session(DEFAULT_CLUSTER, &id, 10).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotIssued {
                got: 10,
                issued: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = store.ack(&id, 3).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotIssued {
                got: 3,
                issued: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.outbox_after(&id, 0).unwrap().len(), 1);
    store.open_session(DEFAULT_CLUSTER, &id, 2).unwrap();
    assert!(store.outbox_after(&id, 0).unwrap().is_empty());
    let (_, queued) = store.stop_task(DEFAULT_CLUSTER, &t2.task_id, "").unwrap();
    assert!(queued);
    assert_eq!(store.outbox_after(&id, 0).unwrap()[0].0, 3);

    let s = state(&t1.task_id, TaskStatus::Running);
    assert!(matches!(
        store.apply_task_state(&id, Some(1), &s).unwrap(),
        Applied::Updated(_)
    ));
    assert_eq!(
        store.apply_task_state(&id, Some(1), &s).unwrap(),
        Applied::Duplicate
    );
    let back = state(&t1.task_id, TaskStatus::Pending);
    assert_eq!(
        store.apply_task_state(&id, Some(2), &back).unwrap(),
        Applied::Unchanged
    );
    let err = store
        .apply_task_state(&id, Some(5), &state("nope", TaskStatus::Running))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SequenceGap {
                expected: 3,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store
            .apply_task_state(&id, Some(3), &state("nope", TaskStatus::Running))
            .unwrap(),
        Applied::UnknownTask
    );
    assert_eq!(
        store
            .open_session(DEFAULT_CLUSTER, &id, 0)
            .unwrap()
            .last_received_seq,
        3
    );
    let err = store.open_session(DEFAULT_CLUSTER, "ghost", 0).unwrap_err();
    assert!(matches!(err, StoreError::InstanceNotFound { .. }));
}

#[test]
fn stopped_tasks_release_resources_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    let task_id;
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .register_task_definition(def("web", 512, 2048))
            .unwrap();
        id = register(&store, "h", 1024, 2048);
        let t = run(&store, "web", &[&id]).unwrap().remove(0);
        task_id = t.task_id;
        let err = run(&store, "web", &[&id]).unwrap_err();
        assert!(matches!(err, StoreError::NoCapacity { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "no container instance in cluster default has room for 512 CPU units and 2048 MiB: \
                 the largest free capacity is 512 CPU units and 0 MiB on {id}"
            )
        );
        let mut s = state(&task_id, TaskStatus::Stopped);
        s.stopped_reason = "Essential container exited".into();
        store.apply_task_state(&id, Some(1), &s).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let (tasks, missing) = store
        .describe_tasks(DEFAULT_CLUSTER, &[task_id.clone(), "x".into()])
        .unwrap();
    assert_eq!(missing, vec!["x"]);
    assert_eq!(tasks[0].last_status, TaskStatus::Stopped as i32);
    assert_eq!(tasks[0].desired_status, pb::DesiredStatus::Stopped as i32);
    assert_eq!(tasks[0].stopped_reason, "Essential container exited");
    let inst = store.list_instances(DEFAULT_CLUSTER).unwrap().remove(0);
    assert_eq!(inst.remaining_resources.unwrap().memory_mib, 2048);
    // The host's release of the rest comes after STOPPED: kept, durably, without a new status.
    let at = prost_types::Timestamp {
        seconds: 1_795_778_400,
        nanos: 0,
    };
    let mut released = state(&task_id, TaskStatus::Stopped);
    released.resources_released_at = Some(at);
    assert!(matches!(
        store.apply_task_state(&id, Some(2), &released).unwrap(),
        Applied::Updated(_)
    ));
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let (tasks, _) = store
        .describe_tasks(DEFAULT_CLUSTER, std::slice::from_ref(&task_id))
        .unwrap();
    assert_eq!(tasks[0].last_status, TaskStatus::Stopped as i32);
    assert_eq!(tasks[0].resources_released_at, Some(at));
    assert_eq!(tasks[0].stopped_reason, "Essential container exited");
    // Room again.
    run(&store, "web", &[&id]).unwrap();
    // Not connected: no placement.
    assert!(matches!(
        run(&store, "web", &[]).unwrap_err(),
        StoreError::NoConnectedInstance { .. }
    ));
}

#[test]
fn corrupt_records_are_errors_that_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = register(&store, "h", 1024, 2048);
    store
        .write(|txn| {
            // A length-delimited field (tag 1) that claims more bytes than follow.
            txn.open_table(TASKS)?
                .insert("t-1", [0x0a, 0x05, b'x'].as_slice())?;
            // Valid protobuf, but a SchedulerMessage with no message.
            txn.open_table(OUTBOX)?
                .insert((id.as_str(), 1), [].as_slice())?;
            Ok(())
        })
        .unwrap();

    let err = store
        .describe_tasks(DEFAULT_CLUSTER, &["t-1".into()])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "tasks", key, source: RecordError::Decode(_) } if key == "t-1"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "corrupt tasks record t-1");

    let err = store.outbox_after(&id, 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "outbox", key, source: RecordError::Missing("message") } if *key == format!("{id}/1")),
        "{err:?}"
    );
}

#[test]
fn records_round_trip_through_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let registered;
    let id;
    {
        let store = Store::open(dir.path()).unwrap();
        let mut d = def("web", 256, 512);
        d.containers[0].environment = [("A".to_owned(), "1".to_owned())].into();
        d.containers[0].ulimits = vec![pb::Ulimit {
            name: "nofile".into(),
            soft_limit: 1,
            hard_limit: 2,
        }];
        d.containers[0].entry_point_set = true;
        d.source_json = "{}".into();
        registered = store.register_task_definition(d).unwrap();
        id = store
            .register_instance(&pb::RegisterRequest {
                cluster: DEFAULT_CLUSTER.into(),
                instance_identity: "h".into(),
                resources: Some(pb::Resources {
                    cpu: 1024,
                    memory_mib: 2048,
                    ports: vec![22],
                    ..Default::default()
                }),
                attributes: [("zone".to_owned(), "a".to_owned())].into(),
                version_info: Some(pb::VersionInfo {
                    agent_version: "1.0".into(),
                    containerd_version: "2.0".into(),
                }),
                capabilities: vec!["awsvpc".into()],
                ..Default::default()
            })
            .unwrap();
        store.record_heartbeat(&id).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.task_definition("web:1").unwrap(), registered);
    let inst = store.list_instances(DEFAULT_CLUSTER).unwrap().remove(0);
    assert_eq!(inst.container_instance_id, id);
    assert_eq!(inst.status, "ACTIVE");
    assert_eq!(inst.instance_identity, "h");
    assert_eq!(inst.attributes["zone"], "a");
    assert_eq!(inst.version_info.unwrap().containerd_version, "2.0");
    assert_eq!(inst.registered_resources.unwrap().ports, vec![22]);
    assert!(inst.registered_at.is_some() && inst.last_heartbeat_at.is_some());
    let rec: InstanceRecord = store
        .read(|txn| get_rec(&txn.open_table(INSTANCES)?, "instances", &id))
        .unwrap()
        .unwrap();
    assert_eq!(rec.capabilities, vec!["awsvpc"]);
    assert_eq!(store.list_clusters().unwrap(), vec![DEFAULT_CLUSTER]);
}

#[test]
fn stopped_tasks_are_forgotten_after_the_retention_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(def("web", 256, 256))
        .unwrap();
    let id = register(&store, "h", 2048, 4096);
    let old = run(&store, "web", &[&id]).unwrap().remove(0).task_id;
    let running = run(&store, "web", &[&id]).unwrap().remove(0).task_id;
    let mut s = state(&old, TaskStatus::Stopped);
    s.stopped_at = Some(prost_types::Timestamp {
        seconds: 1_000,
        nanos: 0,
    });
    store.apply_task_state(&id, Some(1), &s).unwrap();
    // A cutoff before the stop keeps it; one after forgets it; running tasks always stay.
    let before = std::time::UNIX_EPOCH + std::time::Duration::from_secs(500);
    assert_eq!(store.prune_stopped_tasks(before).unwrap(), 0);
    assert_eq!(
        store
            .prune_stopped_tasks(std::time::SystemTime::now())
            .unwrap(),
        1
    );
    let (found, missing) = store
        .describe_tasks(DEFAULT_CLUSTER, &[old.clone(), running.clone()])
        .unwrap();
    assert_eq!(missing, vec![old]);
    assert_eq!(found[0].task_id, running);
}

/// `def` in `network_mode` with its container mapping (container port, host port, protocol).
fn with_ports(
    mut d: pb::TaskDefinition,
    network_mode: &str,
    mappings: &[(u32, u32, &str)],
) -> pb::TaskDefinition {
    d.network_mode = network_mode.into();
    d.containers[0].port_mappings = mappings
        .iter()
        .map(|&(container_port, host_port, protocol)| pb::PortMapping {
            container_port,
            host_port,
            protocol: protocol.into(),
        })
        .collect();
    d
}

fn run_n(
    store: &Store,
    family: &str,
    count: u32,
    attachment: Option<&pb::NetworkAttachment>,
    connected: &[&str],
) -> Result<Vec<pb::Task>, StoreError> {
    let connected: HashSet<String> = connected.iter().map(|s| s.to_string()).collect();
    store.run_tasks(
        RunTasks {
            cluster: DEFAULT_CLUSTER,
            task_definition: family,
            count,
            started_by: "",
            group: "",
            network_attachment: attachment,
            container_instance: None,
            storage_degraded: None,
            placement_constraints: &[],
            placement_strategy: &[],
        },
        &connected,
    )
}

fn register_with_ports(store: &Store, identity: &str, tcp: &[u32], udp: &[u32]) -> String {
    store
        .register_instance(&pb::RegisterRequest {
            cluster: DEFAULT_CLUSTER.into(),
            instance_identity: identity.into(),
            resources: Some(pb::Resources {
                cpu: 4096,
                memory_mib: 8192,
                ports: tcp.to_vec(),
                udp_ports: udp.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap()
}

/// The remaining (taken) TCP and UDP ports of an instance.
fn taken(store: &Store, id: &str) -> (Vec<u32>, Vec<u32>) {
    let (mut found, _) = store
        .describe_instances(DEFAULT_CLUSTER, &[id.to_owned()])
        .unwrap();
    let r = found.remove(0).remaining_resources.unwrap();
    (r.ports, r.udp_ports)
}

fn binding(container_port: u32, host_port: u32, protocol: &str) -> pb::NetworkBinding {
    pb::NetworkBinding {
        bind_ip: "0.0.0.0".into(),
        container_port,
        host_port,
        protocol: protocol.into(),
    }
}

#[test]
fn fixed_host_ports_place_one_task_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(with_ports(
            def("web", 256, 256),
            "bridge",
            &[(80, 8080, "tcp"), (81, 0, "tcp")],
        ))
        .unwrap();
    let a = register_with_ports(&store, "a", &[22], &[]);
    let b = register_with_ports(&store, "b", &[22, 2375], &[]);
    // Three need three instances: the third sees the first two's ports in the same request.
    let err = run_n(&store, "web", 3, None, &[&a, &b]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no container instance in cluster default has host port 8080/tcp free (taken on all 2 \
         connected instances; only 2 of the 3 tasks fit, none was started)"
    );
    let tasks = run_n(&store, "web", 2, None, &[&a, &b]).unwrap();
    assert_ne!(
        tasks[0].container_instance_id,
        tasks[1].container_instance_id
    );
    assert_eq!(tasks[0].network_mode, "bridge");
    assert_eq!(taken(&store, &a), (vec![22, 8080], vec![]));
    assert_eq!(taken(&store, &b), (vec![22, 2375, 8080], vec![]));
    let err = run(&store, "web", &[&a, &b]).unwrap_err();
    assert!(matches!(err, StoreError::NoFreePort { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no container instance in cluster default has host port 8080/tcp free (taken on all 2 \
         connected instances)"
    );
    // A stopped task gives its ports back.
    let on_a = tasks.iter().find(|t| t.container_instance_id == a).unwrap();
    store
        .apply_task_state(&a, Some(1), &state(&on_a.task_id, TaskStatus::Stopped))
        .unwrap();
    assert_eq!(taken(&store, &a), (vec![22], vec![]));
    assert_eq!(
        run(&store, "web", &[&a, &b]).unwrap()[0].container_instance_id,
        a
    );
}

#[test]
fn reported_bindings_and_registered_ports_are_taken_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(with_ports(
            def("dyn", 256, 256),
            "bridge",
            &[(80, 0, "tcp"), (53, 0, "udp")],
        ))
        .unwrap();
    store
        .register_task_definition(with_ports(
            def("dns", 256, 256),
            "host",
            &[(53, 53, "udp"), (53, 53, "tcp")],
        ))
        .unwrap();
    let id = register_with_ports(&store, "h", &[22], &[53]);
    let other = register_with_ports(&store, "o", &[53], &[]);
    // Each instance has one of the two ports taken.
    assert_eq!(
        run(&store, "dns", &[&id, &other]).unwrap_err().to_string(),
        "no container instance in cluster default has host ports 53/udp, 53/tcp free (all 2 \
         connected instances have one or more of them taken)"
    );
    // Operator-reserved 53/udp: the host-mode DNS task cannot run here.
    assert_eq!(
        run(&store, "dns", &[&id]).unwrap_err().to_string(),
        "no container instance in cluster default has host port 53/udp free (taken on the only \
         connected instance)"
    );
    let t = run(&store, "dyn", &[&id]).unwrap().remove(0);
    // Dynamic ports are taken once the agent reports them bound.
    assert_eq!(taken(&store, &id), (vec![22], vec![53]));
    let mut s = state(&t.task_id, TaskStatus::Running);
    s.containers = vec![pb::ContainerState {
        name: "app".into(),
        network_bindings: vec![binding(80, 49153, "tcp"), binding(53, 49154, "udp")],
        private_ipv4_address: "172.31.0.2".into(),
        ..Default::default()
    }];
    store.apply_task_state(&id, Some(1), &s).unwrap();
    assert_eq!(taken(&store, &id), (vec![22, 49153], vec![53, 49154]));
    let (tasks, _) = store
        .describe_tasks(DEFAULT_CLUSTER, std::slice::from_ref(&t.task_id))
        .unwrap();
    assert_eq!(tasks[0].containers, s.containers);
    // STOPPED holds nothing.
    store
        .apply_task_state(&id, Some(2), &state(&t.task_id, TaskStatus::Stopped))
        .unwrap();
    assert_eq!(taken(&store, &id), (vec![22], vec![53]));
}

#[test]
fn host_mode_takes_its_ports_and_awsvpc_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(with_ports(
            def("host", 256, 256),
            "host",
            &[(80, 80, "tcp")],
        ))
        .unwrap();
    store
        .register_task_definition(with_ports(
            def("vpc", 256, 256),
            "awsvpc",
            &[(80, 80, "tcp")],
        ))
        .unwrap();
    let id = register_with_ports(&store, "h", &[], &[]);
    // awsvpc tasks have their own address: any number of them map port 80.
    let vpc = run_n(&store, "vpc", 1, None, &[&id]).unwrap();
    run_n(&store, "vpc", 1, None, &[&id]).unwrap();
    assert_eq!(vpc[0].network_mode, "awsvpc");
    assert_eq!(taken(&store, &id), (vec![], vec![]));
    run(&store, "host", &[&id]).unwrap();
    assert_eq!(taken(&store, &id), (vec![80], vec![]));
    assert_eq!(
        run(&store, "host", &[&id]).unwrap_err().to_string(),
        "no container instance in cluster default has host port 80/tcp free (taken on the only \
         connected instance)"
    );
    // Room still decides when the ports are free somewhere.
    store
        .register_task_definition(with_ports(
            def("huge", 256, 100_000),
            "host",
            &[(81, 81, "tcp")],
        ))
        .unwrap();
    assert!(matches!(
        run(&store, "huge", &[&id]).unwrap_err(),
        StoreError::NoCapacity { .. }
    ));
}

fn eni() -> pb::NetworkAttachment {
    pb::NetworkAttachment {
        mac_address: "0A:58:0A:01:00:05".into(),
        private_ipv4_address: "10.1.0.5".into(),
        subnet: "10.1.0.0/24".into(),
        gateway: "10.1.0.1".into(),
        interface_name: String::new(),
    }
}

#[test]
fn a_network_attachment_is_delivered_with_the_assignment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    let task_id;
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .register_task_definition(with_ports(def("vpc", 256, 256), "awsvpc", &[]))
            .unwrap();
        id = register(&store, "h", 1024, 2048);
        task_id = run_n(&store, "vpc", 1, Some(&eni()), &[&id]).unwrap()[0]
            .task_id
            .clone();
        // Without one, the agent gives the task a veth on its bridge.
        run_n(&store, "vpc", 1, None, &[&id]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let out = store.outbox_after(&id, 0).unwrap();
    let assignments: Vec<&pb::TaskAssignment> = out
        .iter()
        .filter_map(|(_, m)| match &m.message {
            Some(scheduler_message::Message::Assignment(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(assignments[0].task_id, task_id);
    assert_eq!(
        assignments[0].network_attachment,
        Some(pb::NetworkAttachment {
            mac_address: "0a:58:0a:01:00:05".into(),
            ..eni()
        })
    );
    assert_eq!(
        assignments[0].definition.as_ref().unwrap().network_mode,
        "awsvpc"
    );
    assert_eq!(assignments[1].network_attachment, None);
}

#[test]
fn a_network_attachment_needs_awsvpc_one_task_and_good_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(def("web", 256, 256))
        .unwrap();
    store
        .register_task_definition(with_ports(def("vpc", 256, 256), "awsvpc", &[]))
        .unwrap();
    let id = register(&store, "h", 4096, 8192);
    let err = run_n(&store, "web", 1, Some(&eni()), &[&id]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a network attachment is for a task definition in networkMode awsvpc; web:1 is in \
         networkMode bridge"
    );
    assert_eq!(
        run_n(&store, "vpc", 2, Some(&eni()), &[&id])
            .unwrap_err()
            .to_string(),
        "a network attachment is one ENI for one task: run 1 task, not 2"
    );
    let bad = pb::NetworkAttachment {
        gateway: "10.9.0.1".into(),
        ..eni()
    };
    let err = run_n(&store, "vpc", 1, Some(&bad), &[&id]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NetworkAttachment(AttachmentError::OutsideSubnet { .. })
        ),
        "{err:?}"
    );
    // Nothing was placed.
    assert!(
        store
            .list_tasks(DEFAULT_CLUSTER, None, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn reported_attachments_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(with_ports(def("vpc", 256, 256), "awsvpc", &[]))
        .unwrap();
    let id = register(&store, "h", 1024, 2048);
    let t = run(&store, "vpc", &[&id]).unwrap().remove(0);
    assert!(t.attachments.is_empty());
    let reported = pb::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:05".into(),
        private_ipv4_address: "172.31.0.9".into(),
        subnet: "172.31.0.0/16".into(),
        gateway: "172.31.0.1".into(),
        interface_name: "eth0".into(),
    };
    let mut s = state(&t.task_id, TaskStatus::Running);
    s.attachments = vec![reported.clone()];
    let Applied::Updated(task) = store.apply_task_state(&id, Some(1), &s).unwrap() else {
        panic!("not updated");
    };
    assert_eq!(task.attachments, std::slice::from_ref(&reported));
    assert_eq!(task.network_mode, "awsvpc");
    // A later report without the interface (torn down) keeps the last one known.
    store
        .apply_task_state(&id, Some(2), &state(&t.task_id, TaskStatus::Stopped))
        .unwrap();
    let (tasks, _) = store
        .describe_tasks(DEFAULT_CLUSTER, std::slice::from_ref(&t.task_id))
        .unwrap();
    assert_eq!(tasks[0].attachments, [reported]);
}

#[test]
fn an_eni_in_use_is_refused_until_its_task_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(with_ports(def("vpc", 256, 256), "awsvpc", &[]))
        .unwrap();
    let id = register(&store, "h", 4096, 8192);
    let t = run_n(&store, "vpc", 1, Some(&eni()), &[&id])
        .unwrap()
        .remove(0);
    // Shown as asked for until the agent reports what the task got.
    assert_eq!(t.attachments[0].mac_address, "0a:58:0a:01:00:05");
    let same_mac = pb::NetworkAttachment {
        private_ipv4_address: "10.1.0.6".into(),
        ..eni()
    };
    let err = run_n(&store, "vpc", 1, Some(&same_mac), &[&id]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "network attachment: the ENI 0a:58:0a:01:00:05 is in use by task {}; stop it first \
             or use another ENI",
            t.task_id
        )
    );
    store
        .apply_task_state(&id, Some(1), &state(&t.task_id, TaskStatus::Stopped))
        .unwrap();
    run_n(&store, "vpc", 1, Some(&same_mac), &[&id]).unwrap();
}

#[test]
fn tasks_can_be_pinned_to_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_task_definition(def("web", 256, 256))
        .unwrap();
    let roomy = register(&store, "a", 4096, 8192);
    let full = register(&store, "b", 1024, 1024);
    let pinned = |id: &str, connected: &[&str]| {
        let connected: HashSet<String> = connected.iter().map(|s| s.to_string()).collect();
        store.run_tasks(
            RunTasks {
                cluster: DEFAULT_CLUSTER,
                task_definition: "web",
                count: 2,
                started_by: "",
                group: "",
                network_attachment: None,
                container_instance: Some(id),
                storage_degraded: None,
                placement_constraints: &[],
                placement_strategy: &[],
            },
            &connected,
        )
    };
    // BINPACK would pick the fuller instance; the pin wins.
    let tasks = pinned(&roomy, &[&roomy, &full]).unwrap();
    assert!(tasks.iter().all(|t| t.container_instance_id == roomy));
    assert_eq!(
        pinned("nope", &[&roomy]).unwrap_err().to_string(),
        "unknown container instance nope in cluster default; register first"
    );
    assert_eq!(
        pinned(&full, &[&roomy]).unwrap_err().to_string(),
        format!(
            "container instance {full} in cluster default cannot take tasks: its agent is not \
             connected; run the task elsewhere or without --container-instance"
        )
    );
}

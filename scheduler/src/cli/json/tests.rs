//! The JSON berthctl prints, field by field, against ECS's shapes.

use super::definition::ContainerDefinition;
use super::*;
use prost_types::Timestamp;
use serde_json::json;

fn at(seconds: i64, millis: i32) -> Option<Timestamp> {
    Some(Timestamp {
        seconds,
        nanos: millis * 1_000_000,
    })
}

#[test]
fn task_json() {
    let task = proto::Task {
        task_id: "t-1".into(),
        cluster: "default".into(),
        task_definition: "web:3".into(),
        container_instance_id: "i-1".into(),
        last_status: proto::TaskStatus::Stopped as i32,
        desired_status: proto::DesiredStatus::Stopped as i32,
        cpu: 256,
        memory_mib: 512,
        created_at: at(1_795_778_400, 123),
        pull_started_at: at(1_795_778_401, 0),
        pull_stopped_at: at(1_795_778_402, 0),
        started_at: at(1_795_778_403, 0),
        stopping_at: at(1_795_778_404, 0),
        stopped_at: at(1_795_778_405, 500),
        stop_code: proto::StopCode::EssentialContainerExited as i32,
        stopped_reason: "Essential container in task exited".into(),
        containers: vec![
            proto::ContainerState {
                name: "app".into(),
                status: proto::ContainerStatus::Stopped as i32,
                exit_code: Some(137),
                reason: "OOMKilled".into(),
                runtime_id: "t-1.app".into(),
                image: "nginx:1".into(),
                image_digest: "sha256:abc".into(),
                oom_killed: true,
                restart_count: 2,
                health_status: proto::HealthStatus::Unhealthy as i32,
                ..Default::default()
            },
            proto::ContainerState {
                name: "side".into(),
                status: proto::ContainerStatus::Pending as i32,
                ..Default::default()
            },
        ],
        started_by: "berthctl".into(),
        group: "family:web".into(),
        health_status: proto::HealthStatus::Unhealthy as i32,
        ..Default::default()
    };
    let json = serde_json::to_value(Tasks {
        tasks: vec![Task::from(&task)],
        failures: failures(&[proto::Failure {
            arn: "t-2".into(),
            reason: "MISSING".into(),
        }]),
        notes: Vec::new(),
    })
    .unwrap();
    assert_eq!(
        json,
        json!({
            "tasks": [{
                "taskId": "t-1",
                "taskDefinition": "web:3",
                "lastStatus": "STOPPED",
                "desiredStatus": "STOPPED",
                "containerInstanceId": "i-1",
                "cpu": "256",
                "memory": "512",
                "startedBy": "berthctl",
                "group": "family:web",
                "createdAt": "2026-11-27T11:20:00.123Z",
                "pullStartedAt": "2026-11-27T11:20:01.000Z",
                "pullStoppedAt": "2026-11-27T11:20:02.000Z",
                "startedAt": "2026-11-27T11:20:03.000Z",
                "stoppingAt": "2026-11-27T11:20:04.000Z",
                "stoppedAt": "2026-11-27T11:20:05.500Z",
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "healthStatus": "UNHEALTHY",
                "containers": [
                    {
                        "name": "app",
                        "lastStatus": "STOPPED",
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "runtimeId": "t-1.app",
                        "image": "nginx:1",
                        "imageDigest": "sha256:abc",
                        "restartCount": 2,
                        "healthStatus": "UNHEALTHY"
                    },
                    {"name": "side", "lastStatus": "PENDING", "healthStatus": "UNKNOWN"}
                ]
            }],
            "failures": [{"arn": "t-2", "reason": "MISSING"}]
        })
    );
    // A fresh task: no nulls, absent times left out; no failures key for list calls.
    let fresh = proto::Task {
        task_id: "t-3".into(),
        task_definition: "web:3".into(),
        last_status: proto::TaskStatus::Provisioning as i32,
        desired_status: proto::DesiredStatus::Running as i32,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&Tasks {
            tasks: vec![Task::from(&fresh)],
            failures: None,
            notes: Vec::new(),
        })
        .unwrap(),
        r#"{"tasks":[{"taskId":"t-3","taskDefinition":"web:3","lastStatus":"PROVISIONING","desiredStatus":"RUNNING","healthStatus":"UNKNOWN","containers":[]}]}"#
    );
    // run-task with a definition given as JSON: its registration notes, as register shows them.
    let ran = serde_json::to_value(
        Tasks::of(std::slice::from_ref(&fresh), None).with_notes(&["ignored `status`".into()]),
    )
    .unwrap();
    assert_eq!(ran["notes"], json!(["ignored `status`"]));
    assert_eq!(ran["tasks"][0]["taskId"], "t-3");
}

#[test]
fn task_network_json() {
    let bridge = proto::Task {
        task_id: "t-1".into(),
        task_definition: "web:1".into(),
        last_status: proto::TaskStatus::Running as i32,
        desired_status: proto::DesiredStatus::Running as i32,
        network_mode: "bridge".into(),
        containers: vec![proto::ContainerState {
            name: "app".into(),
            status: proto::ContainerStatus::Running as i32,
            network_bindings: vec![proto::NetworkBinding {
                bind_ip: "0.0.0.0".into(),
                container_port: 80,
                host_port: 49153,
                protocol: "tcp".into(),
            }],
            private_ipv4_address: "172.17.0.2".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(Task::from(&bridge)).unwrap(),
        json!({
            "taskId": "t-1",
            "taskDefinition": "web:1",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "healthStatus": "UNKNOWN",
            "networkMode": "bridge",
            "containers": [{
                "name": "app",
                "lastStatus": "RUNNING",
                "healthStatus": "UNKNOWN",
                "networkBindings": [
                    {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"}
                ],
                "networkInterfaces": [{"privateIpv4Address": "172.17.0.2"}]
            }]
        })
    );
    let awsvpc = proto::Task {
        task_id: "t-2".into(),
        task_definition: "vpc:1".into(),
        last_status: proto::TaskStatus::Running as i32,
        desired_status: proto::DesiredStatus::Running as i32,
        network_mode: "awsvpc".into(),
        attachments: vec![proto::NetworkAttachment {
            mac_address: "0a:58:0a:01:00:05".into(),
            private_ipv4_address: "10.1.0.5".into(),
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            interface_name: "eth0".into(),
        }],
        containers: vec![proto::ContainerState {
            name: "app".into(),
            status: proto::ContainerStatus::Running as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(Task::from(&awsvpc)).unwrap(),
        json!({
            "taskId": "t-2",
            "taskDefinition": "vpc:1",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "healthStatus": "UNKNOWN",
            "networkMode": "awsvpc",
            "attachments": [{
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [
                    {"name": "macAddress", "value": "0a:58:0a:01:00:05"},
                    {"name": "privateIPv4Address", "value": "10.1.0.5"},
                    {"name": "subnet", "value": "10.1.0.0/24"},
                    {"name": "gateway", "value": "10.1.0.1"},
                    {"name": "interfaceName", "value": "eth0"}
                ]
            }],
            "containers": [{
                "name": "app",
                "lastStatus": "RUNNING",
                "healthStatus": "UNKNOWN",
                "networkInterfaces": [{"privateIpv4Address": "10.1.0.5"}]
            }]
        })
    );
    let mut asked = awsvpc.clone();
    asked.attachments[0].interface_name.clear();
    assert_eq!(
        serde_json::to_value(Task::from(&asked)).unwrap()["attachments"][0]["status"],
        "PRECREATED",
        "asked for, not reported yet"
    );
    let gone = proto::Task {
        last_status: proto::TaskStatus::Stopped as i32,
        resources_released_at: Some(prost_types::Timestamp {
            seconds: 1_795_778_400,
            nanos: 0,
        }),
        ..awsvpc
    };
    let json = serde_json::to_value(Task::from(&gone)).unwrap();
    assert_eq!(json["lastStatus"], "STOPPED");
    assert_eq!(json["attachments"][0]["status"], "DELETED");
    assert_eq!(json["resourcesReleasedAt"], "2026-11-27T11:20:00.000Z");
}

#[test]
fn container_instance_json() {
    let instance = proto::ContainerInstance {
        container_instance_id: "i-1".into(),
        cluster: "default".into(),
        status: "ACTIVE".into(),
        agent_connected: true,
        registered_resources: Some(proto::Resources {
            cpu: 2048,
            memory_mib: 3768,
            cpu_millicores: 2000,
            cores: 2,
            ports: vec![22],
            ..Default::default()
        }),
        remaining_resources: Some(proto::Resources {
            cpu: 1024,
            memory_mib: 3256,
            ports: vec![22, 80],
            udp_ports: vec![53],
            ..Default::default()
        }),
        attributes: [("ecs.os-type", "linux"), ("ecs.cpu-architecture", "x86_64")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        running_tasks_count: 1,
        pending_tasks_count: 2,
        version_info: Some(proto::VersionInfo {
            agent_version: "0.1.0".into(),
            containerd_version: "2.1.4".into(),
        }),
        registered_at: at(1_795_778_400, 0),
        last_heartbeat_at: at(1_795_778_460, 0),
        instance_identity: "machine-1".into(),
        health: None,
        health_at: None,
        measured: None,
    };
    let json = serde_json::to_value(ContainerInstances {
        container_instances: vec![ContainerInstance::from(&instance)],
        failures: None,
    })
    .unwrap();
    assert_eq!(
        json,
        json!({"containerInstances": [{
            "containerInstanceId": "i-1",
            "status": "ACTIVE",
            "agentConnected": true,
            "registeredResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 3768},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
            ],
            "remainingResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 3256},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "80"]},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": ["53"]}
            ],
            "attributes": [
                {"name": "ecs.cpu-architecture", "value": "x86_64"},
                {"name": "ecs.os-type", "value": "linux"}
            ],
            "runningTasksCount": 1,
            "pendingTasksCount": 2,
            "versionInfo": {"agentVersion": "0.1.0", "containerdVersion": "2.1.4"},
            "registeredAt": "2026-11-27T11:20:00.000Z"
        }]})
    );
}

#[test]
fn cluster_json() {
    let cluster = proto::Cluster {
        name: "default".into(),
        status: "ACTIVE".into(),
        registered_container_instances_count: 2,
        running_tasks_count: 3,
        pending_tasks_count: 1,
        created_at: at(1_795_778_400, 0),
    };
    assert_eq!(
        serde_json::to_string(&Clusters {
            clusters: vec![Cluster::from(&cluster)],
            failures: failures(&[])
        })
        .unwrap(),
        r#"{"clusters":[{"clusterName":"default","status":"ACTIVE","registeredContainerInstancesCount":2,"runningTasksCount":3,"pendingTasksCount":1}],"failures":[]}"#
    );
}

#[test]
fn task_definition_json() {
    let def = crate::taskdef::parse(
        r#"{"family":"web","cpu":"256","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
            "entryPoint":["/docker-entrypoint.sh"],"environment":[{"name":"B","value":"2"},{"name":"A","value":"1"}],
            "ulimits":[{"name":"nofile","softLimit":1,"hardLimit":2}],
            "portMappings":[{"containerPort":80},{"containerPort":53,"hostPort":5353,"protocol":"udp"}],
            "links":["db:database"]},
            {"name":"db","image":"postgres","memory":64}]}"#,
    )
    .unwrap();
    let def = proto::TaskDefinition {
        revision: 4,
        registered_at: at(1_795_778_400, 0),
        ..def
    };
    assert_eq!(
        serde_json::to_value(OneTaskDefinition {
            task_definition: TaskDefinition::from(&def)
        })
        .unwrap(),
        json!({"taskDefinition": {
            "family": "web",
            "revision": 4,
            "cpu": "256",
            "networkMode": "bridge",
            "registeredAt": "2026-11-27T11:20:00.000Z",
            "containerDefinitions": [{
                "name": "app",
                "image": "nginx",
                "memory": 64,
                "essential": true,
                "entryPoint": ["/docker-entrypoint.sh"],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ulimits": [{"name": "nofile", "softLimit": 1, "hardLimit": 2}],
                "portMappings": [
                    {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}
                ],
                "links": ["db:database"]
            }, {
                "name": "db",
                "image": "postgres",
                "memory": 64,
                "essential": true
            }]
        }})
    );
}

#[test]
fn security_options_devices_swap_and_terminal_show_in_ecs_shape() {
    let def = crate::taskdef::parse(
        r#"{"family":"web","networkMode":"none","containerDefinitions":[{"name":"app","image":"i","memory":64,
            "dockerSecurityOptions":["no-new-privileges:true","seccomp:/etc/p.json"],
            "interactive":true,"pseudoTerminal":true,
            "linuxParameters":{"devices":[{"hostPath":"/dev/fuse","permissions":["read"]}],
                               "maxSwap":32,"swappiness":10}}]}"#,
    )
    .unwrap();
    let c = serde_json::to_value(ContainerDefinition::from(&def.containers[0])).unwrap();
    assert_eq!(
        c["dockerSecurityOptions"],
        json!(["no-new-privileges", "seccomp=/etc/p.json"])
    );
    assert_eq!(
        (&c["interactive"], &c["pseudoTerminal"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(
        c["linuxParameters"],
        json!({
            "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse",
                         "permissions": ["read"]}],
            "maxSwap": 32,
            "swappiness": 10
        })
    );
    let off = crate::taskdef::parse(
        r#"{"family":"web","containerDefinitions":[{"name":"app","image":"i","memory":64,
            "dockerSecurityOptions":["no-new-privileges=false","seccomp=unconfined"]}]}"#,
    )
    .unwrap();
    let c = serde_json::to_value(ContainerDefinition::from(&off.containers[0])).unwrap();
    assert_eq!(
        c["dockerSecurityOptions"],
        json!(["no-new-privileges=false", "seccomp=unconfined"])
    );
    assert_eq!(c.get("interactive"), None);
    assert_eq!(c.get("linuxParameters"), None);
}

/// Every definition of the task-definition corpus that registers comes back from
/// describe-task-definition -o json as JSON that registers to the same definition: nothing the
/// converter accepts is lost on the way out.
#[test]
fn describe_json_round_trips_every_definition_of_the_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/taskdef/corpus");
    let mut round_tripped = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let Ok(mut first) = crate::taskdef::parse(&source) else {
            continue;
        };
        first.revision = 4;
        first.registered_at = at(1_795_778_400, 0);
        let described = serde_json::to_string_pretty(&OneTaskDefinition {
            task_definition: TaskDefinition::from(&first),
        })
        .unwrap();
        let mut second = crate::taskdef::parse(&described)
            .unwrap_or_else(|e| panic!("{}: {e}\n{described}", path.display()));
        second.revision = first.revision;
        second.registered_at = first.registered_at;
        second.source_json = first.source_json.clone();
        assert_eq!(second, first, "{}:\n{described}", path.display());
        round_tripped.push(path);
    }
    assert!(
        round_tripped.len() >= 5,
        "only {round_tripped:?} of {} registered",
        dir.display()
    );
}

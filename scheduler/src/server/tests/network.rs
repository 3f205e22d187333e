//! Task networking on the scheduler's side: host ports taken and refused at placement, the
//! agent's reported bindings, and ENI attachments delivered with the assignment.

use berth_proto::v1::{self as pb, TaskStatus, run_task_request};
use tonic::Code;

use super::{describe_instance, describe_task, run_assigned, run_task, scene};

const WEB_8080: &str = r#"{"family":"web8080","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
    "portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":9000}]}]}"#;
const VPC: &str = r#"{"family":"vpc","networkMode":"awsvpc","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
    "portMappings":[{"containerPort":80}]}]}"#;

fn eni() -> pb::NetworkAttachment {
    pb::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:05".into(),
        private_ipv4_address: "10.1.0.5".into(),
        subnet: "10.1.0.0/24".into(),
        gateway: "10.1.0.1".into(),
        interface_name: String::new(),
    }
}

#[tokio::test]
async fn task_networking_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB_8080, VPC]).await;

    // A fixed host port: one task per instance, and a clear refusal for the next.
    let (web, a) = run_assigned(&mut c, &mut agent, "web8080").await;
    assert_eq!(web.network_mode, "bridge");
    assert_eq!(a.network_attachment, None);
    let err = run_task(&mut c, "", "web8080").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        "no container instance in cluster default has host port 8080/tcp free (taken on the \
         only connected instance)"
    );

    // The agent reports the dynamic port it bound; the instance shows both taken.
    agent
        .report_state(
            1,
            pb::TaskState {
                task_id: web.task_id.clone(),
                status: TaskStatus::Running as i32,
                containers: vec![pb::ContainerState {
                    name: "app".into(),
                    network_bindings: vec![
                        pb::NetworkBinding {
                            bind_ip: "0.0.0.0".into(),
                            container_port: 80,
                            host_port: 8080,
                            protocol: "tcp".into(),
                        },
                        pb::NetworkBinding {
                            bind_ip: "0.0.0.0".into(),
                            container_port: 9000,
                            host_port: 49153,
                            protocol: "tcp".into(),
                        },
                    ],
                    private_ipv4_address: "172.17.0.2".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await;
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(inst.remaining_resources.unwrap().ports, vec![8080, 49153]);
    let task = describe_task(&mut c, &web.task_id).await;
    assert_eq!(task.containers[0].network_bindings.len(), 2);
    assert_eq!(task.containers[0].private_ipv4_address, "172.17.0.2");

    // An ENI: refused with count 2 or a bad address, delivered with the assignment otherwise.
    let run_eni = |count: u32, attachment: pb::NetworkAttachment| pb::RunTaskRequest {
        cluster: String::new(),
        definition: Some(run_task_request::Definition::TaskDefinition("vpc".into())),
        count,
        started_by: "test".into(),
        network_attachment: Some(attachment),
        container_instance_id: String::new(),
        placement_constraints: Vec::new(),
        placement_strategy: Vec::new(),
    };
    let err = c.run_task(run_eni(2, eni())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "a network attachment is one ENI for one task: run 1 task, not 2"
    );
    let bad = pb::NetworkAttachment {
        mac_address: "0a:58".into(),
        ..eni()
    };
    let err = c.run_task(run_eni(1, bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let vpc = c
        .run_task(run_eni(1, eni()))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(vpc[0].network_mode, "awsvpc");
    let a = agent.next_assignment().await;
    assert_eq!(a.task_id, vpc[0].task_id);
    assert_eq!(a.network_attachment, Some(eni()));

    // The agent reports the interface it set up.
    let reported = pb::NetworkAttachment {
        interface_name: "eth0".into(),
        ..eni()
    };
    agent
        .report_state(
            2,
            pb::TaskState {
                task_id: vpc[0].task_id.clone(),
                status: TaskStatus::Running as i32,
                attachments: vec![reported.clone()],
                ..Default::default()
            },
        )
        .await;
    let task = describe_task(&mut c, &vpc[0].task_id).await;
    assert_eq!(task.attachments, vec![reported]);
    assert_eq!(task.network_mode, "awsvpc");
    server.stop().await;
}

//! DeregisterContainerInstance: refused while tasks run unless forced, a connected agent is
//! cut off at once (after the forced stop orders), the instance can neither register nor open
//! a session again, and a cluster left with only deregistered instances can be deleted.

use berth_proto::v1::{self as pb, TaskStatus, scheduler_message};
use tonic::Code;

use super::{FakeAgent, WEB, describe_instance, describe_task, run_assigned, scene};

fn deregister(id: &str, force: bool) -> pb::DeregisterContainerInstanceRequest {
    pb::DeregisterContainerInstanceRequest {
        cluster: String::new(),
        container_instance_id: id.into(),
        force,
    }
}

#[tokio::test]
async fn an_instance_with_tasks_is_refused_without_force_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, assignment) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(assignment.seq).await;
    agent.report(1, &task.task_id, TaskStatus::Running).await;

    let err = c
        .deregister_container_instance(deregister(&id, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("1 task(s) not yet STOPPED"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("--force"), "{}", err.message());
    assert_eq!(describe_instance(&mut c, "", &id).await.status, "ACTIVE");
    assert!(describe_instance(&mut c, "", &id).await.agent_connected);
    assert_eq!(
        describe_task(&mut c, &task.task_id).await.last_status,
        TaskStatus::Running as i32
    );

    let err = c
        .deregister_container_instance(deregister("nope", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn force_stops_the_tasks_sends_the_orders_and_cuts_the_connected_agent_off() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, assignment) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(assignment.seq).await;
    agent.report(1, &task.task_id, TaskStatus::Running).await;

    let instance = c
        .deregister_container_instance(deregister(&id, true))
        .await
        .unwrap()
        .into_inner()
        .container_instance
        .unwrap();
    assert_eq!(instance.status, "INACTIVE");
    assert!(!instance.agent_connected);

    // The stop order arrives before the session ends with the reason.
    match agent.next().await {
        scheduler_message::Message::Stop(stop) => assert_eq!(stop.task_id, task.task_id),
        other => panic!("expected the stop order, got {other:?}"),
    }
    let end = loop {
        match agent.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended without a reason"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::PermissionDenied);
    assert!(
        end.message().contains("was deregistered"),
        "{}",
        end.message()
    );
    assert!(end.message().contains("join token"), "{}", end.message());

    let stopped = describe_task(&mut c, &task.task_id).await;
    assert_eq!(stopped.last_status, TaskStatus::Stopped as i32);
    assert_eq!(stopped.desired_status, pb::DesiredStatus::Stopped as i32);
    assert!(
        stopped.stopped_reason.contains("deregistered"),
        "{}",
        stopped.stopped_reason
    );

    // It can come back neither through Register nor through a session.
    let err = server
        .agent_client()
        .await
        .register(pb::RegisterRequest {
            container_instance_id: id.clone(),
            instance_identity: "host".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("was deregistered"),
        "{}",
        err.message()
    );
    let err = FakeAgent::connect(&server, "", &id, 0).await.err().unwrap();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Listed no more, still described (as ECS does), and deregistering again changes nothing.
    let listed = c
        .list_container_instances(pb::ListContainerInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .container_instances;
    assert!(listed.is_empty(), "{listed:?}");
    let again = c
        .deregister_container_instance(deregister(&id, false))
        .await
        .unwrap()
        .into_inner()
        .container_instance
        .unwrap();
    assert_eq!(again.status, "INACTIVE");

    // A cluster with only deregistered instances can be deleted.
    let deleted = c
        .delete_cluster(pb::DeleteClusterRequest {
            name: "default".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(deleted.status, "INACTIVE");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_instance_is_deregistered_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let instance = c
        .deregister_container_instance(deregister(&id, false))
        .await
        .unwrap()
        .into_inner()
        .container_instance
        .unwrap();
    assert_eq!(instance.status, "INACTIVE");
    assert_eq!(agent.end().await, Some(Code::PermissionDenied));
    let clusters = c
        .describe_clusters(pb::DescribeClustersRequest {
            names: vec!["default".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .clusters;
    assert_eq!(clusters[0].registered_container_instances_count, 0);
    server.stop().await;
}

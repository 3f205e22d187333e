//! The control side: clusters, instances' registration, placement and task definitions.

use berth_proto::v1::{self as pb, TaskStatus};
use tonic::Code;

use super::{
    BIG, FakeAgent, Server, WEB, describe_instance, register_def, run_task, wait_connected,
};

#[tokio::test]
async fn cluster_lifecycle_and_delete_refused_while_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;

    let created = c
        .create_cluster(pb::CreateClusterRequest {
            name: "prod".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(created.status, "ACTIVE");
    let again = c
        .create_cluster(pb::CreateClusterRequest {
            name: "prod".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(again.created_at, created.created_at);
    let bad = c
        .create_cluster(pb::CreateClusterRequest {
            name: "no/slash".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let err = run_task(&mut c, "nope", "web").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        "cluster nope not found; create it with `berthctl create-cluster nope`"
    );

    // `default` comes into being on first use.
    c.list_tasks(pb::ListTasksRequest::default()).await.unwrap();
    let names = c
        .list_clusters(pb::ListClustersRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, vec!["default", "prod"]);

    let id = server.register("prod", "host-1", 1024, 2048).await;
    let described = c
        .describe_clusters(pb::DescribeClustersRequest {
            names: vec!["prod".into(), "ghost".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.clusters.len(), 1);
    assert_eq!(
        described.clusters[0].registered_container_instances_count,
        1
    );
    assert_eq!(described.failures.len(), 1);
    assert_eq!(described.failures[0].arn, "ghost");
    assert_eq!(described.failures[0].reason, "MISSING");

    // A running task on the instance.
    register_def(&mut c, WEB).await;
    let _agent = FakeAgent::connect(&server, "prod", &id, 0).await.unwrap();
    wait_connected(&mut c, "prod", &id, true).await;
    run_task(&mut c, "prod", "web").await.unwrap();
    let err = c
        .delete_cluster(pb::DeleteClusterRequest {
            name: "prod".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "cluster prod has 1 container instance and 1 running task; stop the tasks and deregister the instances first"
    );

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
async fn register_is_idempotent_by_id_and_by_identity() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut agent = server.agent_client().await;
    let req = |id: &str, identity: &str, memory_mib: u64| pb::RegisterRequest {
        cluster: String::new(),
        container_instance_id: id.into(),
        instance_identity: identity.into(),
        resources: Some(pb::Resources {
            cpu: 2048,
            memory_mib,
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = agent
        .register(req("", "machine-a", 1000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.heartbeat_interval_seconds, 10);
    let id = first.container_instance_id;
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a v4 UUID: {id}");

    let by_id = agent
        .register(req(&id, "", 3000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.container_instance_id, id);
    let by_identity = agent
        .register(req("", "machine-a", 4000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_identity.container_instance_id, id);
    let other = agent
        .register(req("", "machine-b", 4000))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.container_instance_id, id);

    let mut c = server.control().await;
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(inst.registered_resources.unwrap().memory_mib, 4000);
    assert_eq!(inst.status, "ACTIVE");
    assert!(!inst.agent_connected);

    let err = agent
        .register(pb::RegisterRequest {
            cluster: "ghost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("berthctl create-cluster ghost"));
    // Without any identity a Register would make a new record each time: refused.
    let err = agent
        .register(pb::RegisterRequest {
            cluster: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("instance_identity"),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn run_task_binpacks_on_memory_and_explains_no_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    register_def(&mut c, BIG).await;

    let big = server.register("", "big", 4096, 4096).await;
    let small = server.register("", "small", 2048, 2048).await;
    let err = run_task(&mut c, "", "web").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        "no connected ACTIVE container instance in cluster default"
    );

    let _a = FakeAgent::connect(&server, "", &big, 0).await.unwrap();
    let _b = FakeAgent::connect(&server, "default", &small, 0)
        .await
        .unwrap();
    wait_connected(&mut c, "", &big, true).await;
    wait_connected(&mut c, "", &small, true).await;

    // 1024 MiB fits both: the fuller one (small) gets it.
    let t1 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(t1.container_instance_id, small);
    assert_eq!((t1.cpu, t1.memory_mib), (512, 1024));
    assert_eq!(t1.last_status, TaskStatus::Provisioning as i32);
    // 2048 MiB no longer fits small (1024 left).
    let t2 = run_task(&mut c, "", "big").await.unwrap();
    assert_eq!(t2.container_instance_id, big);
    // Another 1024: small (1024 left) is fuller than big (2048 left).
    let t3 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(t3.container_instance_id, small);

    let inst = describe_instance(&mut c, "", &small).await;
    assert_eq!(inst.remaining_resources.unwrap().memory_mib, 0);
    assert_eq!(inst.pending_tasks_count, 2);

    // big has 2048 left, so a second "big" fits, a third does not.
    run_task(&mut c, "", "big").await.unwrap();
    let err = run_task(&mut c, "", "big").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        format!(
            "no container instance in cluster default has room for 512 CPU units and 2048 MiB: \
             the largest free capacity is 3072 CPU units and 0 MiB on {big}"
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn task_definitions_register_describe_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    let d1 = register_def(&mut c, WEB).await;
    let d2 = register_def(&mut c, WEB).await;
    assert_eq!((d1.revision, d2.revision), (1, 2));
    assert!(d2.registered_at.is_some());
    let latest = c
        .describe_task_definition(pb::DescribeTaskDefinitionRequest {
            task_definition: "web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task_definition
        .unwrap();
    assert_eq!(latest.revision, 2);
    let err = c
        .describe_task_definition(pb::DescribeTaskDefinitionRequest {
            task_definition: "web:9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        "task definition web:9 not found; web has revisions 1 to 2"
    );
    let err = c
        .register_task_definition(pb::RegisterTaskDefinitionRequest {
            task_definition_json: "{".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c.run_task(pb::RunTaskRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn run_task_with_a_definition_as_json_returns_its_registration_notes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    let instance = server.register("", "one", 4096, 4096).await;
    let _agent = FakeAgent::connect(&server, "", &instance, 0).await.unwrap();
    wait_connected(&mut c, "", &instance, true).await;
    let json = r#"{"family":"inline","status":"ACTIVE","revision":7,
        "containerDefinitions":[{"name":"app","image":"busybox","memory":64}]}"#;
    let response = c
        .run_task(pb::RunTaskRequest {
            definition: Some(pb::run_task_request::Definition::TaskDefinitionJson(
                json.into(),
            )),
            count: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.tasks.len(), 1);
    assert_eq!(response.tasks[0].task_definition, "inline:1");
    assert_eq!(response.notes.len(), 1, "{:?}", response.notes);
    for field in ["revision", "status"] {
        assert!(response.notes[0].contains(field), "{:?}", response.notes);
    }
    // By name, nothing was registered, so there is nothing to note.
    let by_name = run_task(&mut c, "", "inline").await.unwrap();
    assert_eq!(by_name.task_definition, "inline:1");
    server.stop().await;
}

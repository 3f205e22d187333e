//! End-to-end tests of the server: the real tonic server on 127.0.0.1:0 over a tempdir
//! store, driven with the generated clients and a fake agent.

use std::path::Path;
use std::time::Duration;

use berth_proto::v1::agent_service_client::AgentServiceClient;
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{
    self as pb, AgentMessage, SchedulerMessage, TaskStatus, agent_message, run_task_request,
    scheduler_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use super::{Call, Event, ServerConfig, ServerError, TestHooks, run, run_with_hooks};
use crate::store::Store;

const WEB: &str = r#"{"family":"web","containerDefinitions":[{"name":"app","image":"nginx","cpu":512,"memory":1024}]}"#;
const BIG: &str = r#"{"family":"big","containerDefinitions":[{"name":"app","image":"nginx","cpu":512,"memory":2048}]}"#;

struct Server {
    addr: String,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ServerError>>,
}

impl Server {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, Duration::from_secs(10)).await
    }

    async fn start_with(dir: &Path, heartbeat_interval: Duration) -> Self {
        Self::start_hooked(dir, heartbeat_interval, None).await
    }

    async fn start_hooked(
        dir: &Path,
        heartbeat_interval: Duration,
        hooks: Option<TestHooks>,
    ) -> Self {
        let store = Store::open(dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = ServerConfig {
            heartbeat_interval,
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        let handle = match hooks {
            Some(hooks) => tokio::spawn(run_with_hooks(
                store,
                listener,
                config,
                hooks,
                shutdown.clone(),
            )),
            None => tokio::spawn(run(store, listener, config, shutdown.clone())),
        };
        Self {
            addr,
            shutdown,
            handle,
        }
    }

    async fn control(&self) -> ControlServiceClient<Channel> {
        ControlServiceClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    async fn agent_client(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    async fn register(&self, cluster: &str, identity: &str, cpu: u64, memory_mib: u64) -> String {
        self.agent_client()
            .await
            .register(pb::RegisterRequest {
                cluster: cluster.into(),
                instance_identity: identity.into(),
                resources: Some(pb::Resources {
                    cpu,
                    memory_mib,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .container_instance_id
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// A fake agent's session.
struct FakeAgent {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<SchedulerMessage>,
    last_received_seq: u64,
}

fn agent_msg(m: agent_message::Message) -> AgentMessage {
    AgentMessage { message: Some(m) }
}

impl FakeAgent {
    async fn connect(
        server: &Server,
        cluster: &str,
        id: &str,
        last_applied_seq: u64,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(agent_msg(agent_message::Message::Hello(pb::SessionHello {
            cluster: cluster.into(),
            container_instance_id: id.into(),
            last_applied_seq,
        })))
        .await
        .unwrap();
        let mut client = server.agent_client().await;
        let mut rx = client.session(ReceiverStream::new(rx)).await?.into_inner();
        let first = rx.message().await?.unwrap();
        let Some(scheduler_message::Message::Accepted(acc)) = first.message else {
            panic!("expected SessionAccepted, got {first:?}");
        };
        Ok(Self {
            tx,
            rx,
            last_received_seq: acc.last_received_seq,
        })
    }

    /// The next message that is not a heartbeat.
    async fn next(&mut self) -> scheduler_message::Message {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.rx.message())
                .await
                .expect("no message within 5s")
                .unwrap()
                .unwrap();
            match msg.message.unwrap() {
                scheduler_message::Message::Heartbeat(_) => continue,
                m => return m,
            }
        }
    }

    async fn next_assignment(&mut self) -> pb::TaskAssignment {
        match self.next().await {
            scheduler_message::Message::Assignment(a) => a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    async fn send(&self, m: agent_message::Message) {
        self.tx.send(agent_msg(m)).await.unwrap();
    }

    async fn ack(&self, seq: u64) {
        self.send(agent_message::Message::Ack(pb::Ack { seq }))
            .await;
    }

    /// Sends a state change and waits for its ack.
    async fn report(&mut self, seq: u64, task_id: &str, status: TaskStatus) {
        self.send(agent_message::Message::StateChange(pb::StateChange {
            seq,
            task: Some(pb::TaskState {
                task_id: task_id.into(),
                status: status as i32,
                ..Default::default()
            }),
        }))
        .await;
        match self.next().await {
            scheduler_message::Message::Ack(a) => assert_eq!(a.seq, seq),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

async fn run_task(
    control: &mut ControlServiceClient<Channel>,
    cluster: &str,
    def: &str,
) -> Result<pb::Task, tonic::Status> {
    let tasks = control
        .run_task(pb::RunTaskRequest {
            cluster: cluster.into(),
            definition: Some(run_task_request::Definition::TaskDefinition(def.into())),
            count: 1,
            started_by: "test".into(),
            network_attachment: None,
            container_instance_id: String::new(),
        })
        .await?
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    Ok(tasks.into_iter().next().unwrap())
}

async fn register_def(
    control: &mut ControlServiceClient<Channel>,
    json: &str,
) -> pb::TaskDefinition {
    control
        .register_task_definition(pb::RegisterTaskDefinitionRequest {
            task_definition_json: json.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task_definition
        .unwrap()
}

async fn describe_task(control: &mut ControlServiceClient<Channel>, id: &str) -> pb::Task {
    let resp = control
        .describe_tasks(pb::DescribeTasksRequest {
            cluster: String::new(),
            task_ids: vec![id.into()],
        })
        .await
        .unwrap()
        .into_inner();
    resp.tasks.into_iter().next().unwrap()
}

async fn describe_instance(
    control: &mut ControlServiceClient<Channel>,
    cluster: &str,
    id: &str,
) -> pb::ContainerInstance {
    control
        .describe_container_instances(pb::DescribeContainerInstancesRequest {
            cluster: cluster.into(),
            container_instance_ids: vec![id.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .container_instances
        .into_iter()
        .next()
        .unwrap()
}

/// Waits until the scheduler sees the instance's session (or its end).
async fn wait_connected(
    control: &mut ControlServiceClient<Channel>,
    cluster: &str,
    id: &str,
    want: bool,
) {
    for _ in 0..100 {
        if describe_instance(control, cluster, id)
            .await
            .agent_connected
            == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("instance {id} never became connected={want}");
}

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
async fn session_protocol_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    let def = register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;

    let err = FakeAgent::connect(&server, "", "not-registered", 0)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("register first"),
        "{}",
        err.message()
    );

    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.last_received_seq, 0);
    wait_connected(&mut c, "", &id, true).await;

    let t1 = run_task(&mut c, "", "web").await.unwrap();
    let a1 = agent.next_assignment().await;
    assert_eq!(a1.seq, 1);
    assert_eq!(a1.task_id, t1.task_id);
    assert_eq!(a1.definition.as_ref().unwrap().family, def.family);
    assert_eq!(a1.desired_status, pb::DesiredStatus::Running as i32);
    let t2 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 2);
    let t3 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 3);

    // Ack 1; then reconnect having applied only 1: 2 and 3 come again, in order.
    agent.ack(1).await;
    agent.report(1, &t1.task_id, TaskStatus::Running).await;
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 1).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    let again = agent.next_assignment().await;
    assert_eq!(
        (again.seq, again.task_id.as_str()),
        (2, t2.task_id.as_str())
    );
    assert_eq!(agent.next_assignment().await.seq, 3);

    // Reconnect having applied 2 (without acking): only 3 again.
    let mut agent = FakeAgent::connect(&server, "", &id, 2).await.unwrap();
    let again = agent.next_assignment().await;
    assert_eq!(
        (again.seq, again.task_id.as_str()),
        (3, t3.task_id.as_str())
    );
    agent.ack(3).await;

    // State changes: persisted and acked; duplicates ignored but acked; never backwards.
    let task = describe_task(&mut c, &t1.task_id).await;
    assert_eq!(task.last_status, TaskStatus::Running as i32);
    agent.report(1, &t1.task_id, TaskStatus::Stopped).await; // duplicate seq
    assert_eq!(
        describe_task(&mut c, &t1.task_id).await.last_status,
        TaskStatus::Running as i32
    );
    agent.report(2, &t1.task_id, TaskStatus::Pending).await; // backwards
    assert_eq!(
        describe_task(&mut c, &t1.task_id).await.last_status,
        TaskStatus::Running as i32
    );
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(
        inst.remaining_resources.unwrap().memory_mib,
        4096 - 3 * 1024
    );
    assert_eq!((inst.running_tasks_count, inst.pending_tasks_count), (1, 2));

    // StopTask: desired STOPPED and an order with the next seq.
    let stopped = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: t1.task_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(stopped.desired_status, pb::DesiredStatus::Stopped as i32);
    assert!(stopped.stopping_at.is_some());
    match agent.next().await {
        scheduler_message::Message::Stop(s) => {
            assert_eq!(s.seq, 4);
            assert_eq!(s.task_id, t1.task_id);
            assert_eq!(s.stop_code, pb::StopCode::UserInitiated as i32);
            assert_eq!(s.reason, "Task stopped by user");
        }
        other => panic!("expected a stop order, got {other:?}"),
    }
    agent.ack(4).await;
    agent.report(3, &t1.task_id, TaskStatus::Stopped).await;
    let task = describe_task(&mut c, &t1.task_id).await;
    assert_eq!(task.last_status, TaskStatus::Stopped as i32);
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(
        inst.remaining_resources.unwrap().memory_mib,
        4096 - 2 * 1024
    );
    assert_eq!(inst.running_tasks_count, 0);

    // Stopping it again changes nothing and sends nothing.
    let same = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: t1.task_id.clone(),
            reason: "again".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(same, task);
    let unknown = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: "nope".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // A newer session replaces this one, which is closed.
    let mut newer = FakeAgent::connect(&server, "", &id, 4).await.unwrap();
    assert_eq!(newer.last_received_seq, 3);
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match agent.rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, Some(Code::Aborted));
    newer.report(4, &t2.task_id, TaskStatus::Running).await;
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (id, task_id) = {
        let server = Server::start(dir.path()).await;
        let mut c = server.control().await;
        register_def(&mut c, WEB).await;
        let id = server.register("", "host", 2048, 4096).await;
        let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
        wait_connected(&mut c, "", &id, true).await;
        let t = run_task(&mut c, "", "web").await.unwrap();
        assert_eq!(agent.next_assignment().await.seq, 1);
        agent.report(7, &t.task_id, TaskStatus::Running).await;
        server.stop().await;
        (id, t.task_id)
    };

    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    let task = describe_task(&mut c, &task_id).await;
    assert_eq!(task.last_status, TaskStatus::Running as i32);
    assert_eq!(task.container_instance_id, id);
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(!inst.agent_connected, "no session survives a restart");
    assert_eq!(inst.remaining_resources.unwrap().memory_mib, 3072);
    let defs = c
        .list_task_definitions(pb::ListTaskDefinitionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .task_definitions;
    assert_eq!(defs, vec!["web:1"]);

    // The unacknowledged assignment is still owed; the agent's seq is remembered.
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.last_received_seq, 7);
    let a = agent.next_assignment().await;
    assert_eq!((a.seq, a.task_id.as_str()), (1, task_id.as_str()));
    agent.ack(1).await;
    // Numbering continues after a restart.
    run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 2);
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

/// With paused time over real sockets, every wait on I/O lets the clock jump to the next
/// timer. The fake agent's heartbeat task sleeps 1 s between heartbeats, which bounds each
/// jump to one second while it runs.
#[tokio::test(start_paused = true)]
async fn unacked_messages_are_resent_and_silent_agents_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), Duration::from_secs(10)).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let heartbeats = {
        let tx = agent.tx.clone();
        tokio::spawn(async move {
            loop {
                let hb = agent_msg(agent_message::Message::Heartbeat(pb::Heartbeat::default()));
                if tx.send(hb).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    wait_connected(&mut c, "", &id, true).await;
    let t = run_task(&mut c, "", "web").await.unwrap();

    // Never ack: the assignment comes, then again after three intervals, then every interval.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = agent.rx.message().await.unwrap().unwrap();
        match msg.message.unwrap() {
            scheduler_message::Message::Heartbeat(_) => {}
            scheduler_message::Message::Assignment(a) => {
                assert_eq!((a.seq, a.task_id.as_str()), (1, t.task_id.as_str()));
                seen.push(tokio::time::Instant::now());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let first_resend = seen[1] - seen[0];
    let second_resend = seen[2] - seen[1];
    assert!(first_resend >= Duration::from_secs(30), "{first_resend:?}");
    assert!(first_resend <= Duration::from_secs(42), "{first_resend:?}");
    assert!(second_resend >= Duration::from_secs(8), "{second_resend:?}");
    assert!(
        second_resend <= Duration::from_secs(12),
        "{second_resend:?}"
    );
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(inst.agent_connected);
    assert!(inst.last_heartbeat_at.is_some());

    // Now go silent: after three missed heartbeats the instance is disconnected and the
    // session closed; the task keeps its status.
    heartbeats.abort();
    let silent_since = tokio::time::Instant::now();
    let end = loop {
        match agent.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(status) => break Some(status.code()),
        }
    };
    assert_eq!(end, Some(Code::Unavailable));
    assert!(silent_since.elapsed() >= Duration::from_secs(20));
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(!inst.agent_connected);
    assert_eq!(
        describe_task(&mut c, &t.task_id).await.last_status,
        TaskStatus::Provisioning as i32
    );
    server.stop().await;
}

fn log_request(task_id: &str, container: &str) -> pb::GetTaskLogsRequest {
    pb::GetTaskLogsRequest {
        cluster: String::new(),
        task_id: task_id.into(),
        container_name: container.into(),
        tail: Some(3),
        since: None,
        follow: true,
    }
}

fn log_chunk(request_id: u64, text: &str) -> agent_message::Message {
    agent_message::Message::LogChunk(pb::LogChunk {
        request_id,
        lines: vec![pb::LogLine {
            output: pb::LogOutput::Stdout as i32,
            time: None,
            text: text.into(),
        }],
    })
}

fn log_end(request_id: u64, reason: pb::LogEndReason, message: &str) -> agent_message::Message {
    agent_message::Message::LogEnd(pb::LogEnd {
        request_id,
        reason: reason as i32,
        message: message.into(),
    })
}

#[tokio::test]
async fn task_logs_are_relayed_over_the_session_with_credits_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    wait_connected(&mut c, "", &id, true).await;
    let task = run_task(&mut c, "", "web").await.unwrap();
    agent.next_assignment().await;

    // Container names are checked by the scheduler, which lists the task's.
    let err = c
        .get_task_logs(log_request(&task.task_id, "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .contains("has no container nope; its containers: app"),
        "{}",
        err.message()
    );
    let err = c
        .get_task_logs(log_request("no-such-task", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The only container is the default; the request reaches the agent with a window.
    let mut stream = c
        .get_task_logs(log_request(&task.task_id, ""))
        .await
        .unwrap()
        .into_inner();
    let scheduler_message::Message::LogRequest(request) = agent.next().await else {
        panic!("expected a log request")
    };
    assert_eq!(
        (request.task_id.as_str(), request.container_name.as_str()),
        (task.task_id.as_str(), "app")
    );
    assert_eq!((request.tail, request.follow), (Some(3), true));
    let window = request.window;
    assert!(window > 1);
    for i in 0..window {
        agent
            .send(log_chunk(request.request_id, &format!("{i}\n")))
            .await;
    }
    let mut credited = 0;
    for i in 0..window {
        let got = stream.message().await.unwrap().unwrap();
        assert_eq!(got.lines[0].text, format!("{i}\n"));
    }
    while credited < window {
        match agent.next().await {
            scheduler_message::Message::LogCredit(credit) => {
                assert_eq!(credit.request_id, request.request_id);
                credited += credit.chunks;
            }
            other => panic!("expected a credit, got {other:?}"),
        }
    }
    assert_eq!(credited, window);
    agent
        .send(log_end(request.request_id, pb::LogEndReason::Complete, ""))
        .await;
    assert!(stream.message().await.unwrap().is_none());

    // The agent's not-found is the caller's.
    let mut stream = c
        .get_task_logs(log_request(&task.task_id, "app"))
        .await
        .unwrap()
        .into_inner();
    let scheduler_message::Message::LogRequest(request) = agent.next().await else {
        panic!("expected a log request")
    };
    agent
        .send(log_end(
            request.request_id,
            pb::LogEndReason::NotFound,
            "container app has no logs yet",
        ))
        .await;
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("no logs yet"), "{}", err.message());

    // A caller that goes away cancels its request at the agent.
    let stream = c
        .get_task_logs(log_request(&task.task_id, "app"))
        .await
        .unwrap()
        .into_inner();
    let scheduler_message::Message::LogRequest(request) = agent.next().await else {
        panic!("expected a log request")
    };
    drop(stream);
    match agent.next().await {
        scheduler_message::Message::LogCancel(cancel) => {
            assert_eq!(cancel.request_id, request.request_id);
        }
        other => panic!("expected a cancel, got {other:?}"),
    }

    // A session that breaks ends its callers' streams with an error, not a silent end.
    let mut stream = c
        .get_task_logs(log_request(&task.task_id, "app"))
        .await
        .unwrap()
        .into_inner();
    let scheduler_message::Message::LogRequest(_) = agent.next().await else {
        panic!("expected a log request")
    };
    drop(agent);
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    wait_connected(&mut c, "", &id, false).await;
    let err = c
        .get_task_logs(log_request(&task.task_id, "app"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("not connected"), "{}", err.message());
    server.stop().await;
}

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
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB_8080).await;
    register_def(&mut c, VPC).await;
    let id = server.register("", "host", 4096, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    wait_connected(&mut c, "", &id, true).await;

    // A fixed host port: one task per instance, and a clear refusal for the next.
    let web = run_task(&mut c, "", "web8080").await.unwrap();
    assert_eq!(web.network_mode, "bridge");
    let a = agent.next_assignment().await;
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
        .send(agent_message::Message::StateChange(pb::StateChange {
            seq: 1,
            task: Some(pb::TaskState {
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
            }),
        }))
        .await;
    match agent.next().await {
        scheduler_message::Message::Ack(a) => assert_eq!(a.seq, 1),
        other => panic!("expected an ack, got {other:?}"),
    }
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
        .send(agent_message::Message::StateChange(pb::StateChange {
            seq: 2,
            task: Some(pb::TaskState {
                task_id: vpc[0].task_id.clone(),
                status: TaskStatus::Running as i32,
                attachments: vec![reported.clone()],
                ..Default::default()
            }),
        }))
        .await;
    match agent.next().await {
        scheduler_message::Message::Ack(a) => assert_eq!(a.seq, 2),
        other => panic!("expected an ack, got {other:?}"),
    }
    let task = describe_task(&mut c, &vpc[0].task_id).await;
    assert_eq!(task.attachments, vec![reported]);
    assert_eq!(task.network_mode, "awsvpc");
    server.stop().await;
}

/// The hooks the agent's session tests script the scheduler with: a failed call, a delayed ack,
/// a stalled and a dropped session, and the events they see.
#[tokio::test(start_paused = true)]
async fn test_hooks_fail_delay_stall_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = TestHooks::new();
    let server =
        Server::start_hooked(dir.path(), Duration::from_secs(10), Some(hooks.clone())).await;
    hooks.fail_next(Call::Register, Code::PermissionDenied);
    let refused = server
        .agent_client()
        .await
        .register(pb::RegisterRequest {
            instance_identity: "host".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let id = server.register("", "host", 1024, 1024).await;

    hooks.fail_next(Call::Session, Code::Unavailable);
    let refused = FakeAgent::connect(&server, "", &id, 0).await.err();
    assert_eq!(refused.map(|s| s.code()), Some(Code::Unavailable));

    // A delayed ack comes after its delay; the state change is applied at once.
    hooks.delay_acks(Some(Duration::from_secs(20)));
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let sent = tokio::time::Instant::now();
    agent
        .send(agent_message::Message::StateChange(pb::StateChange {
            seq: 1,
            task: Some(pb::TaskState {
                task_id: "unknown".into(),
                status: TaskStatus::Running as i32,
                ..Default::default()
            }),
        }))
        .await;
    let ack = loop {
        match agent.rx.message().await.unwrap().unwrap().message {
            Some(scheduler_message::Message::Ack(ack)) => break ack,
            _ => continue,
        }
    };
    assert_eq!(ack.seq, 1);
    assert!(sent.elapsed() >= Duration::from_secs(20));
    hooks.delay_acks(None);

    // A stalled session sends nothing, not even its heartbeat (due every 10 s).
    agent
        .send(agent_message::Message::Heartbeat(pb::Heartbeat::default()))
        .await;
    assert!(hooks.stall_session(&id));
    // What was on its way before the stall still arrives.
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(1), agent.rx.message()).await {
        assert!(msg.is_ok_and(|m| m.is_some()));
    }
    let quiet = tokio::time::timeout(Duration::from_secs(15), agent.rx.message()).await;
    assert!(quiet.is_err(), "a stalled session sent {quiet:?}");

    // A dropped session ends with UNAVAILABLE.
    let mut agent = FakeAgent::connect(&server, "", &id, 1).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    assert!(hooks.drop_session(&id));
    let end = loop {
        match agent.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(status) => break Some(status.code()),
        }
    };
    assert_eq!(end, Some(Code::Unavailable));
    assert!(!hooks.drop_session(&id));
    let events = hooks.events();
    let opened = events
        .iter()
        .filter(|e| matches!(e, Event::SessionOpened { .. }))
        .count();
    assert_eq!(opened, 2);
    assert!(events.contains(&Event::StateChange {
        instance_id: id.clone(),
        seq: 1
    }));
    assert!(events.contains(&Event::SessionClosed { instance_id: id }));
    server.stop().await;
}

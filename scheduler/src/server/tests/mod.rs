//! End-to-end tests of the server: the real tonic server on 127.0.0.1:0 over a tempdir
//! store, driven with the generated clients and a fake agent. This module is the harness
//! (`Server`, `FakeAgent`, the shared preamble `scene` and the calls they share); the tests
//! live beside it, one file an area.

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

use super::{ServerConfig, ServerError, TestHooks, run, run_with_hooks};
use crate::store::Store;

mod claims;
mod control;
mod deregister;
mod logs;
mod network;
mod reconcile;
mod secrets;
mod session;
mod tls;
mod watch;

const WEB: &str = r#"{"family":"web","containerDefinitions":[{"name":"app","image":"nginx","cpu":512,"memory":1024}]}"#;
const BIG: &str = r#"{"family":"big","containerDefinitions":[{"name":"app","image":"nginx","cpu":512,"memory":2048}]}"#;

struct Server {
    addr: String,
    /// The server's store, to compare its contents before and after a refused call.
    store: Store,
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
        let config = ServerConfig {
            heartbeat_interval,
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        Self::start_configured(dir, config, hooks).await
    }

    async fn start_configured(dir: &Path, config: ServerConfig, hooks: Option<TestHooks>) -> Self {
        let store = Store::open(dir).unwrap();
        let kept = store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
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
            store: kept,
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
                // Reconciliation is the reconciliation tests' business.
                scheduler_message::Message::Heartbeat(_)
                | scheduler_message::Message::StateRequest(_) => continue,
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

    /// Sends a state change of the task's status and waits for its ack.
    async fn report(&mut self, seq: u64, task_id: &str, status: TaskStatus) {
        self.report_state(
            seq,
            pb::TaskState {
                task_id: task_id.into(),
                status: status as i32,
                ..Default::default()
            },
        )
        .await;
    }

    /// Sends a state change and waits for its ack.
    async fn report_state(&mut self, seq: u64, task: pb::TaskState) {
        self.send(agent_message::Message::StateChange(pb::StateChange {
            seq,
            task: Some(task),
        }))
        .await;
        match self.next().await {
            scheduler_message::Message::Ack(a) => assert_eq!(a.seq, seq),
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    /// Reads the session to its end, whatever comes before: `None` when the server closed it,
    /// else the code it ended with.
    async fn end(&mut self) -> Option<Code> {
        loop {
            match self.rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
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
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
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

/// The preamble most tests share: a server over `dir` with `defs` registered, and one fake
/// agent (2048 CPU units, 4096 MiB, identity "host") registered, in session, and seen connected
/// by the control side; the server, a control client, the agent's instance ID and the agent.
async fn scene(
    dir: &Path,
    defs: &[&str],
) -> (Server, ControlServiceClient<Channel>, String, FakeAgent) {
    let server = Server::start(dir).await;
    let mut c = server.control().await;
    for def in defs {
        register_def(&mut c, def).await;
    }
    let id = server.register("", "host", 2048, 4096).await;
    let agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    wait_connected(&mut c, "", &id, true).await;
    (server, c, id, agent)
}

/// Runs one task of `family` in the default cluster and takes its assignment at the agent.
async fn run_assigned(
    control: &mut ControlServiceClient<Channel>,
    agent: &mut FakeAgent,
    family: &str,
) -> (pb::Task, pb::TaskAssignment) {
    let task = run_task(control, "", family).await.unwrap();
    let assignment = agent.next_assignment().await;
    (task, assignment)
}

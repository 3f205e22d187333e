//! The agent's session and engine in process against the real scheduler, through faults on
//! the wire (the scheduler's test hooks) and agent restarts, on paused tokio time: a failed
//! Register and Session call, dropped streams, assignments and stop orders sent twice, acks
//! sent twice, held back and released last first. Whatever happens, every state change the
//! agent recorded reaches the scheduler, the scheduler's view ends equal to the agent's, and
//! no container is created or started twice.
//!
//! The engine runs over the fake host (`fake.rs`); the stores and the scheduler are real. With
//! paused time over real sockets the clock jumps to the next timer whenever every task waits
//! on I/O, so every wait below is a poll with a generous virtual deadline.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{self as pb, Resources, TaskStatus, VersionInfo};
use berth_runtime::ContainerId;
use berth_scheduler::server::{Call, Event, ServerConfig, TestHooks, run_with_hooks};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::super::{Engine, EngineConfig};
use super::{Fake, count_calls, test_config};
use crate::network::TaskNetworking;
use crate::session::{self, SessionConfig};
use crate::store::Store;

const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long (virtual time) any one condition may take.
const WITHIN: Duration = Duration::from_secs(600);

/// The real scheduler in process, serving with test hooks.
struct Scheduler {
    endpoint: String,
    hooks: TestHooks,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), berth_scheduler::server::ServerError>>,
    _dir: tempfile::TempDir,
}

impl Scheduler {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = berth_scheduler::store::Store::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let hooks = TestHooks::new();
        let shutdown = CancellationToken::new();
        let config = ServerConfig {
            heartbeat_interval: HEARTBEAT,
            shutdown_grace: Duration::from_secs(1),
            // Virtual time races ahead while everything waits: never take the agent for lost.
            instance_lost_after: Duration::from_secs(24 * 3600),
            ..ServerConfig::default()
        };
        let task = tokio::spawn(run_with_hooks(
            store,
            listener,
            config,
            hooks.clone(),
            shutdown.clone(),
        ));
        Self {
            endpoint,
            hooks,
            shutdown,
            task,
            _dir: dir,
        }
    }

    async fn control(&self) -> ControlServiceClient<Channel> {
        ControlServiceClient::connect(self.endpoint.clone())
            .await
            .unwrap()
    }

    async fn until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        tokio::time::timeout(WITHIN, self.hooks.wait_for(done))
            .await
            .unwrap_or_else(|_| panic!("{what}: not seen; events: {:?}", self.hooks.events()));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn sessions_opened(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::SessionOpened { .. }))
        .count()
}

/// The sequence numbers of the state changes the scheduler received (duplicates included).
fn received(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateChange { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// One agent process: its engine over the fake host and its session, on a store in `dir`.
struct Agent {
    store: Arc<Store>,
    cancel: CancellationToken,
    engine: JoinHandle<Result<(), crate::store::StoreError>>,
    session: JoinHandle<()>,
}

impl Agent {
    fn start(scheduler: &Scheduler, dir: &std::path::Path, fake: &Arc<Fake>) -> Self {
        let store = Arc::new(Store::open(dir).unwrap());
        let cancel = CancellationToken::new();
        let outbox = Arc::new(Notify::new());
        // Stopped tasks stay in the store (their cleanup is hours away), so the agent's last
        // word on each can be compared with the scheduler's.
        let config = EngineConfig {
            cleanup_wait: Duration::from_secs(3 * 3600),
            ..test_config()
        };
        let (engine, handle) = Engine::new(
            Arc::clone(fake),
            Arc::clone(fake) as Arc<dyn TaskNetworking>,
            Arc::clone(&store),
            config,
            Arc::clone(&outbox),
            cancel.child_token(),
        );
        let config = SessionConfig {
            endpoint: scheduler.endpoint.clone(),
            cluster: "default".into(),
            heartbeat_interval: HEARTBEAT,
            instance_identity: "host-1".into(),
            version_info: VersionInfo::default(),
            resources: Resources {
                cpu: 4096,
                memory_mib: 4096,
                ..Default::default()
            },
            attributes: Default::default(),
            tls: None,
            health: Default::default(),
            disk: engine.disk(),
            images: None,
        };
        let engine = tokio::spawn(engine.run());
        let session = tokio::spawn(session::run(
            config,
            Arc::clone(&store),
            handle,
            outbox,
            cancel.child_token(),
        ));
        Self {
            store,
            cancel,
            engine,
            session,
        }
    }

    fn instance_id(&self) -> String {
        self.store.registration().unwrap().expect("registered").1
    }

    /// Stops the session and the engine (the containers stay, as they do when the agent
    /// process ends) and closes the store, so another run can open it.
    async fn stop(self) {
        self.cancel.cancel();
        self.session.await.unwrap();
        self.engine.await.unwrap().unwrap();
    }
}

async fn run_tasks(control: &mut ControlServiceClient<Channel>, count: usize) -> Vec<String> {
    control
        .register_task_definition(pb::RegisterTaskDefinitionRequest {
            task_definition_json: r#"{"family":"burst","networkMode":"none","containerDefinitions":[{"name":"app","image":"img:1","memory":32,"essential":true}]}"#.into(),
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..count {
        let run = control
            .run_task(pb::RunTaskRequest {
                cluster: "default".into(),
                definition: Some(pb::run_task_request::Definition::TaskDefinition(
                    "burst".into(),
                )),
                count: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        tasks.extend(run.tasks.into_iter().map(|t| t.task_id));
    }
    tasks
}

async fn describe(control: &mut ControlServiceClient<Channel>, tasks: &[String]) -> Vec<pb::Task> {
    control
        .describe_tasks(pb::DescribeTasksRequest {
            cluster: "default".into(),
            task_ids: tasks.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
}

/// Polls until the scheduler shows every one of `tasks` at `status`; their descriptions.
async fn until_all(
    control: &mut ControlServiceClient<Channel>,
    tasks: &[String],
    status: TaskStatus,
) -> Vec<pb::Task> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let described = describe(control, tasks).await;
        if described.len() == tasks.len()
            && described.iter().all(|t| t.last_status == status as i32)
        {
            return described;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all {status:?}: {:?}",
            described
                .iter()
                .map(|t| (&t.task_id, t.last_status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until the agent's outbox is empty: the scheduler acknowledged everything.
async fn until_all_acked(store: &Store) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !store.outbox_after(0).unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never acknowledged: {:?}",
            store
                .outbox_after(0)
                .unwrap()
                .iter()
                .map(|(seq, _)| *seq)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn app(task: &str) -> ContainerId {
    ContainerId::for_container(task, "app")
}

/// What the scheduler shows equals what the agent last reported of each task (status, and
/// each container's status and exit code), every recorded state change reached the
/// scheduler, and every container was created and started exactly once.
fn assert_converged(
    described: &[pb::Task],
    store: &Store,
    fake: &Fake,
    hooks: &TestHooks,
    tasks: &[String],
) {
    let agent_view: std::collections::HashMap<String, pb::TaskState> = store
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.assignment.task_id.clone(), t.state))
        .collect();
    for t in described {
        let own = agent_view
            .get(&t.task_id)
            .unwrap_or_else(|| panic!("the agent does not know {}", t.task_id));
        assert_eq!(t.last_status, own.status, "{}", t.task_id);
        let theirs: Vec<_> = t
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.status, c.exit_code))
            .collect();
        let ours: Vec<_> = own
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.status, c.exit_code))
            .collect();
        assert_eq!(theirs, ours, "{}", t.task_id);
    }
    let seen: BTreeSet<u64> = received(&hooks.events()).into_iter().collect();
    let recorded = store.last_recorded_seq().unwrap();
    let lost: Vec<u64> = (1..=recorded).filter(|s| !seen.contains(s)).collect();
    assert!(lost.is_empty(), "state changes never received: {lost:?}");
    for task in tasks {
        for call in ["create", "start"] {
            assert_eq!(
                count_calls(fake, &format!("{call} {}", app(task))),
                1,
                "{call} of {task}: {:?}",
                fake.calls()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn wire_faults_lose_no_state_change_and_run_nothing_twice() {
    let scheduler = Scheduler::start().await;
    let hooks = scheduler.hooks.clone();
    hooks.fail_next(Call::Register, tonic::Code::Unavailable);
    hooks.fail_next(Call::Session, tonic::Code::Internal);
    hooks.duplicate_sends(true);
    hooks.duplicate_acks(true);
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let agent = Agent::start(&scheduler, dir.path(), &fake);
    scheduler
        .until("a session", |e| sessions_opened(e) == 1)
        .await;
    let id = agent.instance_id();
    let mut control = scheduler.control().await;

    let mut tasks = run_tasks(&mut control, 4).await;
    assert!(hooks.drop_session(&id), "the session was up");
    scheduler
        .until("the session back", |e| sessions_opened(e) == 2)
        .await;
    tasks.extend(run_tasks(&mut control, 4).await);
    until_all(&mut control, &tasks, TaskStatus::Running).await;

    // Four exit with codes of their own while their acks are held back; the acks then come
    // last first, on a session that a drop ends right after.
    hooks.hold_acks(true);
    let before = received(&hooks.events()).len();
    for (code, task) in (3..).zip(&tasks[..4]) {
        fake.exit(&app(task), code);
    }
    until_all(&mut control, &tasks[..4], TaskStatus::Stopped).await;
    scheduler
        .until("the exits' state changes", |e| received(e).len() > before)
        .await;
    hooks.hold_acks(false);
    assert!(hooks.release_acks_reversed().await > 0, "acks were held");
    // The others are stopped, the stream dropped halfway.
    for (i, task) in tasks[4..].iter().enumerate() {
        control
            .stop_task(pb::StopTaskRequest {
                cluster: "default".into(),
                task_id: task.clone(),
                reason: "burst over".into(),
            })
            .await
            .unwrap();
        if i == 1 {
            hooks.drop_session(&id);
        }
    }
    let described = until_all(&mut control, &tasks, TaskStatus::Stopped).await;
    until_all_acked(&agent.store).await;
    for t in &described[..4] {
        let code = tasks[..4].iter().position(|id| *id == t.task_id).unwrap() as i32 + 3;
        assert_eq!(t.containers[0].exit_code, Some(code), "{t:?}");
    }
    for t in &described[4..] {
        assert_eq!(t.containers[0].exit_code, Some(143), "{t:?}");
    }
    assert_converged(&described, &agent.store, &fake, &hooks, &tasks);
    // The faults happened: sessions reopened, state changes and acks came twice.
    let events = hooks.events();
    assert!(sessions_opened(&events) >= 3, "{events:?}");
    agent.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn agent_restarts_under_delayed_acks_lose_nothing_and_start_nothing_twice() {
    let scheduler = Scheduler::start().await;
    let hooks = scheduler.hooks.clone();
    // Nothing is acked before the agent goes down: each restart finds a full outbox.
    hooks.delay_acks(Some(3 * HEARTBEAT));
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let mut agent = Agent::start(&scheduler, dir.path(), &fake);
    scheduler
        .until("a session", |e| sessions_opened(e) == 1)
        .await;
    let mut control = scheduler.control().await;
    let tasks = run_tasks(&mut control, 6).await;
    until_all(&mut control, &tasks, TaskStatus::Running).await;

    for (round, task) in tasks.iter().enumerate() {
        // The agent goes away, its task's container exits (or, every other round, is
        // stopped by the user) meanwhile, and the agent comes back.
        agent.stop().await;
        if round % 2 == 0 {
            fake.exit(&app(task), 20 + round as u32);
        } else {
            control
                .stop_task(pb::StopTaskRequest {
                    cluster: "default".into(),
                    task_id: task.clone(),
                    reason: "burst over".into(),
                })
                .await
                .unwrap();
        }
        let opened = sessions_opened(&hooks.events());
        agent = Agent::start(&scheduler, dir.path(), &fake);
        scheduler
            .until("the agent back", |e| sessions_opened(e) > opened)
            .await;
    }
    let described = until_all(&mut control, &tasks, TaskStatus::Stopped).await;
    until_all_acked(&agent.store).await;
    for t in &described {
        let round = tasks.iter().position(|id| *id == t.task_id).unwrap();
        let expected = if round % 2 == 0 {
            20 + round as i32
        } else {
            143
        };
        assert_eq!(t.containers[0].exit_code, Some(expected), "{t:?}");
    }
    assert_converged(&described, &agent.store, &fake, &hooks, &tasks);
    agent.stop().await;
    scheduler.stop().await;
}

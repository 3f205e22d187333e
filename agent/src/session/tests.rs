//! The session against the real scheduler (`berth_scheduler::server`, in process on
//! 127.0.0.1:0, scripted through its test hooks) on paused tokio time: registration retried
//! after a failed call, assignments handed to the engine and acked, reconnection after a
//! dropped stream, the outbox resent only after what the scheduler has, silence detection, and
//! the identity check. The engine is a recording fake; the agent's store is the real one.
//!
//! With paused time over real sockets, the clock jumps to the next timer whenever every task
//! waits on I/O; the session's and the scheduler's own tickers bound those jumps, and every
//! wait below is on an event with a generous virtual deadline.

use std::sync::Mutex;

use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{self as pb, TaskStatus};
use berth_scheduler::server::{Call, Event, ServerConfig, TestHooks, run_with_hooks};
use tokio::task::JoinHandle;

use super::*;
use crate::engine::LogTarget;

const HEARTBEAT: Duration = Duration::from_secs(10);

/// The scheduler, serving with test hooks until the test ends.
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

    /// Waits (at most ten virtual minutes) until the events satisfy `done`.
    async fn until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        tokio::time::timeout(Duration::from_secs(600), self.hooks.wait_for(done))
            .await
            .unwrap_or_else(|_| panic!("{what}: not seen; events: {:?}", self.hooks.events()));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn sessions_opened(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionOpened {
                last_applied_seq,
                last_received_seq,
                ..
            } => Some((*last_applied_seq, *last_received_seq)),
            _ => None,
        })
        .collect()
}

fn state_changes(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateChange { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn registrations(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Registered { instance_id } => Some(instance_id.clone()),
            _ => None,
        })
        .collect()
}

/// An engine that records what the session hands it and applies everything at once.
#[derive(Debug, Clone, Default)]
struct FakeEngine {
    commands: Arc<Mutex<Vec<String>>>,
}

impl FakeEngine {
    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl LogTargets for FakeEngine {
    async fn log_target(&self, _task_id: &str, _container: &str) -> Option<LogTarget> {
        None
    }
}

#[async_trait::async_trait]
impl TaskEngine for FakeEngine {
    async fn send(&self, command: Command) -> bool {
        let entry = match command {
            Command::Assign(a) => format!("assign {}", a.task_id),
            Command::Stop(order) => format!("stop {}", order.task_id),
            other => format!("{other:?}"),
        };
        self.commands.lock().unwrap().push(entry);
        true
    }

    async fn barrier(&self) -> bool {
        true
    }

    async fn full_state(&self) -> Vec<TaskState> {
        Vec::new()
    }

    async fn found(&self) -> Vec<berth_proto::v1::FoundContainer> {
        Vec::new()
    }
}

/// An agent: its own data dir and store, the fake engine, and the session once started.
struct Agent {
    config: SessionConfig,
    store: Arc<Store>,
    engine: FakeEngine,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
    session: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn new(scheduler: &Scheduler, identity: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let config = SessionConfig {
            endpoint: scheduler.endpoint.clone(),
            cluster: "default".into(),
            heartbeat_interval: HEARTBEAT,
            instance_identity: identity.into(),
            version_info: VersionInfo::default(),
            resources: Resources {
                cpu: 1024,
                memory_mib: 1024,
                ..Default::default()
            },
            attributes: Default::default(),
            tls: None,
            health: Default::default(),
            disk: Arc::new(crate::disk::Disk::new(dir.path())),
            images: None,
        };
        Self {
            config,
            store,
            engine: FakeEngine::default(),
            outbox: Arc::new(Notify::new()),
            cancel: CancellationToken::new(),
            session: None,
            _dir: dir,
        }
    }

    fn start(&mut self) {
        self.session = Some(tokio::spawn(run(
            self.config.clone(),
            self.store.clone(),
            self.engine.clone(),
            self.outbox.clone(),
            self.cancel.clone(),
        )));
    }

    async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(session) = self.session.take() {
            session.await.unwrap();
        }
    }

    fn instance_id(&self) -> String {
        self.store.registration().unwrap().expect("registered").1
    }

    /// Records a task state as the engine does; `announce` pokes the session to send it.
    fn record(&self, task_id: &str, announce: bool) -> u64 {
        let seq = self
            .store
            .record_state(&TaskState {
                task_id: task_id.into(),
                status: TaskStatus::Pending as i32,
                ..Default::default()
            })
            .unwrap();
        if announce {
            self.outbox.notify_one();
        }
        seq
    }

    fn unacked(&self) -> Vec<u64> {
        let outbox = self.store.outbox_after(0).unwrap();
        outbox.into_iter().map(|(seq, _)| seq).collect()
    }
}

#[tokio::test(start_paused = true)]
async fn registration_is_retried_and_assignments_reach_the_engine_and_are_acked() {
    let scheduler = Scheduler::start().await;
    scheduler
        .hooks
        .fail_next(Call::Register, tonic::Code::Unavailable);
    scheduler
        .hooks
        .fail_next(Call::Session, tonic::Code::Unavailable);
    let mut agent = Agent::new(&scheduler, "host-1");
    agent.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    // The failed Register and Session were retried: one registration per session attempt.
    let id = agent.instance_id();
    assert_eq!(
        registrations(&scheduler.hooks.events()),
        vec![id.clone(), id.clone()]
    );

    let mut control = ControlServiceClient::connect(scheduler.endpoint.clone())
        .await
        .unwrap();
    control
        .register_task_definition(pb::RegisterTaskDefinitionRequest {
            task_definition_json: r#"{"family":"web","networkMode":"none","containerDefinitions":[{"name":"app","image":"nginx","memory":128}]}"#.into(),
        })
        .await
        .unwrap();
    let task = control
        .run_task(pb::RunTaskRequest {
            cluster: "default".into(),
            definition: Some(pb::run_task_request::Definition::TaskDefinition(
                "web".into(),
            )),
            count: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
        .remove(0);
    scheduler
        .until("the assignment acked", |e| {
            e.contains(&Event::Acked {
                instance_id: id.clone(),
                seq: 1,
            })
        })
        .await;
    assert_eq!(
        agent.engine.commands(),
        vec![format!("assign {}", task.task_id)]
    );
    agent.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_is_reopened_as_the_same_instance() {
    let scheduler = Scheduler::start().await;
    let mut agent = Agent::new(&scheduler, "host-1");
    agent.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    let id = agent.instance_id();
    assert!(scheduler.hooks.drop_session(&id));
    scheduler
        .until("a second session", |e| sessions_opened(e).len() == 2)
        .await;
    assert!(
        registrations(&scheduler.hooks.events())
            .iter()
            .all(|registered| *registered == id)
    );
    // The new session carries what the engine reports.
    let seq = agent.record("t-1", true);
    scheduler
        .until("the state change", |e| state_changes(e).contains(&seq))
        .await;
    agent.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_outbox_is_resent_after_what_the_scheduler_has() {
    let scheduler = Scheduler::start().await;
    // The scheduler stores each state change at once but acks none within the test.
    scheduler
        .hooks
        .delay_acks(Some(Duration::from_secs(24 * 3600)));
    let mut agent = Agent::new(&scheduler, "host-1");
    agent.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    let (first, second) = (agent.record("t-1", true), agent.record("t-2", true));
    scheduler
        .until("two state changes", |e| state_changes(e).len() == 2)
        .await;
    assert_eq!(agent.unacked(), vec![first, second]);
    // Recorded but not announced, so it waits for the next session.
    let third = agent.record("t-3", false);
    assert!(scheduler.hooks.drop_session(&agent.instance_id()));
    scheduler
        .until("the third state change", |e| {
            state_changes(e).contains(&third)
        })
        .await;
    let events = scheduler.hooks.events();
    // The new session started where the scheduler was: the agent dropped what it has and sent
    // only the rest.
    assert_eq!(sessions_opened(&events)[1], (0, second));
    assert_eq!(state_changes(&events), vec![first, second, third]);
    assert_eq!(agent.unacked(), vec![third]);
    agent.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_scheduler_is_left_and_the_session_reopened() {
    let scheduler = Scheduler::start().await;
    let mut agent = Agent::new(&scheduler, "host-1");
    agent.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    let stalled = tokio::time::Instant::now();
    assert!(scheduler.hooks.stall_session(&agent.instance_id()));
    scheduler
        .until("a second session", |e| sessions_opened(e).len() == 2)
        .await;
    // Silence is three heartbeat intervals without a message, seen on the agent's next
    // heartbeat tick after that.
    let waited = stalled.elapsed();
    assert!(
        waited > 3 * HEARTBEAT && waited <= 4 * HEARTBEAT + Duration::from_secs(1),
        "{waited:?}"
    );
    agent.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_ahead_of_the_outbox_is_refused_and_the_outbox_kept() {
    let scheduler = Scheduler::start().await;
    let mut first = Agent::new(&scheduler, "host-1");
    first.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    for task in ["t-1", "t-2", "t-3"] {
        first.record(task, true);
    }
    scheduler
        .until("three state changes", |e| state_changes(e).len() == 3)
        .await;
    first.stop().await;

    // Another host with the same identity: a copied data dir, whose store met the scheduler
    // before it was copied (it is not new) but holds none of the first host's changes.
    let second = Agent::new(&scheduler, "host-1");
    second.store.mark_established().unwrap();
    let pending = second.record("t-9", false);
    let mut backoff = reconnects();
    let refused = once(
        &second.config,
        &second.store,
        &second.engine,
        &second.outbox,
        &second.cancel,
        &mut backoff,
    )
    .await;
    let Err(SessionError::Register(message)) = refused else {
        panic!("accepted: {refused:?}");
    };
    assert!(
        message.contains("another host uses this agent's identity"),
        "{message}"
    );
    assert_eq!(second.instance_id(), first.instance_id());
    assert_eq!(second.unacked(), vec![pending]);
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_store_continues_after_the_schedulers_numbering() {
    let scheduler = Scheduler::start().await;
    let mut first = Agent::new(&scheduler, "host-1");
    first.start();
    for task in ["t-1", "t-2", "t-3"] {
        first.record(task, true);
    }
    scheduler
        .until("three state changes", |e| state_changes(e).len() == 3)
        .await;
    first.stop().await;

    // The same host, its store lost (deleted, or moved aside as corrupt): a new one.
    let mut again = Agent::new(&scheduler, "host-1");
    assert_eq!(again.record("t-9", false), 1);
    again.start();
    scheduler
        .until(
            "the new store's change, numbered after the scheduler's",
            |e| state_changes(e) == [1, 2, 3, 4],
        )
        .await;
    assert_eq!(again.instance_id(), first.instance_id());
    assert!(again.store.rebuilt().unwrap().is_none());
    again.stop().await;
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_assignment_at_or_below_the_last_applied_is_acked_and_never_run_again() {
    let scheduler = Scheduler::start().await;
    let agent = Agent::new(&scheduler, "host-1");
    agent.store.mark_applied(3).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let logs = LogRequests::new(Arc::new(agent.engine.clone()), tx.clone());
    let images = crate::images::ImageRequests::new(None, tx.clone());
    for seq in [2, 3] {
        let assignment = berth_proto::v1::TaskAssignment {
            seq,
            task_id: format!("t-{seq}"),
            ..Default::default()
        };
        handle(
            &agent.config,
            Some(In::Assignment(assignment)),
            &tx,
            &agent.store,
            &agent.engine,
            (&logs, &images),
        )
        .await
        .unwrap();
        let acked = rx.recv().await.unwrap();
        assert!(
            matches!(acked.message, Some(Out::Ack(Ack { seq: s })) if s == seq),
            "{acked:?}"
        );
    }
    assert!(agent.engine.commands().is_empty(), "nothing ran again");
    let fresh = berth_proto::v1::TaskAssignment {
        seq: 4,
        task_id: "t-4".into(),
        ..Default::default()
    };
    handle(
        &agent.config,
        Some(In::Assignment(fresh)),
        &tx,
        &agent.store,
        &agent.engine,
        (&logs, &images),
    )
    .await
    .unwrap();
    assert_eq!(agent.engine.commands(), vec!["assign t-4".to_owned()]);
    scheduler.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deregistered_agent_is_cut_off_and_retries_only_slowly() {
    let scheduler = Scheduler::start().await;
    let mut agent = Agent::new(&scheduler, "host-1");
    agent.start();
    scheduler
        .until("a session", |e| sessions_opened(e).len() == 1)
        .await;
    let id = agent.instance_id();
    let mut control = ControlServiceClient::connect(scheduler.endpoint.clone())
        .await
        .unwrap();
    control
        .deregister_container_instance(pb::DeregisterContainerInstanceRequest {
            cluster: "default".into(),
            container_instance_id: id.clone(),
            force: false,
        })
        .await
        .unwrap();
    scheduler
        .until("the session closed", |e| {
            e.contains(&Event::SessionClosed {
                instance_id: id.clone(),
            })
        })
        .await;
    // Register is refused from now on, and a refusal is retried only once a minute.
    let refused = once(
        &agent.config,
        &agent.store,
        &agent.engine,
        &agent.outbox,
        &agent.cancel,
        &mut reconnects(),
    )
    .await;
    let Err(SessionError::Refused(message)) = refused else {
        panic!("not refused: {refused:?}");
    };
    assert!(message.contains("was deregistered"), "{message}");
    let mut backoff = reconnects();
    let refusal = SessionError::Refused(message);
    for _ in 0..3 {
        assert_eq!(retry_delay(&refusal, &mut backoff), REFUSED_RETRY);
    }
    let broken = SessionError::Stream("reset".into());
    assert!(retry_delay(&broken, &mut backoff) < Duration::from_secs(1));
    agent.stop().await;
    scheduler.stop().await;
}

#[test]
fn a_refused_certificate_is_named_as_such() {
    let io = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
    );
    let status = tonic::Status::from_error(Box::new(io));
    let SessionError::Refused(message) = super::refusal_or(&status, SessionError::Register) else {
        panic!("a certificate refusal was not taken for one");
    };
    assert!(
        message.contains("refused this agent's certificate") && message.contains("UnknownCA"),
        "{message}"
    );
    // Any other transport failure stays what it was.
    let status = tonic::Status::unavailable("transport error");
    assert!(matches!(
        super::refusal_or(&status, SessionError::Register),
        SessionError::Register(_)
    ));
}

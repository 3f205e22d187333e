//! Engine tests, on a fake host (`fake.rs`) that records calls and whose containers exit on
//! demand. This file holds the harness (an engine over a temporary store) and the helpers the
//! areas share; each area has its file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{
    ContainerDefinition, ContainerDependency, DependencyCondition, HealthStatus, StopCode,
    StopTaskOrder, TaskAssignment, TaskDefinition, TaskState, TaskStatus,
};
use berth_runtime::{ContainerId, DnsConfig, ExecOutcome, Mount, SwapSupport};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Command, Engine, EngineConfig, EngineHandle};
use crate::network::TaskNetworking;
use crate::store::Store;
use fake::Fake;

mod adoption;
mod confinement;
mod degraded;
mod deps;
mod durability;
mod failures;
mod fake;
mod fidelity;
mod health;
mod host_inputs;
mod lifecycle;
mod network;
mod pull_behavior;
mod restarts;
mod secrets;
mod session_faults;

/// An engine running over a temporary store and a fake host.
struct Harness {
    fake: Arc<Fake>,
    store: Arc<Store>,
    handle: EngineHandle,
    /// Whether the store takes writes, as the engine sees it.
    disk: Arc<crate::disk::Disk>,
    cancel: CancellationToken,
    /// The engine's own task, to wait for it after cancelling (an agent restart).
    engine: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Hands the engine an assignment.
    async fn assign(&self, a: TaskAssignment) {
        let sent = self.handle.send(Command::Assign(Box::new(a))).await;
        assert!(sent, "the engine has stopped");
    }

    /// Assigns a task and waits until it is RUNNING (every container started); its state then.
    async fn run(&self, a: TaskAssignment) -> TaskState {
        let task = a.task_id.clone();
        self.assign(a).await;
        until(&self.store, &task, TaskStatus::Running).await
    }

    /// Sends a user's stop order for `task`.
    async fn stop(&self, task: &str, seq: u64, reason: &str) {
        let order = StopTaskOrder {
            seq,
            task_id: task.into(),
            stop_code: StopCode::UserInitiated as i32,
            reason: reason.into(),
        };
        let sent = self.handle.send(Command::Stop(order)).await;
        assert!(sent, "the engine has stopped");
    }
}

/// The tests' engine configuration: the production restart backoff, no cleanup wait, nothing
/// on the host allowed, one name server.
fn test_config() -> EngineConfig {
    EngineConfig {
        stop_timeout: Duration::from_secs(30),
        cleanup_wait: Duration::ZERO,
        restart_backoff: super::RESTART_BACKOFF,
        restart_backoff_max: super::RESTART_BACKOFF_MAX,
        volume_host_paths: Vec::new(),
        allow_privileged: false,
        allow_host_pid_ipc: false,
        allowed_devices: Vec::new(),
        allow_unconfined_seccomp: true,
        allowed_capabilities: Vec::new(),
        environment_file_paths: Vec::new(),
        pull_behavior: berth_policy::PullBehavior::Default,
        secret_source: Arc::new(crate::secrets::FixedSource::default()),
        aws_secrets: Arc::new(crate::secrets::FixedAws::default()),
        awslogs: crate::logs::awslogs::AwsLogs::new(
            None,
            tokio_util::sync::CancellationToken::new(),
        ),
        host_dns: DnsConfig {
            servers: vec!["10.0.0.53".parse().unwrap()],
            ..Default::default()
        },
    }
}

fn start() -> Harness {
    start_on(tempfile::tempdir().unwrap(), Vec::new(), false)
}

/// An engine whose configuration allows tasks to mount these host paths.
fn start_allowing(volume_host_paths: Vec<PathBuf>) -> Harness {
    start_on(tempfile::tempdir().unwrap(), volume_host_paths, false)
}

/// An engine whose configuration allows (or not) privileged containers.
fn start_with(allow_privileged: bool) -> Harness {
    start_on(tempfile::tempdir().unwrap(), Vec::new(), allow_privileged)
}

/// An engine over the store in `dir` (which may hold tasks of an earlier run).
fn start_on(
    dir: tempfile::TempDir,
    volume_host_paths: Vec<PathBuf>,
    allow_privileged: bool,
) -> Harness {
    start_configured(dir, |c| {
        c.volume_host_paths = volume_host_paths;
        c.allow_privileged = allow_privileged;
    })
}

/// An engine whose configuration `configure` changes from the tests' defaults.
fn start_configured(dir: tempfile::TempDir, configure: impl FnOnce(&mut EngineConfig)) -> Harness {
    start_with_fake(dir, Arc::new(Fake::default()), |_| {}, configure)
}

/// An engine over the store in `dir` and the given fake host; `prepare` sees the store
/// before the engine starts.
fn start_with_fake(
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    prepare: impl FnOnce(&Arc<Store>),
    configure: impl FnOnce(&mut EngineConfig),
) -> Harness {
    start_run(dir, fake, prepare, configure, None)
}

/// [`start_with_fake`] as the run `runs.current`, after the ending `runs` recorded.
fn start_run(
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    prepare: impl FnOnce(&Arc<Store>),
    configure: impl FnOnce(&mut EngineConfig),
    runs: Option<crate::last_exit::Runs>,
) -> Harness {
    let store = Arc::new(Store::open(dir.path()).unwrap());
    prepare(&store);
    let cancel = CancellationToken::new();
    let mut config = test_config();
    configure(&mut config);
    let (mut engine, handle) = Engine::new(
        Arc::clone(&fake),
        Arc::clone(&fake) as Arc<dyn TaskNetworking>,
        Arc::clone(&store),
        config,
        Arc::new(Notify::new()),
        cancel.clone(),
    );
    if let Some(runs) = runs {
        engine.set_runs(runs);
    }
    let disk = engine.disk();
    let engine = tokio::spawn(engine.run());
    Harness {
        fake,
        store,
        handle,
        disk,
        cancel,
        engine,
        _dir: dir,
    }
}

fn assignment(task: &str, containers: &[(&str, bool, &str)]) -> TaskAssignment {
    TaskAssignment {
        seq: 1,
        task_id: task.into(),
        desired_status: berth_proto::v1::DesiredStatus::Running as i32,
        definition: Some(TaskDefinition {
            family: "f".into(),
            revision: 1,
            network_mode: "none".into(),
            containers: containers
                .iter()
                .map(|(name, essential, image)| ContainerDefinition {
                    name: (*name).into(),
                    image: (*image).into(),
                    essential: *essential,
                    memory_mib: 64,
                    stop_timeout_seconds: 2,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A store dir holding `a` as an earlier run left it: STOPPED, its cleanup still to do.
fn stored_as_stopped(a: &TaskAssignment) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stopped = TaskState {
        task_id: a.task_id.clone(),
        status: TaskStatus::Stopped as i32,
        ..Default::default()
    };
    assert!(store.accept_assignment(a, &stopped).unwrap());
    dir
}

/// The reported states of a task, in order.
fn reports(store: &Store, task: &str) -> Vec<TaskState> {
    store
        .recorded()
        .into_iter()
        .filter(|s| s.task_id == task)
        .collect()
}

async fn until(store: &Store, task: &str, status: TaskStatus) -> TaskState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = reports(store, task)
            .into_iter()
            .find(|s| s.status == status as i32)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task} never reached {status:?}: {:?}",
            reports(store, task)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the report of the task's release (after the cleanup), which leaves it STOPPED.
async fn until_released(store: &Store, task: &str) -> TaskState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = reports(store, task)
            .into_iter()
            .find(|s| s.resources_released_at.is_some())
        {
            assert_eq!(
                s.status,
                TaskStatus::Stopped as i32,
                "STOPPED is the last status"
            );
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task} was never released: {:?}",
            reports(store, task)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn with_mode(mut a: TaskAssignment, mode: &str) -> TaskAssignment {
    if let Some(d) = a.definition.as_mut() {
        d.network_mode = mode.into();
    }
    a
}

async fn stop_task(h: &Harness, task: &str, seq: u64) {
    h.stop(task, seq, "done").await;
    until_released(&h.store, task).await;
}

/// The containers started so far, in order.
fn started(fake: &Fake) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter_map(|c| c.strip_prefix("start ").map(str::to_owned))
        .collect()
}

async fn until_started(fake: &Fake, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while started(fake) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "started {:?}, expected {expected:?}",
            started(fake)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The last reported state of a task.
fn last(store: &Store, task: &str) -> TaskState {
    reports(store, task).pop().expect("a report")
}

fn count_calls(fake: &Fake, call: &str) -> usize {
    fake.calls().iter().filter(|c| *c == call).count()
}

/// A one-container assignment whose container `change` alters.
fn one_container(task: &str, change: impl FnOnce(&mut ContainerDefinition)) -> TaskAssignment {
    let mut a = assignment(task, &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        change(&mut d.containers[0]);
    }
    a
}

/// A container: name, essential, dependsOn (name, condition), startTimeout.
type DepSpec<'a> = (&'a str, bool, &'a [(&'a str, DependencyCondition)], u32);

/// An assignment whose containers depend on others.
fn with_deps(task: &str, containers: &[DepSpec<'_>]) -> TaskAssignment {
    let names: Vec<(&str, bool, &str)> = containers
        .iter()
        .map(|(n, e, _, _)| (*n, *e, "img:1"))
        .collect();
    let mut a = assignment(task, &names);
    if let Some(d) = a.definition.as_mut() {
        for (c, (_, _, deps, timeout)) in d.containers.iter_mut().zip(containers) {
            c.start_timeout_seconds = *timeout;
            c.depends_on = deps
                .iter()
                .map(|(name, condition)| ContainerDependency {
                    container_name: (*name).into(),
                    condition: *condition as i32,
                })
                .collect();
        }
    }
    a
}

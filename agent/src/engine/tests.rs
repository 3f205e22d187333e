//! Engine tests with a fake runtime that records calls and whose containers exit on demand.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_proto::v1::{
    ContainerDefinition, ContainerDependency, DependencyCondition, HealthStatus, StopCode,
    StopTaskOrder, TaskAssignment, TaskDefinition, TaskState, TaskStatus,
};
use berth_runtime::{
    ContainerId, ContainerInfo, ContainerSpec, DnsConfig, Error, ExecOutcome, ExitStatus, MacAddr,
    Mount, NetworkError, PortBinding, PullError, PulledImage, RegistryAuth, SwapSupport, TaskFiles,
    TaskLimits, TaskNetwork, TaskNetworkSpec, TaskVolume,
};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Command, Engine, EngineConfig, EngineHandle};
use crate::network::TaskNetworking;
use crate::runtime::ContainerRuntime;
use crate::store::Store;

mod failures;
mod fidelity;

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    fail_pull: Mutex<HashSet<String>>,
    exits: Mutex<HashMap<ContainerId, watch::Sender<Option<ExitStatus>>>>,
    /// How many wait calls fail as if containerd's connection broke.
    failing_waits: Mutex<u32>,
    /// Every spec created, in order.
    specs: Mutex<Vec<ContainerSpec>>,
    /// What an exec (a health check) in each container ends with; exit 0 when not set.
    execs: Mutex<HashMap<ContainerId, ExecOutcome>>,
    /// Every network namespace set up, in order.
    net_specs: Mutex<Vec<TaskNetworkSpec>>,
    /// The files last written for a namespace by name (links).
    net_files: Mutex<HashMap<String, DnsConfig>>,
    /// What the host can limit of swap; everything when not set.
    swap: Mutex<Option<SwapSupport>>,
    /// Containers whose start fails (as a command that is not executable fails runc's create).
    fail_start: Mutex<HashSet<ContainerId>>,
    /// When set, each start first asks this engine for the task of every address the
    /// container's task was given, as the task endpoint does; the answers are kept in
    /// `known_at_start` (container, whether every address was known).
    start_probe: Mutex<Option<EngineHandle>>,
    known_at_start: Mutex<Vec<(String, bool)>>,
    /// Images whose pull panics (a bug in the runtime, as far as the engine can tell).
    panic_pull: Mutex<HashSet<String>>,
    /// Containers whose wait panics once their exit is seen, so many more times each.
    panic_on_exit: Mutex<HashMap<ContainerId, u32>>,
    /// What `list` finds in containerd (the containers an earlier run left).
    existing: Mutex<Vec<ContainerInfo>>,
    /// Runs at each reattach (after an agent restart), with the container's ID.
    on_reattach: Mutex<Option<ReattachHook>>,
}

type ReattachHook = Box<dyn Fn(&ContainerId) + Send>;

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake").finish_non_exhaustive()
    }
}

/// The fake host network: addresses 10.0.0.2 upwards and ephemeral ports 49153 upwards, in
/// set-up order; every call is logged with the runtime's.
#[async_trait]
impl TaskNetworking for Fake {
    async fn setup(&self, spec: &TaskNetworkSpec) -> Result<TaskNetwork, NetworkError> {
        self.log(format!("netns setup {}", spec.task));
        self.net_specs.lock().unwrap().push(spec.clone());
        let n = u8::try_from(self.net_specs.lock().unwrap().len()).unwrap();
        let dir = PathBuf::from("/fake/files").join(&spec.task);
        Ok(TaskNetwork {
            task: spec.task.clone(),
            netns: PathBuf::from("/fake/netns").join(&spec.task),
            interface: "eth0".into(),
            mac: MacAddr([2, 0x42, 10, 0, 0, n + 1]),
            address: Ipv4Addr::new(10, 0, 0, n + 1),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            ports: spec
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| PortBinding {
                    protocol: p.protocol,
                    host_port: if p.host_port == 0 {
                        49153 + u16::try_from(i).unwrap()
                    } else {
                        u16::try_from(p.host_port).unwrap()
                    },
                    container_port: u16::try_from(p.container_port).unwrap(),
                })
                .collect(),
            files: TaskFiles {
                resolv_conf: dir.join("resolv.conf"),
                hosts: dir.join("hosts"),
                hostname: dir.join("hostname"),
            },
        })
    }
    fn write_files(
        &self,
        name: &str,
        dns: &DnsConfig,
        _address: Ipv4Addr,
    ) -> Result<TaskFiles, NetworkError> {
        self.log(format!("netns files {name}"));
        self.net_files
            .lock()
            .unwrap()
            .insert(name.to_owned(), dns.clone());
        let dir = PathBuf::from("/fake/files").join(name);
        Ok(TaskFiles {
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
        })
    }
    async fn teardown(&self, name: &str) -> Result<(), NetworkError> {
        self.log(format!("netns teardown {name}"));
        Ok(())
    }
    async fn owner_of(&self, address: Ipv4Addr) -> Option<String> {
        let n = usize::from(address.octets()[3]).checked_sub(2)?;
        self.net_specs
            .lock()
            .unwrap()
            .get(n)
            .map(|s| s.task.clone())
    }
    async fn repair(&self, live: &BTreeSet<String>) -> Result<Vec<String>, NetworkError> {
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        self.log(format!("netns repair [{}]", live.join(" ")));
        Ok(Vec::new())
    }
}

impl Fake {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn exec_outcome(&self, id: &ContainerId, outcome: ExecOutcome) {
        self.execs.lock().unwrap().insert(id.clone(), outcome);
    }
    fn exit(&self, id: &ContainerId, code: u32) {
        if let Some(c) = self
            .existing
            .lock()
            .unwrap()
            .iter_mut()
            .find(|c| c.id == *id)
        {
            c.status = berth_runtime::ContainerStatus::Stopped;
            c.exit_code = Some(code);
        }
        if let Some(tx) = self.exits.lock().unwrap().get(id) {
            // Kept even when no wait has subscribed yet (a stop that comes before the wait
            // was first polled), as containerd keeps an exit status.
            tx.send_replace(Some(ExitStatus {
                code,
                exited_at: SystemTime::now(),
                oom_killed: false,
            }));
        }
    }
}

#[async_trait]
impl ContainerRuntime for Fake {
    async fn pull(&self, image: &str, _auth: &RegistryAuth) -> Result<PulledImage, PullError> {
        self.log(format!("pull {image}"));
        if self.panic_pull.lock().unwrap().contains(image) {
            panic!("fake pull of {image} panicked");
        }
        if self.fail_pull.lock().unwrap().contains(image) {
            return Err(PullError::ManifestUnknown {
                registry: "127.0.0.1:5000".into(),
                repository: "missing".into(),
                tag: "1".into(),
            });
        }
        Ok(PulledImage {
            name: image.into(),
            target_digest: "sha256:t".into(),
            manifest_digest: "sha256:m".into(),
            config_digest: "sha256:c".into(),
            chain_id: "sha256:x".into(),
            size: 1,
            downloaded: 1,
        })
    }
    fn validate_limits(
        &self,
        _task: &TaskLimits,
        _containers: &[ContainerSpec],
    ) -> Result<(), Error> {
        Ok(())
    }
    async fn create_task_cgroup(&self, task_id: &str, _limits: &TaskLimits) -> Result<(), Error> {
        self.log(format!("cgroup {task_id}"));
        Ok(())
    }
    async fn remove_task_cgroup(&self, task_id: &str) -> Result<(), Error> {
        self.log(format!("rmcgroup {task_id}"));
        Ok(())
    }
    fn swap_support(&self, _task_id: &str) -> Result<SwapSupport, Error> {
        Ok(self.swap.lock().unwrap().unwrap_or_default())
    }
    async fn remove_task_logs(&self, task_id: &str) -> Result<(), Error> {
        self.log(format!("rmlogs {task_id}"));
        Ok(())
    }
    async fn create_task_volumes(
        &self,
        task_id: &str,
        volumes: &[TaskVolume],
    ) -> Result<BTreeMap<String, PathBuf>, Error> {
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        self.log(format!("volumes {task_id} {}", names.join(",")));
        Ok(volumes
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    PathBuf::from(format!("/fake/volumes/{task_id}/{}", v.name)),
                )
            })
            .collect())
    }
    async fn remove_task_volumes(&self, task_id: &str) -> Result<(), Error> {
        self.log(format!("rmvolumes {task_id}"));
        Ok(())
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, Error> {
        let id = ContainerId::for_container(&spec.task_id, &spec.name);
        self.log(format!("create {id}"));
        self.specs.lock().unwrap().push(spec.clone());
        self.existing.lock().unwrap().push(ContainerInfo {
            id: id.clone(),
            task_id: spec.task_id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            status: berth_runtime::ContainerStatus::Created,
            pid: None,
            exit_code: None,
            stop_timeout: None,
        });
        self.exits
            .lock()
            .unwrap()
            .insert(id.clone(), watch::channel(None).0);
        Ok(id)
    }
    async fn start(&self, id: &ContainerId) -> Result<u32, Error> {
        self.log(format!("start {id}"));
        if let Some(c) = self
            .existing
            .lock()
            .unwrap()
            .iter_mut()
            .find(|c| c.id == *id)
        {
            c.status = berth_runtime::ContainerStatus::Running;
            c.pid = Some(42);
        }
        let probe = self.start_probe.lock().unwrap().clone();
        if let Some(engine) = probe {
            let task = id.as_str().split('.').next().unwrap_or_default().to_owned();
            let addresses: Vec<Ipv4Addr> = (self.net_specs.lock().unwrap().iter())
                .zip(2u8..)
                .filter(|(s, _)| s.task == task || s.task.starts_with(&format!("{task}.")))
                .map(|(_, n)| Ipv4Addr::new(10, 0, 0, n))
                .collect();
            let mut known = !addresses.is_empty();
            for address in addresses {
                known &= engine.task_at(address).await.is_some();
            }
            self.known_at_start
                .lock()
                .unwrap()
                .push((id.to_string(), known));
        }
        if self.fail_start.lock().unwrap().contains(id) {
            return Err(Error::Io {
                what: "start the container process",
                path: PathBuf::from("/etc/passwd"),
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        Ok(42)
    }
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, Error> {
        {
            let mut failing = self.failing_waits.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(Error::Timeout {
                    what: "wait",
                    id: id.to_string(),
                    seconds: 0,
                });
            }
        }
        let mut rx = match self.exits.lock().unwrap().get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                return Err(Error::NotFound {
                    id: id.to_string(),
                    namespace: "test".into(),
                });
            }
        };
        loop {
            if let Some(exit) = rx.borrow().clone() {
                let panics = match self.panic_on_exit.lock().unwrap().get_mut(id) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                };
                assert!(!panics, "fake wait of {id} panicked");
                return Ok(exit);
            }
            if rx.changed().await.is_err() {
                return Err(Error::NotFound {
                    id: id.to_string(),
                    namespace: "test".into(),
                });
            }
        }
    }
    async fn restart(&self, id: &ContainerId) -> Result<(), Error> {
        self.log(format!("restart {id}"));
        if let Some(tx) = self.exits.lock().unwrap().get(id) {
            tx.send_replace(None);
        }
        Ok(())
    }
    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus, Error> {
        self.log(format!("stop {id} {}s", timeout.as_secs()));
        self.exit(id, 143);
        self.wait(id).await
    }
    async fn delete(&self, id: &ContainerId) -> Result<(), Error> {
        self.log(format!("delete {id}"));
        self.existing.lock().unwrap().retain(|c| c.id != *id);
        Ok(())
    }
    async fn exec(
        &self,
        id: &ContainerId,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Error> {
        self.log(format!(
            "exec {id} {} {}s",
            args.join(" "),
            timeout.as_secs()
        ));
        let outcome = self
            .execs
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or(ExecOutcome::Exited(0));
        if outcome == ExecOutcome::TimedOut {
            tokio::time::sleep(timeout).await;
        }
        Ok(outcome)
    }
    async fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        Ok(self.existing.lock().unwrap().clone())
    }
    fn reattach(&self, id: &ContainerId, _task_id: &str, _name: &str) -> Result<(), Error> {
        self.log(format!("reattach {id}"));
        if let Some(hook) = self.on_reattach.lock().unwrap().as_ref() {
            hook(id);
        }
        Ok(())
    }
    fn log_path(&self, task_id: &str, name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/logs/{task_id}/{name}.log"))
    }
}

struct Harness {
    fake: Arc<Fake>,
    store: Arc<Store>,
    handle: EngineHandle,
    cancel: CancellationToken,
    /// The engine's own task, to wait for it after cancelling (an agent restart).
    engine: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
    _dir: tempfile::TempDir,
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
    let store = Arc::new(Store::open(dir.path()).unwrap());
    prepare(&store);
    let cancel = CancellationToken::new();
    let mut config = EngineConfig {
        stop_timeout: Duration::from_secs(30),
        cleanup_wait: Duration::ZERO,
        pull_timeout: Duration::from_secs(5),
        restart_backoff: Duration::from_secs(10),
        restart_backoff_max: Duration::from_secs(300),
        volume_host_paths: Vec::new(),
        allow_privileged: false,
        allowed_devices: Vec::new(),
        host_dns: DnsConfig {
            servers: vec!["10.0.0.53".parse().unwrap()],
            ..Default::default()
        },
    };
    configure(&mut config);
    let (engine, handle) = Engine::new(
        Arc::clone(&fake),
        Arc::clone(&fake) as Arc<dyn TaskNetworking>,
        Arc::clone(&store),
        config,
        Arc::new(Notify::new()),
        cancel.clone(),
    );
    let engine = tokio::spawn(engine.run());
    Harness {
        fake,
        store,
        handle,
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
        .outbox_after(0)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s)
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

#[tokio::test]
async fn a_task_runs_and_reports_every_step_in_order() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t1",
            &[("app", true, "img:1")],
        ))))
        .await;
    until(&h.store, "t1", TaskStatus::Running).await;
    let statuses: Vec<i32> = reports(&h.store, "t1").iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Pulled,
            TaskStatus::Created,
            TaskStatus::Running
        ]
        .map(|s| s as i32),
        "PENDING (assigned), PENDING (pull started), PULLED, CREATED, RUNNING"
    );
    let running = until(&h.store, "t1", TaskStatus::Running).await;
    assert!(
        running.pull_started_at.is_some()
            && running.pull_stopped_at.is_some()
            && running.started_at.is_some()
    );
    assert_eq!(running.containers[0].runtime_id, "t1.app");
    assert_eq!(running.containers[0].image_digest, "sha256:m");
    h.cancel.cancel();
}

#[tokio::test]
async fn an_essential_exit_stops_the_task_and_cleans_up() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t2",
            &[("main", true, "img:1"), ("side", false, "img:1")],
        ))))
        .await;
    until(&h.store, "t2", TaskStatus::Running).await;
    h.fake.exit(&ContainerId::for_container("t2", "main"), 3);
    let stopped = until(&h.store, "t2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.stopped_reason, "Essential container in task exited");
    let main = stopped
        .containers
        .iter()
        .find(|c| c.name == "main")
        .unwrap();
    assert_eq!(main.exit_code, Some(3));
    let side = stopped
        .containers
        .iter()
        .find(|c| c.name == "side")
        .unwrap();
    assert_eq!(
        side.exit_code,
        Some(143),
        "the other container was stopped with SIGTERM"
    );
    until_released(&h.store, "t2").await;
    let calls = h.fake.calls();
    assert!(calls.contains(&"stop t2.side 2s".to_owned()), "{calls:?}");
    assert!(
        calls.contains(&"delete t2.main".to_owned()) && calls.contains(&"rmcgroup t2".to_owned()),
        "{calls:?}"
    );
    assert!(
        h.store.tasks().unwrap().is_empty(),
        "a released task is forgotten"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_non_essential_exit_keeps_the_task_running() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t3",
            &[("main", true, "img:1"), ("init", false, "img:1")],
        ))))
        .await;
    until(&h.store, "t3", TaskStatus::Running).await;
    h.fake.exit(&ContainerId::for_container("t3", "init"), 0);
    // Wait until the exit is reported, then check the task still runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let last = reports(&h.store, "t3").pop().unwrap();
        if last
            .containers
            .iter()
            .any(|c| c.name == "init" && c.exit_code == Some(0))
        {
            assert_eq!(last.status, TaskStatus::Running as i32);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.cancel.cancel();
}

#[tokio::test]
async fn a_pull_failure_stops_the_task_with_the_registrys_reason() {
    let h = start();
    h.fake
        .fail_pull
        .lock()
        .unwrap()
        .insert("127.0.0.1:5000/missing:1".into());
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t4",
            &[("app", true, "127.0.0.1:5000/missing:1")],
        ))))
        .await;
    let stopped = until(&h.store, "t4", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "CannotPullContainerError: manifest unknown: registry 127.0.0.1:5000 has no tag 1 for missing"
    );
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("create")));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_namespace_set_up_beside_a_failed_pull_is_torn_down() {
    let h = start();
    h.fake
        .fail_pull
        .lock()
        .unwrap()
        .insert("127.0.0.1:5000/missing:1".into());
    h.handle
        .send(Command::Assign(Box::new(with_mode(
            assignment("t4n", &[("app", true, "127.0.0.1:5000/missing:1")]),
            "awsvpc",
        ))))
        .await;
    until_released(&h.store, "t4n").await;
    let calls = h.fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c);
    let (Some(setup), Some(teardown)) = (pos("netns setup t4n"), pos("netns teardown t4n")) else {
        panic!("the namespace was not set up and torn down: {calls:?}");
    };
    assert!(setup < teardown, "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("create")));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_stop_order_stops_with_the_users_reason() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t5",
            &[("app", true, "img:1")],
        ))))
        .await;
    until(&h.store, "t5", TaskStatus::Running).await;
    h.handle
        .send(Command::Stop(StopTaskOrder {
            seq: 2,
            task_id: "t5".into(),
            stop_code: StopCode::UserInitiated as i32,
            reason: "maintenance".into(),
        }))
        .await;
    let stopped = until(&h.store, "t5", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::UserInitiated as i32);
    assert_eq!(stopped.stopped_reason, "maintenance");
    assert!(stopped.stopping_at.is_some() && stopped.stopped_at.is_some());
    assert_eq!(h.store.last_applied_seq().unwrap(), 2);
    h.cancel.cancel();
}

#[tokio::test]
async fn a_resent_assignment_is_not_run_twice() {
    let h = start();
    let a = assignment("t6", &[("app", true, "img:1")]);
    h.handle.send(Command::Assign(Box::new(a.clone()))).await;
    h.handle.send(Command::Assign(Box::new(a))).await;
    assert!(h.handle.barrier().await);
    until(&h.store, "t6", TaskStatus::Running).await;
    let creates = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(creates, 1);
    h.cancel.cancel();
}

#[tokio::test]
async fn an_unknown_network_mode_fails_the_task_by_name() {
    let h = start();
    let mut a = assignment("t7", &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.network_mode = "overlay".into();
    }
    h.handle.send(Command::Assign(Box::new(a))).await;
    let stopped = until(&h.store, "t7", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.contains("\"overlay\" is not known"),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

fn with_mode(mut a: TaskAssignment, mode: &str) -> TaskAssignment {
    if let Some(d) = a.definition.as_mut() {
        d.network_mode = mode.into();
    }
    a
}

async fn stop_task(h: &Harness, task: &str, seq: u64) {
    h.handle
        .send(Command::Stop(StopTaskOrder {
            seq,
            task_id: task.into(),
            stop_code: StopCode::UserInitiated as i32,
            reason: "done".into(),
        }))
        .await;
    until_released(&h.store, task).await;
}

#[tokio::test]
async fn an_awsvpc_task_shares_one_namespace_set_up_before_create_and_released_before_stopped() {
    let h = start();
    let a = with_mode(
        assignment("ta", &[("app", true, "img:1"), ("side", false, "img:1")]),
        "awsvpc",
    );
    h.handle.send(Command::Assign(Box::new(a))).await;
    let running = until(&h.store, "ta", TaskStatus::Running).await;
    let att = &running.attachments;
    assert_eq!(att.len(), 1, "{att:?}");
    assert_eq!(att[0].private_ipv4_address, "10.0.0.2");
    assert_eq!(att[0].mac_address, "02:42:0a:00:00:02");
    assert_eq!(att[0].subnet, "10.0.0.0/24");
    assert_eq!(att[0].gateway, "10.0.0.1");
    let specs = h.fake.specs.lock().unwrap().clone();
    for spec in &specs {
        assert_eq!(
            spec.network,
            berth_runtime::NetworkNamespace::Join("/fake/netns/ta".into())
        );
        for (file, target) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")] {
            assert!(
                spec.mounts.iter().any(|m| m.destination == target
                    && m.read_only
                    && m.source == PathBuf::from("/fake/files/ta").join(file)),
                "{:?}",
                spec.mounts
            );
        }
        assert_eq!(spec.hostname.as_deref(), Some("ta"));
    }
    let net = h.fake.net_specs.lock().unwrap()[0].clone();
    assert_eq!(net.task, "ta");
    assert_eq!(net.interface, berth_runtime::TaskInterface::Veth);
    assert_eq!(
        net.dns.servers,
        vec!["10.0.0.53".parse::<std::net::IpAddr>().unwrap()]
    );
    stop_task(&h, "ta", 2).await;
    let calls = h.fake.calls();
    let pos = |c: &str| {
        calls
            .iter()
            .position(|x| x.starts_with(c))
            .unwrap_or(usize::MAX)
    };
    assert!(pos("netns setup ta") < pos("create"), "{calls:?}");
    // Released once every container has exited, before STOPPED; the containers go later.
    assert!(pos("stop ta.side") < pos("netns teardown ta"), "{calls:?}");
    assert!(pos("netns teardown ta") < pos("delete"), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("netns teardown"))
            .count(),
        1
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn an_awsvpc_task_gets_the_eni_of_its_assignment() {
    let h = start();
    let eni = berth_proto::v1::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:05".into(),
        private_ipv4_address: "10.1.0.5".into(),
        subnet: "10.1.0.0/24".into(),
        gateway: "10.1.0.1".into(),
        ..Default::default()
    };
    let mut a = with_mode(assignment("te", &[("app", true, "img:1")]), "awsvpc");
    a.network_attachment = Some(eni.clone());
    h.handle.send(Command::Assign(Box::new(a))).await;
    until(&h.store, "te", TaskStatus::Running).await;
    let net = h.fake.net_specs.lock().unwrap()[0].clone();
    assert_eq!(
        net.interface,
        berth_runtime::TaskInterface::Eni {
            mac: "0a:58:0a:01:00:05".parse().unwrap(),
            address: "10.1.0.5".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.1.0.1".parse().unwrap(),
        }
    );
    let mut bad = with_mode(assignment("tf", &[("app", true, "img:1")]), "awsvpc");
    bad.network_attachment = Some(berth_proto::v1::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:06".into(),
        private_ipv4_address: "10.2.0.5".into(),
        ..eni
    });
    h.handle.send(Command::Assign(Box::new(bad))).await;
    let stopped = until(&h.store, "tf", TaskStatus::Stopped).await;
    assert!(
        stopped
            .stopped_reason
            .contains("10.2.0.5 is not in subnet 10.1.0.0/24"),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn bridge_mode_gives_each_container_a_namespace_ports_and_links() {
    let h = start();
    let mut a = with_mode(
        assignment(
            "tb",
            &[
                ("web", true, "img:1"),
                ("db", false, "img:1"),
                ("job", false, "img:1"),
            ],
        ),
        "",
    );
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].port_mappings = vec![
            berth_proto::v1::PortMapping {
                container_port: 80,
                host_port: 0,
                protocol: "tcp".into(),
            },
            berth_proto::v1::PortMapping {
                container_port: 53,
                host_port: 5353,
                protocol: "udp".into(),
            },
        ];
        d.containers[0].links = vec!["db:database".into()];
        d.containers[2].disable_networking = true;
    }
    h.handle.send(Command::Assign(Box::new(a))).await;
    let running = until(&h.store, "tb", TaskStatus::Running).await;
    assert!(running.attachments.is_empty());
    let web = &running.containers[0];
    assert_eq!(web.private_ipv4_address, "10.0.0.2");
    let bound: Vec<_> = web
        .network_bindings
        .iter()
        .map(|b| {
            (
                b.host_port,
                b.container_port,
                b.protocol.as_str(),
                b.bind_ip.as_str(),
            )
        })
        .collect();
    assert_eq!(
        bound,
        [(49153, 80, "tcp", "0.0.0.0"), (5353, 53, "udp", "0.0.0.0")]
    );
    assert_eq!(running.containers[1].private_ipv4_address, "10.0.0.3");
    assert_eq!(running.containers[2].private_ipv4_address, "");
    let specs = h.fake.specs.lock().unwrap().clone();
    let net_of = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .network
            .clone()
    };
    use berth_runtime::NetworkNamespace;
    assert_eq!(
        net_of("web"),
        NetworkNamespace::Join("/fake/netns/tb.0".into())
    );
    assert_eq!(
        net_of("db"),
        NetworkNamespace::Join("/fake/netns/tb.1".into())
    );
    assert_eq!(net_of("job"), NetworkNamespace::New, "disableNetworking");
    let links = h
        .fake
        .net_files
        .lock()
        .unwrap()
        .get("tb.0")
        .cloned()
        .unwrap();
    let ip: std::net::IpAddr = "10.0.0.3".parse().unwrap();
    assert_eq!(
        links.extra_hosts,
        vec![("database".to_owned(), ip), ("db".to_owned(), ip)]
    );
    stop_task(&h, "tb", 2).await;
    let calls = h.fake.calls();
    let teardowns: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("netns teardown"))
        .collect();
    assert_eq!(teardowns, ["netns teardown tb.0", "netns teardown tb.1"]);
    h.cancel.cancel();
}

#[tokio::test]
async fn host_mode_reports_its_ports_and_sets_up_no_namespace() {
    let h = start();
    let mut a = with_mode(assignment("th", &[("app", true, "img:1")]), "host");
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].port_mappings = vec![berth_proto::v1::PortMapping {
            container_port: 8080,
            host_port: 8080,
            protocol: "tcp".into(),
        }];
    }
    h.handle.send(Command::Assign(Box::new(a))).await;
    let running = until(&h.store, "th", TaskStatus::Running).await;
    assert_eq!(running.containers[0].network_bindings.len(), 1);
    assert_eq!(running.containers[0].network_bindings[0].host_port, 8080);
    assert_eq!(
        h.fake.specs.lock().unwrap()[0].network,
        berth_runtime::NetworkNamespace::Host
    );
    stop_task(&h, "th", 2).await;
    assert!(
        !h.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("netns setup") || c.starts_with("netns teardown"))
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_restart_repairs_the_network_of_all_but_the_stored_tasks() {
    let dir = stored_as_stopped(&with_mode(
        assignment("tr", &[("app", true, "img:1")]),
        "awsvpc",
    ));
    let h = start_on(dir, Vec::new(), false);
    until_released(&h.store, "tr").await;
    let calls = h.fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        pos("netns repair [tr]") < pos("netns teardown tr"),
        "the stored task's namespace is live at repair, then torn down by its cleanup: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_broken_wait_is_retried_not_taken_for_an_exit() {
    let h = start();
    *h.fake.failing_waits.lock().unwrap() = 2;
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t8",
            &[("app", true, "img:1")],
        ))))
        .await;
    until(&h.store, "t8", TaskStatus::Running).await;
    // Both failed waits are retried (250 ms, 500 ms); the task must still be running after.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let last = reports(&h.store, "t8").pop().unwrap();
    assert_eq!(
        last.status,
        TaskStatus::Running as i32,
        "a failed wait was taken for an exit: {last:?}"
    );
    assert_eq!(*h.fake.failing_waits.lock().unwrap(), 0);
    h.fake.exit(&ContainerId::for_container("t8", "app"), 0);
    let stopped = until(&h.store, "t8", TaskStatus::Stopped).await;
    assert_eq!(stopped.containers[0].exit_code, Some(0));
    h.cancel.cancel();
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

#[tokio::test]
async fn containers_start_after_their_dependencies_meet_their_conditions() {
    use DependencyCondition::{Complete, Start, Success};
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(with_deps(
            "d1",
            &[
                ("web", true, &[("app", Start)], 0),
                ("app", true, &[("migrate", Complete)], 0),
                ("migrate", false, &[("init", Success)], 0),
                ("init", false, &[], 0),
            ],
        ))))
        .await;
    until_started(&h.fake, &["d1.init"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        started(&h.fake),
        ["d1.init"],
        "nothing else starts before init exits"
    );
    h.fake.exit(&ContainerId::for_container("d1", "init"), 0);
    until_started(&h.fake, &["d1.init", "d1.migrate"]).await;
    h.fake.exit(&ContainerId::for_container("d1", "migrate"), 5);
    until_started(&h.fake, &["d1.init", "d1.migrate", "d1.app", "d1.web"]).await;
    let running = until(&h.store, "d1", TaskStatus::Running).await;
    let exit = |name: &str| {
        running
            .containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.exit_code)
    };
    assert_eq!(
        (exit("init"), exit("migrate"), exit("app")),
        (Some(0), Some(5), None),
        "init containers that exited count as started"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_failed_success_dependency_stops_the_task_naming_both_containers() {
    use DependencyCondition::Success;
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(with_deps(
            "d2",
            &[
                ("side", true, &[], 0),
                ("db", false, &[], 0),
                ("app", true, &[("db", Success)], 0),
            ],
        ))))
        .await;
    until_started(&h.fake, &["d2.side", "d2.db"]).await;
    h.fake.exit(&ContainerId::for_container("d2", "db"), 3);
    let stopped = until(&h.store, "d2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "dependency db of container app exited with 3; condition SUCCESS"
    );
    assert_eq!(started(&h.fake), ["d2.side", "d2.db"], "app never started");
    assert!(h.fake.calls().contains(&"stop d2.side 2s".to_owned()));
    assert!(
        !reports(&h.store, "d2")
            .iter()
            .any(|s| s.status == TaskStatus::Running as i32)
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_outlives_its_start_timeout_fails_the_task() {
    use DependencyCondition::Complete;
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(with_deps(
            "d3",
            &[
                ("init", false, &[], 1),
                ("app", true, &[("init", Complete)], 0),
            ],
        ))))
        .await;
    until_started(&h.fake, &["d3.init"]).await;
    let init_started = tokio::time::Instant::now();
    let stopped = until(&h.store, "d3", TaskStatus::Stopped).await;
    // Given up at init's startTimeout, on tokio's clock (paused: no real second passes).
    let waited = init_started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "gave up after {waited:?}"
    );
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app gave up waiting for dependency init: it did not reach condition COMPLETE within its startTimeout of 1s"
    );
    assert_eq!(started(&h.fake), ["d3.init"]);
    assert!(h.fake.calls().contains(&"stop d3.init 2s".to_owned()));
    h.cancel.cancel();
}

#[tokio::test]
async fn containers_stop_in_the_reverse_order_of_their_dependencies() {
    use DependencyCondition::Start;
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(with_deps(
            "d4",
            &[
                ("db", true, &[], 0),
                ("web", true, &[("app", Start)], 0),
                ("app", true, &[("db", Start)], 0),
            ],
        ))))
        .await;
    until(&h.store, "d4", TaskStatus::Running).await;
    assert_eq!(started(&h.fake), ["d4.db", "d4.app", "d4.web"]);
    h.handle
        .send(Command::Stop(StopTaskOrder {
            seq: 2,
            task_id: "d4".into(),
            stop_code: StopCode::UserInitiated as i32,
            reason: "bye".into(),
        }))
        .await;
    until(&h.store, "d4", TaskStatus::Stopped).await;
    let stops: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("stop "))
        .collect();
    assert_eq!(stops, ["stop d4.web 2s", "stop d4.app 2s", "stop d4.db 2s"]);
    h.cancel.cancel();
}

/// A task whose containers (name, essential) restart on any exit but those ignored, after a
/// run of at least 60 s.
fn restarting(task: &str, containers: &[(&str, bool)], ignored: &[u32]) -> TaskAssignment {
    let mut a = assignment(
        task,
        &containers
            .iter()
            .map(|(n, e)| (*n, *e, "img:1"))
            .collect::<Vec<_>>(),
    );
    if let Some(def) = a.definition.as_mut() {
        for c in &mut def.containers {
            c.restart_policy = Some(berth_proto::v1::RestartPolicy {
                enabled: true,
                ignored_exit_codes: ignored.to_vec(),
                restart_attempt_period_seconds: 60,
            });
        }
    }
    a
}

/// The last reported state of a task.
fn last(store: &Store, task: &str) -> TaskState {
    reports(store, task).pop().expect("a report")
}

fn restart_count(store: &Store, task: &str, name: &str) -> u32 {
    last(store, task)
        .containers
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.restart_count)
        .unwrap_or_default()
}

fn count_calls(fake: &Fake, call: &str) -> usize {
    fake.calls().iter().filter(|c| *c == call).count()
}

#[tokio::test(start_paused = true)]
async fn a_restarting_essential_container_is_restarted_with_a_doubling_backoff() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(restarting(
            "r1",
            &[("app", true)],
            &[0],
        ))))
        .await;
    until(&h.store, "r1", TaskStatus::Running).await;
    let id = ContainerId::for_container("r1", "app");
    for (n, delay) in [(1u32, 10u64), (2, 20), (3, 40)] {
        tokio::time::sleep(Duration::from_secs(61)).await;
        h.fake.exit(&id, 1);
        tokio::time::sleep(Duration::from_secs(delay - 1)).await;
        assert_eq!(
            restart_count(&h.store, "r1", "app"),
            n - 1,
            "not before {delay}s"
        );
        assert_eq!(count_calls(&h.fake, "restart r1.app"), (n - 1) as usize);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            restart_count(&h.store, "r1", "app"),
            n,
            "restarted after {delay}s"
        );
        let state = last(&h.store, "r1");
        assert_eq!(state.status, TaskStatus::Running as i32, "the task runs on");
        assert_eq!(
            state.containers[0].status,
            berth_proto::v1::ContainerStatus::Running as i32
        );
        assert_eq!(state.containers[0].exit_code, None);
    }
    assert_eq!(count_calls(&h.fake, "start r1.app"), 4);
    // An ignored exit code ends it for good: the essential rule applies.
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.fake.exit(&id, 0);
    let stopped = until(&h.store, "r1", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.containers[0].exit_code, Some(0));
    assert_eq!(stopped.containers[0].restart_count, 3);
    assert_eq!(count_calls(&h.fake, "restart r1.app"), 3);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_container_that_exits_before_the_attempt_period_is_not_restarted() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(restarting(
            "r2",
            &[("app", true), ("side", false)],
            &[],
        ))))
        .await;
    until(&h.store, "r2", TaskStatus::Running).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    h.fake.exit(&ContainerId::for_container("r2", "app"), 1);
    let stopped = until(&h.store, "r2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.containers[0].exit_code, Some(1));
    assert_eq!(stopped.containers[1].exit_code, Some(143));
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_stop_order_during_the_backoff_stops_without_restarting() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(restarting(
            "r3",
            &[("app", true)],
            &[],
        ))))
        .await;
    until(&h.store, "r3", TaskStatus::Running).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.fake.exit(&ContainerId::for_container("r3", "app"), 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.handle
        .send(Command::Stop(StopTaskOrder {
            seq: 1,
            task_id: "r3".into(),
            stop_code: StopCode::UserInitiated as i32,
            reason: "bye".into(),
        }))
        .await;
    let stopped = until(&h.store, "r3", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::UserInitiated as i32);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    assert_eq!(count_calls(&h.fake, "start r3.app"), 1);
    assert_eq!(last(&h.store, "r3").containers[0].restart_count, 0);
    h.cancel.cancel();
}

#[tokio::test]
async fn log_targets_name_the_file_and_say_when_the_container_stopped() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(assignment(
            "t9",
            &[("main", true, "img:1"), ("side", false, "img:1")],
        ))))
        .await;
    until(&h.store, "t9", TaskStatus::Running).await;
    let main = h.handle.log_target("t9", "main").await.unwrap();
    assert_eq!(main.path, std::path::PathBuf::from("/logs/t9/main.log"));
    assert!(!main.finished);
    assert_eq!(h.handle.log_target("t9", "nope").await, None);
    assert_eq!(h.handle.log_target("t0", "main").await, None);
    h.fake.exit(&ContainerId::for_container("t9", "side"), 0);
    let mut side_finished = false;
    for _ in 0..500 {
        side_finished = h.handle.log_target("t9", "side").await.unwrap().finished;
        if side_finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(side_finished, "an exited container's log is finished");
    assert!(
        !h.handle.log_target("t9", "main").await.unwrap().finished,
        "the other container still runs"
    );
    h.cancel.cancel();
}

/// A task of two containers: `writer` mounts every given volume at `/<name>`, `reader` takes
/// volumes from `writer`, read-only.
fn with_volumes(task: &str, volumes: Vec<berth_proto::v1::Volume>) -> TaskAssignment {
    let mut a = assignment(
        task,
        &[("writer", false, "img:1"), ("reader", true, "img:1")],
    );
    if let Some(def) = a.definition.as_mut() {
        def.containers[0].mount_points = volumes
            .iter()
            .map(|v| berth_proto::v1::MountPoint {
                source_volume: v.name.clone(),
                container_path: format!("/{}", v.name),
                read_only: false,
            })
            .collect();
        def.containers[1].volumes_from = vec![berth_proto::v1::VolumeFrom {
            source_container: "writer".into(),
            read_only: true,
        }];
        def.volumes = volumes;
    }
    a
}

fn volume(name: &str, source_path: Option<&str>) -> berth_proto::v1::Volume {
    berth_proto::v1::Volume {
        name: name.into(),
        host: source_path.map(|p| berth_proto::v1::HostVolume {
            source_path: p.into(),
        }),
        docker_volume_configuration: None,
    }
}

fn mounts_of(fake: &Fake, name: &str) -> Vec<Mount> {
    fake.specs
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.mounts.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn task_volumes_are_made_bound_into_containers_and_removed_with_the_task() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(with_volumes(
            "tv",
            vec![volume("shared", None)],
        ))))
        .await;
    until(&h.store, "tv", TaskStatus::Running).await;
    let calls = h.fake.calls();
    let made = calls.iter().position(|c| c == "volumes tv shared");
    let created = calls.iter().position(|c| c.starts_with("create"));
    assert!(made.is_some() && made < created, "{calls:?}");
    let host = PathBuf::from("/fake/volumes/tv/shared");
    assert_eq!(
        mounts_of(&h.fake, "writer"),
        [Mount {
            source: host.clone(),
            destination: "/shared".into(),
            read_only: false
        }]
    );
    assert_eq!(
        mounts_of(&h.fake, "reader"),
        [Mount {
            source: host,
            destination: "/shared".into(),
            read_only: true
        }],
        "volumesFrom with readOnly binds the same directory read-only"
    );
    h.fake.exit(&ContainerId::for_container("tv", "reader"), 0);
    until_released(&h.store, "tv").await;
    let calls = h.fake.calls();
    let deleted = calls.iter().rposition(|c| c.starts_with("delete"));
    let removed = calls.iter().position(|c| c == "rmvolumes tv");
    assert!(
        removed.is_some() && removed > deleted,
        "volumes are removed after the containers: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_host_path_outside_the_allowed_directories_fails_the_task_before_pulling() {
    let allowed = tempfile::tempdir().unwrap();
    let h = start_allowing(vec![allowed.path().to_path_buf()]);
    h.handle
        .send(Command::Assign(Box::new(with_volumes(
            "th",
            vec![volume("scratch", None), volume("root", Some("/"))],
        ))))
        .await;
    let stopped = until(&h.store, "th", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        format!(
            "volume root: host path / is outside the directories this agent allows; volume_host_paths: {}",
            allowed.path().display()
        )
    );
    until_released(&h.store, "th").await;
    let calls = h.fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("pull") || c.starts_with("volumes")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"rmvolumes th".to_owned()),
        "the cleanup runs on the failure path too: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn an_allowed_host_path_is_bound_as_resolved() {
    let allowed = tempfile::tempdir().unwrap();
    std::fs::create_dir(allowed.path().join("data")).unwrap();
    let h = start_allowing(vec![allowed.path().to_path_buf()]);
    let source = format!("{}/data/../data", allowed.path().display());
    h.handle
        .send(Command::Assign(Box::new(with_volumes(
            "ta",
            vec![volume("data", Some(&source))],
        ))))
        .await;
    until(&h.store, "ta", TaskStatus::Running).await;
    let resolved = std::fs::canonicalize(allowed.path().join("data")).unwrap();
    assert_eq!(
        mounts_of(&h.fake, "writer"),
        [Mount {
            source: resolved,
            destination: "/data".into(),
            read_only: false
        }]
    );
    assert!(
        h.fake.calls().contains(&"volumes ta ".to_owned()),
        "a host path is not the runtime's to make"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_task_stopped_before_an_agent_restart_has_its_volumes_removed_on_resume() {
    let dir = stored_as_stopped(&with_volumes("tr", vec![volume("shared", None)]));
    let h = start_on(dir, Vec::new(), false);
    until_released(&h.store, "tr").await;
    let calls = h.fake.calls();
    assert!(
        calls.contains(&"rmvolumes tr".to_owned()),
        "the cleanup after a restart removes the task's volumes: {calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("volumes")), "{calls:?}");
    h.cancel.cancel();
}

/// Gives the named containers a health check: `["CMD-SHELL", "check"]` every 5s, timeout 2s,
/// with `retries` and `start_period` seconds.
fn with_health(
    mut a: TaskAssignment,
    names: &[&str],
    retries: u32,
    start_period: u32,
) -> TaskAssignment {
    if let Some(def) = a.definition.as_mut() {
        for c in def
            .containers
            .iter_mut()
            .filter(|c| names.contains(&c.name.as_str()))
        {
            c.health_check = Some(berth_proto::v1::HealthCheck {
                command: vec!["CMD-SHELL".into(), "check".into()],
                interval_seconds: 5,
                timeout_seconds: 2,
                retries,
                start_period_seconds: start_period,
            });
        }
    }
    a
}

fn health_of(state: &TaskState, name: &str) -> HealthStatus {
    state
        .containers
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| HealthStatus::try_from(c.health_status).ok())
        .unwrap_or(HealthStatus::Unknown)
}

#[tokio::test(start_paused = true)]
async fn a_healthy_dependency_starts_its_dependent_once_its_check_passes() {
    use DependencyCondition::Healthy;
    let h = start();
    let a = with_health(
        with_deps(
            "h1",
            &[("db", true, &[], 0), ("app", true, &[("db", Healthy)], 0)],
        ),
        &["db"],
        3,
        0,
    );
    let db = ContainerId::for_container("h1", "db");
    h.fake.exec_outcome(&db, ExecOutcome::Exited(1));
    h.handle.send(Command::Assign(Box::new(a))).await;
    until_started(&h.fake, &["h1.db"]).await;
    // Two failed checks (5s, 10s): not healthy, not yet unhealthy.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        started(&h.fake),
        ["h1.db"],
        "app waits for db to be HEALTHY"
    );
    assert_eq!(
        count_calls(&h.fake, "exec h1.db /bin/sh -c check 2s"),
        2,
        "CMD-SHELL runs through /bin/sh -c, every interval"
    );
    let state = last(&h.store, "h1");
    assert_eq!(health_of(&state, "db"), HealthStatus::Unknown);
    assert_eq!(state.status, TaskStatus::Created as i32);
    h.fake.exec_outcome(&db, ExecOutcome::Exited(0));
    tokio::time::sleep(Duration::from_secs(4)).await;
    until_started(&h.fake, &["h1.db", "h1.app"]).await;
    let running = until(&h.store, "h1", TaskStatus::Running).await;
    let state = last(&h.store, "h1");
    assert_eq!(health_of(&state, "db"), HealthStatus::Healthy);
    assert_eq!(
        health_of(&state, "app"),
        HealthStatus::Unknown,
        "no health check"
    );
    assert_eq!(
        state.health_status,
        HealthStatus::Healthy as i32,
        "every essential container with a check is HEALTHY"
    );
    assert_eq!(
        running.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_essential_container_stops_the_task_after_its_start_period() {
    let h = start();
    let a = with_health(
        assignment("h2", &[("app", true, "img:1"), ("side", false, "img:1")]),
        &["app"],
        2,
        10,
    );
    let app = ContainerId::for_container("h2", "app");
    h.fake.exec_outcome(&app, ExecOutcome::TimedOut);
    h.handle.send(Command::Assign(Box::new(a))).await;
    until(&h.store, "h2", TaskStatus::Running).await;
    // Checks end at ~7s and ~14s (5s interval + 2s timeout); the first is in the start period
    // and does not count, the second is the first failure that counts.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let state = last(&h.store, "h2");
    assert_eq!(
        state.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    assert_eq!(health_of(&state, "app"), HealthStatus::Unknown);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stopped = until(&h.store, "h2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(
        stopped.stopped_reason,
        "Task failed container health checks: essential container app is unhealthy after 2 consecutive failed checks (last: timed out after 2s)"
    );
    assert_eq!(health_of(&stopped, "app"), HealthStatus::Unhealthy);
    assert_eq!(stopped.health_status, HealthStatus::Unhealthy as i32);
    let calls = h.fake.calls();
    assert!(calls.contains(&"stop h2.app 2s".to_owned()), "{calls:?}");
    // Once stopping, no more checks run.
    let execs = calls.iter().filter(|c| c.starts_with("exec ")).count();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        h.fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("exec "))
            .count(),
        execs
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_non_essential_container_keeps_the_task_running() {
    let h = start();
    let a = with_health(
        assignment("h3", &[("app", true, "img:1"), ("side", false, "img:1")]),
        &["app", "side"],
        1,
        0,
    );
    h.fake.exec_outcome(
        &ContainerId::for_container("h3", "side"),
        ExecOutcome::Exited(2),
    );
    h.handle.send(Command::Assign(Box::new(a))).await;
    until(&h.store, "h3", TaskStatus::Running).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let state = last(&h.store, "h3");
    assert_eq!(health_of(&state, "side"), HealthStatus::Unhealthy);
    assert_eq!(health_of(&state, "app"), HealthStatus::Healthy);
    assert_eq!(
        state.health_status,
        HealthStatus::Healthy as i32,
        "side is not essential"
    );
    assert_eq!(
        state.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    // Its checks go on, and it recovers.
    h.fake.exec_outcome(
        &ContainerId::for_container("h3", "side"),
        ExecOutcome::Exited(0),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        health_of(&last(&h.store, "h3"), "side"),
        HealthStatus::Healthy
    );
    h.cancel.cancel();
}

fn privileged(task: &str) -> TaskAssignment {
    let mut a = assignment(task, &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].privileged = true;
    }
    a
}

#[tokio::test]
async fn privileged_is_refused_unless_the_agent_allows_it() {
    let h = start();
    h.handle
        .send(Command::Assign(Box::new(privileged("t-priv"))))
        .await;
    let stopped = until(&h.store, "t-priv", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app asks to run privileged, which this agent does not allow: set \
         allow_privileged = true (BERTH_ALLOW_PRIVILEGED) in the agent's configuration to permit it"
    );
    assert!(
        h.fake
            .calls()
            .iter()
            .all(|c| !c.starts_with("pull") && !c.starts_with("create")),
        "nothing is pulled or created: {:?}",
        h.fake.calls()
    );
    h.cancel.cancel();

    let allowed = start_with(true);
    allowed
        .handle
        .send(Command::Assign(Box::new(privileged("t-priv-ok"))))
        .await;
    until(&allowed.store, "t-priv-ok", TaskStatus::Running).await;
    allowed.cancel.cancel();
}

#[tokio::test]
async fn a_missing_environment_file_stops_the_task_by_name() {
    let h = start();
    let mut a = assignment("t-envfile", &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].environment_files = vec!["/nonexistent/berth-test.env".into()];
    }
    h.handle.send(Command::Assign(Box::new(a))).await;
    let stopped = until(&h.store, "t-envfile", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.starts_with(
            "container app: cannot read environment file /nonexistent/berth-test.env on the host: "
        ),
        "{}",
        stopped.stopped_reason
    );
    assert!(h.fake.calls().iter().all(|c| !c.starts_with("create")));
    h.cancel.cancel();
}

/// A one-container assignment whose container `change` alters.
fn one_container(task: &str, change: impl FnOnce(&mut ContainerDefinition)) -> Box<TaskAssignment> {
    let mut a = assignment(task, &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        change(&mut d.containers[0]);
    }
    Box::new(a)
}

fn with_device(host_path: &str) -> impl FnOnce(&mut ContainerDefinition) + '_ {
    move |c| {
        c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
            devices: vec![berth_proto::v1::Device {
                host_path: host_path.into(),
                container_path: "/dev/in-container".into(),
                permissions: vec!["read".into()],
            }],
            ..Default::default()
        });
    }
}

#[tokio::test]
async fn a_device_outside_allowed_devices_fails_the_task_before_pulling() {
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allowed_devices = vec![PathBuf::from("/dev/null")];
    });
    h.handle
        .send(Command::Assign(one_container(
            "t-dev",
            with_device("/dev/zero"),
        )))
        .await;
    let stopped = until(&h.store, "t-dev", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app: device /dev/zero is not among the devices this agent allows; \
         allowed_devices: /dev/null"
    );
    assert!(h.fake.calls().iter().all(|c| !c.starts_with("pull")));
    h.cancel.cancel();
}

#[tokio::test]
async fn an_allowed_device_reaches_the_runtime_resolved() {
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("my-null");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allowed_devices = vec![PathBuf::from("/dev/null")];
    });
    let link_text = link.to_string_lossy().into_owned();
    h.handle
        .send(Command::Assign(one_container(
            "t-dev-ok",
            with_device(&link_text),
        )))
        .await;
    until(&h.store, "t-dev-ok", TaskStatus::Running).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(
        specs[0].devices,
        [berth_runtime::DeviceMapping {
            host_path: PathBuf::from("/dev/null"),
            container_path: "/dev/in-container".into(),
            permissions: "r".into(),
        }]
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_seccomp_profile_is_read_when_the_task_starts_and_a_bad_one_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
    let h = start();
    let good_path = good.to_string_lossy().into_owned();
    h.handle
        .send(Command::Assign(one_container("t-sec", |c| {
            c.seccomp_profile = good_path;
            c.no_new_privileges = Some(false);
        })))
        .await;
    until(&h.store, "t-sec", TaskStatus::Running).await;
    let spec = h.fake.specs.lock().unwrap()[0].clone();
    assert!(spec.seccomp.is_some());
    assert_eq!(spec.no_new_privileges, Some(false));

    let bad_path = bad.to_string_lossy().into_owned();
    h.handle
        .send(Command::Assign(one_container("t-sec-bad", |c| {
            c.seccomp_profile = bad_path;
        })))
        .await;
    let stopped = until(&h.store, "t-sec-bad", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.starts_with(&format!(
            "container app: seccomp profile {} is not usable: defaultAction: `SCMP_ACT_NOPE` is not a seccomp action",
            bad.display()
        )),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn swap_the_host_cannot_limit_is_noted_and_the_container_runs() {
    let h = start();
    *h.fake.swap.lock().unwrap() = Some(SwapSupport {
        limit: false,
        swappiness: true,
    });
    h.handle
        .send(Command::Assign(one_container("t-swap", |c| {
            c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
                max_swap_mib: Some(32),
                swappiness: Some(10),
                ..Default::default()
            });
        })))
        .await;
    let running = until(&h.store, "t-swap", TaskStatus::Running).await;
    assert!(
        running.containers[0]
            .reason
            .starts_with("maxSwap 32 MiB not applied: this host's kernel does not limit swap"),
        "{:?}",
        running.containers[0]
    );
    let spec = h.fake.specs.lock().unwrap()[0].clone();
    assert_eq!(
        (spec.limits.max_swap_mib, spec.limits.swappiness),
        (Some(32), Some(10)),
        "the runtime decides what reaches the spec"
    );
    h.cancel.cancel();
}

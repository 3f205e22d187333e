//! The engine tests' fake host: a container runtime and task network that record every call,
//! whose containers exit on demand, and that can be told to fail.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_runtime::{
    ContainerId, ContainerInfo, ContainerSpec, DnsConfig, Error, ExecOutcome, ExitStatus, MacAddr,
    NetworkError, PortBinding, PullError, PulledImage, RegistryAuth, SwapSupport, TaskFiles,
    TaskLimits, TaskNetwork, TaskNetworkSpec, TaskVolume,
};
use tokio::sync::watch;

use super::super::EngineHandle;
use crate::network::TaskNetworking;
use crate::runtime::ContainerRuntime;

#[derive(Default)]
pub(super) struct Fake {
    pub(super) calls: Mutex<Vec<String>>,
    pub(super) fail_pull: Mutex<HashSet<String>>,
    /// Images in the cache, as `cached` answers for them.
    pub(super) cached: Mutex<HashMap<String, PulledImage>>,
    pub(super) exits: Mutex<HashMap<ContainerId, watch::Sender<Option<ExitStatus>>>>,
    /// How many wait calls fail as if containerd's connection broke.
    pub(super) failing_waits: Mutex<u32>,
    /// The credentials each pull was given, in order.
    pub(super) pull_auths: Mutex<Vec<(String, RegistryAuth)>>,
    /// Every spec created, in order.
    pub(super) specs: Mutex<Vec<ContainerSpec>>,
    /// What an exec (a health check) in each container ends with; exit 0 when not set.
    pub(super) execs: Mutex<HashMap<ContainerId, ExecOutcome>>,
    /// Every network namespace set up, in order.
    pub(super) net_specs: Mutex<Vec<TaskNetworkSpec>>,
    /// The files last written for a namespace by name (links).
    pub(super) net_files: Mutex<HashMap<String, DnsConfig>>,
    /// What the host can limit of swap; everything when not set.
    pub(super) swap: Mutex<Option<SwapSupport>>,
    /// Containers whose start fails (as a command that is not executable fails runc's create).
    pub(super) fail_start: Mutex<HashSet<ContainerId>>,
    /// When set, each start first asks this engine for the task of every address the
    /// container's task was given, as the task endpoint does; the answers are kept in
    /// `known_at_start` (container, whether every address was known).
    pub(super) start_probe: Mutex<Option<EngineHandle>>,
    pub(super) known_at_start: Mutex<Vec<(String, bool)>>,
    /// Images whose pull panics (a bug in the runtime, as far as the engine can tell).
    pub(super) panic_pull: Mutex<HashSet<String>>,
    /// Containers whose wait panics once their exit is seen, so many more times each.
    pub(super) panic_on_exit: Mutex<HashMap<ContainerId, u32>>,
    /// What `list` finds in containerd (the containers an earlier run left).
    pub(super) existing: Mutex<Vec<ContainerInfo>>,
    /// Runs at each reattach (after an agent restart), with the container's ID.
    pub(super) on_reattach: Mutex<Option<ReattachHook>>,
    /// Tasks whose namespace holder died (`task_namespaces_held` says false).
    pub(super) holders_gone: Mutex<HashSet<String>>,
}

pub(super) type ReattachHook = Box<dyn Fn(&ContainerId) + Send>;

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
    async fn repair(
        &self,
        live: &BTreeSet<String>,
        held: &BTreeSet<String>,
    ) -> Result<Vec<String>, NetworkError> {
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        if held.is_empty() {
            self.log(format!("netns repair [{}]", live.join(" ")));
        } else {
            let held: Vec<&str> = held.iter().map(String::as_str).collect();
            self.log(format!(
                "netns repair [{}] held [{}]",
                live.join(" "),
                held.join(" ")
            ));
        }
        Ok(Vec::new())
    }
}

impl Fake {
    pub(super) fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    pub(super) fn exec_outcome(&self, id: &ContainerId, outcome: ExecOutcome) {
        self.execs.lock().unwrap().insert(id.clone(), outcome);
    }
    /// Makes `pull` of `image` fail as a registry without it does.
    pub(super) fn fail_pull_of(&self, image: &str) {
        self.fail_pull.lock().unwrap().insert(image.to_owned());
    }
    /// Changes what `list` finds of container `id`, if it has it.
    fn update_existing(&self, id: &ContainerId, change: impl FnOnce(&mut ContainerInfo)) {
        if let Some(c) = self
            .existing
            .lock()
            .unwrap()
            .iter_mut()
            .find(|c| c.id == *id)
        {
            change(c);
        }
    }
    pub(super) fn exit(&self, id: &ContainerId, code: u32) {
        self.update_existing(id, |c| {
            c.status = berth_runtime::ContainerStatus::Stopped;
            c.exit_code = Some(code);
        });
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
    async fn pull(
        &self,
        image: &str,
        auth: &RegistryAuth,
        progress: Option<berth_runtime::ProgressSender>,
    ) -> Result<PulledImage, PullError> {
        self.log(format!("pull {image}"));
        if let Some(tx) = progress {
            // One layer announced, then written: what the runtime reports of a small pull.
            for done in [0, 1] {
                let _ = tx.send(berth_runtime::PullProgress {
                    reference: image.to_owned(),
                    digest: "sha256:l".into(),
                    layer: true,
                    done,
                    total: 1,
                    cached: false,
                });
            }
        }
        self.pull_auths
            .lock()
            .unwrap()
            .push((image.to_owned(), auth.clone()));
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
    async fn cached(&self, image: &str) -> Result<Option<PulledImage>, Error> {
        self.log(format!("cached {image}"));
        Ok(self.cached.lock().unwrap().get(image).cloned())
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
                let staged = match &v.kind {
                    berth_runtime::TaskVolumeKind::HostPath { path } => {
                        self.log(format!("bind {task_id} {} {}", v.name, path.display()));
                        format!("/fake/volumes/{task_id}/.host/{}", v.name)
                    }
                    _ => format!("/fake/volumes/{task_id}/{}", v.name),
                };
                (v.name.clone(), PathBuf::from(staged))
            })
            .collect())
    }
    async fn remove_task_volumes(&self, task_id: &str) -> Result<(), Error> {
        self.log(format!("rmvolumes {task_id}"));
        Ok(())
    }
    fn task_namespace_paths(
        &self,
        task_id: &str,
    ) -> Result<berth_runtime::TaskNamespacePaths, Error> {
        let dir = PathBuf::from("/fake/namespaces").join(task_id);
        Ok(berth_runtime::TaskNamespacePaths {
            pid: dir.join("pid"),
            ipc: dir.join("ipc"),
            shm: dir.join("shm"),
        })
    }
    async fn create_task_namespaces(
        &self,
        task_id: &str,
        shared: berth_runtime::SharedNamespaces,
    ) -> Result<(), Error> {
        self.log(format!(
            "namespaces {task_id} pid={} ipc={} shm={}",
            shared.pid, shared.ipc, shared.shm_size_mib
        ));
        Ok(())
    }
    async fn task_namespaces_held(
        &self,
        task_id: &str,
        _shared: berth_runtime::SharedNamespaces,
    ) -> Result<bool, Error> {
        // Not logged: the driver asks every few seconds.
        Ok(!self.holders_gone.lock().unwrap().contains(task_id))
    }
    async fn remove_task_namespaces(&self, task_id: &str) -> Result<(), Error> {
        self.log(format!("rmnamespaces {task_id}"));
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
            started: false,
        });
        self.exits
            .lock()
            .unwrap()
            .insert(id.clone(), watch::channel(None).0);
        Ok(id)
    }
    async fn start(&self, id: &ContainerId) -> Result<u32, Error> {
        self.log(format!("start {id}"));
        self.update_existing(id, |c| {
            c.status = berth_runtime::ContainerStatus::Running;
            c.pid = Some(42);
            c.started = true;
        });
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
    fn reattach(
        &self,
        id: &ContainerId,
        _task_id: &str,
        _name: &str,
        _forward: Option<berth_runtime::LogForward>,
    ) -> Result<(), Error> {
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

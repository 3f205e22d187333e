//! [`Runtime`]: the crate's entry point. Connects to containerd, detects the cgroup layout,
//! and offers image pulls, task cgroups and the container lifecycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cgroup::{CgroupLayout, Cgroups};
use crate::container::{
    ContainerId, ContainerInfo, Containers, ExecOutcome, ExitStatus, KillScope, LogRotation,
};
use crate::containerd::{Containerd, Grpc, Patient};
use crate::error::Error;
use crate::image::{
    CredentialSources, Credentials, DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_PULL_TIMEOUT, ImageSummary,
    ProgressSender, PullError, PulledImage, Puller, Registry, RegistryAuth,
};
use crate::model::{ContainerSpec, SwapSupport, TaskLimits, TaskVolume};
use crate::task_ns::{HolderCommand, SharedNamespaces, TaskNamespacePaths, TaskNamespaces};

/// Debian's static tini (package `tini`), the default init of `initProcessEnabled`.
pub const DEFAULT_INIT_PATH: &str = "/usr/bin/tini-static";

/// Where and how the runtime works.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// containerd's gRPC socket.
    pub containerd_socket: PathBuf,
    /// containerd namespace holding everything Berth creates.
    pub namespace: String,
    /// Directory for runtime state (container FIFOs).
    pub state_dir: PathBuf,
    /// Directory for container log files (`<task-id>/<container>.log`).
    pub log_dir: PathBuf,
    /// Directory of per-task volumes (`<task-id>/<volume-name>`).
    pub volume_dir: PathBuf,
    /// Registries reached over plain HTTP (host or host:port). All others use HTTPS.
    pub insecure_registries: Vec<String>,
    /// The per-registry directories of CA files, client certificates and `hosts.toml`
    /// (`<dir>/<host[:port]>/`, as containerd's `certs.d`); None asks no directory.
    pub registry_certs_dir: Option<PathBuf>,
    /// Where registry credentials come from for pulls that bring none.
    pub credentials: CredentialSources,
    /// How long one pull may take, all its tries together (the agent's
    /// `image_pull_timeout`); a registry that keeps failing is tried again until then.
    pub pull_timeout: Duration,
    /// Layer downloads running at once, across all pulls.
    pub max_concurrent_downloads: usize,
    /// The most bytes a registry's answer read into memory may hold: a manifest, an index or
    /// an image config ([`DEFAULT_MAX_MANIFEST_BYTES`] unless configured).
    pub max_manifest_bytes: u64,
    /// Name of the cgroup under which every task's cgroup is created.
    pub cgroup_parent: String,
    pub log_rotation: LogRotation,
    /// The init binary for containers with `initProcessEnabled` (a static tini), bind-mounted
    /// read-only at `/sbin/docker-init`.
    pub init_path: PathBuf,
    /// Directory of the namespaces tasks share (`<task-id>/{pid,ipc,shm}`, `pidMode` and
    /// `ipcMode` task).
    pub namespace_dir: PathBuf,
    /// What runs a task's namespace holder (`berth-agent task-holder`); without it a task
    /// that shares its PID or IPC namespace fails to start.
    pub namespace_holder: Option<HolderCommand>,
}

impl RuntimeConfig {
    /// Production defaults under the given data directory.
    pub fn new(containerd_socket: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            containerd_socket: containerd_socket.into(),
            namespace: "berth".to_owned(),
            state_dir: data_dir.join("runtime"),
            log_dir: data_dir.join("logs"),
            volume_dir: data_dir.join("volumes"),
            insecure_registries: Vec::new(),
            registry_certs_dir: Some(PathBuf::from(crate::image::DEFAULT_CERTS_DIR)),
            credentials: CredentialSources::default(),
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            max_concurrent_downloads: 3,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            cgroup_parent: "berth".to_owned(),
            log_rotation: LogRotation::default(),
            init_path: PathBuf::from(DEFAULT_INIT_PATH),
            namespace_dir: data_dir.join("namespaces"),
            namespace_holder: None,
        }
    }
}

/// The host runtime: images, task cgroups and containers over one containerd connection.
#[derive(Debug, Clone)]
pub struct Runtime {
    client: Arc<dyn Containerd>,
    puller: Puller,
    cgroups: Arc<Cgroups>,
    containers: Arc<Containers>,
    volume_dir: PathBuf,
    task_namespaces: Arc<TaskNamespaces>,
}

impl Runtime {
    /// Connects to containerd (a clear error naming the socket when it is not there) and
    /// detects the host's cgroup layout.
    pub async fn connect(config: RuntimeConfig) -> Result<Self, Error> {
        let layout = CgroupLayout::detect()?;
        Self::connect_with_cgroups(config, layout).await
    }

    pub(crate) async fn connect_with_cgroups(
        config: RuntimeConfig,
        layout: CgroupLayout,
    ) -> Result<Self, Error> {
        let grpc: Arc<dyn Containerd> =
            Arc::new(Grpc::connect(&config.containerd_socket, &config.namespace).await?);
        // Every part of the runtime waits through containerd restarting (see `Patient`).
        let client: Arc<dyn Containerd> = Arc::new(Patient::new(grpc));
        for dir in [&config.state_dir, &config.log_dir, &config.volume_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create directory", dir.clone(), e))?;
        }
        let cgroups = Arc::new(Cgroups::new(layout, &config.cgroup_parent)?);
        let credentials = Credentials::new(&config.credentials);
        let puller = Puller::with_sources(
            Arc::clone(&client),
            Arc::new(Registry::new(
                &config.insecure_registries,
                config.registry_certs_dir.clone(),
                credentials.clone(),
            )),
            config.max_concurrent_downloads,
            config.max_manifest_bytes,
            credentials,
            config.pull_timeout,
        );
        let containers = Arc::new(Containers::new(
            Arc::clone(&client),
            Arc::clone(&cgroups),
            config.state_dir.clone(),
            config.log_dir.clone(),
            config.log_rotation,
            config.init_path.clone(),
        ));
        let task_namespaces = Arc::new(TaskNamespaces::new(
            config.namespace_dir,
            config.namespace_holder,
            Arc::clone(&cgroups),
        ));
        Ok(Self {
            client,
            puller,
            cgroups,
            containers,
            volume_dir: config.volume_dir,
            task_namespaces,
        })
    }

    /// Releases the leases an earlier run of the agent made and never released (killed
    /// mid-pull), so containerd's collector takes what they held now rather than in 24 h.
    /// Call it at start, before any pull of this process. Returns the leases released.
    pub async fn release_abandoned_leases(&self) -> Result<Vec<String>, Error> {
        Ok(crate::containerd::lease::release_abandoned(&*self.client).await?)
    }

    /// containerd's version, e.g. "1.6.20".
    pub async fn containerd_version(&self) -> Result<String, Error> {
        Ok(self.client.version().await?)
    }

    /// "v1" or "v2".
    pub fn cgroup_version(&self) -> String {
        self.cgroups.version().to_string()
    }

    /// A sampler of tasks' resource use (cgroups and network counters).
    pub fn stats_sampler(&self) -> crate::stats::StatsSampler {
        crate::stats::StatsSampler::new(Arc::clone(&self.cgroups))
    }

    /// The containerd namespace in use.
    pub fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// Pulls an image into containerd and unpacks it. Concurrent pulls of one reference share
    /// one download; blobs and snapshots already present are reused.
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: Option<ProgressSender>,
    ) -> Result<PulledImage, PullError> {
        let pulled = self.puller.pull(reference, auth, progress).await?;
        self.containers.invalidate_image(reference);
        Ok(pulled)
    }

    /// The image `reference` as a pull would leave it, when it can start containers without
    /// the registry (record, manifest, config and unpacked snapshot present); None otherwise.
    pub async fn cached_image(&self, reference: &str) -> Result<Option<PulledImage>, Error> {
        Ok(crate::image::cached(&*self.client, reference).await?)
    }

    /// Every image in the runtime's containerd namespace, with its size.
    pub async fn list_images(&self) -> Result<Vec<ImageSummary>, Error> {
        Ok(crate::image::list_images(&*self.client).await?)
    }

    /// Removes an image and waits for containerd's garbage collector, so its content and
    /// snapshots not shared with another image or a container are gone on return. An image
    /// already gone is not an error.
    pub async fn remove_image(&self, name: &str) -> Result<(), Error> {
        crate::image::remove_image(&*self.client, name).await?;
        self.containers.invalidate_image(name);
        Ok(())
    }

    /// Checks a task's limits against its containers' before anything is created: every
    /// problem is reported at once.
    pub fn validate_limits(task: &TaskLimits, containers: &[ContainerSpec]) -> Result<(), Error> {
        let named: Vec<(&str, &crate::model::ContainerLimits)> = containers
            .iter()
            .map(|c| (c.name.as_str(), &c.limits))
            .collect();
        crate::cgroup::validate_limits(task, &named)?;
        Ok(())
    }

    /// Creates the task's parent cgroup with its limits.
    pub async fn create_task_cgroup(
        &self,
        task_id: &str,
        limits: &TaskLimits,
    ) -> Result<(), Error> {
        let (cgroups, task_id, limits) = (
            Arc::clone(&self.cgroups),
            task_id.to_owned(),
            limits.clone(),
        );
        blocking(move || cgroups.create_task(&task_id, &limits)).await
    }

    /// Removes the task's cgroup (after its containers are deleted). Idempotent. A cgroup
    /// that still holds processes is retried briefly, then reported.
    pub async fn remove_task_cgroup(&self, task_id: &str) -> Result<(), Error> {
        let (cgroups, task_id) = (Arc::clone(&self.cgroups), task_id.to_owned());
        blocking(move || cgroups.remove_task(&task_id)).await
    }

    /// What the containers of a task can limit of swap on this host (ECS `maxSwap` and
    /// `swappiness`), read from its cgroup (see [`SwapSupport`]). A container asking for what
    /// the host cannot limit still runs, without it.
    pub fn swap_support(&self, task_id: &str) -> Result<SwapSupport, Error> {
        Ok(self.cgroups.swap_support(task_id)?)
    }

    /// The cgroup path of a task (`/berth/<task-id>`).
    pub fn task_cgroup_path(&self, task_id: &str) -> Result<String, Error> {
        Ok(self.cgroups.task_path(task_id)?)
    }

    /// Creates a container (record, snapshot, its /etc files), ready to start; as with
    /// `docker create`, its process is made when it starts.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId, Error> {
        self.containers.create(spec).await
    }

    /// Sets where a container's log lines also go (a remote log driver) for the drains opened
    /// from now on: an agent that restarted calls it before [`Self::reattach_container`].
    pub fn set_log_forward(&self, id: &ContainerId, forward: crate::LogForward) {
        self.containers.set_log_forward(id, forward);
    }

    /// Takes back a container created before the agent restarted (its log drain resumes).
    pub fn reattach_container(
        &self,
        id: &ContainerId,
        task_id: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.containers.reattach(id, task_id, name)
    }

    /// Starts a created container: makes its process (runc create: what its command, mounts
    /// and namespaces need is checked here, so a command that is not executable fails the
    /// start) and starts it; returns its init process's PID.
    pub async fn start_container(&self, id: &ContainerId) -> Result<u32, Error> {
        self.containers.start(id).await
    }

    /// Makes an exited container startable again, in place (same record, snapshot, spec,
    /// cgroup and log file): its exited task is replaced by a new, not yet started one. Start
    /// it with [`Self::start_container`].
    pub async fn restart_container(&self, id: &ContainerId) -> Result<(), Error> {
        self.containers.restart(id).await
    }

    /// Waits for the container's process to exit.
    pub async fn wait_container(&self, id: &ContainerId) -> Result<ExitStatus, Error> {
        self.containers.wait(id).await
    }

    /// Runs `args` inside the running container with the container's environment, user and
    /// working directory (no terminal, output discarded); the process is killed once it has
    /// run for `timeout`. Health checks use it.
    pub async fn exec_in_container(
        &self,
        id: &ContainerId,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Error> {
        self.containers.exec(id, args, timeout).await
    }

    /// Sends a signal to the container's main process, or to all its processes.
    pub async fn kill_container(
        &self,
        id: &ContainerId,
        signal: u32,
        scope: KillScope,
    ) -> Result<(), Error> {
        self.containers.kill(id, signal, scope).await
    }

    /// SIGTERM to the main process, then SIGKILL to every process after `timeout`.
    pub async fn stop_container(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<ExitStatus, Error> {
        self.containers.stop(id, timeout).await
    }

    /// Removes the container's task, record, snapshot and FIFOs.
    pub async fn delete_container(&self, id: &ContainerId) -> Result<(), Error> {
        self.containers.delete(id).await
    }

    /// Every container Berth owns in this namespace.
    pub async fn list_containers(&self) -> Result<Vec<ContainerInfo>, Error> {
        self.containers.list().await
    }

    /// Removes the log files of a task's containers (after the task is cleaned up). Idempotent.
    pub async fn remove_task_logs(&self, task_id: &str) -> Result<(), Error> {
        crate::cgroup::validate_id("task id", task_id)?;
        let dir = self.containers.log_dir().join(task_id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove the task's logs", dir, e)),
        }
    }

    /// Creates a task's volumes under the volume directory (`<task-id>/<name>`: a directory,
    /// or a tmpfs mounted there) and returns each one's host path by name, to bind into the
    /// task's containers. Idempotent.
    pub async fn create_task_volumes(
        &self,
        task_id: &str,
        volumes: &[TaskVolume],
    ) -> Result<BTreeMap<String, PathBuf>, Error> {
        let (root, task_id, volumes) = (
            self.volume_dir.clone(),
            task_id.to_owned(),
            volumes.to_vec(),
        );
        let dir = self.volume_dir.clone();
        tokio::task::spawn_blocking(move || crate::volume::create(&root, &task_id, &volumes))
            .await
            .map_err(|e| Error::io("create task volumes", dir, std::io::Error::other(e)))?
    }

    /// Unmounts a task's tmpfs volumes and removes its volume directory (after its containers
    /// are deleted). Idempotent.
    pub async fn remove_task_volumes(&self, task_id: &str) -> Result<(), Error> {
        let (root, task_id) = (self.volume_dir.clone(), task_id.to_owned());
        let dir = self.volume_dir.clone();
        tokio::task::spawn_blocking(move || crate::volume::remove(&root, &task_id))
            .await
            .map_err(|e| Error::io("remove task volumes", dir, std::io::Error::other(e)))?
    }

    /// Where the namespaces a task's containers share are, or will be (named from the task ID
    /// alone): the paths its containers' specs join.
    pub fn task_namespace_paths(&self, task_id: &str) -> Result<TaskNamespacePaths, Error> {
        Ok(self.task_namespaces.paths(task_id)?)
    }

    /// Makes the namespaces a task's containers share (`pidMode`/`ipcMode` task), held by the
    /// task's holder process in its cgroup under the task's (which must exist), or keeps them
    /// when its holder still runs. Idempotent.
    pub async fn create_task_namespaces(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<TaskNamespacePaths, Error> {
        let (namespaces, task_id) = (Arc::clone(&self.task_namespaces), task_id.to_owned());
        let dir = self.task_namespaces.dir().to_path_buf();
        tokio::task::spawn_blocking(move || namespaces.ensure(&task_id, shared))
            .await
            .map_err(|e| Error::io("make task namespaces", dir, std::io::Error::other(e)))?
            .map_err(Error::from)
    }

    /// Whether a task's namespace holder still runs and holds the namespaces `shared` names
    /// (false once it died: its PID namespace, and every process in it, ended with it).
    pub async fn task_namespaces_held(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<bool, Error> {
        let (namespaces, task_id) = (Arc::clone(&self.task_namespaces), task_id.to_owned());
        let dir = self.task_namespaces.dir().to_path_buf();
        tokio::task::spawn_blocking(move || namespaces.held(&task_id, shared))
            .await
            .map_err(|e| Error::io("check task namespaces", dir, std::io::Error::other(e)))?
            .map_err(Error::from)
    }

    /// Kills a task's namespace holder (after its containers are stopped) and removes its
    /// namespaces' files and `/dev/shm`. Idempotent.
    pub async fn remove_task_namespaces(&self, task_id: &str) -> Result<(), Error> {
        let (namespaces, task_id) = (Arc::clone(&self.task_namespaces), task_id.to_owned());
        let dir = self.task_namespaces.dir().to_path_buf();
        tokio::task::spawn_blocking(move || namespaces.remove(&task_id))
            .await
            .map_err(|e| Error::io("remove task namespaces", dir, std::io::Error::other(e)))?
            .map_err(Error::from)
    }

    /// The log file of a task's container.
    pub fn log_path(&self, task_id: &str, container: &str) -> PathBuf {
        self.containers.log_path(task_id, container)
    }

    /// The tasks that have something of theirs under the cgroup parent, the volume directory,
    /// the log directory and the namespace directory, by task ID (entries whose names cannot be task IDs are left
    /// out: they were not made by Berth). Read off the async threads.
    pub async fn task_footprints(&self) -> Result<TaskFootprints, Error> {
        let cgroups = Arc::clone(&self.cgroups);
        let (volume_dir, log_dir, namespace_dir) = (
            self.volume_dir.clone(),
            self.containers.log_dir().to_path_buf(),
            self.task_namespaces.dir().to_path_buf(),
        );
        let dir = self.volume_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut cgroup_ids = BTreeSet::new();
            for root in cgroups.layout().hierarchy_roots() {
                cgroup_ids.extend(task_dirs(&root.join(cgroups.parent()))?);
            }
            Ok(TaskFootprints {
                cgroups: cgroup_ids,
                volumes: task_dirs(&volume_dir)?,
                logs: task_dirs(&log_dir)?,
                namespaces: task_dirs(&namespace_dir)?,
            })
        })
        .await
        .map_err(|e| Error::io("list task directories", dir, std::io::Error::other(e)))?
    }
}

/// What the tasks left on the host outside containerd, by task ID (see
/// [`Runtime::task_footprints`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFootprints {
    /// Task cgroups under the cgroup parent (in any hierarchy).
    pub cgroups: BTreeSet<String>,
    /// Task directories under the volume directory.
    pub volumes: BTreeSet<String>,
    /// Task directories under the log directory.
    pub logs: BTreeSet<String>,
    /// Task directories under the namespace directory (shared PID or IPC namespaces).
    pub namespaces: BTreeSet<String>,
}

/// The names of the directories in `dir` that can be task IDs (none when `dir` is missing).
fn task_dirs(dir: &std::path::Path) -> Result<BTreeSet<String>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(Error::io("list task directories", dir.to_path_buf(), e)),
    };
    let mut out = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list task directories", dir.to_path_buf(), e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_dir && crate::cgroup::validate_id("task id", &name).is_ok() {
            out.insert(name);
        }
    }
    Ok(out)
}

/// Runs cgroup filesystem work off the async threads.
async fn blocking<F>(f: F) -> Result<(), Error>
where
    F: FnOnce() -> Result<(), crate::cgroup::CgroupError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            Error::io(
                "run cgroup operation",
                PathBuf::from("/sys/fs/cgroup"),
                std::io::Error::other(e),
            )
        })?
        .map_err(Error::from)
}

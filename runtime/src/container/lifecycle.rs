//! The container lifecycle over containerd's Containers, Snapshots and Tasks services: create
//! (record and snapshot, as `docker create`), restart in place, reattach, delete and list; the
//! process itself (start, wait, signals, stop) is `process.rs`.

mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::container::Runtime as CdRuntime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, ListContainersRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use tokio::sync::Mutex as AsyncMutex;

use super::log::{LogPipes, LogRotation, Stdio};
use super::rootfs::{UserDatabase, read_user_database};
use super::{
    ContainerId, ContainerInfo, ContainerStatus, LABEL_CONTAINER_NAME, LABEL_STOP_TIMEOUT,
    LABEL_TASK_ID,
};
pub use process::KillScope;

/// Label recording a container's standard streams (`stdin`, `terminal`; see [`Stdio`]), so
/// that a restart in place gives the new task the same ones.
const LABEL_STDIO: &str = "berth.stdio";
use crate::cgroup::Cgroups;
use crate::containerd::{Containerd, ContainerdError, SNAPSHOTTER};
use crate::error::Error;
use crate::image::{self, LocalImage};
use crate::model::{ContainerSpec, NetworkNamespace};
use crate::spec::{self, SeccompHost, SpecContext};

const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The host's resolver configuration, the base of a container's own resolv.conf.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The running kernel's release, for seccomp profiles' `minKernel`.
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";

/// Creates, runs and removes containers. One per runtime; shared by all tasks.
#[derive(Debug)]
pub(crate) struct Containers {
    client: Containerd,
    cgroups: Arc<Cgroups>,
    io_dir: PathBuf,
    log_dir: PathBuf,
    rotation: LogRotation,
    /// The init of containers with `initProcessEnabled`.
    init_path: PathBuf,
    pipes: Mutex<HashMap<ContainerId, Arc<AsyncMutex<LogPipes>>>>,
    images: Mutex<HashMap<String, LocalImage>>,
    /// Each image's /etc/passwd and /etc/group, by top chain ID.
    user_dbs: Mutex<HashMap<String, Arc<UserDatabase>>>,
    /// The host's architecture and kernel, for seccomp profiles.
    seccomp_host: SeccompHost,
    /// Whether the host's lack of swap limits was already logged as a warning.
    swap_warned: std::sync::atomic::AtomicBool,
}

impl Containers {
    pub(crate) fn new(
        client: Containerd,
        cgroups: Arc<Cgroups>,
        state_dir: PathBuf,
        log_dir: PathBuf,
        rotation: LogRotation,
        init_path: PathBuf,
    ) -> Self {
        Self {
            client,
            cgroups,
            io_dir: state_dir.join("io"),
            log_dir,
            rotation,
            init_path,
            pipes: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            user_dbs: Mutex::new(HashMap::new()),
            seccomp_host: SeccompHost::this_machine(
                std::fs::read_to_string(KERNEL_RELEASE).ok().as_deref(),
            ),
            swap_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Where container logs live (`<task-id>/<container>.log` below).
    pub(crate) fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// The log file of a task's container.
    pub(crate) fn log_path(&self, task_id: &str, name: &str) -> PathBuf {
        self.log_dir.join(task_id).join(format!("{name}.log"))
    }

    async fn local_image(&self, reference: &str) -> Result<LocalImage, Error> {
        if let Some(img) = self.images_lock().get(reference) {
            return Ok(img.clone());
        }
        let img = image::load_local(&self.client, reference).await?;
        self.images_lock().insert(reference.to_owned(), img.clone());
        Ok(img)
    }

    /// Forgets what is cached about an image (after it was pulled again).
    pub(crate) fn invalidate_image(&self, reference: &str) {
        self.images_lock().remove(reference);
    }

    fn user_dbs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UserDatabase>>> {
        self.user_dbs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn images_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalImage>> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pipes_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Arc<AsyncMutex<LogPipes>>>> {
        self.pipes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the container (its record, its writable snapshot, its own /etc files and its
    /// log rotation), as `docker create` does: its process, and so everything runc checks when
    /// it makes one (the command, the mounts, the namespaces), comes with its start.
    /// Everything created is removed again when a later step fails.
    #[tracing::instrument(skip_all, fields(task.id = %spec.task_id, container.name = %spec.name))]
    pub(crate) async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, Error> {
        crate::cgroup::validate_id("task id", &spec.task_id)?;
        crate::cgroup::validate_id("container name", &spec.name)?;
        let image = self.local_image(&spec.image).await?;
        let id = ContainerId::for_container(&spec.task_id, &spec.name);
        // Like Docker, a container without a hostname gets 12 hex digits of its ID instead of
        // the host's name (except in the host's network, where it keeps the host's name).
        let defaulted;
        let spec = if spec.hostname.is_none() && spec.network != NetworkNamespace::Host {
            let mut s = spec.clone();
            s.hostname = Some(default_hostname(&id));
            defaulted = s;
            &defaulted
        } else {
            spec
        };

        // Refuse specs that cannot be built before anything exists in containerd. The user
        // database needs the snapshot, so the probe runs as 0:0 and the user is checked later.
        let cgroups_path = self.cgroups.container_path(&spec.task_id, &spec.name)?;
        let user = spec::effective_user(spec, &image.config);
        let needs_users = spec::needs_user_database(user);
        let mut probe = spec.clone();
        probe.user = Some("0:0".to_owned());
        spec::build(
            &probe,
            &image.config,
            &SpecContext {
                cgroups_path: cgroups_path.clone(),
                passwd: None,
                group: None,
                init_path: Some(self.init_path.clone()),
                bounding_capabilities: None,
                host_devices: Vec::new(),
                file_mounts: Vec::new(),
                devices: Vec::new(),
                swap: crate::model::SwapSupport::default(),
                seccomp_host: self.seccomp_host,
            },
        )?;

        if spec.init_process && !self.init_path.is_file() {
            return Err(Error::io(
                "find the init of initProcessEnabled (install Debian's tini or set the agent's init_path)",
                self.init_path.clone(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let mounts = self.prepare_snapshot(spec, &id, &image.chain_id).await?;
        let result = self
            .create_after_snapshot(spec, &id, &image, mounts, cgroups_path, needs_users)
            .await;
        if result.is_err() {
            self.remove_snapshot(&id).await;
        }
        result.map(|()| id)
    }

    async fn create_after_snapshot(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
        image: &LocalImage,
        mounts: Vec<containerd_client::types::Mount>,
        cgroups_path: String,
        needs_users: bool,
    ) -> Result<(), Error> {
        let users: Arc<UserDatabase> = if !needs_users {
            Arc::default()
        } else if let Some(cached) = self.user_dbs_lock().get(&image.chain_id).cloned() {
            // The files come from the image's layers, which a chain ID pins: read them once.
            cached
        } else {
            let scratch = self.io_dir.join(format!("{id}.users"));
            let mounts_for_read = mounts.clone();
            let read =
                tokio::task::spawn_blocking(move || read_user_database(&mounts_for_read, &scratch))
                    .await
                    .map_err(|e| {
                        Error::io(
                            "read the image's user database",
                            self.io_dir.clone(),
                            std::io::Error::other(e),
                        )
                    })?
                    .map_err(|e| {
                        Error::io("read the image's user database", self.io_dir.clone(), e)
                    })?;
            let read = Arc::new(read);
            self.user_dbs_lock()
                .insert(image.chain_id.clone(), Arc::clone(&read));
            read
        };
        let host_devices = if spec.privileged {
            tokio::task::spawn_blocking(|| {
                super::devices::host_devices(std::path::Path::new("/dev"))
            })
            .await
            .map_err(|e| {
                Error::io(
                    "list the host's devices",
                    PathBuf::from("/dev"),
                    std::io::Error::other(e),
                )
            })?
            .map_err(|e| Error::io("list the host's devices", PathBuf::from("/dev"), e))?
        } else {
            Vec::new()
        };
        // `ALL` and privileged mean every capability this process may hand on, as containerd's
        // WithAllCurrentCapabilities: runc cannot give a container more than its own bounding set.
        let bounding_capabilities = if spec.privileged
            || spec
                .capabilities
                .add
                .iter()
                .any(|c| c.eq_ignore_ascii_case("ALL"))
        {
            let status = tokio::fs::read_to_string("/proc/self/status")
                .await
                .map_err(|e| {
                    Error::io(
                        "read the agent's capabilities",
                        PathBuf::from("/proc/self/status"),
                        e,
                    )
                })?;
            spec::params::parse_bounding_set(&status)
        } else {
            None
        };
        let devices = mapped_devices(spec).await?;
        let swap = self.swap_support(spec)?;
        let file_mounts = self.write_etc_files(spec, id).await?;
        let oci = spec::build(
            spec,
            &image.config,
            &SpecContext {
                cgroups_path,
                passwd: users.passwd.as_deref(),
                group: users.group.as_deref(),
                init_path: Some(self.init_path.clone()),
                bounding_capabilities,
                host_devices,
                file_mounts,
                devices,
                swap,
                seccomp_host: self.seccomp_host,
            },
        );
        let oci = match oci {
            Ok(oci) => oci,
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.etc_dir(id));
                return Err(e.into());
            }
        };
        let spec_json = serde_json::to_vec(&oci).map_err(|e| {
            Error::io(
                "encode OCI spec",
                PathBuf::from(id.as_str()),
                std::io::Error::other(e),
            )
        })?;

        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(LABEL_TASK_ID.to_owned(), spec.task_id.clone());
        labels.insert(LABEL_CONTAINER_NAME.to_owned(), spec.name.clone());
        if let Some(t) = spec.stop_timeout {
            labels.insert(LABEL_STOP_TIMEOUT.to_owned(), t.as_millis().to_string());
        }
        let stdio = Stdio {
            stdin: spec.stdin_open,
            terminal: spec.terminal,
        };
        if stdio != Stdio::default() {
            labels.insert(LABEL_STDIO.to_owned(), stdio.label());
        }
        let container = Container {
            id: id.to_string(),
            labels,
            image: spec.image.clone(),
            runtime: Some(CdRuntime {
                name: RUNC_V2.to_owned(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: spec_json,
            }),
            snapshotter: SNAPSHOTTER.to_owned(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        self.client
            .containers()
            .create(self.client.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(|s| ContainerdError::new("container create", id.as_str(), &s))?;

        // The FIFOs come with the task; the rotation is recorded now, for the first start as
        // for later ones.
        let io_dir = self.io_dir.join(id.as_str());
        let rotation = spec.log_rotation.unwrap_or(self.rotation);
        if let Err(e) = std::fs::create_dir_all(&io_dir).and_then(|()| rotation.save(&io_dir)) {
            self.delete_record(id).await;
            let _ = std::fs::remove_dir_all(&io_dir);
            let _ = std::fs::remove_dir_all(self.etc_dir(id));
            return Err(Error::io("record the log rotation", io_dir, e));
        }
        Ok(())
    }

    /// What the container's cgroup can limit of swap, when it asks for a swap limit; a host
    /// that cannot is logged once (as a warning) and the container runs without it, as
    /// Docker runs it.
    fn swap_support(&self, spec: &ContainerSpec) -> Result<crate::model::SwapSupport, Error> {
        let support = self.cgroups.swap_support(&spec.task_id)?;
        let Some(max_swap_mib) = spec.limits.max_swap_mib else {
            return Ok(support);
        };
        if !support.limit {
            let first = !self
                .swap_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed);
            let message = "this host's kernel does not account swap per cgroup (cgroup v1 \
                 without memory.memsw.limit_in_bytes: boot with swapaccount=1; cgroup v2 without \
                 memory.swap.max); containers asking for maxSwap run without a swap limit";
            if first {
                tracing::warn!(task.id = %spec.task_id, container.name = %spec.name, max_swap_mib, "{message}");
            } else {
                tracing::debug!(task.id = %spec.task_id, container.name = %spec.name, max_swap_mib, "{message}");
            }
        }
        Ok(support)
    }

    /// Where a container's own `/etc/hosts` and `/etc/resolv.conf` live on the host.
    fn etc_dir(&self, id: &ContainerId) -> PathBuf {
        self.io_dir.join(format!("{id}.etc"))
    }

    /// Writes the container's own `/etc/hosts` (extra hosts) and `/etc/resolv.conf` (DNS
    /// servers, search domains) when it asks for them, and returns their bind mounts.
    async fn write_etc_files(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
    ) -> Result<Vec<oci_spec::runtime::Mount>, Error> {
        let wants_hosts = spec::etc::wants_hosts(spec);
        let wants_resolv = spec::etc::wants_resolv_conf(spec);
        if !wants_hosts && !wants_resolv {
            return Ok(Vec::new());
        }
        let dir = self.etc_dir(id);
        let hosts = wants_hosts.then(|| spec::etc::hosts(spec));
        let resolv = if wants_resolv {
            // The host's options and comments are kept; a host without the file has none.
            let host = match tokio::fs::read_to_string(HOST_RESOLV_CONF).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(Error::io(
                        "read the host's resolv.conf",
                        PathBuf::from(HOST_RESOLV_CONF),
                        e,
                    ));
                }
            };
            Some(spec::etc::resolv_conf(&host, spec))
        } else {
            None
        };
        let write = async {
            tokio::fs::create_dir_all(&dir).await?;
            let mut mounts = Vec::new();
            for (name, text) in [("hosts", hosts), ("resolv.conf", resolv)] {
                if let Some(text) = text {
                    let path = dir.join(name);
                    tokio::fs::write(&path, text).await?;
                    mounts.push(spec::etc::bind_file(&path, &format!("/etc/{name}")));
                }
            }
            Ok::<_, std::io::Error>(mounts)
        };
        match write.await {
            Ok(mounts) => Ok(mounts),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(Error::io("write the container's /etc files", dir, e))
            }
        }
    }

    async fn create_task(
        &self,
        task_id: &str,
        name: &str,
        id: &ContainerId,
        mounts: Vec<containerd_client::types::Mount>,
        rotation: LogRotation,
        stdio: Stdio,
    ) -> Result<(), Error> {
        let io_dir = self.io_dir.join(id.as_str());
        let log_path = self.log_path(task_id, name);
        let pipes = LogPipes::open(&io_dir, log_path, rotation, stdio)
            .map_err(|e| Error::io("create log FIFOs", io_dir.clone(), e))?;
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        // With a terminal the shim copies it to stdout and takes no stderr (as containerd's own
        // client sets it up); the spec's process.terminal says the same.
        let request = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts,
            stdin: path(&pipes.stdin),
            stdout: pipes.stdout.to_string_lossy().into_owned(),
            stderr: path(&pipes.stderr),
            terminal: stdio.terminal,
            ..Default::default()
        };
        match self
            .client
            .tasks()
            .create(self.client.request(request))
            .await
        {
            Ok(_) => {
                self.pipes_lock()
                    .insert(id.clone(), Arc::new(AsyncMutex::new(pipes)));
                Ok(())
            }
            Err(s) => {
                drop(pipes);
                let _ = std::fs::remove_dir_all(&io_dir);
                Err(ContainerdError::new("task create", id.as_str(), &s).into())
            }
        }
    }

    /// Re-creates the containerd task of a container whose process has exited, in place: the
    /// container record, its snapshot (so its writable layer), its OCI spec and its cgroup stay;
    /// the exited task is deleted and a new one is created on the same rootfs mounts, with fresh
    /// FIFO drains appending to the same log file. The caller starts it. A container that still
    /// runs is refused by containerd's task delete.
    #[tracing::instrument(skip_all, fields(container.id = %id))]
    pub(crate) async fn restart(&self, id: &ContainerId) -> Result<(), Error> {
        // The old task goes; its drains ended with the old process (its wait finished them).
        self.delete_task(id).await?;
        self.create_task_of(id).await
    }

    /// Prepares the container's writable snapshot. It is a collector root (nothing else
    /// references it until the container record exists) and carries the task's labels, so a
    /// leftover is found and removed by the agent's reconciliation.
    async fn prepare_snapshot(
        &self,
        spec: &ContainerSpec,
        id: &ContainerId,
        chain_id: &str,
    ) -> Result<Vec<containerd_client::types::Mount>, Error> {
        let response = self
            .client
            .snapshots()
            .prepare(self.client.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: id.to_string(),
                parent: chain_id.to_owned(),
                labels: HashMap::from([
                    (
                        "containerd.io/gc.root".to_owned(),
                        crate::time::rfc3339(SystemTime::now()),
                    ),
                    (LABEL_TASK_ID.to_owned(), spec.task_id.clone()),
                    (LABEL_CONTAINER_NAME.to_owned(), spec.name.clone()),
                ]),
            }))
            .await
            .map_err(|s| ContainerdError::new("snapshot prepare", id.as_str(), &s))?;
        Ok(response.into_inner().mounts)
    }

    /// Takes a container created by an earlier run of the agent back: reopens its output FIFOs
    /// (the shim keeps writing to them) so its log keeps growing and its exit is complete.
    pub(crate) fn reattach(
        &self,
        id: &ContainerId,
        task_id: &str,
        name: &str,
    ) -> Result<(), Error> {
        if self.pipes_lock().contains_key(id) {
            return Ok(());
        }
        let io_dir = self.io_dir.join(id.as_str());
        if !io_dir.join("stdout").exists() {
            return Ok(());
        }
        let rotation = LogRotation::load(&io_dir).unwrap_or(self.rotation);
        // The shim keeps writing stdout (and stderr, unless the container has a terminal). A
        // stdin held open by the previous agent ended with it: the container read end-of-file.
        let stdio = Stdio {
            stdin: false,
            terminal: !io_dir.join("stderr").exists(),
        };
        let pipes = LogPipes::open(&io_dir, self.log_path(task_id, name), rotation, stdio)
            .map_err(|e| Error::io("reopen log FIFOs", io_dir.clone(), e))?;
        self.pipes_lock()
            .insert(id.clone(), Arc::new(AsyncMutex::new(pipes)));
        Ok(())
    }

    /// Removes the task, the container record, its snapshot and its FIFOs. The log file stays
    /// (the agent removes it with the task). Idempotent. A running container is refused.
    pub(crate) async fn delete(&self, id: &ContainerId) -> Result<(), Error> {
        self.delete_task(id).await?;
        let _ = std::fs::remove_dir_all(self.io_dir.join(id.as_str()));
        let _ = std::fs::remove_dir_all(self.etc_dir(id));
        self.delete_record(id).await;
        self.remove_snapshot(id).await;
        Ok(())
    }

    /// Deletes the container's task (gone already is fine) and ends its output drains.
    async fn delete_task(&self, id: &ContainerId) -> Result<(), Error> {
        match self
            .client
            .tasks()
            .delete(self.client.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(ContainerdError::new("task delete", id.as_str(), &s).into()),
        }
        let pipes = self.pipes_lock().remove(id);
        if let Some(pipes) = pipes {
            pipes.lock().await.finish(Duration::ZERO).await;
        }
        Ok(())
    }

    async fn delete_record(&self, id: &ContainerId) {
        if let Err(s) = self
            .client
            .containers()
            .delete(
                self.client
                    .request(DeleteContainerRequest { id: id.to_string() }),
            )
            .await
            && s.code() != tonic::Code::NotFound
        {
            tracing::warn!(container.id = %id, error = %s.message(), "could not delete container record");
        }
    }

    async fn remove_snapshot(&self, id: &ContainerId) {
        if let Err(s) = self
            .client
            .snapshots()
            .remove(self.client.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: id.to_string(),
            }))
            .await
            && s.code() != tonic::Code::NotFound
        {
            tracing::warn!(container.id = %id, error = %s.message(), "could not remove container snapshot");
        }
    }

    /// Every container in the namespace that carries Berth's task label, with its task state.
    pub(crate) async fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        let containers = self
            .client
            .containers()
            .list(self.client.request(ListContainersRequest {
                filters: vec![format!("labels.\"{LABEL_TASK_ID}\"")],
            }))
            .await
            .map_err(|s| ContainerdError::new("container list", "", &s))?
            .into_inner()
            .containers;
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let (Some(task_id), Some(name)) = (
                c.labels.get(LABEL_TASK_ID),
                c.labels.get(LABEL_CONTAINER_NAME),
            ) else {
                continue;
            };
            let process = match self
                .client
                .tasks()
                .get(self.client.request(GetRequest {
                    container_id: c.id.clone(),
                    exec_id: String::new(),
                }))
                .await
            {
                Ok(r) => r.into_inner().process,
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(ContainerdError::new("task get", &c.id, &s).into()),
            };
            let status = match process.as_ref().map(|p| TaskStatus::try_from(p.status)) {
                None => ContainerStatus::NoTask,
                Some(Ok(TaskStatus::Created)) => ContainerStatus::Created,
                Some(Ok(TaskStatus::Running)) => ContainerStatus::Running,
                Some(Ok(TaskStatus::Stopped)) => ContainerStatus::Stopped,
                Some(Ok(TaskStatus::Paused | TaskStatus::Pausing)) => ContainerStatus::Paused,
                Some(_) => ContainerStatus::Unknown,
            };
            out.push(ContainerInfo {
                id: ContainerId::from_containerd(c.id.clone()),
                task_id: task_id.clone(),
                name: name.clone(),
                image: c.image.clone(),
                status,
                pid: process.as_ref().map(|p| p.pid).filter(|p| *p != 0),
                exit_code: process
                    .filter(|_| status == ContainerStatus::Stopped)
                    .map(|p| p.exit_status),
                stop_timeout: c
                    .labels
                    .get(LABEL_STOP_TIMEOUT)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(Duration::from_millis),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// The device nodes a container maps, found on the host (after the agent allowed them), each
/// with its device cgroup access.
async fn mapped_devices(
    spec: &ContainerSpec,
) -> Result<Vec<(oci_spec::runtime::LinuxDevice, String)>, Error> {
    let mut out = Vec::new();
    for mapping in &spec.devices {
        let host = mapping.host_path.clone();
        let in_container = PathBuf::from(&mapping.container_path);
        let found = tokio::task::spawn_blocking(move || {
            super::devices::mapped_devices(&host, &in_container)
        })
        .await
        .map_err(|e| {
            Error::io(
                "map the device",
                mapping.host_path.clone(),
                std::io::Error::other(e),
            )
        })?
        .map_err(|e| Error::io("map the device", mapping.host_path.clone(), e))?;
        out.extend(
            found
                .into_iter()
                .map(|node| (node, mapping.permissions.clone())),
        );
    }
    Ok(out)
}

/// Docker's default hostname: the first 12 hex digits of an ID.
fn default_hostname(id: &ContainerId) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_str().as_bytes()))[..12].to_owned()
}

/// NotFound from the Tasks service means the container has no task (or does not exist).
fn not_found_or(id: &ContainerId, client: &Containerd, e: ContainerdError) -> Error {
    if e.is_not_found() {
        Error::NotFound {
            id: id.to_string(),
            namespace: client.namespace().to_owned(),
        }
    } else {
        e.into()
    }
}

//! The runtime's public input types: what a caller asks for, independent of containerd and proto.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest hard memory limit a container or task may have, as Docker and ECS enforce.
pub const MIN_MEMORY_MIB: u64 = 6;

/// Task-level resource budget, applied to the task's parent cgroup `/berth/<task-id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// ECS CPU units (1024 = one vCPU); becomes a CFS quota over a 100 ms period (a hard cap).
    pub cpu_units: Option<u32>,
    /// The task cgroup's relative CPU weight as cgroup v1 `cpu.shares` (clamped to 2..=262144;
    /// `cpu.weight` by runc's formula on v2), no cap: what ECS gives a task without a
    /// task-level cpu (the sum of its containers' cpu, each at least 2).
    pub cpu_shares: Option<u64>,
    /// Hard memory limit of the whole task, in MiB.
    pub memory_mib: Option<u64>,
}

/// Container-level limits, applied through the OCI spec to `/berth/<task-id>/<container-name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLimits {
    /// ECS CPU units; becomes cpu.shares (v1) or cpu.weight (v2). 0 means "no reservation" and
    /// gets the kernel's minimum of 2 shares, as on ECS.
    pub cpu_units: u32,
    /// Hard memory limit in MiB (ECS `memory`).
    pub memory_mib: Option<u64>,
    /// Soft memory limit in MiB (ECS `memoryReservation`).
    pub memory_reservation_mib: Option<u64>,
    /// Swap the container may use besides its memory, in MiB (ECS `linuxParameters.maxSwap`):
    /// the memory+swap limit is `memory_mib` plus this, so 0 means no swap. Needs `memory_mib`.
    /// None leaves swap to the host (no limit of the container's own).
    pub max_swap_mib: Option<u64>,
    /// The container's swappiness, 0 to 100 (ECS `linuxParameters.swappiness`); used only with
    /// `max_swap_mib` (60, ECS's default, when None), and only on cgroup v1, which has it.
    pub swappiness: Option<u64>,
}

/// ECS's swappiness when `maxSwap` is set and `swappiness` is not.
pub const DEFAULT_SWAPPINESS: u64 = 60;

/// Whether the host's kernel lets a container's cgroup limit swap, found in its task's cgroup
/// ([`crate::Runtime::swap_support`]). Where it cannot, the runtime runs the container without
/// the swap setting, as Docker does (with a warning), rather than failing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapSupport {
    /// A memory+swap limit can be set: cgroup v1 with swap accounting
    /// (`memory.memsw.limit_in_bytes`), or cgroup v2 with `memory.swap.max`.
    pub limit: bool,
    /// A swappiness can be set (`memory.swappiness`): cgroup v1 only.
    pub swappiness: bool,
}

impl Default for SwapSupport {
    /// Both: what a spec is built for when nothing was detected.
    fn default() -> Self {
        Self {
            limit: true,
            swappiness: true,
        }
    }
}

/// A host device made available in a container (ECS `linuxParameters.devices[]`, Docker's
/// `--device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The device node on the host, or a directory whose device nodes are all mapped (below
    /// `container_path`, as Docker does). Whether a host lets a task use it is the caller's
    /// decision.
    pub host_path: PathBuf,
    /// Where it appears in the container (absolute).
    pub container_path: String,
    /// The device cgroup access: a non-empty subset of `rwm` (read, write, mknod).
    pub permissions: String,
}

/// One resource limit (ECS `ulimits`), for example `nofile` 1024/4096.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker/ECS name without the `RLIMIT_` prefix: `nofile`, `nproc`, `core`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Which network namespace a container runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkNamespace {
    /// A new, empty namespace (loopback only).
    #[default]
    New,
    /// Join an existing namespace by path (the task's namespace, made by the networking layer).
    Join(PathBuf),
    /// The host's namespace.
    Host,
}

/// Which PID namespace a container runs in (ECS `pidMode`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PidNamespace {
    /// A namespace of its own: its process is PID 1 and sees only its descendants.
    #[default]
    Private,
    /// The host's (`pidMode: host`): it sees, and may signal, every process of the host.
    Host,
    /// The task's (`pidMode: task`): the namespace file at this path, made by
    /// `Runtime::create_task_namespaces` and held by the task's holder process (its PID 1), so
    /// every container of the task sees the others' processes.
    Task(PathBuf),
}

/// Which IPC namespace a container runs in, and what its `/dev/shm` is (ECS `ipcMode`, with
/// Docker's semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IpcNamespace {
    /// A namespace of its own with a private `/dev/shm` tmpfs (sized by `shm_size_mib`).
    #[default]
    Private,
    /// The host's (`ipcMode: host`): SysV IPC objects and the host's `/dev/shm` are shared.
    Host,
    /// A namespace of its own and no `/dev/shm` mounted at all (`ipcMode: none`).
    None,
    /// The task's (`ipcMode: task`): the namespace file `namespace` and the tmpfs `shm`, both
    /// made by `Runtime::create_task_namespaces`, so SysV IPC objects and `/dev/shm` are shared
    /// by every container of the task.
    Task {
        /// The IPC namespace's file.
        namespace: PathBuf,
        /// The task's `/dev/shm` on the host, bound into each container.
        shm: PathBuf,
    },
}

/// Everything needed to create one container of a task: the ECS container-definition fields
/// that concern a single container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The scheduler's task ID; names the task cgroup and labels the container.
    pub task_id: String,
    /// Container name, unique within the task.
    pub name: String,
    /// Image reference, already pulled.
    pub image: String,
    /// ECS `entryPoint`: replaces the image's Entrypoint and drops its Cmd unless `command` is set.
    pub entry_point: Option<Vec<String>>,
    /// ECS `command`: replaces the image's Cmd.
    pub command: Option<Vec<String>>,
    /// ECS `environment`: added to the image's Env, overriding equal names.
    pub environment: BTreeMap<String, String>,
    /// ECS `workingDirectory`.
    pub working_directory: Option<String>,
    /// ECS `user`: a name, a uid, `uid:gid`, `name:group`.
    pub user: Option<String>,
    pub limits: ContainerLimits,
    /// ECS `stopTimeout`: time between SIGTERM and SIGKILL.
    pub stop_timeout: Option<Duration>,
    /// ECS `readonlyRootFilesystem`.
    pub readonly_root_filesystem: bool,
    /// ECS `ulimits`.
    pub ulimits: Vec<Ulimit>,
    /// ECS `hostname`.
    pub hostname: Option<String>,
    pub network: NetworkNamespace,
    /// The task's `pidMode`.
    pub pid: PidNamespace,
    /// The task's `ipcMode`.
    pub ipc: IpcNamespace,
    /// Extra labels for the containerd container record (ECS `dockerLabels`).
    pub labels: BTreeMap<String, String>,
    /// Rotation of the container's json-file log (ECS `logConfiguration` options `max-size`
    /// and `max-file`); the runtime's default when absent.
    pub log_rotation: Option<crate::LogRotation>,
    /// Where the container's log lines also go (a remote log driver such as awslogs), beside
    /// the json-file copy. Held by the runtime until the container is deleted.
    pub log_forward: Option<crate::LogForward>,
    /// Host directories bound into the container (ECS `mountPoints` and `volumesFrom`).
    pub mounts: Vec<Mount>,
    /// ECS `systemControls`: namespaced kernel parameters, by dotted name.
    pub sysctls: BTreeMap<String, String>,
    /// ECS `extraHosts`: entries appended to the container's `/etc/hosts`.
    pub extra_hosts: Vec<HostEntry>,
    /// ECS `dnsServers`: the container's own resolv.conf name servers (empty: the host's).
    pub dns_servers: Vec<String>,
    /// ECS `dnsSearchDomains`: the container's own resolv.conf search list (empty: the host's).
    pub dns_search_domains: Vec<String>,
    /// ECS `linuxParameters.capabilities`.
    pub capabilities: CapabilityChanges,
    /// ECS `linuxParameters.sharedMemorySize`: size of `/dev/shm` in MiB (None: 64 MiB).
    pub shm_size_mib: Option<u64>,
    /// ECS `linuxParameters.tmpfs`.
    pub tmpfs: Vec<TmpfsMount>,
    /// ECS `privileged`, as Docker's `--privileged`: every capability (`capabilities` is then
    /// ignored), every host device, no masked or read-only paths, `/sys` and the cgroup tree
    /// writable. Whether a host allows it is the caller's decision.
    pub privileged: bool,
    /// ECS `linuxParameters.initProcessEnabled`: the runtime's init (tini) runs as PID 1 and
    /// starts the container's command, as `docker run --init`.
    pub init_process: bool,
    /// ECS `linuxParameters.devices`: host devices in the container, with a device cgroup rule
    /// each (ignored for a privileged container's cgroup, which allows every device).
    pub devices: Vec<DeviceMapping>,
    /// ECS `dockerSecurityOptions` `no-new-privileges[=bool]`: whether the process may not gain
    /// privileges through setuid binaries or file capabilities. None means Docker's and ECS's
    /// default: off.
    pub no_new_privileges: Option<bool>,
    /// ECS `dockerSecurityOptions` `seccomp=...`: the container's seccomp filter, Berth's
    /// default profile unless the definition names another or none. A privileged container
    /// never gets one, as on Docker.
    pub seccomp: Seccomp,
    /// ECS `interactive`: the container's stdin stays open (reads block rather than end) while
    /// the runtime that created it runs.
    pub stdin_open: bool,
    /// ECS `pseudoTerminal`: the container gets a terminal; its output (one stream) is logged
    /// as stdout.
    pub terminal: bool,
}

/// The seccomp filter a container runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// Berth's default profile, with Docker's default profile's rules (what `docker run`
    /// applies without `--security-opt seccomp=...`).
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A Docker-format profile the definition named (`seccomp=<path>`).
    Profile(crate::SeccompProfile),
}

/// A host directory bound into a container (recursively, with private propagation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A per-task volume the runtime makes on the host (under `<data dir>/volumes/<task-id>/`),
/// shared by the task's containers and removed with the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskVolume {
    /// The volume's name: one path component (letters, digits, `_`, `.`, `-`).
    pub name: String,
    pub kind: TaskVolumeKind,
}

/// What backs a [`TaskVolume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskVolumeKind {
    /// A plain directory on the host's filesystem.
    Directory,
    /// A tmpfs mounted on the host at the volume's directory, so that every container of the
    /// task sees the same one.
    Tmpfs {
        /// The mount's source name (`tmpfs` when empty).
        device: String,
        /// tmpfs mount options such as `size=64m`, `mode=1777`, `noexec`.
        options: Vec<String>,
    },
    /// A host path the agent allowed, bound from what the runtime opens without following
    /// any symlink (see `volume/host_bind.rs`): the containers bind a staging point of the
    /// task's, never the host path itself.
    HostPath {
        /// The absolute path as the agent resolved it when it allowed it.
        path: PathBuf,
    },
}

/// One `/etc/hosts` entry (ECS `extraHosts[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub hostname: String,
    pub ip_address: String,
}

/// Capabilities added to and dropped from Docker's default set, as Docker applies them: names
/// with or without `CAP_`, in any case, or `ALL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// One tmpfs mount (ECS `linuxParameters.tmpfs[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub container_path: String,
    pub size_mib: u64,
    /// Docker's tmpfs options (`noexec`, `mode=1777`, ...).
    pub mount_options: Vec<String>,
}

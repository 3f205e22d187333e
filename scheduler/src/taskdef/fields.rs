//! The one table of the ECS task-definition fields Berth knows, and what it does with each.
//!
//! Every field of ECS's RegisterTaskDefinition input is listed here exactly once, as one of:
//! - **supported**: checked against its JSON shape and carried into the proto model;
//! - **ignored**: accepted and dropped because it has no effect on a Berth host (IAM roles,
//!   launch-type compatibilities, tags);
//! - **read-only**: the fields `aws ecs describe-task-definition` adds, which people save and
//!   register again: accepted, dropped, and named in one note of the registration's output;
//! - **noted**: accepted and dropped with a note of its own (`ephemeralStorage`);
//! - **unsupported**: refused by name while it asks for something, with what to use instead,
//!   so that nothing a user asked for is dropped silently.
//!
//! An optional field that is `null`, `[]`, `{}` or `""` (and an unsupported one that is `false`)
//! asks for nothing and is the same as absent, at every level (`walk::prune`).
//!
//! Supporting a field later means moving its entry from `unsupported` to `supported` here, adding
//! it to the serde structs in `ecs.rs` and converting it in `convert.rs`.

/// What Berth does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Support {
    Supported,
    /// Accepted and dropped: it has no effect on a Berth host.
    Ignored,
    /// Accepted and dropped: a read-only field of describe-task-definition output, named in the
    /// registration's note.
    ReadOnly,
    /// Accepted and dropped, with this note in the registration's output.
    Noted(&'static str),
    /// Refused while it asks for something: Berth cannot honour it; the text says what to use
    /// instead.
    Unsupported(&'static str),
}

/// The JSON shape a supported field must have.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    String,
    Bool,
    /// A non-negative integer that fits in a `u32`.
    U32,
    /// A non-negative integer that fits in a `u64`.
    U64,
    /// Task-level CPU: an integer, or a string like "256" or "1 vCPU".
    TaskCpu,
    /// Task-level memory in MiB: an integer, or a string like "512" or "1 GB".
    TaskMemory,
    /// An array of strings.
    StringList,
    /// An object whose values are strings.
    StringMap,
    /// An array of non-negative integers that fit in a `u32`.
    U32List,
    /// An object with the given fields.
    Object(&'static [Field]),
    /// An array of objects with the given fields.
    ObjectList(&'static [Field]),
    /// Anything (ignored and unsupported fields are not looked into).
    Any,
}

/// One field of an ECS object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) support: Support,
    pub(super) required: bool,
    pub(super) shape: Shape,
}

const fn required(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        support: Support::Supported,
        required: true,
        shape,
    }
}

const fn optional(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        support: Support::Supported,
        required: false,
        shape,
    }
}

const fn ignored(name: &'static str) -> Field {
    Field {
        name,
        support: Support::Ignored,
        required: false,
        shape: Shape::Any,
    }
}

const fn read_only(name: &'static str) -> Field {
    Field {
        name,
        support: Support::ReadOnly,
        required: false,
        shape: Shape::Any,
    }
}

const fn noted(name: &'static str, note: &'static str) -> Field {
    Field {
        name,
        support: Support::Noted(note),
        required: false,
        shape: Shape::Any,
    }
}

/// A field Berth refuses while it asks for something; `instead` says what to do instead.
const fn unsupported(name: &'static str, instead: &'static str) -> Field {
    Field {
        name,
        support: Support::Unsupported(instead),
        required: false,
        shape: Shape::Any,
    }
}

/// The top level of a task definition (ECS RegisterTaskDefinition).
pub(super) const TASK_DEFINITION: &[Field] = &[
    required("family", Shape::String),
    required(
        "containerDefinitions",
        Shape::ObjectList(CONTAINER_DEFINITION),
    ),
    optional("cpu", Shape::TaskCpu),
    optional("memory", Shape::TaskMemory),
    optional("networkMode", Shape::String),
    // IAM roles: Berth hosts have no AWS credentials to hand out; images come from registries
    // configured on the agent.
    ignored("executionRoleArn"),
    ignored("taskRoleArn"),
    // EC2 / FARGATE / EXTERNAL: a Berth host runs every task the same way.
    ignored("requiresCompatibilities"),
    // Resource tags are an AWS billing/IAM concept with no meaning on a Berth host.
    ignored("tags"),
    optional("volumes", Shape::ObjectList(VOLUME)),
    // Berth's own extensions, in one object so that no ECS field name is ever taken.
    optional("berth", Shape::Object(BERTH)),
    // What `aws ecs describe-task-definition` adds to a definition.
    read_only("taskDefinitionArn"),
    read_only("revision"),
    read_only("status"),
    read_only("requiresAttributes"),
    read_only("compatibilities"),
    read_only("registeredAt"),
    read_only("registeredBy"),
    read_only("deregisteredAt"),
    noted(
        "ephemeralStorage",
        "ephemeralStorage is ignored, as ECS ignores it on EC2: a task's writable layers use the \
         host's disk",
    ),
    optional(
        "placementConstraints",
        Shape::ObjectList(PLACEMENT_CONSTRAINT),
    ),
    unsupported(
        "proxyConfiguration",
        "Berth has no App Mesh integration: run the proxy as a container of the task and point \
         the application at it",
    ),
    unsupported(
        "inferenceAccelerators",
        "Elastic Inference accelerators exist only on AWS: remove it",
    ),
    optional("runtimePlatform", Shape::Object(RUNTIME_PLATFORM)),
    optional("pidMode", Shape::String),
    optional("ipcMode", Shape::String),
    unsupported(
        "enableFaultInjection",
        "Berth has no fault-injection endpoints: remove it or set it to false",
    ),
];

/// One of a task's `placementConstraints` (ECS TaskDefinitionPlacementConstraint): `memberOf`
/// with an expression in the cluster query language, checked at placement.
pub(super) const PLACEMENT_CONSTRAINT: &[Field] = &[
    required("type", Shape::String),
    optional("expression", Shape::String),
];

/// A task's `runtimePlatform` (ECS RuntimePlatform), checked at placement.
pub(super) const RUNTIME_PLATFORM: &[Field] = &[
    optional("cpuArchitecture", Shape::String),
    optional("operatingSystemFamily", Shape::String),
];

/// The CPU architectures of ECS's `runtimePlatform`, each with the architecture a Berth agent
/// reports in its `berth.cpu-architecture` attribute.
pub(crate) const CPU_ARCHITECTURES: &[(&str, &str)] = &[("X86_64", "amd64"), ("ARM64", "arm64")];

/// The operating-system family of ECS's `runtimePlatform` Berth runs, with the OS a Berth agent
/// reports in its `berth.os-type` attribute.
pub(crate) const OS_FAMILIES: &[(&str, &str)] = &[("LINUX", "linux")];

/// The task-level `berth` object: Berth's extensions of an ECS task definition.
pub(super) const BERTH: &[Field] = &[
    // default, always, once or prefer-cached (`berth_policy::PullBehavior`); overrides the
    // agent's image_pull_behavior for this definition's tasks.
    optional("imagePullBehavior", Shape::String),
];

/// One element of `containerDefinitions`.
pub(super) const CONTAINER_DEFINITION: &[Field] = &[
    required("name", Shape::String),
    required("image", Shape::String),
    optional("cpu", Shape::U32),
    optional("memory", Shape::U64),
    optional("memoryReservation", Shape::U64),
    optional("essential", Shape::Bool),
    optional("entryPoint", Shape::StringList),
    optional("command", Shape::StringList),
    optional("environment", Shape::ObjectList(KEY_VALUE_PAIR)),
    optional("workingDirectory", Shape::String),
    optional("user", Shape::String),
    optional("stopTimeout", Shape::U32),
    optional("readonlyRootFilesystem", Shape::Bool),
    optional("ulimits", Shape::ObjectList(ULIMIT)),
    optional("hostname", Shape::String),
    optional("dockerLabels", Shape::StringMap),
    optional("dependsOn", Shape::ObjectList(CONTAINER_DEPENDENCY)),
    optional("startTimeout", Shape::U32),
    optional("restartPolicy", Shape::Object(RESTART_POLICY)),
    optional("logConfiguration", Shape::Object(LOG_CONFIGURATION)),
    optional("mountPoints", Shape::ObjectList(MOUNT_POINT)),
    optional("volumesFrom", Shape::ObjectList(VOLUME_FROM)),
    optional("healthCheck", Shape::Object(HEALTH_CHECK)),
    optional("systemControls", Shape::ObjectList(SYSTEM_CONTROL)),
    optional("extraHosts", Shape::ObjectList(HOST_ENTRY)),
    optional("dnsServers", Shape::StringList),
    optional("dnsSearchDomains", Shape::StringList),
    optional("linuxParameters", Shape::Object(LINUX_PARAMETERS)),
    optional("privileged", Shape::Bool),
    optional("environmentFiles", Shape::ObjectList(ENVIRONMENT_FILE)),
    optional("disableNetworking", Shape::Bool),
    optional("portMappings", Shape::ObjectList(PORT_MAPPING)),
    optional("links", Shape::StringList),
    optional("dockerSecurityOptions", Shape::StringList),
    optional("interactive", Shape::Bool),
    optional("pseudoTerminal", Shape::Bool),
    optional(
        "repositoryCredentials",
        Shape::Object(REPOSITORY_CREDENTIALS),
    ),
    optional("secrets", Shape::ObjectList(SECRET)),
    unsupported(
        "versionConsistency",
        "remove it; the agent resolves an image's tag when it pulls it for a task",
    ),
    unsupported(
        "resourceRequirements",
        "GPUs and inference accelerators are not scheduled by Berth: map a device with \
         `linuxParameters.devices` on an agent whose `allowed_devices` lists it",
    ),
    unsupported(
        "firelensConfiguration",
        "FireLens log routing is not supported: keep the json-file log driver (`berthctl logs` \
         reads it) and ship the log files with a collector on the host",
    ),
    unsupported(
        "credentialSpecs",
        "credential specs are for Windows containers (gMSA), which Berth does not run: remove it",
    ),
];

/// One element of a container's `portMappings` (ECS PortMapping). ECS lets `containerPort` be
/// omitted when `containerPortRange` is given; ranges are refused, so Berth requires it.
pub(super) const PORT_MAPPING: &[Field] = &[
    required("containerPort", Shape::U32),
    optional("hostPort", Shape::U32),
    optional("protocol", Shape::String),
    // Service Connect's name and application protocol of the port: Berth has no Service
    // Connect, and neither changes how the port is mapped.
    ignored("name"),
    ignored("appProtocol"),
    unsupported(
        "containerPortRange",
        "map each port with its own `containerPort`",
    ),
    unsupported(
        "hostPortRange",
        "map each port with its own `containerPort` and `hostPort`",
    ),
];

/// The protocols of a port mapping, as stored (ECS accepts them in lower case).
pub(super) const PORT_PROTOCOLS: &[&str] = &["tcp", "udp"];
/// The protocol of a port mapping that names none.
pub(super) const DEFAULT_PORT_PROTOCOL: &str = "tcp";
/// The ports a mapping may name.
pub(super) const PORTS: std::ops::RangeInclusive<u32> = 1..=65535;
/// The longest alias of a link (ECS: up to 255 letters, digits, hyphens and underscores).
pub(super) const MAX_LINK_ALIAS_LEN: usize = 255;

/// One element of `volumes` (ECS Volume). ECS documents `name` as optional, but a volume
/// without a name cannot be mounted, so Berth requires it.
pub(super) const VOLUME: &[Field] = &[
    required("name", Shape::String),
    optional("host", Shape::Object(HOST_VOLUME)),
    optional(
        "dockerVolumeConfiguration",
        Shape::Object(DOCKER_VOLUME_CONFIGURATION),
    ),
    unsupported(
        "efsVolumeConfiguration",
        "mount the file system on the host and use a `host` volume with its `sourcePath`",
    ),
    unsupported(
        "fsxWindowsFileServerVolumeConfiguration",
        "FSx for Windows volumes are for Windows containers, which Berth does not run",
    ),
    unsupported(
        "configuredAtLaunch",
        "volumes configured at launch come with services: use a `host` volume or a task volume",
    ),
];

/// A volume's `host` (ECS HostVolumeProperties).
pub(super) const HOST_VOLUME: &[Field] = &[optional("sourcePath", Shape::String)];

/// A volume's `dockerVolumeConfiguration`.
pub(super) const DOCKER_VOLUME_CONFIGURATION: &[Field] = &[
    optional("scope", Shape::String),
    optional("autoprovision", Shape::Bool),
    optional("driver", Shape::String),
    optional("driverOpts", Shape::StringMap),
    optional("labels", Shape::StringMap),
];

/// One element of a container's `mountPoints` (ECS MountPoint). ECS lets both paths be
/// omitted, but a mount needs both, so Berth requires them.
pub(super) const MOUNT_POINT: &[Field] = &[
    required("sourceVolume", Shape::String),
    required("containerPath", Shape::String),
    optional("readOnly", Shape::Bool),
];

/// One element of a container's `volumesFrom` (ECS VolumeFrom).
pub(super) const VOLUME_FROM: &[Field] = &[
    required("sourceContainer", Shape::String),
    optional("readOnly", Shape::Bool),
];

/// The `dockerVolumeConfiguration.scope` values of ECS, and the one Berth supports.
pub(super) const VOLUME_SCOPES: &[&str] = &["task", "shared"];
pub(super) const SUPPORTED_VOLUME_SCOPE: &str = "task";
/// The one volume driver Berth supports (Docker's default).
pub(super) const SUPPORTED_VOLUME_DRIVER: &str = "local";
/// The `driverOpts` keys of the local driver, and the one `type` Berth supports.
pub(super) const LOCAL_DRIVER_OPTS: &[&str] = &["type", "device", "o"];
pub(super) const SUPPORTED_LOCAL_TYPE: &str = "tmpfs";
/// tmpfs mount options a volume may give in `driverOpts.o`: flags, and `name=value` options.
pub(super) const TMPFS_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "strictatime",
];
/// The options with a value a tmpfs docker volume's `o` may carry (`size=64m`).
pub(super) const VOLUME_TMPFS_VALUE_OPTIONS: &[&str] = &[
    "size",
    "nr_blocks",
    "nr_inodes",
    "mode",
    "uid",
    "gid",
    "huge",
    "mpol",
];

/// One element of a container's `environment`.
pub(super) const KEY_VALUE_PAIR: &[Field] = &[
    required("name", Shape::String),
    optional("value", Shape::String),
];

/// One element of a container's `ulimits`.
pub(super) const ULIMIT: &[Field] = &[
    required("name", Shape::String),
    required("softLimit", Shape::U64),
    required("hardLimit", Shape::U64),
];

/// One element of a container's `dependsOn` (ECS ContainerDependency: both members required).
pub(super) const CONTAINER_DEPENDENCY: &[Field] = &[
    required("containerName", Shape::String),
    required("condition", Shape::String),
];

/// A container's `restartPolicy` (ECS ContainerRestartPolicy: only `enabled` is required).
pub(super) const RESTART_POLICY: &[Field] = &[
    required("enabled", Shape::Bool),
    optional("ignoredExitCodes", Shape::U32List),
    optional("restartAttemptPeriod", Shape::U32),
];

/// A container's `logConfiguration` (ECS LogConfiguration). The driver and its options are
/// checked in `convert.rs` and `awslogs.rs`.
pub(super) const LOG_CONFIGURATION: &[Field] = &[
    required("logDriver", Shape::String),
    optional("options", Shape::StringMap),
    unsupported(
        "secretOptions",
        "log driver secrets from AWS are not fetched: json-file needs none and awslogs uses \
         the host's AWS credentials",
    ),
];

/// The log drivers a Berth host has.
pub(super) const LOG_DRIVERS: &[&str] = &["json-file", "awslogs"];

/// The json-file options Berth honours (Docker's names); others are refused by name.
pub(super) const LOG_OPTIONS: &[&str] = &["max-size", "max-file"];

/// The most files `max-file` may keep (each rotation renames every kept file).
pub(super) const MAX_LOG_FILES: u32 = 100;

/// A container's `healthCheck` (ECS HealthCheck: only `command` is required).
pub(super) const HEALTH_CHECK: &[Field] = &[
    required("command", Shape::StringList),
    optional("interval", Shape::U32),
    optional("timeout", Shape::U32),
    optional("retries", Shape::U32),
    optional("startPeriod", Shape::U32),
];

/// ECS's bounds and defaults of a `healthCheck`: interval and timeout in seconds, retries, and
/// startPeriod in seconds (0, the default, turns it off).
pub(super) const HEALTH_CHECK_INTERVAL_SECONDS: std::ops::RangeInclusive<u32> = 5..=300;
pub(super) const DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS: u32 = 30;
pub(super) const HEALTH_CHECK_TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 2..=60;
pub(super) const DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS: u32 = 5;
pub(super) const HEALTH_CHECK_RETRIES: std::ops::RangeInclusive<u32> = 1..=10;
pub(super) const DEFAULT_HEALTH_CHECK_RETRIES: u32 = 3;
pub(super) const HEALTH_CHECK_START_PERIOD_SECONDS: std::ops::RangeInclusive<u32> = 0..=300;

/// One element of a container's `environmentFiles` (ECS EnvironmentFile). ECS only knows type
/// `s3`; Berth reads a file on the host instead (type `file`) and refuses `s3`, which needs AWS
/// credentials.
pub(super) const SECRET: &[Field] = &[
    required("name", Shape::String),
    required("valueFrom", Shape::String),
];

/// A container's `repositoryCredentials` (ECS RepositoryCredentials): the name of a secret of
/// the cluster holding `{"username", "password"}`.
pub(super) const REPOSITORY_CREDENTIALS: &[Field] =
    &[required("credentialsParameter", Shape::String)];

/// One element of a container's `environmentFiles` (see below).
pub(super) const ENVIRONMENT_FILE: &[Field] = &[
    required("value", Shape::String),
    required("type", Shape::String),
];

/// One element of a container's `systemControls` (ECS SystemControl).
pub(super) const SYSTEM_CONTROL: &[Field] = &[
    required("namespace", Shape::String),
    required("value", Shape::String),
];

/// One element of a container's `extraHosts` (ECS HostEntry).
pub(super) const HOST_ENTRY: &[Field] = &[
    required("hostname", Shape::String),
    required("ipAddress", Shape::String),
];

/// A container's `linuxParameters` (ECS LinuxParameters).
pub(super) const LINUX_PARAMETERS: &[Field] = &[
    optional("capabilities", Shape::Object(KERNEL_CAPABILITIES)),
    optional("sharedMemorySize", Shape::U32),
    optional("tmpfs", Shape::ObjectList(TMPFS)),
    optional("initProcessEnabled", Shape::Bool),
    optional("devices", Shape::ObjectList(DEVICE)),
    optional("maxSwap", Shape::U32),
    optional("swappiness", Shape::U32),
];

/// One element of `linuxParameters.devices` (ECS Device).
pub(super) const DEVICE: &[Field] = &[
    required("hostPath", Shape::String),
    optional("containerPath", Shape::String),
    optional("permissions", Shape::StringList),
];

/// What a container may do with a device (ECS DeviceCgroupPermission), in the order of the
/// cgroup's access letters `rwm`.
pub(super) const DEVICE_PERMISSIONS: &[&str] = &["read", "write", "mknod"];

/// ECS's bounds of `linuxParameters.swappiness`.
pub(super) const SWAPPINESS: std::ops::RangeInclusive<u32> = 0..=100;

/// The Docker security options (`dockerSecurityOptions`, Docker's `--security-opt`) Berth
/// supports, by key; `no-new-privileges` may stand alone.
pub(super) const SECURITY_OPTIONS: &[&str] = &["no-new-privileges", "seccomp"];

/// Docker and ECS security options Berth knows but cannot honour, with why.
pub(super) const UNSUPPORTED_SECURITY_OPTIONS: &[(&str, &str)] = &[
    (
        "apparmor",
        "Berth applies no AppArmor profiles: remove it (the container runs without one)",
    ),
    (
        "label",
        "Berth applies no SELinux labels: remove it (the container runs unlabelled)",
    ),
    (
        "credentialspec",
        "credential specs are for Windows containers (gMSA), which Berth does not run",
    ),
    (
        "systempaths",
        "Berth always masks /proc and /sys paths as Docker does by default; use privileged for \
         an unmasked container",
    ),
];

/// `linuxParameters.capabilities` (ECS KernelCapabilities).
pub(super) const KERNEL_CAPABILITIES: &[Field] = &[
    optional("add", Shape::StringList),
    optional("drop", Shape::StringList),
];

/// One element of `linuxParameters.tmpfs` (ECS Tmpfs).
pub(super) const TMPFS: &[Field] = &[
    required("containerPath", Shape::String),
    required("size", Shape::U32),
    optional("mountOptions", Shape::StringList),
];

/// The tmpfs mount options ECS accepts (Docker's list); the last six take `=value`.
pub(super) const TMPFS_MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "bind",
    "rbind",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
];

/// The tmpfs mount options that take a value (`mode=1777`).
pub(super) const TMPFS_VALUE_OPTIONS: &[&str] =
    &["mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"];

/// ECS's bounds of `restartPolicy.restartAttemptPeriod`, in seconds, and its default.
pub(super) const RESTART_ATTEMPT_PERIOD_SECONDS: std::ops::RangeInclusive<u32> = 60..=1800;
pub(super) const DEFAULT_RESTART_ATTEMPT_PERIOD_SECONDS: u32 = 300;
/// ECS allows at most this many `ignoredExitCodes`.
pub(super) const MAX_IGNORED_EXIT_CODES: usize = 50;

/// The dependency conditions of ECS, in its order.
pub(super) const DEPENDENCY_CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];

/// ECS's bounds of `startTimeout`, in seconds. ECS documents 2..=120 for Fargate and no other
/// bound; Berth applies the Fargate bounds everywhere, as it does for `stopTimeout`.
pub(super) const START_TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 2..=120;

/// The ulimit names ECS accepts.
pub(super) const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The network modes of ECS on Linux; absent means bridge.
pub(super) const NETWORK_MODES: &[&str] = &["awsvpc", "bridge", "host", "none"];

/// The `pidMode` values Berth runs: `host`, and `task` (one PID namespace for the task's
/// containers, held by a holder process the agent runs for the task).
pub(super) const PID_MODES: &[&str] = &["host", "task"];

/// The `ipcMode` values Berth runs (`task`: one IPC namespace and `/dev/shm` for the task).
pub(super) const IPC_MODES: &[&str] = &["host", "task", "none"];

/// ECS's largest `stopTimeout`, in seconds.
pub(super) const MAX_STOP_TIMEOUT_SECONDS: u32 = 120;

/// The smallest memory limit Docker (and so ECS) accepts, in MiB.
pub(super) const MIN_MEMORY_MIB: u64 = 6;

/// The longest family or container name.
pub(super) const MAX_NAME_LEN: usize = 255;

//! berth-runtime: Berth's runtime layer over containerd, cgroups and netlink.
//!
//! It pulls OCI images into containerd by itself (resolve, write blobs through the Content
//! service, unpack with the Diff service under a lease), builds OCI runtime specs from ECS-style
//! container specs, creates per-task cgroups, and runs containers through containerd's Containers
//! and Tasks services, and sets up task networks (namespaces, bridge, veths or ENIs, IPAM,
//! nftables port mappings), and samples containers' resource use from their cgroups and network
//! namespaces. No containerd-client or rtnetlink type crosses this crate's public API.

mod cgroup;
mod container;
mod containerd;
mod error;
mod image;
mod model;
mod network;
mod runtime;
mod safe_read;
mod spec;
mod stats;
mod task_ns;
mod time;
mod volume;

pub use cgroup::{CgroupError, LimitsError};
pub use container::{
    ContainerId, ContainerInfo, ContainerStatus, DropCount, ExecOutcome, ExitStatus, ForwardMode,
    ForwardedLine, ForwardedLines, KillScope, LABEL_CONTAINER_NAME, LABEL_STOP_TIMEOUT,
    LABEL_TASK_ID, LogEntry, LogForward, LogQuery, LogReadError, LogReader, LogRotation, LogStream,
    MAX_FILE_LINE, QueueShare, log_forward,
};
pub use containerd::{ConnectError, ContainerdError};
pub use error::Error;
pub use image::DEFAULT_CERTS_DIR;
pub use image::DEFAULT_MAX_MANIFEST_BYTES;
pub use image::LocalImageError;
pub use image::{CREDENTIAL_COMMAND_DEADLINE, CredentialSources, DEFAULT_TOKEN_TTL};
pub use image::{ImageSummary, ProgressSender, PullError, PullProgress, PulledImage, RegistryAuth};
pub use model::{
    CapabilityChanges, ContainerLimits, ContainerSpec, DEFAULT_SWAPPINESS, DeviceMapping,
    HostEntry, IpcNamespace, MIN_MEMORY_MIB, Mount, NetworkNamespace, PidNamespace, Seccomp,
    SwapSupport, TaskLimits, TaskVolume, TaskVolumeKind, TmpfsMount, Ulimit,
};
pub use network::{
    DEFAULT_BRIDGE, DEFAULT_EPHEMERAL_PORTS, DEFAULT_MTU, DEFAULT_NETNS_DIR, DnsConfig,
    ENDPOINT_ADDRESS, ENDPOINT_LISTEN_PORT, ENDPOINT_PORT, INSTANCE_METADATA_ADDRESS,
    INSTANCE_METADATA_ADDRESS_V6, Ipv4Cidr, MacAddr, NetNs, Network, NetworkConfig, NetworkError,
    PortBinding, PortRequest, Protocol, TaskFiles, TaskInterface, TaskNetwork, TaskNetworkSpec,
};
pub use runtime::{DEFAULT_INIT_PATH, Runtime, RuntimeConfig, TaskFootprints};
pub use safe_read::{SafeReadError, Symlinks, read_below};
pub use spec::{SeccompProfile, SeccompProfileError, SpecError};
pub use stats::{
    BlkioStats, CgroupStats, ContainerSample, CpuStats, FilesystemUsage, InterfaceStats, IoCounts,
    MemoryStats, PidsStats, StatsSampler, TaskSample, filesystem_usage,
};
pub use task_ns::{
    DEFAULT_SHM_MIB, HOLDER_READY, HolderCommand, SharedNamespaces, TaskNamespaceError,
    TaskNamespacePaths, hold_namespaces,
};
pub use time::rfc3339_nanos;

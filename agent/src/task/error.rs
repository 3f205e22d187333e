//! What the task module refuses: a host input a task names (a path to bind, a device to map,
//! an environment file, a seccomp profile) that this host does not allow or cannot read, or a
//! definition the agent reads again and finds wrong. A message is the task's stoppedReason, so
//! it travels alone: the cause (an I/O error, the runtime's parse error) is written into it and
//! is not also a source.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_runtime::{Ipv4Cidr, NetworkError, SafeReadError, SeccompProfileError};

/// Why a task cannot start with what it names.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// A host path that is not absolute.
    #[error("{0} is not an absolute path")]
    NotAbsolute(HostPath),
    /// The agent allows no host path of this kind.
    #[error("{} {}", .0, .0.none_allowed())]
    NoneAllowed(HostPath),
    /// The path does not resolve on this host (missing, a loop, no permission).
    #[error("{subject} cannot be resolved on this host: {error}")]
    Unresolvable { subject: HostPath, error: io::Error },
    /// The path resolves outside everything the agent allows.
    #[error(
        "{subject} {}{}; {}: {}",
        .subject.outside(),
        resolved_note(.subject, .resolved),
        .subject.setting(),
        list(.allowed)
    )]
    NotAllowed {
        subject: HostPath,
        resolved: PathBuf,
        allowed: Vec<PathBuf>,
    },
    /// An allowed device path whose metadata cannot be read.
    #[error("{subject} cannot be read on this host: {error}")]
    Unreadable { subject: HostPath, error: io::Error },
    /// An allowed device path that is neither a device nor a directory.
    #[error(
        "{subject} is not a device{}: map a character or block device, or a directory of them",
        resolved_note(.subject, .resolved)
    )]
    NotADevice {
        subject: HostPath,
        resolved: PathBuf,
    },
    /// An environment file path that is not absolute or has `..`.
    #[error("environment file {} is not an absolute path without ..", .0.display())]
    EnvFileNotAbsolute(PathBuf),
    /// The agent allows no environment files.
    #[error(
        "environment file {} cannot be read: this agent allows no environment files (set \
         environment_file_paths, BERTH_ENVIRONMENT_FILE_PATHS, to the directories they may be \
         read from)",
        .0.display()
    )]
    EnvFileNoneAllowed(PathBuf),
    /// An environment file outside the allowed directories.
    #[error(
        "environment file {} is outside the directories this agent allows; \
         environment_file_paths: {}",
        .path.display(),
        list(.allowed)
    )]
    EnvFileNotAllowed {
        path: PathBuf,
        allowed: Vec<PathBuf>,
    },
    /// An environment file that is not a regular file below the allowed directory, or that
    /// cannot be read.
    #[error("environment file {} {error}", .path.display())]
    EnvFileRefused { path: PathBuf, error: SafeReadError },
    /// An environment file that is not UTF-8 text.
    #[error("environment file {} is not UTF-8 text", .0.display())]
    EnvFileNotText(PathBuf),
    /// More environment files than a container may have.
    #[error("{count} environment files, more than the {max} a container may have")]
    EnvFileTooMany { count: usize, max: usize },
    /// Reading the files took too long.
    #[error("the environment files could not be read within {}s", .deadline.as_secs())]
    EnvFileDeadline { deadline: std::time::Duration },
    /// A line of an environment file that is not `NAME=value`.
    #[error("environment file {} line {line} {problem}", .path.display())]
    EnvFileLine {
        path: PathBuf,
        line: usize,
        problem: EnvLine,
    },
    /// A seccomp profile that cannot be read.
    #[error("cannot read seccomp profile {} on the host: {error}", .path.display())]
    SeccompUnreadable { path: PathBuf, error: io::Error },
    /// A seccomp profile path that names no file.
    #[error(
        "seccomp profile {} is not a file: give the path of a Docker seccomp profile (JSON)",
        .path.display()
    )]
    SeccompNotAFile { path: PathBuf },
    /// A seccomp profile larger than any profile needs to be.
    #[error("seccomp profile {} is {size} bytes, more than the {max} a profile may have", .path.display())]
    SeccompTooLarge { path: PathBuf, size: u64, max: u64 },
    /// A seccomp profile the runtime cannot turn into a filter.
    #[error("seccomp profile {} is not usable: {error}", .path.display())]
    SeccompInvalid {
        path: PathBuf,
        error: SeccompProfileError,
    },
    /// Capabilities beyond Docker's default set that the agent does not allow.
    #[error(
        "container {container}: {}, and this agent's allowed_capabilities does not list {}: \
         add {} to allowed_capabilities (BERTH_ALLOWED_CAPABILITIES), or set allow_privileged = \
         true",
        if *.all { "capabilities.add ALL asks for every capability".to_owned() }
        else if .refused.len() == 1 { format!("capability {} is beyond Docker's default set", .refused.join(", ")) }
        else { format!("capabilities {} are beyond Docker's default set", .refused.join(", ")) },
        if .refused.len() == 1 { "it".to_owned() } else { .refused.join(", ") },
        if .refused.len() == 1 { "it" } else { "them" }
    )]
    CapabilitiesNotAllowed {
        container: String,
        all: bool,
        refused: Vec<String>,
    },
    /// A tmpfs option that only privileged containers may use.
    #[error(
        "tmpfs {path}: option {option} is allowed only where privileged containers are: remove \
         it, or set allow_privileged = true (BERTH_ALLOW_PRIVILEGED)"
    )]
    TmpfsOption { path: String, option: String },
    /// `seccomp=unconfined` on an agent that does not allow it.
    #[error(
        "container {0}: seccomp=unconfined is not allowed on this agent: remove it to run under \
         the default seccomp profile, or set allow_unconfined_seccomp = true \
         (BERTH_ALLOW_UNCONFINED_SECCOMP)"
    )]
    UnconfinedSeccomp(String),
    /// A mount point of a volume the task does not have.
    #[error("container {container}: volume {volume} is not a volume of the task")]
    UnknownVolume { container: String, volume: String },
    /// A `volumesFrom` entry that names no container of the task.
    #[error(
        "container {container}: volumesFrom names {from}, which is not a container of the task"
    )]
    UnknownVolumesFrom { container: String, from: String },
    /// A network mode the agent does not know.
    #[error("network mode {0:?} is not known to this agent; use awsvpc, bridge, host or none")]
    UnknownNetworkMode(String),
    /// An ENI attachment that does not add up.
    #[error("network attachment: {0}")]
    Attachment(AttachmentProblem),
    /// A container's network settings that do not add up.
    #[error("container {container}: {problem}")]
    ContainerNetwork {
        container: String,
        problem: NetworkProblem,
    },
    /// Something one container names (an environment file, a seccomp profile).
    #[error("container {container}: {error}")]
    InContainer {
        container: String,
        error: Box<InputError>,
    },
}

impl InputError {
    /// `error`, as something container `container` named.
    pub(crate) fn in_container(container: &str, error: InputError) -> Self {
        Self::InContainer {
            container: container.to_owned(),
            error: Box::new(error),
        }
    }
}

/// A host path a task names, as the definition gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPath {
    /// A volume's `host.sourcePath`, to bind-mount.
    Volume { volume: String, path: String },
    /// A container's `linuxParameters.devices` host path, to map.
    Device { container: String, path: String },
}

impl HostPath {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Volume { path, .. } | Self::Device { path, .. } => Path::new(path),
        }
    }

    /// The agent setting that lists what may be used.
    fn setting(&self) -> &'static str {
        match self {
            Self::Volume { .. } => "volume_host_paths",
            Self::Device { .. } => "allowed_devices",
        }
    }

    /// Why nothing of this kind may be used, and how to allow it.
    fn none_allowed(&self) -> &'static str {
        match self {
            Self::Volume { .. } => {
                "cannot be mounted: this agent allows no host paths (set volume_host_paths to \
                 the directories tasks may mount)"
            }
            Self::Device { .. } => {
                "cannot be mapped: this agent allows no host devices (set allowed_devices, \
                 BERTH_ALLOWED_DEVICES, to the devices tasks may use)"
            }
        }
    }

    /// What a path outside the allowed ones is.
    fn outside(&self) -> &'static str {
        match self {
            Self::Volume { .. } => "is outside the directories this agent allows",
            Self::Device { .. } => "is not among the devices this agent allows",
        }
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Volume { volume, path } => write!(f, "volume {volume}: host path {path}"),
            Self::Device { container, path } => write!(f, "container {container}: device {path}"),
        }
    }
}

/// What is wrong with a line of an environment file; never what the line holds, which may be
/// a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvLine {
    #[error("is not NAME=value")]
    NotNameValue,
    #[error("does not start with a variable name (one word before =)")]
    BadName,
    #[error("has a NUL byte in its value")]
    NulInValue,
}

/// What is wrong with an ENI attachment.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachmentProblem {
    #[error("{0}")]
    Mac(NetworkError),
    #[error("privateIPv4Address {0:?} is not an IPv4 address")]
    Address(String),
    #[error("subnet: {0}")]
    Subnet(NetworkError),
    #[error("gateway {0:?} is not an IPv4 address")]
    Gateway(String),
    #[error("address {address} is not in subnet {subnet}")]
    NotInSubnet { address: Ipv4Addr, subnet: Ipv4Cidr },
}

/// What is wrong with a container's network settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetworkProblem {
    #[error("port mapping protocol {0:?} is not supported; use tcp or udp")]
    Protocol(String),
    #[error("dnsServers: {0:?} is not an IP address")]
    DnsServer(String),
    #[error("extraHosts: {0:?} is not an IP address")]
    ExtraHost(String),
    #[error("links: {0:?} is not another container of the task")]
    LinkUnknown(String),
    #[error("links: {0} has disableNetworking and no address")]
    LinkWithoutNetwork(String),
}

/// ` (resolved to …)` when the host resolved the path to another one.
fn resolved_note(subject: &HostPath, resolved: &Path) -> String {
    if resolved == subject.path() {
        String::new()
    } else {
        format!(" (resolved to {})", resolved.display())
    }
}

fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

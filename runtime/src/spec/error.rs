//! Why an OCI runtime spec could not be built from a container definition and its image.

use thiserror::Error;

/// Every way the spec builder can refuse a container definition. Each variant names the
/// container and the offending value, so the message alone tells an operator what to fix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "container {container}: no command to run: neither the container definition nor image \
         {image} sets an entrypoint or a command"
    )]
    NoCommand { container: String, image: String },

    #[error(
        "container {container}: invalid environment variable name {name:?}: a name must be \
         non-empty and contain neither '=' nor a NUL byte"
    )]
    InvalidEnvName { container: String, name: String },

    #[error("container {container}: environment variable {name} has a NUL byte in its value")]
    InvalidEnvValue { container: String, name: String },

    #[error(
        "container {container}: image {image} has an invalid environment entry {entry:?}: \
         expected NAME=value with a non-empty name"
    )]
    InvalidImageEnv {
        container: String,
        image: String,
        entry: String,
    },

    #[error(
        "container {container}: mount point {destination:?} is not an absolute path below `/` \
         without `..`"
    )]
    InvalidMount {
        container: String,
        destination: String,
    },

    #[error("container {container}: volume source {path} is not an absolute host path")]
    RelativeMountSource { container: String, path: String },

    #[error("container {container}: two volumes are mounted at {destination}")]
    DuplicateMount {
        container: String,
        destination: String,
    },

    #[error("container {container}: working directory {dir:?} is not an absolute path")]
    RelativeWorkingDirectory { container: String, dir: String },

    #[error(
        "container {container}: invalid user {user:?}: expected name, uid, uid:gid, name:group, \
         uid:group or name:gid"
    )]
    InvalidUser { container: String, user: String },

    #[error(
        "container {container}: unable to find user {user}: the image has no such user in \
         /etc/passwd"
    )]
    UnknownUser { container: String, user: String },

    #[error(
        "container {container}: unable to find group {group}: the image has no such group in \
         /etc/group"
    )]
    UnknownGroup { container: String, group: String },

    #[error("container {container}: user or group id {id} is out of range 0-2147483647")]
    IdOutOfRange { container: String, id: String },

    #[error("container {container}: unknown ulimit {name:?}, expected one of: {valid}")]
    UnknownUlimit {
        container: String,
        name: String,
        valid: String,
    },

    #[error(
        "container {container}: ulimit {name}: soft limit {soft} is greater than hard limit {hard}"
    )]
    UlimitSoftAboveHard {
        container: String,
        name: String,
        soft: u64,
        hard: u64,
    },

    #[error("container {container}: invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        container: String,
        hostname: String,
        reason: &'static str,
    },

    #[error(
        "container {container}: {field} of {mib} MiB is below the minimum of {min} MiB",
        min = crate::model::MIN_MEMORY_MIB
    )]
    MemoryBelowMinimum {
        container: String,
        field: &'static str,
        mib: u64,
    },

    #[error("container {container}: {field} of {mib} MiB is too large")]
    MemoryTooLarge {
        container: String,
        field: &'static str,
        mib: u64,
    },

    #[error(
        "container {container}: memory reservation of {reservation_mib} MiB is above the memory \
         limit of {limit_mib} MiB"
    )]
    ReservationAboveLimit {
        container: String,
        reservation_mib: u64,
        limit_mib: u64,
    },

    #[error(
        "container {container}: {name:?} is not a linux capability: use a name such as NET_ADMIN \
         (with or without CAP_), or ALL"
    )]
    UnknownCapability { container: String, name: String },

    #[error("container {container}: kernel parameter {name} cannot be set: {reason}")]
    InvalidSysctl {
        container: String,
        name: String,
        reason: &'static str,
    },

    #[error("container {container}: tmpfs at {path:?} is invalid: {reason}")]
    InvalidTmpfs {
        container: String,
        path: String,
        reason: String,
    },

    #[error(
        "container {container}: initProcessEnabled needs an init binary, and the runtime has none \
         configured"
    )]
    NoInit { container: String },

    #[error(
        "container {container}: maxSwap needs a memory limit: the memory+swap limit is memory \
         plus maxSwap"
    )]
    SwapWithoutMemoryLimit { container: String },

    #[error("container {container}: swappiness {swappiness} is outside 0 to 100")]
    InvalidSwappiness { container: String, swappiness: u64 },

    #[error("container {container}: {reason}")]
    Seccomp { container: String, reason: String },

    /// An oci-spec builder refused its input (kept as text so the enum stays comparable).
    #[error("container {container}: cannot build the oci runtime spec: {reason}")]
    Oci { container: String, reason: String },
}

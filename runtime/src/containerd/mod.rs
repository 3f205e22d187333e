//! The seam to containerd: [`Containerd`], one trait per containerd service, holds every call
//! the runtime makes, in the runtime's own terms (or containerd-client's message types, which
//! never leave the crate). `grpc.rs` implements it over one gRPC channel (namespace- and
//! lease-scoped requests, deadlines); a recording fake (`fake.rs`, tests only) implements it in
//! memory; `patient.rs` wraps the real one so that a call meeting containerd restarting waits
//! for it and is made again when that is safe. Calls answer containerd's own way: a missing
//! object is a [`ContainerdError`] whose [`ContainerdError::is_not_found`] holds, and the
//! caller decides what that means.

#[cfg(test)]
pub(crate) mod fake;
mod grpc;
pub(crate) mod lease;
mod patient;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_client::services::v1::{WriteContentRequest, WriteContentResponse};
use containerd_client::types::Mount;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

pub(crate) use grpc::Grpc;
pub(crate) use lease::Lease;
pub(crate) use patient::Patient;

/// The snapshotter Berth unpacks into and prepares container root filesystems from.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

/// Deadline for ordinary containerd calls (metadata reads and writes).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed containerd call, with the operation and object it concerned.
#[derive(Debug, Clone, thiserror::Error)]
#[error("containerd {op} {object}: {message} ({code:?})")]
pub struct ContainerdError {
    op: &'static str,
    object: String,
    code: tonic::Code,
    message: String,
}

impl ContainerdError {
    pub(crate) fn new(op: Op, object: impl Into<String>, status: &tonic::Status) -> Self {
        Self {
            op: op.label(),
            object: object.into(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// A call refused before it reached containerd, with an InvalidArgument code.
    pub(crate) fn invalid(op: Op, object: impl Into<String>, message: &str) -> Self {
        Self::new(op, object, &tonic::Status::invalid_argument(message))
    }

    /// The object does not exist (containerd's NotFound).
    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound
    }

    /// Content that was there when looked up is gone when read: containerd's garbage
    /// collector took it (its image was removed) between the two calls.
    pub(crate) fn is_content_collected(&self) -> bool {
        self.code == tonic::Code::NotFound
            && (self.op == Op::ContentRead.label() || self.op == Op::ContentInfo.label())
    }

    /// The object exists already (containerd's AlreadyExists).
    pub fn is_already_exists(&self) -> bool {
        self.code == tonic::Code::AlreadyExists
    }

    /// The call did not get an answer from containerd: it was unreachable (restarting) or the
    /// connection broke mid-call. The call may or may not have taken effect; containerd has to
    /// be asked again what state the object is in.
    pub fn is_transient(&self) -> bool {
        self.code == tonic::Code::Unavailable || self.is_answer_lost()
    }

    /// runc refused to start a created task because its process is gone: the `runc init`
    /// that waits for the start died before it (its create was interrupted, or it was killed),
    /// so nothing of the container ever ran.
    pub(crate) fn is_dead_before_start(&self) -> bool {
        self.message.contains("container process is already dead")
    }

    /// The call never reached containerd: connecting to its socket failed (refused, or the
    /// socket gone while containerd restarts), so it did nothing and is safe to make again.
    /// containerd's own Unavailable answers (a locked ingest) end in "unavailable" and are not
    /// this.
    pub(crate) fn is_unreached(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        self.code == tonic::Code::Unavailable
            && !m.trim_end().ends_with("unavailable")
            && (m.contains("os error") || m.contains("connect"))
    }

    /// The call was sent but its answer was lost: the connection broke mid-call (containerd
    /// went away). It may or may not have taken effect.
    pub(crate) fn is_answer_lost(&self) -> bool {
        match self.code {
            tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled => {
                let m = self.message.to_ascii_lowercase();
                [
                    "transport error",
                    "h2 protocol error",
                    "connection",
                    "broken pipe",
                    // tonic's own word for a call whose stream the server's end reset.
                    "operation was canceled",
                ]
                .iter()
                .any(|s| m.contains(s))
            }
            _ => false,
        }
    }

    /// containerd's overlayfs snapshotter refused a prepare because, after containerd crashed,
    /// it handed out again a snapshot ID whose directory the crashed run had left ("failed to
    /// rename: ... file exists"). The failed call removed that directory, which belongs to no
    /// snapshot, so the same prepare succeeds when made again.
    pub(crate) fn is_stale_snapshot_id(&self) -> bool {
        self.op == Op::SnapshotPrepare.label()
            && self.message.contains("failed to rename")
            && self.message.contains("file exists")
    }

    /// containerd's message, without the operation context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// containerd's status code.
    pub(crate) fn code(&self) -> tonic::Code {
        self.code
    }

    /// The process is gone already: containerd answers NotFound, or (1.6) FailedPrecondition
    /// saying it finished, to a signal for a process that exited.
    pub(crate) fn is_finished_process(&self) -> bool {
        self.is_not_found()
            || (self.code == tonic::Code::FailedPrecondition && self.message.contains("finished"))
    }
}

/// Could not reach containerd at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to containerd at {socket}: {reason}; is containerd running and is the socket path right?"
)]
pub struct ConnectError {
    socket: PathBuf,
    reason: String,
}

/// Every call the runtime makes, named as its errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Version,
    LeaseCreate,
    LeaseAddResource,
    LeaseDelete,
    LeaseList,
    ContentInfo,
    ContentUpdate,
    ContentRead,
    ContentStatus,
    ContentAbort,
    ContentWrite,
    ImageGet,
    ImageCreate,
    ImageUpdate,
    ImageList,
    ImageDelete,
    SnapshotStat,
    SnapshotPrepare,
    SnapshotCommit,
    SnapshotRemove,
    SnapshotMounts,
    DiffApply,
    ContainerCreate,
    ContainerGet,
    ContainerDelete,
    ContainerList,
    TaskCreate,
    TaskGet,
    TaskStart,
    TaskWait,
    TaskKill,
    TaskDelete,
    Exec,
    ExecStart,
    ExecWait,
    ExecKill,
    ExecDelete,
}

impl Op {
    /// The operation as an error message names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::LeaseCreate => "create lease",
            Self::LeaseAddResource => "lease add resource",
            Self::LeaseDelete => "delete lease",
            Self::LeaseList => "list leases",
            Self::ContentInfo => "content info",
            Self::ContentUpdate => "content update",
            Self::ContentRead => "content read",
            Self::ContentStatus => "content status",
            Self::ContentAbort => "content abort",
            Self::ContentWrite => "content write",
            Self::ImageGet => "image get",
            Self::ImageCreate => "image create",
            Self::ImageUpdate => "image update",
            Self::ImageList => "image list",
            Self::ImageDelete => "image delete",
            Self::SnapshotStat => "snapshot stat",
            Self::SnapshotPrepare => "snapshot prepare",
            Self::SnapshotCommit => "snapshot commit",
            Self::SnapshotRemove => "snapshot remove",
            Self::SnapshotMounts => "snapshot mounts",
            Self::DiffApply => "diff apply",
            Self::ContainerCreate => "container create",
            Self::ContainerGet => "container get",
            Self::ContainerDelete => "container delete",
            Self::ContainerList => "container list",
            Self::TaskCreate => "task create",
            Self::TaskGet => "task get",
            Self::TaskStart => "task start",
            Self::TaskWait => "task wait",
            Self::TaskKill => "task kill",
            Self::TaskDelete => "task delete",
            Self::Exec => "exec",
            Self::ExecStart => "exec start",
            Self::ExecWait => "exec wait",
            Self::ExecKill => "exec kill",
            Self::ExecDelete => "exec delete",
        }
    }
}

/// A blob by media type, digest and size: what an image record targets, or a layer to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: i64,
}

/// An image record as containerd lists it: its name, what it targets and when it was last
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRecord {
    pub(crate) name: String,
    pub(crate) target: Blob,
    pub(crate) updated_at: Option<std::time::SystemTime>,
}

/// A container record as the runtime writes and reads it. containerd's record also names the
/// runtime (runc v2), the snapshotter and the spec's type; `grpc.rs` fills those in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerRecord {
    pub(crate) id: String,
    pub(crate) image: String,
    pub(crate) labels: HashMap<String, String>,
    /// The OCI runtime spec, as JSON.
    pub(crate) spec: Vec<u8>,
    /// The container's writable snapshot.
    pub(crate) snapshot_key: String,
}

/// The FIFOs a task's process writes to (empty: none) and whether it has a terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskIo {
    pub(crate) stdin: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) terminal: bool,
}

/// What a task's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskStatus {
    Created,
    Running,
    Stopped,
    /// Paused or pausing.
    Paused,
    Unknown,
}

/// A container's task as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskState {
    pub(crate) status: TaskStatus,
    /// 0 before it started.
    pub(crate) pid: u32,
    /// Meaningful once it stopped.
    pub(crate) exit_status: u32,
}

/// How a process ended, as containerd's Wait answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) code: u32,
    pub(crate) at: Option<SystemTime>,
}

/// containerd's answers on a content Write stream, one for each request sent.
pub(crate) type WriteResponses = BoxStream<'static, Result<WriteContentResponse, ContainerdError>>;

/// The calls the runtime makes to containerd, by service, all in its namespace. `lease` names a
/// lease that holds the objects a call creates. Every call has a deadline except the waits and
/// the content write, whose caller bounds it.
#[async_trait]
pub(crate) trait Containerd:
    LeasesService
    + ContentService
    + ImagesService
    + SnapshotsService
    + ContainersService
    + TasksService
    + std::fmt::Debug
{
    /// The containerd namespace everything lives in.
    fn namespace(&self) -> &str;
    /// containerd's version string, e.g. "1.6.20".
    async fn version(&self) -> Result<String, ContainerdError>;
}

/// containerd's Leases service: what a pull holds until the image references it.
#[async_trait]
pub(crate) trait LeasesService: Send + Sync {
    async fn lease_create(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError>;
    /// Adds an existing object to a lease; `kind` is "content" or "snapshots/<snapshotter>".
    async fn lease_add_resource(
        &self,
        lease: &str,
        kind: &str,
        id: &str,
    ) -> Result<(), ContainerdError>;
    /// With `sync`, containerd collects garbage before answering.
    async fn lease_delete(&self, id: &str, sync: bool) -> Result<(), ContainerdError>;
    /// The IDs of every lease in the namespace.
    async fn lease_list(&self) -> Result<Vec<String>, ContainerdError>;
}

/// containerd's Content service: committed blobs and the ingests that write them.
#[async_trait]
pub(crate) trait ContentService: Send + Sync {
    /// The labels of a committed blob.
    async fn content_info(&self, digest: &str) -> Result<HashMap<String, String>, ContainerdError>;
    /// Sets these labels of a committed blob (its other labels stay).
    async fn content_update_labels(
        &self,
        lease: Option<&str>,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError>;
    /// A whole committed blob.
    async fn content_read(&self, digest: &str) -> Result<Vec<u8>, ContainerdError>;
    /// How many bytes an unfinished ingest holds (None: containerd did not say).
    async fn content_status(&self, reference: &str) -> Result<Option<i64>, ContainerdError>;
    async fn content_abort(&self, reference: &str) -> Result<(), ContainerdError>;
    /// Opens a Write stream for the blob `digest` that sends `requests`; containerd answers
    /// each one. An error answering the first request may come from either the call or the
    /// stream.
    async fn content_write(
        &self,
        lease: &str,
        digest: &str,
        requests: mpsc::Receiver<WriteContentRequest>,
    ) -> Result<WriteResponses, ContainerdError>;
}

/// containerd's Images service: the records that name images by reference.
#[async_trait]
pub(crate) trait ImagesService: Send + Sync {
    /// What the image record targets (None: a record without a target).
    async fn image_get(&self, name: &str) -> Result<Option<Blob>, ContainerdError>;
    async fn image_create(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError>;
    async fn image_update(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError>;
    /// Every image record of the namespace.
    async fn image_list(&self) -> Result<Vec<ImageRecord>, ContainerdError>;
    /// Deletes an image record. With `sync`, containerd's garbage collector has run before the
    /// answer, so the content and snapshots that only this image held are gone by then.
    async fn image_delete(&self, name: &str, sync: bool) -> Result<(), ContainerdError>;
}

/// containerd's Snapshots service (the overlayfs snapshotter), and the Diff service that applies layers onto snapshots.
#[async_trait]
pub(crate) trait SnapshotsService: Send + Sync {
    /// Succeeds when a snapshot (committed or active) has this name.
    async fn snapshot_stat(&self, key: &str) -> Result<(), ContainerdError>;
    /// An active snapshot `key` on `parent` (empty: none); its mounts.
    async fn snapshot_prepare(
        &self,
        lease: Option<&str>,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ContainerdError>;
    /// Commits the active snapshot `key` as `name`.
    async fn snapshot_commit(
        &self,
        lease: Option<&str>,
        key: &str,
        name: &str,
    ) -> Result<(), ContainerdError>;
    async fn snapshot_remove(&self, key: &str) -> Result<(), ContainerdError>;
    async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError>;
    /// Applies a layer onto mounts; the digest of what was applied (the layer's diff ID).
    async fn diff_apply(
        &self,
        lease: Option<&str>,
        layer: Blob,
        mounts: Vec<Mount>,
    ) -> Result<String, ContainerdError>;
}

/// containerd's Containers service: container records.
#[async_trait]
pub(crate) trait ContainersService: Send + Sync {
    async fn container_create(&self, record: ContainerRecord) -> Result<(), ContainerdError>;
    async fn container_get(&self, id: &str) -> Result<ContainerRecord, ContainerdError>;
    async fn container_delete(&self, id: &str) -> Result<(), ContainerdError>;
    /// The records matching containerd's filters (e.g. `labels."berth.task-id"`).
    async fn container_list(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<ContainerRecord>, ContainerdError>;
}

/// containerd's Tasks service: a container's main process (its task) and extra processes in it (`exec_*`).
#[async_trait]
pub(crate) trait TasksService: Send + Sync {
    async fn task_create(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError>;
    /// The container's task (None: containerd named no process).
    async fn task_get(&self, id: &str) -> Result<Option<TaskState>, ContainerdError>;
    /// Starts the task; its PID.
    async fn task_start(&self, id: &str) -> Result<u32, ContainerdError>;
    /// Waits, without a deadline, until the task's process exits.
    async fn task_wait(&self, id: &str) -> Result<Exit, ContainerdError>;
    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ContainerdError>;
    async fn task_delete(&self, id: &str) -> Result<(), ContainerdError>;
    /// Adds a process to the running task, with an OCI process spec (JSON) and no I/O.
    async fn exec(&self, id: &str, exec_id: &str, process: Vec<u8>) -> Result<(), ContainerdError>;
    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32, ContainerdError>;
    /// Waits, without a deadline, until the exec process exits.
    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<Exit, ContainerdError>;
    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ContainerdError>;
    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(), ContainerdError>;
}

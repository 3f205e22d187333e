//! [`Patient`]: the [`Containerd`] the runtime hands out, around the real one. containerd
//! restarting (a crash, an upgrade) is an outage of a second or two, not an answer: a call that
//! meets it waits for containerd and is made again, with jittered exponential backoff, for up
//! to [`PATIENCE`], when making it again is safe:
//!
//! - a call that never reached containerd (the socket refused the connection or was gone:
//!   [`ContainerdError::is_unreached`]) is made again whatever it is, as containerd never saw it;
//! - a call whose answer was lost (the connection broke mid-call:
//!   [`ContainerdError::is_answer_lost`]) is made again only when repeating it changes nothing:
//!   reads, label and record updates, adding to a lease, deletes (NotFound after a lost answer
//!   is the lost delete's doing) and a lease create (whose ID is this process's own, so
//!   AlreadyExists after a lost answer is that create). Other creates, starts and signals
//!   stay with their callers, which ask containerd what happened
//!   (`container/lifecycle/outage.rs`);
//! - a snapshot prepare that containerd's overlayfs refused because, after a crash, it handed
//!   out a snapshot ID whose directory the crashed run had left ("failed to rename ... file
//!   exists"): the failed call reclaims that directory, so the same prepare is made again.
//!
//! containerd's own refusals (NotFound, AlreadyExists, a locked ingest's Unavailable, …) are
//! answers and pass through at once, as do the waits and the content write stream, whose
//! callers resume them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::WriteContentRequest;
use containerd_client::types::Mount;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    Blob, ContainerRecord, Containerd, ContainerdError, ContainersService, ContentService, Exit,
    ImageRecord, ImagesService, LeasesService, Op, SnapshotsService, TaskIo, TaskState,
    TasksService, WriteResponses,
};

/// How long a call waits for containerd to come back before its failure is returned.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);
/// The first wait before a call is made again; it doubles up to [`WAIT_MAX`].
const WAIT_FIRST: Duration = Duration::from_millis(100);
const WAIT_MAX: Duration = Duration::from_secs(2);
/// How many times a snapshot prepare refused for a reused snapshot ID is made again.
const STALE_ID_RETRIES: u32 = 3;

/// When a failed call may be made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Only when containerd never got it.
    Unreached,
    /// Also when its answer was lost: the call is safe to repeat.
    Idempotent,
}

/// The real [`Containerd`] with patience for containerd restarting (see the module's text).
#[derive(Debug)]
pub(crate) struct Patient {
    inner: Arc<dyn Containerd>,
}

impl Patient {
    pub(crate) fn new(inner: Arc<dyn Containerd>) -> Self {
        Self { inner }
    }

    /// Makes `call` until it is answered, through containerd restarting, as `repeat` allows;
    /// the answer, and whether an earlier try's answer was lost.
    async fn patiently<T, F, Fut>(
        &self,
        op: Op,
        object: &str,
        repeat: Repeat,
        mut call: F,
    ) -> (Result<T, ContainerdError>, bool)
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, ContainerdError>> + Send,
    {
        let deadline = Instant::now() + PATIENCE;
        let mut wait = WAIT_FIRST;
        let mut lost = false;
        let mut waited = false;
        let mut stale_ids = 0;
        loop {
            let result = call().await;
            let again = match &result {
                Ok(_) => false,
                Err(e) if e.is_unreached() => true,
                Err(e) if e.is_answer_lost() => repeat == Repeat::Idempotent,
                Err(e) if e.is_stale_snapshot_id() && stale_ids < STALE_ID_RETRIES => {
                    stale_ids += 1;
                    tracing::info!(snapshot.key = object, error = %e, "containerd's snapshotter reused a snapshot ID a crash left; preparing again");
                    continue;
                }
                Err(_) => false,
            };
            let now = Instant::now();
            if !again || now >= deadline {
                if waited {
                    match &result {
                        Err(error) if again => {
                            tracing::warn!(op = op.label(), object, %error, seconds = PATIENCE.as_secs(), "containerd did not come back in time");
                        }
                        _ => {
                            tracing::info!(op = op.label(), object, "containerd answers again");
                        }
                    }
                }
                return (result, lost);
            }
            if let Err(error) = &result {
                lost |= error.is_answer_lost();
                if !waited {
                    tracing::info!(op = op.label(), object, %error, "containerd is not answering; waiting for it to come back");
                }
            }
            waited = true;
            let jittered = wait.mul_f64(0.5 + 0.5 * rand::random::<f64>());
            tokio::time::sleep(jittered.min(deadline - now)).await;
            wait = (wait * 2).min(WAIT_MAX);
        }
    }
}

/// A delete's answer: NotFound after a try whose answer was lost is that try's doing.
fn deleted((result, lost): (Result<(), ContainerdError>, bool)) -> Result<(), ContainerdError> {
    match result {
        Err(e) if lost && e.is_not_found() => Ok(()),
        other => other,
    }
}

#[async_trait]
impl Containerd for Patient {
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    async fn version(&self) -> Result<String, ContainerdError> {
        self.patiently(Op::Version, "", Repeat::Idempotent, || self.inner.version())
            .await
            .0
    }
}

#[async_trait]
impl LeasesService for Patient {
    async fn lease_create(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let (result, lost) = self
            .patiently(Op::LeaseCreate, id, Repeat::Idempotent, || {
                self.inner.lease_create(id, labels.clone())
            })
            .await;
        match result {
            // The lease's ID is this process's own: the lost create made it.
            Err(e) if lost && e.is_already_exists() => Ok(()),
            other => other,
        }
    }

    async fn lease_add_resource(
        &self,
        lease: &str,
        kind: &str,
        id: &str,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::LeaseAddResource, id, Repeat::Idempotent, || {
            self.inner.lease_add_resource(lease, kind, id)
        })
        .await
        .0
    }

    async fn lease_delete(&self, id: &str, sync: bool) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::LeaseDelete, id, Repeat::Idempotent, || {
                self.inner.lease_delete(id, sync)
            })
            .await,
        )
    }

    async fn lease_list(&self) -> Result<Vec<String>, ContainerdError> {
        self.patiently(Op::LeaseList, "", Repeat::Idempotent, || {
            self.inner.lease_list()
        })
        .await
        .0
    }
}

#[async_trait]
impl ContentService for Patient {
    async fn content_info(&self, digest: &str) -> Result<HashMap<String, String>, ContainerdError> {
        self.patiently(Op::ContentInfo, digest, Repeat::Idempotent, || {
            self.inner.content_info(digest)
        })
        .await
        .0
    }

    async fn content_update_labels(
        &self,
        lease: Option<&str>,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::ContentUpdate, digest, Repeat::Idempotent, || {
            self.inner
                .content_update_labels(lease, digest, labels.clone())
        })
        .await
        .0
    }

    async fn content_read(&self, digest: &str) -> Result<Vec<u8>, ContainerdError> {
        self.patiently(Op::ContentRead, digest, Repeat::Idempotent, || {
            self.inner.content_read(digest)
        })
        .await
        .0
    }

    async fn content_status(&self, reference: &str) -> Result<Option<i64>, ContainerdError> {
        self.patiently(Op::ContentStatus, reference, Repeat::Idempotent, || {
            self.inner.content_status(reference)
        })
        .await
        .0
    }

    async fn content_abort(&self, reference: &str) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::ContentAbort, reference, Repeat::Idempotent, || {
                self.inner.content_abort(reference)
            })
            .await,
        )
    }

    /// The stream is the ingest's: it resumes a broken one from what containerd kept.
    async fn content_write(
        &self,
        lease: &str,
        digest: &str,
        requests: mpsc::Receiver<WriteContentRequest>,
    ) -> Result<WriteResponses, ContainerdError> {
        self.inner.content_write(lease, digest, requests).await
    }
}

#[async_trait]
impl ImagesService for Patient {
    async fn image_get(&self, name: &str) -> Result<Option<Blob>, ContainerdError> {
        self.patiently(Op::ImageGet, name, Repeat::Idempotent, || {
            self.inner.image_get(name)
        })
        .await
        .0
    }

    async fn image_create(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::ImageCreate, name, Repeat::Unreached, || {
            self.inner.image_create(lease, name, target.clone())
        })
        .await
        .0
    }

    async fn image_update(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::ImageUpdate, name, Repeat::Idempotent, || {
            self.inner.image_update(lease, name, target.clone())
        })
        .await
        .0
    }

    async fn image_list(&self) -> Result<Vec<ImageRecord>, ContainerdError> {
        self.patiently(Op::ImageList, "", Repeat::Idempotent, || {
            self.inner.image_list()
        })
        .await
        .0
    }

    async fn image_delete(&self, name: &str, sync: bool) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::ImageDelete, name, Repeat::Idempotent, || {
                self.inner.image_delete(name, sync)
            })
            .await,
        )
    }
}

#[async_trait]
impl SnapshotsService for Patient {
    async fn snapshot_stat(&self, key: &str) -> Result<(), ContainerdError> {
        self.patiently(Op::SnapshotStat, key, Repeat::Idempotent, || {
            self.inner.snapshot_stat(key)
        })
        .await
        .0
    }

    async fn snapshot_prepare(
        &self,
        lease: Option<&str>,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ContainerdError> {
        self.patiently(Op::SnapshotPrepare, key, Repeat::Unreached, || {
            self.inner
                .snapshot_prepare(lease, key, parent, labels.clone())
        })
        .await
        .0
    }

    async fn snapshot_commit(
        &self,
        lease: Option<&str>,
        key: &str,
        name: &str,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::SnapshotCommit, key, Repeat::Unreached, || {
            self.inner.snapshot_commit(lease, key, name)
        })
        .await
        .0
    }

    async fn snapshot_remove(&self, key: &str) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::SnapshotRemove, key, Repeat::Idempotent, || {
                self.inner.snapshot_remove(key)
            })
            .await,
        )
    }

    async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError> {
        self.patiently(Op::SnapshotMounts, key, Repeat::Idempotent, || {
            self.inner.snapshot_mounts(key)
        })
        .await
        .0
    }

    async fn diff_apply(
        &self,
        lease: Option<&str>,
        layer: Blob,
        mounts: Vec<Mount>,
    ) -> Result<String, ContainerdError> {
        let digest = layer.digest.clone();
        self.patiently(Op::DiffApply, &digest, Repeat::Unreached, || {
            self.inner.diff_apply(lease, layer.clone(), mounts.clone())
        })
        .await
        .0
    }
}

#[async_trait]
impl ContainersService for Patient {
    async fn container_create(&self, record: ContainerRecord) -> Result<(), ContainerdError> {
        let id = record.id.clone();
        self.patiently(Op::ContainerCreate, &id, Repeat::Unreached, || {
            self.inner.container_create(record.clone())
        })
        .await
        .0
    }

    async fn container_get(&self, id: &str) -> Result<ContainerRecord, ContainerdError> {
        self.patiently(Op::ContainerGet, id, Repeat::Idempotent, || {
            self.inner.container_get(id)
        })
        .await
        .0
    }

    async fn container_delete(&self, id: &str) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::ContainerDelete, id, Repeat::Idempotent, || {
                self.inner.container_delete(id)
            })
            .await,
        )
    }

    async fn container_list(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<ContainerRecord>, ContainerdError> {
        self.patiently(Op::ContainerList, "", Repeat::Idempotent, || {
            self.inner.container_list(filters.clone())
        })
        .await
        .0
    }
}

#[async_trait]
impl TasksService for Patient {
    async fn task_create(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError> {
        self.patiently(Op::TaskCreate, id, Repeat::Unreached, || {
            self.inner.task_create(id, rootfs.clone(), io.clone())
        })
        .await
        .0
    }

    async fn task_get(&self, id: &str) -> Result<Option<TaskState>, ContainerdError> {
        self.patiently(Op::TaskGet, id, Repeat::Idempotent, || {
            self.inner.task_get(id)
        })
        .await
        .0
    }

    async fn task_start(&self, id: &str) -> Result<u32, ContainerdError> {
        self.patiently(Op::TaskStart, id, Repeat::Unreached, || {
            self.inner.task_start(id)
        })
        .await
        .0
    }

    /// Its caller waits again, as long as the container lives.
    async fn task_wait(&self, id: &str) -> Result<Exit, ContainerdError> {
        self.inner.task_wait(id).await
    }

    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ContainerdError> {
        self.patiently(Op::TaskKill, id, Repeat::Unreached, || {
            self.inner.task_kill(id, signal, all)
        })
        .await
        .0
    }

    async fn task_delete(&self, id: &str) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::TaskDelete, id, Repeat::Idempotent, || {
                self.inner.task_delete(id)
            })
            .await,
        )
    }

    async fn exec(&self, id: &str, exec_id: &str, process: Vec<u8>) -> Result<(), ContainerdError> {
        self.patiently(Op::Exec, id, Repeat::Unreached, || {
            self.inner.exec(id, exec_id, process.clone())
        })
        .await
        .0
    }

    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32, ContainerdError> {
        self.patiently(Op::ExecStart, id, Repeat::Unreached, || {
            self.inner.exec_start(id, exec_id)
        })
        .await
        .0
    }

    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<Exit, ContainerdError> {
        self.inner.exec_wait(id, exec_id).await
    }

    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ContainerdError> {
        self.patiently(Op::ExecKill, id, Repeat::Unreached, || {
            self.inner.exec_kill(id, exec_id, signal)
        })
        .await
        .0
    }

    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(), ContainerdError> {
        deleted(
            self.patiently(Op::ExecDelete, id, Repeat::Idempotent, || {
                self.inner.exec_delete(id, exec_id)
            })
            .await,
        )
    }
}

#[cfg(test)]
mod tests;

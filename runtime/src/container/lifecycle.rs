//! The container lifecycle over containerd's Containers, Snapshots and Tasks services: the
//! task with its FIFOs, restart in place, reattach, delete and list; creating a container (as
//! `docker create`) is `create.rs`, its process (start, wait, signals, stop) `process.rs`.

mod create;
mod leftover;
mod outage;
mod process;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::types::Mount;
use tokio::sync::Mutex as AsyncMutex;

use super::log::{LogPipes, LogRotation, Stdio};
use super::rootfs::UserDatabase;
use super::{
    ContainerId, ContainerInfo, ContainerStatus, LABEL_CONTAINER_NAME, LABEL_STOP_TIMEOUT,
    LABEL_TASK_ID,
};
use crate::cgroup::Cgroups;
use crate::containerd::{Containerd, ContainerdError, TaskIo, TaskStatus};
use crate::error::Error;
use crate::image::{self, LocalImage};
use crate::spec::SeccompHost;
pub use process::KillScope;

/// Label recording a container's standard streams (`stdin`, `terminal`; see [`Stdio`]), so
/// that a restart in place gives the new task the same ones.
const LABEL_STDIO: &str = "berth.stdio";

/// How long containerd gets to finish its own cleanup of an interrupted task create, and how
/// often it is asked meanwhile whether that create made the task after all.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);
const LEFTOVER_POLL: Duration = Duration::from_millis(500);
/// How many times a task create refused for an interrupted earlier create's leftovers is
/// cleared and made again.
const LEFTOVER_RETRIES: u32 = 3;

/// The file in a container's FIFO directory that says its process was started once.
const STARTED_MARKER: &str = "started";

/// The running kernel's release, for seccomp profiles' `minKernel`.
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";

/// A container just created, before its first start: its task and name, its standard
/// streams, its log rotation and its snapshot's mounts, as the create made them.
#[derive(Debug)]
struct Fresh {
    task_id: String,
    name: String,
    stdio: Stdio,
    rotation: LogRotation,
    mounts: Vec<Mount>,
}

/// Creates, runs and removes containers. One per runtime; shared by all tasks.
#[derive(Debug)]
pub(crate) struct Containers {
    client: Arc<dyn Containerd>,
    cgroups: Arc<Cgroups>,
    io_dir: PathBuf,
    log_dir: PathBuf,
    rotation: LogRotation,
    /// The init of containers with `initProcessEnabled`.
    init_path: PathBuf,
    pipes: Mutex<HashMap<ContainerId, Arc<AsyncMutex<LogPipes>>>>,
    /// Containers this process created that have no task yet, with what their first start
    /// needs: it creates their task without asking containerd what the create just made.
    fresh: Mutex<HashMap<ContainerId, Fresh>>,
    /// Each container's log forwarding (a remote log driver), from its create to its delete.
    forwards: Mutex<HashMap<ContainerId, crate::LogForward>>,
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
        client: Arc<dyn Containerd>,
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
            fresh: Mutex::new(HashMap::new()),
            forwards: Mutex::new(HashMap::new()),
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
        // Read through containerd restarting (the image is read only, so safe to read again).
        let deadline = tokio::time::Instant::now() + outage::OUTAGE_DEADLINE;
        let img = loop {
            match image::load_local(&*self.client, reference).await {
                Err(image::LocalImageError::Containerd(e))
                    if e.is_transient() && tokio::time::Instant::now() < deadline =>
                {
                    tracing::info!(image = reference, error = %e, "containerd did not answer an image read; trying again once it is back");
                    tokio::time::sleep(outage::OUTAGE_POLL).await;
                }
                other => break other?,
            }
        };
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

    fn fresh_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Fresh>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forwards_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, crate::LogForward>> {
        self.forwards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets where a container's log lines also go, for the drains opened from now on (an agent
    /// that restarted sets it again before it reattaches).
    pub(crate) fn set_log_forward(&self, id: &ContainerId, forward: crate::LogForward) {
        self.forwards_lock().insert(id.clone(), forward);
    }

    fn pipes_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Arc<AsyncMutex<LogPipes>>>> {
        self.pipes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a container's own `/etc/hosts` and `/etc/resolv.conf` live on the host.
    fn etc_dir(&self, id: &ContainerId) -> PathBuf {
        self.io_dir.join(format!("{id}.etc"))
    }

    async fn create_task(
        &self,
        task_id: &str,
        name: &str,
        id: &ContainerId,
        mounts: Vec<Mount>,
        rotation: LogRotation,
        stdio: Stdio,
    ) -> Result<(), Error> {
        let io_dir = self.io_dir.join(id.as_str());
        if io_dir.join("stdout").exists() {
            // An earlier create of this container made its FIFOs: one interrupted with the agent
            // may have left its shim, which containerd would hand this create to.
            self.end_orphan_shims(id).await;
        }
        let log_path = self.log_path(task_id, name);
        let forward = self.forwards_lock().get(id).cloned();
        let pipes = LogPipes::open(&io_dir, log_path, rotation, stdio, forward)
            .map_err(|e| Error::io("create log FIFOs", io_dir.clone(), e))?;
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        // With a terminal the shim copies it to stdout and takes no stderr (as containerd's own
        // client sets it up); the spec's process.terminal says the same.
        let io = TaskIo {
            stdin: path(&pipes.stdin),
            stdout: pipes.stdout.to_string_lossy().into_owned(),
            stderr: path(&pipes.stderr),
            terminal: stdio.terminal,
        };
        let (mounts_again, io_again) = (mounts.clone(), io.clone());
        let created = self.create_through_outages(id, mounts, io).await;
        let created = match created {
            // A task of this container exists already: an earlier create of it (a lost answer,
            // or one interrupted with the agent) made it with these FIFOs, for a container has
            // one creator. It is taken; its state decides whether it is started.
            Err(e) if e.is_already_exists() => {
                self.take_or_replace(id, mounts_again, io_again).await
            }
            other => other,
        };
        match created {
            Ok(()) => {
                self.pipes_lock()
                    .insert(id.clone(), Arc::new(AsyncMutex::new(pipes)));
                Ok(())
            }
            Err(e) => {
                // The FIFOs go; the recorded rotation stays for the next start.
                for fifo in std::iter::once(&pipes.stdout)
                    .chain(&pipes.stderr)
                    .chain(&pipes.stdin)
                {
                    let _ = std::fs::remove_file(fifo);
                }
                drop(pipes);
                Err(e.into())
            }
        }
    }

    /// Ends the shim (and runc's never started container) an interrupted earlier create of
    /// this container left, before its task is made again: containerd has no task for it (the
    /// caller checked), so no shim of it serves anything. See [`leftover::end_orphans`].
    async fn end_orphan_shims(&self, id: &ContainerId) {
        match leftover::end_orphans(self.client.namespace(), id.as_str()).await {
            Ok(ended) if ended.is_empty() => {}
            Ok(ended) => {
                tracing::info!(container.id = %id, shims = ?ended, "ended the shim an interrupted task create of this container left");
            }
            Err(error) => {
                tracing::warn!(container.id = %id, %error, "cannot remove the container an interrupted task create left");
            }
        }
    }

    /// A task of this container exists already: an earlier create of it (a lost answer, or one
    /// interrupted with the agent) made it with these FIFOs, for a container has one creator.
    /// It is taken when its shim holds its container; when not (the shim's create was cut off
    /// with containerd, so the shim has none and nothing ever ran), containerd's empty task is
    /// deleted and the task made again.
    async fn take_or_replace(
        &self,
        id: &ContainerId,
        mounts: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError> {
        let (found, _) = outage::through_outage("a task get", id.as_str(), || {
            self.client.task_get(id.as_str())
        })
        .await;
        match found {
            Ok(_) => {
                tracing::info!(container.id = %id, "an earlier create of this container made its task; taking it");
                Ok(())
            }
            Err(e) if e.is_not_found() => {
                tracing::info!(container.id = %id, "the task an earlier create of this container left has no container; replacing it");
                // Both through containerd restarting, as the first create was.
                let (deleted, _) = outage::through_outage("a task delete", id.as_str(), || {
                    self.client.task_delete(id.as_str())
                })
                .await;
                match deleted {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
                self.create_through_outages(id, mounts, io).await
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the container's task through containerd restarting and what interrupted creates
    /// left, in any order: through up to [`outage::OUTAGES_PER_CALL`] restarts, each of which
    /// containerd gets [`outage::OUTAGE_DEADLINE`] to come back from:
    /// - a create whose answer was lost may have taken effect: a task there now is the one
    ///   made with these FIFOs (a container has one creator at a time); none means it did not,
    ///   and it is made now;
    /// - a create refused for an earlier interrupted create's bundle goes through
    ///   [`Self::create_over_leftover`];
    /// - one refused for what such a create left, or for its cleanup racing this one, has that
    ///   cleared and is made again (up to [`LEFTOVER_RETRIES`] times, as that cleanup may still
    ///   run).
    async fn create_through_outages(
        &self,
        id: &ContainerId,
        mounts: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError> {
        let create = || {
            self.client
                .task_create(id.as_str(), mounts.clone(), io.clone())
        };
        let mut created = create().await;
        let (mut tries, mut outages) = (0, 0);
        loop {
            let Err(e) = &created else { return Ok(()) };
            if e.is_transient() && outages < outage::OUTAGES_PER_CALL {
                outages += 1;
                created = match self.task_after_outage(id, e.clone()).await {
                    Ok(outage::Found::Task(_)) => Ok(()),
                    Ok(outage::Found::Absent) => create().await,
                    Err(e) => Err(e),
                };
                continue;
            }
            if tries >= LEFTOVER_RETRIES {
                return created;
            }
            if let Some(bundle) =
                leftover::bundle_of(e.message(), self.client.namespace(), id.as_str())
            {
                tries += 1;
                created = self
                    .create_over_leftover(id, &bundle, e.clone(), mounts.clone(), io.clone())
                    .await;
                continue;
            }
            if !leftover::raced_leftover(e.message()) {
                return created;
            }
            tries += 1;
            tracing::info!(container.id = %id, error = %e, attempt = tries, "a task create of this container met what an interrupted earlier create left; clearing it and creating again");
            if let Err(error) = leftover::clear(self.client.namespace(), id.as_str()).await {
                tracing::warn!(container.id = %id, %error, "cannot clear what an interrupted task create of this container left");
            }
            created = match self.client.task_delete(id.as_str()).await {
                Err(e) if !e.is_not_found() => Err(e),
                _ => create().await,
            };
        }
    }

    /// Creates the task of a container whose earlier, interrupted create left its shim bundle
    /// ([`leftover`]). containerd gets [`LEFTOVER_GRACE`] to finish its own cleanup of that
    /// create (a task it lists by then is the one that create made, with these FIFOs, and is
    /// taken); a bundle still there without a task is removed, and the task made.
    async fn create_over_leftover(
        &self,
        id: &ContainerId,
        bundle: &std::path::Path,
        refused: ContainerdError,
        mounts: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError> {
        let deadline = tokio::time::Instant::now() + LEFTOVER_GRACE;
        while bundle.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LEFTOVER_POLL).await;
            match self.client.task_get(id.as_str()).await {
                Ok(_) => {
                    tracing::info!(container.id = %id, "the interrupted task create of this container made its task; taking it");
                    return Ok(());
                }
                Err(e) if e.is_not_found() || e.is_transient() => {}
                Err(e) => return Err(e),
            }
        }
        if bundle.exists() {
            let namespace = self.client.namespace().to_owned();
            tracing::info!(container.id = %id, bundle = %bundle.display(), "removing the shim bundle an interrupted task create of this container left");
            if let Err(error) = leftover::remove(bundle, &namespace, id.as_str()).await {
                tracing::warn!(container.id = %id, bundle = %bundle.display(), %error, "could not remove the leftover shim bundle");
                return Err(refused);
            }
        }
        self.client.task_create(id.as_str(), mounts, io).await
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
        let forward = self.forwards_lock().get(id).cloned();
        let pipes = LogPipes::open(
            &io_dir,
            self.log_path(task_id, name),
            rotation,
            stdio,
            forward,
        )
        .map_err(|e| Error::io("reopen log FIFOs", io_dir.clone(), e))?;
        self.pipes_lock()
            .insert(id.clone(), Arc::new(AsyncMutex::new(pipes)));
        Ok(())
    }

    /// Removes the task, the container record, its snapshot and its FIFOs. The log file stays
    /// (the agent removes it with the task). Idempotent. A running container is refused.
    pub(crate) async fn delete(&self, id: &ContainerId) -> Result<(), Error> {
        self.fresh_lock().remove(id);
        self.forwards_lock().remove(id);
        self.delete_task(id).await?;
        let _ = std::fs::remove_dir_all(self.io_dir.join(id.as_str()));
        let _ = std::fs::remove_dir_all(self.etc_dir(id));
        self.delete_record(id).await;
        self.remove_snapshot(id).await;
        Ok(())
    }

    /// Deletes the container's task (gone already is fine) and ends its output drains.
    async fn delete_task(&self, id: &ContainerId) -> Result<(), Error> {
        match self.client.task_delete(id.as_str()).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        let pipes = self.pipes_lock().remove(id);
        if let Some(pipes) = pipes {
            pipes.lock().await.finish(Duration::ZERO).await;
        }
        Ok(())
    }

    async fn delete_record(&self, id: &ContainerId) {
        if let Err(error) = self.client.container_delete(id.as_str()).await
            && !error.is_not_found()
        {
            tracing::warn!(container.id = %id, error = %error.message(), "could not delete container record");
        }
    }

    async fn remove_snapshot(&self, id: &ContainerId) {
        if let Err(error) = self.client.snapshot_remove(id.as_str()).await
            && !error.is_not_found()
        {
            tracing::warn!(container.id = %id, error = %error.message(), "could not remove container snapshot");
        }
    }

    /// Every container in the namespace that carries Berth's task label, with its task state.
    pub(crate) async fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        let containers = self
            .client
            .container_list(vec![format!("labels.\"{LABEL_TASK_ID}\"")])
            .await?;
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let (Some(task_id), Some(name)) = (
                c.labels.get(LABEL_TASK_ID),
                c.labels.get(LABEL_CONTAINER_NAME),
            ) else {
                continue;
            };
            let process = match self.client.task_get(&c.id).await {
                Ok(process) => process,
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            let status = match process.map(|p| p.status) {
                None => ContainerStatus::NoTask,
                Some(TaskStatus::Created) => ContainerStatus::Created,
                Some(TaskStatus::Running) => ContainerStatus::Running,
                Some(TaskStatus::Stopped) => ContainerStatus::Stopped,
                Some(TaskStatus::Paused) => ContainerStatus::Paused,
                Some(TaskStatus::Unknown) => ContainerStatus::Unknown,
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
                started: self
                    .io_dir
                    .join(c.id.as_str())
                    .join(STARTED_MARKER)
                    .exists(),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

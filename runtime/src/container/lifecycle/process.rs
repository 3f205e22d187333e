//! A created container's process, as Docker runs one: `start` makes the containerd task
//! (runc create: the process, its mounts and namespaces) and starts it, so everything that
//! fails there fails the start, not the creation; `wait` reports its exit; `stop` signals the
//! main process first and kills every process of the container last.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::super::log::{LogRotation, Stdio};
use super::super::{ContainerId, ExitStatus, LABEL_CONTAINER_NAME, LABEL_TASK_ID};
use super::outage::through_outage;
use super::{Containers, LABEL_STDIO, STARTED_MARKER};
use crate::containerd::TaskStatus;
use crate::error::Error;

/// How long to wait for the last log bytes after the process exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After SIGKILL, how long the kernel and shim get to report the exit.
const KILL_GRACE: Duration = Duration::from_secs(10);
const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;

/// Which processes of a container a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// The container's main process (its PID 1) only, as `docker kill` and `docker stop` send
    /// it: a shell that traps the signal decides what its children get.
    MainProcess,
    /// Every process in the container's cgroup.
    AllProcesses,
}

impl Containers {
    /// Starts the container's process: creates its containerd task when it has none (its first
    /// start; a restart in place made a new one already), then starts it. Returns its PID.
    pub(crate) async fn start(&self, id: &ContainerId) -> Result<u32, Error> {
        // Created by this process and never started: it has no task, and the create said what
        // the task needs (no round trips to containerd to find out again).
        let fresh = self.fresh_lock().remove(id);
        if let Some(f) = fresh {
            self.create_task(&f.task_id, &f.name, id, f.mounts, f.rotation, f.stdio)
                .await?;
            tracing::debug!(target: "berth::phase", phase = "task_created", container.id = %id, "phase ended");
        } else if !self.has_task(id).await? {
            self.create_task_of(id).await?;
            tracing::debug!(target: "berth::phase", phase = "task_created", container.id = %id, "phase ended");
        }
        // Before the start, so that an agent that dies during it knows afterwards that this
        // container may have run and is never started a second time as if it had not.
        let marker = self.io_dir.join(id.as_str()).join(STARTED_MARKER);
        tokio::fs::write(&marker, b"")
            .await
            .map_err(|e| Error::io("mark the container started", marker, e))?;
        let pid = match self.start_task(id).await {
            // Nothing of it ran (runc's init waits for the start before it runs anything), so
            // its task is made again, once, as a restart in place makes one.
            Err(Error::Containerd(e)) if e.is_dead_before_start() => {
                tracing::warn!(container.id = %id, error = %e, "the container's process died before it was started; creating its task again");
                self.delete_task(id).await?;
                self.create_task_of(id).await?;
                self.start_task(id).await?
            }
            other => other?,
        };
        tracing::debug!(target: "berth::phase", phase = "task_started", container.id = %id, "phase ended");
        Ok(pid)
    }

    /// Whether the container has a containerd task (created, running or exited).
    async fn has_task(&self, id: &ContainerId) -> Result<bool, Error> {
        let (found, _) = through_outage("a task get", id.as_str(), || {
            self.client.task_get(id.as_str())
        })
        .await;
        match found {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the containerd task of a container that has none, from what its record, its
    /// snapshot and its FIFO directory say (its task, name, standard streams, log rotation).
    pub(super) async fn create_task_of(&self, id: &ContainerId) -> Result<(), Error> {
        let not_found = || Error::NotFound {
            id: id.to_string(),
            namespace: self.client.namespace().to_owned(),
        };
        // Asked through containerd restarting: only a record that is not there is missing.
        let (record, _) = through_outage("a container get", id.as_str(), || {
            self.client.container_get(id.as_str())
        })
        .await;
        let labels = match record {
            Ok(record) => record.labels,
            Err(e) if e.is_not_found() => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let (Some(task_id), Some(name)) = (
            labels.get(LABEL_TASK_ID).cloned(),
            labels.get(LABEL_CONTAINER_NAME).cloned(),
        ) else {
            return Err(not_found());
        };
        let stdio = labels
            .get(LABEL_STDIO)
            .map(|l| Stdio::from_label(l))
            .unwrap_or_default();
        let (mounts, _) = through_outage("a snapshot mounts", id.as_str(), || {
            self.client.snapshot_mounts(id.as_str())
        })
        .await;
        let mounts = mounts?;
        let rotation = LogRotation::load(&self.io_dir.join(id.as_str())).unwrap_or(self.rotation);
        self.create_task(&task_id, &name, id, mounts, rotation, stdio)
            .await
    }

    /// Waits until the container's process exits; returns its status once its output is in
    /// the log file. Cancel-safe: dropping the future stops waiting, not the container.
    pub(crate) async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, Error> {
        let exit = self
            .client
            .task_wait(id.as_str())
            .await
            .map_err(|e| super::super::not_found_or(&*self.client, id, e))?;
        let exited_at = exit.at.unwrap_or_else(SystemTime::now);
        let oom_killed = self.oom_killed(id, exit.code).await;
        let pipes = self.pipes_lock().get(id).cloned();
        if let Some(pipes) = pipes
            && !pipes.lock().await.finish(LOG_DRAIN_TIMEOUT).await
        {
            tracing::warn!(container.id = %id, "container output still open {}s after exit; a child process may hold it", LOG_DRAIN_TIMEOUT.as_secs());
        }
        Ok(ExitStatus {
            code: exit.code,
            exited_at,
            oom_killed,
        })
    }

    /// Whether the kernel OOM-killed the container: its own memory cgroup counted a kill, or
    /// it died of SIGKILL and its task's cgroup counted one.
    async fn oom_killed(&self, id: &ContainerId, exit_code: u32) -> bool {
        let Some((task_id, name)) = self.labels_of(id).await else {
            return false;
        };
        let (Ok(container_path), Ok(task_path)) = (
            self.cgroups.container_path(&task_id, &name),
            self.cgroups.task_path(&task_id),
        ) else {
            return false;
        };
        let own = self.cgroups.oom_kills(&container_path).unwrap_or(0);
        if own > 0 {
            return true;
        }
        exit_code == 128 + SIGKILL && self.cgroups.oom_kills(&task_path).unwrap_or(0) > 0
    }

    async fn labels_of(&self, id: &ContainerId) -> Option<(String, String)> {
        let labels = self.labels(id).await?;
        Some((
            labels.get(LABEL_TASK_ID)?.clone(),
            labels.get(LABEL_CONTAINER_NAME)?.clone(),
        ))
    }

    /// The labels of a container record, None when it cannot be read.
    pub(super) async fn labels(&self, id: &ContainerId) -> Option<HashMap<String, String>> {
        let record = self.client.container_get(id.as_str()).await.ok()?;
        Some(record.labels)
    }

    /// Runs `args` inside the running container, killing it after `timeout`.
    pub(crate) async fn exec(
        &self,
        id: &ContainerId,
        args: &[String],
        timeout: Duration,
    ) -> Result<super::super::ExecOutcome, Error> {
        super::super::exec::exec(&*self.client, id, args, timeout).await
    }

    /// Sends a signal to the container's main process or to all of its processes. A container
    /// already stopped (or never started) is fine.
    pub(crate) async fn kill(
        &self,
        id: &ContainerId,
        signal: u32,
        scope: KillScope,
    ) -> Result<(), Error> {
        let all = scope == KillScope::AllProcesses;
        match self.client.task_kill(id.as_str(), signal, all).await {
            Err(e) if !e.is_finished_process() => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Stops the container as `docker stop` does: SIGTERM to its main process only (which may
    /// trap it and end its children its own way), then, once `timeout` has passed, SIGKILL to
    /// every process. Returns how the main process ended.
    pub(crate) async fn stop(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<ExitStatus, Error> {
        if let Some(status) = self.stopped_status(id).await? {
            return Ok(status);
        }
        let wait = self.wait(id);
        tokio::pin!(wait);
        self.kill(id, SIGTERM, KillScope::MainProcess).await?;
        if let Ok(result) = tokio::time::timeout(timeout, &mut wait).await {
            return result;
        }
        tracing::info!(container.id = %id, timeout_s = timeout.as_secs_f64(), "container did not exit within its stop timeout; sending SIGKILL to all its processes");
        self.kill(id, SIGKILL, KillScope::AllProcesses).await?;
        tokio::time::timeout(KILL_GRACE, wait)
            .await
            .map_err(|_| Error::Timeout {
                what: "exit after SIGKILL",
                id: id.to_string(),
                seconds: KILL_GRACE.as_secs(),
            })?
    }

    /// The exit status if the process has already exited (or never started).
    async fn stopped_status(&self, id: &ContainerId) -> Result<Option<ExitStatus>, Error> {
        match self.client.task_get(id.as_str()).await {
            Ok(Some(p)) if p.status == TaskStatus::Stopped => self.wait(id).await.map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(Some(ExitStatus {
                code: 0,
                exited_at: SystemTime::now(),
                oom_killed: false,
            })),
            Err(e) => Err(e.into()),
        }
    }
}

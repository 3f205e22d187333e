//! How a task ends on the host: its containers stopped, its network released before STOPPED,
//! everything else removed after the cleanup wait (then the release is reported).

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::NetworkError;
use futures::future::BoxFuture;

use super::super::TaskEvent;
use super::{Created, Driver};
use crate::backoff::{host_retries, retry};
use crate::runtime::ContainerRuntime;
use crate::task::{Causes, network};

/// A step of a task's release that failed; it is retried until it succeeds. The message is
/// logged as it is, so the cause is part of it.
#[derive(Debug, thiserror::Error)]
enum ReleaseError {
    #[error("cannot tear down network {netns}: {}", Causes(.error))]
    Network { netns: String, error: NetworkError },
    #[error("{}", Causes(.0))]
    Runtime(berth_runtime::Error),
}

impl From<berth_runtime::Error> for ReleaseError {
    fn from(error: berth_runtime::Error) -> Self {
        Self::Runtime(error)
    }
}

/// Whether the task's network is still to be released by the cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NetState {
    /// Released when the task stopped.
    Released,
    /// Maybe still there (a task that stopped before the agent restarted).
    MaybeHeld,
}

impl<R: ContainerRuntime> Driver<R> {
    /// Stops a container (SIGTERM, SIGKILL after its stop timeout), retrying failed attempts;
    /// its exit is reported by its wait.
    pub(super) fn stop_container(&self, c: &Created) -> BoxFuture<'static, ()> {
        let rt = Arc::clone(&self.runtime);
        let c = c.clone();
        let cancel = self.cancel.clone();
        Box::pin(async move {
            let (rt, c) = (&rt, &c);
            let stop = || async move {
                match rt.stop(&c.id, c.stop_timeout).await {
                    Ok(_) | Err(berth_runtime::Error::NotFound { .. }) => Ok(()),
                    Err(error) => Err(error),
                }
            };
            retry(host_retries(), &cancel, stop, |error, delay| {
                tracing::warn!(container.name = %c.name, %error, retry_in_ms = delay.as_millis() as u64, "stop failed; retrying");
            })
            .await;
        })
    }

    /// After an interrupted start: stops the containers that were started (reporting their
    /// exits), then finishes. Created-but-never-started containers need no stop.
    pub(super) async fn stop_and_clean(&mut self, created: Vec<Created>, started: usize) {
        for c in created.iter().take(started) {
            // STOPPED is only reported once every started container's exit is confirmed.
            let rt = &self.runtime;
            let stop = || async move {
                match rt.stop(&c.id, c.stop_timeout).await {
                    Ok(exit) => Ok(Some(exit)),
                    Err(berth_runtime::Error::NotFound { .. }) => Ok(None),
                    Err(error) => Err(error),
                }
            };
            let stopped = retry(host_retries(), &self.cancel, stop, |error, delay| {
                tracing::warn!(container.name = %c.name, %error, retry_in_ms = delay.as_millis() as u64, "stop failed; retrying");
            })
            .await;
            match stopped {
                None => return,
                Some(Some(exit)) => {
                    self.report(TaskEvent::ContainerExited {
                        name: c.name.clone(),
                        exit,
                    })
                    .await;
                }
                Some(None) => {}
            }
        }
        self.finish(created).await;
    }

    /// Once every container has exited: releases the task's network, reports STOPPED, waits the
    /// cleanup wait, removes everything else and reports the release.
    pub(super) async fn finish(&mut self, created: Vec<Created>) {
        if !self.release_network().await {
            return;
        }
        self.report(TaskEvent::Stopped).await;
        self.cleanup_after(self.config.cleanup_wait, created, NetState::Released)
            .await;
    }

    /// Tears the task's network down (namespaces, addresses, port mappings; an ENI goes back
    /// to the host) before STOPPED is reported, as ECS releases a task's network before it
    /// shows STOPPED: the scheduler then gives the host ports and the ENI of a STOPPED task to
    /// others. Retried until it succeeds; false when the agent stops first (its next start
    /// finishes the stop).
    async fn release_network(&mut self) -> bool {
        retry(
            host_retries(),
            &self.cancel,
            || self.tear_down_network(),
            |error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot release the task's network; retrying");
            },
        )
        .await
        .is_some()
    }

    /// Tears down every network namespace of the task (idempotent).
    async fn tear_down_network(&self) -> Result<(), ReleaseError> {
        let namespaces = self
            .assignment
            .definition
            .as_ref()
            .map(|def| network::namespaces(self.task_id(), def))
            .unwrap_or_default();
        for name in namespaces {
            self.network
                .teardown(&name)
                .await
                .map_err(|error| ReleaseError::Network {
                    netns: name.clone(),
                    error,
                })?;
        }
        Ok(())
    }

    pub(super) async fn cleanup_after(
        &mut self,
        wait: Duration,
        created: Vec<Created>,
        network: NetState,
    ) {
        tracing::debug!(wait_s = wait.as_secs(), "cleanup scheduled");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.cancel.cancelled() => return,
        }
        // Nothing is removed before the engine has stored what the containers did: an agent
        // killed after a container's task is deleted but before its exit was stored would come
        // back to a RUNNING task whose container is gone, its exit code lost with it.
        self.applied().await;
        // Each step is idempotent; a failed one is retried with backoff until it succeeds or
        // the agent stops (then the next start resumes the cleanup).
        let cleaned = retry(
            host_retries(),
            &self.cancel,
            || self.cleanup_once(&created, network),
            |error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "task cleanup failed; retrying");
            },
        )
        .await;
        if cleaned.is_none() {
            return;
        }
        tracing::info!("task resources released");
        self.report(TaskEvent::Released).await;
    }

    async fn cleanup_once(
        &self,
        created: &[Created],
        network: NetState,
    ) -> Result<(), ReleaseError> {
        for c in created {
            self.runtime.delete(&c.id).await?;
            tracing::debug!(container.name = %c.name, "container deleted");
        }
        // A container whose create was cut short with an earlier run of the agent (between
        // its snapshot's prepare and its record) is in no list but holds its snapshot: each
        // container of the definition not deleted above is deleted by its ID (what is not
        // there is fine).
        let names = self
            .assignment
            .definition
            .iter()
            .flat_map(|d| &d.containers)
            .map(|c| c.name.as_str())
            .filter(|name| !created.iter().any(|c| c.name == *name));
        for name in names {
            let id = berth_runtime::ContainerId::for_container(self.task_id(), name);
            self.runtime.delete(&id).await?;
        }
        if network == NetState::MaybeHeld {
            self.tear_down_network().await?;
        }
        // Its containers are gone: the holder of the namespaces they shared goes too.
        let shares = self
            .assignment
            .definition
            .as_ref()
            .is_some_and(|d| d.pid_mode == "task" || d.ipc_mode == "task");
        if shares {
            self.runtime.remove_task_namespaces(self.task_id()).await?;
            tracing::debug!("task namespaces removed");
        }
        self.runtime.remove_task_volumes(self.task_id()).await?;
        tracing::debug!("task volumes removed");
        self.runtime.remove_task_cgroup(self.task_id()).await?;
        tracing::debug!("task cgroup removed");
        Ok(self.runtime.remove_task_logs(self.task_id()).await?)
    }
}

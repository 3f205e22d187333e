//! The watch on a task's namespace holder (`pidMode`/`ipcMode` task), the one process that
//! keeps the namespaces its containers share. ECS runs a namespace pause container there, and
//! stops the task when it stops; so does Berth when the holder dies while the task runs
//! (killed from the host, say). A PID namespace ends with its first process, and the kernel
//! kills everything else in it: a container restarted in place could only join a dead
//! namespace, or another holder's, which would break what the task shares. So the holder is
//! checked every few seconds, at each container exit (which its death causes) and before each
//! restart in place, and its loss stops the task with a reason that names it.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::SharedNamespaces;
use futures::future::BoxFuture;

use super::super::TaskEvent;
use super::Driver;
use super::namespaces::{holder_gone_reason, shared_by};
use super::supervise::Happened;
use crate::runtime::ContainerRuntime;
use crate::task::Causes;

/// How often a running task's holder is checked when nothing else asks.
pub(in crate::engine) const HOLDER_WATCH: Duration = Duration::from_secs(2);

impl<R: ContainerRuntime> Driver<R> {
    /// What of the task its holder keeps, when its containers share anything.
    pub(super) fn shared(&self) -> Option<SharedNamespaces> {
        self.assignment.definition.as_ref().and_then(shared_by)
    }

    /// Whether the task's holder is gone. A check that fails says nothing (it is logged, and
    /// the next check asks again).
    pub(super) async fn holder_gone(&self, shared: SharedNamespaces) -> bool {
        gone(&*self.runtime, self.task_id(), shared).await
    }

    /// Reports the holder's loss: the engine stops the task with a reason that names it.
    pub(super) async fn report_holder_gone(&self, shared: SharedNamespaces) {
        let reason = holder_gone_reason(shared);
        tracing::warn!(%reason, "the task's namespace holder is gone; stopping the task");
        self.report(TaskEvent::HolderGone { reason }).await;
    }

    /// Checks the holder every [`HOLDER_WATCH`] and ends once it is gone.
    pub(super) fn watch_holder(&self, shared: SharedNamespaces) -> BoxFuture<'static, Happened> {
        let rt = Arc::clone(&self.runtime);
        let task_id = self.task_id().to_owned();
        Box::pin(async move {
            loop {
                tokio::time::sleep(HOLDER_WATCH).await;
                if gone(&*rt, &task_id, shared).await {
                    return Happened::HolderGone(None);
                }
            }
        })
    }
}

/// Whether `task_id`'s holder is gone (false when the check fails, which is logged).
pub(super) async fn gone<R: ContainerRuntime>(
    rt: &R,
    task_id: &str,
    shared: SharedNamespaces,
) -> bool {
    match rt.task_namespaces_held(task_id, shared).await {
        Ok(held) => !held,
        Err(error) => {
            tracing::warn!(error = %Causes(&error), "cannot check the task's namespace holder");
            false
        }
    }
}

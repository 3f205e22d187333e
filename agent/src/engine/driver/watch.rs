//! What follows a started container: its health checks, its wait, and its restart in place.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ExecOutcome, ExitStatus};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::super::health::Probe;
use super::super::{Command, TaskEvent};
use super::supervise::Happened;
use super::{Created, Driver};
use crate::runtime::ContainerRuntime;
use crate::task::{Causes, Check};

impl<R: ContainerRuntime> Driver<R> {
    /// Runs a container's health check every interval from now (its start) and reports each
    /// result to the engine, until the token it leaves in `stop` is cancelled (the container
    /// exited, or the task stops) or the agent shuts down.
    pub(super) fn probe(
        &self,
        c: &Created,
        check: Check,
        stop: &mut Option<CancellationToken>,
    ) -> BoxFuture<'static, ()> {
        let token = self.cancel.child_token();
        if let Some(previous) = stop.replace(token.clone()) {
            previous.cancel();
        }
        let rt = Arc::clone(&self.runtime);
        let events = self.events.clone();
        let task_id = self.assignment.task_id.clone();
        let (name, id) = (c.name.clone(), c.id.clone());
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(check.interval) => {}
                    _ = token.cancelled() => return,
                }
                let in_start_period = started.elapsed() < check.start_period;
                let outcome = tokio::select! {
                    outcome = rt.exec(&id, &check.args, check.timeout) => outcome,
                    _ = token.cancelled() => return,
                };
                let probe = match outcome {
                    Ok(ExecOutcome::Exited(0)) => Probe {
                        passed: true,
                        in_start_period,
                        detail: "exited with 0".to_owned(),
                    },
                    Ok(ExecOutcome::Exited(code)) => Probe {
                        passed: false,
                        in_start_period,
                        detail: format!("exited with {code}"),
                    },
                    Ok(ExecOutcome::TimedOut) => Probe {
                        passed: false,
                        in_start_period,
                        detail: format!("timed out after {}s", check.timeout.as_secs()),
                    },
                    Err(error) => Probe {
                        passed: false,
                        in_start_period,
                        detail: format!("could not run: {}", Causes(&error)),
                    },
                };
                if token.is_cancelled() {
                    return;
                }
                let event = TaskEvent::Health {
                    name: name.clone(),
                    probe,
                };
                if events
                    .send(Command::Event {
                        task_id: task_id.clone(),
                        event,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    }

    /// After `delay` (unless the task stops or the agent shuts down first), makes container `i`
    /// startable again in place and starts it; not when the task's namespace holder died
    /// meanwhile (the container would join a dead namespace): that ends the task instead.
    pub(super) fn restart_after(
        &self,
        i: usize,
        c: &Created,
        exit: ExitStatus,
        delay: Duration,
        stop: CancellationToken,
    ) -> BoxFuture<'static, Happened> {
        let rt = Arc::clone(&self.runtime);
        let id = c.id.clone();
        let cancel = self.cancel.clone();
        let (shared, task_id) = (self.shared(), self.task_id().to_owned());
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return Happened::Restarted(i, exit, None),
                _ = cancel.cancelled() => return Happened::Restarted(i, exit, None),
            }
            if let Some(shared) = shared
                && super::holder::gone(&*rt, &task_id, shared).await
            {
                return Happened::HolderGone(Some((i, exit)));
            }
            let outcome = async {
                rt.restart(&id).await?;
                rt.start(&id).await.map(|_| ())
            }
            .await;
            Happened::Restarted(i, exit, Some(outcome))
        })
    }

    /// Waits for container `i` to exit, after `delay`.
    pub(super) fn wait_for(
        &self,
        i: usize,
        c: &Created,
        delay: Duration,
    ) -> BoxFuture<'static, Happened> {
        let rt = Arc::clone(&self.runtime);
        let id = c.id.clone();
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Happened::Exited(i, rt.wait(&id).await)
        })
    }
}

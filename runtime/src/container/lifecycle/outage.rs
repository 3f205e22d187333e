//! A task call whose answer was lost because containerd went away mid-call (restarted, or the
//! connection broke): the call may or may not have taken effect, so the container is not
//! failed on it. containerd is polled until it answers again (within a deadline), and what it
//! says the task's state is decides what comes next.

use std::time::Duration;

use super::super::ContainerId;
use super::Containers;
use crate::containerd::{ContainerdError, TaskState, TaskStatus};
use crate::error::Error;

/// How long containerd gets to come back after a call's answer was lost.
pub(super) const OUTAGE_DEADLINE: Duration = Duration::from_secs(60);
/// How often it is asked meanwhile.
pub(super) const OUTAGE_POLL: Duration = Duration::from_millis(500);
/// How many outages one task call is carried through. Each gets [`OUTAGE_DEADLINE`] of its
/// own from the moment containerd last answered: a containerd that keeps coming back (restarted
/// over and over, on a loaded host) is waited for, one that stays away is not.
pub(super) const OUTAGES_PER_CALL: u32 = 10;

/// What containerd says of a container's task once it answers again.
pub(super) enum Found {
    Task(TaskState),
    Absent,
}

/// Runs `call` until containerd answers it, through containerd going away (up to
/// [`OUTAGE_DEADLINE`]); says whether an earlier attempt's answer was lost, so the caller can
/// tell its own effect (AlreadyExists) from another's. For calls that are safe to repeat.
pub(super) async fn through_outage<T, F, Fut>(
    what: &str,
    object: &str,
    mut call: F,
) -> (Result<T, ContainerdError>, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ContainerdError>>,
{
    let deadline = tokio::time::Instant::now() + OUTAGE_DEADLINE;
    let mut lost = false;
    loop {
        match call().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                if !lost {
                    tracing::info!(object, error = %e, "containerd did not answer {what}; trying again once it is back");
                }
                lost = true;
                tokio::time::sleep(OUTAGE_POLL).await;
            }
            other => return (other, lost),
        }
    }
}

impl Containers {
    /// Waits until containerd answers a task get for `id` again, up to [`OUTAGE_DEADLINE`];
    /// `lost` is the error whose answer was lost, returned when containerd stays away.
    pub(super) async fn task_after_outage(
        &self,
        id: &ContainerId,
        lost: ContainerdError,
    ) -> Result<Found, ContainerdError> {
        let deadline = tokio::time::Instant::now() + OUTAGE_DEADLINE;
        tracing::info!(container.id = %id, error = %lost, "containerd did not answer a task call; waiting for it to find out what happened");
        loop {
            match self.client.task_get(id.as_str()).await {
                Ok(Some(state)) => return Ok(Found::Task(state)),
                Ok(None) => return Ok(Found::Absent),
                Err(e) if e.is_not_found() => return Ok(Found::Absent),
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(container.id = %id, seconds = OUTAGE_DEADLINE.as_secs(), "containerd did not come back in time");
                return Err(lost);
            }
            tokio::time::sleep(OUTAGE_POLL).await;
        }
    }

    /// Starts the container's created task, through containerd going away meanwhile: a start
    /// whose answer was lost is settled by the task's state. A task still created never
    /// started (runc moves it on when it starts), so it is started now; one running or
    /// stopped did start, and its PID is taken. A task that is gone is NotFound.
    pub(super) async fn start_task(&self, id: &ContainerId) -> Result<u32, Error> {
        let mut lost = match self.client.task_start(id.as_str()).await {
            Err(e) if e.is_transient() => e,
            other => return other.map_err(|e| super::super::not_found_or(&*self.client, id, e)),
        };
        let mut outages = 1;
        loop {
            let found = self
                .task_after_outage(id, lost)
                .await
                .map_err(|e| super::super::not_found_or(&*self.client, id, e))?;
            match found {
                Found::Absent => {
                    return Err(Error::NotFound {
                        id: id.to_string(),
                        namespace: self.client.namespace().to_owned(),
                    });
                }
                Found::Task(state) if state.status != TaskStatus::Created => {
                    tracing::info!(container.id = %id, pid = state.pid, status = ?state.status, "the start containerd did not answer took effect");
                    return Ok(state.pid);
                }
                Found::Task(_) => {
                    tracing::info!(container.id = %id, "the start containerd did not answer did not take effect; starting again");
                }
            }
            match self.client.task_start(id.as_str()).await {
                Err(e) if e.is_transient() && outages < OUTAGES_PER_CALL => {
                    outages += 1;
                    lost = e;
                }
                other => {
                    return other.map_err(|e| super::super::not_found_or(&*self.client, id, e));
                }
            }
        }
    }
}

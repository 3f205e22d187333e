//! The scheduler's side of convergence: agents' liveness kept in memory (persisted at most
//! every [`HEARTBEAT_PERSIST_EVERY`] per instance, and a failed write degrades that one
//! instance's record, never a session), the full state an agent sends when asked
//! (`StateRequest`, on every session open and every `reconcile_interval`) resolved by the
//! store's rules (`store/reconcile.rs`), and instances lost for good: disconnected longer than
//! `instance_lost_after`, their tasks marked STOPPED and their resources released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use berth_proto::v1 as pb;
use tokio::time::Instant;

use super::Shared;

/// A heartbeat is written to the store at most this often per instance; liveness itself is
/// kept in memory.
pub(crate) const HEARTBEAT_PERSIST_EVERY: Duration = Duration::from_secs(30);

/// Agents' liveness, in memory.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    inner: Mutex<LivenessInner>,
}

#[derive(Debug, Default)]
struct LivenessInner {
    /// When each instance's heartbeat was last written to the store.
    persisted: HashMap<String, Instant>,
    /// When each instance without a session was last heard of.
    disconnected: HashMap<String, Instant>,
}

impl Liveness {
    fn lock(&self) -> MutexGuard<'_, LivenessInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a heartbeat of the instance received now is to be written to the store; it is
    /// counted as written (a failed write is retried at the next period, not at every beat).
    pub(crate) fn persist_due(&self, instance_id: &str, now: Instant) -> bool {
        let mut inner = self.lock();
        let due = inner
            .persisted
            .get(instance_id)
            .is_none_or(|at| now.saturating_duration_since(*at) >= HEARTBEAT_PERSIST_EVERY);
        if due {
            inner.persisted.insert(instance_id.to_owned(), now);
        }
        due
    }

    /// The instance has a session again.
    pub(crate) fn connected(&self, instance_id: &str) {
        self.lock().disconnected.remove(instance_id);
    }

    /// The instance's session ended now.
    pub(crate) fn disconnected(&self, instance_id: &str, now: Instant) {
        self.lock().disconnected.insert(instance_id.to_owned(), now);
    }

    /// When the instance was last heard of, if it is known to be disconnected; else records
    /// `fallback` (from the store: its last persisted heartbeat) as that time.
    fn disconnected_since(&self, instance_id: &str, fallback: Instant) -> Instant {
        *self
            .lock()
            .disconnected
            .entry(instance_id.to_owned())
            .or_insert(fallback)
    }
}

/// The reason of the tasks of a lost instance.
pub(crate) fn lost_reason(instance_id: &str, after: Duration) -> String {
    format!(
        "container instance {instance_id} was disconnected for longer than {}s \
         (--instance-lost-after): the scheduler marked its tasks STOPPED and released their \
         resources; if the agent comes back, whatever still runs there is stopped",
        after.as_secs()
    )
}

/// Marks the instances disconnected for longer than `instance_lost_after` lost (their active
/// tasks STOPPED, their resources released). An instance the memory knows nothing of (the
/// scheduler restarted) counts from its last persisted heartbeat.
pub(crate) async fn mark_lost(shared: &Arc<Shared>, now: Instant) {
    let after = shared.config.instance_lost_after;
    let store = shared.store.clone();
    let candidates =
        match tokio::task::spawn_blocking(move || store.instances_with_active_tasks()).await {
            Ok(Ok(c)) => c,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot list the instances with tasks to find lost ones");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "listing the instances with tasks panicked");
                return;
            }
        };
    let connected = shared.sessions.connected();
    for (instance_id, seen) in candidates {
        if connected.contains(&instance_id) {
            continue;
        }
        let ago = seen
            .and_then(|t| SystemTime::try_from(t).ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let fallback = now.checked_sub(ago).unwrap_or(now);
        let since = shared.liveness.disconnected_since(&instance_id, fallback);
        if now.saturating_duration_since(since) < after {
            continue;
        }
        let reason = lost_reason(&instance_id, after);
        let store = shared.store.clone();
        let id = instance_id.clone();
        match tokio::task::spawn_blocking(move || store.mark_instance_lost(&id, &reason)).await {
            Ok(Ok(tasks)) if tasks.is_empty() => {}
            Ok(Ok(tasks)) => {
                tracing::warn!(instance.id = %instance_id, tasks = ?tasks, lost_after_s = after.as_secs(), "container instance lost: its tasks are marked STOPPED and their resources released");
            }
            Ok(Err(error)) => {
                tracing::warn!(instance.id = %instance_id, %error, "cannot mark the tasks of a lost instance STOPPED; retrying at the next check");
            }
            Err(error) => {
                tracing::warn!(instance.id = %instance_id, %error, "marking a lost instance panicked");
            }
        }
    }
}

/// Resolves an agent's full state against the scheduler's; true when stop orders or
/// re-adoptions were queued (the session sends them).
pub(crate) async fn full_state(
    shared: &Arc<Shared>,
    instance_id: &str,
    full: pb::FullState,
) -> Result<bool, super::ServerError> {
    let id = instance_id.to_owned();
    let tasks = full.tasks.len();
    let done = shared
        .db(move |s| s.reconcile(&id, &full.tasks, &full.found))
        .await?;
    if done.is_empty() {
        tracing::debug!(tasks, "reconciled: both views agree");
    } else {
        tracing::info!(
            tasks,
            updated = ?done.updated,
            stop_ordered = ?done.stop_ordered,
            forgotten = ?done.forgotten,
            unknown_to_host = ?done.unknown_to_host,
            adopted = ?done.adopted,
            "reconciled the agent's full state"
        );
    }
    Ok(!done.stop_ordered.is_empty() || !done.forgotten.is_empty() || !done.adopted.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeats_are_persisted_at_most_every_period() {
        let live = Liveness::default();
        let t0 = Instant::now();
        assert!(live.persist_due("i", t0));
        assert!(!live.persist_due("i", t0 + Duration::from_secs(10)));
        assert!(live.persist_due("other", t0 + Duration::from_secs(10)));
        assert!(!live.persist_due("i", t0 + Duration::from_secs(29)));
        assert!(live.persist_due("i", t0 + HEARTBEAT_PERSIST_EVERY));
    }

    #[tokio::test(start_paused = true)]
    async fn disconnection_counts_from_the_last_word() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.disconnected("i", t0);
        assert_eq!(
            live.disconnected_since("i", t0 + Duration::from_secs(99)),
            t0
        );
        live.connected("i");
        let later = t0 + Duration::from_secs(5);
        assert_eq!(live.disconnected_since("i", later), later);
    }
}

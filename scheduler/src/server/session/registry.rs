//! The registry of live agent sessions, one per instance: registering replaces an older
//! session of the same instance, and a session silent too long is expired.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::server::images::ImagesCall;
use crate::server::logs::LogCommand;

/// Why the scheduler closed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// A newer session of the same instance took over.
    Replaced,
    /// No message for three heartbeat intervals.
    Silent,
    /// A test hook dropped it.
    Dropped,
    /// The instance was deregistered: what is queued for it is sent, then it is cut off.
    Deregistered,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// Log requests for the session (`logs.rs`).
    logs: mpsc::UnboundedSender<LogCommand>,
    /// Image requests for the session (`images.rs`).
    images: mpsc::UnboundedSender<ImagesCall>,
    notify: Arc<Notify>,
    cancel: CancellationToken,
    closed: Arc<OnceLock<CloseReason>>,
    /// Set by a test hook: the session sends nothing more.
    stalled: Arc<AtomicBool>,
    last_seen: Instant,
}

/// The live sessions, one per instance.
#[derive(Debug, Default)]
pub(crate) struct SessionRegistry {
    entries: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    next_log_request: AtomicU64,
}

/// What a session gets when it registers.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) id: u64,
    pub(super) logs: mpsc::UnboundedReceiver<LogCommand>,
    pub(super) images: mpsc::UnboundedReceiver<ImagesCall>,
    pub(super) notify: Arc<Notify>,
    pub(super) closed: Arc<OnceLock<CloseReason>>,
    pub(super) stalled: Arc<AtomicBool>,
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a session for the instance, closing the one it replaces.
    pub(crate) fn register(&self, instance_id: &str, cancel: CancellationToken) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let closed = Arc::new(OnceLock::new());
        let stalled = Arc::new(AtomicBool::new(false));
        let (logs_tx, logs) = mpsc::unbounded_channel();
        let (images_tx, images) = mpsc::unbounded_channel();
        let entry = Entry {
            id,
            logs: logs_tx,
            images: images_tx,
            notify: notify.clone(),
            cancel,
            closed: closed.clone(),
            stalled: stalled.clone(),
            last_seen: Instant::now(),
        };
        if let Some(old) = self.lock().insert(instance_id.to_owned(), entry) {
            let _ = old.closed.set(CloseReason::Replaced);
            old.cancel.cancel();
            tracing::info!(
                instance.id = instance_id,
                "a newer session replaces the open one"
            );
        }
        Registration {
            id,
            logs,
            images,
            notify,
            closed,
            stalled,
        }
    }

    /// Ends the instance's session as if its connection broke (a test hook); false when it has
    /// none.
    pub(crate) fn drop_session(&self, instance_id: &str) -> bool {
        let Some(entry) = self.lock().remove(instance_id) else {
            return false;
        };
        let _ = entry.closed.set(CloseReason::Dropped);
        entry.cancel.cancel();
        tracing::info!(instance.id = instance_id, "session dropped by a test hook");
        true
    }

    /// Cuts the instance's session off because the instance was deregistered; false when it
    /// has none.
    pub(crate) fn cut_off(&self, instance_id: &str) -> bool {
        let Some(entry) = self.lock().remove(instance_id) else {
            return false;
        };
        let _ = entry.closed.set(CloseReason::Deregistered);
        entry.cancel.cancel();
        tracing::info!(
            instance.id = instance_id,
            "session cut off: the instance was deregistered"
        );
        true
    }

    /// Makes the instance's session send nothing more (a test hook); false when it has none.
    pub(crate) fn stall(&self, instance_id: &str) -> bool {
        let Some(entry) = self.lock().get(instance_id).map(|e| e.stalled.clone()) else {
            return false;
        };
        entry.store(true, Ordering::Relaxed);
        tracing::info!(instance.id = instance_id, "session stalled by a test hook");
        true
    }

    /// Removes the session if it is still the instance's current one.
    pub(crate) fn unregister(&self, instance_id: &str, id: u64) {
        let mut entries = self.lock();
        if entries.get(instance_id).is_some_and(|e| e.id == id) {
            entries.remove(instance_id);
        }
    }

    /// Wakes the instance's session, if any, to send what was enqueued.
    pub(crate) fn notify(&self, instance_id: &str) {
        if let Some(e) = self.lock().get(instance_id) {
            e.notify.notify_one();
        }
    }

    pub(super) fn touch(&self, instance_id: &str, id: u64) {
        if let Some(e) = self.lock().get_mut(instance_id)
            && e.id == id
        {
            e.last_seen = Instant::now();
        }
    }

    /// The log-request queue of the instance's live session, if it has one, and a request ID
    /// unique within the scheduler's run.
    pub(crate) fn log_session(
        &self,
        instance_id: &str,
    ) -> Option<(mpsc::UnboundedSender<LogCommand>, u64)> {
        let logs = self.lock().get(instance_id)?.logs.clone();
        Some((logs, self.next_log_request.fetch_add(1, Ordering::Relaxed)))
    }

    /// The image-request queue of the instance's live session, if it has one, and a request
    /// ID unique within the scheduler's run.
    pub(crate) fn images_session(
        &self,
        instance_id: &str,
    ) -> Option<(mpsc::UnboundedSender<ImagesCall>, u64)> {
        let images = self.lock().get(instance_id)?.images.clone();
        Some((
            images,
            self.next_log_request.fetch_add(1, Ordering::Relaxed),
        ))
    }

    /// Whether the instance has a live session.
    pub(crate) fn is_connected(&self, instance_id: &str) -> bool {
        self.lock().contains_key(instance_id)
    }

    /// The instances with a live session.
    pub(crate) fn connected(&self) -> HashSet<String> {
        self.lock().keys().cloned().collect()
    }

    /// Closes the sessions silent for `max_silence` or more; returns their instance IDs.
    pub(crate) fn expire(&self, now: Instant, max_silence: Duration) -> Vec<String> {
        let mut entries = self.lock();
        let stale: Vec<String> = entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) >= max_silence)
            .map(|(k, _)| k.clone())
            .collect();
        for id in &stale {
            if let Some(e) = entries.remove(id) {
                let _ = e.closed.set(CloseReason::Silent);
                e.cancel.cancel();
            }
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expire_closes_silent_sessions_only() {
        let reg = SessionRegistry::default();
        let a = CancellationToken::new();
        let b = CancellationToken::new();
        reg.register("a", a.clone());
        tokio::time::advance(Duration::from_secs(20)).await;
        let rb = reg.register("b", b.clone());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            reg.expire(Instant::now(), Duration::from_secs(30)),
            vec!["a"]
        );
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(!reg.is_connected("a"));
        assert!(reg.is_connected("b"));
        reg.touch("b", rb.id);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            reg.expire(Instant::now(), Duration::from_secs(30))
                .is_empty()
        );
    }

    #[test]
    fn a_newer_session_replaces_the_older() {
        let reg = SessionRegistry::default();
        let old = CancellationToken::new();
        let r1 = reg.register("i", old.clone());
        let r2 = reg.register("i", CancellationToken::new());
        assert!(old.is_cancelled());
        assert_eq!(r1.closed.get(), Some(&CloseReason::Replaced));
        // The old session's cleanup must not remove the new one.
        reg.unregister("i", r1.id);
        assert!(reg.is_connected("i"));
        reg.unregister("i", r2.id);
        assert!(!reg.is_connected("i"));
    }
}

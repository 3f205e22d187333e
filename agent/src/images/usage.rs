//! Which images the host's tasks need and when each image was last used, shared by the task
//! engine and the image collector. The engine holds a task's images from the moment it accepts
//! the assignment until the task has stopped; the collector takes each removal under the same
//! lock, so an image is either held first (and kept) or marked for removal first (and a driver
//! that needs it waits for the removal to end, then pulls it again). Last uses are kept in the
//! agent's store and mirrored here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::store::{ImageRecord, Store, StoreError};

/// The table. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct ImageUse {
    store: Arc<Store>,
    state: Mutex<State>,
    /// Signalled whenever a removal ends.
    removed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Task ID → the images its containers run.
    held: HashMap<String, HashSet<String>>,
    /// Images being removed now.
    removing: HashSet<String>,
    /// The store's image records, by name.
    records: HashMap<String, ImageRecord>,
}

/// An image marked for removal: no task holds it, and none can start from it until this is
/// dropped (when the removal has ended, done or failed).
#[derive(Debug)]
pub(crate) struct Removing<'a> {
    table: &'a ImageUse,
    name: String,
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.table.lock().removing.remove(&self.name);
        self.table.removed.notify_waiters();
    }
}

impl ImageUse {
    /// The table over the agent's store, with the image records it holds (none, and a
    /// warning, when they cannot be read: they only order removals).
    pub(crate) fn load(store: Arc<Store>) -> Self {
        let records = store.image_records().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the images' last uses; counted from now");
            Vec::new()
        });
        Self {
            store,
            state: Mutex::new(State {
                records: records.into_iter().map(|r| (r.name.clone(), r)).collect(),
                ..State::default()
            }),
            removed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task needs these images (its assignment was accepted, or it was taken back after a
    /// restart). Replaces what the task held.
    pub(crate) fn hold(&self, task_id: &str, images: impl IntoIterator<Item = String>) {
        self.lock()
            .held
            .insert(task_id.to_owned(), images.into_iter().collect());
    }

    /// The task has stopped (or is forgotten): its images are free for the collector.
    pub(crate) fn release(&self, task_id: &str) {
        self.lock().held.remove(task_id);
    }

    /// Whether any task holds `image`.
    pub(crate) fn in_use(&self, image: &str) -> bool {
        self.lock().held.values().any(|s| s.contains(image))
    }

    /// The tasks that hold `image`, sorted.
    pub(crate) fn holders(&self, image: &str) -> Vec<String> {
        let mut tasks: Vec<String> = self
            .lock()
            .held
            .iter()
            .filter(|(_, images)| images.contains(image))
            .map(|(task, _)| task.clone())
            .collect();
        tasks.sort();
        tasks
    }

    /// Waits while `image` is being removed.
    pub(crate) async fn wait_removal(&self, image: &str) {
        loop {
            let notified = self.removed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().removing.contains(image) {
                return;
            }
            notified.await;
        }
    }

    /// Marks `image` for removal unless a task holds it (None then).
    pub(crate) fn begin_removal(&self, image: &str) -> Option<Removing<'_>> {
        let mut state = self.lock();
        if state.held.values().any(|s| s.contains(image)) || !state.removing.insert(image.into()) {
            return None;
        }
        Some(Removing {
            table: self,
            name: image.to_owned(),
        })
    }

    /// This agent pulled `image` before (what the `once` behaviour asks).
    pub(crate) fn pulled_before(&self, image: &str) -> bool {
        self.lock().records.get(image).is_some_and(|r| r.pulled)
    }

    /// When a task last used `image`, if one did.
    pub(crate) fn last_used(&self, image: &str) -> Option<SystemTime> {
        self.lock().records.get(image).map(|r| r.last_used)
    }

    /// Tasks used these images now; `pulled`: this agent pulled them from the registry.
    pub(crate) fn touch(&self, images: &[String], now: SystemTime, pulled: bool) {
        let records: Vec<ImageRecord> = {
            let mut state = self.lock();
            images
                .iter()
                .map(|name| {
                    let r = state
                        .records
                        .entry(name.clone())
                        .or_insert_with(|| ImageRecord {
                            name: name.clone(),
                            last_used: now,
                            pulled,
                        });
                    r.last_used = r.last_used.max(now);
                    r.pulled |= pulled;
                    r.clone()
                })
                .collect()
        };
        if let Err(error) = self.store.put_image_records(&records) {
            tracing::warn!(%error, "cannot record the images' last use");
        }
    }

    /// Forgets a removed image's record (called while its [`Removing`] is held).
    pub(crate) fn forget(&self, removing: &Removing<'_>) -> Result<(), StoreError> {
        let name = &removing.name;
        self.lock().records.remove(name);
        self.store.forget_image_record(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (tempfile::TempDir, ImageUse) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        (dir, ImageUse::load(store))
    }

    #[test]
    fn a_held_image_is_never_marked_and_a_marked_one_is_not_marked_twice() {
        let (_dir, t) = table();
        t.hold("task-1", ["r/a:1".to_owned()]);
        assert!(t.in_use("r/a:1"));
        assert_eq!(t.holders("r/a:1"), ["task-1"]);
        assert!(t.holders("r/b:1").is_empty());
        assert!(t.begin_removal("r/a:1").is_none());
        let marked = t.begin_removal("r/b:1").expect("free");
        assert!(t.begin_removal("r/b:1").is_none());
        drop(marked);
        assert!(t.begin_removal("r/b:1").is_some());
        t.release("task-1");
        assert!(!t.in_use("r/a:1"));
        assert!(t.begin_removal("r/a:1").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_waits_for_the_removal_of_its_image() {
        let (_dir, t) = table();
        let t = Arc::new(t);
        let marked = t.begin_removal("r/a:1").expect("free");
        let waiter = {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.wait_removal("r/a:1").await })
        };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "waits while the removal runs");
        drop(marked);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("released when the removal ends")
            .unwrap();
        // Nothing to wait for.
        t.wait_removal("r/b:1").await;
    }

    #[test]
    fn last_uses_persist_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let t1 = t0 + std::time::Duration::from_secs(60);
        {
            let t = ImageUse::load(Arc::new(Store::open(dir.path()).unwrap()));
            t.touch(&["r/a:1".to_owned()], t1, true);
            t.touch(&["r/a:1".to_owned()], t0, false);
            t.touch(&["r/b:1".to_owned()], t0, false);
        }
        let t = ImageUse::load(Arc::new(Store::open(dir.path()).unwrap()));
        assert_eq!(t.last_used("r/a:1"), Some(t1));
        assert!(t.pulled_before("r/a:1"));
        assert!(!t.pulled_before("r/b:1"));
        let marked = t.begin_removal("r/a:1").unwrap();
        t.forget(&marked).unwrap();
        drop(marked);
        drop(t);
        let t = ImageUse::load(Arc::new(Store::open(dir.path()).unwrap()));
        assert_eq!(t.last_used("r/a:1"), None);
        assert_eq!(t.last_used("r/b:1"), Some(t0));
    }
}

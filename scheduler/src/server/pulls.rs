//! The latest pull progress of each task, as the agents send it on their metrics streams (a
//! batch without a host sample carries the instance's running pulls, at most once a second).
//! In memory only: progress is worth nothing once stale, and a restarted scheduler has the
//! next reading within a second. DescribeTasks and WatchTasks show it on PENDING tasks; every
//! reading wakes the WatchTasks streams, as a committed write does.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use berth_proto::v1::{ImagePullProgress, Task, TaskStatus};
use tokio::sync::watch;

/// The instances' running pulls, by instance ID.
#[derive(Debug)]
pub(crate) struct PullBook {
    by_instance: Mutex<HashMap<String, Vec<ImagePullProgress>>>,
    /// Bumped on every reading.
    readings: watch::Sender<u64>,
}

impl Default for PullBook {
    fn default() -> Self {
        Self {
            by_instance: Mutex::new(HashMap::new()),
            readings: watch::Sender::new(0),
        }
    }
}

impl PullBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<ImagePullProgress>>> {
        self.by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The instance's pulls now (none: nothing pulling), replacing what it sent before.
    pub(crate) fn replace(&self, instance_id: &str, pulls: Vec<ImagePullProgress>) {
        {
            let mut book = self.lock();
            if pulls.is_empty() {
                book.remove(instance_id);
            } else {
                book.insert(instance_id.to_owned(), pulls);
            }
        }
        self.readings.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The instance is gone (its session closed): what it was pulling is unknown now.
    pub(crate) fn forget(&self, instance_id: &str) {
        if self.lock().remove(instance_id).is_some() {
            self.readings.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A receiver that changes with every reading.
    pub(crate) fn readings(&self) -> watch::Receiver<u64> {
        self.readings.subscribe()
    }

    /// Fills in the progress of each PENDING task from its own instance's latest reading;
    /// other tasks show none.
    pub(crate) fn annotate(&self, tasks: &mut [Task]) {
        let book = self.lock();
        for task in tasks {
            task.pull_progress.clear();
            if task.last_status != TaskStatus::Pending as i32 {
                continue;
            }
            if let Some(pulls) = book.get(&task.container_instance_id) {
                task.pull_progress = pulls
                    .iter()
                    .filter(|p| p.task_id == task.task_id)
                    .cloned()
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, instance: &str, status: TaskStatus) -> Task {
        Task {
            task_id: id.into(),
            container_instance_id: instance.into(),
            last_status: status as i32,
            ..Task::default()
        }
    }

    fn pull(task_id: &str, done: u64) -> ImagePullProgress {
        ImagePullProgress {
            task_id: task_id.into(),
            image: "r/app:1".into(),
            bytes_downloaded: done,
            bytes_total: 100,
            ..ImagePullProgress::default()
        }
    }

    #[test]
    fn pending_tasks_show_their_instance_latest_reading() {
        let book = PullBook::default();
        let mut readings = book.readings();
        book.replace("i-1", vec![pull("t-1", 10), pull("t-2", 20)]);
        book.replace("i-1", vec![pull("t-1", 50), pull("t-2", 60)]);
        // Another instance claiming t-1 is not where t-1 runs.
        book.replace("i-2", vec![pull("t-1", 99)]);
        assert!(readings.has_changed().unwrap());
        readings.borrow_and_update();

        let mut tasks = vec![
            task("t-1", "i-1", TaskStatus::Pending),
            task("t-2", "i-1", TaskStatus::Running),
            task("t-3", "i-1", TaskStatus::Pending),
        ];
        book.annotate(&mut tasks);
        assert_eq!(tasks[0].pull_progress, vec![pull("t-1", 50)]);
        assert!(
            tasks[1].pull_progress.is_empty(),
            "only PENDING tasks show it"
        );
        assert!(tasks[2].pull_progress.is_empty());

        // Nothing pulling any more, or the instance gone: nothing shown.
        book.replace("i-1", Vec::new());
        book.annotate(&mut tasks);
        assert!(tasks[0].pull_progress.is_empty());
        book.replace("i-1", vec![pull("t-1", 70)]);
        book.forget("i-1");
        book.annotate(&mut tasks);
        assert!(tasks[0].pull_progress.is_empty());
        assert!(readings.has_changed().unwrap());
    }
}

//! Pull progress of the tasks still pulling: each driver folds the runtime's per-blob reports
//! into the [`PullBoard`] (per task and image: bytes and layers done, and their totals) while
//! its pull runs, and [`publish`], one owned task, sends the board to the scheduler on the
//! metrics stream when it changed, at most once every [`PUBLISH_EVERY`]. Progress never goes
//! on the session: it is worth nothing once stale, and a slow consumer must never delay a state
//! change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{ImagePullProgress, MetricsBatch};
use berth_runtime::PullProgress;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::BatchBuffer;

/// The shortest time between two progress batches.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The pulls running now, by (task ID, image reference).
#[derive(Debug, Default)]
pub(crate) struct PullBoard {
    state: Mutex<Board>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Board {
    pulls: BTreeMap<(String, String), ImagePull>,
    /// Bumped on every change, so the publisher knows whether it has sent the latest.
    version: u64,
}

#[derive(Debug)]
struct ImagePull {
    /// Each blob reported so far, by digest.
    blobs: HashMap<String, Blob>,
    updated: SystemTime,
}

#[derive(Debug, Clone, Copy)]
struct Blob {
    layer: bool,
    done: u64,
    total: u64,
}

/// A pull on the board: its entry goes when this is dropped (the pull ended, failed, or its
/// driver was stopped).
#[derive(Debug)]
pub(crate) struct Tracked {
    board: Arc<PullBoard>,
    key: (String, String),
}

impl Tracked {
    /// Folds one report of the runtime's pull into the entry.
    pub(crate) fn record(&self, report: &PullProgress) {
        self.board.update(|board| {
            let Some(pull) = board.pulls.get_mut(&self.key) else {
                return false;
            };
            let blob = pull.blobs.entry(report.digest.clone()).or_insert(Blob {
                layer: report.layer,
                done: 0,
                total: report.total,
            });
            // Reports of one blob only move forward (a resumed download reports from its
            // offset; a joined download may report late).
            blob.done = blob.done.max(report.done.min(report.total));
            blob.total = report.total;
            pull.updated = SystemTime::now();
            true
        });
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.board
            .update(|board| board.pulls.remove(&self.key).is_some());
    }
}

impl PullBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change`; when it changed anything, the publisher is woken.
    fn update(&self, change: impl FnOnce(&mut Board) -> bool) {
        let changed = {
            let mut board = self.lock();
            let changed = change(&mut board);
            if changed {
                board.version += 1;
            }
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// Puts the pull of `image` by `task_id` on the board until the returned guard is dropped.
    pub(crate) fn track(self: &Arc<Self>, task_id: &str, image: &str) -> Tracked {
        let key = (task_id.to_owned(), image.to_owned());
        self.update(|board| {
            board.pulls.insert(
                key.clone(),
                ImagePull {
                    blobs: HashMap::new(),
                    updated: SystemTime::now(),
                },
            );
            true
        });
        Tracked {
            board: Arc::clone(self),
            key,
        }
    }

    /// The board's version and every pull on it, in task and image order.
    pub(crate) fn snapshot(&self) -> (u64, Vec<ImagePullProgress>) {
        let board = self.lock();
        let pulls = board
            .pulls
            .iter()
            .map(|((task_id, image), pull)| {
                let mut p = ImagePullProgress {
                    task_id: task_id.clone(),
                    image: image.clone(),
                    updated_at: Some(pull.updated.into()),
                    ..ImagePullProgress::default()
                };
                for blob in pull.blobs.values() {
                    p.bytes_downloaded = p.bytes_downloaded.saturating_add(blob.done);
                    p.bytes_total = p.bytes_total.saturating_add(blob.total);
                    if blob.layer {
                        p.layers_total += 1;
                        if blob.done >= blob.total {
                            p.layers_downloaded += 1;
                        }
                    }
                }
                p
            })
            .collect();
        (board.version, pulls)
    }
}

/// Sends the board into `batches` whenever it changed, at most once every `every`, until
/// `cancel`. A batch carries every pull running at its time (none once the last ended), and
/// no host sample: the scheduler takes it as the instance's pulls and nothing else.
pub(crate) async fn publish(
    board: Arc<PullBoard>,
    batches: Arc<BatchBuffer>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut sent = 0u64;
    let mut last_sent: Option<Instant> = None;
    loop {
        let changed = board.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (version, pulls) = board.snapshot();
        if version == sent {
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = changed => continue,
            }
        }
        if let Some(next) = last_sent.map(|at| at + every)
            && Instant::now() < next
        {
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = tokio::time::sleep_until(next) => continue,
            }
        }
        batches.push_progress(MetricsBatch {
            collected_at: Some(SystemTime::now().into()),
            pulls,
            ..MetricsBatch::default()
        });
        sent = version;
        last_sent = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(digest: &str, layer: bool, done: u64, total: u64) -> PullProgress {
        PullProgress {
            reference: "r/app:1".into(),
            digest: digest.into(),
            layer,
            done,
            total,
            cached: false,
        }
    }

    #[test]
    fn reports_fold_into_bytes_and_layers() {
        let board = Arc::new(PullBoard::default());
        let pull = board.track("task-1", "r/app:1");
        pull.record(&report("sha256:c", false, 100, 100));
        pull.record(&report("sha256:a", true, 0, 1000));
        pull.record(&report("sha256:b", true, 0, 3000));
        pull.record(&report("sha256:a", true, 1000, 1000));
        pull.record(&report("sha256:b", true, 2000, 3000));
        // A late report of less never moves a blob back.
        pull.record(&report("sha256:b", true, 1000, 3000));
        let (_, pulls) = board.snapshot();
        assert_eq!(pulls.len(), 1);
        let p = &pulls[0];
        assert_eq!(
            (p.task_id.as_str(), p.image.as_str()),
            ("task-1", "r/app:1")
        );
        assert_eq!((p.bytes_downloaded, p.bytes_total), (3100, 4100));
        assert_eq!((p.layers_downloaded, p.layers_total), (1, 2));
        drop(pull);
        assert!(
            board.snapshot().1.is_empty(),
            "an ended pull leaves the board"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batches_go_at_most_once_a_second_and_carry_the_latest() {
        let board = Arc::new(PullBoard::default());
        let batches = Arc::new(BatchBuffer::new(100));
        let cancel = CancellationToken::new();
        let publisher = tokio::spawn(publish(
            Arc::clone(&board),
            Arc::clone(&batches),
            PUBLISH_EVERY,
            cancel.clone(),
        ));
        let pull = board.track("task-1", "r/app:1");
        pull.record(&report("sha256:a", true, 0, 10_000));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let first = tokio::time::timeout(Duration::from_millis(10), batches.pop())
            .await
            .expect("the first change goes at once");
        assert!(first.host.is_none(), "a progress batch carries no sample");
        assert_eq!(first.pulls.len(), 1);

        // A report every 10 ms for 3.5 s: no more than one batch a second.
        let started = Instant::now();
        let mut sent_at = Vec::new();
        for i in 1..=350u64 {
            pull.record(&report("sha256:a", true, i * 20, 10_000));
            tokio::time::sleep(Duration::from_millis(10)).await;
            while batches.len() > 0 {
                let b = batches.pop().await;
                sent_at.push((Instant::now() - started, b.pulls[0].bytes_downloaded));
            }
        }
        assert!(
            (3..=4).contains(&sent_at.len()),
            "one batch a second, not {sent_at:?}"
        );
        for pair in sent_at.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= PUBLISH_EVERY,
                "two batches less than a second apart: {sent_at:?}"
            );
        }
        // Each batch holds the latest reading of its time, not the first of the second.
        let (at, bytes) = sent_at[0];
        assert!(bytes >= at.as_millis() as u64 / 10 * 20 - 40, "{sent_at:?}");

        // Nothing new: nothing sent.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let pending = batches.len();
        assert!(pending <= 1, "one last batch at most: {pending}");
        while batches.len() > 0 {
            batches.pop().await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(batches.len(), 0, "an unchanged board sends nothing");

        // The pull's end is sent too: a batch with no pulls.
        drop(pull);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let last = batches.pop().await;
        assert!(last.pulls.is_empty());
        cancel.cancel();
        publisher.await.unwrap();
    }
}

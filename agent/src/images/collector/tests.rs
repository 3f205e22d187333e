//! The collector against a fake host: what goes, what a task takes during a pass, failures,
//! disk pressure re-measured between removals, and the counters.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use super::*;
use crate::store::Store;

const HOUR: Duration = Duration::from_secs(3600);

/// Images in memory; a removal can be held at a gate and can fail.
#[derive(Default)]
struct FakeHost {
    images: Mutex<BTreeMap<String, ImageSummary>>,
    disk: Mutex<Option<Disk>>,
    removed: Mutex<Vec<String>>,
    fail: Mutex<Vec<String>>,
    /// When set, each removal waits for a permit.
    gate: Option<Arc<Semaphore>>,
    /// Signalled when a removal reaches the gate.
    at_gate: tokio::sync::Notify,
}

impl FakeHost {
    fn add(&self, name: &str, size: u64, hours_ago: u64) {
        self.images.lock().unwrap().insert(
            name.to_owned(),
            ImageSummary {
                name: name.to_owned(),
                target_digest: format!("sha256:{name}"),
                size,
                updated_at: Some(SystemTime::now() - HOUR * hours_ago as u32),
            },
        );
    }
}

#[async_trait]
impl ImageHost for Arc<FakeHost> {
    async fn list(&self) -> Result<Vec<ImageSummary>, berth_runtime::Error> {
        Ok(self.images.lock().unwrap().values().cloned().collect())
    }
    async fn remove(&self, name: &str) -> Result<(), berth_runtime::Error> {
        if let Some(gate) = &self.gate {
            self.at_gate.notify_one();
            gate.acquire().await.unwrap().forget();
        }
        if self.fail.lock().unwrap().iter().any(|f| f == name) {
            return Err(berth_runtime::Error::Io {
                what: "remove image",
                path: name.into(),
                error: std::io::Error::other("refused"),
            });
        }
        let size = self
            .images
            .lock()
            .unwrap()
            .remove(name)
            .map_or(0, |i| i.size);
        if let Some(d) = self.disk.lock().unwrap().as_mut() {
            d.used -= size;
        }
        self.removed.lock().unwrap().push(name.to_owned());
        Ok(())
    }
    fn disk(&self) -> Option<Disk> {
        *self.disk.lock().unwrap()
    }
}

fn policy() -> Policy {
    Policy {
        minimum_age: HOUR,
        keep_newest: 1,
        max_removals: 10,
        high_percent: 85,
        low_percent: 80,
    }
}

fn collector(host: Arc<FakeHost>) -> (tempfile::TempDir, Collector<Arc<FakeHost>>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let images = Arc::new(ImageUse::load(store));
    (dir, Collector::new(host, images, policy()))
}

#[tokio::test]
async fn the_right_images_go_and_the_rest_stay() {
    let host = Arc::new(FakeHost::default());
    host.add("r/app:1", 10, 30);
    host.add("r/app:2", 10, 20);
    host.add("r/app:3", 10, 10);
    host.add("r/new:1", 10, 0);
    host.add("r/used:1", 10, 50);
    let (_dir, c) = collector(Arc::clone(&host));
    c.images.hold("task-1", ["r/used:1".to_owned()]);
    let removals = AGENT
        .image_removals
        .get_or_create(&RemovalLabels { reason: "unused" })
        .get();
    let done = c.collect().await.unwrap();
    assert_eq!(*host.removed.lock().unwrap(), ["r/app:1", "r/app:2"]);
    assert_eq!(done.removed.len(), 2);
    assert!(
        done.removed[0].2.starts_with("unused for 1day 6h"),
        "{done:?}"
    );
    assert!(
        AGENT
            .image_removals
            .get_or_create(&RemovalLabels { reason: "unused" })
            .get()
            >= removals + 2
    );
    let left: Vec<String> = host.images.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, ["r/app:3", "r/new:1", "r/used:1"]);
}

#[tokio::test]
async fn an_image_assigned_during_a_collection_is_kept() {
    let gate = Arc::new(Semaphore::new(0));
    let host = Arc::new(FakeHost {
        gate: Some(Arc::clone(&gate)),
        ..FakeHost::default()
    });
    host.add("r/a:1", 1, 30);
    host.add("r/b:1", 1, 29);
    let (_dir, c) = collector(Arc::clone(&host));
    let mut c = c;
    c.policy.keep_newest = 0;
    let c = Arc::new(c);
    let pass = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.collect().await })
    };
    // The pass decided on both and is removing the first; a task is assigned the second.
    host.at_gate.notified().await;
    c.images.hold("task-9", ["r/b:1".to_owned()]);
    gate.add_permits(10);
    let done = pass.await.unwrap().unwrap();
    assert_eq!(*host.removed.lock().unwrap(), ["r/a:1"]);
    assert_eq!(
        done.kept,
        [("r/b:1".to_owned(), "a task needs it".to_owned())]
    );
    assert!(host.images.lock().unwrap().contains_key("r/b:1"));
}

#[tokio::test]
async fn disk_pressure_stops_once_under_the_low_mark() {
    let host = Arc::new(FakeHost::default());
    // 95 of 100 used: under 80 takes two of the 10-byte images, oldest first.
    *host.disk.lock().unwrap() = Some(Disk {
        used: 95,
        total: 100,
    });
    host.add("r/a:1", 10, 5);
    host.add("r/b:1", 10, 4);
    host.add("r/c:1", 10, 3);
    host.add("r/d:1", 10, 2);
    let (_dir, c) = collector(Arc::clone(&host));
    let done = c.collect().await.unwrap();
    assert_eq!(*host.removed.lock().unwrap(), ["r/a:1", "r/b:1"]);
    assert!(done.removed[0].2.contains("95% full"), "{done:?}");
    assert_eq!(host.disk().unwrap().used, 75);
}

#[tokio::test]
async fn a_failed_removal_is_reported_and_the_pass_goes_on() {
    let host = Arc::new(FakeHost::default());
    host.add("r/a:1", 1, 30);
    host.add("r/b:1", 1, 29);
    host.add("r/c:1", 1, 28);
    host.fail.lock().unwrap().push("r/a:1".into());
    let (_dir, c) = collector(Arc::clone(&host));
    let mut c = c;
    c.policy.keep_newest = 0;
    let done = c.collect().await.unwrap();
    assert_eq!(*host.removed.lock().unwrap(), ["r/b:1", "r/c:1"]);
    assert_eq!(done.kept.len(), 1);
    assert!(done.kept[0].1.contains("refused"));
    // Not marked any more: a later pass may try again.
    assert!(c.images.begin_removal("r/a:1").is_some());
}

#[tokio::test(start_paused = true)]
async fn the_loop_collects_on_its_interval_and_stops_when_cancelled() {
    let host = Arc::new(FakeHost::default());
    host.add("r/a:1", 1, 30);
    host.add("r/a:2", 1, 20);
    let (_dir, c) = collector(Arc::clone(&host));
    let cancel = CancellationToken::new();
    let run = tokio::spawn(Arc::new(c).run(Some(Duration::from_secs(600)), cancel.clone()));
    tokio::time::sleep(Duration::from_secs(599)).await;
    assert!(
        host.removed.lock().unwrap().is_empty(),
        "not before the interval"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*host.removed.lock().unwrap(), ["r/a:1"]);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .expect("stops when cancelled")
        .unwrap();
}

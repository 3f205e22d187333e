//! The degraded mode's watch on paused time, over a fake data dir: it degrades when space runs
//! short, probes with a growing delay while degraded (never once per tick), and recovers only
//! when space, the probe write and the engine's flush all succeed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

#[derive(Debug, Default)]
struct FakeDir {
    free: AtomicU64,
    probe_fails: AtomicBool,
    probes: AtomicUsize,
}

impl DataDir for FakeDir {
    fn free_bytes(&self, _dir: &Path) -> std::io::Result<u64> {
        Ok(self.free.load(Ordering::SeqCst))
    }

    fn write_probe(&self, _dir: &Path) -> std::io::Result<()> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        if self.probe_fails.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(ENOSPC))
        } else {
            Ok(())
        }
    }
}

/// Lets the watch (and its blocking reads) run for `d` of paused time.
async fn pass(d: Duration) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        let now = left.min(step);
        tokio::time::sleep(now).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        left -= now;
    }
}

#[tokio::test(start_paused = true)]
async fn short_space_degrades_and_recovery_waits_for_space_probe_and_flush() {
    let disk = Arc::new(Disk::new(Path::new("/data")));
    let dir = Arc::new(FakeDir {
        free: AtomicU64::new(1 << 30),
        ..Default::default()
    });
    let flush_fails = Arc::new(AtomicBool::new(true));
    let flushes = Arc::new(AtomicUsize::new(0));
    let cancel = CancellationToken::new();
    let watch = tokio::spawn(watch(
        Arc::clone(&disk),
        Arc::clone(&dir),
        {
            let (fails, flushes) = (Arc::clone(&flush_fails), Arc::clone(&flushes));
            move || {
                let fails = fails.load(Ordering::SeqCst);
                flushes.fetch_add(1, Ordering::SeqCst);
                async move {
                    if fails {
                        Err(StoreError::Db {
                            op: "commit",
                            reason: "No space left on device (os error 28)".into(),
                            errno: Some(ENOSPC),
                        })
                    } else {
                        Ok(())
                    }
                }
            }
        },
        Duration::from_secs(5),
        cancel.clone(),
    ));
    pass(Duration::from_secs(12)).await;
    assert!(!disk.is_degraded(), "plenty of space");
    assert_eq!(
        dir.probes.load(Ordering::SeqCst),
        0,
        "no probe write while healthy"
    );

    // The disk fills: the next check degrades, naming the data dir and ENOSPC.
    dir.free.store(RESERVE_BYTES - 1, Ordering::SeqCst);
    let mut changes = disk.subscribe();
    pass(Duration::from_secs(6)).await;
    let degraded = disk.degraded().expect("degraded on short space");
    assert_eq!(degraded.path, Path::new("/data"));
    assert_eq!(degraded.errno, Some(ENOSPC));
    assert!(
        degraded.reason().contains("/data (errno 28)"),
        "{}",
        degraded.reason()
    );
    assert!(
        changes.has_changed().unwrap(),
        "the session is told at once"
    );
    changes.borrow_and_update();

    // Still full: no probe write, no flush; later, space but the probe write fails.
    pass(Duration::from_secs(20)).await;
    assert_eq!(dir.probes.load(Ordering::SeqCst), 0);
    assert_eq!(flushes.load(Ordering::SeqCst), 0);
    dir.free.store(1 << 30, Ordering::SeqCst);
    dir.probe_fails.store(true, Ordering::SeqCst);
    pass(Duration::from_secs(60)).await;
    let probes = dir.probes.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&probes),
        "probes back off to 30 s: {probes} in 60 s"
    );
    assert!(disk.is_degraded());

    // The probe write succeeds but the store still refuses the engine's writes.
    dir.probe_fails.store(false, Ordering::SeqCst);
    pass(Duration::from_secs(31)).await;
    assert!(flushes.load(Ordering::SeqCst) >= 1);
    assert!(
        disk.is_degraded(),
        "a failing flush keeps the agent degraded"
    );

    // Everything takes writes again: recovered within one delay, and said so.
    flush_fails.store(false, Ordering::SeqCst);
    pass(Duration::from_secs(31)).await;
    assert!(!disk.is_degraded());
    assert!(changes.has_changed().unwrap());
    cancel.cancel();
    watch.await.unwrap();
}

#[test]
fn a_store_failure_degrades_once_with_its_errno_and_path() {
    let disk = Disk::new(Path::new("/data"));
    let error = StoreError::Db {
        op: "commit",
        reason: "No space left on device (os error 28)".into(),
        errno: Some(ENOSPC),
    };
    disk.store_failed(Path::new("/data/agent.redb"), &error);
    let first = disk.degraded().unwrap();
    // A later failure changes nothing (no log per write).
    disk.fail(Path::new("/elsewhere"), Some(5), "EIO");
    assert_eq!(disk.degraded().unwrap(), first);
    let proto = first.to_proto();
    assert_eq!(proto.path, "/data/agent.redb");
    assert_eq!(proto.errno, 28);
    assert!(proto.error.contains("No space left on device"));
    assert!(proto.since.is_some());
    disk.recovered();
    assert!(disk.degraded().is_none());
}

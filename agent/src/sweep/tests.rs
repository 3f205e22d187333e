//! The sweep's rules on paused time, behind a recording host and a scripted engine.

use std::sync::Mutex;

use super::*;

/// A host that holds a set of leftovers, records removals and can fail them.
#[derive(Debug, Default)]
struct FakeHost {
    leftovers: Mutex<BTreeSet<Leftover>>,
    removed: Mutex<Vec<Leftover>>,
    fail_removal_of: Mutex<Option<Kind>>,
    fail_listing: Mutex<bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure")]
struct Scripted;

#[async_trait]
impl Host for Arc<FakeHost> {
    async fn leftovers(&self) -> Result<Vec<Leftover>, SweepError> {
        if *self.fail_listing.lock().unwrap() {
            return Err(SweepError::List(Box::new(Scripted)));
        }
        Ok(self.leftovers.lock().unwrap().iter().cloned().collect())
    }
    async fn remove(&self, leftover: &Leftover) -> Result<(), SweepError> {
        if *self.fail_removal_of.lock().unwrap() == Some(leftover.kind) {
            return Err(SweepError::remove(leftover, Scripted));
        }
        self.leftovers.lock().unwrap().remove(leftover);
        self.removed.lock().unwrap().push(leftover.clone());
        Ok(())
    }
}

/// The engine's answer: the tasks it knows, or None (stopped).
#[derive(Debug, Default)]
struct FakeEngine(Mutex<Option<BTreeSet<String>>>);

#[async_trait]
impl Known for Arc<FakeEngine> {
    async fn task_ids(&self) -> Option<BTreeSet<String>> {
        self.0.lock().unwrap().clone()
    }
}

use std::sync::Arc;

fn leftover(kind: Kind, task: &str) -> Leftover {
    let name = match kind {
        Kind::Container => format!("{task}-app"),
        Kind::Netns => format!("{task}.0"),
        _ => task.to_owned(),
    };
    Leftover {
        kind,
        name,
        task_id: task.to_owned(),
    }
}

const ALL_KINDS: [Kind; 6] = [
    Kind::Logs,
    Kind::Cgroup,
    Kind::Container,
    Kind::Volumes,
    Kind::Shared,
    Kind::Netns,
];

fn world(tasks_on_host: &[&str], known: &[&str]) -> (Arc<FakeHost>, Arc<FakeEngine>) {
    let host = Arc::new(FakeHost::default());
    for task in tasks_on_host {
        for kind in ALL_KINDS {
            host.leftovers.lock().unwrap().insert(leftover(kind, task));
        }
    }
    let engine = Arc::new(FakeEngine(Mutex::new(Some(
        known.iter().map(|t| (*t).to_owned()).collect(),
    ))));
    (host, engine)
}

#[tokio::test(start_paused = true)]
async fn orphans_are_removed_after_the_grace_and_known_tasks_never() {
    let (host, engine) = world(&["lost", "kept"], &["kept"]);
    let grace = Duration::from_secs(600);
    let mut sweeper = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(grace));
    let first = sweeper.pass().await.unwrap().unwrap();
    assert_eq!(
        first.orphans, 6,
        "everything of the lost task, nothing of the kept one"
    );
    assert!(first.removed.is_empty(), "not before the grace");
    tokio::time::advance(grace - Duration::from_secs(1)).await;
    assert!(sweeper.pass().await.unwrap().unwrap().removed.is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    let due = sweeper.pass().await.unwrap().unwrap();
    let kinds: Vec<Kind> = due.removed.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Container,
            Kind::Netns,
            Kind::Shared,
            Kind::Volumes,
            Kind::Cgroup,
            Kind::Logs
        ],
        "containers first, what their processes hold after"
    );
    assert!(due.removed.iter().all(|l| l.task_id == "lost"));
    let left = host.leftovers.lock().unwrap().clone();
    assert_eq!(left.len(), 6);
    assert!(left.iter().all(|l| l.task_id == "kept"));
    assert_eq!(sweeper.pass().await.unwrap().unwrap().orphans, 0);
}

#[tokio::test(start_paused = true)]
async fn a_zero_grace_removes_at_once_and_off_only_reports() {
    let (host, engine) = world(&["lost"], &[]);
    let mut at_once = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(Duration::ZERO));
    assert_eq!(at_once.pass().await.unwrap().unwrap().removed.len(), 6);
    assert!(host.leftovers.lock().unwrap().is_empty());

    let (host, engine) = world(&["lost"], &[]);
    let mut report_only = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), None);
    for _ in 0..3 {
        let pass = report_only.pass().await.unwrap().unwrap();
        assert_eq!((pass.orphans, pass.removed.len()), (6, 0));
        tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    }
    assert!(host.removed.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_known_again_restarts_its_grace() {
    let (host, engine) = world(&["t"], &[]);
    let grace = Duration::from_secs(60);
    let mut sweeper = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(grace));
    sweeper.pass().await.unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    // The scheduler's resend made the task known again: not an orphan any more.
    *engine.0.lock().unwrap() = Some(BTreeSet::from(["t".to_owned()]));
    assert_eq!(sweeper.pass().await.unwrap().unwrap().orphans, 0);
    *engine.0.lock().unwrap() = Some(BTreeSet::new());
    tokio::time::advance(Duration::from_secs(50)).await;
    let pass = sweeper.pass().await.unwrap().unwrap();
    assert!(
        pass.removed.is_empty(),
        "the grace counts from when it became an orphan again"
    );
    tokio::time::advance(grace - Duration::from_secs(1)).await;
    assert!(sweeper.pass().await.unwrap().unwrap().removed.is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(sweeper.pass().await.unwrap().unwrap().removed.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn an_engine_that_does_not_answer_removes_nothing() {
    let (host, engine) = world(&["t"], &[]);
    *engine.0.lock().unwrap() = None;
    let mut sweeper = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(Duration::ZERO));
    assert_eq!(sweeper.pass().await.unwrap(), None);
    assert!(host.removed.lock().unwrap().is_empty());
    *host.fail_listing.lock().unwrap() = true;
    *engine.0.lock().unwrap() = Some(BTreeSet::new());
    assert!(matches!(sweeper.pass().await, Err(SweepError::List(_))));
    assert!(host.removed.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_removal_is_counted_and_retried() {
    let (host, engine) = world(&["t"], &[]);
    *host.fail_removal_of.lock().unwrap() = Some(Kind::Cgroup);
    let mut sweeper = Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(Duration::ZERO));
    let pass = sweeper.pass().await.unwrap().unwrap();
    assert_eq!((pass.removed.len(), pass.failed), (5, 1));
    *host.fail_removal_of.lock().unwrap() = None;
    let retry = sweeper.pass().await.unwrap().unwrap();
    assert_eq!(retry.removed, [leftover(Kind::Cgroup, "t")]);
}

#[tokio::test(start_paused = true)]
async fn the_loop_sweeps_at_start_then_on_its_interval_until_cancelled() {
    let (host, engine) = world(&["t"], &[]);
    let grace = Duration::from_secs(10);
    let cancel = CancellationToken::new();
    let sweep = tokio::spawn(run(
        Sweeper::new(Arc::clone(&host), Arc::clone(&engine), Some(grace)),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(host.removed.lock().unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        host.removed.lock().unwrap().len(),
        6,
        "the pass at 10s removed them"
    );
    cancel.cancel();
    sweep.await.unwrap();
}

#[test]
fn the_interval_is_half_the_grace_within_bounds() {
    assert_eq!(
        interval(Some(Duration::from_secs(600))),
        Duration::from_secs(60)
    );
    assert_eq!(
        interval(Some(Duration::from_secs(10))),
        Duration::from_secs(5)
    );
    assert_eq!(
        interval(Some(Duration::from_millis(500))),
        Duration::from_secs(1)
    );
    assert_eq!(interval(Some(Duration::ZERO)), Duration::from_secs(60));
    assert_eq!(interval(None), Duration::from_secs(60));
}

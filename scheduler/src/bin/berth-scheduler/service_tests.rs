//! Tests for the scheduler's service-manager messages, on paused time: READY=1 and the serving
//! line first, watchdog pings and STATUS= while the store answers, none while it is wedged or
//! failing, STOPPING=1 at the end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use super::*;

/// Records every message as systemd would receive it ("READY=1\nSTATUS=…").
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Notifier for Recorder {
    fn notify(&self, states: &[NotifyState<'_>]) {
        let message: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        self.0
            .lock()
            .expect("recorder lock")
            .push(message.join("\n"));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }
}

fn pings(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

const ANSWERS: u8 = 0;
const WEDGED: u8 = 1;
const FAILS: u8 = 2;

/// One answer of a test store read.
type Answer = std::pin::Pin<Box<dyn Future<Output = Result<Census, Option<StoreError>>> + Send>>;

/// A store that answers, never answers, or fails, as `mode` says.
fn probe(mode: Arc<AtomicU8>) -> impl Fn() -> Answer {
    move || {
        let mode = mode.load(Ordering::SeqCst);
        Box::pin(async move {
            match mode {
                WEDGED => std::future::pending().await,
                FAILS => Err(None),
                _ => Ok(Census {
                    clusters: 2,
                    instances: 5,
                }),
            }
        })
    }
}

fn listen() -> SocketAddr {
    "127.0.0.1:7700".parse().expect("an address")
}

#[tokio::test(start_paused = true)]
async fn a_wedged_store_stops_the_watchdog_pings() {
    let recorder = Arc::new(Recorder::default());
    let mode = Arc::new(AtomicU8::new(ANSWERS));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise_with(
        recorder.clone(),
        Some(Duration::from_secs(10)),
        listen(),
        probe(mode.clone()),
        cancel.clone(),
    ));

    // READY=1 at once; pings every 5 s, the census line sent once.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let answering = recorder.take();
    assert_eq!(answering[0], "READY=1\nSTATUS=serving on 127.0.0.1:7700");
    assert_eq!(
        answering[1],
        "WATCHDOG=1\nSTATUS=serving on 127.0.0.1:7700; 2 clusters, 5 container instances"
    );
    assert_eq!(
        answering[2..],
        ["WATCHDOG=1", "WATCHDOG=1"],
        "{answering:?}"
    );

    mode.store(WEDGED, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let wedged = recorder.take();
    // At most the ping of a read already answered before the store wedged.
    assert!(pings(&wedged) <= 1, "pings while wedged: {wedged:?}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(recorder.take(), Vec::<String>::new());

    mode.store(FAILS, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(recorder.take(), Vec::<String>::new(), "pings while failing");

    mode.store(ANSWERS, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(pings(&recorder.take()) >= 1, "pings resume");

    cancel.cancel();
    task.await.expect("supervisor stops on cancel");
    assert_eq!(recorder.take(), ["STOPPING=1"]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_the_store_is_wedged_still_says_stopping() {
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise_with(
        recorder.clone(),
        Some(Duration::from_secs(600)),
        listen(),
        probe(Arc::new(AtomicU8::new(WEDGED))),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    task.await.expect("supervisor stops on cancel");
    assert_eq!(
        recorder.take(),
        ["READY=1\nSTATUS=serving on 127.0.0.1:7700", "STOPPING=1"]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_only_status_changes_are_sent() {
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise_with(
        recorder.clone(),
        None,
        listen(),
        probe(Arc::new(AtomicU8::new(ANSWERS))),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(
        recorder.take(),
        [
            "READY=1\nSTATUS=serving on 127.0.0.1:7700",
            "STATUS=serving on 127.0.0.1:7700; 2 clusters, 5 container instances"
        ]
    );
    cancel.cancel();
    task.await.expect("supervisor stops on cancel");
}

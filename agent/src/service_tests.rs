//! Tests for the service-manager messages: watchdog pings follow the main loop's answers, on
//! paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A main loop that answers until it is wedged.
struct Loop {
    wedged: AtomicBool,
    running: usize,
}

#[async_trait]
impl Probe for Loop {
    async fn status(&self) -> Option<String> {
        if self.wedged.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Some(status_line(
            Some(&("prod".to_owned(), "i-1".to_owned())),
            "prod",
            self.running,
        ))
    }
}

fn pings(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_wedged_main_loop_stops_the_watchdog_pings() {
    let recorder = Arc::new(Recorder::default());
    let main_loop = Arc::new(Loop {
        wedged: AtomicBool::new(false),
        running: 12,
    });
    let (tx, rx) = watch::channel(Phase::Starting("joining cluster prod".to_owned()));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise(
        recorder.clone(),
        Some(Duration::from_secs(10)),
        rx,
        cancel.clone(),
    ));

    // Starting: pinged every 5 s with the phase line, sent once.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let starting = recorder.take();
    assert_eq!(pings(&starting), 3, "{starting:?}");
    assert_eq!(starting[0], "WATCHDOG=1\nSTATUS=joining cluster prod");
    assert_eq!(starting[1], "WATCHDOG=1");

    tx.send_replace(Phase::Running(main_loop.clone()));
    tokio::time::sleep(Duration::from_secs(11)).await;
    let running = recorder.take();
    assert!(pings(&running) >= 2, "{running:?}");
    assert!(
        running
            .iter()
            .any(|m| m.contains("STATUS=registered as i-1 in prod; 12 tasks running")),
        "{running:?}"
    );

    main_loop.wedged.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let wedged = recorder.take();
    // At most the ping of a probe already answered before the loop wedged.
    assert!(pings(&wedged) <= 1, "pings while wedged: {wedged:?}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(recorder.take(), Vec::<String>::new());

    main_loop.wedged.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(pings(&recorder.take()) >= 1, "pings resume");

    cancel.cancel();
    task.await.expect("supervisor stops on cancel");
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_only_status_changes_are_sent() {
    let recorder = Arc::new(Recorder::default());
    let (tx, rx) = watch::channel(Phase::Starting("joining cluster prod".to_owned()));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise(recorder.clone(), None, rx, cancel.clone()));
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(recorder.take(), vec!["STATUS=joining cluster prod"]);
    tx.send_replace(Phase::Running(Arc::new(Loop {
        wedged: AtomicBool::new(false),
        running: 1,
    })));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        recorder.take(),
        vec!["STATUS=registered as i-1 in prod; 1 task running"]
    );
    cancel.cancel();
    task.await.expect("supervisor stops on cancel");
}

#[test]
fn status_lines_name_the_instance_and_cluster() {
    assert_eq!(
        status_line(None, "prod", 0),
        "not yet registered in prod; 0 tasks running"
    );
    assert_eq!(
        status_line(Some(&("prod".into(), "i-9".into())), "prod", 3),
        "registered as i-9 in prod; 3 tasks running"
    );
}

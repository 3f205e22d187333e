//! Log serving against real files in a temp dir and a fake engine.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_proto::v1::LogOutput;

use super::*;

struct FakeTargets {
    path: std::path::PathBuf,
    finished: AtomicBool,
}

#[async_trait]
impl LogTargets for FakeTargets {
    async fn log_target(&self, task_id: &str, container: &str) -> Option<LogTarget> {
        (task_id == "t" && container == "app").then(|| LogTarget {
            path: self.path.clone(),
            finished: self.finished.load(Ordering::SeqCst),
        })
    }
}

fn append(path: &std::path::Path, from: u32, to: u32, pad: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in from..to {
        let stream = if i % 2 == 0 { "stdout" } else { "stderr" };
        let text = format!("line {i} {}\n", "x".repeat(pad));
        let line = serde_json::json!({"log": text, "stream": stream, "time": "2026-11-27T10:00:00.000000000Z"});
        writeln!(f, "{line}").unwrap();
    }
}

fn setup() -> (tempfile::TempDir, Arc<FakeTargets>) {
    let dir = tempfile::tempdir().unwrap();
    let targets = Arc::new(FakeTargets {
        path: dir.path().join("app.log"),
        finished: AtomicBool::new(false),
    });
    (dir, targets)
}

fn request(id: u64, tail: Option<u64>, follow: bool, window: u32) -> LogRequest {
    LogRequest {
        request_id: id,
        task_id: "t".into(),
        container_name: "app".into(),
        tail,
        since: None,
        follow,
        window,
    }
}

/// The next message, within a generous deadline.
async fn next(rx: &mut mpsc::Receiver<AgentMessage>) -> Out {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a message in time")
        .expect("the queue is open")
        .message
        .expect("a message")
}

/// Reads chunks until the request's end; returns the lines' numbers and the end.
async fn collect(rx: &mut mpsc::Receiver<AgentMessage>) -> (Vec<u32>, LogEnd) {
    let mut numbers = Vec::new();
    loop {
        match next(rx).await {
            Out::LogChunk(c) => {
                for l in c.lines {
                    let n: u32 = l.text.split(' ').nth(1).unwrap().parse().unwrap();
                    let expected = if n.is_multiple_of(2) {
                        LogOutput::Stdout
                    } else {
                        LogOutput::Stderr
                    };
                    assert_eq!(l.output, expected as i32);
                    numbers.push(n);
                }
            }
            Out::LogEnd(end) => return (numbers, end),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn tail_is_sent_in_order_then_ends() {
    let (_dir, targets) = setup();
    append(&targets.path, 0, 100, 0);
    let (tx, mut rx) = mpsc::channel(16);
    let requests = LogRequests::new(Arc::clone(&targets), tx);
    requests.start(request(7, Some(10), false, 0));
    let (numbers, end) = collect(&mut rx).await;
    assert_eq!(numbers, (90..100).collect::<Vec<_>>());
    assert_eq!(
        (end.request_id, end.reason),
        (7, LogEndReason::Complete as i32)
    );
}

#[tokio::test]
async fn chunks_are_small_and_wait_for_credit() {
    let (_dir, targets) = setup();
    // About 400 KiB: many chunks.
    append(&targets.path, 0, 400, 1000);
    let (tx, mut rx) = mpsc::channel(64);
    let requests = LogRequests::new(Arc::clone(&targets), tx);
    requests.start(request(1, None, false, 2));
    let mut numbers = Vec::new();
    for _ in 0..2 {
        let Out::LogChunk(c) = next(&mut rx).await else {
            panic!("a chunk first")
        };
        let bytes: usize = c.lines.iter().map(|l| l.text.len()).sum();
        assert!(bytes <= CHUNK_BYTES, "{bytes} bytes in one chunk");
        numbers.extend(
            c.lines
                .iter()
                .map(|l| l.text.split(' ').nth(1).unwrap().parse::<u32>().unwrap()),
        );
    }
    // The window is used up: nothing more comes until the scheduler credits it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a chunk beyond the window");
    requests.credit(1, 1000);
    let (rest, end) = collect(&mut rx).await;
    numbers.extend(rest);
    assert_eq!(numbers, (0..400).collect::<Vec<_>>());
    assert_eq!(end.reason, LogEndReason::Complete as i32);
}

#[tokio::test]
async fn a_follower_sees_new_lines_and_ends_when_the_container_stops() {
    let (_dir, targets) = setup();
    append(&targets.path, 0, 3, 0);
    let (tx, mut rx) = mpsc::channel(16);
    let requests = LogRequests::new(Arc::clone(&targets), tx);
    requests.start(request(3, None, true, 64));
    let mut numbers = Vec::new();
    while numbers.len() < 3 {
        let Out::LogChunk(c) = next(&mut rx).await else {
            panic!("chunks first")
        };
        numbers.extend(
            c.lines
                .iter()
                .map(|l| l.text.split(' ').nth(1).unwrap().parse::<u32>().unwrap()),
        );
    }
    append(&targets.path, 3, 6, 0);
    // The last lines land just before the container is seen stopped: none is lost.
    append(&targets.path, 6, 8, 0);
    targets.finished.store(true, Ordering::SeqCst);
    let (rest, end) = collect(&mut rx).await;
    numbers.extend(rest);
    assert_eq!(numbers, (0..8).collect::<Vec<_>>());
    assert_eq!(end.reason, LogEndReason::Complete as i32);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(requests.is_empty());
}

#[tokio::test]
async fn unknown_containers_and_missing_logs_are_not_found() {
    let (_dir, targets) = setup();
    let (tx, mut rx) = mpsc::channel(16);
    let requests = LogRequests::new(Arc::clone(&targets), tx);
    let mut other = request(1, None, false, 0);
    other.container_name = "db".into();
    requests.start(other);
    let Out::LogEnd(end) = next(&mut rx).await else {
        panic!("an end")
    };
    assert_eq!(end.reason, LogEndReason::NotFound as i32);
    assert!(end.message.contains("container db"), "{}", end.message);
    // Known container, but no log file yet.
    requests.start(request(2, None, false, 0));
    let Out::LogEnd(end) = next(&mut rx).await else {
        panic!("an end")
    };
    assert_eq!(end.reason, LogEndReason::NotFound as i32);
    assert!(end.message.contains("no logs yet"), "{}", end.message);
}

#[tokio::test]
async fn a_cancelled_follower_stops_without_an_end() {
    let (_dir, targets) = setup();
    append(&targets.path, 0, 1, 0);
    let (tx, mut rx) = mpsc::channel(16);
    let requests = LogRequests::new(Arc::clone(&targets), tx);
    requests.start(request(5, None, true, 8));
    assert!(matches!(next(&mut rx).await, Out::LogChunk(_)));
    requests.cancel(5);
    assert!(requests.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(&targets.path, 1, 2, 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.try_recv().is_err(), "nothing after a cancel");
}

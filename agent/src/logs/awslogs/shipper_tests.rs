//! The shipper against a scripted CloudWatch Logs, on tokio's paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use berth_runtime::{ForwardMode, LogStream, log_forward};

use super::*;
use crate::logs::awslogs::api::Accepted;

/// Each stream's events, by group and stream name.
type Streams = BTreeMap<(String, String), Vec<(i64, String)>>;

/// CloudWatch Logs in memory: groups, streams and their events; `down` fails every call as an
/// outage does.
#[derive(Debug, Default)]
struct FakeLogs {
    groups: Mutex<BTreeSet<String>>,
    streams: Mutex<Streams>,
    down: AtomicBool,
    puts: AtomicU32,
}

impl FakeLogs {
    fn events(&self, group: &str, stream: &str) -> Vec<String> {
        let streams = self.streams.lock().unwrap();
        streams
            .get(&(group.to_owned(), stream.to_owned()))
            .map(|e| e.iter().map(|(_, m)| m.clone()).collect())
            .unwrap_or_default()
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.down.load(Ordering::SeqCst) {
            Err(ApiError::Transient("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl LogsApi for FakeLogs {
    async fn create_log_group(&self, group: &str) -> Result<(), ApiError> {
        self.check()?;
        if self.groups.lock().unwrap().insert(group.to_owned()) {
            Ok(())
        } else {
            Err(ApiError::AlreadyExists)
        }
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ApiError> {
        self.check()?;
        if !self.groups.lock().unwrap().contains(group) {
            return Err(ApiError::NotFound(format!("group {group}")));
        }
        let mut streams = self.streams.lock().unwrap();
        let key = (group.to_owned(), stream.to_owned());
        if streams.contains_key(&key) {
            return Err(ApiError::AlreadyExists);
        }
        streams.insert(key, Vec::new());
        Ok(())
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[Event],
        _token: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        self.check()?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        let mut streams = self.streams.lock().unwrap();
        let Some(stored) = streams.get_mut(&(group.to_owned(), stream.to_owned())) else {
            return Err(ApiError::NotFound(format!("stream {stream}")));
        };
        assert!(
            events
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms),
            "a batch must be in timestamp order"
        );
        stored.extend(events.iter().map(|e| (e.timestamp_ms, e.message.clone())));
        Ok(Accepted::default())
    }
}

fn target(create_group: bool) -> Target {
    Target {
        group: "/ecs/app".into(),
        stream: "ecs/web/t1".into(),
        create_group,
    }
}

fn notes() -> (Notify, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        Arc::new(move |n: String| sink.lock().unwrap().push(n)),
        seen,
    )
}

/// Waits (on the paused clock) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(start_paused = true)]
async fn lines_arrive_in_order_in_a_created_group_and_stream() {
    let api = Arc::new(FakeLogs::default());
    let (forward, lines) = log_forward(ForwardMode::Blocking, 1 << 20);
    let (notify, _) = notes();
    let shipper = Shipper::new(api.clone(), target(true), Joiner::new(None), notify);
    let run = tokio::spawn(shipper.run(lines, CancellationToken::new()));
    for i in 0..100 {
        forward
            .send(
                LogStream::Stdout,
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .await;
    }
    until(|| api.events("/ecs/app", "ecs/web/t1").len() == 100).await;
    let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(api.events("/ecs/app", "ecs/web/t1"), want);
    // Sent together, on the flush period: one call.
    assert_eq!(api.puts.load(Ordering::SeqCst), 1);
    forward
        .send(LogStream::Stderr, b"last\n", SystemTime::now())
        .await;
    drop(forward);
    run.await.unwrap();
    assert_eq!(api.events("/ecs/app", "ecs/web/t1").last().unwrap(), "last");
}

#[tokio::test(start_paused = true)]
async fn a_missing_group_is_waited_for_without_create_group() {
    let api = Arc::new(FakeLogs::default());
    let (forward, lines) = log_forward(ForwardMode::Blocking, 1 << 20);
    let (notify, _) = notes();
    let shipper = Shipper::new(api.clone(), target(false), Joiner::new(None), notify);
    let run = tokio::spawn(shipper.run(lines, CancellationToken::new()));
    forward
        .send(LogStream::Stdout, b"hello\n", SystemTime::now())
        .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(api.streams.lock().unwrap().is_empty());
    api.groups.lock().unwrap().insert("/ecs/app".into());
    until(|| api.events("/ecs/app", "ecs/web/t1") == ["hello"]).await;
    drop(forward);
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_outage_stalls_blocking_mode_then_everything_arrives() {
    let api = Arc::new(FakeLogs::default());
    api.down.store(true, Ordering::SeqCst);
    let (forward, lines) = log_forward(ForwardMode::Blocking, 64);
    let (notify, _) = notes();
    let shipper = Shipper::new(api.clone(), target(true), Joiner::new(None), notify);
    let run = tokio::spawn(shipper.run(lines, CancellationToken::new()));
    let writer = {
        let forward = forward.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                forward
                    .send(
                        LogStream::Stdout,
                        format!("{i:04}\n").as_bytes(),
                        SystemTime::now(),
                    )
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!writer.is_finished(), "blocking mode must stall the writer");
    assert_eq!(forward.dropped(), 0);
    api.down.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    until(|| api.events("/ecs/app", "ecs/web/t1").len() == 50).await;
    let want: Vec<String> = (0..50).map(|i| format!("{i:04}")).collect();
    assert_eq!(api.events("/ecs/app", "ecs/web/t1"), want);
    drop(forward);
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_outage_drops_and_reports_in_non_blocking_mode() {
    let api = Arc::new(FakeLogs::default());
    api.down.store(true, Ordering::SeqCst);
    let (forward, lines) = log_forward(ForwardMode::NonBlocking, 64);
    let (notify, seen) = notes();
    let shipper = Shipper::new(api.clone(), target(true), Joiner::new(None), notify);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(shipper.run(lines, cancel.clone()));
    for i in 0..50 {
        forward
            .send(
                LogStream::Stdout,
                format!("{i:04}\n").as_bytes(),
                SystemTime::now(),
            )
            .await;
    }
    let dropped = forward.dropped();
    assert!(dropped >= 30, "{dropped}");
    // Told while the endpoint is still down.
    until(|| !seen.lock().unwrap().is_empty()).await;
    assert!(
        seen.lock().unwrap()[0].contains("log lines dropped so far"),
        "{:?}",
        seen.lock().unwrap()
    );
    api.down.store(false, Ordering::SeqCst);
    until(|| !api.events("/ecs/app", "ecs/web/t1").is_empty()).await;
    assert_eq!(api.events("/ecs/app", "ecs/web/t1")[0], "0000");
    cancel.cancel();
    run.await.unwrap();
}

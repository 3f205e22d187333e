//! The drop-oldest buffer, the batch a snapshot makes, and the stream against the real
//! scheduler in process.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::MetricsBatch;
use berth_runtime::{CgroupStats, ContainerSample, CpuStats, MemoryStats, TaskSample};
use berth_scheduler::server::{ServerConfig, TestHooks, run_with_hooks};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::collect::{Snapshot, TaskMetrics, batch};
use crate::metrics::host::HostSample;

fn numbered(n: u64) -> MetricsBatch {
    MetricsBatch {
        container_instance_id: n.to_string(),
        ..MetricsBatch::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_buffer_drops_the_oldest_and_counts_it() {
    let buffer = BatchBuffer::new(3);
    let dropped = AGENT.metric_batches_dropped.get();
    for n in 1..=5 {
        buffer.push(numbered(n));
    }
    assert_eq!(buffer.len(), 3);
    assert!(AGENT.metric_batches_dropped.get() >= dropped + 2);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(buffer.pop().await.container_instance_id);
    }
    assert_eq!(
        got,
        ["3", "4", "5"],
        "the newest batches are kept, in order"
    );

    // An empty buffer makes pop wait until the next push.
    let buffer = Arc::new(BatchBuffer::new(3));
    let waiting = tokio::spawn({
        let buffer = Arc::clone(&buffer);
        async move { buffer.pop().await }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!waiting.is_finished());
    buffer.push(numbered(7));
    let batch = waiting.await.expect("pop");
    assert_eq!(batch.container_instance_id, "7");
}

#[test]
fn a_snapshot_becomes_one_batch() {
    let stats = |cpu, memory| CgroupStats {
        cpu: Some(CpuStats {
            usage_ns: cpu,
            ..CpuStats::default()
        }),
        memory: Some(MemoryStats {
            usage_bytes: memory,
            limit_bytes: Some(1 << 30),
            ..MemoryStats::default()
        }),
        ..CgroupStats::default()
    };
    let snapshot = Snapshot {
        collected_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        host: HostSample {
            memory_total_bytes: 8 << 30,
            memory_used_bytes: 2 << 30,
            ..HostSample::default()
        },
        tasks: vec![TaskMetrics {
            task_id: "t1".to_owned(),
            family: "web".to_owned(),
            revision: 1,
            sample: TaskSample {
                task: Some(stats(300, 30)),
                containers: vec![
                    ContainerSample {
                        name: "a".to_owned(),
                        stats: stats(100, 10),
                    },
                    ContainerSample {
                        name: "b".to_owned(),
                        stats: stats(200, 20),
                    },
                ],
                networks: Vec::new(),
            },
        }],
        previous: None,
    };
    let batch = batch(&snapshot);
    assert_eq!(batch.collected_at.map(|t| t.seconds), Some(1_700_000_000));
    let host = batch.host.expect("host");
    assert_eq!(
        (
            host.cpu_usage_ns,
            host.memory_total_bytes,
            host.memory_used_bytes
        ),
        (300, 8 << 30, 2 << 30)
    );
    let containers: Vec<(&str, &str, u64, u64, u64)> = batch
        .containers
        .iter()
        .map(|c| {
            (
                c.task_id.as_str(),
                c.container_name.as_str(),
                c.cpu_usage_ns,
                c.memory_usage_bytes,
                c.memory_limit_bytes,
            )
        })
        .collect();
    assert_eq!(
        containers,
        [("t1", "a", 100, 10, 1 << 30), ("t1", "b", 200, 20, 1 << 30)]
    );
}

/// Batches reach the real scheduler once the host is registered; before that they are
/// dropped, as nothing would name the host.
#[tokio::test]
async fn batches_reach_the_scheduler_on_their_own_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scheduler")).expect("mkdir");
    let scheduler_store =
        berth_scheduler::store::Store::open(&dir.path().join("scheduler")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run_with_hooks(
        scheduler_store,
        listener,
        ServerConfig::default(),
        TestHooks::new(),
        shutdown.clone(),
    ));

    let store = Arc::new(Store::open(&dir.path().join("agent")).expect("agent store"));
    let buffer = Arc::new(BatchBuffer::new(8));
    let cancel = CancellationToken::new();
    let sender = tokio::spawn(run(
        endpoint,
        None,
        Arc::clone(&store),
        Arc::clone(&buffer),
        cancel.clone(),
    ));
    store.set_registration("c", "i-1").expect("register");
    let sent = AGENT.metric_batches_sent.get();
    for n in 0..3 {
        buffer.push(numbered(n));
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while AGENT.metric_batches_sent.get() < sent + 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three batches sent within 20 s");
    assert_eq!(buffer.len(), 0);

    cancel.cancel();
    sender.await.expect("sender stops");
    shutdown.cancel();
    let _ = server.await;
}

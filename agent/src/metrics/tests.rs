//! Sampling passes with a fake sampler, the exposition (checked by `promtool check metrics`),
//! and the introspection routes served on 127.0.0.1:0 against an engine stand-in.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_proto::v1::{
    ContainerState, ContainerStatus, DesiredStatus, TaskDefinition, TaskState, TaskStatus,
};
use berth_runtime::{
    BlkioStats, CgroupStats, ContainerSample, CpuStats, InterfaceStats, MemoryStats, PidsStats,
    TaskSample,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::collect::{Snapshot, TaskMetrics, TaskSampler, collect};
use super::host::{HostSample, HostSampler};
use super::{AGENT, Introspection, exposition, serve};
use crate::engine::{Command, EngineHandle, TaskView};
use crate::store::Store;

fn view(task_id: &str, status: TaskStatus, containers: &[(&str, ContainerStatus)]) -> TaskView {
    TaskView {
        definition: Arc::new(TaskDefinition {
            family: "web".to_owned(),
            revision: 3,
            ..TaskDefinition::default()
        }),
        state: TaskState {
            task_id: task_id.to_owned(),
            status: status as i32,
            desired_status: DesiredStatus::Running as i32,
            containers: containers
                .iter()
                .map(|(name, status)| ContainerState {
                    name: (*name).to_owned(),
                    status: *status as i32,
                    runtime_id: format!("{task_id}.{name}"),
                    ..ContainerState::default()
                })
                .collect(),
            ..TaskState::default()
        },
        endpoint_ids: Arc::default(),
    }
}

fn stats() -> CgroupStats {
    CgroupStats {
        cpu: Some(CpuStats {
            usage_ns: 2_500_000_000,
            user_ns: 2_000_000_000,
            system_ns: 500_000_000,
            periods: 10,
            throttled_periods: 4,
            throttled_ns: 300_000_000,
        }),
        memory: Some(MemoryStats {
            usage_bytes: 50 << 20,
            working_set_bytes: 40 << 20,
            rss_bytes: 30 << 20,
            cache_bytes: 20 << 20,
            limit_bytes: Some(128 << 20),
            failcnt: 1,
            oom_kills: 0,
        }),
        pids: Some(PidsStats {
            current: 3,
            limit: None,
        }),
        blkio: Some(BlkioStats {
            read_bytes: 4096,
            write_bytes: 8192,
            read_ops: 1,
            write_ops: 2,
        }),
    }
}

/// Records what it was asked for (and which tasks it was told to keep after the pass) and
/// answers with `stats()` for each container.
#[derive(Default)]
struct FakeSampler(Mutex<Vec<(String, Vec<String>)>>, Mutex<Vec<Vec<String>>>);

impl TaskSampler for FakeSampler {
    fn retain(&self, task_ids: &[&str]) {
        if let Ok(mut kept) = self.1.lock() {
            kept.push(task_ids.iter().map(|id| id.to_string()).collect());
        }
    }

    fn sample(&self, task_id: &str, containers: &[String]) -> Option<TaskSample> {
        if let Ok(mut calls) = self.0.lock() {
            calls.push((task_id.to_owned(), containers.to_vec()));
        }
        (task_id != "vanished").then(|| TaskSample {
            task: None,
            containers: containers
                .iter()
                .map(|name| ContainerSample {
                    name: name.clone(),
                    stats: stats(),
                })
                .collect(),
            networks: Vec::new(),
        })
    }
}

#[test]
fn a_pass_samples_running_containers_of_tasks_not_stopped() {
    let views = [
        view(
            "t1",
            TaskStatus::Running,
            &[
                ("app", ContainerStatus::Running),
                ("init", ContainerStatus::Stopped),
            ],
        ),
        view(
            "t2",
            TaskStatus::Stopped,
            &[("app", ContainerStatus::Stopped)],
        ),
        view(
            "t3",
            TaskStatus::Pulled,
            &[("app", ContainerStatus::Pulled)],
        ),
        view(
            "vanished",
            TaskStatus::Running,
            &[("app", ContainerStatus::Running)],
        ),
    ];
    let sampler = FakeSampler::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = collect(
        &views,
        &sampler,
        &mut HostSampler::new(dir.path(), dir.path()),
    );
    let calls = sampler.0.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [
            ("t1".to_owned(), vec!["app".to_owned()]),
            ("vanished".to_owned(), vec!["app".to_owned()])
        ]
    );
    let kept = sampler.1.lock().expect("lock").clone();
    assert_eq!(
        kept,
        [vec!["t1".to_owned(), "vanished".to_owned()]],
        "after the pass, the sampler keeps only the tasks it sampled"
    );
    let tasks: Vec<(&str, &str, u32)> = snapshot
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.family.as_str(), t.revision))
        .collect();
    assert_eq!(
        tasks,
        [("t1", "web", 3)],
        "a task that vanished is left out"
    );
    assert!(snapshot.host.memory_total_bytes > 0);
}

fn snapshot() -> Snapshot {
    Snapshot {
        collected_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        host: HostSample {
            cpu_percent: 12.5,
            cpus: 2,
            memory_total_bytes: 8 << 30,
            memory_used_bytes: 2 << 30,
            memory_available_bytes: 6 << 30,
            load: [0.5, 0.25, 0.125],
            data_dir: Some(berth_runtime::FilesystemUsage {
                total_bytes: 100 << 30,
                free_bytes: 40 << 30,
            }),
            containerd_root: Some(berth_runtime::FilesystemUsage {
                total_bytes: 200 << 30,
                free_bytes: 150 << 30,
            }),
            agent_cpu_seconds: 1.5,
            agent_rss_bytes: 20 << 20,
            system_cpu_ns: 4_000_000_000_000,
        },
        tasks: vec![TaskMetrics {
            task_id: "t1".to_owned(),
            family: "web".to_owned(),
            revision: 3,
            sample: TaskSample {
                task: None,
                containers: vec![ContainerSample {
                    name: "app".to_owned(),
                    stats: stats(),
                }],
                networks: vec![InterfaceStats {
                    name: "eth0".to_owned(),
                    rx_bytes: 1000,
                    tx_bytes: 2000,
                    ..InterfaceStats::default()
                }],
            },
        }],
        previous: None,
    }
}

#[test]
fn a_batch_carries_every_field_the_sample_read() {
    let batch = super::collect::batch(&snapshot());
    let host = batch.host.expect("host metrics");
    assert_eq!(host.cpu_usage_ns, 2_500_000_000);
    assert_eq!((host.cpu_percent, host.cpus), (12.5, 2));
    assert_eq!(host.memory_available_bytes, 6 << 30);
    assert_eq!(
        (host.load_1m, host.load_5m, host.load_15m),
        (0.5, 0.25, 0.125)
    );
    assert_eq!(host.data_dir.map(|d| d.free_bytes), Some(40 << 30));
    assert_eq!(host.containerd_root.map(|d| d.total_bytes), Some(200 << 30));
    assert_eq!(
        (host.agent_cpu_seconds, host.agent_rss_bytes),
        (1.5, 20 << 20)
    );

    let [container] = batch.containers.as_slice() else {
        panic!("one container: {:?}", batch.containers)
    };
    let expected = stats();
    let (cpu, memory, pids, blkio) = (
        expected.cpu.unwrap_or_default(),
        expected.memory.unwrap_or_default(),
        expected.pids.unwrap_or_default(),
        expected.blkio.unwrap_or_default(),
    );
    let got = container.stats.expect("the container's full reading");
    assert_eq!(container.cpu_usage_ns, cpu.usage_ns);
    assert_eq!(container.memory_usage_bytes, memory.usage_bytes);
    assert!(got.has_cpu && got.has_memory && got.has_pids && got.has_blkio);
    assert_eq!(
        (got.cpu_user_ns, got.cpu_system_ns, got.cpu_periods),
        (cpu.user_ns, cpu.system_ns, cpu.periods)
    );
    assert_eq!(
        (got.cpu_throttled_periods, got.cpu_throttled_ns),
        (cpu.throttled_periods, cpu.throttled_ns)
    );
    assert_eq!(
        (
            got.memory_working_set_bytes,
            got.memory_rss_bytes,
            got.memory_cache_bytes
        ),
        (
            memory.working_set_bytes,
            memory.rss_bytes,
            memory.cache_bytes
        )
    );
    assert_eq!(got.memory_limit_bytes, memory.limit_bytes.unwrap_or(0));
    assert_eq!(
        (got.memory_failcnt, got.memory_oom_kills),
        (memory.failcnt, memory.oom_kills)
    );
    assert_eq!(
        (got.pids, got.pids_limit),
        (pids.current, pids.limit.unwrap_or(0))
    );
    assert_eq!(
        (
            got.blkio_read_bytes,
            got.blkio_write_bytes,
            got.blkio_read_ops,
            got.blkio_write_ops
        ),
        (
            blkio.read_bytes,
            blkio.write_bytes,
            blkio.read_ops,
            blkio.write_ops
        )
    );

    let [task] = batch.tasks.as_slice() else {
        panic!("one task: {:?}", batch.tasks)
    };
    assert_eq!(
        (
            task.task_definition_family.as_str(),
            task.task_definition_revision
        ),
        ("web", 3)
    );
    // No task cgroup in the sample: the task's figures are its one container's.
    assert_eq!(task.stats, Some(got));
    let [eth0] = task.networks.as_slice() else {
        panic!("one interface: {:?}", task.networks)
    };
    assert_eq!(
        (eth0.name.as_str(), eth0.rx_bytes, eth0.tx_bytes),
        ("eth0", 1000, 2000)
    );

    // A controller that is missing reads zero with its flag off.
    let empty = super::collect::cgroup_metrics(&CgroupStats::default());
    assert!(!empty.has_cpu && !empty.has_memory && !empty.has_pids && !empty.has_blkio);
}

#[test]
fn exposition_uses_cadvisor_names_and_labels() {
    let views = [view(
        "t1",
        TaskStatus::Running,
        &[("app", ContainerStatus::Running)],
    )];
    let openmetrics = exposition::render(Some(&snapshot()), &views);
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let text = berth_policy::to_prometheus_text(&openmetrics);
    let labels = r#"task_id="t1",container_name="app",task_definition_family="web",task_definition_revision="3""#;
    for line in [
        format!("container_cpu_usage_seconds_total{{{labels}}} 2.5"),
        format!("container_cpu_cfs_throttled_periods_total{{{labels}}} 4"),
        format!("container_memory_working_set_bytes{{{labels}}} {}", 40 << 20),
        format!("container_spec_memory_limit_bytes{{{labels}}} {}", 128 << 20),
        format!("container_threads{{{labels}}} 3"),
        format!("container_fs_writes_bytes_total{{{labels}}} 8192"),
        r#"container_network_receive_bytes_total{task_id="t1",task_definition_family="web",task_definition_revision="3",interface="eth0"} 1000"#.to_owned(),
        r#"berth_agent_tasks{status="RUNNING"} 1"#.to_owned(),
        "berth_host_memory_total_bytes 8589934592".to_owned(),
        "berth_agent_resident_memory_bytes 20971520".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    assert!(
        text.contains("# TYPE berth_agent_state_changes_sent_total counter"),
        "{text}"
    );
    promtool_accepts(&text);
    // Before the first pass: the agent's own metrics only, still valid.
    let empty = berth_policy::to_prometheus_text(&exposition::render(None, &[]));
    assert!(!empty.contains("container_") && empty.contains("berth_agent_tasks"));
    promtool_accepts(&empty);
}

/// `promtool check metrics` (Debian's `prometheus`) accepts the text without a warning. In CI
/// a missing promtool fails the test; elsewhere it is skipped loudly.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED promtool check: cannot run promtool ({error}); install Debian's prometheus package"
            );
            return;
        }
        Err(error) => panic!("cannot run promtool (install Debian's prometheus package): {error}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[test]
fn pulls_are_counted_by_result() {
    let before_ok = AGENT
        .pulls
        .get_or_create(&super::counters::PullLabels { result: "success" })
        .get();
    let before_bytes = AGENT.pull_bytes.get();
    AGENT.record_pull(Some(1234), std::time::Duration::from_millis(10));
    AGENT.record_pull(None, std::time::Duration::from_millis(10));
    assert!(
        AGENT
            .pulls
            .get_or_create(&super::counters::PullLabels { result: "success" })
            .get()
            > before_ok
    );
    assert!(
        AGENT
            .pulls
            .get_or_create(&super::counters::PullLabels { result: "failure" })
            .get()
            >= 1
    );
    assert!(AGENT.pull_bytes.get() >= before_bytes + 1234);
}

/// Answers the engine commands the endpoint sends, with `views`.
fn fake_engine(views: Vec<TaskView>) -> EngineHandle {
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            match command {
                Command::Views(reply) => {
                    let _ = reply.send(views.clone());
                }
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                _ => {}
            }
        }
    });
    EngineHandle::from_sender(tx)
}

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn introspection_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let views = vec![view(
        "t1",
        TaskStatus::Running,
        &[("app", ContainerStatus::Running)],
    )];
    let (latest, snapshots) = watch::channel(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        Introspection {
            engine: fake_engine(views),
            store: Arc::clone(&store),
            cluster: "prod".to_owned(),
            latest: snapshots,
        },
        cancel.clone(),
    ));

    assert_eq!(get(address, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get(address, "/readyz").await;
    assert_eq!(status, 503, "not registered yet: {body}");
    store.set_registration("prod", "ci-1").expect("register");
    assert_eq!(get(address, "/readyz").await.0, 200);

    let (status, body) = get(address, "/v1/metadata").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (status, &json["Cluster"], &json["ContainerInstanceArn"]),
        (200, &"prod".into(), &"ci-1".into())
    );
    assert!(
        json["Version"]
            .as_str()
            .is_some_and(|v| v.starts_with("Berth Agent - v"))
    );

    let (status, body) = get(address, "/v1/tasks").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status, 200);
    assert_eq!(json["Tasks"][0]["Arn"], "t1");
    assert_eq!(json["Tasks"][0]["KnownStatus"], "RUNNING");
    assert_eq!(json["Tasks"][0]["Family"], "web");
    assert_eq!(json["Tasks"][0]["Version"], "3");
    assert_eq!(json["Tasks"][0]["Containers"][0]["Name"], "app");
    let (status, body) = get(address, "/v1/tasks?dockerid=t1.app").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"Arn\":\"t1\""), "{body}");
    assert_eq!(get(address, "/v1/tasks?taskarn=nope").await.0, 404);
    assert_eq!(get(address, "/v1/tasks?taskarn=t1&dockerid=x").await.0, 400);

    let (status, body) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("berth_agent_tasks{status=\"RUNNING\"} 1") && !body.contains("container_cpu"),
        "{body}"
    );
    latest.send_replace(Some(Arc::new(snapshot())));
    let (_, body) = get(address, "/metrics").await;
    assert!(
        body.contains("container_cpu_usage_seconds_total{"),
        "{body}"
    );

    cancel.cancel();
    server.await.expect("server stops");
}

//! The window: rates from two samples, bounded rings, series that go with their task or their
//! silent instance, and health kept per instance.

use std::time::{Duration, Instant, SystemTime};

use berth_proto::v1::{
    AgentHealth, CgroupMetrics, ContainerMetrics, HostMetrics, InterfaceMetrics, MetricsBatch,
    TaskMetrics,
};

use super::series::{POINTS, Series, UsagePoint};
use super::*;

const EPOCH: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH + secs)
}

fn stats(cpu_ns: u64, memory: u64) -> CgroupMetrics {
    CgroupMetrics {
        has_cpu: true,
        cpu_usage_ns: cpu_ns,
        has_memory: true,
        memory_usage_bytes: memory,
        memory_working_set_bytes: memory,
        ..Default::default()
    }
}

/// A batch of `instance` at `secs` with one task per (id, cpu ns, memory, rx bytes) and one
/// container `app` in each.
fn batch(instance: &str, secs: u64, tasks: &[(&str, u64, u64, u64)]) -> MetricsBatch {
    MetricsBatch {
        container_instance_id: instance.into(),
        collected_at: Some(prost_types::Timestamp::from(at(secs))),
        host: Some(HostMetrics {
            cpu_percent: 12.5,
            memory_used_bytes: 3 * MIB * 1024,
            memory_total_bytes: 8 * MIB * 1024,
            ..Default::default()
        }),
        containers: tasks
            .iter()
            .map(|(id, cpu, memory, _)| ContainerMetrics {
                task_id: (*id).into(),
                container_name: "app".into(),
                cpu_usage_ns: *cpu,
                memory_usage_bytes: *memory,
                memory_limit_bytes: 0,
                stats: Some(stats(*cpu, *memory)),
            })
            .collect(),
        tasks: tasks
            .iter()
            .map(|(id, cpu, memory, rx)| TaskMetrics {
                task_id: (*id).into(),
                task_definition_family: "web".into(),
                task_definition_revision: 3,
                stats: Some(stats(*cpu, *memory)),
                networks: vec![InterfaceMetrics {
                    name: "eth0".into(),
                    rx_bytes: *rx,
                    tx_bytes: rx / 2,
                    ..Default::default()
                }],
            })
            .collect(),
        pulls: Vec::new(),
    }
}

#[test]
fn rates_come_from_the_two_latest_samples() {
    let telemetry = Telemetry::new(DEFAULT_WINDOW);
    let now = Instant::now();
    telemetry.ingest(&batch("i-1", 0, &[("t1", 0, 100 * MIB, 0)]), now);
    let first = telemetry
        .task("t1", false)
        .expect("the task is in the window");
    assert_eq!(first.rates.unwrap_or_default().cpu_percent, 0.0);

    // Half a core over 10 s, and 1 MB/s received.
    telemetry.ingest(
        &batch("i-1", 10, &[("t1", 5_000_000_000, 120 * MIB, 10_000_000)]),
        now,
    );
    let task = telemetry
        .task("t1", false)
        .expect("the task is in the window");
    let rates = task.rates.unwrap_or_default();
    assert!((rates.cpu_percent - 50.0).abs() < 1e-9, "{rates:?}");
    assert!((rates.rx_bytes_per_second - 1_000_000.0).abs() < 1e-6);
    assert!((rates.tx_bytes_per_second - 500_000.0).abs() < 1e-6);
    assert_eq!(rates.interval_seconds, 10.0);
    assert_eq!(task.container_instance_id, "i-1");
    assert_eq!(
        (
            task.task_definition_family.as_str(),
            task.task_definition_revision
        ),
        ("web", 3)
    );
    assert_eq!(task.containers.len(), 1);
    let app = &task.containers[0];
    assert!((app.rates.unwrap_or_default().cpu_percent - 50.0).abs() < 1e-9);
    assert_eq!(app.stats.unwrap_or_default().memory_usage_bytes, 120 * MIB);

    // The instance measures its tasks: half a core is 512 ECS units.
    let (health, measured) = telemetry.instance_status("i-1");
    assert!(health.is_none());
    let measured = measured.expect("a batch arrived");
    assert_eq!(measured.tasks_cpu, 512);
    assert_eq!(measured.tasks_memory_mib, 120);
    assert_eq!(measured.host_memory_used_mib, 3 * 1024);
}

#[test]
fn a_resent_batch_and_a_restarted_counter_do_not_make_rates_up() {
    let telemetry = Telemetry::new(DEFAULT_WINDOW);
    let now = Instant::now();
    telemetry.ingest(&batch("i-1", 0, &[("t1", 9_000_000_000, MIB, 0)]), now);
    telemetry.ingest(&batch("i-1", 10, &[("t1", 1_000_000_000, MIB, 0)]), now);
    // The same batch again changes nothing.
    telemetry.ingest(&batch("i-1", 10, &[("t1", 1_000_000_000, MIB, 0)]), now);
    let rates = telemetry
        .task("t1", false)
        .and_then(|t| t.rates)
        .unwrap_or_default();
    assert_eq!(rates.cpu_percent, 0.0);
    assert_eq!(rates.interval_seconds, 10.0);
}

#[test]
fn a_series_keeps_a_bounded_ring_over_its_window() {
    let window = Duration::from_secs(3600);
    let mut series = Series::new(window);
    // Three hours of samples every second.
    for s in 0..3 * 3600 {
        series.push(UsagePoint {
            at: at(s),
            stats: stats(s * 1_000_000, 0),
            rx_bytes: 0,
            tx_bytes: 0,
        });
    }
    assert!(series.len() <= POINTS, "{} points", series.len());
    let points: Vec<SystemTime> = series.points().map(|p| p.at).collect();
    let span = points[points.len() - 1]
        .duration_since(points[0])
        .expect("ordered");
    assert!(
        span <= window && span >= window - Duration::from_secs(10),
        "{span:?}"
    );
    assert_eq!(series.latest().map(|p| p.at), Some(at(3 * 3600 - 1)));
    assert_eq!(series.previous().map(|p| p.at), Some(at(3 * 3600 - 2)));
    // Its history has rates: 1 ms of CPU a second is 0.1 %.
    let history = super::series::history(&series);
    assert_eq!(history.len(), series.len() - 1);
    assert!(history.iter().all(|p| (p.cpu_percent - 0.1).abs() < 1e-9));
}

#[test]
fn series_go_with_their_task_and_with_a_silent_instance() {
    let window = Duration::from_secs(60);
    let telemetry = Telemetry::new(window);
    let start = Instant::now();
    telemetry.ingest(
        &batch("i-1", 0, &[("t1", 0, MIB, 0), ("t2", 0, MIB, 0)]),
        start,
    );
    telemetry.ingest(&batch("i-2", 0, &[("t3", 0, MIB, 0)]), start);
    assert_eq!(telemetry.task_ids(), ["t1", "t2", "t3"]);
    assert_eq!(telemetry.series_count(), 2 + 2 * 3);

    // t2 stopped: the next batch of its instance no longer has it.
    telemetry.ingest(&batch("i-1", 10, &[("t1", 0, MIB, 0)]), start);
    assert_eq!(telemetry.task_ids(), ["t1", "t3"]);
    assert!(telemetry.task("t2", false).is_none());

    // i-2 falls silent for longer than the window: it goes with its task.
    let later = start + window + Duration::from_secs(1);
    telemetry.ingest(&batch("i-1", 70, &[("t1", 0, MIB, 0)]), later);
    assert_eq!(telemetry.task_ids(), ["t1"]);
    assert!(telemetry.instance("i-2", false).is_none());
    assert_eq!(telemetry.series_count(), 1 + 2);
}

#[test]
fn health_is_kept_per_instance_beside_its_host_sample() {
    let telemetry = Telemetry::new(DEFAULT_WINDOW);
    let now = Instant::now();
    let health = AgentHealth {
        containerd_reachable: true,
        data_dir_free_bytes: 42,
        engine_lag_ms: 7,
        ..Default::default()
    };
    telemetry.record_health("i-1", health.clone(), at(5), now);
    assert!(telemetry.storage_degraded().is_empty());
    let only_health = telemetry
        .instance("i-1", false)
        .expect("health alone is kept");
    assert_eq!(only_health.health, Some(health.clone()));
    assert!(only_health.host.is_none() && only_health.measured.is_none());

    telemetry.ingest(&batch("i-1", 10, &[]), now);
    telemetry.ingest(&batch("i-1", 20, &[]), now);
    let stats = telemetry
        .instance("i-1", true)
        .expect("the instance is in the window");
    assert_eq!(stats.health, Some(health.clone()));
    assert_eq!(stats.health_at, Some(prost_types::Timestamp::from(at(5))));
    assert_eq!(stats.host.map(|h| h.cpu_percent), Some(12.5));
    assert_eq!(stats.history.len(), 2);
    assert_eq!(stats.measured.map(|m| m.tasks_cpu), Some(0));

    // A heartbeat that says the agent cannot write its data dir takes it out of placement,
    // with why; the next one that does not brings it back.
    let degraded = AgentHealth {
        storage_degraded: Some(berth_proto::v1::StorageDegraded {
            path: "/var/lib/berth".into(),
            errno: 28,
            error: "No space left on device".into(),
            since: None,
        }),
        ..health.clone()
    };
    telemetry.record_health("i-1", degraded, at(6), now);
    let why = telemetry.storage_degraded();
    assert_eq!(
        why.get("i-1").map(String::as_str),
        Some("its agent cannot write /var/lib/berth (errno 28): No space left on device")
    );
    telemetry.record_health("i-1", health, at(7), now);
    assert!(telemetry.storage_degraded().is_empty());
}

#[test]
fn a_batch_without_a_time_is_ignored() {
    let telemetry = Telemetry::new(DEFAULT_WINDOW);
    let mut b = batch("i-1", 0, &[("t1", 0, MIB, 0)]);
    b.collected_at = None;
    telemetry.ingest(&b, Instant::now());
    assert!(telemetry.task_ids().is_empty());
    assert!(telemetry.instance("i-1", false).is_none());
}

//! berthctl stats' figures and tables as docker stats shows them, from canned responses.

use super::*;

#[test]
fn bytes_read_like_docker_stats() {
    assert_eq!(binary_bytes(512), "512B");
    assert_eq!(binary_bytes(64 * 1024 * 1024), "64MiB");
    assert_eq!(binary_bytes(1536 * 1024), "1.5MiB");
    assert_eq!(decimal_bytes(999), "999B");
    assert_eq!(decimal_bytes(1_500_000), "1.5MB");
    assert_eq!(decimal_bytes(2_000), "2kB");
}

fn response() -> proto::GetTaskStatsResponse {
    let stats = proto::CgroupMetrics {
        has_cpu: true,
        cpu_usage_ns: 5_000_000_000,
        has_memory: true,
        memory_usage_bytes: 32 * 1024 * 1024,
        memory_working_set_bytes: 30 * 1024 * 1024,
        memory_limit_bytes: 128 * 1024 * 1024,
        has_pids: true,
        pids: 3,
        ..Default::default()
    };
    let rates = proto::StatsRates {
        cpu_percent: 25.0,
        rx_bytes_per_second: 100.0,
        interval_seconds: 10.0,
        ..Default::default()
    };
    proto::GetTaskStatsResponse {
        tasks: vec![proto::TaskStats {
            task_id: "0123456789abcdef".into(),
            container_instance_id: "i-1".into(),
            task_definition_family: "web".into(),
            task_definition_revision: 2,
            collected_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            stats: Some(stats),
            networks: vec![proto::InterfaceMetrics {
                name: "eth0".into(),
                rx_bytes: 2_000,
                tx_bytes: 1_000_000,
                ..Default::default()
            }],
            rates: Some(rates),
            containers: vec![proto::ContainerStats {
                container_name: "app".into(),
                stats: Some(stats),
                rates: Some(rates),
                history: Vec::new(),
            }],
            history: Vec::new(),
        }],
        missing: vec!["gone".into()],
    }
}

#[test]
fn the_table_has_a_row_per_task_and_per_container() {
    let text = tasks_stats_table(&response());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("TASK"), "{text}");
    for needle in [
        "0123456789ab",
        "(task)",
        "25.00%",
        "32MiB / 128MiB",
        "25.00%",
        "2kB / 1MB",
        "3",
    ] {
        assert!(lines[1].contains(needle), "{needle:?} in {:?}", lines[1]);
    }
    assert!(
        lines[2].contains("app") && lines[2].contains("- "),
        "{:?}",
        lines[2]
    );
}

#[test]
fn json_uses_ecs_style_names() {
    let json = serde_json::to_value(TasksStats::from(&response())).expect("serializes");
    let task = &json["tasks"][0];
    assert_eq!(task["taskId"], "0123456789abcdef");
    assert_eq!(task["cpuPercent"], 25.0);
    assert_eq!(task["memoryUsageBytes"], 32 * 1024 * 1024);
    assert_eq!(task["memoryPercent"], 25.0);
    assert_eq!(task["networkRxBytes"], 2_000);
    assert_eq!(task["networkTxBytes"], 1_000_000);
    assert_eq!(task["networks"][0]["interfaceName"], "eth0");
    assert_eq!(task["collectedAt"], "2027-01-15T08:00:00.000000000Z");
    assert_eq!(task["containers"][0]["containerName"], "app");
    assert_eq!(task["containers"][0]["pids"], 3);
    assert_eq!(json["missing"][0], "gone");
}

#[test]
fn health_lines_show_measured_beside_reserved_and_registered() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_010);
    let instance = proto::ContainerInstance {
        container_instance_id: "i-1".into(),
        registered_resources: Some(proto::Resources {
            cpu: 2048,
            memory_mib: 4096,
            ..Default::default()
        }),
        remaining_resources: Some(proto::Resources {
            cpu: 1024,
            memory_mib: 3072,
            ..Default::default()
        }),
        health: Some(proto::AgentHealth {
            containerd_reachable: true,
            containerd_last_ok_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_005,
                nanos: 0,
            }),
            data_dir_free_bytes: 10 << 30,
            data_dir_total_bytes: 20 << 30,
            engine_lag_ms: 12,
            last_metrics_at: None,
            storage_degraded: Some(proto::StorageDegraded {
                path: "/var/lib/berth/agent.redb".into(),
                errno: 28,
                error: "No space left on device (os error 28)".into(),
                since: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
            }),
        }),
        measured: Some(proto::MeasuredUsage {
            tasks_cpu: 300,
            tasks_memory_mib: 200,
            host_cpu_percent: 40.0,
            host_memory_used_mib: 1500,
            collected_at: None,
        }),
        ..Default::default()
    };
    let text = health_lines(&[instance], now);
    assert!(
        text.contains("measured 300 / reserved 1024 / registered 2048"),
        "{text}"
    );
    assert!(
        text.contains("measured 200 MiB / reserved 1024 MiB / registered 4096 MiB"),
        "{text}"
    );
    assert!(
        text.contains("containerd reachable (last ok 5s ago)"),
        "{text}"
    );
    assert!(
        text.contains("data dir 10GiB free of 20GiB, engine lag 12 ms, last metrics never"),
        "{text}"
    );
    assert!(
        text.contains(
            "storage DEGRADED (began 10s ago): cannot write /var/lib/berth/agent.redb (errno 28): No space left on device (os error 28); no new task is placed here"
        ),
        "{text}"
    );
}

//! `berthctl stats`: tasks' (and their containers') or a host's figures from the scheduler's
//! metrics window, as a table like `docker stats` (refreshed until interrupted, or one sample
//! with `--no-stream`) or one sample of ECS-style JSON; and the health and measured use lines
//! `describe-container-instances` prints under its table.

use std::time::{Duration, SystemTime};

use berth_proto::v1 as proto;
use serde::Serialize;

use super::table::{Table, terminal_width};
use super::time::rfc3339_nanos;

/// How often the live table refreshes.
pub(super) const REFRESH: Duration = Duration::from_secs(2);

/// Moves the cursor home and clears the screen, before each refresh of the live table.
pub(super) const CLEAR: &str = "\x1b[H\x1b[2J";

const KIB: f64 = 1024.0;

/// Bytes in binary units, as `docker stats` shows memory: "1.5MiB".
pub(super) fn binary_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= KIB && unit + 1 < units.len() {
        value /= KIB;
        unit += 1;
    }
    format!("{}{}", trimmed(value), units[unit])
}

/// Bytes in decimal units, as `docker stats` shows network and block I/O: "1.5MB".
pub(super) fn decimal_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", trimmed(value), units[unit])
}

/// Two decimals at most, without trailing zeros: 1.5, 64, 0.25.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

fn network_totals(networks: &[proto::InterfaceMetrics]) -> (u64, u64) {
    networks.iter().fold((0, 0), |(rx, tx), i| {
        (rx.saturating_add(i.rx_bytes), tx.saturating_add(i.tx_bytes))
    })
}

/// One table row: CPU %, memory use / limit and %, net I/O, block I/O, pids.
fn usage_cells(
    stats: &proto::CgroupMetrics,
    rates: &proto::StatsRates,
    net: Option<(u64, u64)>,
) -> Vec<String> {
    let limit = stats.memory_limit_bytes;
    vec![
        format!("{:.2}%", rates.cpu_percent),
        format!(
            "{} / {}",
            binary_bytes(stats.memory_usage_bytes),
            if limit == 0 {
                "-".to_owned()
            } else {
                binary_bytes(limit)
            }
        ),
        if limit == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}%", percent(stats.memory_usage_bytes, limit))
        },
        net.map_or_else(
            || "-".to_owned(),
            |(rx, tx)| format!("{} / {}", decimal_bytes(rx), decimal_bytes(tx)),
        ),
        format!(
            "{} / {}",
            decimal_bytes(stats.blkio_read_bytes),
            decimal_bytes(stats.blkio_write_bytes)
        ),
        stats.pids.to_string(),
    ]
}

/// The tasks' table: a row per task (its totals and network), then one per container.
pub(super) fn tasks_stats_table(response: &proto::GetTaskStatsResponse) -> String {
    let mut table = Table::new(&[
        "TASK",
        "CONTAINER",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]);
    for task in &response.tasks {
        let stats = task.stats.unwrap_or_default();
        let rates = task.rates.unwrap_or_default();
        let mut row = vec![short_id(&task.task_id), "(task)".to_owned()];
        row.extend(usage_cells(
            &stats,
            &rates,
            Some(network_totals(&task.networks)),
        ));
        table.row(row);
        for c in &task.containers {
            let mut row = vec![short_id(&task.task_id), c.container_name.clone()];
            row.extend(usage_cells(
                &c.stats.unwrap_or_default(),
                &c.rates.unwrap_or_default(),
                None,
            ));
            table.row(row);
        }
    }
    table.render(terminal_width())
}

/// A host's table: its CPU, memory, load and disks, and what its tasks use.
pub(super) fn instance_stats_table(response: &proto::GetInstanceStatsResponse) -> String {
    let mut table = Table::new(&[
        "INSTANCE ID",
        "CPU %",
        "MEM USED / TOTAL",
        "MEM %",
        "LOAD",
        "TASKS CPU",
        "TASKS MEM",
        "DATA DIR FREE",
    ]);
    for i in &response.instances {
        let host = i.host.unwrap_or_default();
        let measured = i.measured.unwrap_or_default();
        table.row(vec![
            i.container_instance_id.clone(),
            format!("{:.2}%", host.cpu_percent),
            format!(
                "{} / {}",
                binary_bytes(host.memory_used_bytes),
                binary_bytes(host.memory_total_bytes)
            ),
            format!(
                "{:.2}%",
                percent(host.memory_used_bytes, host.memory_total_bytes)
            ),
            format!(
                "{:.2} {:.2} {:.2}",
                host.load_1m, host.load_5m, host.load_15m
            ),
            measured.tasks_cpu.to_string(),
            format!("{} MiB", measured.tasks_memory_mib),
            host.data_dir.map_or_else(
                || "-".to_owned(),
                |d| {
                    format!(
                        "{} / {}",
                        binary_bytes(d.free_bytes),
                        binary_bytes(d.total_bytes)
                    )
                },
            ),
        ]);
    }
    table.render(terminal_width())
}

/// `{"tasks": [...]}` with ECS-style names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TasksStats {
    tasks: Vec<TaskStatsJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskStatsJson {
    task_id: String,
    container_instance_id: String,
    task_definition_family: String,
    task_definition_revision: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    collected_at: Option<String>,
    #[serde(flatten)]
    usage: UsageJson,
    network_rx_bytes: u64,
    network_tx_bytes: u64,
    network_rx_bytes_per_second: f64,
    network_tx_bytes_per_second: f64,
    networks: Vec<NetworkJson>,
    containers: Vec<ContainerStatsJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatsJson {
    container_name: String,
    #[serde(flatten)]
    usage: UsageJson,
}

/// A cgroup's figures and rates.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageJson {
    cpu_percent: f64,
    cpu_usage_nanoseconds: u64,
    cpu_user_nanoseconds: u64,
    cpu_system_nanoseconds: u64,
    cpu_throttled_periods: u64,
    cpu_throttled_nanoseconds: u64,
    memory_usage_bytes: u64,
    memory_working_set_bytes: u64,
    memory_rss_bytes: u64,
    memory_cache_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_percent: Option<f64>,
    memory_failcnt: u64,
    memory_oom_kills: u64,
    pids: u64,
    storage_read_bytes: u64,
    storage_write_bytes: u64,
    storage_read_ops: u64,
    storage_write_ops: u64,
    storage_read_bytes_per_second: f64,
    storage_write_bytes_per_second: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkJson {
    interface_name: String,
    rx_bytes: u64,
    rx_packets: u64,
    rx_errors: u64,
    rx_dropped: u64,
    tx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
    tx_dropped: u64,
}

fn usage_json(stats: &proto::CgroupMetrics, rates: &proto::StatsRates) -> UsageJson {
    let limit = (stats.memory_limit_bytes > 0).then_some(stats.memory_limit_bytes);
    UsageJson {
        cpu_percent: rates.cpu_percent,
        cpu_usage_nanoseconds: stats.cpu_usage_ns,
        cpu_user_nanoseconds: stats.cpu_user_ns,
        cpu_system_nanoseconds: stats.cpu_system_ns,
        cpu_throttled_periods: stats.cpu_throttled_periods,
        cpu_throttled_nanoseconds: stats.cpu_throttled_ns,
        memory_usage_bytes: stats.memory_usage_bytes,
        memory_working_set_bytes: stats.memory_working_set_bytes,
        memory_rss_bytes: stats.memory_rss_bytes,
        memory_cache_bytes: stats.memory_cache_bytes,
        memory_limit_bytes: limit,
        memory_percent: limit.map(|l| percent(stats.memory_usage_bytes, l)),
        memory_failcnt: stats.memory_failcnt,
        memory_oom_kills: stats.memory_oom_kills,
        pids: stats.pids,
        storage_read_bytes: stats.blkio_read_bytes,
        storage_write_bytes: stats.blkio_write_bytes,
        storage_read_ops: stats.blkio_read_ops,
        storage_write_ops: stats.blkio_write_ops,
        storage_read_bytes_per_second: rates.blkio_read_bytes_per_second,
        storage_write_bytes_per_second: rates.blkio_write_bytes_per_second,
    }
}

fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(rfc3339_nanos)
}

impl From<&proto::GetTaskStatsResponse> for TasksStats {
    fn from(r: &proto::GetTaskStatsResponse) -> Self {
        let tasks = r
            .tasks
            .iter()
            .map(|t| {
                let stats = t.stats.unwrap_or_default();
                let rates = t.rates.unwrap_or_default();
                let (rx, tx) = network_totals(&t.networks);
                TaskStatsJson {
                    task_id: t.task_id.clone(),
                    container_instance_id: t.container_instance_id.clone(),
                    task_definition_family: t.task_definition_family.clone(),
                    task_definition_revision: t.task_definition_revision,
                    collected_at: time(t.collected_at.as_ref()),
                    usage: usage_json(&stats, &rates),
                    network_rx_bytes: rx,
                    network_tx_bytes: tx,
                    network_rx_bytes_per_second: rates.rx_bytes_per_second,
                    network_tx_bytes_per_second: rates.tx_bytes_per_second,
                    networks: t
                        .networks
                        .iter()
                        .map(|i| NetworkJson {
                            interface_name: i.name.clone(),
                            rx_bytes: i.rx_bytes,
                            rx_packets: i.rx_packets,
                            rx_errors: i.rx_errors,
                            rx_dropped: i.rx_dropped,
                            tx_bytes: i.tx_bytes,
                            tx_packets: i.tx_packets,
                            tx_errors: i.tx_errors,
                            tx_dropped: i.tx_dropped,
                        })
                        .collect(),
                    containers: t
                        .containers
                        .iter()
                        .map(|c| ContainerStatsJson {
                            container_name: c.container_name.clone(),
                            usage: usage_json(
                                &c.stats.unwrap_or_default(),
                                &c.rates.unwrap_or_default(),
                            ),
                        })
                        .collect(),
                }
            })
            .collect();
        TasksStats {
            tasks,
            missing: r.missing.clone(),
        }
    }
}

/// `{"containerInstances": [...]}` of `--instance`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstancesStats {
    container_instances: Vec<InstanceStatsJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceStatsJson {
    container_instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    collected_at: Option<String>,
    cpu_percent: f64,
    cpus: u32,
    memory_used_bytes: u64,
    memory_total_bytes: u64,
    memory_available_bytes: u64,
    load_average: [f64; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir_free_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    containerd_root_free_bytes: Option<u64>,
    agent_cpu_seconds: f64,
    agent_memory_bytes: u64,
    tasks_cpu_utilized: u64,
    tasks_memory_utilized_mib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthJson>,
}

/// An agent's health, as `describe-container-instances -o json` and `stats --instance` show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthJson {
    containerd_reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    containerd_last_ok_at: Option<String>,
    data_dir_free_bytes: u64,
    data_dir_total_bytes: u64,
    engine_lag_milliseconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_metrics_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_at: Option<String>,
    /// Set while the agent cannot write its data dir (it takes no new task meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_degraded: Option<StorageDegradedJson>,
}

/// Why an agent cannot write its data dir, as `describe-container-instances -o json` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StorageDegradedJson {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<i32>,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
}

pub(super) fn health_json(
    health: Option<&proto::AgentHealth>,
    at: Option<&prost_types::Timestamp>,
) -> Option<HealthJson> {
    let h = health?;
    Some(HealthJson {
        containerd_reachable: h.containerd_reachable,
        containerd_last_ok_at: time(h.containerd_last_ok_at.as_ref()),
        data_dir_free_bytes: h.data_dir_free_bytes,
        data_dir_total_bytes: h.data_dir_total_bytes,
        engine_lag_milliseconds: h.engine_lag_ms,
        last_metrics_at: time(h.last_metrics_at.as_ref()),
        reported_at: time(at),
        storage_degraded: h.storage_degraded.as_ref().map(|d| StorageDegradedJson {
            path: d.path.clone(),
            errno: (d.errno != 0).then_some(d.errno),
            error: d.error.clone(),
            since: time(d.since.as_ref()),
        }),
    })
}

impl From<&proto::GetInstanceStatsResponse> for InstancesStats {
    fn from(r: &proto::GetInstanceStatsResponse) -> Self {
        let container_instances = r
            .instances
            .iter()
            .map(|i| {
                let host = i.host.unwrap_or_default();
                let measured = i.measured.unwrap_or_default();
                InstanceStatsJson {
                    container_instance_id: i.container_instance_id.clone(),
                    collected_at: time(i.collected_at.as_ref()),
                    cpu_percent: host.cpu_percent,
                    cpus: host.cpus,
                    memory_used_bytes: host.memory_used_bytes,
                    memory_total_bytes: host.memory_total_bytes,
                    memory_available_bytes: host.memory_available_bytes,
                    load_average: [host.load_1m, host.load_5m, host.load_15m],
                    data_dir_free_bytes: host.data_dir.map(|d| d.free_bytes),
                    containerd_root_free_bytes: host.containerd_root.map(|d| d.free_bytes),
                    agent_cpu_seconds: host.agent_cpu_seconds,
                    agent_memory_bytes: host.agent_rss_bytes,
                    tasks_cpu_utilized: measured.tasks_cpu,
                    tasks_memory_utilized_mib: measured.tasks_memory_mib,
                    health: health_json(i.health.as_ref(), i.health_at.as_ref()),
                }
            })
            .collect();
        InstancesStats {
            container_instances,
        }
    }
}

/// How long ago `t` was, for people: "3s ago"; "never" when absent.
fn ago(t: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    let Some(t) = t.and_then(|t| SystemTime::try_from(*t).ok()) else {
        return "never".to_owned();
    };
    match now.duration_since(t) {
        Ok(d) => format!("{}s ago", d.as_secs()),
        Err(_) => "just now".to_owned(),
    }
}

/// The health and measured-use lines under `describe-container-instances`' table.
pub(super) fn health_lines(instances: &[proto::ContainerInstance], now: SystemTime) -> String {
    let mut out = String::new();
    for i in instances {
        out.push_str(&format!("\n{}:\n", i.container_instance_id));
        let registered = i.registered_resources.clone().unwrap_or_default();
        let remaining = i.remaining_resources.clone().unwrap_or_default();
        let reserved_cpu = registered.cpu.saturating_sub(remaining.cpu);
        let reserved_mem = registered.memory_mib.saturating_sub(remaining.memory_mib);
        match &i.measured {
            Some(m) => out.push_str(&format!(
                "  CPU     measured {} / reserved {} / registered {} (host {:.1}% busy)\n  memory  measured {} MiB / reserved {} MiB / registered {} MiB (host {} MiB used)\n",
                m.tasks_cpu,
                reserved_cpu,
                registered.cpu,
                m.host_cpu_percent,
                m.tasks_memory_mib,
                reserved_mem,
                registered.memory_mib,
                m.host_memory_used_mib,
            )),
            None => out.push_str(&format!(
                "  CPU     measured - / reserved {reserved_cpu} / registered {}\n  memory  measured - / reserved {reserved_mem} MiB / registered {} MiB\n",
                registered.cpu, registered.memory_mib,
            )),
        }
        match &i.health {
            Some(h) => out.push_str(&format!(
                "  health  containerd {} (last ok {}), data dir {} free of {}, engine lag {} ms, last metrics {} (reported {})\n",
                if h.containerd_reachable { "reachable" } else { "UNREACHABLE" },
                ago(h.containerd_last_ok_at.as_ref(), now),
                binary_bytes(h.data_dir_free_bytes),
                binary_bytes(h.data_dir_total_bytes),
                h.engine_lag_ms,
                ago(h.last_metrics_at.as_ref(), now),
                ago(i.health_at.as_ref(), now),
            )),
            None => out.push_str("  health  not reported yet\n"),
        }
        if let Some(d) = i.health.as_ref().and_then(|h| h.storage_degraded.as_ref()) {
            let errno = if d.errno != 0 {
                format!(" (errno {})", d.errno)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  storage DEGRADED (began {}): cannot write {}{errno}: {}; no new task is placed here\n",
                ago(d.since.as_ref(), now),
                d.path,
                d.error,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! Task metadata v4 `/stats` and `/task/stats`: Docker's stats JSON (`cpu_stats`,
//! `precpu_stats`, `memory_stats`, `networks`, `blkio_stats`, `pids_stats`) built from the
//! agent's latest metrics pass and the one before, as ECS returns it. `/task/stats` maps each
//! running container's ID to its stats. The caller's task is found as for the metadata, so a
//! task sees only itself.

use std::time::SystemTime;

use berth_runtime::{CgroupStats, InterfaceStats, rfc3339_nanos};
use serde_json::{Map, Value, json};

use crate::engine::TaskView;
use crate::metrics::{Snapshot, TaskMetrics};

/// A task's sample in a pass, if it had one.
fn task_in<'a>(snapshot: &'a Snapshot, task_id: &str) -> Option<&'a TaskMetrics> {
    snapshot.tasks.iter().find(|t| t.task_id == task_id)
}

fn container_in<'a>(task: &'a TaskMetrics, name: &str) -> Option<&'a CgroupStats> {
    task.sample
        .containers
        .iter()
        .find(|c| c.name == name)
        .map(|c| &c.stats)
}

/// Docker's `cpu_stats` (or `precpu_stats`) of a reading; zeros when there is none.
fn cpu_json(stats: Option<&CgroupStats>, snapshot: Option<&Snapshot>) -> Value {
    let cpu = stats.and_then(|s| s.cpu).unwrap_or_default();
    let host = snapshot.map(|s| &s.host);
    json!({
        "cpu_usage": {
            "total_usage": cpu.usage_ns,
            "usage_in_kernelmode": cpu.system_ns,
            "usage_in_usermode": cpu.user_ns,
        },
        "system_cpu_usage": host.map_or(0, |h| h.system_cpu_ns),
        "online_cpus": host.map_or(0, |h| h.cpus),
        "throttling_data": {
            "periods": cpu.periods,
            "throttled_periods": cpu.throttled_periods,
            "throttled_time": cpu.throttled_ns,
        },
    })
}

fn networks_json(networks: &[InterfaceStats]) -> Value {
    let mut out = Map::new();
    for i in networks {
        out.insert(
            i.name.clone(),
            json!({
                "rx_bytes": i.rx_bytes,
                "rx_packets": i.rx_packets,
                "rx_errors": i.rx_errors,
                "rx_dropped": i.rx_dropped,
                "tx_bytes": i.tx_bytes,
                "tx_packets": i.tx_packets,
                "tx_errors": i.tx_errors,
                "tx_dropped": i.tx_dropped,
            }),
        );
    }
    Value::Object(out)
}

fn time(t: SystemTime) -> String {
    rfc3339_nanos(t)
}

/// One container's Docker stats JSON; None when the latest pass has no sample of it (not
/// running, or metrics are off or have not run yet).
pub(crate) fn container_stats(view: &TaskView, name: &str, latest: &Snapshot) -> Option<Value> {
    let task = task_in(latest, &view.state.task_id)?;
    let stats = container_in(task, name)?;
    let state = view.state.containers.iter().find(|c| c.name == name)?;
    let previous = latest.previous.as_deref();
    let before = previous
        .and_then(|p| task_in(p, &view.state.task_id))
        .and_then(|t| container_in(t, name));
    let memory = stats.memory.unwrap_or_default();
    let pids = stats.pids.unwrap_or_default();
    let blkio = stats.blkio.unwrap_or_default();
    let entry = |op: &str, value: u64| json!({"major": 0, "minor": 0, "op": op, "value": value});
    Some(json!({
        "read": time(latest.collected_at),
        "preread": previous.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| time(p.collected_at)),
        "id": state.runtime_id,
        "name": state.name,
        "num_procs": 0,
        "pids_stats": match pids.limit {
            Some(limit) => json!({"current": pids.current, "limit": limit}),
            None => json!({"current": pids.current}),
        },
        "cpu_stats": cpu_json(Some(stats), Some(latest)),
        "precpu_stats": cpu_json(before, previous),
        "memory_stats": {
            "usage": memory.usage_bytes,
            "limit": memory.limit_bytes.unwrap_or(latest.host.memory_total_bytes),
            "failcnt": memory.failcnt,
            "stats": {
                "rss": memory.rss_bytes,
                "cache": memory.cache_bytes,
                "total_inactive_file": memory.usage_bytes.saturating_sub(memory.working_set_bytes),
                "working_set": memory.working_set_bytes,
                "oom_kill": memory.oom_kills,
            },
        },
        "blkio_stats": {
            "io_service_bytes_recursive": [entry("read", blkio.read_bytes), entry("write", blkio.write_bytes), entry("total", blkio.read_bytes.saturating_add(blkio.write_bytes))],
            "io_serviced_recursive": [entry("read", blkio.read_ops), entry("write", blkio.write_ops), entry("total", blkio.read_ops.saturating_add(blkio.write_ops))],
            "io_queue_recursive": [],
            "io_service_time_recursive": [],
            "io_wait_time_recursive": [],
            "io_merged_recursive": [],
            "io_time_recursive": [],
            "sectors_recursive": [],
        },
        "storage_stats": {},
        // Every container of a task shares its network namespace.
        "networks": networks_json(&task.sample.networks),
    }))
}

/// `/task/stats`: each container of the task by its ID, its stats or null when it has none
/// (as ECS answers for a container that is not running).
pub(crate) fn task_stats(view: &TaskView, latest: Option<&Snapshot>) -> Value {
    let mut out = Map::new();
    for c in &view.state.containers {
        let stats = latest
            .and_then(|l| container_stats(view, &c.name, l))
            .unwrap_or(Value::Null);
        out.insert(c.runtime_id.clone(), stats);
    }
    Value::Object(out)
}

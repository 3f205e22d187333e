//! `/metrics` in Prometheus' text format: container metrics under cAdvisor's names and units
//! (what the kubelet exposes, so existing dashboards work), labelled with `task_id`,
//! `container_name`, `task_definition_family` and `task_definition_revision`; task network
//! counters with `interface`; the host's and the agent's own figures (`berth_host_*`,
//! `berth_agent_*`). Built from the latest snapshot on each scrape.

use std::sync::atomic::AtomicU64;

use berth_proto::v1::TaskStatus;
use berth_runtime::{CgroupStats, InterfaceStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AGENT;
use super::collect::{Snapshot, TaskMetrics};
use crate::engine::TaskView;

/// The content type of Prometheus' text format, served unless OpenMetrics is asked for.
pub(crate) const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics, what prometheus-client writes.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    task_id: String,
    container_name: String,
    task_definition_family: String,
    task_definition_revision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    task_id: String,
    task_definition_family: String,
    task_definition_revision: String,
    interface: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// One family a metric, filled from the snapshot, then registered.
#[derive(Default)]
struct Containers {
    cpu_usage: Family<ContainerLabels, FloatCounter>,
    cpu_user: Family<ContainerLabels, FloatCounter>,
    cpu_system: Family<ContainerLabels, FloatCounter>,
    cfs_periods: Family<ContainerLabels, Counter>,
    cfs_throttled_periods: Family<ContainerLabels, Counter>,
    cfs_throttled: Family<ContainerLabels, FloatCounter>,
    memory_usage: Family<ContainerLabels, Gauge>,
    memory_working_set: Family<ContainerLabels, Gauge>,
    memory_rss: Family<ContainerLabels, Gauge>,
    memory_cache: Family<ContainerLabels, Gauge>,
    memory_limit: Family<ContainerLabels, Gauge>,
    memory_failcnt: Family<ContainerLabels, Gauge>,
    oom_events: Family<ContainerLabels, Counter>,
    threads: Family<ContainerLabels, Gauge>,
    threads_max: Family<ContainerLabels, Gauge>,
    fs_reads_bytes: Family<ContainerLabels, Counter>,
    fs_writes_bytes: Family<ContainerLabels, Counter>,
    fs_reads: Family<ContainerLabels, Counter>,
    fs_writes: Family<ContainerLabels, Counter>,
    rx_bytes: Family<InterfaceLabels, Counter>,
    rx_packets: Family<InterfaceLabels, Counter>,
    rx_errors: Family<InterfaceLabels, Counter>,
    rx_dropped: Family<InterfaceLabels, Counter>,
    tx_bytes: Family<InterfaceLabels, Counter>,
    tx_packets: Family<InterfaceLabels, Counter>,
    tx_errors: Family<InterfaceLabels, Counter>,
    tx_dropped: Family<InterfaceLabels, Counter>,
}

const NS: f64 = 1e9;
/// The kernel's limit for "no limit" on a gauge would be meaningless; cAdvisor reports 0.
const NO_LIMIT: i64 = 0;

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Containers {
    fn add(&self, labels: &ContainerLabels, stats: &CgroupStats) {
        if let Some(cpu) = stats.cpu {
            self.cpu_usage
                .get_or_create(labels)
                .inc_by(cpu.usage_ns as f64 / NS);
            self.cpu_user
                .get_or_create(labels)
                .inc_by(cpu.user_ns as f64 / NS);
            self.cpu_system
                .get_or_create(labels)
                .inc_by(cpu.system_ns as f64 / NS);
            self.cfs_periods.get_or_create(labels).inc_by(cpu.periods);
            self.cfs_throttled_periods
                .get_or_create(labels)
                .inc_by(cpu.throttled_periods);
            self.cfs_throttled
                .get_or_create(labels)
                .inc_by(cpu.throttled_ns as f64 / NS);
        }
        if let Some(m) = stats.memory {
            self.memory_usage
                .get_or_create(labels)
                .set(gauge(m.usage_bytes));
            self.memory_working_set
                .get_or_create(labels)
                .set(gauge(m.working_set_bytes));
            self.memory_rss
                .get_or_create(labels)
                .set(gauge(m.rss_bytes));
            self.memory_cache
                .get_or_create(labels)
                .set(gauge(m.cache_bytes));
            self.memory_limit
                .get_or_create(labels)
                .set(m.limit_bytes.map_or(NO_LIMIT, gauge));
            self.memory_failcnt
                .get_or_create(labels)
                .set(gauge(m.failcnt));
            self.oom_events.get_or_create(labels).inc_by(m.oom_kills);
        }
        if let Some(p) = stats.pids {
            self.threads.get_or_create(labels).set(gauge(p.current));
            self.threads_max
                .get_or_create(labels)
                .set(p.limit.map_or(NO_LIMIT, gauge));
        }
        if let Some(io) = stats.blkio {
            self.fs_reads_bytes
                .get_or_create(labels)
                .inc_by(io.read_bytes);
            self.fs_writes_bytes
                .get_or_create(labels)
                .inc_by(io.write_bytes);
            self.fs_reads.get_or_create(labels).inc_by(io.read_ops);
            self.fs_writes.get_or_create(labels).inc_by(io.write_ops);
        }
    }

    fn add_interface(&self, task: &TaskMetrics, interface: &InterfaceStats) {
        let labels = InterfaceLabels {
            task_id: task.task_id.clone(),
            task_definition_family: task.family.clone(),
            task_definition_revision: task.revision.to_string(),
            interface: interface.name.clone(),
        };
        self.rx_bytes
            .get_or_create(&labels)
            .inc_by(interface.rx_bytes);
        self.rx_packets
            .get_or_create(&labels)
            .inc_by(interface.rx_packets);
        self.rx_errors
            .get_or_create(&labels)
            .inc_by(interface.rx_errors);
        self.rx_dropped
            .get_or_create(&labels)
            .inc_by(interface.rx_dropped);
        self.tx_bytes
            .get_or_create(&labels)
            .inc_by(interface.tx_bytes);
        self.tx_packets
            .get_or_create(&labels)
            .inc_by(interface.tx_packets);
        self.tx_errors
            .get_or_create(&labels)
            .inc_by(interface.tx_errors);
        self.tx_dropped
            .get_or_create(&labels)
            .inc_by(interface.tx_dropped);
    }

    fn register(self, r: &mut Registry) {
        // Counters get their `_total` suffix from the registry.
        r.register(
            "container_cpu_usage_seconds",
            "Cumulative CPU time consumed",
            self.cpu_usage,
        );
        r.register(
            "container_cpu_user_seconds",
            "Cumulative user CPU time consumed",
            self.cpu_user,
        );
        r.register(
            "container_cpu_system_seconds",
            "Cumulative system CPU time consumed",
            self.cpu_system,
        );
        r.register(
            "container_cpu_cfs_periods",
            "Number of elapsed enforcement period intervals",
            self.cfs_periods,
        );
        r.register(
            "container_cpu_cfs_throttled_periods",
            "Number of throttled period intervals",
            self.cfs_throttled_periods,
        );
        r.register(
            "container_cpu_cfs_throttled_seconds",
            "Total time duration the container has been throttled",
            self.cfs_throttled,
        );
        r.register(
            "container_memory_usage_bytes",
            "Current memory usage, including all memory regardless of when it was accessed",
            self.memory_usage,
        );
        r.register(
            "container_memory_working_set_bytes",
            "Current working set",
            self.memory_working_set,
        );
        r.register(
            "container_memory_rss",
            "Size of RSS in bytes",
            self.memory_rss,
        );
        r.register(
            "container_memory_cache",
            "Number of bytes of page cache memory",
            self.memory_cache,
        );
        r.register(
            "container_spec_memory_limit_bytes",
            "Memory limit for the container (0: none)",
            self.memory_limit,
        );
        // cAdvisor's name and type: a gauge, though the kernel's count only grows.
        r.register(
            "container_memory_failcnt",
            "Number of memory usage hits limits",
            self.memory_failcnt,
        );
        r.register(
            "container_oom_events",
            "Count of out of memory events observed for the container",
            self.oom_events,
        );
        r.register(
            "container_threads",
            "Number of threads running inside the container",
            self.threads,
        );
        r.register(
            "container_threads_max",
            "Maximum number of threads allowed inside the container (0: no limit)",
            self.threads_max,
        );
        r.register(
            "container_fs_reads_bytes",
            "Cumulative count of bytes read",
            self.fs_reads_bytes,
        );
        r.register(
            "container_fs_writes_bytes",
            "Cumulative count of bytes written",
            self.fs_writes_bytes,
        );
        r.register(
            "container_fs_reads",
            "Cumulative count of reads completed",
            self.fs_reads,
        );
        r.register(
            "container_fs_writes",
            "Cumulative count of writes completed",
            self.fs_writes,
        );
        r.register(
            "container_network_receive_bytes",
            "Cumulative count of bytes received",
            self.rx_bytes,
        );
        r.register(
            "container_network_receive_packets",
            "Cumulative count of packets received",
            self.rx_packets,
        );
        r.register(
            "container_network_receive_errors",
            "Cumulative count of errors encountered while receiving",
            self.rx_errors,
        );
        r.register(
            "container_network_receive_packets_dropped",
            "Cumulative count of packets dropped while receiving",
            self.rx_dropped,
        );
        r.register(
            "container_network_transmit_bytes",
            "Cumulative count of bytes transmitted",
            self.tx_bytes,
        );
        r.register(
            "container_network_transmit_packets",
            "Cumulative count of packets transmitted",
            self.tx_packets,
        );
        r.register(
            "container_network_transmit_errors",
            "Cumulative count of errors encountered while transmitting",
            self.tx_errors,
        );
        r.register(
            "container_network_transmit_packets_dropped",
            "Cumulative count of packets dropped while transmitting",
            self.tx_dropped,
        );
    }
}

/// The exposition text of `snapshot` (None before the first pass) and the tasks by status.
pub(crate) fn render(snapshot: Option<&Snapshot>, views: &[TaskView]) -> String {
    let mut registry = Registry::default();
    if let Some(snapshot) = snapshot {
        let containers = Containers::default();
        for task in &snapshot.tasks {
            for container in &task.sample.containers {
                let labels = ContainerLabels {
                    task_id: task.task_id.clone(),
                    container_name: container.name.clone(),
                    task_definition_family: task.family.clone(),
                    task_definition_revision: task.revision.to_string(),
                };
                containers.add(&labels, &container.stats);
            }
            for interface in &task.sample.networks {
                containers.add_interface(task, interface);
            }
        }
        containers.register(&mut registry);
        register_host(&mut registry, snapshot);
    }
    let tasks: Family<StatusLabels, Gauge> = Family::default();
    for status in [
        TaskStatus::Pending,
        TaskStatus::Pulled,
        TaskStatus::Created,
        TaskStatus::Running,
        TaskStatus::Stopped,
    ] {
        let count = views
            .iter()
            .filter(|v| v.state.status == status as i32)
            .count();
        let name = status.as_str_name().trim_start_matches("TASK_STATUS_");
        tasks
            .get_or_create(&StatusLabels {
                status: name.to_owned(),
            })
            .set(gauge(count as u64));
    }
    registry.register(
        "berth_agent_tasks",
        "Tasks the agent holds, by status",
        tasks,
    );
    AGENT.register(&mut registry);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

fn register_host(r: &mut Registry, snapshot: &Snapshot) {
    let h = &snapshot.host;
    let float = |v: f64| {
        let g = FloatGauge::default();
        g.set(v);
        g
    };
    let int = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(gauge(v));
        g
    };
    r.register(
        "berth_host_cpu_usage_ratio",
        "Share of the host's CPUs busy over the last sampling interval, 0 to 1",
        float(h.cpu_percent / 100.0),
    );
    r.register(
        "berth_host_cpus",
        "CPUs of the host",
        int(u64::from(h.cpus)),
    );
    r.register(
        "berth_host_memory_total_bytes",
        "Memory of the host",
        int(h.memory_total_bytes),
    );
    r.register(
        "berth_host_memory_used_bytes",
        "Memory in use on the host",
        int(h.memory_used_bytes),
    );
    r.register(
        "berth_host_memory_available_bytes",
        "Memory available for new work on the host",
        int(h.memory_available_bytes),
    );
    r.register(
        "berth_host_load1",
        "Load average over 1 minute",
        float(h.load[0]),
    );
    r.register(
        "berth_host_load5",
        "Load average over 5 minutes",
        float(h.load[1]),
    );
    r.register(
        "berth_host_load15",
        "Load average over 15 minutes",
        float(h.load[2]),
    );
    if let Some(fs) = h.data_dir {
        r.register(
            "berth_host_data_dir_size_bytes",
            "Size of the filesystem of the agent's data dir",
            int(fs.total_bytes),
        );
        r.register(
            "berth_host_data_dir_free_bytes",
            "Free space on the filesystem of the agent's data dir",
            int(fs.free_bytes),
        );
    }
    let cpu = FloatCounter::default();
    cpu.inc_by(h.agent_cpu_seconds);
    r.register(
        "berth_agent_cpu_seconds",
        "CPU time the agent process used",
        cpu,
    );
    r.register(
        "berth_agent_resident_memory_bytes",
        "Resident memory of the agent process",
        int(h.agent_rss_bytes),
    );
    let at = snapshot
        .collected_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    r.register(
        "berth_agent_last_collection_timestamp_seconds",
        "When the last resource sample was taken (Unix time)",
        float(at),
    );
}

//! The sampling loop: every `metrics_interval`, one pass over the running containers of every
//! task the engine holds and over the host, on a blocking thread (plain file reads, no process
//! spawned), published as the latest `Snapshot`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_proto::v1::{
    CgroupMetrics, ContainerMetrics, ContainerStatus, DiskUsage, HostMetrics, InterfaceMetrics,
    MetricsBatch, TaskMetrics as TaskMetricsPb, TaskStatus,
};
use berth_runtime::{CgroupStats, FilesystemUsage, InterfaceStats, StatsSampler, TaskSample};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::AGENT;
use super::host::{HostSample, HostSampler};
use super::stream::BatchBuffer;
use crate::engine::{EngineHandle, TaskView};
use crate::health::Health;

/// One pass: the host and every task with running containers.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub collected_at: SystemTime,
    pub host: HostSample,
    pub tasks: Vec<TaskMetrics>,
    /// The pass before (without its own previous), for Docker's `precpu_stats`.
    pub previous: Option<Arc<Snapshot>>,
}

/// One task's sample with what labels it.
#[derive(Debug, Clone)]
pub(crate) struct TaskMetrics {
    pub task_id: String,
    pub family: String,
    pub revision: u32,
    pub sample: TaskSample,
}

/// What reads a task's containers (the runtime's sampler; a fake in tests).
pub(crate) trait TaskSampler: Send + Sync + 'static {
    fn sample(&self, task_id: &str, containers: &[String]) -> Option<TaskSample>;

    /// After a pass: lets go of what is kept for tasks not in it (the runtime's sampler keeps
    /// their cgroup files open between passes).
    fn retain(&self, task_ids: &[&str]);
}

impl TaskSampler for StatsSampler {
    fn sample(&self, task_id: &str, containers: &[String]) -> Option<TaskSample> {
        self.sample_task(task_id, containers)
            .inspect_err(|error| tracing::warn!(task.id = task_id, %error, "cannot sample task"))
            .ok()
    }

    fn retain(&self, task_ids: &[&str]) {
        self.retain_tasks(task_ids);
    }
}

/// Where each pass's snapshot goes.
pub(crate) type Latest = watch::Sender<Option<Arc<Snapshot>>>;

/// Where each pass goes: the latest snapshot (the introspection endpoint), the batch buffer
/// (the scheduler) and the agent's health (the time of the last pass).
pub(crate) struct Sinks {
    pub latest: Latest,
    pub batches: Arc<BatchBuffer>,
    pub health: Arc<Health>,
}

/// Samples every `interval` until `cancel`. A pass that overruns the interval delays the next
/// one rather than piling passes up.
pub(crate) async fn run(
    engine: EngineHandle,
    sampler: Arc<dyn TaskSampler>,
    mut host: HostSampler,
    interval: Duration,
    sinks: Sinks,
    cancel: CancellationToken,
) {
    let Sinks {
        latest,
        batches,
        health,
    } = sinks;
    let mut previous: Option<Arc<Snapshot>> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let views = engine.views().await;
        let sampler = Arc::clone(&sampler);
        let started = Instant::now();
        let pass = tokio::task::spawn_blocking(move || {
            let snapshot = collect(&views, &*sampler, &mut host);
            (host, snapshot)
        });
        let (returned, mut snapshot) = match pass.await {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "a metrics pass failed; sampling stops");
                return;
            }
        };
        host = returned;
        let took = started.elapsed();
        AGENT.collections.inc();
        AGENT.collection_seconds.inc_by(took.as_secs_f64());
        tracing::trace!(
            tasks = snapshot.tasks.len(),
            took_us = took.as_micros() as u64,
            "metrics pass"
        );
        health.metrics_collected(snapshot.collected_at);
        batches.push(batch(&snapshot));
        let bare = Arc::new(snapshot.clone());
        snapshot.previous = previous.replace(bare);
        latest.send_replace(Some(Arc::new(snapshot)));
    }
}

/// One pass over `views`: tasks that are not stopped, and their RUNNING containers. The
/// sampler then lets go of every other task.
pub(crate) fn collect(
    views: &[TaskView],
    sampler: &dyn TaskSampler,
    host: &mut HostSampler,
) -> Snapshot {
    let mut tasks = Vec::new();
    let mut sampled: Vec<&str> = Vec::with_capacity(views.len());
    for view in views {
        if view.state.status >= TaskStatus::Stopped as i32 {
            continue;
        }
        let running: Vec<String> = view
            .state
            .containers
            .iter()
            .filter(|c| c.status == ContainerStatus::Running as i32)
            .map(|c| c.name.clone())
            .collect();
        if running.is_empty() {
            continue;
        }
        sampled.push(&view.state.task_id);
        let Some(sample) = sampler.sample(&view.state.task_id, &running) else {
            continue;
        };
        tasks.push(TaskMetrics {
            task_id: view.state.task_id.clone(),
            family: view.definition.family.clone(),
            revision: view.definition.revision,
            sample,
        });
    }
    sampler.retain(&sampled);
    Snapshot {
        collected_at: SystemTime::now(),
        host: host.sample(),
        tasks,
        previous: None,
    }
}

/// A snapshot as a batch (the instance ID is set when it is sent).
pub(crate) fn batch(snapshot: &Snapshot) -> MetricsBatch {
    let mut containers = Vec::new();
    let mut tasks = Vec::with_capacity(snapshot.tasks.len());
    let mut task_cpu_ns = 0u64;
    for task in &snapshot.tasks {
        let total = task.sample.total();
        task_cpu_ns = task_cpu_ns.saturating_add(total.cpu.map_or(0, |c| c.usage_ns));
        for c in &task.sample.containers {
            let memory = c.stats.memory.unwrap_or_default();
            containers.push(ContainerMetrics {
                task_id: task.task_id.clone(),
                container_name: c.name.clone(),
                cpu_usage_ns: c.stats.cpu.map_or(0, |c| c.usage_ns),
                memory_usage_bytes: memory.usage_bytes,
                memory_limit_bytes: memory.limit_bytes.unwrap_or(0),
                stats: Some(cgroup_metrics(&c.stats)),
            });
        }
        tasks.push(TaskMetricsPb {
            task_id: task.task_id.clone(),
            task_definition_family: task.family.clone(),
            task_definition_revision: task.revision,
            stats: Some(cgroup_metrics(&total)),
            networks: task.sample.networks.iter().map(interface_metrics).collect(),
        });
    }
    let host = &snapshot.host;
    MetricsBatch {
        container_instance_id: String::new(),
        collected_at: Some(prost_types::Timestamp::from(snapshot.collected_at)),
        host: Some(HostMetrics {
            cpu_usage_ns: task_cpu_ns,
            memory_used_bytes: host.memory_used_bytes,
            memory_total_bytes: host.memory_total_bytes,
            cpu_percent: host.cpu_percent,
            cpus: host.cpus,
            memory_available_bytes: host.memory_available_bytes,
            load_1m: host.load[0],
            load_5m: host.load[1],
            load_15m: host.load[2],
            data_dir: host.data_dir.map(disk_usage),
            containerd_root: host.containerd_root.map(disk_usage),
            agent_cpu_seconds: host.agent_cpu_seconds,
            agent_rss_bytes: host.agent_rss_bytes,
        }),
        containers,
        tasks,
        pulls: Vec::new(),
    }
}

fn disk_usage(fs: FilesystemUsage) -> DiskUsage {
    DiskUsage {
        total_bytes: fs.total_bytes,
        free_bytes: fs.free_bytes,
    }
}

/// A cgroup reading on the wire: a missing controller reads zero with its flag off.
pub(crate) fn cgroup_metrics(stats: &CgroupStats) -> CgroupMetrics {
    let cpu = stats.cpu.unwrap_or_default();
    let memory = stats.memory.unwrap_or_default();
    let pids = stats.pids.unwrap_or_default();
    let blkio = stats.blkio.unwrap_or_default();
    CgroupMetrics {
        has_cpu: stats.cpu.is_some(),
        cpu_usage_ns: cpu.usage_ns,
        cpu_user_ns: cpu.user_ns,
        cpu_system_ns: cpu.system_ns,
        cpu_periods: cpu.periods,
        cpu_throttled_periods: cpu.throttled_periods,
        cpu_throttled_ns: cpu.throttled_ns,
        has_memory: stats.memory.is_some(),
        memory_usage_bytes: memory.usage_bytes,
        memory_working_set_bytes: memory.working_set_bytes,
        memory_rss_bytes: memory.rss_bytes,
        memory_cache_bytes: memory.cache_bytes,
        memory_limit_bytes: memory.limit_bytes.unwrap_or(0),
        memory_failcnt: memory.failcnt,
        memory_oom_kills: memory.oom_kills,
        has_pids: stats.pids.is_some(),
        pids: pids.current,
        pids_limit: pids.limit.unwrap_or(0),
        has_blkio: stats.blkio.is_some(),
        blkio_read_bytes: blkio.read_bytes,
        blkio_write_bytes: blkio.write_bytes,
        blkio_read_ops: blkio.read_ops,
        blkio_write_ops: blkio.write_ops,
    }
}

fn interface_metrics(i: &InterfaceStats) -> InterfaceMetrics {
    InterfaceMetrics {
        name: i.name.clone(),
        rx_bytes: i.rx_bytes,
        rx_packets: i.rx_packets,
        rx_errors: i.rx_errors,
        rx_dropped: i.rx_dropped,
        tx_bytes: i.tx_bytes,
        tx_packets: i.tx_packets,
        tx_errors: i.tx_errors,
        tx_dropped: i.tx_dropped,
    }
}

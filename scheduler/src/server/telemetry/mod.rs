//! The scheduler's telemetry: a bounded in-memory window of the agents' metric batches per
//! task, container and instance, with rates derived from it, and the latest health each
//! agent sent on its heartbeat.
//!
//! Memory is bounded by design: each series is a ring of at most [`series::POINTS`] points
//! (`series.rs`); a task's series (and its containers') go as soon as a batch of its instance
//! no longer holds it (it stopped, or moved), and an instance's as soon as it has been silent
//! for the whole window. Nothing here is persisted: a restarted scheduler fills its window
//! again from the next batches.

mod series;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use berth_proto::v1::{
    AgentHealth, ContainerStats, HostMetrics, InstanceStats, InterfaceMetrics, MeasuredUsage,
    MetricsBatch, StatsPoint, TaskStats,
};

use series::{Series, Timed, UsagePoint, history, latest_rates};

/// The window's default length.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

const MIB: u64 = 1024 * 1024;

/// The windows of every task, container and instance the agents report.
#[derive(Debug)]
pub(crate) struct Telemetry {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    instances: HashMap<String, InstanceEntry>,
    tasks: HashMap<String, TaskEntry>,
}

#[derive(Debug)]
struct InstanceEntry {
    host: Series<HostPoint>,
    measured: Option<MeasuredUsage>,
    /// The tasks of its latest batch.
    tasks: Vec<String>,
    health: Option<(AgentHealth, SystemTime)>,
    /// When the scheduler last heard from it (a batch or a heartbeat).
    heard: Instant,
}

#[derive(Debug)]
struct TaskEntry {
    instance_id: String,
    family: String,
    revision: u32,
    usage: Series<UsagePoint>,
    networks: Vec<InterfaceMetrics>,
    containers: BTreeMap<String, Series<UsagePoint>>,
}

#[derive(Debug, Clone)]
struct HostPoint {
    at: SystemTime,
    host: HostMetrics,
}

impl Timed for HostPoint {
    fn at(&self) -> SystemTime {
        self.at
    }
}

impl Telemetry {
    pub(crate) fn new(window: Duration) -> Self {
        Telemetry {
            window: window.max(Duration::from_secs(1)),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an instance's batch in, received at `now`.
    pub(crate) fn ingest(&self, batch: &MetricsBatch, now: Instant) {
        let Some(at) = batch
            .collected_at
            .and_then(|t| SystemTime::try_from(t).ok())
        else {
            tracing::debug!(instance.id = %batch.container_instance_id, "metrics batch without a valid time ignored");
            return;
        };
        let window = self.window;
        let mut inner = self.lock();
        let inner = &mut *inner;
        // Tasks of the instance that are no longer in its batch are gone, with their series.
        let reported: Vec<String> = batch.tasks.iter().map(|t| t.task_id.clone()).collect();
        if let Some(entry) = inner.instances.get(&batch.container_instance_id) {
            for gone in entry.tasks.iter().filter(|t| !reported.contains(t)) {
                if inner
                    .tasks
                    .get(gone)
                    .is_some_and(|t| t.instance_id == batch.container_instance_id)
                {
                    inner.tasks.remove(gone);
                }
            }
        }
        let (mut tasks_cores, mut tasks_memory) = (0.0f64, 0u64);
        for task in &batch.tasks {
            let entry = inner
                .tasks
                .entry(task.task_id.clone())
                .or_insert_with(|| TaskEntry {
                    instance_id: batch.container_instance_id.clone(),
                    family: String::new(),
                    revision: 0,
                    usage: Series::new(window),
                    networks: Vec::new(),
                    containers: BTreeMap::new(),
                });
            entry.instance_id.clone_from(&batch.container_instance_id);
            entry.family.clone_from(&task.task_definition_family);
            entry.revision = task.task_definition_revision;
            let stats = task.stats.unwrap_or_default();
            let (rx, tx) = task.networks.iter().fold((0u64, 0u64), |(rx, tx), i| {
                (rx.saturating_add(i.rx_bytes), tx.saturating_add(i.tx_bytes))
            });
            entry.usage.push(UsagePoint {
                at,
                stats,
                rx_bytes: rx,
                tx_bytes: tx,
            });
            entry.networks.clone_from(&task.networks);
            tasks_cores += latest_rates(&entry.usage).cpu_percent / 100.0;
            tasks_memory = tasks_memory.saturating_add(stats.memory_working_set_bytes);
            let names: Vec<&str> = batch
                .containers
                .iter()
                .filter(|c| c.task_id == task.task_id)
                .map(|c| c.container_name.as_str())
                .collect();
            entry
                .containers
                .retain(|name, _| names.contains(&name.as_str()));
        }
        for c in &batch.containers {
            let Some(task) = inner.tasks.get_mut(&c.task_id) else {
                continue;
            };
            task.containers
                .entry(c.container_name.clone())
                .or_insert_with(|| Series::new(window))
                .push(UsagePoint {
                    at,
                    stats: c.stats.unwrap_or_default(),
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
        }
        let host = batch.host.unwrap_or_default();
        let measured = MeasuredUsage {
            tasks_cpu: (tasks_cores * 1024.0).round() as u64,
            tasks_memory_mib: tasks_memory / MIB,
            host_cpu_percent: host.cpu_percent,
            host_memory_used_mib: host.memory_used_bytes / MIB,
            collected_at: batch.collected_at,
        };
        let instance = inner
            .instances
            .entry(batch.container_instance_id.clone())
            .or_insert_with(|| InstanceEntry {
                host: Series::new(window),
                measured: None,
                tasks: Vec::new(),
                health: None,
                heard: now,
            });
        instance.host.push(HostPoint { at, host });
        instance.measured = Some(measured);
        instance.tasks = reported;
        instance.heard = now;
        inner.sweep(window, now);
    }

    /// An agent's health from its heartbeat, received at `at` (`now` on the monotonic clock).
    pub(crate) fn record_health(
        &self,
        instance_id: &str,
        health: AgentHealth,
        at: SystemTime,
        now: Instant,
    ) {
        let window = self.window;
        let mut inner = self.lock();
        let instance = inner
            .instances
            .entry(instance_id.to_owned())
            .or_insert_with(|| InstanceEntry {
                host: Series::new(window),
                measured: None,
                tasks: Vec::new(),
                health: None,
                heard: now,
            });
        instance.health = Some((health, at));
        instance.heard = now;
    }

    /// The latest health of an instance and what it measured in use.
    pub(crate) fn instance_status(
        &self,
        instance_id: &str,
    ) -> (Option<(AgentHealth, SystemTime)>, Option<MeasuredUsage>) {
        let inner = self.lock();
        match inner.instances.get(instance_id) {
            Some(i) => (i.health.clone(), i.measured),
            None => (None, None),
        }
    }

    /// The instances whose latest heartbeat says their agent cannot write its data dir, with
    /// why (they take no new task until a heartbeat says it can again).
    pub(crate) fn storage_degraded(&self) -> std::collections::BTreeMap<String, String> {
        let inner = self.lock();
        inner
            .instances
            .iter()
            .filter_map(|(id, i)| {
                let (health, _) = i.health.as_ref()?;
                let d = health.storage_degraded.as_ref()?;
                Some((id.clone(), degraded_reason(d)))
            })
            .collect()
    }

    /// Task IDs in the window.
    pub(crate) fn task_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().tasks.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// A task's latest sample, rates, containers and (when asked) the window's points.
    pub(crate) fn task(&self, task_id: &str, with_history: bool) -> Option<TaskStats> {
        let inner = self.lock();
        let entry = inner.tasks.get(task_id)?;
        let latest = entry.usage.latest()?;
        let containers = entry
            .containers
            .iter()
            .filter_map(|(name, series)| {
                Some(ContainerStats {
                    container_name: name.clone(),
                    stats: Some(series.latest()?.stats),
                    rates: Some(latest_rates(series)),
                    history: if with_history {
                        history(series)
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect();
        Some(TaskStats {
            task_id: task_id.to_owned(),
            container_instance_id: entry.instance_id.clone(),
            task_definition_family: entry.family.clone(),
            task_definition_revision: entry.revision,
            collected_at: Some(prost_types::Timestamp::from(latest.at)),
            stats: Some(latest.stats),
            networks: entry.networks.clone(),
            rates: Some(latest_rates(&entry.usage)),
            containers,
            history: if with_history {
                history(&entry.usage)
            } else {
                Vec::new()
            },
        })
    }

    /// An instance's latest host sample, measured use and health.
    pub(crate) fn instance(&self, instance_id: &str, with_history: bool) -> Option<InstanceStats> {
        let inner = self.lock();
        let entry = inner.instances.get(instance_id)?;
        let latest = entry.host.latest();
        let history = if with_history {
            entry
                .host
                .points()
                .map(|p| StatsPoint {
                    at: Some(prost_types::Timestamp::from(p.at)),
                    cpu_percent: p.host.cpu_percent,
                    memory_usage_bytes: p.host.memory_used_bytes,
                    memory_working_set_bytes: p.host.memory_used_bytes,
                    rx_bytes_per_second: 0.0,
                    tx_bytes_per_second: 0.0,
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(InstanceStats {
            container_instance_id: instance_id.to_owned(),
            collected_at: latest.map(|p| prost_types::Timestamp::from(p.at)),
            host: latest.map(|p| p.host),
            measured: entry.measured,
            health: entry.health.as_ref().map(|(h, _)| h.clone()),
            health_at: entry
                .health
                .as_ref()
                .map(|(_, at)| prost_types::Timestamp::from(*at)),
            history,
        })
    }

    /// How many series the window holds (tasks, containers, instances).
    #[cfg(test)]
    pub(crate) fn series_count(&self) -> usize {
        let inner = self.lock();
        inner.instances.len()
            + inner
                .tasks
                .values()
                .map(|t| 1 + t.containers.len())
                .sum::<usize>()
    }
}

impl Inner {
    /// Drops instances silent for the whole window, with their tasks.
    fn sweep(&mut self, window: Duration, now: Instant) {
        let silent: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.heard) > window)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.instances.remove(&id);
            self.tasks.retain(|_, t| t.instance_id != id);
        }
    }
}

/// Why an agent that reports `storage_degraded` takes no new task.
pub(crate) fn degraded_reason(d: &berth_proto::v1::StorageDegraded) -> String {
    let errno = if d.errno != 0 {
        format!(" (errno {})", d.errno)
    } else {
        String::new()
    };
    format!("its agent cannot write {}{errno}: {}", d.path, d.error)
}

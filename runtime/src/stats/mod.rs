//! Resource statistics of running containers and tasks, read from their cgroups and network
//! namespaces in one pass without spawning a process.
//!
//! Each task's cgroup (`/<parent>/<task-id>`) and each container's beneath it are read file by
//! file, each file once a pass, with every field mapped for cgroup v1 and v2 (`v1.rs`,
//! `v2.rs`: pure parsers of the kernel's formats). The sampler keeps each cgroup's files open
//! between passes and reads them with `pread` into one reused buffer (`files.rs`,
//! `handle.rs`); limits are read when a cgroup is opened, and each cgroup is opened again
//! after a minute so a changed limit shows. A controller that is not mounted (v1) or not
//! enabled (v2) leaves its part of the sample empty; a container whose cgroup disappears
//! while it is read (it exited) is left out of the sample rather than failing the pass. A
//! task's network counters come from `/proc/<pid>/net/dev` of one process in each of its
//! network namespaces (`netdev.rs`), so reading them never enters a namespace.

mod files;
mod fs;
mod handle;
mod netdev;
mod parse;
mod read;
mod v1;
mod v2;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::cgroup::{CgroupError, Cgroups};

pub use files::IoCounts;
pub use fs::{FilesystemUsage, filesystem_usage};
use read::{Cache, Place};

/// How long a cgroup's files (and the limits read with them) are kept before they are opened
/// again.
const REOPEN_AFTER: Duration = Duration::from_secs(60);

/// Samples tasks' cgroups and networks. It keeps the files of the cgroups it sampled open
/// between calls (clones share them) until [`StatsSampler::retain_tasks`] lets a task go; its
/// reads are plain blocking file reads (run a pass on a blocking thread).
#[derive(Debug, Clone)]
pub struct StatsSampler {
    cgroups: Arc<Cgroups>,
    proc_root: PathBuf,
    reopen_after: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl StatsSampler {
    pub(crate) fn new(cgroups: Arc<Cgroups>) -> Self {
        Self::with_reader(cgroups, PathBuf::from("/proc"), files::Reader::new())
    }

    fn with_reader(cgroups: Arc<Cgroups>, proc_root: PathBuf, reader: files::Reader) -> Self {
        StatsSampler {
            cgroups,
            proc_root,
            reopen_after: REOPEN_AFTER,
            cache: Arc::new(Mutex::new(Cache::new(reader))),
        }
    }

    /// One sample of the named containers of a task; the files of its other containers are
    /// closed. Containers without a cgroup (not started, or exited while being read) are left
    /// out. Fails only on an invalid task ID.
    pub fn sample_task(
        &self,
        task_id: &str,
        containers: &[String],
    ) -> Result<TaskSample, CgroupError> {
        let rel = self.cgroups.task_rel(task_id)?;
        let place = Place {
            layout: self.cgroups.layout(),
            proc_root: &self.proc_root,
            reopen_after: self.reopen_after,
        };
        Ok(self.cache().sample_task(&place, &rel, containers))
    }

    /// Closes the files of every task not named (call it after each pass with the tasks it
    /// sampled).
    pub fn retain_tasks<S: AsRef<str>>(&self, task_ids: &[S]) {
        let keep: HashSet<String> = task_ids
            .iter()
            .filter_map(|id| self.cgroups.task_rel(id.as_ref()).ok())
            .collect();
        self.cache().retain(&keep);
    }

    /// The files opened and the reads made so far.
    pub fn io_counts(&self) -> IoCounts {
        self.cache().io_counts()
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while sampling leaves nothing half-written that matters: handles are
        // complete or absent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// CPU time of a cgroup, cumulative since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time, in nanoseconds.
    pub usage_ns: u64,
    /// CPU time in user mode, in nanoseconds.
    pub user_ns: u64,
    /// CPU time in kernel mode, in nanoseconds.
    pub system_ns: u64,
    /// CFS enforcement periods that elapsed while the cgroup had runnable tasks.
    pub periods: u64,
    /// Periods in which the cgroup was throttled (used up its quota).
    pub throttled_periods: u64,
    /// Total time the cgroup was throttled, in nanoseconds.
    pub throttled_ns: u64,
}

/// Memory of a cgroup, in bytes unless said otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Memory charged to the cgroup (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage_bytes: u64,
    /// Usage minus inactive file pages, as the kubelet computes it: what the OOM killer and
    /// eviction look at.
    pub working_set_bytes: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss_bytes: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache_bytes: u64,
    /// The hard limit; None when there is none.
    pub limit_bytes: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` of `memory.events`).
    pub failcnt: u64,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

/// Processes of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// Processes and threads in the cgroup.
    pub current: u64,
    /// The limit; None when there is none.
    pub limit: Option<u64>,
}

/// Block I/O of a cgroup, summed over its devices, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkioStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

/// One sample of a cgroup. A part is None when its controller is not available to the cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
    pub blkio: Option<BlkioStats>,
}

impl CgroupStats {
    /// Adds `other` into `self` (a task's figures are the sum of its containers'). Limits add
    /// up only when every part has one; a part present on either side is present in the sum.
    pub fn accumulate(&mut self, other: &CgroupStats) {
        self.cpu = sum(self.cpu, other.cpu, |a, b| CpuStats {
            usage_ns: a.usage_ns.saturating_add(b.usage_ns),
            user_ns: a.user_ns.saturating_add(b.user_ns),
            system_ns: a.system_ns.saturating_add(b.system_ns),
            periods: a.periods.saturating_add(b.periods),
            throttled_periods: a.throttled_periods.saturating_add(b.throttled_periods),
            throttled_ns: a.throttled_ns.saturating_add(b.throttled_ns),
        });
        self.memory = sum(self.memory, other.memory, |a, b| MemoryStats {
            usage_bytes: a.usage_bytes.saturating_add(b.usage_bytes),
            working_set_bytes: a.working_set_bytes.saturating_add(b.working_set_bytes),
            rss_bytes: a.rss_bytes.saturating_add(b.rss_bytes),
            cache_bytes: a.cache_bytes.saturating_add(b.cache_bytes),
            limit_bytes: a
                .limit_bytes
                .zip(b.limit_bytes)
                .map(|(x, y)| x.saturating_add(y)),
            failcnt: a.failcnt.saturating_add(b.failcnt),
            oom_kills: a.oom_kills.saturating_add(b.oom_kills),
        });
        self.pids = sum(self.pids, other.pids, |a, b| PidsStats {
            current: a.current.saturating_add(b.current),
            limit: a.limit.zip(b.limit).map(|(x, y)| x.saturating_add(y)),
        });
        self.blkio = sum(self.blkio, other.blkio, |a, b| BlkioStats {
            read_bytes: a.read_bytes.saturating_add(b.read_bytes),
            write_bytes: a.write_bytes.saturating_add(b.write_bytes),
            read_ops: a.read_ops.saturating_add(b.read_ops),
            write_ops: a.write_ops.saturating_add(b.write_ops),
        });
    }
}

fn sum<T: Copy>(a: Option<T>, b: Option<T>, add: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(add(a, b)),
        (a, b) => a.or(b),
    }
}

/// Counters of one network interface, cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// The interface's name inside its namespace (`eth0`).
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One container's sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSample {
    /// The container's name in its task.
    pub name: String,
    pub stats: CgroupStats,
}

/// One task's sample: its own cgroup (whose counters are hierarchical: its containers' sum,
/// plus the throttling of the task's CPU quota and its limits), its running containers (those
/// whose cgroup was there) and the interfaces of its own network namespaces (none in host
/// mode, loopback left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSample {
    pub task: Option<CgroupStats>,
    pub containers: Vec<ContainerSample>,
    pub networks: Vec<InterfaceStats>,
}

impl TaskSample {
    /// The task's figures: each part its cgroup's, else (no task cgroup, or a controller it
    /// lacks) the sum of its containers'.
    pub fn total(&self) -> CgroupStats {
        let mut sum = CgroupStats::default();
        for c in &self.containers {
            sum.accumulate(&c.stats);
        }
        let task = self.task.unwrap_or_default();
        CgroupStats {
            cpu: task.cpu.or(sum.cpu),
            memory: task.memory.or(sum.memory),
            pids: task.pids.or(sum.pids),
            blkio: task.blkio.or(sum.blkio),
        }
    }
}

#[cfg(test)]
mod pass_tests;
#[cfg(test)]
mod tests;

//! One cgroup as the sampler holds it between passes: the files it reads at every pass, kept
//! open; its limits (memory, pids), read once when it is opened, since a task's limits are set
//! when its cgroup is made; and one process in it, for its network namespace.
//!
//! Per pass a v1 cgroup costs ten reads (`cpuacct.usage`, `cpuacct.stat`, `cpu.stat`,
//! `memory.usage_in_bytes`, `memory.failcnt`, `memory.stat`, `memory.oom_control`,
//! `pids.current` and the two blkio throttle files), a v2 cgroup six (`cpu.stat`,
//! `memory.current`, `memory.stat`, `memory.events`, `pids.current`, `io.stat`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cgroup::{CgroupError, CgroupLayout};

use super::files::{Reader, Source, Stop};
use super::parse::{limit, single};
use super::{BlkioStats, CgroupStats, CpuStats, MemoryStats, PidsStats, v1, v2};

#[derive(Debug)]
pub(super) struct CgroupHandle {
    files: Files,
    limits: Limits,
    /// `cgroup.procs` (in v1, of the hierarchy that decides whether the cgroup is there).
    procs: PathBuf,
    /// A process in the cgroup, once one was looked for and found.
    pub(super) pid: Option<u32>,
    /// The network namespace of `pid` (`net:[<inode>]`), once looked up.
    pub(super) netns: Option<PathBuf>,
    /// `/proc/<pid>/net/dev`, once the pass read the namespace's counters through this
    /// cgroup: it reads that namespace for as long as it is open (its process may have exited
    /// since), and holds it alive, so it goes with the handle when the cgroup leaves the pass.
    pub(super) net_dev: Option<Source>,
    pub(super) opened_at: Instant,
}

#[derive(Debug)]
enum Files {
    V1(Box<V1Files>),
    V2(Box<V2Files>),
}

#[derive(Debug)]
struct V1Files {
    cpuacct_usage: Source,
    cpuacct_stat: Source,
    cpu_stat: Source,
    memory_usage: Source,
    memory_failcnt: Source,
    memory_stat: Source,
    memory_oom_control: Source,
    pids_current: Source,
    blkio_bytes: Source,
    blkio_ops: Source,
}

#[derive(Debug)]
struct V2Files {
    cpu_stat: Source,
    memory_current: Source,
    memory_stat: Source,
    memory_events: Source,
    pids_current: Source,
    io_stat: Source,
}

/// What opening a cgroup finds: its files, its limits and the directory whose `cgroup.procs`
/// lists its processes.
type Opened = (Files, Limits, PathBuf);

/// The limits read when the cgroup was opened; None is no limit.
#[derive(Debug, Default)]
struct Limits {
    memory: Option<u64>,
    pids: Option<u64>,
}

impl CgroupHandle {
    /// Opens the cgroup at `rel` (relative to each hierarchy root); None when it does not
    /// exist, before or after its files are opened.
    pub(super) fn open(
        layout: &CgroupLayout,
        rel: &str,
        reader: &mut Reader,
    ) -> Result<Option<Self>, CgroupError> {
        let opened_at = Instant::now();
        let opened = match layout {
            CgroupLayout::V2 { root } => open_v2(&root.join(rel), reader)?,
            CgroupLayout::V1 { mounts } => {
                let dir = |controller: &str| mounts.get(controller).map(|root| root.join(rel));
                open_v1(dir, reader)?
            }
        };
        let Some((files, limits, anchor)) = opened else {
            return Ok(None);
        };
        // The cgroup may have been removed while its files were being opened.
        Ok(anchor.is_dir().then(|| CgroupHandle {
            files,
            limits,
            procs: anchor.join("cgroup.procs"),
            pid: None,
            netns: None,
            net_dev: None,
            opened_at,
        }))
    }

    /// One sample; `Stop::Gone` when the cgroup was removed since it was opened.
    pub(super) fn sample(&self, reader: &mut Reader) -> Result<CgroupStats, Stop> {
        match &self.files {
            Files::V1(files) => sample_v1(files, &self.limits, reader),
            Files::V2(files) => sample_v2(files, &self.limits, reader),
        }
    }

    /// The first process listed in `cgroup.procs`, remembered; None when it has none.
    pub(super) fn find_pid(&mut self, reader: &mut Reader) -> Result<Option<u32>, Stop> {
        self.pid = reader.parse_path(&self.procs, |text| {
            Ok(text.lines().find_map(|l| l.trim().parse().ok()))
        })?;
        Ok(self.pid)
    }
}

/// A v2 cgroup's files and limits, and its directory; None when it is not there.
fn open_v2(dir: &Path, reader: &mut Reader) -> Result<Option<Opened>, CgroupError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut file = |name: &str| reader.open(dir.join(name));
    let files = V2Files {
        cpu_stat: file(v2::CPU_STAT)?,
        memory_current: file(v2::MEMORY_CURRENT)?,
        memory_stat: file(v2::MEMORY_STAT)?,
        memory_events: file(v2::MEMORY_EVENTS)?,
        pids_current: file(v2::PIDS_CURRENT)?,
        io_stat: file(v2::IO_STAT)?,
    };
    let limits = Limits {
        memory: read_limit(reader, &dir.join(v2::MEMORY_MAX), v2::MEMORY_MAX)?,
        pids: read_limit(reader, &dir.join(v2::PIDS_MAX), v2::PIDS_MAX)?,
    };
    Ok(Some((
        Files::V2(Box::new(files)),
        limits,
        dir.to_path_buf(),
    )))
}

/// A v1 cgroup's files and limits, and the directory that decides whether it is there (the
/// first mounted of memory, cpuacct, pids and cpu: runc creates a container's cgroup in
/// each); None when it is not there. `dir` is the cgroup's directory in a controller's
/// hierarchy, None when that controller is not mounted.
fn open_v1(
    dir: impl Fn(&str) -> Option<PathBuf>,
    reader: &mut Reader,
) -> Result<Option<Opened>, CgroupError> {
    let Some(anchor) = ["memory", "cpuacct", "pids", "cpu"]
        .iter()
        .find_map(|c| dir(c))
    else {
        return Ok(None);
    };
    if !anchor.is_dir() {
        return Ok(None);
    }
    let mut file = |controller: &str, name: &str| match dir(controller) {
        Some(d) => reader.open(d.join(name)),
        None => Ok(Source::Absent),
    };
    let files = V1Files {
        cpuacct_usage: file("cpuacct", v1::CPUACCT_USAGE)?,
        cpuacct_stat: file("cpuacct", v1::CPUACCT_STAT)?,
        cpu_stat: file("cpu", v1::CPU_STAT)?,
        memory_usage: file("memory", v1::MEMORY_USAGE)?,
        memory_failcnt: file("memory", v1::MEMORY_FAILCNT)?,
        memory_stat: file("memory", v1::MEMORY_STAT)?,
        memory_oom_control: file("memory", v1::MEMORY_OOM_CONTROL)?,
        pids_current: file("pids", v1::PIDS_CURRENT)?,
        blkio_bytes: file("blkio", v1::BLKIO_BYTES)?,
        blkio_ops: file("blkio", v1::BLKIO_OPS)?,
    };
    let mut limit_of = |controller: &str, name: &str| match dir(controller) {
        Some(d) => read_limit(reader, &d.join(name), name),
        None => Ok(None),
    };
    let limits = Limits {
        memory: limit_of("memory", v1::MEMORY_LIMIT)?,
        pids: limit_of("pids", v1::PIDS_MAX)?,
    };
    Ok(Some((Files::V1(Box::new(files)), limits, anchor)))
}

/// A limit file read once; no file is no limit.
fn read_limit(reader: &mut Reader, path: &Path, name: &str) -> Result<Option<u64>, CgroupError> {
    match reader.parse_path(path, |text| limit(name, text)) {
        Ok(value) => Ok(value),
        Err(Stop::Gone) => Ok(None),
        Err(Stop::Failed(error)) => Err(error),
    }
}

fn sample_v1(f: &V1Files, limits: &Limits, r: &mut Reader) -> Result<CgroupStats, Stop> {
    let usage = r.parse(&f.cpuacct_usage, |t| single(v1::CPUACCT_USAGE, t))?;
    let times = match usage {
        Some(_) => r.parse(&f.cpuacct_stat, v1::cpuacct_stat)?,
        None => None,
    };
    let cpu = match (usage, times) {
        (Some(usage_ns), Some((user_ns, system_ns))) => {
            let mut cpu = CpuStats {
                usage_ns,
                user_ns,
                system_ns,
                ..CpuStats::default()
            };
            r.parse(&f.cpu_stat, |t| v1::throttling(t, &mut cpu))?;
            Some(cpu)
        }
        _ => None,
    };
    let memory = memory(r, &f.memory_usage, v1::MEMORY_USAGE, limits, |r, memory| {
        if let Some(failcnt) = r.parse(&f.memory_failcnt, |t| single(v1::MEMORY_FAILCNT, t))? {
            memory.failcnt = failcnt;
        }
        r.parse(&f.memory_stat, |t| v1::memory_stat(t, memory))?;
        if let Some(kills) = r.parse(&f.memory_oom_control, v1::oom_kills)? {
            memory.oom_kills = kills;
        }
        Ok(())
    })?;
    let pids = pids(r, &f.pids_current, v1::PIDS_CURRENT, limits)?;
    let mut blkio = BlkioStats::default();
    let bytes = r.parse(&f.blkio_bytes, |t| v1::blkio_bytes(t, &mut blkio))?;
    let ops = r.parse(&f.blkio_ops, |t| v1::blkio_ops(t, &mut blkio))?;
    Ok(CgroupStats {
        cpu,
        memory,
        pids,
        blkio: (bytes.is_some() && ops.is_some()).then_some(blkio),
    })
}

fn sample_v2(f: &V2Files, limits: &Limits, r: &mut Reader) -> Result<CgroupStats, Stop> {
    let cpu = r.parse(&f.cpu_stat, v2::cpu)?;
    let memory = memory(
        r,
        &f.memory_current,
        v2::MEMORY_CURRENT,
        limits,
        |r, memory| {
            r.parse(&f.memory_stat, |t| v2::memory_stat(t, memory))?;
            r.parse(&f.memory_events, |t| v2::memory_events(t, memory))?;
            Ok(())
        },
    )?;
    let pids = pids(r, &f.pids_current, v2::PIDS_CURRENT, limits)?;
    let blkio = r.parse(&f.io_stat, v2::io)?;
    Ok(CgroupStats {
        cpu,
        memory,
        pids,
        blkio,
    })
}

/// The memory part of a sample, in either version: present when the usage file (`name`) is,
/// with the limit read at opening; `details` reads the other memory files into it.
fn memory(
    r: &mut Reader,
    usage: &Source,
    name: &str,
    limits: &Limits,
    details: impl FnOnce(&mut Reader, &mut MemoryStats) -> Result<(), Stop>,
) -> Result<Option<MemoryStats>, Stop> {
    let Some(usage_bytes) = r.parse(usage, |t| single(name, t))? else {
        return Ok(None);
    };
    let mut memory = MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes,
        limit_bytes: limits.memory,
        ..MemoryStats::default()
    };
    details(r, &mut memory)?;
    Ok(Some(memory))
}

/// The pids part of a sample, in either version: `pids.current` with the limit read at
/// opening.
fn pids(
    r: &mut Reader,
    current: &Source,
    name: &str,
    limits: &Limits,
) -> Result<Option<PidsStats>, Stop> {
    Ok(r.parse(current, |t| single(name, t))?
        .map(|current| PidsStats {
            current,
            limit: limits.pids,
        }))
}

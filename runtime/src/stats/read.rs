//! One sampling pass over a task: each container's cgroup files read once, then the network
//! counters of each distinct namespace its containers' processes are in.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::cgroup::{CgroupError, CgroupLayout};

use super::{CgroupStats, ContainerSample, TaskSample, netdev, v1, v2};

/// Reads the sample of the task whose cgroup is `task_rel` (`berth/<task-id>`, relative to
/// each hierarchy root), for the named containers; `proc_root` is normally `/proc`. A
/// container without a cgroup (not started yet, or gone mid-read) is left out; one whose files
/// cannot be parsed is left out with a warning, so one odd container never hides the others.
pub(crate) fn sample_task(
    layout: &CgroupLayout,
    proc_root: &Path,
    task_rel: &str,
    containers: &[String],
) -> TaskSample {
    let mut sample = TaskSample::default();
    match read_cgroup(layout, task_rel) {
        Ok(found) => sample.task = found.map(|(stats, _)| stats),
        Err(error) => {
            tracing::warn!(cgroup = %task_rel, %error, "cannot read a task's cgroup; leaving it out of this sample");
        }
    }
    let mut pids = Vec::new();
    for name in containers {
        let rel = format!("{task_rel}/{name}");
        match read_cgroup(layout, &rel) {
            Ok(Some((stats, pid))) => {
                sample.containers.push(ContainerSample {
                    name: name.clone(),
                    stats,
                });
                pids.extend(pid);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(cgroup = %rel, %error, "cannot read a container's cgroup; leaving it out of this sample");
            }
        }
    }
    sample.networks = read_networks(proc_root, &pids);
    sample
}

/// Reads one cgroup: its stats and one process in it (for its network namespace). None when
/// the cgroup does not exist, before or after the read.
pub(super) fn read_cgroup(
    layout: &CgroupLayout,
    rel: &str,
) -> Result<Option<(CgroupStats, Option<u32>)>, CgroupError> {
    match layout {
        CgroupLayout::V2 { root } => {
            let dir = root.join(rel);
            if !dir.is_dir() {
                return Ok(None);
            }
            let stats = read_v2(&dir)?;
            let pid = first_pid(&dir)?;
            Ok(dir.is_dir().then_some((stats, pid)))
        }
        CgroupLayout::V1 { mounts } => {
            let dir = |controller: &str| mounts.get(controller).map(|root| root.join(rel));
            // The hierarchy that decides whether the container is there: the first mounted of
            // these (runc creates the container's cgroup in each).
            let Some(anchor) = ["memory", "cpuacct", "pids", "cpu"]
                .iter()
                .find_map(|c| dir(c))
            else {
                return Ok(None);
            };
            if !anchor.is_dir() {
                return Ok(None);
            }
            let stats = read_v1(&dir)?;
            let pid = first_pid(&anchor)?;
            Ok(anchor.is_dir().then_some((stats, pid)))
        }
    }
}

fn read_v2(dir: &Path) -> Result<CgroupStats, CgroupError> {
    let file = |name: &str| read(&dir.join(name));
    let cpu = match file(v2::CPU_STAT)? {
        Some(stat) => Some(v2::cpu(&stat)?),
        None => None,
    };
    let memory = match file(v2::MEMORY_CURRENT)? {
        Some(current) => {
            let (max, stat, events) = (
                file(v2::MEMORY_MAX)?,
                file(v2::MEMORY_STAT)?,
                file(v2::MEMORY_EVENTS)?,
            );
            Some(v2::memory(
                &current,
                max.as_deref().unwrap_or("max"),
                stat.as_deref().unwrap_or_default(),
                events.as_deref().unwrap_or_default(),
            )?)
        }
        None => None,
    };
    let pids = match file(v2::PIDS_CURRENT)? {
        Some(current) => Some(v2::pids(
            &current,
            file(v2::PIDS_MAX)?.as_deref().unwrap_or("max"),
        )?),
        None => None,
    };
    let blkio = match file(v2::IO_STAT)? {
        Some(text) => Some(v2::io(&text)?),
        None => None,
    };
    Ok(CgroupStats {
        cpu,
        memory,
        pids,
        blkio,
    })
}

fn read_v1(dir: &dyn Fn(&str) -> Option<PathBuf>) -> Result<CgroupStats, CgroupError> {
    let file = |controller: &str, name: &str| match dir(controller) {
        Some(d) => read(&d.join(name)),
        None => Ok(None),
    };
    let cpu = match (
        file("cpuacct", v1::CPUACCT_USAGE)?,
        file("cpuacct", v1::CPUACCT_STAT)?,
    ) {
        (Some(usage), Some(stat)) => Some(v1::cpu(
            &usage,
            &stat,
            file("cpu", v1::CPU_STAT)?.as_deref(),
        )?),
        _ => None,
    };
    let memory = match file("memory", v1::MEMORY_USAGE)? {
        Some(usage) => {
            let limit = file("memory", v1::MEMORY_LIMIT)?;
            let failcnt = file("memory", v1::MEMORY_FAILCNT)?;
            let stat = file("memory", v1::MEMORY_STAT)?;
            let oom = file("memory", v1::MEMORY_OOM_CONTROL)?;
            Some(v1::memory(
                &usage,
                limit.as_deref().unwrap_or("max"),
                failcnt.as_deref().unwrap_or("0"),
                stat.as_deref().unwrap_or_default(),
                oom.as_deref(),
            )?)
        }
        None => None,
    };
    let pids = match file("pids", v1::PIDS_CURRENT)? {
        Some(current) => Some(v1::pids(
            &current,
            file("pids", v1::PIDS_MAX)?.as_deref().unwrap_or("max"),
        )?),
        None => None,
    };
    let blkio = match (
        file("blkio", v1::BLKIO_BYTES)?,
        file("blkio", v1::BLKIO_OPS)?,
    ) {
        (Some(bytes), Some(ops)) => Some(v1::blkio(&bytes, &ops)?),
        _ => None,
    };
    Ok(CgroupStats {
        cpu,
        memory,
        pids,
        blkio,
    })
}

/// The first process listed in the cgroup's `cgroup.procs`; None when it has none.
fn first_pid(dir: &Path) -> Result<Option<u32>, CgroupError> {
    let Some(text) = read(&dir.join("cgroup.procs"))? else {
        return Ok(None);
    };
    Ok(text.lines().find_map(|l| l.trim().parse().ok()))
}

/// The interfaces of each distinct network namespace the processes are in, except the
/// agent's own (a host-mode task's traffic is the host's, as ECS reports it). A process that
/// exited meanwhile is skipped.
fn read_networks(proc_root: &Path, pids: &[u32]) -> Vec<super::InterfaceStats> {
    let own = std::fs::read_link(proc_root.join("self/ns/net")).ok();
    let mut seen = HashSet::new();
    let mut interfaces = Vec::new();
    for pid in pids {
        let process = proc_root.join(pid.to_string());
        let Ok(namespace) = std::fs::read_link(process.join("ns/net")) else {
            continue;
        };
        if Some(&namespace) == own.as_ref() || !seen.insert(namespace) {
            continue;
        }
        match read(&process.join("net/dev")) {
            Ok(Some(text)) => match netdev::parse(&text) {
                Ok(found) => interfaces.extend(found),
                Err(error) => tracing::warn!(pid, %error, "cannot parse a task's network counters"),
            },
            Ok(None) => {}
            Err(error) => tracing::warn!(pid, %error, "cannot read a task's network counters"),
        }
    }
    interfaces
}

/// A file's text; None when it (or its cgroup, or its process) no longer exists: ENOENT,
/// ENODEV (a cgroup being removed) or ESRCH (a process that exited).
fn read(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if gone(&error) => Ok(None),
        Err(source) => Err(CgroupError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || matches!(
            error.raw_os_error(),
            Some(code) if code == Errno::ENODEV as i32 || code == Errno::ESRCH as i32
        )
}

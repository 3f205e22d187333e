//! One sampling pass over a task: the task's cgroup and each container's, through the handles
//! kept since their first sample, then the network counters of each distinct namespace its
//! containers' processes are in.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup::{CgroupError, CgroupLayout};

use super::files::{IoCounts, Reader, Stop};
use super::handle::CgroupHandle;
use super::{CgroupStats, ContainerSample, InterfaceStats, TaskSample, netdev};

/// What the sampler keeps between passes: the open cgroups of each task it sampled.
#[derive(Debug)]
pub(super) struct Cache {
    reader: Reader,
    /// By the task's cgroup path (`berth/<task-id>`).
    tasks: HashMap<String, TaskHandles>,
    /// The agent's own network namespace (`net:[<inode>]`), once read.
    own_netns: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct TaskHandles {
    /// None while the task has no cgroup (or before its first sample).
    task: Option<CgroupHandle>,
    /// By container name; None while the container has no cgroup.
    containers: HashMap<String, Option<CgroupHandle>>,
}

/// Where to read and how long a cgroup's handle (and so its limits) is kept before it is
/// opened again.
pub(super) struct Place<'a> {
    pub(super) layout: &'a CgroupLayout,
    pub(super) proc_root: &'a Path,
    pub(super) reopen_after: Duration,
}

impl Cache {
    pub(super) fn new(reader: Reader) -> Self {
        Cache {
            reader,
            tasks: HashMap::new(),
            own_netns: None,
        }
    }

    pub(super) fn io_counts(&self) -> IoCounts {
        self.reader.counts()
    }

    /// The files kept open now.
    #[cfg(test)]
    pub(super) fn reader_open_files(&self) -> usize {
        self.reader.open_files()
    }

    /// Closes the files of every task whose cgroup path is not in `keep`.
    pub(super) fn retain(&mut self, keep: &HashSet<String>) {
        self.tasks.retain(|rel, _| keep.contains(rel));
    }

    /// Reads the sample of the task whose cgroup is `task_rel` (`berth/<task-id>`, relative to
    /// each hierarchy root), for the named containers; the files of its other containers are
    /// closed. A container without a cgroup (not started yet, or gone mid-read) is left out;
    /// one whose files cannot be read or parsed is left out with a warning, so one odd
    /// container never hides the others.
    pub(super) fn sample_task(
        &mut self,
        at: &Place<'_>,
        task_rel: &str,
        containers: &[String],
    ) -> TaskSample {
        let now = Instant::now();
        let reader = &mut self.reader;
        if !self.tasks.contains_key(task_rel) {
            self.tasks
                .insert(task_rel.to_owned(), TaskHandles::default());
        }
        let Some(handles) = self.tasks.get_mut(task_rel) else {
            return TaskSample::default();
        };
        handles
            .containers
            .retain(|name, _| containers.iter().any(|c| c == name));
        let mut sample = TaskSample::default();
        match sample_cgroup(reader, at, (task_rel, None), &mut handles.task, now) {
            Ok(stats) => sample.task = stats,
            Err(error) => {
                tracing::warn!(cgroup = %task_rel, %error, "cannot read a task's cgroup; leaving it out of this sample");
            }
        }
        for name in containers {
            if !handles.containers.contains_key(name) {
                handles.containers.insert(name.clone(), None);
            }
            let Some(slot) = handles.containers.get_mut(name) else {
                continue;
            };
            match sample_cgroup(reader, at, (task_rel, Some(name)), slot, now) {
                Ok(Some(stats)) => sample.containers.push(ContainerSample {
                    name: name.clone(),
                    stats,
                }),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(cgroup = %task_rel, container.name = %name, %error, "cannot read a container's cgroup; leaving it out of this sample");
                }
            }
        }
        if self.own_netns.is_none() {
            self.own_netns = std::fs::read_link(at.proc_root.join("self/ns/net")).ok();
        }
        sample.networks = read_networks(
            reader,
            at.proc_root,
            self.own_netns.as_deref(),
            &sample.containers,
            &mut handles.containers,
        );
        sample
    }
}

/// One cgroup's stats through its handle, opened first if it is not yet (or was opened more
/// than `reopen_after` ago, so limits changed since are seen). A handle whose cgroup was
/// removed is dropped and the cgroup opened once more, in case it was made again under the
/// same name (a restarted container); None when it is not there. The cgroup is the task's
/// (`task_rel`) or one of its containers'.
fn sample_cgroup(
    reader: &mut Reader,
    at: &Place<'_>,
    (task_rel, container): (&str, Option<&str>),
    slot: &mut Option<CgroupHandle>,
    now: Instant,
) -> Result<Option<CgroupStats>, CgroupError> {
    if slot
        .as_ref()
        .is_some_and(|h| now.saturating_duration_since(h.opened_at) >= at.reopen_after)
    {
        *slot = None;
    }
    let mut fresh = slot.is_none();
    loop {
        if slot.is_none() {
            let rel = match container {
                Some(name) => format!("{task_rel}/{name}"),
                None => task_rel.to_owned(),
            };
            *slot = CgroupHandle::open(at.layout, &rel, reader)?;
        }
        let Some(handle) = slot.as_ref() else {
            return Ok(None);
        };
        match handle.sample(reader) {
            Ok(stats) => return Ok(Some(stats)),
            Err(Stop::Failed(error)) => return Err(error),
            Err(Stop::Gone) => {
                *slot = None;
                if fresh {
                    return Ok(None);
                }
                fresh = true;
            }
        }
    }
}

/// The interfaces of each distinct network namespace the sampled containers' processes are
/// in, except the agent's own (a host-mode task's traffic is the host's, as ECS reports it).
///
/// A container's process and its namespace are looked up once and remembered with its
/// cgroup's handle (a process never leaves its namespace), and the namespace's
/// `/proc/<pid>/net/dev` is kept open there, so a steady pass costs two `pread`s per namespace
/// (the second finds the end) and nothing for a task in the agent's own. The open file holds
/// the namespace alive until the handle goes: when the container leaves the pass or its
/// cgroup is found gone (at the first pass after its last process exits), or when the handle
/// is opened again after a minute, which also looks the process up afresh. When the
/// remembered process exited before its `net/dev` was opened, the first one left in the cgroup
/// stands in.
fn read_networks(
    reader: &mut Reader,
    proc_root: &Path,
    own: Option<&Path>,
    sampled: &[ContainerSample],
    handles: &mut HashMap<String, Option<CgroupHandle>>,
) -> Vec<InterfaceStats> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut interfaces = Vec::new();
    for container in sampled {
        let Some(Some(handle)) = handles.get_mut(&container.name) else {
            continue;
        };
        if handle.netns.is_none() {
            look_up_namespace(reader, proc_root, handle);
        }
        let Some(namespace) = handle.netns.as_deref() else {
            continue;
        };
        if Some(namespace) == own || seen.iter().any(|s| s == namespace) {
            continue;
        }
        seen.push(namespace.to_path_buf());
        interfaces.extend(read_net_dev(reader, proc_root, handle));
    }
    interfaces
}

/// The counters of the namespace of a container's remembered process, through its kept-open
/// `net/dev` (opened first if it is not yet). Empty when the container has no process left or
/// the file cannot be read (with a warning).
fn read_net_dev(
    reader: &mut Reader,
    proc_root: &Path,
    handle: &mut CgroupHandle,
) -> Vec<InterfaceStats> {
    let mut retried = false;
    loop {
        let Some(pid) = handle.pid else {
            return Vec::new();
        };
        if handle.net_dev.is_none() {
            match reader.open(proc_root.join(pid.to_string()).join("net/dev")) {
                Ok(source) => handle.net_dev = Some(source),
                Err(error) => {
                    tracing::warn!(pid, %error, "cannot open a task's network counters");
                    return Vec::new();
                }
            }
        }
        let read = match &handle.net_dev {
            Some(source) => reader.parse_records(source, netdev::parse),
            None => Ok(None),
        };
        match read {
            Ok(Some(found)) => return found,
            // Absent when opened, or gone since: the process exited. Another of the
            // container's stands in (in the same namespace, since the namespace is the
            // task's).
            Ok(None) | Err(Stop::Gone) if !retried => {
                retried = true;
                handle.net_dev = None;
                look_up_namespace(reader, proc_root, handle);
            }
            Ok(None) | Err(Stop::Gone) => {
                handle.net_dev = None;
                return Vec::new();
            }
            Err(Stop::Failed(error)) => {
                tracing::warn!(pid, %error, "cannot read a task's network counters");
                return Vec::new();
            }
        }
    }
}

/// Looks up the first process of a container's cgroup and its network namespace, and
/// remembers both (or neither, when it has no process left).
fn look_up_namespace(reader: &mut Reader, proc_root: &Path, handle: &mut CgroupHandle) {
    handle.netns = None;
    handle.pid = None;
    let pid = match handle.find_pid(reader) {
        Ok(Some(pid)) => pid,
        Ok(None) | Err(Stop::Gone) => return,
        Err(Stop::Failed(error)) => {
            tracing::warn!(%error, "cannot list a container's processes");
            return;
        }
    };
    handle.netns = std::fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok();
}

/// One cgroup read from scratch: its stats and one process in it (for tests of the parsers
/// on fake trees). None when the cgroup does not exist.
#[cfg(test)]
pub(super) fn read_cgroup(
    layout: &CgroupLayout,
    rel: &str,
) -> Result<Option<(CgroupStats, Option<u32>)>, CgroupError> {
    let mut reader = Reader::with_budget(64);
    let Some(mut handle) = CgroupHandle::open(layout, rel, &mut reader)? else {
        return Ok(None);
    };
    let stats = match handle.sample(&mut reader) {
        Ok(stats) => stats,
        Err(Stop::Gone) => return Ok(None),
        Err(Stop::Failed(error)) => return Err(error),
    };
    let pid = match handle.find_pid(&mut reader) {
        Ok(pid) => pid,
        Err(Stop::Gone) => None,
        Err(Stop::Failed(error)) => return Err(error),
    };
    Ok(Some((stats, pid)))
}

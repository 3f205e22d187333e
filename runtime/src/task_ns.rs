//! The namespaces a task's containers share: ECS `pidMode: task` (one PID namespace) and
//! `ipcMode: task` (one IPC namespace and one `/dev/shm`), as the ECS agent's pause container
//! and the kubelet's sandbox give them.
//!
//! A PID namespace lives only as long as its first process, its init: so each such task has a
//! holder process (`berth-agent task-holder`, `holder.rs`) started in new PID and IPC
//! namespaces. It is PID 1 there and reaps what the containers orphan; it ignores every signal
//! a container can send it, so it ends only when Berth kills it, and with it whatever still
//! runs in the namespace. It sits in its own cgroup under the task's (`berth.ns-holder`) and
//! is no child of the agent's cgroup, so an agent restart leaves it (and the containers)
//! running, and the next agent finds it again by that cgroup.
//!
//! Containers join by path, never by `/proc/<pid>` (a PID is reused once its process is gone):
//! the holder's namespaces are bind-mounted on `<dir>/<task-id>/pid` and `ipc`, and the task's
//! `/dev/shm` is a tmpfs on `<dir>/<task-id>/shm`. Everything is named from the task ID, so a
//! container created or restarted later, by this run of the agent or the next, joins the same
//! namespaces, and the cleanup and the orphan sweep need only the ID. A holder that died (its PID
//! namespace and every process in it with it) is the task's end, as ECS's namespace pause
//! container is: the agent watches it (`held`) and stops the task, naming the holder, before
//! any container restarts in place; a container never joins a dead namespace, nor a newer
//! holder's. Only a task still being prepared (an agent restart while it started) gets a new
//! holder, when its namespaces are asked for again.

mod holder;

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroup::{CgroupError, Cgroups, validate_id};

pub use holder::{HOLDER_READY, hold_namespaces};

/// How long a new holder has to say it is in its cgroup.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed holder's cgroup may take to empty.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// `/dev/shm`'s size when no container of the task asks for one (Docker's).
pub const DEFAULT_SHM_MIB: u64 = 64;

/// The program and leading arguments that run a holder (`berth-agent task-holder`); the
/// runtime adds `--cgroup-procs <file>` for each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// What of a task is shared by its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedNamespaces {
    /// One PID namespace (`pidMode: task`).
    pub pid: bool,
    /// One IPC namespace and `/dev/shm` (`ipcMode: task`).
    pub ipc: bool,
    /// The size of the shared `/dev/shm`.
    pub shm_size_mib: u64,
}

/// Where a task's shared namespaces are (or will be): named from the task ID alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNamespacePaths {
    /// The PID namespace's file.
    pub pid: PathBuf,
    /// The IPC namespace's file.
    pub ipc: PathBuf,
    /// The task's `/dev/shm` (a tmpfs).
    pub shm: PathBuf,
}

/// Failure to make, find or remove a task's shared namespaces. The cause's text is part of
/// the message (it travels as the task's stop reason), so it is not also a source.
#[derive(Debug, thiserror::Error)]
pub enum TaskNamespaceError {
    #[error("task {task_id}: cannot {what} {}: {error}", path.display())]
    Io {
        task_id: String,
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("task {task_id}: the namespace holder's cgroup: {error}")]
    Cgroup {
        task_id: String,
        /// The cgroup error with its causes.
        error: String,
    },
    #[error(
        "task {task_id} shares its PID or IPC namespace (pidMode or ipcMode task), and this \
         runtime has no namespace holder to run"
    )]
    NoHolder { task_id: String },
    #[error("task {task_id}: the namespace holder {program} did not start: {reason}", program = program.display())]
    HolderStart {
        task_id: String,
        program: PathBuf,
        reason: String,
    },
    #[error(
        "task {task_id}: the namespace holder (pid {pid}) did not exit within {seconds}s of SIGKILL"
    )]
    HolderStuck {
        task_id: String,
        pid: u32,
        seconds: u64,
    },
}

/// The tasks' shared namespaces under one directory.
#[derive(Debug)]
pub(crate) struct TaskNamespaces {
    dir: PathBuf,
    holder: Option<HolderCommand>,
    cgroups: Arc<Cgroups>,
    /// Holders this process started, reaped when they are killed (those of an earlier run
    /// of the agent are init's children).
    children: Mutex<HashMap<String, Child>>,
}

impl TaskNamespaces {
    pub(crate) fn new(dir: PathBuf, holder: Option<HolderCommand>, cgroups: Arc<Cgroups>) -> Self {
        Self {
            dir,
            holder,
            cgroups,
            children: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths of the task's shared namespaces. Checks the task ID.
    pub(crate) fn paths(&self, task_id: &str) -> Result<TaskNamespacePaths, TaskNamespaceError> {
        validate_id("task id", task_id).map_err(|error| cgroup_error(task_id, &error))?;
        let dir = self.dir.join(task_id);
        Ok(TaskNamespacePaths {
            pid: dir.join("pid"),
            ipc: dir.join("ipc"),
            shm: dir.join("shm"),
        })
    }

    /// Makes the task's shared namespaces, or keeps them when its holder runs and they are
    /// its own (idempotent; the task's cgroup must exist). Blocking.
    pub(crate) fn ensure(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<TaskNamespacePaths, TaskNamespaceError> {
        let paths = self.paths(task_id)?;
        if !shared.pid && !shared.ipc {
            return Ok(paths);
        }
        let io = |what, path: &Path| {
            let (task_id, path) = (task_id.to_owned(), path.to_path_buf());
            move |error| TaskNamespaceError::Io {
                task_id,
                what,
                path,
                error,
            }
        };
        let cgroup = |error| cgroup_error(task_id, &error);
        let task_dir = self.dir.join(task_id);
        fs::create_dir_all(&task_dir).map_err(io("create", &task_dir))?;

        let wanted: Vec<(&str, &Path)> = [
            (shared.pid, "pid", paths.pid.as_path()),
            (shared.ipc, "ipc", paths.ipc.as_path()),
        ]
        .into_iter()
        .filter_map(|(want, kind, path)| want.then_some((kind, path)))
        .collect();
        if self.holder_of(task_id, &wanted)?.is_none() {
            // Whatever is there is stale: a holder that died, files of one, a crash between.
            self.kill_holder(task_id)?;
            for (_, path) in &wanted {
                unmount_and_remove(path).map_err(io("remove the stale namespace", path))?;
            }
            let program = self
                .holder
                .clone()
                .ok_or_else(|| TaskNamespaceError::NoHolder {
                    task_id: task_id.to_owned(),
                })?;
            let procs = self.cgroups.create_holder(task_id).map_err(cgroup)?;
            let mut flags = CloneFlags::empty();
            if shared.pid {
                flags |= CloneFlags::CLONE_NEWPID;
            }
            if shared.ipc {
                flags |= CloneFlags::CLONE_NEWIPC;
            }
            let child = spawn_holder(&program, flags, &procs).map_err(|reason| {
                TaskNamespaceError::HolderStart {
                    task_id: task_id.to_owned(),
                    program: program.program.clone(),
                    reason,
                }
            })?;
            let pid = child.id();
            self.children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(task_id.to_owned(), child);
            let bound = wanted.iter().try_for_each(|(kind, path)| {
                bind_namespace(pid, kind, path).map_err(io("bind the namespace at", path))
            });
            if let Err(error) = bound {
                if let Err(cleanup) = self.remove(task_id) {
                    tracing::warn!(task.id = task_id, %cleanup, "cannot remove a half-made holder");
                }
                return Err(error);
            }
            tracing::info!(
                task.id = task_id,
                holder.pid = pid,
                pid_ns = shared.pid,
                ipc_ns = shared.ipc,
                "started the task's namespace holder"
            );
        }
        if shared.ipc && !is_mount_point(&paths.shm, &task_dir) {
            fs::create_dir_all(&paths.shm).map_err(io("create", &paths.shm))?;
            let kib = shared.shm_size_mib.saturating_mul(1024);
            mount(
                Some("shm"),
                &paths.shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={kib}k").as_str()),
            )
            .map_err(|e| io("mount the task's /dev/shm at", &paths.shm)(e.into()))?;
        }
        Ok(paths)
    }

    /// Whether the task's holder still runs and holds the namespaces its containers join
    /// (those `shared` names). False once it died: its PID namespace ended with it, and the
    /// kernel killed every process in it. Blocking.
    pub(crate) fn held(
        &self,
        task_id: &str,
        shared: SharedNamespaces,
    ) -> Result<bool, TaskNamespaceError> {
        let paths = self.paths(task_id)?;
        let wanted: Vec<(&str, &Path)> = [
            (shared.pid, "pid", paths.pid.as_path()),
            (shared.ipc, "ipc", paths.ipc.as_path()),
        ]
        .into_iter()
        .filter_map(|(want, kind, path)| want.then_some((kind, path)))
        .collect();
        Ok(wanted.is_empty() || self.holder_of(task_id, &wanted)?.is_some())
    }

    /// The PID of the task's holder when it is the one process of its cgroup and the
    /// namespaces bound at `wanted` (kind, path) are its own.
    fn holder_of(
        &self,
        task_id: &str,
        wanted: &[(&str, &Path)],
    ) -> Result<Option<u32>, TaskNamespaceError> {
        let holder = self
            .cgroups
            .holder_pids(task_id)
            .map_err(|error| cgroup_error(task_id, &error))?;
        Ok(match holder.as_slice() {
            [pid]
                if !is_zombie(*pid)
                    && wanted
                        .iter()
                        .all(|(kind, path)| same_namespace(*pid, kind, path)) =>
            {
                Some(*pid)
            }
            _ => None,
        })
    }

    /// Kills the task's holder (and with it anything left in its PID namespace), then
    /// unmounts and removes the namespaces' files and `/dev/shm`. Idempotent. Blocking.
    pub(crate) fn remove(&self, task_id: &str) -> Result<(), TaskNamespaceError> {
        let paths = self.paths(task_id)?;
        self.kill_holder(task_id)?;
        let io = |what, path: &Path| {
            let (task_id, path) = (task_id.to_owned(), path.to_path_buf());
            move |error| TaskNamespaceError::Io {
                task_id,
                what,
                path,
                error,
            }
        };
        for path in [&paths.pid, &paths.ipc] {
            unmount_and_remove(path).map_err(io("remove the namespace", path))?;
        }
        match umount2(&paths.shm, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(io("unmount", &paths.shm)(e.into())),
        }
        let task_dir = self.dir.join(task_id);
        for dir in [&paths.shm, &task_dir] {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", dir)(e)),
            }
        }
        Ok(())
    }

    /// SIGKILLs whatever is in the holder's cgroup, reaps a holder this process started,
    /// waits for the cgroup to empty and removes it.
    fn kill_holder(&self, task_id: &str) -> Result<(), TaskNamespaceError> {
        let cgroup = |error| cgroup_error(task_id, &error);
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let child = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(task_id);
        loop {
            let pids = self.cgroups.holder_pids(task_id).map_err(cgroup)?;
            let Some(&first) = pids.first() else { break };
            for pid in &pids {
                if let Ok(raw) = i32::try_from(*pid) {
                    // Gone already is fine; anything else shows as a cgroup that stays full.
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
            if Instant::now() >= deadline {
                return Err(TaskNamespaceError::HolderStuck {
                    task_id: task_id.to_owned(),
                    pid: first,
                    seconds: EXIT_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = child {
            // Its cgroup is empty: it has exited; this only reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.cgroups.remove_holder(task_id).map_err(cgroup)
    }
}

/// A cgroup error as the task's stop reason: its message and each cause, joined.
fn cgroup_error(task_id: &str, error: &CgroupError) -> TaskNamespaceError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    TaskNamespaceError::Cgroup {
        task_id: task_id.to_owned(),
        error: text,
    }
}

/// Starts a holder in new namespaces (`flags`) from a thread of its own (only that thread
/// changes its namespaces, and it ends right after), and waits for its word that it is in
/// its cgroup. A holder that does not say so is killed.
fn spawn_holder(
    command: &HolderCommand,
    flags: CloneFlags,
    procs: &[PathBuf],
) -> Result<Child, String> {
    let mut child = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<Child> {
            unshare(flags).map_err(io::Error::from)?;
            let mut c = Command::new(&command.program);
            c.args(&command.args);
            for file in procs {
                c.arg("--cgroup-procs").arg(file);
            }
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Out of the agent's process group: a signal to the agent's group (a
                // terminal's ^C) never reaches it.
                .process_group(0);
            c.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
    .map_err(|e| e.to_string())?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipe to read its readiness from".to_owned());
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let failed = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(line)) if line.trim_end() == HOLDER_READY => return Ok(child),
        Ok(Ok(line)) if line.is_empty() => "it exited before it was ready".to_owned(),
        Ok(Ok(line)) => format!("it said {:?} instead of {HOLDER_READY:?}", line.trim_end()),
        Ok(Err(e)) => format!("reading its readiness: {e}"),
        Err(_) => format!("it was not ready within {}s", READY_TIMEOUT.as_secs()),
    };
    let _ = child.kill();
    let status = child.wait();
    Err(match status {
        Ok(status) if !status.success() && status.code().is_some() => {
            format!("{failed} ({status}; its stderr is in the agent's log)")
        }
        _ => failed,
    })
}

/// Whether `path` is a bind mount of process `pid`'s namespace of `kind`.
fn same_namespace(pid: u32, kind: &str, path: &Path) -> bool {
    let (Ok(mounted), Ok(live)) = (
        fs::metadata(path),
        fs::metadata(format!("/proc/{pid}/ns/{kind}")),
    ) else {
        return false;
    };
    mounted.dev() == live.dev() && mounted.ino() == live.ino()
}

/// Whether process `pid` has exited and awaits its parent's reaping (a holder this agent
/// started stays so until `kill_holder` reaps it, and its PID namespace's file still answers).
fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) state …`: the comm may hold anything, the state follows its last ')'.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with(['Z', 'X']))
    })
}

/// Bind-mounts `/proc/<pid>/ns/<kind>` on `path` (a file made for it).
fn bind_namespace(pid: u32, kind: &str, path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    mount(
        Some(format!("/proc/{pid}/ns/{kind}").as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Unmounts (lazily) and removes a namespace's file; nothing there is fine.
fn unmount_and_remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(e.into()),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether something is mounted on `dir` (its device differs from its parent's).
fn is_mount_point(dir: &Path, parent: &Path) -> bool {
    match (fs::metadata(dir), fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;

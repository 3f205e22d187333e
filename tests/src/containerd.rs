//! A private containerd daemon with its own root, state, sockets and log under one directory.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, umount2};

use crate::prereq::bins;
use crate::process;

/// How long `start` waits for the gRPC socket.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// SIGTERM grace before SIGKILL on shutdown.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Default deadline of one `ctr` invocation.
const CTR_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of each `ctr` call made while cleaning up.
const CLEANUP_CTR_TIMEOUT: Duration = Duration::from_secs(15);
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Snapshotters and plugins the tests never use.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.devmapper",
];

/// How containerd's metadata store lets namespaces share committed blobs (the bolt plugin's
/// `content_sharing_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSharing {
    /// Each namespace downloads its own blobs, so parallel trials in separate namespaces see
    /// deterministic registry traffic. The suites' shared daemon runs so.
    Isolated,
    /// containerd's default, and so what most hosts run: a namespace that writes a blob another
    /// namespace already holds adopts it without the bytes being sent again.
    Shared,
}

impl ContentSharing {
    fn policy(self) -> &'static str {
        match self {
            Self::Isolated => "isolated",
            Self::Shared => "shared",
        }
    }
}

/// A containerd started by the harness. Stopped (after killing every task it runs) on drop.
#[derive(Debug)]
pub struct PrivateContainerd {
    dir: PathBuf,
    root: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    pid: u32,
    /// Set once the socket answered: only then is it worth asking containerd to clean up.
    ready: bool,
    child: Mutex<Option<Child>>,
}

impl PrivateContainerd {
    /// Writes `dir/config.toml` and starts containerd on `dir/containerd.sock`, waiting until the
    /// socket accepts connections. The daemon also dies with the thread that called `start`
    /// when util-linux `setpriv` is installed. Namespaces do not share blobs
    /// ([`ContentSharing::Isolated`]).
    pub fn start(dir: &Path) -> Result<PrivateContainerd> {
        Self::start_with(dir, ContentSharing::Isolated)
    }

    /// Like [`start`](Self::start), with the given content sharing policy.
    pub fn start_with(dir: &Path, sharing: ContentSharing) -> Result<PrivateContainerd> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir =
            fs::canonicalize(dir).with_context(|| format!("canonicalize {}", dir.display()))?;
        let root = dir.join("root");
        let state = dir.join("state");
        let socket = dir.join("containerd.sock");
        let ttrpc = dir.join("containerd.sock.ttrpc");
        let debug = dir.join("debug.sock");
        let log = dir.join("containerd.log");
        let config = dir.join("config.toml");
        if ttrpc.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "socket path {} is too long for a unix socket; use a shorter dir",
                ttrpc.display()
            );
        }
        let paths = ConfigPaths {
            root: &root,
            state: &state,
            grpc: &socket,
            ttrpc: &ttrpc,
            debug: &debug,
            opt: &dir.join("opt"),
        };
        let text = config_toml(&paths, sharing);
        fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;

        let log_file =
            fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let log_err = log_file.try_clone().context("clone log file handle")?;
        let mut cmd = process::daemon_command(Path::new(bins::CONTAINERD));
        cmd.arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bins::CONTAINERD))?;
        let pid = child.id();
        let mut me = PrivateContainerd {
            dir,
            root,
            state,
            socket,
            log,
            pid,
            ready: false,
            child: Mutex::new(Some(child)),
        };
        // On error `me` is dropped, which kills the daemon.
        me.wait_ready()?;
        me.ready = true;
        tracing::debug!(socket = %me.socket.display(), pid, "private containerd ready");
        Ok(me)
    }

    /// Kills the daemon (SIGKILL, as a crash or an OOM kill would) and starts it again with the
    /// same configuration, waiting until its socket answers. Shims and the containers they run
    /// live on, as they do when a host's containerd restarts.
    pub fn restart(&mut self) -> Result<()> {
        {
            let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut child) = guard.take() {
                let _ = child.kill();
                child.wait().context("wait for the killed containerd")?;
            }
        }
        self.ready = false;
        let log_file = fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let log_err = log_file.try_clone().context("clone log file handle")?;
        let mut cmd = process::daemon_command(Path::new(bins::CONTAINERD));
        cmd.arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bins::CONTAINERD))?;
        self.pid = child.id();
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        self.wait_ready()?;
        self.ready = true;
        tracing::debug!(socket = %self.socket.display(), pid = self.pid, "private containerd restarted");
        Ok(())
    }

    fn wait_ready(&self) -> Result<()> {
        process::wait_ready(
            "containerd",
            &self.log,
            START_DEADLINE,
            || self.exited(),
            || {
                UnixStream::connect(&self.socket)
                    .map(drop)
                    .map_err(|e| format!("no connection on {}: {e}", self.socket.display()))
            },
        )
    }

    /// How containerd exited, once it has (reaping it).
    pub(crate) fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The ttrpc socket.
    pub fn ttrpc_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock.ttrpc")
    }

    /// containerd's combined stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// containerd's `root` (content store, snapshots, metadata).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// containerd's `state` directory.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// A runc state directory private to this daemon (`dir/runc`). Pass it as the runc `Root`
    /// option (`ctr run --runc-root`) to keep runc state out of the host-global
    /// `/run/containerd/runc`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// The directory everything lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log, lines)
    }

    /// Runs `ctr --address SOCKET args...` (deadline 120 s) and returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        self.ctr_with_timeout(args, CTR_TIMEOUT)
    }

    /// Like [`ctr`](Self::ctr) with an explicit deadline.
    pub fn ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut cmd = Command::new(bins::CTR);
        cmd.arg("--address").arg(&self.socket).args(args);
        process::run_with_timeout(cmd, timeout)
    }

    /// Kills every task, deletes every container, stops containerd, kills any shim left and
    /// unmounts what is still mounted under the directory. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut child) = guard.take() else {
            return;
        };
        let namespaces = if self.ready && matches!(child.try_wait(), Ok(None)) {
            self.remove_everything()
        } else {
            Vec::new()
        };
        process::terminate(&mut child, STOP_GRACE);
        self.kill_leftover_shims();
        unmount_under(&self.dir);
        remove_empty_namespace_cgroups(Path::new(CGROUP_ROOT), &namespaces);
        // The shim keeps runc state in a host-global root unless given one; runc removes the
        // container's state but leaves the (then empty) per-namespace directory.
        for ns in namespaces.iter().filter(|ns| is_plain_name(ns)) {
            let _ = fs::remove_dir(Path::new(GLOBAL_RUNC_ROOT).join(ns));
        }
    }

    /// Best effort: every task SIGKILLed and deleted, every container deleted, in every namespace.
    /// Returns the namespaces.
    fn remove_everything(&self) -> Vec<String> {
        let t = CLEANUP_CTR_TIMEOUT;
        let Ok(out) = self.ctr_with_timeout(&["namespaces", "ls", "-q"], t) else {
            return Vec::new();
        };
        let namespaces: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        for ns in namespaces.iter().map(String::as_str) {
            let tasks = self
                .ctr_with_timeout(&["-n", ns, "tasks", "ls", "-q"], t)
                .unwrap_or_default();
            for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self
                    .ctr_with_timeout(&["-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id], t);
            }
            for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Err(e) = self.ctr_with_timeout(&["-n", ns, "tasks", "delete", "-f", id], t) {
                    tracing::warn!(namespace = ns, task = id, error = %e, "cleanup: task delete failed");
                }
            }
            let containers = self
                .ctr_with_timeout(&["-n", ns, "containers", "ls", "-q"], t)
                .unwrap_or_default();
            for id in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Err(e) = self.ctr_with_timeout(&["-n", ns, "containers", "delete", id], t) {
                    tracing::warn!(namespace = ns, container = id, error = %e, "cleanup: container delete failed");
                }
            }
        }
        namespaces
    }

    /// Shims started for this daemon carry its socket in their command line; kill them and
    /// whatever they still run.
    fn kill_leftover_shims(&self) {
        let socket = self.socket.to_string_lossy();
        let shims: Vec<i32> = process::processes()
            .into_iter()
            .filter(|p| {
                p.cmdline
                    .first()
                    .is_some_and(|c| c.contains("containerd-shim"))
                    && p.cmdline.iter().any(|a| a == socket.as_ref())
            })
            .map(|p| p.pid)
            .collect();
        if !shims.is_empty() {
            tracing::warn!(?shims, "cleanup: killing shims that outlived containerd");
            process::kill_trees(&shims);
        }
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn toml_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where a daemon keeps its data and sockets.
struct ConfigPaths<'a> {
    root: &'a Path,
    state: &'a Path,
    grpc: &'a Path,
    ttrpc: &'a Path,
    debug: &'a Path,
    opt: &'a Path,
}

fn config_toml(paths: &ConfigPaths<'_>, sharing: ContentSharing) -> String {
    let ConfigPaths {
        root,
        state,
        grpc,
        ttrpc,
        debug,
        opt,
    } = *paths;
    let disabled: Vec<String> = DISABLED_PLUGINS
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by berth-tests; a private containerd for end-to-end tests."
    );
    let _ = writeln!(s, "version = 2");
    let _ = writeln!(s, "root = {}", toml_str(root));
    let _ = writeln!(s, "state = {}", toml_str(state));
    let _ = writeln!(s, "disabled_plugins = [{}]", disabled.join(", "));
    let _ = writeln!(s, "\n[grpc]\n  address = {}", toml_str(grpc));
    let _ = writeln!(s, "\n[ttrpc]\n  address = {}", toml_str(ttrpc));
    let _ = writeln!(
        s,
        "\n[debug]\n  address = {}\n  level = \"info\"",
        toml_str(debug)
    );
    // The opt plugin defaults to /opt/containerd: keep it inside the private dir too.
    let _ = writeln!(
        s,
        "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
        toml_str(opt)
    );
    let _ = writeln!(
        s,
        "\n[plugins.\"io.containerd.metadata.v1.bolt\"]\n  content_sharing_policy = \"{}\"",
        sharing.policy()
    );
    // No collection at startup (a fresh daemon holds nothing to collect): one running 100 ms
    // after the start would race a test writing content it then labels or references.
    let _ = writeln!(
        s,
        "\n[plugins.\"io.containerd.gc.v1.scheduler\"]\n  startup_delay = \"0s\""
    );
    // containerd 1.6 has no daemon-wide default snapshotter outside CRI; clients (ctr, Berth)
    // default to overlayfs, which is enabled here.
    s
}

/// runc's state root when the container's runtime options name none.
const GLOBAL_RUNC_ROOT: &str = "/run/containerd/runc";

/// A single path component that is safe to join to a host directory.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.starts_with('.')
}

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Removes the per-namespace parent cgroups (`<hierarchy>/<ns>`) that runc leaves behind for
/// containers with the default cgroup path. `rmdir` only succeeds on a cgroup without children
/// or processes, so a namespace another containerd still uses is left alone.
fn remove_empty_namespace_cgroups(cgroup_root: &Path, namespaces: &[String]) {
    if namespaces.is_empty() {
        return;
    }
    let mut hierarchies = Vec::new();
    // cgroup v2 only: the root itself is the hierarchy. v1 and hybrid: one per subdirectory.
    if cgroup_root.join("cgroup.controllers").exists() {
        hierarchies.push(cgroup_root.to_owned());
    }
    if let Ok(entries) = fs::read_dir(cgroup_root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    for ns in namespaces
        .iter()
        .filter(|ns| !ns.is_empty() && !ns.contains('/') && !ns.starts_with('.'))
    {
        for h in &hierarchies {
            let dir = h.join(ns);
            if dir.is_dir() {
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

/// The mount points at or below `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Unmounts everything mounted at or below `dir`, deepest first (lazy unmount).
pub(crate) fn unmount_under(dir: &Path) {
    for p in mounts_under(dir) {
        if let Err(e) = umount2(&p, MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %p.display(), error = %e, "cleanup: umount failed");
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn config_has_private_paths() {
        let paths = ConfigPaths {
            root: Path::new("/d/root"),
            state: Path::new("/d/state"),
            grpc: Path::new("/d/c.sock"),
            ttrpc: Path::new("/d/c.sock.ttrpc"),
            debug: Path::new("/d/debug.sock"),
            opt: Path::new("/d/opt"),
        };
        let c = config_toml(&paths, ContentSharing::Isolated);
        assert!(c.contains("root = \"/d/root\""));
        assert!(c.contains("io.containerd.grpc.v1.cri"));
        assert!(c.contains("[ttrpc]\n  address = \"/d/c.sock.ttrpc\""));
        assert!(c.contains("content_sharing_policy = \"isolated\""));
        let shared = config_toml(&paths, ContentSharing::Shared);
        assert!(shared.contains("content_sharing_policy = \"shared\""));
    }
}

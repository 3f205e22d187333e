//! The shim bundle an interrupted task create leaves behind. containerd 1.6 makes a task's
//! bundle directory, starts its shim and has the shim create the container, all within the
//! create call; when the caller goes away mid-call (the agent was killed), containerd drops
//! the task from its list but its cleanup can stop halfway (the shim answers its delete too
//! late, or refuses to shut down while it holds the container it was still creating). The
//! bundle then stays, with a shim and a created, never started container in it, until
//! containerd restarts, and every later create of that container is refused: `failed to start
//! shim: mkdir <bundle>: file exists`. Nothing in containerd's API reaches such a bundle (it
//! has no task), so it is removed the way containerd removes a bundle whose shim died: the
//! container force-deleted by runc, the shim ended, the rootfs unmounted, the bundle and its
//! work directory removed. The container never started (its task never existed to be
//! started), so nothing is stopped that ran.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// runc's state root when the container's runtime options name none (the shim's default).
const RUNC_ROOT: &str = "/run/containerd/runc";
/// How long runc gets to remove the never started container.
const RUNC_DEADLINE: Duration = Duration::from_secs(10);
/// How long containerd gets to clean up the bundle of a shim that was ended, and how often it
/// is looked at meanwhile (a stat: the wait ends within a few ms of containerd's cleanup, which
/// the restart of a half-started task waits on).
const BUNDLE_GRACE: Duration = Duration::from_secs(5);
const BUNDLE_POLL: Duration = Duration::from_millis(5);
/// How often the host's processes are read for containerd's one-shot shim calls meanwhile (a
/// read of every process's command line: not to be made more often, with many leftovers at
/// once after a restart).
const CALLS_POLL: Duration = Duration::from_millis(100);
/// Where the processes of the host are listed.
const PROC: &str = "/proc";

/// The bundle containerd names when it refuses a create of container `id` in `namespace` for
/// an earlier create's leftover; None for any other refusal (or a path that is not exactly
/// `<state>/<namespace>/<id>`).
pub(super) fn bundle_of(message: &str, namespace: &str, id: &str) -> Option<PathBuf> {
    let rest = message.split("failed to start shim: mkdir ").nth(1)?;
    let path = Path::new(rest.strip_suffix(": file exists")?);
    is_bundle_of(path, namespace, id).then(|| path.to_owned())
}

/// Removes the leftover bundle of container `id` in `namespace`: what containerd's own
/// cleanup of a dead shim's bundle does.
pub(super) async fn remove(bundle: &Path, namespace: &str, id: &str) -> std::io::Result<()> {
    runc_delete(&runc_root_of(bundle), namespace, id).await?;
    let mut ended = false;
    if let Some(pid) = shim_pid(bundle, id) {
        kill(pid);
        ended = true;
    }
    for shim in end_shims(namespace, id).await {
        ended = true;
        if let Some(other) = shim.bundle.filter(|b| b != bundle) {
            settle(&other, BUNDLE_GRACE).await?;
        }
    }
    // No shim of it was running: containerd cleans nothing up, so there is nothing to wait for.
    settle(bundle, if ended { BUNDLE_GRACE } else { Duration::ZERO }).await
}

/// Whether containerd refused a task create for what an interrupted earlier create of the same
/// container left, or for that create's cleanup racing this one: runc's state of the never
/// started container (`container with given ID already exists`), or containerd's cleanup of
/// the earlier bundle removing the new one under its starting shim (`failed to start shim:
/// getwd: no such file or directory`, or `symlink … /work: no such file or directory`) or
/// ending the new shim (`ttrpc: closed`). Such a create is retried after [`clear`].
pub(super) fn raced_leftover(message: &str) -> bool {
    let bundle_removed =
        message.contains("failed to start shim") && message.contains("no such file or directory");
    bundle_removed
        || ["container with given ID already exists", "ttrpc: closed"]
            .iter()
            .any(|m| message.contains(m))
}

/// Clears everything an interrupted task create of container `id` may have left, whether or
/// not a shim of it still runs: [`end_orphans`], then runc's never started container.
pub(super) async fn clear(namespace: &str, id: &str) -> std::io::Result<Vec<i32>> {
    let ended = end_orphans(namespace, id).await?;
    runc_delete(&PathBuf::from(RUNC_ROOT), namespace, id).await?;
    Ok(ended)
}

/// Ends what an interrupted task create of container `id` left running while containerd has no
/// task for it: a shim that still serves the container's socket (containerd 1.6 hands a later
/// create of the same container to a shim found there, so a shim stuck in the interrupted
/// create makes every later create hang), and the never started container runc may have made
/// for it. Returns the PIDs of the shims ended.
pub(super) async fn end_orphans(namespace: &str, id: &str) -> std::io::Result<Vec<i32>> {
    let shims = end_shims(namespace, id).await;
    // containerd may be cleaning up after that create's shim itself (a one-shot `delete` of
    // the shim binary, then the bundle removed): a create made meanwhile would have its new
    // bundle removed under it, so that cleanup is waited for.
    let cleanups = cleanups_of(namespace, id).await;
    if shims.is_empty() && cleanups.is_empty() {
        return Ok(Vec::new());
    }
    if !shims.is_empty() {
        runc_delete(&PathBuf::from(RUNC_ROOT), namespace, id).await?;
    }
    let mut bundles: Vec<PathBuf> = shims.iter().filter_map(|s| s.bundle.clone()).collect();
    bundles.extend(cleanups);
    bundles.dedup();
    for bundle in &bundles {
        settle(bundle, BUNDLE_GRACE).await?;
    }
    Ok(shims.into_iter().map(|s| s.pid).collect())
}

/// Waits (up to [`BUNDLE_GRACE`]) until containerd's one-shot calls of the shim binary for
/// container `id` end; the bundles they named.
async fn cleanups_of(namespace: &str, id: &str) -> Vec<PathBuf> {
    let deadline = tokio::time::Instant::now() + BUNDLE_GRACE;
    let mut bundles = Vec::new();
    loop {
        let (ns, i) = (namespace.to_owned(), id.to_owned());
        let calls = tokio::task::spawn_blocking(move || calls_of(Path::new(PROC), &ns, &i))
            .await
            .unwrap_or_default();
        if calls.is_empty() || tokio::time::Instant::now() >= deadline {
            return bundles;
        }
        for bundle in calls.into_iter().flatten() {
            if !bundles.contains(&bundle) {
                bundles.push(bundle);
            }
        }
        tokio::time::sleep(CALLS_POLL).await;
    }
}

/// The one-shot shim calls (`... -bundle <path> delete`) of container `id` running under
/// `proc`, each with the bundle it names (when it reads as one).
fn calls_of(proc: &Path, namespace: &str, id: &str) -> Vec<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(proc.join(pid.to_string()).join("cmdline")).ok()?;
            let args = args_of(&cmdline);
            (is_shim_of(&args, namespace, id) && args.last() == Some(&&b"delete"[..])).then(|| {
                flag(&args, b"-bundle")
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(PathBuf::from)
                    .filter(|b| is_bundle_of(b, namespace, id))
            })
        })
        .collect()
}

/// After a shim of the bundle was ended: containerd, if it still held the shim, cleans its
/// bundle up itself (and would remove a new create's bundle at the same path were that made
/// meanwhile), so it gets `grace` ([`BUNDLE_GRACE`]); a bundle still there then is removed here.
async fn settle(bundle: &Path, grace: Duration) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + grace;
    while bundle.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(BUNDLE_POLL).await;
    }
    let bundle = bundle.to_owned();
    tokio::task::spawn_blocking(move || remove_dirs(&bundle))
        .await
        .map_err(std::io::Error::other)?
}

/// A shim daemon of a container, ended.
struct Shim {
    pid: i32,
    /// Its working directory, the container's bundle (when it reads as one).
    bundle: Option<PathBuf>,
}

/// SIGKILLs every shim daemon of container `id` in `namespace`.
async fn end_shims(namespace: &str, id: &str) -> Vec<Shim> {
    let (namespace, id) = (namespace.to_owned(), id.to_owned());
    let shims = tokio::task::spawn_blocking(move || {
        let proc = Path::new(PROC);
        shims_of(proc, &namespace, &id)
            .into_iter()
            .map(|pid| Shim {
                pid,
                bundle: std::fs::read_link(proc.join(pid.to_string()).join("cwd"))
                    .ok()
                    .filter(|b| is_bundle_of(b, &namespace, &id)),
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for shim in &shims {
        kill(shim.pid);
    }
    shims
}

/// Whether `path` is an absolute, plain `<state>/<namespace>/<id>`.
fn is_bundle_of(path: &Path, namespace: &str, id: &str) -> bool {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    plain
        && path.file_name().is_some_and(|n| n == id)
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == namespace)
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Force-deletes the runc container `id` under `root`/`namespace` (killing its init if it was
/// made). A container runc never made is fine.
async fn runc_delete(root: &Path, namespace: &str, id: &str) -> std::io::Result<()> {
    let runc = tokio::process::Command::new("runc")
        .arg("--root")
        .arg(root.join(namespace))
        .args(["delete", "--force", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(RUNC_DEADLINE, runc).await {
        // runc made no container yet when the create was interrupted before it: nothing to
        // delete, which runc says.
        Ok(Ok(out)) if !out.status.success() => {
            tracing::debug!(container.id = %id, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "runc deleted no container of the interrupted create");
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "runc delete {id} did not end within {}s",
                RUNC_DEADLINE.as_secs()
            ),
        )),
    }
}

/// The PIDs under `proc` (a procfs root) of shim daemons of container `id` in `namespace`.
fn shims_of(proc: &Path, namespace: &str, id: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 1)
        .filter(|pid| {
            std::fs::read(proc.join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| is_shim_daemon_of(&c, namespace, id))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether a process's command line (NUL-separated) is a containerd shim daemon of container
/// `id` in `namespace`: `containerd-shim-* -namespace <ns> -id <id> ...`. The shim binary's
/// one-shot calls (`... start`, `... delete`, containerd's own) are not daemons.
fn is_shim_daemon_of(cmdline: &[u8], namespace: &str, id: &str) -> bool {
    let args = args_of(cmdline);
    is_shim_of(&args, namespace, id) && !matches!(args.last(), Some(&b"start") | Some(&b"delete"))
}

/// A command line's arguments.
fn args_of(cmdline: &[u8]) -> Vec<&[u8]> {
    cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect()
}

/// The value after flag `f`.
fn flag<'a>(args: &[&'a [u8]], f: &[u8]) -> Option<&'a [u8]> {
    args.windows(2).find(|w| w[0] == f).map(|w| w[1])
}

/// Whether the arguments run the shim binary for container `id` in `namespace`.
fn is_shim_of(args: &[&[u8]], namespace: &str, id: &str) -> bool {
    let Some(binary) = args.first() else {
        return false;
    };
    let name = binary.rsplit(|b| *b == b'/').next().unwrap_or(binary);
    name.starts_with(b"containerd-shim")
        && flag(args, b"-namespace") == Some(namespace.as_bytes())
        && flag(args, b"-id") == Some(id.as_bytes())
}

/// The runc root the bundle's shim was given (its options.json), else the default.
fn runc_root_of(bundle: &Path) -> PathBuf {
    std::fs::read(bundle.join("options.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            ["root", "Root"].iter().find_map(|k| {
                v.get(k)?
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
        })
        .unwrap_or_else(|| PathBuf::from(RUNC_ROOT))
}

/// The PID of the bundle's shim, when that process is still the shim of container `id` (its
/// command line says `-id <id>`): a PID the kernel gave to another process since is left
/// alone.
fn shim_pid(bundle: &Path, id: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_shim = args
        .windows(2)
        .any(|w| w[0] == b"-id" && w[1] == id.as_bytes());
    (pid > 1 && is_shim).then_some(pid)
}

/// The bundle's rootfs unmounted (every mount stacked on it), then the bundle and the work
/// directory its `work` link names removed.
fn remove_dirs(bundle: &Path) -> std::io::Result<()> {
    let rootfs = bundle.join("rootfs");
    while nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    let work = std::fs::read_link(bundle.join("work")).ok();
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    gone(std::fs::remove_dir_all(bundle))?;
    if let Some(work) = work {
        gone(std::fs::remove_dir_all(work))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bundle_of_this_container_is_named() {
        let m = "failed to start shim: mkdir /run/containerd/io.containerd.runtime.v2.task/berth/t1.web: file exists";
        assert_eq!(
            bundle_of(m, "berth", "t1.web"),
            Some(PathBuf::from(
                "/run/containerd/io.containerd.runtime.v2.task/berth/t1.web"
            ))
        );
        assert_eq!(bundle_of(m, "berth", "t2.web"), None);
        assert_eq!(bundle_of(m, "other", "t1.web"), None);
        let climbing = "failed to start shim: mkdir /run/x/../berth/t1.web: file exists";
        assert_eq!(bundle_of(climbing, "berth", "t1.web"), None);
        let relative = "failed to start shim: mkdir berth/t1.web: file exists";
        assert_eq!(bundle_of(relative, "berth", "t1.web"), None);
        assert_eq!(
            bundle_of("runc: exec format error", "berth", "t1.web"),
            None
        );
    }

    #[test]
    fn only_shim_daemons_of_this_container_are_orphans() {
        let line = |args: &[&str]| args.join("\0").into_bytes();
        let daemon = line(&[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "berth",
            "-id",
            "t1.web",
            "-address",
            "/run/containerd/containerd.sock",
        ]);
        assert!(is_shim_daemon_of(&daemon, "berth", "t1.web"));
        assert!(!is_shim_daemon_of(&daemon, "berth", "t1.we"));
        assert!(!is_shim_daemon_of(&daemon, "other", "t1.web"));
        // containerd's one-shot calls of the shim binary are not the daemon.
        for action in ["start", "delete"] {
            let call = line(&[
                "containerd-shim-runc-v2",
                "-namespace",
                "berth",
                "-id",
                "t1.web",
                action,
            ]);
            assert!(!is_shim_daemon_of(&call, "berth", "t1.web"), "{action}");
        }
        // Another program that names the container is not a shim.
        let other = line(&["sh", "-namespace", "berth", "-id", "t1.web"]);
        assert!(!is_shim_daemon_of(&other, "berth", "t1.web"));
        assert!(!is_shim_daemon_of(b"", "berth", "t1.web"));
    }

    #[test]
    fn containerds_cleanup_calls_are_found_with_their_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let process = |pid: &str, args: &[&str]| {
            let p = dir.path().join(pid);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cmdline"), args.join("\0")).unwrap();
        };
        let call = |id: &'static str, action: &'static str| {
            [
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "berth",
                "-id",
                id,
                "-bundle",
                "/run/c/state/berth/t1.web",
                action,
            ]
        };
        process("50", &call("t1.web", "delete"));
        process("51", &call("t1.web", "start"));
        process("52", &call("t2.web", "delete"));
        assert_eq!(
            calls_of(dir.path(), "berth", "t1.web"),
            vec![Some(PathBuf::from("/run/c/state/berth/t1.web"))]
        );
        // A bundle that is not this container's is not named.
        assert_eq!(calls_of(dir.path(), "berth", "t2.web"), vec![None]);
    }

    #[test]
    fn orphan_shims_are_found_in_the_process_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let process = |pid: &str, args: &[&str]| {
            let p = dir.path().join(pid);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cmdline"), args.join("\0")).unwrap();
        };
        let shim = ["containerd-shim-runc-v2", "-namespace", "berth", "-id"];
        process(
            "42",
            &[&shim[..], &["t1.web", "-address", "/c.sock"]].concat(),
        );
        process("7", &[&shim[..], &["t1.web"]].concat());
        process("43", &[&shim[..], &["t2.web"]].concat());
        process("44", &["sleep", "100"]);
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::write(dir.path().join("uptime"), "1 1").unwrap();
        assert_eq!(shims_of(dir.path(), "berth", "t1.web"), vec![7, 42]);
        assert_eq!(shims_of(dir.path(), "berth", "t3.web"), Vec::<i32>::new());
        assert!(shims_of(&dir.path().join("missing"), "berth", "t1.web").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_shims_bundle_is_left_to_containerd_then_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("state/berth/t1.web");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        // containerd cleans it up within the grace: nothing is left to remove.
        let cleaner = bundle.clone();
        let containerd = tokio::spawn(async move {
            tokio::time::sleep(BUNDLE_GRACE / 2).await;
            std::fs::remove_dir_all(cleaner).unwrap();
        });
        let started = tokio::time::Instant::now();
        settle(&bundle, BUNDLE_GRACE).await.unwrap();
        containerd.await.unwrap();
        assert!(started.elapsed() < BUNDLE_GRACE);
        // containerd does not: removed after the grace.
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        let started = tokio::time::Instant::now();
        settle(&bundle, BUNDLE_GRACE).await.unwrap();
        assert!(started.elapsed() >= BUNDLE_GRACE);
        assert!(!bundle.exists());
    }

    #[tokio::test]
    async fn a_bundle_is_removed_with_its_work_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("state/berth/t1.web");
        let work = dir.path().join("root/berth/t1.web");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(bundle.join("config.json"), b"{}").unwrap();
        // A PID that is not a shim of this container is not signalled.
        std::fs::write(bundle.join("shim.pid"), std::process::id().to_string()).unwrap();
        std::os::unix::fs::symlink(&work, bundle.join("work")).unwrap();
        let runc_root = dir.path().join("runc");
        let options = serde_json::json!({ "root": runc_root });
        std::fs::write(bundle.join("options.json"), options.to_string()).unwrap();
        assert_eq!(shim_pid(&bundle, "t1.web"), None);
        assert_eq!(runc_root_of(&bundle), runc_root);
        remove(&bundle, "berth", "t1.web").await.unwrap();
        assert!(!bundle.exists());
        assert!(!work.exists());
    }

    #[test]
    fn creates_refused_for_a_leftover_or_its_cleanup_are_told_apart() {
        for raced in [
            "failed to create shim task: OCI runtime create failed: runc create failed: container with given ID already exists: unknown",
            "failed to start shim: start failed: io.containerd.runc.v2: getwd: no such file or directory: exit status 1",
            "failed to start shim: symlink /cd/root/io.containerd.runtime.v2.task/ns/t.app /cd/state/io.containerd.runtime.v2.task/ns/t.app/work: no such file or directory",
            "failed to create shim task: ttrpc: closed: unknown",
        ] {
            assert!(raced_leftover(raced), "{raced}");
        }
        for other in [
            "failed to create shim task: OCI runtime create failed: exec: \"sh\": executable file not found in $PATH",
            "image not found",
        ] {
            assert!(!raced_leftover(other), "{other}");
        }
    }
}

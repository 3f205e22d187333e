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
/// Where the processes of the host are listed.
const PROC: &str = "/proc";

/// The bundle containerd names when it refuses a create of container `id` in `namespace` for
/// an earlier create's leftover; None for any other refusal (or a path that is not exactly
/// `<state>/<namespace>/<id>`).
pub(super) fn bundle_of(message: &str, namespace: &str, id: &str) -> Option<PathBuf> {
    let rest = message.split("failed to start shim: mkdir ").nth(1)?;
    let path = Path::new(rest.strip_suffix(": file exists")?);
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let named = path.file_name()? == id && path.parent().and_then(Path::file_name)? == namespace;
    (plain && named).then(|| path.to_owned())
}

/// Removes the leftover bundle of container `id` in `namespace`: what containerd's own
/// cleanup of a dead shim's bundle does.
pub(super) async fn remove(bundle: &Path, namespace: &str, id: &str) -> std::io::Result<()> {
    runc_delete(&runc_root_of(bundle), namespace, id).await?;
    if let Some(pid) = shim_pid(bundle, id) {
        kill(pid);
    }
    end_shims(namespace, id).await;
    let bundle = bundle.to_owned();
    tokio::task::spawn_blocking(move || remove_dirs(&bundle))
        .await
        .map_err(std::io::Error::other)?
}

/// Ends what an interrupted task create of container `id` left running while containerd has no
/// task for it: a shim that still serves the container's socket (containerd 1.6 hands a later
/// create of the same container to a shim found there, so a shim stuck in the interrupted
/// create makes every later create hang), and the never started container runc may have made
/// for it. Returns the PIDs of the shims ended.
pub(super) async fn end_orphans(namespace: &str, id: &str) -> std::io::Result<Vec<i32>> {
    let ended = end_shims(namespace, id).await;
    if !ended.is_empty() {
        runc_delete(&PathBuf::from(RUNC_ROOT), namespace, id).await?;
    }
    Ok(ended)
}

/// SIGKILLs every shim daemon of container `id` in `namespace`; their PIDs.
async fn end_shims(namespace: &str, id: &str) -> Vec<i32> {
    let (namespace, id) = (namespace.to_owned(), id.to_owned());
    let pids = tokio::task::spawn_blocking(move || shims_of(Path::new(PROC), &namespace, &id))
        .await
        .unwrap_or_default();
    for pid in &pids {
        kill(*pid);
    }
    pids
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
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let Some(binary) = args.first() else {
        return false;
    };
    let name = binary.rsplit(|b| *b == b'/').next().unwrap_or(binary);
    let flag = |f: &[u8]| args.windows(2).find(|w| w[0] == f).map(|w| w[1]);
    name.starts_with(b"containerd-shim")
        && flag(b"-namespace") == Some(namespace.as_bytes())
        && flag(b"-id") == Some(id.as_bytes())
        && !matches!(args.last(), Some(&b"start") | Some(&b"delete"))
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
}

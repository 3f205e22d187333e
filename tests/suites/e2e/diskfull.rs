//! A full disk end to end: the agent's data dir on a small tmpfs, filled to the last byte.
//! The running task keeps running and its output keeps being read (lines that cannot be
//! written are dropped, so the container never blocks on its stdout); the agent reports the
//! condition on its heartbeat, which describe-container-instances shows; a new task is refused
//! with a reason that names the data dir and the errno; and once space is freed, the agent
//! recovers by itself and takes new tasks, with the first task's container never restarted.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::Value;

use super::{Env, RUNNING_WITHIN, hello, taskdef};

/// The tmpfs the agent's data dir is on, detached when the trial ends, however it ends.
pub(super) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(super) fn mount(at: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(at)?;
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .with_context(|| format!("mount a tmpfs on {}", at.display()))?;
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Writes `path` until the filesystem refuses another byte; how many bytes it took.
pub(super) fn fill(path: &Path) -> Result<u64> {
    let mut file = std::fs::File::create(path)?;
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match file.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e).context("fill the data dir"),
            }
        }
    }
    let _ = file.sync_all();
    Ok(written)
}

/// The instance's `agentHealth.storageDegraded`, Null when it is not degraded.
pub(super) fn degraded(env: &Env) -> Result<Value> {
    let instances = env.instances()?;
    let i = instances.first().context("no container instance")?;
    Ok(i["agentHealth"]["storageDegraded"].clone())
}

/// The tick numbers in a container's log, in order.
pub(super) fn ticks(env: &Env, task: &str) -> Vec<u64> {
    env.container_log(task, "app")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// The first task's own count of the lines it wrote (kept in its root filesystem, which is
/// not on the full disk), read through its process.
pub(super) fn progress(w: &World, env: &Env, task: &str) -> Result<u64> {
    let tasks = w.ctr(&["-n", &env.opts.namespace, "tasks", "ls"])?;
    let pid = tasks
        .lines()
        .find(|l| l.contains(task))
        .and_then(|l| l.split_whitespace().nth(1))
        .with_context(|| format!("no containerd task for {task}: {tasks}"))?;
    let path = format!("/proc/{pid}/root/tmp/i");
    let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: {text:?}"))
}

/// A task whose container writes lines of ~260 bytes, 50 a second (the pipe of its stdout,
/// 64 KiB, would be full in about 5 s if nothing read it), and counts them in its own
/// root filesystem (written aside and renamed, so a reader never sees it half written).
pub(super) fn chatty(family: &str, image: &str) -> Value {
    taskdef(
        family,
        serde_json::json!([{
            "name": "app", "image": image, "memory": 32, "stopTimeout": 1,
            "command": ["sh", "-c",
                "pad=$(head -c 250 /dev/zero | tr '\\0' x); i=0; \
                 while true; do i=$((i+1)); echo \"tick $i $pad\"; echo $i > /tmp/i.n; busybox mv /tmp/i.n /tmp/i; sleep 0.02; done"]
        }]),
    )
}

pub(super) fn full_data_dir_degrades_refuses_new_tasks_and_recovers(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let data_dir = env.opts.data_dir.clone();
    let _tmpfs = Tmpfs::mount(&data_dir, "24m")?;
    env.connect()?;
    let image = hello(w, "e2e-diskfull")?;
    let chatty = |family: &str| chatty(family, &image);
    let (first, _) = env.start_task(&chatty("diskfull-first"))?;
    poll(Duration::from_secs(30), || {
        Ok((ticks(&env, &first).len() > 5).then_some(()))
    })
    .context("the first task never logged")?;

    let filled = fill(&data_dir.join("fill"))?;
    ensure!(filled > 0, "nothing could be written to the data dir");
    let condition = poll(Duration::from_secs(30), || {
        let d = degraded(&env)?;
        Ok((!d.is_null()).then_some(d))
    })
    .with_context(|| format!("the agent never reported its full data dir{}", env.logs()))?;
    ensure!(condition["errno"] == 28, "{condition}");
    ensure!(
        condition["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(&*data_dir.to_string_lossy())),
        "{condition}"
    );

    // A new task is refused, and the reason names the disk.
    env.register(&chatty("diskfull-second"))?;
    let out = env.ctl(&["run-task", "--task-definition", "diskfull-second"])?;
    ensure!(
        out.status != 0,
        "a task was placed on a full disk: {}",
        out.stdout
    );
    ensure!(
        out.stderr.contains("errno 28") && out.stderr.contains(&*data_dir.to_string_lossy()),
        "the refusal does not name the disk: {}",
        out.stderr
    );
    // The running task keeps running and writing while the disk stays full: far more than
    // its stdout's pipe holds, so its output is being read.
    let before = ticks(&env, &first).last().copied().unwrap_or(0);
    let counted = progress(w, &env, &first)?;
    poll(Duration::from_secs(60), || {
        Ok((progress(w, &env, &first)? > counted + 400).then_some(()))
    })
    .context("the first task's container stopped making progress on a full disk")?;
    let t = env.task(&first)?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");

    // Space returns: the agent recovers by itself.
    std::fs::remove_file(data_dir.join("fill"))?;
    poll(Duration::from_secs(60), || {
        Ok(degraded(&env)?.is_null().then_some(()))
    })
    .with_context(|| format!("the agent never recovered{}", env.logs()))?;
    // Its output was read all along: lines written while the disk was full were dropped
    // (a gap in the ticks), not held back in the pipe.
    let gap = poll(Duration::from_secs(30), || {
        let ticks = ticks(&env, &first);
        Ok(ticks
            .windows(2)
            .find(|w| w[0] >= before && w[1] > w[0] + 1)
            .map(|w| (w[0], w[1])))
    })
    .context("no lines were dropped: the log drain held the container's output")?;
    ensure!(
        gap.1 - gap.0 > 50,
        "only {} lines dropped",
        gap.1 - gap.0 - 1
    );

    let second = env.run_task("diskfull-second")?;
    env.wait_status(&second, "RUNNING", RUNNING_WITHIN)?;
    let t = env.task(&first)?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");
    let app = super::container(&t, "app")?;
    ensure!(
        app["restartCount"].as_u64().unwrap_or(0) == 0,
        "the first task's container restarted: {t}"
    );
    Ok(())
}

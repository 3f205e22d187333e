//! The orphan sweep end to end: an agent whose store was deleted while its containers ran
//! reports the containers it found to the scheduler, which re-adopts the task it still wants
//! (same process, RUNNING throughout, and a stop then leaves nothing); what the other task left
//! (container, network namespace, volume and log directories, cgroups) is reported and removed
//! once `orphan_cleanup_grace` has passed, and the scheduler's view converges (reconciliation
//! marks the task the host no longer runs STOPPED).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello};

/// What the task has on the host, each named for the failure message; empty when all is gone.
fn traces(w: &World, env: &Env, task: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let containers = w.ctr(&["-n", &env.opts.namespace, "containers", "ls", "-q"])?;
    if containers.contains(task) {
        left.push(format!("containers: {}", containers.trim()));
    }
    let data = &env.opts.data_dir;
    let mut paths: Vec<PathBuf> = vec![
        data.join("logs").join(task),
        data.join("volumes").join(task),
    ];
    paths.extend(
        ["cpu", "memory", "pids"]
            .iter()
            .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/berth/{task}"))),
    );
    paths.push(env.opts.netns_dir.join(format!("{task}.0")));
    left.extend(
        paths
            .into_iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string()),
    );
    Ok(left)
}

pub(super) fn lost_store_orphans_are_swept_after_the_grace(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "1")?;
    let image = hello(w, "e2e-orphans")?;
    let def = |family: &str| {
        let mut def = serde_json::json!({
            "family": family,
            "networkMode": "bridge",
            "containerDefinitions": [
                {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
                 "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
                 "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}]}
            ]
        });
        def["volumes"] = serde_json::json!([{"name": "scratch"}]);
        def
    };
    let (kept, _) = env.start_task(&def("adopted"))?;
    let (task, _) = env.start_task(&def("orphaned"))?;
    let before = traces(w, &env, &task)?;
    ensure!(
        before.len() >= 5,
        "the running task should have its container, logs, volumes, cgroups and namespace: {before:?}"
    );
    let kept_before = traces(w, &env, &kept)?;
    let ns = env.opts.namespace.clone();
    let pid_line = |out: &str| out.lines().find(|l| l.contains(&kept)).map(str::to_owned);
    let pids_before = w.ctr(&["-n", &ns, "tasks", "ls"])?;

    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    // While the agent is down, one of the two is stopped: the scheduler no longer wants it.
    env.ok(&["stop-task", &task])?;
    let store = env.opts.data_dir.join("agent.redb");
    std::fs::remove_file(&store).with_context(|| format!("remove {}", store.display()))?;
    env.opts.extra_args = vec!["--orphan-cleanup-grace=3s".to_owned()];
    env.start_agent()?;
    env.wait_instance_connected()?;

    // The task the scheduler still wants is re-adopted from containerd's labels.
    poll(Duration::from_secs(30), || {
        let log = env.agent()?.daemon.log();
        Ok(log
            .lines()
            .any(|l| l.contains("re-adopting a task found in containerd") && l.contains(&kept))
            .then_some(()))
    })
    .with_context(|| format!("task {kept} was never re-adopted{}", env.logs()))?;

    // The scheduler's view converges: the host no longer knows the other one.
    let t = env.wait_status(&task, "STOPPED", Duration::from_secs(60))?;
    ensure!(
        t["stoppedReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{t}"
    );

    poll(Duration::from_secs(90), || {
        Ok(traces(w, &env, &task)?.is_empty().then_some(()))
    })
    .with_context(|| {
        format!(
            "the orphans of task {task} were not removed: {:?}{}",
            traces(w, &env, &task).unwrap_or_default(),
            env.logs()
        )
    })?;
    let log = env.agent()?.daemon.log();
    let container = format!("{task}.app");
    let line = |needle: &str| {
        log.lines()
            .position(|l| l.contains(needle) && l.contains(&container))
    };
    let found = line("found a leftover").context("the orphan container was never reported")?;
    let removed = line("removed a leftover").context("the container's removal was not logged")?;
    ensure!(found < removed, "reported before it was removed");
    for kind in ["log directory", "volume directory", "cgroup"] {
        ensure!(
            log.lines()
                .any(|l| l.contains("removed a leftover") && l.contains(kind) && l.contains(&task)),
            "no removal of the {kind} logged by name{}",
            env.logs()
        );
    }
    ensure!(
        !log.lines()
            .any(|l| l.contains("removed a leftover") && l.contains(&kept)),
        "the sweep removed something of the adopted task{}",
        env.logs()
    );

    // The adopted task kept everything: its process, its traces, RUNNING at the scheduler.
    let t = env.task(&kept)?;
    ensure!(
        t["lastStatus"] == "RUNNING" && t["containers"][0]["lastStatus"] == "RUNNING",
        "{t}"
    );
    let pids_now = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    ensure!(
        pid_line(&pids_before).is_some() && pid_line(&pids_before) == pid_line(&pids_now),
        "the adopted task's container was restarted: {pids_before} / {pids_now}"
    );
    let kept_now = traces(w, &env, &kept)?;
    // (The containers entry lists the namespace's containers, the orphan's included before.)
    ensure!(
        kept_now.len() == kept_before.len() && kept_before.len() >= 5,
        "the adopted task lost some of what it had: {kept_before:?} / {kept_now:?}"
    );
    // A stop works as for any task, and leaves nothing.
    env.stop_task(&kept, Duration::from_secs(30))?;
    poll(Duration::from_secs(60), || {
        Ok(traces(w, &env, &kept)?.is_empty().then_some(()))
    })
    .with_context(|| {
        format!(
            "the adopted task {kept} left {:?}{}",
            traces(w, &env, &kept).unwrap_or_default(),
            env.logs()
        )
    })?;
    ensure!(
        Path::new(&env.opts.data_dir).join("agent.redb").exists(),
        "the agent made a fresh store"
    );
    Ok(())
}

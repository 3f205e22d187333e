//! The orphan sweep end to end: an agent whose store was deleted while its containers ran
//! finds what they left (container, network namespace, volume and log directories, cgroups),
//! reports each one, removes it once `orphan_cleanup_grace` has passed, and the scheduler's
//! view converges (reconciliation marks the task it no longer runs STOPPED).

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
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-orphans")?;
    let mut def = serde_json::json!({
        "family": "orphaned",
        "networkMode": "bridge",
        "containerDefinitions": [
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
             "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}]}
        ]
    });
    def["volumes"] = serde_json::json!([{"name": "scratch"}]);
    let (task, _) = env.start_task(&def)?;
    let before = traces(w, &env, &task)?;
    ensure!(
        before.len() >= 5,
        "the running task should have its container, logs, volumes, cgroups and namespace: {before:?}"
    );

    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    let store = env.opts.data_dir.join("agent.redb");
    std::fs::remove_file(&store).with_context(|| format!("remove {}", store.display()))?;
    env.opts.extra_args = vec!["--orphan-cleanup-grace=3s".to_owned()];
    env.start_agent()?;
    env.wait_instance_connected()?;

    // The scheduler's view converges: the host no longer knows the task.
    let t = env.wait_status(&task, "STOPPED", Duration::from_secs(60))?;
    ensure!(
        t["stoppedReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{t}"
    );

    poll(Duration::from_secs(60), || {
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
        Path::new(&env.opts.data_dir).join("agent.redb").exists(),
        "the agent made a fresh store"
    );
    Ok(())
}

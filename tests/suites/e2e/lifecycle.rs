//! What outlives what end to end: a scheduler killed and restarted, an agent stopped and
//! restarted under running containers, the cleanup after a task, and tasks that never wait
//! for one another.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_tests::berth::Scheduler;
use berth_tests::{BadMode, BadRegistry, World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello, taskdef};

pub(super) fn scheduler_restart(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-restart")?;
    let (id, _) = env.start_task(&taskdef("longrun", serde_json::json!([
        {"name": "app", "image": image, "memory": 64, "command": ["sh", "-c", "sleep 2; exit 7"]}
    ])))?;
    let instance = env.wait_instance_connected()?["containerInstanceId"].clone();
    // Kill the scheduler; the task exits while it is down.
    env.scheduler
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_secs(3));
    let port = env.scheduler.port();
    env.scheduler = Scheduler::start(&env.dir, Some(port))?;
    let back = env.wait_instance_connected()?;
    ensure!(
        back["containerInstanceId"] == instance,
        "instance changed across the restart"
    );
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30))?;
    ensure!(
        t["containers"][0]["exitCode"] == 7 && t["stopCode"] == "EssentialContainerExited",
        "{t}"
    );
    Ok(())
}

pub(super) fn cleanup(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-clean")?;
    env.register(&taskdef(
        "brief",
        serde_json::json!([{"name": "app", "image": image, "memory": 64, "command": ["true"]}]),
    ))?;
    let id = env.run_task("brief")?;
    env.wait_released(&id, Duration::from_secs(60))?;
    let ns = env.opts.namespace.clone();
    poll(Duration::from_secs(20), || {
        let containers = w.ctr(&["-n", &ns, "containers", "ls", "-q"])?;
        let gone = containers.trim().is_empty()
            && ["cpu", "memory", "pids"]
                .iter()
                .all(|c| !PathBuf::from(format!("/sys/fs/cgroup/{c}/berth/{id}")).exists());
        Ok(gone.then_some(()))
    })
    .with_context(|| format!("task {id} left containers or cgroups behind{}", env.logs()))?;
    let snaps = w.ctr(&["-n", &ns, "snapshots", "ls"])?;
    ensure!(!snaps.contains(&id), "snapshot left: {snaps}");
    Ok(())
}

pub(super) fn agent_restart(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-agent-restart")?;
    let (id, _) = env.start_task(&taskdef(
        "survivor",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]}
        ]),
    ))?;
    let ns = env.opts.namespace.clone();
    let pid_before = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    // Stop the agent; the container must keep running and keep its process.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    std::thread::sleep(Duration::from_millis(500));
    let during = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    ensure!(
        during.contains("RUNNING") && during == pid_before,
        "container changed while the agent was down:\n{pid_before}\n{during}"
    );
    env.start_agent()?;
    env.wait_instance_connected()?;
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(10))?;
    ensure!(t["containers"][0]["lastStatus"] == "RUNNING", "{t}");
    ensure!(
        w.ctr(&["-n", &ns, "tasks", "ls"])? == pid_before,
        "the container was restarted"
    );
    // The output keeps flowing into the log after the restart, and the task still stops.
    let log = env.log_path(&id, "app");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    poll(Duration::from_secs(5), || {
        Ok((std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > size).then_some(()))
    })
    .context("the log stopped growing after the agent restarted")?;
    let t = env.stop_task(&id, Duration::from_secs(15))?;
    ensure!(t["stopCode"] == "UserInitiated", "{t}");
    Ok(())
}

/// One task's container ignores SIGTERM for a long stop timeout and another's image pull is
/// held by a stalled registry; a third task still starts and stops at once.
pub(super) fn isolation(w: &World) -> Result<()> {
    let stall = BadRegistry::start(BadMode::Stall)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.insecure_registries.push(stall.host());
    env.connect()?;
    let image = hello(w, "e2e-isolation")?;
    let (stubborn, _) = env.start_task(&taskdef(
        "stubborn",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 100,
             "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
        ]),
    ))?;
    env.register(&taskdef(
        "stalled",
        serde_json::json!([{"name": "app", "image": stall.reference("held/app"), "memory": 32}]),
    ))?;
    env.register(&taskdef("quick", serde_json::json!([
        {"name": "app", "image": image, "memory": 32, "stopTimeout": 1, "command": ["sleep", "300"]}
    ])))?;
    env.ok(&["stop-task", &stubborn])?; // will take 100 s to die
    let stalled = env.run_task("stalled")?;
    poll(Duration::from_secs(20), || {
        Ok(stall
            .requests()
            .iter()
            .any(|r| r.contains("/blobs/") && !r.contains(&stall.image().config.digest))
            .then_some(()))
    })
    .context("the stalled registry never saw the layer request")?;

    let start = Instant::now();
    let quick = env.run_task("quick")?;
    env.wait_status(&quick, "RUNNING", Duration::from_secs(10))?;
    env.stop_task(&quick, Duration::from_secs(10))?;
    let took = start.elapsed();
    ensure!(
        took < Duration::from_secs(5),
        "the quick task took {took:?} beside the slow ones"
    );
    ensure!(
        env.task(&stubborn)?["lastStatus"] == "RUNNING",
        "the stubborn task should still be stopping"
    );
    ensure!(
        env.task(&stalled)?["lastStatus"] == "PENDING",
        "the stalled pull should still be pending: {}",
        env.task(&stalled)?
    );
    Ok(())
}

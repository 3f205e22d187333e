//! Waiting on tasks the way scripts do, over the scheduler's `WatchTasks` stream:
//! `run-task --wait`, `wait tasks-stopped` while a stop happens, a task that fails to start,
//! and a timeout, each with ECS's exit statuses.

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use berth_tests::berth::ctl_command;

use super::{Env, hello, taskdef};

pub(super) fn run_task_wait_and_wait_follow_the_task(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-wait")?;
    env.register(&taskdef(
        "sleeper",
        serde_json::json!([{"name": "app", "image": image, "memory": 64,
                            "command": ["sleep", "300"], "stopTimeout": 1}]),
    ))?;
    env.register(&taskdef(
        "ghost",
        serde_json::json!([{"name": "app", "memory": 64,
                            "image": format!("{}/does-not-exist:1.0", w.registry().host())}]),
    ))?;

    // run-task --wait returns once the task is RUNNING, having printed its ID.
    let out = env.ok(&[
        "run-task",
        "--task-definition",
        "sleeper",
        "--wait",
        "--timeout",
        "60s",
    ])?;
    let id = out.task_ids().into_iter().next().context("no task id")?;
    let t = env.task(&id)?;
    ensure!(t["lastStatus"] == "RUNNING", "after run-task --wait: {t}");

    // A wait that runs out of time says what it waited for, with exit status 1.
    let out = env.ctl(&["wait", "tasks-stopped", &id, "--timeout", "1"])?;
    ensure!(out.status == 1, "wait --timeout 1: {out:?}");
    ensure!(
        out.stderr.contains(&format!(
            "timed out after 1s waiting for tasks to be STOPPED: {id} (RUNNING)"
        )),
        "{}",
        out.stderr
    );

    // A wait already listening when the task is stopped ends with it.
    let waiting = ctl_command(&env.scheduler.ctl_config)?
        .args(["--cluster", &env.cluster, "wait", "tasks-stopped", &id])
        .args(["--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start berthctl wait")?;
    env.ok(&["stop-task", &id])?;
    let done = waiting.wait_with_output().context("berthctl wait")?;
    ensure!(
        done.status.success(),
        "wait tasks-stopped: {}{}",
        String::from_utf8_lossy(&done.stderr),
        env.logs()
    );
    let t = env.task(&id)?;
    ensure!(
        t["lastStatus"] == "STOPPED",
        "after wait tasks-stopped: {t}"
    );

    // A task that never runs fails run-task --wait with exit status 1 and its stop reason;
    // its ID is printed all the same.
    let out = env.ctl(&["run-task", "--task-definition", "ghost", "--wait"])?;
    ensure!(
        out.status == 1,
        "run-task --wait of a missing image: {out:?}"
    );
    let ghost = out.task_ids().into_iter().next().context("no task id")?;
    ensure!(
        out.stderr
            .contains(&format!("task {ghost} stopped before it was running"))
            && out.stderr.contains("does-not-exist"),
        "{}",
        out.stderr
    );
    // --timeout only goes with --wait.
    let out = env.ctl(&["run-task", "--task-definition", "sleeper", "--timeout", "5"])?;
    ensure!(out.status == 2, "--timeout without --wait: {out:?}");
    Ok(())
}

//! Instance lifecycle end to end: a DRAINING instance takes no new task while its running task
//! keeps running, shows DRAINING, and placement's error names it; ACTIVE takes tasks again. An
//! agent with drain_on_shutdown drains its own instance on SIGTERM before it exits.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello, taskdef};

pub(super) fn draining_instance_takes_no_new_task(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-drain")?;
    let def = taskdef(
        "drained",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "command": ["sleep", "3600"]}
        ]),
    );
    let (running, _) = env.start_task(&def)?;
    let instance = env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .context("instance without an ID")?
        .to_owned();

    let drained = env.json(&[
        "update-container-instances-state",
        &instance,
        "--status",
        "DRAINING",
    ])?;
    ensure!(
        drained["containerInstances"][0]["status"] == "DRAINING",
        "{drained}"
    );
    let listed = env.instances()?;
    ensure!(
        listed
            .iter()
            .any(|i| i["containerInstanceId"] == instance.as_str() && i["status"] == "DRAINING"),
        "list does not show DRAINING: {listed:?}"
    );
    let table = env.ok(&["list-container-instances"])?.stdout;
    ensure!(table.contains("DRAINING"), "{table}");

    let refused = env.ctl(&["run-task", "--task-definition", "drained"])?;
    ensure!(
        refused.status != 0
            && refused.stderr.contains(&instance)
            && refused.stderr.contains("DRAINING"),
        "run-task on a draining cluster: {refused:?}"
    );
    // The task it had keeps running.
    std::thread::sleep(Duration::from_millis(500));
    let t = env.task(&running)?;
    ensure!(
        t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING",
        "{t}"
    );

    env.ok(&[
        "update-container-instances-state",
        &instance,
        "--status",
        "ACTIVE",
    ])?;
    let again = env.run_task("drained")?;
    let placed = env.wait_status(&again, "RUNNING", Duration::from_secs(60))?;
    ensure!(
        placed["containerInstanceId"] == instance.as_str(),
        "{placed}"
    );
    Ok(())
}

pub(super) fn drain_on_shutdown_drains_on_sigterm(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.opts.extra_args.push("--drain-on-shutdown".to_owned());
    env.connect()?;
    let instance = env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .context("instance without an ID")?
        .to_owned();
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(30))?;
    let log = env.agent()?.daemon.log();
    ensure!(
        log.contains("the scheduler acknowledged the drain"),
        "no acknowledgement in the agent's log:\n{log}"
    );
    let status = poll(Duration::from_secs(10), || {
        let listed = env.instances()?;
        Ok(listed
            .into_iter()
            .find(|i| i["containerInstanceId"] == instance.as_str())
            .map(|i| i["status"].clone()))
    })?;
    ensure!(
        status == "DRAINING",
        "instance status after SIGTERM: {status}"
    );
    Ok(())
}

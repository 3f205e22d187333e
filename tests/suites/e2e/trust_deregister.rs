//! Deregistering an instance whose agent is connected, over the real wire against the TLS
//! scheduler: refused while its task runs, then forced: the task is recorded STOPPED, the agent
//! receives the stop order and stops the container, is cut off with a reason it logs (join
//! again with a new token), cannot come back, and the cluster can then be deleted.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;

use super::{Env, hello, taskdef};

pub(super) fn deregistering_a_connected_instance_cuts_its_agent_off(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-dereg")?;
    let def = taskdef(
        "dereg",
        serde_json::json!([{"name": "app", "image": image, "memory": 64,
                            "command": ["sleep", "300"], "stopTimeout": 1}]),
    );
    let (task_id, _) = env.start_task(&def)?;
    let instance = env.wait_instance_connected()?;
    let id = instance["containerInstanceId"]
        .as_str()
        .context("no instance ID")?
        .to_owned();

    // Refused while its task runs; nothing changes.
    let out = env.ctl(&["deregister-container-instance", &id])?;
    ensure!(
        out.status != 0 && out.stderr.contains("not yet STOPPED") && out.stderr.contains("--force"),
        "deregistering an instance with a running task: {}",
        out.stderr
    );
    ensure!(
        env.task(&task_id)?["lastStatus"] == "RUNNING",
        "the task moved"
    );

    // Forced: INACTIVE, in the ECS shape.
    let done = env.json(&["deregister-container-instance", &id, "--force"])?;
    ensure!(
        done["containerInstance"]["status"] == "INACTIVE"
            && done["containerInstance"]["containerInstanceId"] == id.as_str(),
        "{done}"
    );
    let task = env.task(&task_id)?;
    ensure!(
        task["lastStatus"] == "STOPPED"
            && task["stoppedReason"]
                .as_str()
                .is_some_and(|r| r.contains("deregistered")),
        "{task}"
    );

    // The agent got the stop order before the cut-off, and says what happened and what to do.
    let agent = env.agent()?;
    agent
        .daemon
        .wait_for_log("stopping task", Duration::from_secs(20))
        .with_context(|| env.logs())?;
    agent
        .daemon
        .wait_for_log("was deregistered", Duration::from_secs(20))
        .with_context(|| env.logs())?;
    agent
        .daemon
        .wait_for_log("join again with a new join token", Duration::from_secs(5))
        .with_context(|| env.logs())?;
    ensure!(
        env.scheduler.daemon.log().contains("session cut off"),
        "the scheduler did not log the cut-off{}",
        env.logs()
    );

    // It stays out: not listed, never connected again, and it does not retry in a loop.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        env.instances()?.is_empty(),
        "a deregistered instance is listed"
    );
    let refusals = agent
        .daemon
        .log()
        .matches("the scheduler refused this agent")
        .count();
    ensure!(
        refusals <= 2,
        "the agent retried a refusal {refusals} times in seconds{}",
        env.logs()
    );

    // A cluster with only deregistered instances can be deleted.
    env.ok(&["delete-cluster", &env.cluster])?;
    Ok(())
}

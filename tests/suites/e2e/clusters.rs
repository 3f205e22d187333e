//! Clusters and container instances end to end: a cluster's lifecycle, an agent's
//! registration and its identity across restarts, and the clear errors of bad requests.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello, taskdef};

pub(super) fn clusters(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let c = env.cluster.clone();
    env.ok(&["create-cluster", &c])?;
    let list = env.json(&["list-clusters"])?;
    ensure!(list.to_string().contains(&c), "{list}");
    env.start_agent()?;
    env.wait_instance_connected()?;
    // A name that does not exist is a failure entry, and berthctl exits non-zero for it.
    let out = env.ctl(&["-o", "json", "describe-clusters", &c, "nosuch"])?;
    ensure!(
        out.status == 1 && out.stderr.contains("nosuch: MISSING"),
        "{out:?}"
    );
    let described = out.json()?;
    ensure!(
        described["clusters"][0]["registeredContainerInstancesCount"] == 1,
        "{described}"
    );
    ensure!(
        described["failures"][0]["arn"]
            .as_str()
            .unwrap_or_default()
            .contains("nosuch"),
        "{described}"
    );
    let refused = env.ctl(&["delete-cluster", &c])?;
    ensure!(
        refused.status != 0 && refused.stderr.contains(&c),
        "delete of a cluster in use: {refused:?}"
    );
    Ok(())
}

pub(super) fn unknown_cluster(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.start_agent()?;
    let needle = format!("berthctl create-cluster {}", env.cluster);
    env.agent()?
        .daemon
        .wait_for_log(&needle, Duration::from_secs(20))?;
    ensure!(env.instances().map(|i| i.is_empty()).unwrap_or(true));
    Ok(())
}

pub(super) fn register(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let inst = env.wait_instance_connected()?;
    let id = inst["containerInstanceId"]
        .as_str()
        .context("no id")?
        .to_owned();
    let text = inst.to_string();
    for needle in [
        "\"CPU\"",
        "\"MEMORY\"",
        "berth.cgroup-version",
        "berth.kernel-version",
        "berth.containerd-version",
        "berth.agent-version",
    ] {
        ensure!(text.contains(needle), "{needle} missing from {text}");
    }
    ensure!(inst["versionInfo"]["agentVersion"].is_string(), "{text}");
    // Restart the agent: same instance, connected again.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    poll(Duration::from_secs(10), || {
        Ok(env
            .instances()?
            .iter()
            .any(|i| i["agentConnected"] == false)
            .then_some(()))
    })
    .context("instance never marked disconnected")?;
    env.start_agent()?;
    let again = env.wait_instance_connected()?;
    ensure!(
        again["containerInstanceId"] == id.as_str(),
        "instance id changed: {id} → {again}"
    );
    ensure!(env.instances()?.len() == 1, "a second instance appeared");
    Ok(())
}

pub(super) fn bad_requests(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-bad")?;
    // No capacity.
    env.register(&taskdef(
        "huge",
        serde_json::json!([{"name": "app", "image": image, "memory": 10_000_000}]),
    ))?;
    let out = env.ctl(&["run-task", "--task-definition", "huge"])?;
    ensure!(
        out.status != 0 && out.stderr.contains("largest free capacity"),
        "{out:?}"
    );
    // Unknown family.
    let out = env.ctl(&["run-task", "--task-definition", "nosuchfamily"])?;
    ensure!(
        out.status != 0 && out.stderr.contains("nosuchfamily"),
        "{out:?}"
    );
    // Malformed JSON: line and column.
    let bad = env.dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"family\": \"x\",\n  \"containerDefinitions\": [\n    {\"name\": \"a\" \"image\": \"b\"}\n  ]\n}\n",
    )?;
    let out = env.ctl(&["register-task-definition", "--file", &bad.to_string_lossy()])?;
    ensure!(
        out.status != 0 && out.stderr.contains("line 4") && out.stderr.contains("column"),
        "{out:?}"
    );
    // A misspelt field, with the suggestion.
    let out = env.try_register(&taskdef(
        "typo",
        serde_json::json!([{"name": "a", "image": image, "memroy": 64}]),
    ))?;
    ensure!(
        out.status != 0
            && out.stderr.contains("memroy")
            && out.stderr.contains("did you mean `memory`"),
        "{out:?}"
    );
    Ok(())
}

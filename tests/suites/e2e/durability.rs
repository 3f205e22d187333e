//! Durability end to end: what happens to containers while the agent is down is reported
//! truthfully once it is back. A container that exits while the agent is killed keeps its exit
//! code and time; one killed together with its shim (its exit code lost with it) is reported
//! STOPPED with a reason that says so; the essential-container rule stops both tasks.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, container, hello, taskdef};

/// The containerd PID of a container's process, from `ctr tasks ls`; None when containerd has
/// no task for it.
fn task_pid(w: &World, ns: &str, id: &str) -> Result<Option<(u32, String)>> {
    let out = w.ctr(&["-n", ns, "tasks", "ls"])?;
    Ok(out.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next()? == id).then(|| {
            let pid = cols.next()?.parse().ok()?;
            Some((pid, cols.next()?.to_owned()))
        })?
    }))
}

/// The parent of a process (a container's init: its shim).
fn parent_of(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable stat")?;
    after
        .split_whitespace()
        .nth(1)
        .context("no ppid")?
        .parse()
        .context("bad ppid")
}

pub(super) fn exits_while_the_agent_is_down(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-durability")?;
    // Exits 7 on SIGTERM, sent while the agent is down.
    let (exits, _) = env.start_task(&taskdef(
        "exits-away",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 2,
             "command": ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"]}
        ]),
    ))?;
    let (shim, _) = env.start_task(&taskdef(
        "shim-away",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 2,
             "command": ["sh", "-c", "while true; do sleep 0.1; done"]}
        ]),
    ))?;
    let ns = env.opts.namespace.clone();
    let (exits_id, shim_id) = (format!("{exits}.app"), format!("{shim}.app"));
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;

    w.ctr(&["-n", &ns, "tasks", "kill", "--signal", "SIGTERM", &exits_id])?;
    poll(Duration::from_secs(10), || {
        Ok(task_pid(w, &ns, &exits_id)?
            .filter(|(_, status)| status == "STOPPED")
            .map(|_| ()))
    })
    .context("the container never exited on SIGTERM")?;
    let (pid, _) = task_pid(w, &ns, &shim_id)?.context("the second container has no task")?;
    let shim_pid = parent_of(pid)?;
    for victim in [shim_pid, pid] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(victim)?),
            Signal::SIGKILL,
        )?;
    }
    poll(Duration::from_secs(20), || {
        Ok(task_pid(w, &ns, &shim_id)?.is_none().then_some(()))
    })
    .context("containerd kept the task of the container whose shim was killed")?;

    env.start_agent()?;
    env.wait_instance_connected()?;
    let t = env.wait_status(&exits, "STOPPED", Duration::from_secs(30))?;
    let app = container(&t, "app")?;
    ensure!(app["exitCode"] == 7, "the exit code is kept: {t}");
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    // Both are RFC 3339 in UTC with milliseconds, so they order as text. The stop was decided
    // after the agent came back, which was after the exit.
    let exited_at = app["exitedAt"].as_str().context("no exitedAt")?;
    let stopping_at = t["stoppingAt"].as_str().context("no stoppingAt")?;
    ensure!(
        exited_at < stopping_at,
        "the exit time is containerd's, from while the agent was down: {t}"
    );

    let t = env.wait_status(&shim, "STOPPED", Duration::from_secs(30))?;
    let app = container(&t, "app")?;
    ensure!(
        app["lastStatus"] == "STOPPED" && app["exitCode"].is_null(),
        "{t}"
    );
    ensure!(
        app["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exit code is unknown")),
        "the reason says the exit code was lost: {t}"
    );
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    Ok(())
}

/// The agent releases a task's host ports before it reports STOPPED and the scheduler frees
/// them then: the same fixed host port runs again on the same host right after a stop, long
/// before the stopped task's cleanup (3 hours here).
pub(super) fn redeploy_fixed_host_port_after_stop(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-redeploy-port")?;
    let def = serde_json::json!({
        "family": "fixedport",
        "networkMode": "bridge",
        "containerDefinitions": [
            {"name": "web", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sh", "-c", "while true; do echo hi | nc -l -p 8080; done"],
             "portMappings": [{"containerPort": 8080, "hostPort": 18090}]}
        ]
    });
    let (first, _) = env.start_task(&def)?;
    let stopped = env.stop_task(&first, Duration::from_secs(30))?;
    ensure!(
        stopped["resourcesReleasedAt"].is_null(),
        "the cleanup ran already: {stopped}"
    );
    let second = env.run_task("fixedport")?;
    let t = env.wait_status(&second, "RUNNING", Duration::from_secs(60))?;
    let port = container(&t, "web")?["networkBindings"][0]["hostPort"].clone();
    ensure!(port == 18090, "{t}");
    env.stop_task(&second, Duration::from_secs(30))?;
    Ok(())
}

//! ECS fidelity end to end: definitions that run unchanged on ECS behave here as they do there
//! (stop signals and exit codes, a non-essential container that cannot start, STOPPED as the
//! last status, the task metadata endpoint from a container's first instruction).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use serde_json::json;

use super::{Env, cgroup_file, container, hello};

/// Without task-level cpu and memory, as the ECS agent runs it: the task is weighed by its
/// containers' cpu (each at least 2 shares) but not capped, has no memory limit of its own,
/// and a container with only a memoryReservation may use more than it.
pub(super) fn without_task_level_limits_nothing_caps_the_task(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-fid-limits")?;
    let (id, _) = env.start_task(&json!({
        "family": "fidlimits",
        "networkMode": "none",
        "containerDefinitions": [
            {"name": "soft", "image": image, "cpu": 256, "memoryReservation": 16, "stopTimeout": 1,
             "command": ["sh", "-c",
                "head -c 67108864 /dev/zero | tail > /dev/null && echo used-64m; exec sleep 3600"]},
            {"name": "plain", "image": image, "memory": 32, "essential": false, "stopTimeout": 1,
             "command": ["sleep", "3600"]}
        ]
    }))?;
    let used = poll(Duration::from_secs(30), || {
        let t = env.task(&id)?;
        ensure!(t["lastStatus"] == "RUNNING", "the task stopped: {t}");
        let out = env.ctl(&["logs", &id, "--container", "soft"])?;
        Ok(out.stdout.contains("used-64m").then_some(()))
    });
    used.with_context(|| format!("a 16 MiB reservation held back 64 MiB{}", env.logs()))?;
    ensure!(
        cgroup_file("cpu", &id, "cpu.cfs_quota_us")? == "-1",
        "the task is capped"
    );
    ensure!(cgroup_file("cpu", &id, "cpu.shares")? == "258");
    ensure!(cgroup_file("cpu", &format!("{id}/plain"), "cpu.shares")? == "2");
    let unlimited = cgroup_file("memory", &id, "memory.limit_in_bytes")?;
    ensure!(
        unlimited.parse::<u64>().is_ok_and(|b| b > 1 << 40),
        "the task has a memory limit of {unlimited} bytes"
    );
    env.stop_task(&id, Duration::from_secs(30))?;
    Ok(())
}

/// A stop signals the main process only and kills every process last: a shell that traps
/// SIGTERM while its child runs handles the stop itself. Its child outlives a short
/// stopTimeout (SIGKILL: 137, as ECS reports) or ends gracefully within a long one (0).
pub(super) fn stop_signals_the_main_process_then_kills_all(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-fid-stop")?;
    // The trap waits for the child, which sleeps on: only SIGKILL ends them.
    let stubborn = "trap 'echo trapped; wait $child; exit 0' TERM
sleep 1000 & child=$!
echo ready; wait $child";
    // The trap tells the child to finish and exits with its status: 0 unless the child itself
    // was signalled.
    let graceful = "trap 'echo trapped; touch /tmp/stop; wait $child; exit $?' TERM
(while [ ! -e /tmp/stop ]; do sleep 1; done) & child=$!
echo ready; wait $child";
    let (id, _) = env.start_task(&json!({
        "family": "fidstop",
        "networkMode": "none",
        "containerDefinitions": [
            {"name": "stubborn", "image": image, "memory": 32, "stopTimeout": 2,
             "command": ["sh", "-c", stubborn]},
            {"name": "graceful", "image": image, "memory": 32, "stopTimeout": 60,
             "command": ["sh", "-c", graceful]}
        ]
    }))?;
    for name in ["stubborn", "graceful"] {
        poll(Duration::from_secs(20), || {
            let out = env.ctl(&["logs", &id, "--container", name])?;
            Ok(out.stdout.contains("ready").then_some(()))
        })
        .with_context(|| format!("{name} never got ready{}", env.logs()))?;
    }
    let asked = Instant::now();
    let t = env.stop_task(&id, Duration::from_secs(30))?;
    let took = asked.elapsed();
    ensure!(
        container(&t, "stubborn")?["exitCode"] == 137,
        "the stubborn shell's child outlived its 2 s stopTimeout: SIGKILL, 137 expected: {t}"
    );
    ensure!(
        container(&t, "graceful")?["exitCode"] == 0,
        "the graceful shell handled SIGTERM and its child ended cleanly: 0 expected: {t}"
    );
    ensure!(
        took < Duration::from_secs(30),
        "the graceful container waited out its 60 s stopTimeout ({took:?}): {t}"
    );
    for name in ["stubborn", "graceful"] {
        let logs = env.ctl(&["logs", &id, "--container", name])?.stdout;
        ensure!(logs.contains("trapped"), "{name}'s trap never ran: {logs}");
    }
    Ok(())
}

/// The classic ECS data-volume container: its command is not executable, so it cannot start;
/// it is not essential, so the task goes on, and the two others share its volume through
/// volumesFrom (it was created). The essential one exits with its own code, the task's outcome.
/// The same container marked essential stops the task with the reason.
pub(super) fn a_non_essential_container_that_cannot_start(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "3")?;
    let image = hello(w, "e2e-fid-data")?;
    let def = |family: &str, data_essential: bool| {
        json!({
            "family": family,
            "networkMode": "awsvpc",
            "volumes": [{"name": "shared"}],
            "containerDefinitions": [
                {"name": "data", "image": image, "memory": 16, "essential": data_essential,
                 "command": ["/etc/passwd"],
                 "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared"}]},
                {"name": "writer", "image": image, "memory": 16, "essential": false,
                 "volumesFrom": [{"sourceContainer": "data"}],
                 "command": ["sh", "-c", "echo from-writer > /shared/msg"]},
                {"name": "app", "image": image, "memory": 16,
                 "volumesFrom": [{"sourceContainer": "data"}],
                 "command": ["sh", "-c",
                    "for i in $(seq 200); do [ -s /shared/msg ] && break; sleep 0.1; done; \
                     echo \"read: $(cat /shared/msg)\"; exit 7"]}
            ]
        })
    };
    env.register(&def("fiddata", false))?;
    let id = env.run_task("fiddata")?;
    env.ok(&["wait", "tasks-stopped", &id, "--timeout", "90"])?;
    let t = env.task(&id)?;
    let data = container(&t, "data")?;
    let reason = data["reason"].as_str().unwrap_or_default();
    ensure!(
        data["lastStatus"] == "STOPPED"
            && data["exitCode"].is_null()
            && reason.starts_with("CannotStartContainerError: container data: ")
            && reason.contains("/etc/passwd"),
        "the data container: {data}"
    );
    ensure!(
        container(&t, "writer")?["exitCode"] == 0 && container(&t, "app")?["exitCode"] == 7,
        "{t}"
    );
    ensure!(
        t["startedAt"].is_string() && t["stopCode"] == "EssentialContainerExited",
        "the task ran and ended with its essential container: {t}"
    );
    let logs = env.ok(&["logs", &id, "--container", "app"])?.stdout;
    ensure!(
        logs.contains("read: from-writer"),
        "the volume was not shared: {logs}"
    );
    // STOPPED is the last status: the network went first (attachment DELETED, no namespace),
    // the rest after the cleanup wait, shown by resourcesReleasedAt.
    ensure!(
        t["lastStatus"] == "STOPPED"
            && t["attachments"][0]["status"] == "DELETED"
            && t["resourcesReleasedAt"].is_null(),
        "{t}"
    );
    let left = env.net.task_namespaces()?;
    ensure!(left.is_empty(), "namespaces left after STOPPED: {left:?}");
    let released = env.wait_released(&id, Duration::from_secs(60))?;
    ensure!(released["stoppedAt"] == t["stoppedAt"], "{released}");

    env.register(&def("fiddataess", true))?;
    let id = env.run_task("fiddataess")?;
    env.ok(&["wait", "tasks-stopped", &id, "--timeout", "90"])?;
    let t = env.task(&id)?;
    let why = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        t["stopCode"] == "TaskFailedToStart"
            && why.starts_with("CannotStartContainerError: container data: ")
            && t["startedAt"].is_null(),
        "an essential container that cannot start stops the task: {t}"
    );
    Ok(())
}

/// The first line a container's log holds that starts with `prefix`, without it.
fn log_line(env: &Env, task: &str, container: &str, prefix: &str) -> Result<Option<String>> {
    let out = env.ctl(&["logs", task, "--container", container])?;
    Ok(out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|l| l.trim().to_owned()))
}

/// Eight two-container awsvpc tasks started at once; each container asks the task metadata
/// endpoint at its very first instruction, once, and every one of those first requests is
/// answered with its own metadata.
pub(super) fn metadata_from_the_first_instruction(w: &World) -> Result<()> {
    const TASKS: usize = 8;
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-fid-meta")?;
    // The request is the first thing the container does. busybox's static wget crashes in
    // glibc's resolver, so HTTP is spoken with nc (its stdin stays open until the answer came).
    let ask = |name: &str| {
        format!(
            "out=$({{ printf 'GET %s HTTP/1.0\\r\\n\\r\\n' \"${{ECS_CONTAINER_METADATA_URI_V4#http://169.254.170.2}}\"; sleep 3; }} | nc 169.254.170.2 80 2>&1)
status=$(printf '%s\\n' \"$out\" | head -n 1)
echo \"first-answer: ${{status:-none}}\"
printf '%s\\n' \"$out\" | grep -q '\"Name\":\"{name}\"' && echo first-body: ok"
        )
    };
    let side = format!(
        "{}\n[ \"${{status#*200 OK}}\" != \"$status\" ]",
        ask("side")
    );
    let main = format!("{}\nexec sleep 3600", ask("main"));
    env.register(&json!({
        "family": "fidmeta",
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {"name": "main", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sh", "-c", main]},
            {"name": "side", "image": image, "memory": 32, "essential": false,
             "command": ["sh", "-c", side]}
        ]
    }))?;
    let ids = env.run_tasks(&[
        "--task-definition",
        "fidmeta",
        "--count",
        &TASKS.to_string(),
    ])?;
    ensure!(ids.len() == TASKS, "run-task printed {ids:?}");
    let mut failures = Vec::new();
    for id in &ids {
        let task = env
            .wait_exited(id, 1, Duration::from_secs(120))
            .with_context(|| format!("container side of task {id} never exited{}", env.logs()))?;
        let main = poll(Duration::from_secs(30), || {
            log_line(&env, id, "main", "first-answer:")
        })
        .with_context(|| format!("container main of task {id} logged no answer"))?;
        let side = log_line(&env, id, "side", "first-answer:")?.unwrap_or_default();
        for (name, status) in [("main", &main), ("side", &side)] {
            let body = log_line(&env, id, name, "first-body:")?;
            if !status.contains("200 OK") || body.as_deref() != Some("ok") {
                failures.push(format!("{id}/{name}: {status:?} (body {body:?})"));
            }
        }
        if task["containers"][1]["exitCode"] != 0 {
            failures.push(format!(
                "{id}/side exited {}",
                task["containers"][1]["exitCode"]
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "first requests to the endpoint not answered: {failures:?}{}",
        env.logs()
    );
    for id in &ids {
        env.ok(&["stop-task", id])?;
    }
    for id in &ids {
        env.wait_status(id, "STOPPED", Duration::from_secs(60))?;
    }
    Ok(())
}

//! A task's run end to end: RUNNING with its cgroup limits, an essential container's exit, a
//! stop past the stop timeout, a missing image, `dependsOn` order and a restart policy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use serde_json::Value;

use super::{Env, cgroup_file, container, hello, taskdef};

pub(super) fn run_task_running(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-run")?;
    let (id, t) = env.start_task(&serde_json::json!({
        "family": "web", "networkMode": "none", "cpu": "512", "memory": "256",
        "containerDefinitions": [{"name": "app", "image": image, "cpu": 256, "memory": 128, "memoryReservation": 64,
                                  "command": ["sleep", "300"], "stopTimeout": 1}]
    }))?;
    ensure!(
        t["startedAt"].is_string()
            && t["pullStartedAt"].is_string()
            && t["pullStoppedAt"].is_string(),
        "{t}"
    );
    ensure!(
        t["containers"][0]["lastStatus"] == "RUNNING"
            && t["containers"][0]["runtimeId"].is_string(),
        "{t}"
    );
    ensure!(cgroup_file("cpu", &id, "cpu.cfs_quota_us")? == "50000");
    ensure!(cgroup_file("memory", &id, "memory.limit_in_bytes")? == (256u64 << 20).to_string());
    ensure!(cgroup_file("cpu", &format!("{id}/app"), "cpu.shares")? == "256");
    ensure!(
        cgroup_file("memory", &format!("{id}/app"), "memory.limit_in_bytes")?
            == (128u64 << 20).to_string()
    );
    let tasks = env.ok(&["tasks"])?;
    ensure!(tasks.stdout.contains(&id[..8]), "table: {}", tasks.stdout);
    env.stop_task(&id, Duration::from_secs(20))?;
    Ok(())
}

pub(super) fn essential_exit(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-exit")?;
    let (_, t) = env.run_until(
        &taskdef("exit3", serde_json::json!([
            {"name": "main", "image": image, "memory": 64, "command": ["sh", "-c", "exit 3"]},
            {"name": "side", "image": image, "memory": 64, "essential": false, "command": ["sleep", "300"], "stopTimeout": 1}
        ])),
        "STOPPED",
        Duration::from_secs(60),
    )?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    ensure!(container(&t, "main")?["exitCode"] == 3, "{t}");
    ensure!(t["stoppedAt"].is_string(), "{t}");
    Ok(())
}

pub(super) fn stop_task(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-stop")?;
    let (id, _) = env.start_task(&taskdef(
        "stubborn",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 2,
             "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
        ]),
    ))?;
    let start = Instant::now();
    env.ok(&["stop-task", &id, "--reason", "maintenance window"])?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(10))?;
    let took = start.elapsed();
    ensure!(took <= Duration::from_secs(3), "stop took {took:?}");
    ensure!(
        t["stopCode"] == "UserInitiated" && t["stoppedReason"] == "maintenance window",
        "{t}"
    );
    ensure!(t["containers"][0]["exitCode"] == 137, "{t}");
    Ok(())
}

pub(super) fn missing_image(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = format!("{}/does-not-exist:1.0", w.registry().host());
    let t = env.run_failing(&taskdef(
        "ghost",
        serde_json::json!([{"name": "app", "image": image, "memory": 64}]),
    ))?;
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("does-not-exist") && reason.contains(&w.registry().host()),
        "{t}"
    );
    Ok(())
}

pub(super) fn depends_on(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-deps")?;
    let (id, t) = env.start_task(&taskdef(
        "deps",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "echo app started; exec sleep 300"],
             "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
            {"name": "init", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "sleep 1; echo init done; exit 0"]}
        ]),
    ))?;
    let described = env.json(&["describe-task-definition", "deps"])?;
    ensure!(
        described
            .to_string()
            .contains(r#""dependsOn":[{"condition":"SUCCESS","containerName":"init"}]"#)
            || described
                .to_string()
                .contains(r#""dependsOn":[{"containerName":"init","condition":"SUCCESS"}]"#),
        "{described}"
    );
    ensure!(
        container(&t, "init")?["exitCode"] == 0,
        "init exited before the task ran: {t}"
    );
    let (init_log, init_time) = env.first_log_line(&id, "init")?;
    let (app_log, app_time) = env.first_log_line(&id, "app")?;
    ensure!(init_log == "init done\n" && app_log == "app started\n");
    // Same fixed-width RFC 3339 format: the strings order as the times do.
    ensure!(
        app_time > init_time,
        "app started at {app_time}, before init finished at {init_time}"
    );
    env.ok(&["stop-task", &id])?;

    let t = env.run_failing(&taskdef(
        "deps-fail",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "command": ["sleep", "300"],
             "dependsOn": [{"containerName": "db", "condition": "SUCCESS"}]},
            {"name": "db", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "exit 3"]}
        ]),
    ))?;
    ensure!(
        t["stoppedReason"] == "dependency db of container app exited with 3; condition SUCCESS",
        "{t}"
    );
    Ok(())
}

/// ECS's rules leave no shortcut: a container is restarted only after a run of at least
/// restartAttemptPeriod (60 s at the least), then after the first backoff (10 s). The container
/// runs 61 s and exits 1 (restarted, in place: the file its first run wrote is still there),
/// then exits 3 at once, which is ignored: the essential container ends and stops the task.
pub(super) fn restart_policy(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-restart")?;
    let (id, t) = env.run_until(
        &taskdef(
            "restarts",
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "command": ["sh", "-c",
                     "echo run; if [ -f /ran ]; then exit 3; fi; touch /ran; sleep 61; exit 1"],
                 "restartPolicy": {"enabled": true, "ignoredExitCodes": [3],
                                   "restartAttemptPeriod": 60}}
            ]),
        ),
        "STOPPED",
        Duration::from_secs(180),
    )?;
    let described = env
        .json(&["describe-task-definition", "restarts"])?
        .to_string();
    ensure!(
        described.contains(
            r#""restartPolicy":{"enabled":true,"ignoredExitCodes":[3],"restartAttemptPeriod":60}"#
        ),
        "{described}"
    );
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    let app = container(&t, "app")?;
    ensure!(app["exitCode"] == 3 && app["restartCount"] == 1, "{t}");
    let path = env.log_path(&id, "app");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let runs = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["log"] == "run\n")
        .count();
    ensure!(runs == 2, "two runs in one log file: {text}");
    Ok(())
}

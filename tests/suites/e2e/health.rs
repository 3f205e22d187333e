//! Health checks end to end: a HEALTHY dependency gates its dependent's start and shows in
//! describe-tasks; an UNHEALTHY essential container stops its task with a reason.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use serde_json::Value;

use super::{Env, container, hello, taskdef};

/// The health of a described task's container.
fn container_health(t: &Value, name: &str) -> Result<String> {
    container(t, name)?["healthStatus"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no healthStatus for container {name}: {t}"))
}

/// db becomes ready only after 7 s, so its first check (at 5 s) fails and the second (at 10 s)
/// passes; app depends on db being HEALTHY and must start after db's ready line was written.
/// describe-tasks shows both healths (app has no check: UNKNOWN) and the task's, in JSON and in
/// the table.
pub(super) fn health_gating(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-health")?;
    let (id, t) = env.run_until(
        &taskdef(
            "healthy",
            serde_json::json!([
                {"name": "db", "image": image, "memory": 64, "stopTimeout": 1,
                 "command": ["sh", "-c", "sleep 7; touch /ready; echo db ready; exec sleep 300"],
                 "healthCheck": {"command": ["CMD-SHELL", "test -f /ready"],
                                 "interval": 5, "timeout": 2, "retries": 3}},
                {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
                 "command": ["sh", "-c", "echo app started; exec sleep 300"],
                 "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}
            ]),
        ),
        "RUNNING",
        Duration::from_secs(120),
    )?;
    let described = env
        .json(&["describe-task-definition", "healthy"])?
        .to_string();
    ensure!(
        described.contains(
            r#""healthCheck":{"command":["CMD-SHELL","test -f /ready"],"interval":5,"retries":3,"startPeriod":0,"timeout":2}"#
        ) || described.contains(
            r#""healthCheck":{"command":["CMD-SHELL","test -f /ready"],"interval":5,"timeout":2,"retries":3,"startPeriod":0}"#
        ),
        "{described}"
    );
    ensure!(container_health(&t, "db")? == "HEALTHY", "{t}");
    ensure!(container_health(&t, "app")? == "UNKNOWN", "{t}");
    ensure!(t["healthStatus"] == "HEALTHY", "{t}");
    let (db_log, db_time) = env.first_log_line(&id, "db")?;
    let (app_log, app_time) = env.first_log_line(&id, "app")?;
    ensure!(db_log == "db ready\n" && app_log == "app started\n");
    // Same fixed-width RFC 3339 format: the strings order as the times do.
    ensure!(
        app_time > db_time,
        "app started at {app_time}, before db was ready at {db_time}"
    );
    let table = env.ok(&["describe-tasks", &id])?.stdout;
    ensure!(
        table.lines().next().is_some_and(|h| h.contains("HEALTH"))
            && table.lines().nth(1).is_some_and(|r| r.contains("HEALTHY")),
        "{table}"
    );
    env.stop_task(&id, Duration::from_secs(60))?;
    Ok(())
}

/// An essential container whose check always fails (retries 1) turns UNHEALTHY at its first
/// check and stops its task, with a reason naming it; a HEALTHY dependency on it that never
/// became healthy leaves its dependent unstarted.
pub(super) fn health_unhealthy(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-unhealthy")?;
    let (_, t) = env.run_until(
        &taskdef(
            "unhealthy",
            serde_json::json!([
                {"name": "web", "image": image, "memory": 64, "stopTimeout": 1,
                 "command": ["sleep", "300"],
                 "healthCheck": {"command": ["CMD", "sh", "-c", "exit 1"],
                                 "interval": 5, "timeout": 2, "retries": 1}},
                {"name": "late", "image": image, "memory": 64, "stopTimeout": 1,
                 "command": ["sleep", "300"],
                 "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}]}
            ]),
        ),
        "STOPPED",
        Duration::from_secs(120),
    )?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with(
            "Task failed container health checks: essential container web is unhealthy after 1 consecutive failed checks"
        ) && reason.contains("exited with 1"),
        "{t}"
    );
    ensure!(t["healthStatus"] == "UNHEALTHY", "{t}");
    ensure!(container_health(&t, "web")? == "UNHEALTHY", "{t}");
    let late = container(&t, "late")?;
    ensure!(
        late.get("exitCode").is_none(),
        "late never ran, so it has no exit code: {t}"
    );
    Ok(())
}

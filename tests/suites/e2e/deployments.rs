//! Rolling deployments end to end, through the real binaries with two agents: a 4-task
//! service rolled to a new revision under a client loop that polls its tasks never has fewer
//! healthy tasks than minimumHealthyPercent allows nor more than maximumPercent, while
//! `berthctl deploy --wait` follows it to COMPLETED and `wait services-stable` agrees; a
//! revision whose container exits at once trips the circuit breaker, the service rolls back
//! and `berthctl deploy --wait` exits non-zero with the reason; and a scheduler SIGKILLed in
//! the middle of a deployment completes it after its restart without starting a task twice.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::{Scheduler, berthctl};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::services::{CONVERGE_WITHIN, Fleet, create, live, steady};
use super::{hello, taskdef};

/// A family of `revisions` revisions of one long-running container; revision `bad`, if any,
/// exits at once.
fn register(
    fleet: &Fleet,
    w: &World,
    family: &str,
    revisions: u32,
    bad: Option<u32>,
) -> Result<()> {
    let image = hello(w, &format!("e2e-{family}"))?;
    for rev in 1..=revisions {
        let command = if bad == Some(rev) {
            serde_json::json!(["sh", "-c", "exit 3"])
        } else {
            serde_json::json!(["sleep", format!("{}", 3600 + rev)])
        };
        fleet.env.register(&taskdef(
            family,
            serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": command}]),
        ))?;
    }
    Ok(())
}

fn primary(service: &Value) -> &Value {
    &service["deployments"][0]
}

/// The PRIMARY deployment is of `task_definition` and COMPLETED, alone, and `desired` tasks
/// of it are RUNNING.
fn completed(service: &Value, tasks: &[Value], task_definition: &str, desired: u64) -> bool {
    let d = primary(service);
    d["taskDefinition"] == task_definition
        && d["rolloutState"] == "COMPLETED"
        && service["deployments"].as_array().map(Vec::len) == Some(1)
        && steady(service, tasks, desired)
        && live(tasks)
            .iter()
            .all(|t| t["taskDefinition"] == task_definition)
}

pub(super) fn rolling_deployment_stays_within_the_percents(w: &World) -> Result<()> {
    let fleet = Fleet::start(w, 2, &[])?;
    register(&fleet, w, "dep-roll", 2, None)?;
    create(
        &fleet.env,
        "roll",
        "dep-roll:1",
        4,
        &[
            "--deployment-configuration",
            r#"{"minimumHealthyPercent":50,"maximumPercent":150}"#,
        ],
    )?;
    fleet.wait_for("roll", "4 RUNNING of dep-roll:1", |s, t| {
        completed(s, t, "dep-roll:1", 4)
    })?;
    // min 50% of 4 = 2 healthy; max 150% of 4 = 6 not yet STOPPED.
    let (min_healthy, max_total) = (2, 6);
    let config = fleet.env.scheduler.ctl_config.clone();
    let cluster = fleet.env.cluster.clone();
    let deploy = std::thread::spawn(move || {
        berthctl(
            &config,
            &cluster,
            &[
                "deploy",
                "roll",
                "--task-definition",
                "dep-roll:2",
                "--wait",
                "--timeout",
                "90s",
            ],
        )
    });
    let service = fleet.service("roll")?;
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let mut polls = 0;
    let mut seen_new = false;
    loop {
        let tasks = fleet.tasks_of(&service)?;
        polls += 1;
        let healthy = tasks
            .iter()
            .filter(|t| t["desiredStatus"] == "RUNNING" && t["lastStatus"] == "RUNNING")
            .count();
        let occupying = tasks
            .iter()
            .filter(|t| t["lastStatus"] != "STOPPED")
            .count();
        ensure!(
            healthy >= min_healthy,
            "only {healthy} healthy tasks (minimum {min_healthy}): {tasks:?}"
        );
        ensure!(
            occupying <= max_total,
            "{occupying} tasks not STOPPED (maximum {max_total}): {tasks:?}"
        );
        seen_new |= tasks.iter().any(|t| t["taskDefinition"] == "dep-roll:2");
        let now = fleet.service("roll")?;
        if seen_new && completed(&now, &tasks, "dep-roll:2", 4) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the deployment never completed: {now}; tasks {tasks:?}{}",
                fleet.env.logs()
            );
        }
    }
    ensure!(polls > 1, "the loop never saw the deployment in progress");
    let out = deploy
        .join()
        .map_err(|_| anyhow::anyhow!("the deploy thread panicked"))??;
    ensure!(
        out.status == 0 && out.stdout.contains("completed"),
        "berthctl deploy --wait did not report COMPLETED: {out:?}"
    );
    let stable = fleet
        .env
        .ctl(&["wait", "services-stable", "roll", "--timeout", "30s"])?;
    ensure!(
        stable.status == 0,
        "wait services-stable failed: {stable:?}"
    );
    // Every old task was stopped by the service scheduler.
    let tasks = fleet.tasks_of(&service)?;
    for t in tasks.iter().filter(|t| t["taskDefinition"] == "dep-roll:1") {
        ensure!(
            t["desiredStatus"] == "STOPPED" && t["stopCode"] == "ServiceSchedulerInitiated",
            "{t}"
        );
    }
    Ok(())
}

pub(super) fn a_failing_revision_trips_the_breaker_and_rolls_back(w: &World) -> Result<()> {
    let fleet = Fleet::start(w, 2, &[])?;
    register(&fleet, w, "dep-bad", 2, Some(2))?;
    create(
        &fleet.env,
        "breaker",
        "dep-bad:1",
        2,
        &[
            "--deployment-configuration",
            r#"{"deploymentCircuitBreaker":{"enable":true,"rollback":true}}"#,
        ],
    )?;
    fleet.wait_for("breaker", "2 RUNNING of dep-bad:1", |s, t| {
        completed(s, t, "dep-bad:1", 2)
    })?;
    let out = fleet.env.ctl(&[
        "deploy",
        "breaker",
        "--task-definition",
        "dep-bad:2",
        "--wait",
        "--timeout",
        "90s",
    ])?;
    ensure!(
        out.status == 1,
        "berthctl deploy --wait should fail on a tripped breaker: {out:?}{}",
        fleet.env.logs()
    );
    ensure!(
        out.stderr.contains("circuit breaker") || out.stderr.contains("tasks failed to start"),
        "the failure does not say why: {out:?}"
    );
    ensure!(
        out.stderr.contains("rolled back to"),
        "the failure does not say it rolled back: {out:?}"
    );
    // The service is back on revision 1 (a new task that was RUNNING for a moment may have let
    // an old one go, as on ECS), and the breaker's deployment counted its failures.
    let (service, tasks) = fleet.wait_for("breaker", "rolled back to dep-bad:1", |s, t| {
        s["taskDefinition"] == "dep-bad:1" && completed(s, t, "dep-bad:1", 2)
    })?;
    let failed: Vec<&Value> = tasks
        .iter()
        .filter(|t| {
            t["taskDefinition"] == "dep-bad:2" && t["stopCode"] == "EssentialContainerExited"
        })
        .collect();
    ensure!(
        failed.len() >= 3,
        "fewer failed tasks than the threshold: {tasks:?}"
    );
    let events: Vec<&str> = service["events"]
        .as_array()
        .context("no events")?
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    ensure!(
        events
            .iter()
            .any(|e| e.contains("deployment failed: tasks failed to start.")),
        "{events:?}"
    );
    ensure!(
        events
            .iter()
            .any(|e| e.contains("rolling back to deployment ecs-svc/")),
        "{events:?}"
    );
    Ok(())
}

pub(super) fn scheduler_sigkilled_mid_deployment_completes_it(w: &World) -> Result<()> {
    let mut fleet = Fleet::start(w, 2, &[])?;
    register(&fleet, w, "dep-kill", 2, None)?;
    create(&fleet.env, "midway", "dep-kill:1", 4, &[])?;
    fleet.wait_for("midway", "4 RUNNING of dep-kill:1", |s, t| {
        completed(s, t, "dep-kill:1", 4)
    })?;
    let updated = fleet.env.json(&[
        "update-service",
        "midway",
        "--task-definition",
        "dep-kill:2",
    ])?;
    let deployment = updated["service"]["deployments"][0]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    // Killed as soon as the first new tasks exist: the deployment is under way.
    let service = fleet.service("midway")?;
    poll(CONVERGE_WITHIN, || {
        let tasks = fleet.tasks_of(&service)?;
        Ok(tasks
            .iter()
            .any(|t| t["startedBy"] == deployment.as_str())
            .then_some(()))
    })?;
    let dir = fleet.env.dir.clone();
    let port = fleet.env.scheduler.port();
    fleet
        .env
        .scheduler
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    fleet.env.scheduler = Scheduler::start(&dir, Some(port))?;
    let (after, tasks) = fleet.wait_for(
        "midway",
        "dep-kill:2 COMPLETED after the restart",
        |s, t| completed(s, t, "dep-kill:2", 4),
    )?;
    ensure!(primary(&after)["id"] == deployment.as_str(), "{after}");
    let new: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["taskDefinition"] == "dep-kill:2")
        .collect();
    ensure!(
        new.len() == 4 && new.iter().all(|t| t["startedBy"] == deployment.as_str()),
        "tasks were started twice (or replaced): {} of dep-kill:2: {tasks:?}",
        new.len()
    );
    ensure!(
        tasks
            .iter()
            .filter(|t| t["taskDefinition"] == "dep-kill:1")
            .all(|t| t["desiredStatus"] == "STOPPED"),
        "{tasks:?}"
    );
    Ok(())
}

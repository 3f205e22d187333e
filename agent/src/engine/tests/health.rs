//! Health checks: HEALTHY dependencies, and unhealthy essential and non-essential containers.

use super::*;

/// Gives the named containers a health check: `["CMD-SHELL", "check"]` every 5s, timeout 2s,
/// with `retries` and `start_period` seconds.
fn with_health(
    mut a: TaskAssignment,
    names: &[&str],
    retries: u32,
    start_period: u32,
) -> TaskAssignment {
    if let Some(def) = a.definition.as_mut() {
        for c in def
            .containers
            .iter_mut()
            .filter(|c| names.contains(&c.name.as_str()))
        {
            c.health_check = Some(berth_proto::v1::HealthCheck {
                command: vec!["CMD-SHELL".into(), "check".into()],
                interval_seconds: 5,
                timeout_seconds: 2,
                retries,
                start_period_seconds: start_period,
            });
        }
    }
    a
}

fn health_of(state: &TaskState, name: &str) -> HealthStatus {
    state
        .containers
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| HealthStatus::try_from(c.health_status).ok())
        .unwrap_or(HealthStatus::Unknown)
}

#[tokio::test(start_paused = true)]
async fn a_healthy_dependency_starts_its_dependent_once_its_check_passes() {
    use DependencyCondition::Healthy;
    let h = start();
    let a = with_health(
        with_deps(
            "h1",
            &[("db", true, &[], 0), ("app", true, &[("db", Healthy)], 0)],
        ),
        &["db"],
        3,
        0,
    );
    let db = ContainerId::for_container("h1", "db");
    h.fake.exec_outcome(&db, ExecOutcome::Exited(1));
    h.assign(a).await;
    until_started(&h.fake, &["h1.db"]).await;
    // Two failed checks (5s, 10s): not healthy, not yet unhealthy.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        started(&h.fake),
        ["h1.db"],
        "app waits for db to be HEALTHY"
    );
    assert_eq!(
        count_calls(&h.fake, "exec h1.db /bin/sh -c check 2s"),
        2,
        "CMD-SHELL runs through /bin/sh -c, every interval"
    );
    let state = last(&h.store, "h1");
    assert_eq!(health_of(&state, "db"), HealthStatus::Unknown);
    assert_eq!(state.status, TaskStatus::Created as i32);
    h.fake.exec_outcome(&db, ExecOutcome::Exited(0));
    tokio::time::sleep(Duration::from_secs(4)).await;
    until_started(&h.fake, &["h1.db", "h1.app"]).await;
    let running = until(&h.store, "h1", TaskStatus::Running).await;
    let state = last(&h.store, "h1");
    assert_eq!(health_of(&state, "db"), HealthStatus::Healthy);
    assert_eq!(
        health_of(&state, "app"),
        HealthStatus::Unknown,
        "no health check"
    );
    assert_eq!(
        state.health_status,
        HealthStatus::Healthy as i32,
        "every essential container with a check is HEALTHY"
    );
    assert_eq!(
        running.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_essential_container_stops_the_task_after_its_start_period() {
    let h = start();
    let a = with_health(
        assignment("h2", &[("app", true, "img:1"), ("side", false, "img:1")]),
        &["app"],
        2,
        10,
    );
    let app = ContainerId::for_container("h2", "app");
    h.fake.exec_outcome(&app, ExecOutcome::TimedOut);
    h.run(a).await;
    // Checks end at ~7s and ~14s (5s interval + 2s timeout); the first is in the start period
    // and does not count, the second is the first failure that counts.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let state = last(&h.store, "h2");
    assert_eq!(
        state.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    assert_eq!(health_of(&state, "app"), HealthStatus::Unknown);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stopped = until(&h.store, "h2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(
        stopped.stopped_reason,
        "Task failed container health checks: essential container app is unhealthy after 2 consecutive failed checks (last: timed out after 2s)"
    );
    assert_eq!(health_of(&stopped, "app"), HealthStatus::Unhealthy);
    assert_eq!(stopped.health_status, HealthStatus::Unhealthy as i32);
    let calls = h.fake.calls();
    assert!(calls.contains(&"stop h2.app 2s".to_owned()), "{calls:?}");
    // Once stopping, no more checks run.
    let execs = calls.iter().filter(|c| c.starts_with("exec ")).count();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        h.fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("exec "))
            .count(),
        execs
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_non_essential_container_keeps_the_task_running() {
    let h = start();
    let a = with_health(
        assignment("h3", &[("app", true, "img:1"), ("side", false, "img:1")]),
        &["app", "side"],
        1,
        0,
    );
    h.fake.exec_outcome(
        &ContainerId::for_container("h3", "side"),
        ExecOutcome::Exited(2),
    );
    h.run(a).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let state = last(&h.store, "h3");
    assert_eq!(health_of(&state, "side"), HealthStatus::Unhealthy);
    assert_eq!(health_of(&state, "app"), HealthStatus::Healthy);
    assert_eq!(
        state.health_status,
        HealthStatus::Healthy as i32,
        "side is not essential"
    );
    assert_eq!(
        state.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    // Its checks go on, and it recovers.
    h.fake.exec_outcome(
        &ContainerId::for_container("h3", "side"),
        ExecOutcome::Exited(0),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        health_of(&last(&h.store, "h3"), "side"),
        HealthStatus::Healthy
    );
    h.cancel.cancel();
}

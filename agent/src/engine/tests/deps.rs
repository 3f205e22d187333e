//! Containers started in `dependsOn` order (conditions, startTimeout) and stopped in reverse.

use super::*;

#[tokio::test]
async fn containers_start_after_their_dependencies_meet_their_conditions() {
    use DependencyCondition::{Complete, Start, Success};
    let h = start();
    h.assign(with_deps(
        "d1",
        &[
            ("web", true, &[("app", Start)], 0),
            ("app", true, &[("migrate", Complete)], 0),
            ("migrate", false, &[("init", Success)], 0),
            ("init", false, &[], 0),
        ],
    ))
    .await;
    until_started(&h.fake, &["d1.init"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        started(&h.fake),
        ["d1.init"],
        "nothing else starts before init exits"
    );
    h.fake.exit(&ContainerId::for_container("d1", "init"), 0);
    until_started(&h.fake, &["d1.init", "d1.migrate"]).await;
    h.fake.exit(&ContainerId::for_container("d1", "migrate"), 5);
    until_started(&h.fake, &["d1.init", "d1.migrate", "d1.app", "d1.web"]).await;
    let running = until(&h.store, "d1", TaskStatus::Running).await;
    let exit = |name: &str| {
        running
            .containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.exit_code)
    };
    assert_eq!(
        (exit("init"), exit("migrate"), exit("app")),
        (Some(0), Some(5), None),
        "init containers that exited count as started"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_failed_success_dependency_stops_the_task_naming_both_containers() {
    use DependencyCondition::Success;
    let h = start();
    h.assign(with_deps(
        "d2",
        &[
            ("side", true, &[], 0),
            ("db", false, &[], 0),
            ("app", true, &[("db", Success)], 0),
        ],
    ))
    .await;
    until_started(&h.fake, &["d2.side", "d2.db"]).await;
    h.fake.exit(&ContainerId::for_container("d2", "db"), 3);
    let stopped = until(&h.store, "d2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "dependency db of container app exited with 3; condition SUCCESS"
    );
    assert_eq!(started(&h.fake), ["d2.side", "d2.db"], "app never started");
    assert!(h.fake.calls().contains(&"stop d2.side 2s".to_owned()));
    assert!(
        !reports(&h.store, "d2")
            .iter()
            .any(|s| s.status == TaskStatus::Running as i32)
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_outlives_its_start_timeout_fails_the_task() {
    use DependencyCondition::Complete;
    let h = start();
    h.assign(with_deps(
        "d3",
        &[
            ("init", false, &[], 1),
            ("app", true, &[("init", Complete)], 0),
        ],
    ))
    .await;
    until_started(&h.fake, &["d3.init"]).await;
    let init_started = tokio::time::Instant::now();
    let stopped = until(&h.store, "d3", TaskStatus::Stopped).await;
    // Given up at init's startTimeout, on tokio's clock (paused: no real second passes).
    let waited = init_started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "gave up after {waited:?}"
    );
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app gave up waiting for dependency init: it did not reach condition COMPLETE within its startTimeout of 1s"
    );
    assert_eq!(started(&h.fake), ["d3.init"]);
    assert!(h.fake.calls().contains(&"stop d3.init 2s".to_owned()));
    h.cancel.cancel();
}

#[tokio::test]
async fn containers_stop_in_the_reverse_order_of_their_dependencies() {
    use DependencyCondition::Start;
    let h = start();
    h.run(with_deps(
        "d4",
        &[
            ("db", true, &[], 0),
            ("web", true, &[("app", Start)], 0),
            ("app", true, &[("db", Start)], 0),
        ],
    ))
    .await;
    assert_eq!(started(&h.fake), ["d4.db", "d4.app", "d4.web"]);
    h.stop("d4", 2, "bye").await;
    until(&h.store, "d4", TaskStatus::Stopped).await;
    let stops: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("stop "))
        .collect();
    assert_eq!(stops, ["stop d4.web 2s", "stop d4.app 2s", "stop d4.db 2s"]);
    h.cancel.cancel();
}

//! The engine where ECS's behaviour is easy to miss: containers whose process cannot be
//! started, and the task endpoint knowing a task before its first container starts.

use berth_proto::v1::{ContainerStatus, DependencyCondition};

use super::*;

fn fail_start(h: &Harness, task: &str, name: &str) {
    h.fake
        .fail_start
        .lock()
        .unwrap()
        .insert(ContainerId::for_container(task, name));
}

fn container<'a>(state: &'a TaskState, name: &str) -> &'a berth_proto::v1::ContainerState {
    state
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {state:?}"))
}

#[tokio::test]
async fn a_non_essential_container_that_cannot_start_is_stopped_and_the_task_runs() {
    let h = start();
    fail_start(&h, "cs1", "data");
    let running = h
        .run(assignment(
            "cs1",
            &[("data", false, "img:1"), ("app", true, "img:1")],
        ))
        .await;
    let data = container(&running, "data");
    assert_eq!(data.status, ContainerStatus::Stopped as i32);
    assert_eq!(data.exit_code, None, "it never ran");
    assert!(
        data.reason
            .starts_with("CannotStartContainerError: container data: ")
            && data.reason.contains("permission denied"),
        "the reason names the container and the runtime's error: {}",
        data.reason
    );
    assert_eq!(
        container(&running, "app").status,
        ContainerStatus::Running as i32
    );
    assert_eq!(
        running.desired_status,
        berth_proto::v1::DesiredStatus::Running as i32
    );
    // The essential container's own exit is the task's outcome.
    h.fake.exit(&ContainerId::for_container("cs1", "app"), 4);
    let stopped = until(&h.store, "cs1", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(container(&stopped, "app").exit_code, Some(4));
    assert_eq!(container(&stopped, "data").reason, data.reason);
    until_released(&h.store, "cs1").await;
    let calls = h.fake.calls();
    assert!(
        !calls.contains(&"stop cs1.data 2s".to_owned()),
        "a container that never ran is not stopped: {calls:?}"
    );
    assert!(calls.contains(&"delete cs1.data".to_owned()), "{calls:?}");
    h.cancel.cancel();
}

#[tokio::test]
async fn an_essential_container_that_cannot_start_stops_the_task_with_its_reason() {
    let h = start();
    fail_start(&h, "cs2", "app");
    h.assign(assignment(
        "cs2",
        &[("side", false, "img:1"), ("app", true, "img:1")],
    ))
    .await;
    let stopped = until(&h.store, "cs2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped
            .stopped_reason
            .starts_with("CannotStartContainerError: container app: "),
        "{}",
        stopped.stopped_reason
    );
    assert_eq!(container(&stopped, "app").reason, stopped.stopped_reason);
    assert_eq!(container(&stopped, "app").exit_code, None);
    assert_eq!(
        container(&stopped, "side").exit_code,
        Some(143),
        "what had started is stopped"
    );
    assert!(
        reports(&h.store, "cs2").iter().all(
            |s| s.status < TaskStatus::Running as i32 || s.status == TaskStatus::Stopped as i32
        ),
        "never RUNNING"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn depending_on_a_container_that_cannot_start_fails_the_start_naming_both() {
    use DependencyCondition::Start;
    let h = start();
    fail_start(&h, "cs3", "data");
    h.assign(with_deps(
        "cs3",
        &[
            ("data", false, &[], 0),
            ("app", true, &[("data", Start)], 0),
        ],
    ))
    .await;
    let stopped = until(&h.store, "cs3", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "dependency data of container app could not start, so condition START is never met and app never starts"
    );
    assert_eq!(started(&h.fake), ["cs3.data"], "app is never started");
    h.cancel.cancel();
}

#[tokio::test]
async fn the_endpoint_knows_a_tasks_addresses_before_its_first_container_starts() {
    let h = start();
    *h.fake.start_probe.lock().unwrap() = Some(h.handle.clone());
    let pair = [("a", true, "img:1"), ("b", false, "img:1")];
    let tasks = [
        with_mode(assignment("ka", &pair), "awsvpc"),
        with_mode(assignment("kb", &pair), "bridge"),
        with_mode(assignment("kc", &pair), "awsvpc"),
    ];
    for a in tasks {
        h.assign(a).await;
    }
    for task in ["ka", "kb", "kc"] {
        until(&h.store, task, TaskStatus::Running).await;
    }
    let known = h.fake.known_at_start.lock().unwrap().clone();
    assert_eq!(known.len(), 6, "{known:?}");
    assert!(
        known.iter().all(|(_, k)| *k),
        "a container started before the endpoint knew its task: {known:?}"
    );
    h.cancel.cancel();
}

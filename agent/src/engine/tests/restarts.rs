//! Containers restarted in place under their restart policy, with the kubelet's backoff.

use super::*;

/// A task whose containers (name, essential) restart on any exit but those ignored, after a
/// run of at least 60 s.
fn restarting(task: &str, containers: &[(&str, bool)], ignored: &[u32]) -> TaskAssignment {
    let mut a = assignment(
        task,
        &containers
            .iter()
            .map(|(n, e)| (*n, *e, "img:1"))
            .collect::<Vec<_>>(),
    );
    if let Some(def) = a.definition.as_mut() {
        for c in &mut def.containers {
            c.restart_policy = Some(berth_proto::v1::RestartPolicy {
                enabled: true,
                ignored_exit_codes: ignored.to_vec(),
                restart_attempt_period_seconds: 60,
            });
        }
    }
    a
}

fn restart_count(store: &Store, task: &str, name: &str) -> u32 {
    last(store, task)
        .containers
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.restart_count)
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_restarting_essential_container_is_restarted_with_a_doubling_backoff() {
    let h = start();
    h.run(restarting("r1", &[("app", true)], &[0])).await;
    let id = ContainerId::for_container("r1", "app");
    for (n, delay) in [(1u32, 10u64), (2, 20), (3, 40)] {
        tokio::time::sleep(Duration::from_secs(61)).await;
        h.fake.exit(&id, 1);
        tokio::time::sleep(Duration::from_secs(delay - 1)).await;
        assert_eq!(
            restart_count(&h.store, "r1", "app"),
            n - 1,
            "not before {delay}s"
        );
        assert_eq!(count_calls(&h.fake, "restart r1.app"), (n - 1) as usize);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            restart_count(&h.store, "r1", "app"),
            n,
            "restarted after {delay}s"
        );
        let state = last(&h.store, "r1");
        assert_eq!(state.status, TaskStatus::Running as i32, "the task runs on");
        assert_eq!(
            state.containers[0].status,
            berth_proto::v1::ContainerStatus::Running as i32
        );
        assert_eq!(state.containers[0].exit_code, None);
    }
    assert_eq!(count_calls(&h.fake, "start r1.app"), 4);
    // An ignored exit code ends it for good: the essential rule applies.
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.fake.exit(&id, 0);
    let stopped = until(&h.store, "r1", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.containers[0].exit_code, Some(0));
    assert_eq!(stopped.containers[0].restart_count, 3);
    assert_eq!(count_calls(&h.fake, "restart r1.app"), 3);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_container_that_exits_before_the_attempt_period_is_not_restarted() {
    let h = start();
    h.run(restarting("r2", &[("app", true), ("side", false)], &[]))
        .await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    h.fake.exit(&ContainerId::for_container("r2", "app"), 1);
    let stopped = until(&h.store, "r2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.containers[0].exit_code, Some(1));
    assert_eq!(stopped.containers[1].exit_code, Some(143));
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_stop_order_during_the_backoff_stops_without_restarting() {
    let h = start();
    h.run(restarting("r3", &[("app", true)], &[])).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.fake.exit(&ContainerId::for_container("r3", "app"), 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.stop("r3", 1, "bye").await;
    let stopped = until(&h.store, "r3", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::UserInitiated as i32);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    assert_eq!(count_calls(&h.fake, "start r3.app"), 1);
    assert_eq!(last(&h.store, "r3").containers[0].restart_count, 0);
    h.cancel.cancel();
}

/// `restarting`'s task with these task-level `pidMode` and `ipcMode`.
fn sharing(task: &str, pid_mode: &str, ipc_mode: &str) -> TaskAssignment {
    let mut a = restarting(task, &[("app", true), ("side", false)], &[]);
    if let Some(d) = a.definition.as_mut() {
        d.pid_mode = pid_mode.to_owned();
        d.ipc_mode = ipc_mode.to_owned();
    }
    a
}

const HOLDER_GONE_PID: &str = "Essential container in task exited: the task's namespace holder \
     (berth-ns-holder, berth-agent task-holder) is gone; it was PID 1 of the PID namespace its \
     containers share (pidMode task), and the kernel killed every process of that namespace \
     with it";

#[tokio::test(start_paused = true)]
async fn a_dead_holder_stops_the_task_by_name_and_nothing_restarts_into_its_namespace() {
    let h = start();
    h.run(sharing("r4", "task", "task")).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    // The holder is killed: the kernel kills the containers of its PID namespace, whose
    // restart policy would restart them.
    h.fake.holders_gone.lock().unwrap().insert("r4".to_owned());
    h.fake.exit(&ContainerId::for_container("r4", "side"), 137);
    h.fake.exit(&ContainerId::for_container("r4", "app"), 137);
    let stopped = until(&h.store, "r4", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.stopped_reason, HOLDER_GONE_PID);
    for c in &stopped.containers {
        assert_eq!(c.exit_code, Some(137), "{}", c.name);
        assert_eq!(c.restart_count, 0, "{}", c.name);
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    assert!(
        calls.iter().any(|c| c == "rmnamespaces r4"),
        "the dead holder's namespaces are removed with the task: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_dies_during_a_restarts_backoff_ends_the_task_instead() {
    let h = start();
    h.run(sharing("r5", "task", "")).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    // The container exits on its own, the holder still there: it is to be restarted in 10 s.
    h.fake.exit(&ContainerId::for_container("r5", "side"), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.fake.holders_gone.lock().unwrap().insert("r5".to_owned());
    let stopped = until(&h.store, "r5", TaskStatus::Stopped).await;
    assert_eq!(stopped.stopped_reason, HOLDER_GONE_PID);
    let side = stopped
        .containers
        .iter()
        .find(|c| c.name == "side")
        .unwrap();
    assert_eq!((side.exit_code, side.restart_count), (Some(1), 0));
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("restart")), "{calls:?}");
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_holder_is_watched_while_the_task_runs_and_a_live_one_changes_nothing() {
    let h = start();
    h.run(sharing("r6", "", "task")).await;
    // A restart in place while the holder runs is a restart like any other.
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.fake.exit(&ContainerId::for_container("r6", "side"), 1);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(restart_count(&h.store, "r6", "side"), 1);
    assert_eq!(last(&h.store, "r6").status, TaskStatus::Running as i32);
    // ipcMode task alone: the holder's death kills nothing, and its watch finds it.
    h.fake.holders_gone.lock().unwrap().insert("r6".to_owned());
    tokio::time::sleep(super::super::driver::HOLDER_WATCH + Duration::from_millis(100)).await;
    let stopped = until(&h.store, "r6", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert!(
        stopped
            .stopped_reason
            .ends_with("is gone; it held the IPC namespace its containers share (ipcMode task)"),
        "{}",
        stopped.stopped_reason
    );
    // Its containers were stopped by the agent (SIGTERM: 143), not killed with it.
    for c in &stopped.containers {
        assert_eq!(c.exit_code, Some(143), "{}", c.name);
    }
    h.cancel.cancel();
}

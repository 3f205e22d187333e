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

//! A task's life through the engine: every status in order, essential and non-essential exits,
//! stop orders, failed pulls, resent assignments, broken waits and log targets.

use super::*;

#[tokio::test]
async fn a_task_runs_and_reports_every_step_in_order() {
    let h = start();
    let running = h.run(assignment("t1", &[("app", true, "img:1")])).await;
    let statuses: Vec<i32> = reports(&h.store, "t1").iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Pulled,
            TaskStatus::Created,
            TaskStatus::Running
        ]
        .map(|s| s as i32),
        "PENDING (assigned), PENDING (pull started), PULLED, CREATED, RUNNING"
    );
    assert!(
        running.pull_started_at.is_some()
            && running.pull_stopped_at.is_some()
            && running.started_at.is_some()
    );
    assert_eq!(running.containers[0].runtime_id, "t1.app");
    assert_eq!(running.containers[0].image_digest, "sha256:m");
    h.cancel.cancel();
}

#[tokio::test]
async fn an_essential_exit_stops_the_task_and_cleans_up() {
    let h = start();
    h.run(assignment(
        "t2",
        &[("main", true, "img:1"), ("side", false, "img:1")],
    ))
    .await;
    h.fake.exit(&ContainerId::for_container("t2", "main"), 3);
    let stopped = until(&h.store, "t2", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.stopped_reason, "Essential container in task exited");
    let main = stopped
        .containers
        .iter()
        .find(|c| c.name == "main")
        .unwrap();
    assert_eq!(main.exit_code, Some(3));
    let side = stopped
        .containers
        .iter()
        .find(|c| c.name == "side")
        .unwrap();
    assert_eq!(
        side.exit_code,
        Some(143),
        "the other container was stopped with SIGTERM"
    );
    until_released(&h.store, "t2").await;
    let calls = h.fake.calls();
    assert!(calls.contains(&"stop t2.side 2s".to_owned()), "{calls:?}");
    assert!(
        calls.contains(&"delete t2.main".to_owned()) && calls.contains(&"rmcgroup t2".to_owned()),
        "{calls:?}"
    );
    assert!(
        h.store.tasks().unwrap().is_empty(),
        "a released task is forgotten"
    );
    h.cancel.cancel();
}

/// An agent killed during a cleanup comes back to what the store says: nothing of a task is
/// removed before the engine has applied (stored) its containers' exits and STOPPED, or a
/// RUNNING task would be found with its container gone and its exit code lost. The test plays
/// the engine to the driver and holds the events after STOPPED unapplied for a while.
#[tokio::test(start_paused = true)]
async fn nothing_is_removed_before_the_exit_is_stored() {
    use super::super::TaskEvent;
    let fake = Arc::new(Fake::default());
    let (events, mut rx) = tokio::sync::mpsc::channel(16);
    let (_control, control_rx) = tokio::sync::mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let driver = super::super::driver::Driver {
        images: Arc::new(crate::images::ImageUse::load(store)),
        runtime: Arc::clone(&fake),
        network: Arc::clone(&fake) as Arc<dyn TaskNetworking>,
        config: test_config(),
        events,
        control: control_rx,
        cancel: CancellationToken::new(),
        assignment: assignment("t9", &[("app", true, "img:1")]),
        restart_counts: std::collections::HashMap::new(),
        endpoint_ids: Arc::default(),
        secrets: Arc::default(),
        registry_auth: std::collections::HashMap::new(),
        pulls: Arc::default(),
        resolved: std::collections::HashMap::new(),
    };
    let run = tokio::spawn(driver.run(None));
    let deleted = || fake.calls().iter().any(|c| c.starts_with("delete "));
    let mut stopped = false;
    while let Some(command) = rx.recv().await {
        match command {
            Command::Event { event, .. } => match event {
                TaskEvent::Started => fake.exit(&ContainerId::for_container("t9", "app"), 7),
                TaskEvent::Stopped => {
                    stopped = true;
                    // The engine is slow to store it: the driver must wait.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    assert!(
                        !deleted(),
                        "removed before STOPPED was stored: {:?}",
                        fake.calls()
                    );
                }
                TaskEvent::Released => break,
                _ => {}
            },
            Command::Barrier(reply) => {
                assert!(
                    !deleted(),
                    "removed before STOPPED was stored: {:?}",
                    fake.calls()
                );
                let _ = reply.send(());
            }
            other => panic!("the driver sent {other:?}"),
        }
    }
    assert!(stopped, "the task never stopped");
    assert!(
        deleted(),
        "the container was never deleted: {:?}",
        fake.calls()
    );
    run.await.unwrap();
}

#[tokio::test]
async fn a_non_essential_exit_keeps_the_task_running() {
    let h = start();
    h.run(assignment(
        "t3",
        &[("main", true, "img:1"), ("init", false, "img:1")],
    ))
    .await;
    h.fake.exit(&ContainerId::for_container("t3", "init"), 0);
    // Wait until the exit is reported, then check the task still runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let last = reports(&h.store, "t3").pop().unwrap();
        if last
            .containers
            .iter()
            .any(|c| c.name == "init" && c.exit_code == Some(0))
        {
            assert_eq!(last.status, TaskStatus::Running as i32);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.cancel.cancel();
}

#[tokio::test]
async fn a_pull_failure_stops_the_task_with_the_registrys_reason() {
    let h = start();
    h.fake.fail_pull_of("127.0.0.1:5000/missing:1");
    h.assign(assignment(
        "t4",
        &[("app", true, "127.0.0.1:5000/missing:1")],
    ))
    .await;
    let stopped = until(&h.store, "t4", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "CannotPullContainerError: manifest unknown: registry 127.0.0.1:5000 has no tag 1 for missing"
    );
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("create")));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_stop_order_stops_with_the_users_reason() {
    let h = start();
    h.run(assignment("t5", &[("app", true, "img:1")])).await;
    h.stop("t5", 2, "maintenance").await;
    let stopped = until(&h.store, "t5", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::UserInitiated as i32);
    assert_eq!(stopped.stopped_reason, "maintenance");
    assert!(stopped.stopping_at.is_some() && stopped.stopped_at.is_some());
    assert_eq!(h.store.last_applied_seq().unwrap(), 2);
    h.cancel.cancel();
}

#[tokio::test]
async fn a_resent_assignment_is_not_run_twice() {
    let h = start();
    let a = assignment("t6", &[("app", true, "img:1")]);
    h.assign(a.clone()).await;
    h.assign(a).await;
    assert!(h.handle.barrier().await);
    until(&h.store, "t6", TaskStatus::Running).await;
    let creates = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(creates, 1);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_broken_wait_is_retried_not_taken_for_an_exit() {
    let h = start();
    *h.fake.failing_waits.lock().unwrap() = 2;
    h.run(assignment("t8", &[("app", true, "img:1")])).await;
    // Both failed waits are retried (250 ms, 500 ms); the task must still be running after.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let last = reports(&h.store, "t8").pop().unwrap();
    assert_eq!(
        last.status,
        TaskStatus::Running as i32,
        "a failed wait was taken for an exit: {last:?}"
    );
    assert_eq!(*h.fake.failing_waits.lock().unwrap(), 0);
    h.fake.exit(&ContainerId::for_container("t8", "app"), 0);
    let stopped = until(&h.store, "t8", TaskStatus::Stopped).await;
    assert_eq!(stopped.containers[0].exit_code, Some(0));
    h.cancel.cancel();
}

#[tokio::test]
async fn log_targets_name_the_file_and_say_when_the_container_stopped() {
    let h = start();
    h.run(assignment(
        "t9",
        &[("main", true, "img:1"), ("side", false, "img:1")],
    ))
    .await;
    let main = h.handle.log_target("t9", "main").await.unwrap();
    assert_eq!(main.path, std::path::PathBuf::from("/logs/t9/main.log"));
    assert!(!main.finished);
    assert_eq!(h.handle.log_target("t9", "nope").await, None);
    assert_eq!(h.handle.log_target("t0", "main").await, None);
    h.fake.exit(&ContainerId::for_container("t9", "side"), 0);
    let mut side_finished = false;
    for _ in 0..500 {
        side_finished = h.handle.log_target("t9", "side").await.unwrap().finished;
        if side_finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(side_finished, "an exited container's log is finished");
    assert!(
        !h.handle.log_target("t9", "main").await.unwrap().finished,
        "the other container still runs"
    );
    h.cancel.cancel();
}

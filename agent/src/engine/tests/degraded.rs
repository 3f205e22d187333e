//! The engine on a store that stops taking writes (a full disk, through the store's fault
//! seam): it keeps driving its tasks in memory, degrades the agent once, refuses new
//! assignments with a reason that names the database and the errno, and writes everything it
//! kept (latest states, the applied sequence number, forgotten tasks) once the store takes
//! writes again.

use std::time::Duration;

use berth_proto::v1::{StopCode, TaskStatus};

use super::{Command, assignment, last, start};

#[tokio::test]
async fn a_failing_store_degrades_keeps_tasks_refuses_new_ones_and_catches_up() {
    let h = start();
    h.run(assignment("t1", &[("app", true, "img:1")])).await;
    let recorded_before = h.store.recorded().len();

    // The disk fills: the stop order is applied on the host, in memory only.
    h.store.faults().fail_with(28);
    h.stop("t1", 2, "done").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h
        .handle
        .full_state()
        .await
        .iter()
        .any(|t| t.task_id == "t1")
    {
        assert!(tokio::time::Instant::now() < deadline, "t1 never released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        h.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("stop ") && c.contains("t1")),
        "{:?}",
        h.fake.calls()
    );
    assert!(
        h.store.faults().take_failed(),
        "the engine tried to write once"
    );
    let degraded = h.disk.degraded().expect("the agent degraded");
    assert_eq!(degraded.path, h.store.path());
    assert_eq!(degraded.errno, Some(28));
    assert_eq!(h.store.recorded().len(), recorded_before, "nothing written");

    // A new assignment is refused: nothing of it runs, and the full state says why.
    let mut second = assignment("t2", &[("app", true, "img:2")]);
    second.seq = 3;
    assert!(h.handle.send(Command::Assign(Box::new(second))).await);
    let full = h.handle.full_state().await;
    let refused = full
        .iter()
        .find(|t| t.task_id == "t2")
        .expect("t2 reported");
    assert_eq!(refused.status, TaskStatus::Stopped as i32);
    assert_eq!(refused.stop_code, StopCode::TaskFailedToStart as i32);
    let path = h.store.path().display().to_string();
    assert!(
        refused.stopped_reason.contains(&path) && refused.stopped_reason.contains("errno 28"),
        "{}",
        refused.stopped_reason
    );
    assert!(
        !h.fake.calls().iter().any(|c| c.contains("img:2")),
        "{:?}",
        h.fake.calls()
    );
    assert!(
        !h.store.faults().take_failed(),
        "no write tried while degraded"
    );

    // Still failing: the flush says so and keeps everything.
    assert!(h.handle.flush().await.is_err());
    h.store.faults().heal();
    h.handle
        .flush()
        .await
        .expect("the store takes writes again");
    let t1 = last(&h.store, "t1");
    assert_eq!(t1.status, TaskStatus::Stopped as i32);
    assert!(
        t1.resources_released_at.is_some(),
        "the latest state is queued: {t1:?}"
    );
    assert_eq!(h.store.last_applied_seq().unwrap(), 3);
    assert!(
        h.store.tasks().unwrap().is_empty(),
        "the released task is forgotten"
    );
    h.cancel.cancel();
}

//! Re-adoption after a store loss: a store that started empty finds the containers of the
//! tasks it lost, holds them (network included) for the scheduler, and takes up the one the
//! scheduler assigns again marked `adopt` without creating or starting anything twice.

use std::sync::Arc;

use berth_proto::v1::{ContainerStatus, TaskStatus};
use berth_runtime::ContainerStatus as RtStatus;

use super::durability::left;
use super::{Fake, assignment, count_calls, start_with_fake, stop_task, until};

#[tokio::test]
async fn found_containers_are_held_reported_and_the_claimed_task_adopted() {
    let fake = Arc::new(Fake::default());
    left(&fake, "lost", "app", RtStatus::Running, true, None);
    left(&fake, "stray", "app", RtStatus::Running, true, None);
    // A fresh store: it started empty, as after a loss.
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_fake(dir, Arc::clone(&fake), |_| {}, |_| {});

    let found = h.handle.found(true).await;
    let mut tasks: Vec<&str> = found.iter().map(|c| c.task_id.as_str()).collect();
    tasks.sort_unstable();
    assert_eq!(tasks, ["lost", "stray"]);
    assert!(found.iter().all(|c| c.container_name == "app" && c.running));
    assert!(
        h.handle.full_state().await.is_empty(),
        "no task is known yet"
    );
    assert!(
        fake.calls()
            .contains(&"netns repair [] held [lost stray]".to_owned()),
        "their network must be kept: {:?}",
        fake.calls()
    );

    let mut a = assignment("lost", &[("app", true, "img:1")]);
    a.adopt = true;
    h.assign(a).await;
    let running = until(&h.store, "lost", TaskStatus::Running).await;
    assert_eq!(
        running.containers[0].status,
        ContainerStatus::Running as i32
    );
    assert!(running.stopped_reason.is_empty(), "{running:?}");
    assert_eq!(count_calls(&h.fake, "create lost.app"), 0);
    assert_eq!(count_calls(&h.fake, "start lost.app"), 0);
    assert_eq!(count_calls(&h.fake, "reattach lost.app"), 1);
    // Adopted: no longer found; the other stays held for the window.
    let found = h.handle.found(true).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].task_id, "stray");

    // A stop works as for any task, and leaves nothing.
    stop_task(&h, "lost", 2).await;
    assert_eq!(count_calls(&h.fake, "delete lost.app"), 1);
    h.cancel.cancel();
}

#[tokio::test]
async fn a_store_that_did_not_start_empty_finds_nothing() {
    let fake = Arc::new(Fake::default());
    left(&fake, "lost", "app", RtStatus::Running, true, None);
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::store::Store::open(dir.path()).unwrap();
        // The first session after its creation: no longer new.
        store.continue_numbering_after(0).unwrap();
    }
    let h = start_with_fake(dir, Arc::clone(&fake), |_| {}, |_| {});
    assert!(h.handle.found(true).await.is_empty());
    h.cancel.cancel();
}

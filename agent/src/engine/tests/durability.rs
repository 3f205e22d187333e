//! An agent restart in the middle of things: a task the agent died while starting continues
//! from what containerd shows (no container created or started twice), and containers that
//! exited or vanished while the agent was away are reported with their real exit code and
//! time, or with a reason that says their code is lost; the essential-container rule applies.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{ContainerState, ContainerStatus, StopCode, TaskState, TaskStatus};
use berth_runtime::{ContainerId, ContainerInfo, ContainerStatus as RtStatus, ExitStatus};

use super::super::driver::{GONE_WHILE_AWAY, REMOVED_WHILE_AWAY};
use super::{Fake, assignment, count_calls, reports, start_with_fake, until};
use crate::store::{ResumeRecord, Store};

/// A store holding `a` as an earlier run left it, with this state.
fn stored(a: &berth_proto::v1::TaskAssignment, state: TaskState) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.accept_assignment(a, &state).unwrap());
    dir
}

/// A container the earlier run left in containerd; `exit` is the exit containerd keeps of a
/// stopped one.
pub(super) fn left(
    fake: &Fake,
    task: &str,
    name: &str,
    status: RtStatus,
    started: bool,
    exit: Option<ExitStatus>,
) {
    let id = ContainerId::for_container(task, name);
    fake.existing.lock().unwrap().push(ContainerInfo {
        id: id.clone(),
        task_id: task.into(),
        name: name.into(),
        image: "img:1".into(),
        status,
        pid: (status == RtStatus::Running).then_some(42),
        exit_code: exit.as_ref().map(|e| e.code),
        stop_timeout: None,
        started,
    });
    if status != RtStatus::NoTask {
        fake.exits
            .lock()
            .unwrap()
            .insert(id, tokio::sync::watch::channel(exit).0);
    }
}

fn state(task: &str, status: TaskStatus, containers: &[(&str, ContainerStatus)]) -> TaskState {
    TaskState {
        task_id: task.into(),
        status: status as i32,
        containers: containers
            .iter()
            .map(|(name, s)| ContainerState {
                name: (*name).into(),
                status: *s as i32,
                image: "img:1".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn resume_completed(store: &Store, task: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.resume_record(task).unwrap() != ResumeRecord::default() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task}'s resume never completed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_task_pending_when_the_agent_died_continues_to_running() {
    let a = assignment("p", &[("app", true, "img:1")]);
    let dir = stored(
        &a,
        state(
            "p",
            TaskStatus::Pending,
            &[("app", ContainerStatus::Pending)],
        ),
    );
    let h = start_with_fake(dir, Arc::new(Fake::default()), |_| {}, |_| {});
    let running = until(&h.store, "p", TaskStatus::Running).await;
    assert!(running.stopped_reason.is_empty(), "{running:?}");
    assert_eq!(count_calls(&h.fake, "create p.app"), 1);
    assert_eq!(count_calls(&h.fake, "start p.app"), 1);
    resume_completed(&h.store, "p").await;
    h.cancel.cancel();
}

#[tokio::test]
async fn a_created_task_starts_its_containers_without_creating_them_again() {
    let a = assignment("c", &[("a", true, "img:1"), ("b", false, "img:1")]);
    let fake = Arc::new(Fake::default());
    // `a` was created and its process made; `b` created only.
    left(&fake, "c", "a", RtStatus::Created, false, None);
    left(&fake, "c", "b", RtStatus::NoTask, false, None);
    fake.exits.lock().unwrap().insert(
        ContainerId::for_container("c", "b"),
        tokio::sync::watch::channel(None).0,
    );
    let dir = stored(
        &a,
        state(
            "c",
            TaskStatus::Created,
            &[
                ("a", ContainerStatus::Created),
                ("b", ContainerStatus::Created),
            ],
        ),
    );
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    until(&h.store, "c", TaskStatus::Running).await;
    let calls = h.fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("create ")), "{calls:?}");
    assert_eq!(count_calls(&h.fake, "start c.a"), 1);
    assert_eq!(count_calls(&h.fake, "start c.b"), 1);
    assert_eq!(
        count_calls(&h.fake, "reattach c.a"),
        1,
        "its FIFOs are read again"
    );
    resume_completed(&h.store, "c").await;
    h.cancel.cancel();
}

/// A start the agent continues takes the image its task resolved before the restart from the
/// cache, without asking the registry, while the cache still holds that digest; when it holds
/// another (the tag was pulled again meanwhile), the pull behaviour decides as for a new task.
#[tokio::test]
async fn a_continued_start_keeps_the_image_its_task_resolved() {
    // The fake's pull resolves img:1 to sha256:m.
    for (cached_digest, pulls, runs) in [
        ("sha256:m1", 0, "sha256:m1"),
        ("sha256:moved", 1, "sha256:m"),
    ] {
        let a = assignment("r", &[("app", true, "img:1")]);
        let fake = Arc::new(Fake::default());
        fake.cached.lock().unwrap().insert(
            "img:1".into(),
            berth_runtime::PulledImage {
                name: "img:1".into(),
                target_digest: cached_digest.into(),
                manifest_digest: cached_digest.into(),
                config_digest: "sha256:c".into(),
                chain_id: "sha256:chain".into(),
                size: 1,
                downloaded: 0,
            },
        );
        let mut before = state("r", TaskStatus::Pulled, &[("app", ContainerStatus::Pulled)]);
        before.containers[0].image_digest = "sha256:m1".into();
        let dir = stored(&a, before);
        let h = start_with_fake(dir, fake, |_| {}, |_| {});
        let running = until(&h.store, "r", TaskStatus::Running).await;
        assert_eq!(
            count_calls(&h.fake, "pull img:1"),
            pulls,
            "cached {cached_digest}: {:?}",
            h.fake.calls()
        );
        assert_eq!(running.containers[0].image_digest, runs);
        resume_completed(&h.store, "r").await;
        h.cancel.cancel();
    }
}

#[tokio::test]
async fn a_container_started_before_the_restart_is_never_started_again() {
    let a = assignment("s", &[("a", true, "img:1"), ("b", true, "img:1")]);
    let fake = Arc::new(Fake::default());
    left(&fake, "s", "a", RtStatus::Running, true, None);
    let dir = stored(
        &a,
        state(
            "s",
            TaskStatus::Created,
            &[
                ("a", ContainerStatus::Created),
                ("b", ContainerStatus::Created),
            ],
        ),
    );
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    let running = until(&h.store, "s", TaskStatus::Running).await;
    assert!(
        running
            .containers
            .iter()
            .all(|c| c.status == ContainerStatus::Running as i32)
    );
    assert_eq!(count_calls(&h.fake, "start s.a"), 0);
    assert_eq!(count_calls(&h.fake, "create s.a"), 0);
    assert_eq!(count_calls(&h.fake, "create s.b"), 1);
    assert_eq!(count_calls(&h.fake, "start s.b"), 1);
    // It is watched: its exit stops the task, as an essential one's does.
    h.fake.exit(&ContainerId::for_container("s", "a"), 7);
    let stopped = until(&h.store, "s", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(stopped.containers[0].exit_code, Some(7));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_container_that_exited_while_the_agent_was_away_keeps_its_code_and_time() {
    let a = assignment("x", &[("app", true, "img:1")]);
    let fake = Arc::new(Fake::default());
    let exited_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let exit = ExitStatus {
        code: 3,
        exited_at,
        oom_killed: false,
    };
    left(&fake, "x", "app", RtStatus::Stopped, true, Some(exit));
    let dir = stored(
        &a,
        state(
            "x",
            TaskStatus::Running,
            &[("app", ContainerStatus::Running)],
        ),
    );
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    let stopped = until(&h.store, "x", TaskStatus::Stopped).await;
    let app = &stopped.containers[0];
    assert_eq!(app.exit_code, Some(3));
    assert_eq!(app.exited_at, Some(crate::task::timestamp(exited_at)));
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    assert_eq!(count_calls(&h.fake, "start x.app"), 0);
    h.cancel.cancel();
}

#[tokio::test]
async fn containers_that_vanished_while_the_agent_was_away_are_reported_with_the_reason() {
    // `app` lost its process with its shim; `side` (not essential) lost its record too.
    let a = assignment("v", &[("app", true, "img:1"), ("side", false, "img:1")]);
    let fake = Arc::new(Fake::default());
    left(&fake, "v", "app", RtStatus::NoTask, true, None);
    let dir = stored(
        &a,
        state(
            "v",
            TaskStatus::Running,
            &[
                ("app", ContainerStatus::Running),
                ("side", ContainerStatus::Running),
            ],
        ),
    );
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    let stopped = until(&h.store, "v", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    let (app, side) = (&stopped.containers[0], &stopped.containers[1]);
    assert_eq!(
        (app.exit_code, app.reason.as_str()),
        (None, GONE_WHILE_AWAY)
    );
    assert_eq!(
        (side.exit_code, side.reason.as_str()),
        (None, REMOVED_WHILE_AWAY)
    );
    assert!(
        reports(&h.store, "v")
            .iter()
            .any(|s| s.status == TaskStatus::Running as i32
                && s.containers[0].status == ContainerStatus::Stopped as i32),
        "the containers are reported before the task stops"
    );
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("start ")));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_container_whose_process_vanishes_while_watched_is_reported_with_the_reason() {
    let h = super::start();
    h.run(assignment("w", &[("app", true, "img:1")])).await;
    // containerd loses it: its wait ends with NotFound.
    h.fake
        .exits
        .lock()
        .unwrap()
        .remove(&ContainerId::for_container("w", "app"));
    let stopped = until(&h.store, "w", TaskStatus::Stopped).await;
    let app = &stopped.containers[0];
    assert_eq!(app.exit_code, None);
    assert!(
        app.reason.contains("exit code is unknown"),
        "{}",
        app.reason
    );
    assert_eq!(stopped.stop_code, StopCode::EssentialContainerExited as i32);
    h.cancel.cancel();
}

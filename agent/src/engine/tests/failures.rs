//! A driver that panics (its task stops with the failure, a new driver cleans up, the engine
//! and the other tasks go on) and the crash-loop guard over resumes after agent restarts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_proto::v1::{ContainerState, ContainerStatus, StopCode, TaskStatus};
use berth_runtime::{ContainerId, ContainerInfo};

use super::super::resume::{CRASH_LOOP_RESUMES, CRASH_LOOP_WINDOW, give_up_reason};
use super::{Fake, Harness, assignment, reports, start, start_run, start_with_fake, until};
use crate::last_exit::{Ending, Runs};
use crate::runtime::ContainerRuntime;
use crate::store::{InProgress, ResumeRecord, Store};

const DRIVER_FAILED: &str = "the agent's driver of this task failed: ";

/// Waits until `check` holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_panicking_pull_stops_its_task_with_the_failure_and_the_others_go_on() {
    let h = start();
    h.fake.panic_pull.lock().unwrap().insert("img:bad".into());
    for (task, image) in [("bad", "img:bad"), ("good", "img:1")] {
        h.assign(assignment(task, &[("app", true, image)])).await;
    }
    let stopped = until(&h.store, "bad", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        format!("{DRIVER_FAILED}fake pull of img:bad panicked")
    );
    // The driver that took over cleaned up after it.
    super::until_released(&h.store, "bad").await;
    until(&h.store, "good", TaskStatus::Running).await;
    // The engine still takes new work.
    assert!(h.handle.barrier().await);
    h.run(assignment("after", &[("app", true, "img:1")])).await;
    h.cancel.cancel();
}

#[tokio::test]
async fn a_driver_that_panics_while_its_task_runs_is_replaced_to_stop_it() {
    let h = start();
    let app = ContainerId::for_container("run", "app");
    h.fake.panic_on_exit.lock().unwrap().insert(app.clone(), 1);
    h.run(assignment(
        "run",
        &[("app", true, "img:1"), ("side", false, "img:1")],
    ))
    .await;
    h.fake.exit(&app, 3);
    let stopped = until(&h.store, "run", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        format!("{DRIVER_FAILED}fake wait of run.app panicked")
    );
    super::until_released(&h.store, "run").await;
    let calls = h.fake.calls();
    for call in ["reattach run.side", "stop run.side 2s", "delete run.side"] {
        assert!(
            calls.contains(&call.to_owned()),
            "the new driver took the containers over, stopped and removed them: {calls:?}"
        );
    }
    h.cancel.cancel();
}

#[tokio::test]
async fn a_task_whose_second_driver_fails_too_is_left_stopped() {
    let h = start();
    let app = ContainerId::for_container("twice", "app");
    h.fake.panic_on_exit.lock().unwrap().insert(app.clone(), 2);
    h.run(assignment("twice", &[("app", true, "img:1")])).await;
    h.fake.exit(&app, 3);
    let stopped = until(&h.store, "twice", TaskStatus::Stopped).await;
    assert!(
        stopped.stopped_reason.starts_with(DRIVER_FAILED),
        "{stopped:?}"
    );
    // Both failures are in; nothing drives the task any more, and nothing restarts a driver.
    eventually("both drivers failed", || {
        h.fake.panic_on_exit.lock().unwrap().get(&app) == Some(&0)
    })
    .await;
    assert!(h.handle.barrier().await);
    assert!(h.handle.barrier().await);
    let last = reports(&h.store, "twice").pop().unwrap();
    assert_eq!(last.status, TaskStatus::Stopped as i32, "{last:?}");
    h.run(assignment("next", &[("app", true, "img:1")])).await;
    h.cancel.cancel();
}

/// A store holding `task` RUNNING (container `app` running), as an earlier run left it, with
/// `record` as its resume record; and a fake host where that container runs.
fn stored_as_running(task: &str, record: &ResumeRecord) -> (tempfile::TempDir, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let a = assignment(task, &[("app", true, "img:1")]);
    let store = Store::open(dir.path()).unwrap();
    let id = ContainerId::for_container(task, "app");
    let running = berth_proto::v1::TaskState {
        task_id: task.into(),
        status: TaskStatus::Running as i32,
        containers: vec![ContainerState {
            name: "app".into(),
            status: ContainerStatus::Running as i32,
            runtime_id: id.to_string(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(store.accept_assignment(&a, &running).unwrap());
    store.set_resume_record(task, record).unwrap();
    let fake = Arc::new(Fake::default());
    fake.existing.lock().unwrap().push(ContainerInfo {
        id: id.clone(),
        task_id: task.into(),
        name: "app".into(),
        image: "img:1".into(),
        status: berth_runtime::ContainerStatus::Running,
        pid: Some(42),
        exit_code: None,
        stop_timeout: None,
        started: true,
    });
    fake.exits
        .lock()
        .unwrap()
        .insert(id, tokio::sync::watch::channel(None).0);
    (dir, fake)
}

/// Stops the engine as an agent stop would, and gives back its store dir and fake host.
async fn stop_agent(h: Harness) -> (tempfile::TempDir, Arc<Fake>) {
    h.cancel.cancel();
    h.engine.await.unwrap().unwrap();
    drop(h.store);
    // A hook may hold the store too.
    *h.fake.on_reattach.lock().unwrap() = None;
    (h._dir, h.fake)
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

#[tokio::test]
async fn a_task_whose_resumes_kept_crashing_the_agent_is_stopped_not_resumed_again() {
    let record = ResumeRecord {
        crashed: (0..CRASH_LOOP_RESUMES as u64)
            .map(|i| ago(90 - 30 * i))
            .collect(),
        ..ResumeRecord::default()
    };
    let (dir, fake) = stored_as_running("loop", &record);
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    let stopped = until(&h.store, "loop", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(stopped.stopped_reason, give_up_reason(CRASH_LOOP_RESUMES));
    assert!(
        stopped
            .stopped_reason
            .contains("crashed 3 times within 10 min"),
        "{}",
        stopped.stopped_reason
    );
    assert!(h.store.resume_record("loop").unwrap().given_up);
    // Nothing touched it: no reattach, no stop, no removal.
    assert!(h.handle.barrier().await);
    assert!(
        !h.fake.calls().iter().any(|c| c.contains("loop.app")),
        "{:?}",
        h.fake.calls()
    );
    // It shows in the full state, STOPPED, and stays so across the next restarts, whatever
    // the window.
    let full = h.handle.full_state().await;
    assert!(
        full.iter()
            .any(|t| t.task_id == "loop" && t.status == TaskStatus::Stopped as i32)
    );
    let (dir, fake) = stop_agent(h).await;
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    assert!(h.handle.barrier().await);
    let full = h.handle.full_state().await;
    assert!(
        full.iter()
            .any(|t| t.task_id == "loop" && t.status == TaskStatus::Stopped as i32)
    );
    assert!(!h.fake.calls().iter().any(|c| c.contains("loop.app")));
    h.cancel.cancel();
}

#[tokio::test]
async fn an_agent_restarted_often_keeps_a_healthy_task_running() {
    let (mut dir, mut fake) = stored_as_running("steady", &ResumeRecord::default());
    for restart in 0..2 * CRASH_LOOP_RESUMES {
        // What the store holds when the driver reattaches: this resume, recorded first.
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let h = start_with_fake(
            dir,
            Arc::clone(&fake),
            |store| {
                let (store, seen) = (Arc::clone(store), Arc::clone(&seen));
                *fake.on_reattach.lock().unwrap() = Some(Box::new(move |_| {
                    let record = store.resume_record("steady").unwrap();
                    assert!(record.in_progress.is_some(), "{record:?}");
                    seen.lock().unwrap().push(record.crashed.len());
                }));
            },
            |_| {},
        );
        eventually("the task was reattached", || {
            !seen.lock().unwrap().is_empty()
        })
        .await;
        eventually("the resume completed", || {
            h.store.resume_record("steady").unwrap() == ResumeRecord::default()
        })
        .await;
        assert_eq!(*seen.lock().unwrap(), [0], "restart {restart}");
        assert!(h.handle.barrier().await);
        let state = h.handle.full_state().await;
        assert_eq!(
            state[0].status,
            TaskStatus::Running as i32,
            "restart {restart}"
        );
        assert!(!h.fake.calls().iter().any(|c| c.starts_with("stop")));
        (dir, fake) = stop_agent(h).await;
    }
}

#[tokio::test]
async fn resumes_that_failed_long_ago_do_not_count() {
    let long_ago = CRASH_LOOP_WINDOW.as_secs() + 60;
    let record = ResumeRecord {
        crashed: (0..CRASH_LOOP_RESUMES as u64)
            .map(|i| ago(long_ago + i))
            .collect(),
        ..ResumeRecord::default()
    };
    let (dir, fake) = stored_as_running("old", &record);
    let h = start_with_fake(dir, fake, |_| {}, |_| {});
    eventually("the task was resumed", || {
        h.fake.calls().contains(&"reattach old.app".to_owned())
    })
    .await;
    eventually("the resume completed", || {
        h.store.resume_record("old").unwrap() == ResumeRecord::default()
    })
    .await;
    let last = reports(&h.store, "old").pop();
    assert!(last.is_none_or(|s| s.status == TaskStatus::Running as i32));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_resume_that_stops_its_task_completes_when_the_task_is_stopped() {
    // The agent died while the task was starting and a stop came for it: its resume stops
    // it, and that completes it.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let a = assignment("starting", &[("app", true, "img:1")]);
        let pending = berth_proto::v1::TaskState {
            task_id: "starting".into(),
            status: TaskStatus::Pending as i32,
            desired_status: berth_proto::v1::DesiredStatus::Stopped as i32,
            stop_code: StopCode::UserInitiated as i32,
            stopped_reason: "done".into(),
            ..Default::default()
        };
        assert!(store.accept_assignment(&a, &pending).unwrap());
    }
    let h = start_with_fake(
        dir,
        Arc::new(Fake::default()),
        |_| {},
        |c| {
            c.cleanup_wait = Duration::from_secs(3600);
        },
    );
    let stopped = until(&h.store, "starting", TaskStatus::Stopped).await;
    assert_eq!(stopped.stopped_reason, "done");
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("create ")));
    eventually("the resume completed", || {
        h.store.resume_record("starting").unwrap() == ResumeRecord::default()
    })
    .await;
    h.cancel.cancel();
}

/// The driver's future, by size. `Engine::spawn` boxes it (its task holds a pointer); the
/// runtime's pull behind `ContainerRuntime` is boxed too (async-trait), so the driver never
/// holds a pull's future. Run with --nocapture to see the figures.
#[tokio::test]
async fn the_drivers_future_is_measured_and_boxed() {
    let fake = Arc::new(Fake::default());
    let (events, _rx) = tokio::sync::mpsc::channel(1);
    let (_control, control_rx) = tokio::sync::mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::Store::open(dir.path()).unwrap());
    let driver = super::super::driver::Driver {
        images: Arc::new(crate::images::ImageUse::load(store)),
        runtime: Arc::clone(&fake),
        network: Arc::clone(&fake) as Arc<dyn crate::network::TaskNetworking>,
        config: super::test_config(),
        events,
        control: control_rx,
        cancel: tokio_util::sync::CancellationToken::new(),
        assignment: assignment("sized", &[("app", true, "img:1")]),
        restart_counts: std::collections::HashMap::new(),
        endpoint_ids: Arc::default(),
        secrets: Arc::default(),
        registry_auth: std::collections::HashMap::new(),
        pulls: Arc::default(),
        resolved: std::collections::HashMap::new(),
    };
    let run = driver.run(None);
    let pull = fake.pull("img:1", &berth_runtime::RegistryAuth::Anonymous, None);
    println!(
        "driver run (start, supervise): {} bytes",
        std::mem::size_of_val(&run)
    );
    println!(
        "runtime pull behind the trait: {} bytes held",
        std::mem::size_of_val(&pull)
    );
    assert_eq!(
        std::mem::size_of_val(&pull),
        16,
        "the pull is a boxed future"
    );
}

/// The runs of a host where `before` ended as `exit_code`/`exit_status` and `now` runs.
fn after(exit_code: &str, exit_status: &str) -> Runs {
    Runs {
        current: "now".into(),
        last_ending: Some(Ending {
            invocation: "before".into(),
            service_result: String::new(),
            exit_code: exit_code.into(),
            exit_status: exit_status.into(),
        }),
    }
}

/// A record of `crashes` counted crashes, and a resume the run "before" began and never
/// completed.
fn cut_short(crashes: usize) -> ResumeRecord {
    ResumeRecord {
        crashed: (0..crashes as u64).map(|i| ago(90 - 30 * i)).collect(),
        in_progress: Some(InProgress {
            run: "before".into(),
            since: ago(10),
        }),
        given_up: false,
    }
}

#[tokio::test]
async fn a_resume_cut_short_by_an_outside_kill_does_not_count() {
    // Two crashes already, and the last run was killed (SIGKILL, systemctl stop) while it
    // resumed the task: the task is resumed, and the kill is not held against it.
    for (code, status) in [("killed", "KILL"), ("killed", "TERM"), ("exited", "0")] {
        let (dir, fake) = stored_as_running("kept", &cut_short(CRASH_LOOP_RESUMES - 1));
        let h = start_run(dir, fake, |_| {}, |_| {}, Some(after(code, status)));
        eventually("the task was resumed", || {
            h.fake.calls().contains(&"reattach kept.app".to_owned())
        })
        .await;
        eventually("the resume completed", || {
            h.store.resume_record("kept").unwrap() == ResumeRecord::default()
        })
        .await;
        assert!(h.handle.barrier().await);
        let full = h.handle.full_state().await;
        assert_eq!(
            full[0].status,
            TaskStatus::Running as i32,
            "{code} {status}"
        );
        h.cancel.cancel();
    }
}

#[tokio::test]
async fn a_resume_cut_short_by_a_crash_counts_and_the_third_gives_up() {
    let (dir, fake) = stored_as_running("poison", &cut_short(CRASH_LOOP_RESUMES - 1));
    let h = start_run(dir, fake, |_| {}, |_| {}, Some(after("dumped", "SEGV")));
    let stopped = until(&h.store, "poison", TaskStatus::Stopped).await;
    assert_eq!(stopped.stopped_reason, give_up_reason(CRASH_LOOP_RESUMES));
    let record = h.store.resume_record("poison").unwrap();
    assert!(record.given_up, "{record:?}");
    assert_eq!(record.crashed.len(), CRASH_LOOP_RESUMES, "{record:?}");
    assert_eq!(record.in_progress, None);
    assert!(h.handle.barrier().await);
    assert!(!h.fake.calls().iter().any(|c| c.contains("poison.app")));
    h.cancel.cancel();
}

#[tokio::test]
async fn a_crash_before_the_third_is_counted_and_the_task_resumed() {
    let (dir, fake) = stored_as_running("once", &cut_short(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let h = start_run(
        dir,
        Arc::clone(&fake),
        |store| {
            let store = Arc::clone(store);
            *fake.on_reattach.lock().unwrap() = Some(Box::new(move |_| {
                let _ = tx.send(store.resume_record("once").unwrap());
            }));
        },
        |_| {},
        Some(after("killed", "ABRT")),
    );
    // While resuming, the store holds the crash and this run's resume.
    let during = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(during.crashed.len(), 1, "{during:?}");
    assert_eq!(during.in_progress.map(|p| p.run).as_deref(), Some("now"));
    eventually("the resume completed", || {
        h.store.resume_record("once").unwrap() == ResumeRecord::default()
    })
    .await;
    assert!(h.handle.barrier().await);
    assert_eq!(
        h.handle.full_state().await[0].status,
        TaskStatus::Running as i32
    );
    h.cancel.cancel();
}

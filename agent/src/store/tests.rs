//! The store's tests: durability across reopen, numbering, damaged files and records.

use super::*;
use berth_proto::v1::TaskStatus;
use std::time::{Duration, SystemTime};

fn state(id: &str, status: TaskStatus) -> TaskState {
    TaskState {
        task_id: id.into(),
        status: status as i32,
        ..Default::default()
    }
}

#[test]
fn outbox_survives_reopen_and_acks_drop_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.record_state(&state("a", TaskStatus::Pending)).unwrap(), 1);
        s.outbox_page(0, OUTBOX_PAGE).unwrap();
        assert_eq!(s.record_state(&state("a", TaskStatus::Running)).unwrap(), 2);
        assert_eq!(s.record_state(&state("b", TaskStatus::Pending)).unwrap(), 3);
        s.ack(1).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let pending: Vec<u64> = s.outbox_after(0).unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(pending, [2, 3]);
    assert_eq!(s.outbox_after(2).unwrap().len(), 1);
    // Sequence numbers keep growing across restarts.
    assert_eq!(s.record_state(&state("b", TaskStatus::Running)).unwrap(), 4);
}

#[test]
fn an_assignment_and_its_first_state_are_one_commit_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = TaskAssignment {
        seq: 3,
        task_id: "t1".into(),
        ..Default::default()
    };
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.record_state(&state("t0", TaskStatus::Running)).unwrap(),
            1
        );
        s.outbox_page(0, OUTBOX_PAGE).unwrap();
        let first = s
            .accept_assignment_queued(&a, &state("t1", TaskStatus::Pending))
            .unwrap();
        assert_eq!(first, Some(2), "queued after what is there");
        // Resent by the scheduler: nothing queued again, nothing recorded twice.
        assert_eq!(
            s.accept_assignment_queued(&a, &state("t1", TaskStatus::Running))
                .unwrap(),
            None
        );
        // Not sent yet: the task's next change takes its place.
        assert_eq!(s.record_state(&state("t1", TaskStatus::Pulled)).unwrap(), 2);
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.last_applied_seq().unwrap(), 3);
    let tasks = s.tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state.status, TaskStatus::Pulled as i32);
    let queued: Vec<(u64, i32)> = s
        .outbox_after(0)
        .unwrap()
        .into_iter()
        .map(|(seq, st)| (seq, st.status))
        .collect();
    assert_eq!(
        queued,
        [
            (1, TaskStatus::Running as i32),
            (2, TaskStatus::Pulled as i32)
        ]
    );
}

#[test]
fn assignments_are_recorded_once_with_their_seq() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let a = TaskAssignment {
        seq: 7,
        task_id: "t1".into(),
        ..Default::default()
    };
    assert!(
        s.accept_assignment(&a, &state("t1", TaskStatus::Pending))
            .unwrap()
    );
    assert!(
        !s.accept_assignment(&a, &state("t1", TaskStatus::Pending))
            .unwrap()
    );
    assert_eq!(s.last_applied_seq().unwrap(), 7);
    s.mark_applied(5).unwrap();
    assert_eq!(s.last_applied_seq().unwrap(), 7, "never goes backwards");
    let tasks = s.tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].assignment.seq, 7);
    s.forget_task("t1").unwrap();
    assert!(s.tasks().unwrap().is_empty());
}

#[test]
fn endpoint_ids_are_random_per_container_and_kept_with_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let container = |name: &str| berth_proto::v1::ContainerDefinition {
        name: name.into(),
        ..Default::default()
    };
    let a = TaskAssignment {
        seq: 1,
        task_id: "t1".into(),
        definition: Some(berth_proto::v1::TaskDefinition {
            containers: vec![container("app"), container("side")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let ids = {
        let s = Store::open(dir.path()).unwrap();
        s.accept_assignment(&a, &state("t1", TaskStatus::Pending))
            .unwrap();
        s.endpoint_ids("t1").unwrap()
    };
    assert_eq!(ids.len(), 2);
    for id in ids.values() {
        assert_eq!(id.len(), 32, "128 bits in hex: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(ids["app"], ids["side"]);
    let s = Store::open(dir.path()).unwrap();
    s.accept_assignment(&a, &state("t1", TaskStatus::Pending))
        .unwrap();
    assert_eq!(
        s.endpoint_ids("t1").unwrap(),
        ids,
        "kept across restarts and resends"
    );
    s.forget_task("t1").unwrap();
    assert!(s.endpoint_ids("t1").unwrap().is_empty());
    assert!(decode_endpoint_ids("t", b"no tab").is_err());
}

#[test]
fn resume_records_survive_reopen_and_go_with_their_task() {
    let dir = tempfile::tempdir().unwrap();
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let record = ResumeRecord {
        crashed: vec![at(100), at(160)],
        in_progress: Some(InProgress {
            run: "9f0c2e".into(),
            since: at(200),
        }),
        given_up: false,
    };
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.resume_record("t").unwrap(), ResumeRecord::default());
        s.set_resume_record("t", &record).unwrap();
        s.set_resume_record(
            "u",
            &ResumeRecord {
                crashed: vec![at(5)],
                in_progress: None,
                given_up: true,
            },
        )
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.resume_record("t").unwrap(), record);
    assert!(s.resume_record("u").unwrap().given_up);
    s.clear_resume_record("t").unwrap();
    assert_eq!(s.resume_record("t").unwrap(), ResumeRecord::default());
    s.forget_task("u").unwrap();
    assert_eq!(s.resume_record("u").unwrap(), ResumeRecord::default());
}

#[test]
fn a_damaged_resume_record_is_reported_not_guessed() {
    assert!(ResumeRecord::decode("t", &[]).is_err());
    assert!(ResumeRecord::decode("t", &[4]).is_err());
    assert!(ResumeRecord::decode("t", &[0, 1, 2]).is_err());
    // In progress, but shorter than its crash count says, or with no in-progress time.
    assert!(ResumeRecord::decode("t", &[2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(ResumeRecord::decode("t", &[2, 0, 0, 0, 0]).is_err());
    assert!(ResumeRecord::decode("t", &[2, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert_eq!(
        ResumeRecord::decode("t", &[1]).unwrap(),
        ResumeRecord {
            crashed: Vec::new(),
            in_progress: None,
            given_up: true
        }
    );
}

#[test]
fn resume_records_of_earlier_agents_read_as_crashes() {
    // An earlier agent kept a flag byte and when each unfinished resume began.
    let mut bytes = vec![0];
    bytes.extend_from_slice(&100u64.to_le_bytes());
    bytes.extend_from_slice(&160u64.to_le_bytes());
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let record = ResumeRecord::decode("t", &bytes).unwrap();
    assert_eq!(record.crashed, [at(100), at(160)]);
    assert_eq!(record.in_progress, None);
    // And a record without a resume in progress is written in that same layout.
    assert_eq!(record.encode(), bytes);
    let in_progress = ResumeRecord {
        in_progress: Some(InProgress {
            run: String::new(),
            since: at(7),
        }),
        ..record
    };
    assert_eq!(
        ResumeRecord::decode("t", &in_progress.encode()).unwrap(),
        in_progress
    );
}

#[test]
fn registering_anew_restarts_both_numberings_and_keeps_unacked_changes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.set_registration("default", "old").unwrap();
    for status in [TaskStatus::Pulled, TaskStatus::Created, TaskStatus::Running] {
        s.record_state(&state("t", status)).unwrap();
        s.outbox_page(0, OUTBOX_PAGE).unwrap();
    }
    s.ack(1).unwrap();
    s.mark_applied(9).unwrap();
    s.register_anew("default", "new").unwrap();
    assert_eq!(
        s.registration().unwrap(),
        Some(("default".into(), "new".into()))
    );
    assert_eq!(s.last_applied_seq().unwrap(), 0);
    let pending: Vec<(u64, i32)> = s
        .outbox_after(0)
        .unwrap()
        .into_iter()
        .map(|(seq, st)| (seq, st.status))
        .collect();
    assert_eq!(
        pending,
        vec![
            (1, TaskStatus::Created as i32),
            (2, TaskStatus::Running as i32)
        ]
    );
    assert_eq!(s.record_state(&state("t", TaskStatus::Stopped)).unwrap(), 3);
}

#[test]
fn a_new_store_continues_the_schedulers_numbering_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.rebuilt().unwrap().as_deref(), Some("created"));
    s.record_state(&state("t", TaskStatus::Pending)).unwrap();
    s.record_state(&state("u", TaskStatus::Running)).unwrap();
    s.continue_numbering_after(40).unwrap();
    let pending: Vec<u64> = s.outbox_after(0).unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(pending, [41, 42]);
    assert_eq!(
        s.record_state(&state("t", TaskStatus::Stopped)).unwrap(),
        43
    );
    assert_eq!(s.rebuilt().unwrap(), None);
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.rebuilt().unwrap(), None, "only a store made anew is new");
    s.mark_established().unwrap();
}

#[test]
fn an_undecodable_record_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    for id in ["good", "bad-assignment", "bad-state"] {
        let a = TaskAssignment {
            seq: 1,
            task_id: id.into(),
            ..Default::default()
        };
        s.accept_assignment(&a, &state(id, TaskStatus::Running))
            .unwrap();
    }
    s.record_state(&state("good", TaskStatus::Running)).unwrap();
    s.set_resume_record("good", &ResumeRecord::default())
        .unwrap();
    // Bytes no protobuf decoder takes: a field with wire type 7.
    let garbage: &[u8] = &[0xff, 0xff, 0xff];
    let tx = s.begin_write().unwrap();
    {
        tx.open_table(ASSIGNMENTS)
            .unwrap()
            .insert("bad-assignment", garbage)
            .unwrap();
        tx.open_table(STATES)
            .unwrap()
            .insert("bad-state", garbage)
            .unwrap();
        tx.open_table(OUTBOX).unwrap().insert(7, garbage).unwrap();
        tx.open_table(RESUMES)
            .unwrap()
            .insert("good", &[9u8][..])
            .unwrap();
    }
    tx.commit().unwrap();
    let ids: Vec<String> = s
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.state.task_id)
        .collect();
    assert_eq!(ids, ["good"]);
    let outbox: Vec<u64> = s.outbox_after(0).unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(outbox, [1], "the garbled change is left out");
    assert_eq!(s.resume_record("good").unwrap(), ResumeRecord::default());
}

#[test]
fn an_unreadable_file_is_moved_aside_and_a_new_store_made() {
    for damage in ["truncated", "garbled"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.set_registration("default", "i-1").unwrap();
            s.mark_established().unwrap();
        }
        let path = dir.path().join("agent.redb");
        let bytes = std::fs::read(&path).unwrap();
        let damaged = match damage {
            "truncated" => bytes[..bytes.len() / 3].to_vec(),
            _ => bytes.iter().map(|b| b ^ 0x5a).collect(),
        };
        std::fs::write(&path, damaged).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.registration().unwrap(), None, "{damage}");
        let why = s.rebuilt().unwrap().unwrap_or_default();
        assert!(why.starts_with("moved aside to "), "{damage}: {why}");
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.starts_with("agent.redb.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{damage}: {aside:?}");
        assert!(why.ends_with(&aside[0]), "{damage}");
    }
}

#[test]
fn registration_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.registration().unwrap(), None);
    s.set_registration("default", "i-1").unwrap();
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.registration().unwrap(),
        Some(("default".into(), "i-1".into()))
    );
}

/// A gate a store operation waits on, released from the test.
fn gate() -> (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>) {
    std::sync::mpsc::channel()
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_commit_on_the_blocking_pool_never_stalls_another_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (open, wait) = gate();
    // A commit behind a disk that does not answer until the gate opens.
    let slow = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .off_thread(move |s| {
                    wait.recv().expect("the gate opens");
                    s.record_state(&state("slow", TaskStatus::Running))
                })
                .await
        })
    };
    // On the one async thread of this runtime, another task keeps making progress (and
    // reads the store) while the commit waits.
    let other = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            store.off_thread(Store::last_recorded_seq).await
        }
    });
    assert_eq!(
        other.await.unwrap().unwrap(),
        0,
        "another task finished while the commit was held"
    );
    assert!(!slow.is_finished());
    open.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_engine_write_lets_the_workers_other_tasks_move() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (open, wait) = gate();
    let (tick_tx, tick_rx) = tokio::sync::oneshot::channel();
    let engine = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            // The engine's own write, on its worker, behind a stuck disk; a task spawned from
            // it lands on this worker's queue and must still run.
            tokio::spawn(async move {
                let _ = tick_tx.send(());
            });
            blocking_ok(|| {
                wait.recv().expect("the gate opens");
                store.record_state(&state("t", TaskStatus::Running))
            })
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), tick_rx)
        .await
        .expect("the other task ran while the write was stuck")
        .unwrap();
    open.send(()).unwrap();
    assert_eq!(engine.await.unwrap().unwrap(), 1);
}

#[test]
fn queued_changes_of_a_task_are_coalesced_to_the_latest_until_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.record_state(&state("a", TaskStatus::Pending)).unwrap(), 1);
    assert_eq!(s.record_state(&state("b", TaskStatus::Pending)).unwrap(), 2);
    // Not sent yet: a's newer snapshots replace its queued one, under its number.
    assert_eq!(s.record_state(&state("a", TaskStatus::Pulled)).unwrap(), 1);
    assert_eq!(s.record_state(&state("a", TaskStatus::Running)).unwrap(), 1);
    let page = s.outbox_page(0, OUTBOX_PAGE).unwrap();
    let sent: Vec<(u64, &str, i32)> = page
        .iter()
        .map(|(seq, st)| (*seq, st.task_id.as_str(), st.status))
        .collect();
    assert_eq!(
        sent,
        [
            (1, "a", TaskStatus::Running as i32),
            (2, "b", TaskStatus::Pending as i32)
        ]
    );
    // Once read for sending, a change is never rewritten: the next one is queued anew.
    assert_eq!(s.record_state(&state("a", TaskStatus::Stopped)).unwrap(), 3);
    assert_eq!(s.record_state(&state("a", TaskStatus::Stopped)).unwrap(), 3);
    drop(s);
    // After a restart, what is queued may have been sent before: nothing is rewritten.
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.record_state(&state("b", TaskStatus::Running)).unwrap(), 4);
}

#[test]
fn the_outbox_is_read_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        s.record_state(&state(&format!("t{i}"), TaskStatus::Pending))
            .unwrap();
    }
    let seqs = |page: Vec<(u64, TaskState)>| page.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(seqs(s.outbox_page(0, 2).unwrap()), [1, 2]);
    assert_eq!(seqs(s.outbox_page(2, 2).unwrap()), [3, 4]);
    assert_eq!(seqs(s.outbox_page(4, 2).unwrap()), [5]);
    assert!(s.outbox_page(5, 2).unwrap().is_empty());
}

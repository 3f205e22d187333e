//! The session protocol checks what a peer claims: a state change must carry the instance's
//! next sequence number (a resend is re-acked without a write), acks and `last_applied_seq`
//! must not exceed what was issued, a report must be on the instance's own task, and a
//! registration needs an identity. Each refusal closes the session with a reason and leaves
//! the store exactly as it was.

use berth_proto::v1::{self as pb, TaskStatus, agent_message, scheduler_message};
use tonic::Code;

use super::{FakeAgent, Server, WEB, describe_task, run_assigned, scene, wait_connected};

/// Reads the session to its end and returns the status it ended with.
async fn refusal(agent: &mut FakeAgent) -> tonic::Status {
    loop {
        match agent.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended without a reason"),
            Err(status) => return status,
        }
    }
}

fn change(seq: u64, task_id: &str, status: TaskStatus) -> agent_message::Message {
    agent_message::Message::StateChange(pb::StateChange {
        seq,
        task: Some(pb::TaskState {
            task_id: task_id.into(),
            status: status as i32,
            ..Default::default()
        }),
    })
}

#[tokio::test]
async fn a_forged_future_sequence_number_is_refused_and_a_resend_re_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, a) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(a.seq).await;
    agent.report(1, &task.task_id, TaskStatus::Pulled).await;

    let before = server.store.contents().unwrap();
    agent
        .send(change(u64::MAX, &task.task_id, TaskStatus::Stopped))
        .await;
    let status = refusal(&mut agent).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("out of sequence: the next one is 2"),
        "{}",
        status.message()
    );
    assert_eq!(
        server.store.contents().unwrap(),
        before,
        "a refusal writes nothing"
    );
    assert_eq!(
        describe_task(&mut c, &task.task_id).await.last_status,
        TaskStatus::Pulled as i32
    );

    // The real agent reconnects: its resend of 1 is re-acked without a write, 2 goes on.
    let mut agent = FakeAgent::connect(&server, "", &id, 1).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    let before = server.store.contents().unwrap();
    agent.report(1, &task.task_id, TaskStatus::Pulled).await;
    assert_eq!(
        server.store.contents().unwrap(),
        before,
        "a resend writes nothing"
    );
    agent.report(2, &task.task_id, TaskStatus::Running).await;
    assert_eq!(
        describe_task(&mut c, &task.task_id).await.last_status,
        TaskStatus::Running as i32
    );

    // A gap is refused like a forgery.
    agent
        .send(change(4, &task.task_id, TaskStatus::Stopped))
        .await;
    assert_eq!(refusal(&mut agent).await.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_forged_last_applied_seq_is_refused_and_drops_nothing_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, a) = run_assigned(&mut c, &mut agent, "web").await;
    assert_eq!(a.seq, 1);
    drop(agent);
    wait_connected(&mut c, "", &id, false).await;

    let before = server.store.contents().unwrap();
    let err = FakeAgent::connect(&server, "", &id, 7).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("last_applied_seq 7") && err.message().contains("(1)"),
        "{}",
        err.message()
    );
    assert_eq!(
        server.store.contents().unwrap(),
        before,
        "a refusal writes nothing"
    );

    // What was queued is still there for the real agent.
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.next_assignment().await.task_id, task.task_id);
    server.stop().await;
}

#[tokio::test]
async fn an_ack_of_what_was_never_issued_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;
    let before = server.store.contents().unwrap();
    agent.ack(99).await;
    let status = refusal(&mut agent).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ack 99"), "{}", status.message());
    assert_eq!(
        server.store.contents().unwrap(),
        before,
        "a refusal writes nothing"
    );
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.next_assignment().await.task_id, task.task_id);
    server.stop().await;
}

#[tokio::test]
async fn a_report_on_another_instances_task_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, _, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;
    let other = server.register("", "other-host", 1024, 1024).await;
    let mut intruder = FakeAgent::connect(&server, "", &other, 0).await.unwrap();

    let before = server.store.contents().unwrap();
    intruder
        .send(change(1, &task.task_id, TaskStatus::Stopped))
        .await;
    let status = refusal(&mut intruder).await;
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("runs on another instance"),
        "{}",
        status.message()
    );
    assert_eq!(
        server.store.contents().unwrap(),
        before,
        "a refusal writes nothing"
    );
    let intruder = FakeAgent::connect(&server, "", &other, 0).await.unwrap();
    assert_eq!(
        intruder.last_received_seq, 0,
        "the refused number was not recorded"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_registration_without_identity_creates_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.register("", "host", 1024, 1024).await;
    let before = server.store.contents().unwrap();
    for _ in 0..3 {
        let err = server
            .agent_client()
            .await
            .register(pb::RegisterRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("needs an instance identity"),
            "{}",
            err.message()
        );
    }
    assert_eq!(server.store.contents().unwrap(), before);
    server.stop().await;
}

#[tokio::test]
async fn nothing_is_acked_for_a_refused_change() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, _, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;
    agent
        .send(change(3, &task.task_id, TaskStatus::Running))
        .await;
    loop {
        match agent.rx.message().await {
            Ok(Some(m)) => assert!(
                !matches!(m.message, Some(scheduler_message::Message::Ack(_))),
                "a refused change must not be acked: {m:?}"
            ),
            Ok(None) => panic!("the session ended without a reason"),
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument);
                break;
            }
        }
    }
    server.stop().await;
}

//! The session protocol: assignments and stop orders with sequence numbers, resends after a
//! reconnect or a restart, silence detection, and the test hooks the agent's tests use.

use std::time::Duration;

use berth_proto::v1::{self as pb, TaskStatus, agent_message, scheduler_message};
use tonic::Code;

use super::{
    FakeAgent, Server, WEB, agent_msg, describe_instance, describe_task, register_def,
    run_assigned, run_task, scene, wait_connected,
};
use crate::server::{Call, Event, TestHooks};

#[tokio::test]
async fn session_protocol_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    assert_eq!(agent.last_received_seq, 0);

    let err = FakeAgent::connect(&server, "", "not-registered", 0)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("register first"),
        "{}",
        err.message()
    );

    let (t1, a1) = run_assigned(&mut c, &mut agent, "web").await;
    assert_eq!(a1.seq, 1);
    assert_eq!(a1.task_id, t1.task_id);
    assert_eq!(a1.definition.as_ref().unwrap().family, "web");
    assert_eq!(a1.desired_status, pb::DesiredStatus::Running as i32);
    let t2 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 2);
    let t3 = run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 3);

    // Ack 1; then reconnect having applied only 1: 2 and 3 come again, in order.
    agent.ack(1).await;
    agent.report(1, &t1.task_id, TaskStatus::Running).await;
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 1).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    let again = agent.next_assignment().await;
    assert_eq!(
        (again.seq, again.task_id.as_str()),
        (2, t2.task_id.as_str())
    );
    assert_eq!(agent.next_assignment().await.seq, 3);

    // Reconnect having applied 2 (without acking): only 3 again.
    let mut agent = FakeAgent::connect(&server, "", &id, 2).await.unwrap();
    let again = agent.next_assignment().await;
    assert_eq!(
        (again.seq, again.task_id.as_str()),
        (3, t3.task_id.as_str())
    );
    agent.ack(3).await;

    // State changes: persisted and acked; duplicates ignored but acked; never backwards.
    let task = describe_task(&mut c, &t1.task_id).await;
    assert_eq!(task.last_status, TaskStatus::Running as i32);
    agent.report(1, &t1.task_id, TaskStatus::Stopped).await; // duplicate seq
    assert_eq!(
        describe_task(&mut c, &t1.task_id).await.last_status,
        TaskStatus::Running as i32
    );
    agent.report(2, &t1.task_id, TaskStatus::Pending).await; // backwards
    assert_eq!(
        describe_task(&mut c, &t1.task_id).await.last_status,
        TaskStatus::Running as i32
    );
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(
        inst.remaining_resources.unwrap().memory_mib,
        4096 - 3 * 1024
    );
    assert_eq!((inst.running_tasks_count, inst.pending_tasks_count), (1, 2));

    // StopTask: desired STOPPED and an order with the next seq.
    let stopped = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: t1.task_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(stopped.desired_status, pb::DesiredStatus::Stopped as i32);
    assert!(stopped.stopping_at.is_some());
    match agent.next().await {
        scheduler_message::Message::Stop(s) => {
            assert_eq!(s.seq, 4);
            assert_eq!(s.task_id, t1.task_id);
            assert_eq!(s.stop_code, pb::StopCode::UserInitiated as i32);
            assert_eq!(s.reason, "Task stopped by user");
        }
        other => panic!("expected a stop order, got {other:?}"),
    }
    agent.ack(4).await;
    agent.report(3, &t1.task_id, TaskStatus::Stopped).await;
    let task = describe_task(&mut c, &t1.task_id).await;
    assert_eq!(task.last_status, TaskStatus::Stopped as i32);
    let inst = describe_instance(&mut c, "", &id).await;
    assert_eq!(
        inst.remaining_resources.unwrap().memory_mib,
        4096 - 2 * 1024
    );
    assert_eq!(inst.running_tasks_count, 0);

    // Stopping it again changes nothing and sends nothing.
    let same = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: t1.task_id.clone(),
            reason: "again".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(same, task);
    let unknown = c
        .stop_task(pb::StopTaskRequest {
            cluster: String::new(),
            task_id: "nope".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // A newer session replaces this one, which is closed.
    let mut newer = FakeAgent::connect(&server, "", &id, 4).await.unwrap();
    assert_eq!(newer.last_received_seq, 3);
    let end = tokio::time::timeout(Duration::from_secs(5), agent.end())
        .await
        .unwrap();
    assert_eq!(end, Some(Code::Aborted));
    newer.report(4, &t2.task_id, TaskStatus::Running).await;
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (id, task_id) = {
        let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
        let (t, a) = run_assigned(&mut c, &mut agent, "web").await;
        assert_eq!(a.seq, 1);
        agent.report(1, &t.task_id, TaskStatus::Running).await;
        server.stop().await;
        (id, t.task_id)
    };

    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    let task = describe_task(&mut c, &task_id).await;
    assert_eq!(task.last_status, TaskStatus::Running as i32);
    assert_eq!(task.container_instance_id, id);
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(!inst.agent_connected, "no session survives a restart");
    assert_eq!(inst.remaining_resources.unwrap().memory_mib, 3072);
    let defs = c
        .list_task_definitions(pb::ListTaskDefinitionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .task_definitions;
    assert_eq!(defs, vec!["web:1"]);

    // The unacknowledged assignment is still owed; the agent's seq is remembered.
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    let a = agent.next_assignment().await;
    assert_eq!((a.seq, a.task_id.as_str()), (1, task_id.as_str()));
    agent.ack(1).await;
    // Numbering continues after a restart.
    run_task(&mut c, "", "web").await.unwrap();
    assert_eq!(agent.next_assignment().await.seq, 2);
    server.stop().await;
}

/// With paused time over real sockets, every wait on I/O lets the clock jump to the next
/// timer. The fake agent's heartbeat task sleeps 1 s between heartbeats, which bounds each
/// jump to one second while it runs.
#[tokio::test(start_paused = true)]
async fn unacked_messages_are_resent_and_silent_agents_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), Duration::from_secs(10)).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let heartbeats = {
        let tx = agent.tx.clone();
        tokio::spawn(async move {
            loop {
                let hb = agent_msg(agent_message::Message::Heartbeat(pb::Heartbeat::default()));
                if tx.send(hb).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    wait_connected(&mut c, "", &id, true).await;
    let t = run_task(&mut c, "", "web").await.unwrap();

    // Never ack: the assignment comes, then again after three intervals, then every interval.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = agent.rx.message().await.unwrap().unwrap();
        match msg.message.unwrap() {
            scheduler_message::Message::Heartbeat(_)
            | scheduler_message::Message::StateRequest(_) => {}
            scheduler_message::Message::Assignment(a) => {
                assert_eq!((a.seq, a.task_id.as_str()), (1, t.task_id.as_str()));
                seen.push(tokio::time::Instant::now());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let first_resend = seen[1] - seen[0];
    let second_resend = seen[2] - seen[1];
    assert!(first_resend >= Duration::from_secs(30), "{first_resend:?}");
    assert!(first_resend <= Duration::from_secs(42), "{first_resend:?}");
    assert!(second_resend >= Duration::from_secs(8), "{second_resend:?}");
    assert!(
        second_resend <= Duration::from_secs(12),
        "{second_resend:?}"
    );
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(inst.agent_connected);
    assert!(inst.last_heartbeat_at.is_some());

    // Now go silent: after three missed heartbeats the instance is disconnected and the
    // session closed; the task keeps its status.
    heartbeats.abort();
    let silent_since = tokio::time::Instant::now();
    let end = agent.end().await;
    assert_eq!(end, Some(Code::Unavailable));
    assert!(silent_since.elapsed() >= Duration::from_secs(20));
    let inst = describe_instance(&mut c, "", &id).await;
    assert!(!inst.agent_connected);
    assert_eq!(
        describe_task(&mut c, &t.task_id).await.last_status,
        TaskStatus::Provisioning as i32
    );
    server.stop().await;
}

/// The hooks the agent's session tests script the scheduler with: a failed call, a delayed ack,
/// a stalled and a dropped session, and the events they see.
#[tokio::test(start_paused = true)]
async fn test_hooks_fail_delay_stall_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = TestHooks::new();
    let server =
        Server::start_hooked(dir.path(), Duration::from_secs(10), Some(hooks.clone())).await;
    hooks.fail_next(Call::Register, Code::PermissionDenied);
    let refused = server
        .agent_client()
        .await
        .register(pb::RegisterRequest {
            instance_identity: "host".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let id = server.register("", "host", 1024, 1024).await;

    hooks.fail_next(Call::Session, Code::Unavailable);
    let refused = FakeAgent::connect(&server, "", &id, 0).await.err();
    assert_eq!(refused.map(|s| s.code()), Some(Code::Unavailable));

    // A delayed ack comes after its delay; the state change is applied at once.
    hooks.delay_acks(Some(Duration::from_secs(20)));
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let sent = tokio::time::Instant::now();
    agent
        .send(agent_message::Message::StateChange(pb::StateChange {
            seq: 1,
            task: Some(pb::TaskState {
                task_id: "unknown".into(),
                status: TaskStatus::Running as i32,
                ..Default::default()
            }),
        }))
        .await;
    let ack = loop {
        match agent.rx.message().await.unwrap().unwrap().message {
            Some(scheduler_message::Message::Ack(ack)) => break ack,
            _ => continue,
        }
    };
    assert_eq!(ack.seq, 1);
    assert!(sent.elapsed() >= Duration::from_secs(20));
    hooks.delay_acks(None);

    // A stalled session sends nothing, not even its heartbeat (due every 10 s).
    agent
        .send(agent_message::Message::Heartbeat(pb::Heartbeat::default()))
        .await;
    assert!(hooks.stall_session(&id));
    // What was on its way before the stall still arrives.
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(1), agent.rx.message()).await {
        assert!(msg.is_ok_and(|m| m.is_some()));
    }
    let quiet = tokio::time::timeout(Duration::from_secs(15), agent.rx.message()).await;
    assert!(quiet.is_err(), "a stalled session sent {quiet:?}");

    // A dropped session ends with UNAVAILABLE.
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    assert_eq!(agent.last_received_seq, 1);
    assert!(hooks.drop_session(&id));
    let end = agent.end().await;
    assert_eq!(end, Some(Code::Unavailable));
    assert!(!hooks.drop_session(&id));
    let events = hooks.events();
    let opened = events
        .iter()
        .filter(|e| matches!(e, Event::SessionOpened { .. }))
        .count();
    assert_eq!(opened, 2);
    assert!(events.contains(&Event::StateChange {
        instance_id: id.clone(),
        seq: 1
    }));
    assert!(events.contains(&Event::SessionClosed { instance_id: id }));
    server.stop().await;
}

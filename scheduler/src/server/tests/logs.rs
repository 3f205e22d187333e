//! `GetTaskLogs` relayed over the task's session: the container checks, the credit window,
//! the agent's errors, a caller that goes away and a session that breaks.

use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{self as pb, agent_message, scheduler_message};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use super::{FakeAgent, WEB, run_assigned, scene, wait_connected};

fn log_request(task_id: &str, container: &str) -> pb::GetTaskLogsRequest {
    pb::GetTaskLogsRequest {
        cluster: String::new(),
        task_id: task_id.into(),
        container_name: container.into(),
        tail: Some(3),
        since: None,
        follow: true,
    }
}

/// Opens a log stream of the task's `container` and takes the request it makes at the agent.
async fn open_logs(
    control: &mut ControlServiceClient<Channel>,
    agent: &mut FakeAgent,
    task_id: &str,
    container: &str,
) -> (Streaming<pb::GetTaskLogsResponse>, pb::LogRequest) {
    let stream = control
        .get_task_logs(log_request(task_id, container))
        .await
        .unwrap()
        .into_inner();
    let scheduler_message::Message::LogRequest(request) = agent.next().await else {
        panic!("expected a log request")
    };
    (stream, request)
}

fn log_chunk(request_id: u64, text: &str) -> agent_message::Message {
    agent_message::Message::LogChunk(pb::LogChunk {
        request_id,
        lines: vec![pb::LogLine {
            output: pb::LogOutput::Stdout as i32,
            time: None,
            text: text.into(),
        }],
    })
}

fn log_end(request_id: u64, reason: pb::LogEndReason, message: &str) -> agent_message::Message {
    agent_message::Message::LogEnd(pb::LogEnd {
        request_id,
        reason: reason as i32,
        message: message.into(),
    })
}

#[tokio::test]
async fn task_logs_are_relayed_over_the_session_with_credits_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;

    // Container names are checked by the scheduler, which lists the task's.
    let err = c
        .get_task_logs(log_request(&task.task_id, "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .contains("has no container nope; its containers: app"),
        "{}",
        err.message()
    );
    let err = c
        .get_task_logs(log_request("no-such-task", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The only container is the default; the request reaches the agent with a window.
    let (mut stream, request) = open_logs(&mut c, &mut agent, &task.task_id, "").await;
    assert_eq!(
        (request.task_id.as_str(), request.container_name.as_str()),
        (task.task_id.as_str(), "app")
    );
    assert_eq!((request.tail, request.follow), (Some(3), true));
    let window = request.window;
    assert!(window > 1);
    for i in 0..window {
        agent
            .send(log_chunk(request.request_id, &format!("{i}\n")))
            .await;
    }
    let mut credited = 0;
    for i in 0..window {
        let got = stream.message().await.unwrap().unwrap();
        assert_eq!(got.lines[0].text, format!("{i}\n"));
    }
    while credited < window {
        match agent.next().await {
            scheduler_message::Message::LogCredit(credit) => {
                assert_eq!(credit.request_id, request.request_id);
                credited += credit.chunks;
            }
            other => panic!("expected a credit, got {other:?}"),
        }
    }
    assert_eq!(credited, window);
    agent
        .send(log_end(request.request_id, pb::LogEndReason::Complete, ""))
        .await;
    assert!(stream.message().await.unwrap().is_none());

    // The agent's not-found is the caller's.
    let (mut stream, request) = open_logs(&mut c, &mut agent, &task.task_id, "app").await;
    agent
        .send(log_end(
            request.request_id,
            pb::LogEndReason::NotFound,
            "container app has no logs yet",
        ))
        .await;
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("no logs yet"), "{}", err.message());

    // A caller that goes away cancels its request at the agent.
    let (stream, request) = open_logs(&mut c, &mut agent, &task.task_id, "app").await;
    drop(stream);
    match agent.next().await {
        scheduler_message::Message::LogCancel(cancel) => {
            assert_eq!(cancel.request_id, request.request_id);
        }
        other => panic!("expected a cancel, got {other:?}"),
    }

    // A session that breaks ends its callers' streams with an error, not a silent end.
    let (mut stream, _) = open_logs(&mut c, &mut agent, &task.task_id, "app").await;
    drop(agent);
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    wait_connected(&mut c, "", &id, false).await;
    let err = c
        .get_task_logs(log_request(&task.task_id, "app"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("not connected"), "{}", err.message());
    server.stop().await;
}

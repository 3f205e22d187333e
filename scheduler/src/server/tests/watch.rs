//! `WatchTasks`: what DescribeTasks answers, at once and again after each change, once per
//! change, until the scheduler shuts down.

use std::time::Duration;

use berth_proto::v1::{self as pb, TaskStatus, scheduler_message};
use tonic::Streaming;

use super::{WEB, run_assigned, scene};

/// The next answer on the stream (within a generous deadline: the machine may be loaded).
async fn next(stream: &mut Streaming<pb::DescribeTasksResponse>) -> pb::DescribeTasksResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no answer within 10s")
        .unwrap()
        .expect("the stream ended")
}

#[tokio::test]
async fn sends_the_tasks_at_once_then_each_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, _id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;
    let mut stream = c
        .watch_tasks(pb::WatchTasksRequest {
            cluster: String::new(),
            task_ids: vec![task.task_id.clone(), "ghost".into()],
        })
        .await
        .unwrap()
        .into_inner();

    let first = next(&mut stream).await;
    assert_eq!(first.tasks.len(), 1);
    assert_eq!(first.tasks[0].last_status, task.last_status);
    assert!(first.tasks[0].last_status < TaskStatus::Running as i32);
    assert_eq!(first.failures.len(), 1);
    assert_eq!(first.failures[0].arn, "ghost");
    assert_eq!(first.failures[0].reason, "MISSING");

    agent.report(1, &task.task_id, TaskStatus::Running).await;
    let running = next(&mut stream).await;
    assert_eq!(running.tasks[0].last_status, TaskStatus::Running as i32);

    // A commit that changes none of the watched tasks sends nothing: the next answer is the
    // stop that follows it.
    c.create_cluster(pb::CreateClusterRequest {
        name: "other".into(),
    })
    .await
    .unwrap();
    c.stop_task(pb::StopTaskRequest {
        cluster: String::new(),
        task_id: task.task_id.clone(),
        reason: "done".into(),
    })
    .await
    .unwrap();
    let stopping = next(&mut stream).await;
    assert_eq!(stopping.tasks[0].last_status, TaskStatus::Running as i32);
    assert_eq!(
        stopping.tasks[0].desired_status,
        pb::DesiredStatus::Stopped as i32
    );

    match agent.next().await {
        scheduler_message::Message::Stop(order) => assert_eq!(order.task_id, task.task_id),
        other => panic!("expected a stop order, got {other:?}"),
    }
    agent.report(2, &task.task_id, TaskStatus::Stopped).await;
    let stopped = next(&mut stream).await;
    assert_eq!(stopped.tasks[0].last_status, TaskStatus::Stopped as i32);

    // Shutdown ends the stream rather than holding the server up.
    let stopping_server = tokio::spawn(server.stop());
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream did not end at shutdown");
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "expected the end, got {end:?}"
    );
    drop(agent);
    stopping_server.await.unwrap();
}

#[tokio::test]
async fn a_watch_of_another_clusters_tasks_finds_none() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c, _id, mut agent) = scene(dir.path(), &[WEB]).await;
    let (task, _) = run_assigned(&mut c, &mut agent, "web").await;
    let mut stream = c
        .watch_tasks(pb::WatchTasksRequest {
            cluster: "nope".into(),
            task_ids: vec![task.task_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    // The same answer DescribeTasks gives for that cluster.
    let described = c
        .describe_tasks(pb::DescribeTasksRequest {
            cluster: "nope".into(),
            task_ids: vec![task.task_id.clone()],
        })
        .await;
    let watched = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no answer within 10s");
    match (described, watched) {
        (Ok(d), Ok(Some(w))) => assert_eq!(d.into_inner(), w),
        (Err(d), Err(w)) => assert_eq!((d.code(), d.message()), (w.code(), w.message())),
        (d, w) => panic!("DescribeTasks gave {d:?}, WatchTasks {w:?}"),
    }
    drop(agent);
    server.stop().await;
}

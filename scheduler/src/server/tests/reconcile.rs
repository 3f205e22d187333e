//! Reconciliation through the server: the agent is asked for its full state when its session
//! opens, each difference is resolved by its rule, and an instance lost for good has its tasks
//! marked STOPPED and their resources released; its later reconnect stops what still runs.

use std::time::Duration;

use berth_proto::v1::{
    self as pb, DesiredStatus, StopCode, TaskStatus, agent_message, scheduler_message,
};

use super::{
    FakeAgent, Server, WEB, describe_instance, describe_task, register_def, run_assigned,
    wait_connected,
};
use crate::server::ServerConfig;
use crate::store::{FORGOTTEN_BY_SCHEDULER, UNKNOWN_TO_HOST};

impl FakeAgent {
    /// Waits for the scheduler's StateRequest (skipping heartbeats) and answers with `tasks`.
    async fn answer_state_request(&mut self, tasks: Vec<pb::TaskState>) {
        self.answer_with_found(tasks, Vec::new()).await;
    }

    /// Waits for the scheduler's StateRequest and answers with `tasks` and the containers
    /// `found` of tasks the agent has no record of.
    async fn answer_with_found(
        &mut self,
        tasks: Vec<pb::TaskState>,
        found: Vec<pb::FoundContainer>,
    ) {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.rx.message())
                .await
                .expect("no StateRequest within 5s")
                .unwrap()
                .unwrap();
            match msg.message.unwrap() {
                scheduler_message::Message::StateRequest(_) => break,
                scheduler_message::Message::Heartbeat(_) => continue,
                // Resent when its ack raced the reconnect; an agent that lost its store
                // acknowledges it as one for a task it does not know.
                scheduler_message::Message::Stop(_) if !found.is_empty() => continue,
                other => panic!("expected a StateRequest, got {other:?}"),
            }
        }
        self.send(agent_message::Message::FullState(pb::FullState {
            tasks,
            found,
        }))
        .await;
    }

    async fn next_stop(&mut self) -> pb::StopTaskOrder {
        match self.next().await {
            scheduler_message::Message::Stop(s) => s,
            other => panic!("expected a stop order, got {other:?}"),
        }
    }
}

fn state(task_id: &str, status: TaskStatus, desired: DesiredStatus) -> pb::TaskState {
    pb::TaskState {
        task_id: task_id.into(),
        status: status as i32,
        desired_status: desired as i32,
        ..Default::default()
    }
}

/// Polls until `check` holds for the task, for at most 10 s.
async fn until_task(
    c: &mut berth_proto::v1::control_service_client::ControlServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
    check: impl Fn(&pb::Task) -> bool,
) -> pb::Task {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = describe_task(c, id).await;
        if check(&t) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_difference_is_resolved_by_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    agent.answer_state_request(Vec::new()).await;
    wait_connected(&mut c, "", &id, true).await;

    let (stopped_on_host, _) = run_assigned(&mut c, &mut agent, "web").await;
    let (want_stopped, _) = run_assigned(&mut c, &mut agent, "web").await;
    let (unknown, _) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(3).await;
    c.stop_task(pb::StopTaskRequest {
        cluster: String::new(),
        task_id: want_stopped.task_id.clone(),
        reason: "user says so".into(),
    })
    .await
    .unwrap();
    assert_eq!(agent.next_stop().await.seq, 4);
    // Acknowledged, then lost with the agent's store: the host still runs it.
    agent.ack(4).await;
    // Placed, sent, and not acknowledged yet: still on its way, not a difference.
    let (on_its_way, _) = run_assigned(&mut c, &mut agent, "web").await;

    // The agent reconnects (having applied 4) and reports its full state.
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 4).await.unwrap();
    assert_eq!(agent.next_assignment().await.task_id, on_its_way.task_id);
    agent
        .answer_state_request(vec![
            pb::TaskState {
                containers: vec![pb::ContainerState {
                    name: "app".into(),
                    status: pb::ContainerStatus::Stopped as i32,
                    exit_code: Some(3),
                    ..Default::default()
                }],
                stop_code: StopCode::EssentialContainerExited as i32,
                stopped_reason: "Essential container in task exited".into(),
                ..state(
                    &stopped_on_host.task_id,
                    TaskStatus::Stopped,
                    DesiredStatus::Stopped,
                )
            },
            state(
                &want_stopped.task_id,
                TaskStatus::Running,
                DesiredStatus::Running,
            ),
            state("ghost", TaskStatus::Running, DesiredStatus::Running),
        ])
        .await;

    // Rule 2, the scheduler's desired status wins; rule 3, a task it forgot is stopped.
    let mut orders = [agent.next_stop().await, agent.next_stop().await];
    orders.sort_by_key(|o| o.seq);
    assert_eq!(orders[0].seq, 6);
    let by_task = |t: &str| orders.iter().find(|o| o.task_id == t).unwrap().clone();
    // The order again carries the user's stop, which the scheduler kept with the task.
    let again = by_task(&want_stopped.task_id);
    assert_eq!(
        (again.stop_code, again.reason.as_str()),
        (StopCode::UserInitiated as i32, "user says so")
    );
    let ghost = by_task("ghost");
    assert_eq!(
        (ghost.stop_code, ghost.reason.as_str()),
        (
            StopCode::ServiceSchedulerInitiated as i32,
            FORGOTTEN_BY_SCHEDULER
        )
    );
    // Rule 1, the agent's known status wins.
    let t = describe_task(&mut c, &stopped_on_host.task_id).await;
    assert_eq!(t.last_status, TaskStatus::Stopped as i32);
    assert_eq!(t.containers[0].exit_code, Some(3));
    assert_eq!(t.stop_code, StopCode::EssentialContainerExited as i32);
    // Rule 4, a task the host does not know is STOPPED with the reason.
    let t = describe_task(&mut c, &unknown.task_id).await;
    assert_eq!(t.last_status, TaskStatus::Stopped as i32);
    assert_eq!(t.desired_status, DesiredStatus::Stopped as i32);
    assert_eq!(t.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(t.stopped_reason, UNKNOWN_TO_HOST);
    assert!(t.stopped_at.is_some());
    // The one on its way is left alone.
    let t = describe_task(&mut c, &on_its_way.task_id).await;
    assert!(t.last_status < TaskStatus::Stopped as i32, "{t:?}");

    // Asked again, nothing differs any more and nothing more is sent: the stop orders are
    // queued, so they are not queued twice. Having applied 7, the agent knows the task that was
    // on its way (assignment 5); a host that claimed 7 without it would have it marked STOPPED.
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 7).await.unwrap();
    agent
        .answer_state_request(vec![
            state(
                &want_stopped.task_id,
                TaskStatus::Running,
                DesiredStatus::Running,
            ),
            state(
                &on_its_way.task_id,
                TaskStatus::Running,
                DesiredStatus::Running,
            ),
        ])
        .await;
    agent.ack(7).await;
    let t = describe_task(&mut c, &on_its_way.task_id).await;
    assert!(t.last_status < TaskStatus::Stopped as i32, "{t:?}");
    server.stop().await;
}

#[tokio::test]
async fn containers_found_after_a_store_loss_are_adopted_when_still_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    agent.answer_state_request(Vec::new()).await;
    wait_connected(&mut c, "", &id, true).await;
    let (wanted, _) = run_assigned(&mut c, &mut agent, "web").await;
    let (unwanted, _) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(2).await;
    c.stop_task(pb::StopTaskRequest {
        cluster: String::new(),
        task_id: unwanted.task_id.clone(),
        reason: "user says so".into(),
    })
    .await
    .unwrap();
    assert_eq!(agent.next_stop().await.seq, 3);
    agent.ack(3).await;

    // The agent's store is lost while both containers run: it knows no task, and reports
    // what it found in containerd by the containers' labels.
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let found = |task: &str| pb::FoundContainer {
        task_id: task.into(),
        container_name: "app".into(),
        image: "img".into(),
        running: true,
    };
    agent
        .answer_with_found(
            Vec::new(),
            vec![
                found(&wanted.task_id),
                found(&unwanted.task_id),
                found("ghost"),
            ],
        )
        .await;
    // Rule 5: the task still wanted RUNNING is assigned again, marked adopt, whole.
    let again = agent.next_assignment().await;
    assert_eq!(again.task_id, wanted.task_id);
    assert!(again.adopt);
    assert_eq!(again.seq, 4);
    assert_eq!(again.desired_status, DesiredStatus::Running as i32);
    assert!(again.definition.is_some());
    let t = describe_task(&mut c, &wanted.task_id).await;
    assert!(t.last_status < TaskStatus::Stopped as i32, "{t:?}");
    assert_eq!(t.desired_status, DesiredStatus::Running as i32);
    // The one the scheduler wants stopped is not adopted: rule 4 marks it, and its
    // container is left to the agent's orphan sweep, as is the one of a task nobody knows.
    let t = until_task(&mut c, &unwanted.task_id, |t| {
        t.last_status == TaskStatus::Stopped as i32
    })
    .await;
    assert_eq!(t.stopped_reason, "user says so");

    // Asked again before it is acknowledged, the adoption is not queued twice.
    drop(agent);
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    let resent = loop {
        match agent.next().await {
            scheduler_message::Message::Assignment(a) => break a,
            scheduler_message::Message::Stop(s) => assert_eq!(s.seq, 3),
            other => panic!("expected the adoption again, got {other:?}"),
        }
    };
    assert_eq!((resent.seq, resent.adopt), (4, true));
    agent
        .answer_with_found(Vec::new(), vec![found(&wanted.task_id)])
        .await;
    agent.ack(4).await;
    let t = describe_task(&mut c, &wanted.task_id).await;
    assert!(t.last_status < TaskStatus::Stopped as i32, "{t:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_lost_instance_releases_its_tasks_and_a_reconnect_stops_what_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        heartbeat_interval: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(2),
        instance_lost_after: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let server = Server::start_configured(dir.path(), config, None).await;
    let mut c = server.control().await;
    register_def(&mut c, WEB).await;
    let id = server.register("", "host", 2048, 4096).await;
    let mut agent = FakeAgent::connect(&server, "", &id, 0).await.unwrap();
    wait_connected(&mut c, "", &id, true).await;
    let (task, a) = run_assigned(&mut c, &mut agent, "web").await;
    agent.ack(a.seq).await;
    agent.report(1, &task.task_id, TaskStatus::Running).await;
    let booked = describe_instance(&mut c, "", &id).await;
    assert_eq!(booked.remaining_resources.unwrap().memory_mib, 4096 - 1024);

    drop(agent);
    let lost = until_task(&mut c, &task.task_id, |t| {
        t.last_status == TaskStatus::Stopped as i32
    })
    .await;
    assert_eq!(lost.stop_code, StopCode::InstanceLost as i32);
    assert!(
        lost.stopped_reason.contains("--instance-lost-after"),
        "{}",
        lost.stopped_reason
    );
    let freed = describe_instance(&mut c, "", &id).await;
    assert_eq!(freed.remaining_resources.unwrap().memory_mib, 4096);

    // The agent comes back with the task still running: it is stopped there.
    let mut agent = FakeAgent::connect(&server, "", &id, a.seq).await.unwrap();
    agent
        .answer_state_request(vec![state(
            &task.task_id,
            TaskStatus::Running,
            DesiredStatus::Running,
        )])
        .await;
    let order = agent.next_stop().await;
    assert_eq!(order.task_id, task.task_id);
    assert_eq!(order.stop_code, StopCode::InstanceLost as i32);
    server.stop().await;
}

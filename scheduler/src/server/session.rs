//! Agent sessions: the per-session loop (outbox delivery, acks, state changes, heartbeats,
//! resends, log requests relayed for `GetTaskLogs`) and the heartbeat monitor; the registry
//! of live sessions is `registry.rs`.
//!
//! The outbox in the store is the only source of what to send. A live session holds a
//! `Notify`; whoever enqueues for its instance pokes it, and the session sends every outbox
//! entry above the highest sequence number it has sent. So nothing enqueued between "read the
//! outbox" and "register the session" can be missed or sent twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{
    self as pb, AgentMessage, SchedulerMessage, agent_message, scheduler_message,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::logs::{self, LogCommand};
use super::{Event, ServerError, Shared, TestHooks};
use crate::store::Applied;

mod registry;

pub(crate) use registry::SessionRegistry;
use registry::{CloseReason, Registration};

/// Marks instances disconnected when they have been silent for three heartbeat intervals.
/// Runs until `cancel`.
/// How often stopped tasks past their retention are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn monitor(shared: Arc<Shared>, cancel: CancellationToken) {
    let every = shared.config.heartbeat_interval;
    let mut last_prune = Instant::now();
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                for id in shared.sessions.expire(Instant::now(), every * 3) {
                    tracing::warn!(
                        instance.id = %id,
                        "agent missed three heartbeats; marking it disconnected"
                    );
                }
                super::reconcile::mark_lost(&shared, Instant::now()).await;
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = Instant::now();
                    let cutoff = std::time::SystemTime::now()
                        .checked_sub(shared.config.task_retention)
                        .unwrap_or(std::time::UNIX_EPOCH);
                    let store = shared.store.clone();
                    match tokio::task::spawn_blocking(move || store.prune_stopped_tasks(cutoff)).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => tracing::info!(tasks = n, "forgot tasks stopped longer than the retention"),
                        Ok(Err(error)) => tracing::warn!(%error, "pruning stopped tasks failed"),
                        Err(error) => tracing::warn!(%error, "pruning stopped tasks panicked"),
                    }
                }
            }
        }
    }
}

/// One open session, from the SessionHello on.
pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) instance_id: String,
    pub(crate) registration: Registration,
    pub(crate) inbound: Streaming<AgentMessage>,
    pub(crate) tx: mpsc::Sender<Result<SchedulerMessage, Status>>,
    pub(crate) cancel: CancellationToken,
    /// The highest sequence number the agent has (applied, or sent on this session).
    pub(crate) last_sent: u64,
    /// The open log requests: their callers' queues, by request ID.
    pub(crate) log_routes: HashMap<u64, logs::ToCaller>,
    /// The open image requests: their callers' replies, by request ID.
    pub(crate) image_routes: HashMap<u64, tokio::sync::oneshot::Sender<pb::ImagesResponse>>,
    /// Whether a heartbeat came on this session: the first is logged (the agent's start is
    /// measured to it by the systemd benchmark).
    pub(crate) heard_heartbeat: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("instance_id", &self.instance_id)
            .field("id", &self.registration.id)
            .field("last_sent", &self.last_sent)
            .finish_non_exhaustive()
    }
}

fn message(m: scheduler_message::Message) -> SchedulerMessage {
    SchedulerMessage { message: Some(m) }
}

/// Asks the agent for every task it knows, to reconcile the two views (`reconcile.rs`).
fn state_request() -> SchedulerMessage {
    message(scheduler_message::Message::StateRequest(
        pb::StateRequest {},
    ))
}

fn heartbeat() -> SchedulerMessage {
    message(scheduler_message::Message::Heartbeat(pb::Heartbeat {
        sent_at: Some(SystemTime::now().into()),
        health: None,
    }))
}

impl Session {
    /// Runs the session until the agent leaves, the session is replaced or silent, or the
    /// scheduler shuts down.
    pub(crate) async fn run(mut self) {
        let every = self.shared.config.heartbeat_interval;
        // When each unacknowledged message was first sent on this session.
        let mut first_sent: BTreeMap<u64, Instant> = BTreeMap::new();
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first reconciliation is asked for at once (below), the next ones every interval.
        let reconcile_every = self.shared.config.reconcile_interval;
        let mut reconcile =
            tokio::time::interval_at(Instant::now() + reconcile_every, reconcile_every);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.shared.liveness.connected(&self.instance_id);
        let end: Result<(), Status> = 'session: {
            if let Err(e) = self.send_new(&mut first_sent).await {
                break 'session Err(e);
            }
            if let Err(e) = self.send(state_request()).await {
                break 'session Err(e);
            }
            loop {
                let step = tokio::select! {
                    _ = self.cancel.cancelled() => {
                        if self.registration.closed.get() == Some(&CloseReason::Deregistered) {
                            self.flush_before_cut_off().await;
                        }
                        break 'session Err(self.closed_status());
                    }
                    msg = self.inbound.message() => match msg {
                        Ok(Some(msg)) => {
                            self.shared.sessions.touch(&self.instance_id, self.registration.id);
                            self.handle(msg, &mut first_sent).await
                        }
                        Ok(None) => {
                            tracing::info!("agent closed the session");
                            break 'session Ok(());
                        }
                        Err(status) => {
                            tracing::info!(%status, "session stream failed");
                            break 'session Ok(());
                        }
                    },
                    _ = self.registration.notify.notified() => self.send_new(&mut first_sent).await,
                    Some(command) = self.registration.logs.recv() => self.on_log_command(command).await,
                    Some(call) = self.registration.images.recv() => self.on_images_call(call).await,
                    _ = ticker.tick() => self.on_tick(&mut first_sent).await,
                    _ = reconcile.tick() => self.send(state_request()).await,
                };
                if let Err(status) = step {
                    break 'session Err(status);
                }
            }
        };
        self.shared
            .sessions
            .unregister(&self.instance_id, self.registration.id);
        if !self.shared.sessions.is_connected(&self.instance_id) {
            self.shared
                .liveness
                .disconnected(&self.instance_id, Instant::now());
            self.shared.pulls.forget(&self.instance_id);
        }
        for (_, caller) in self.log_routes.drain() {
            // The queue keeps a slot for this: the agent never fills more than the window.
            let _ = caller.try_send(Err(Status::unavailable(
                "the agent's session closed while its log was being read; try again once it reconnects",
            )));
        }
        if let Err(status) = end {
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::PermissionDenied
            ) {
                tracing::warn!(
                    reason = status.message(),
                    "session refused and closed: the agent claimed what the scheduler did not issue or record"
                );
            }
            // Best effort: the agent may be gone already.
            let _ = self.tx.try_send(Err(status));
        }
        tracing::info!("session closed");
        self.shared.record(|| Event::SessionClosed {
            instance_id: self.instance_id.clone(),
        });
    }

    fn closed_status(&self) -> Status {
        match self.registration.closed.get() {
            Some(CloseReason::Replaced) => {
                Status::aborted("a newer session of this container instance replaced this one")
            }
            Some(CloseReason::Silent) => Status::unavailable(
                "no message from the agent for three heartbeat intervals; reconnect",
            ),
            Some(CloseReason::Dropped) => {
                Status::unavailable("the session was dropped by a test hook; reconnect")
            }
            Some(CloseReason::Deregistered) => Status::permission_denied(format!(
                "container instance {} was deregistered and its certificate revoked; \
                 to run this host again, join it with a new join token and an empty data dir",
                self.instance_id
            )),
            None => Status::unavailable("the scheduler is shutting down"),
        }
    }

    /// Sends what is still queued and unsent (a forced deregistration's stop orders), giving
    /// the agent a moment per message to take it; the session is closing, so it is not
    /// retried.
    async fn flush_before_cut_off(&mut self) {
        const PER_MESSAGE: Duration = Duration::from_secs(1);
        let instance_id = self.instance_id.clone();
        let after = self.last_sent;
        let pending = match self
            .shared
            .db(move |s| s.outbox_after(&instance_id, after))
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "cannot read what is queued for a deregistered instance");
                return;
            }
        };
        for (seq, msg) in pending {
            match tokio::time::timeout(PER_MESSAGE, self.tx.send(Ok(msg))).await {
                Ok(Ok(())) => {
                    tracing::debug!(seq, "sent before the cut-off");
                    self.last_sent = seq;
                }
                _ => {
                    tracing::info!(
                        seq,
                        "the agent did not take what was queued before the cut-off"
                    );
                    return;
                }
            }
        }
    }

    /// Sends one message; fails when the agent is gone or the session is closing. A stalled
    /// session (a test hook) swallows it.
    async fn send(&self, msg: SchedulerMessage) -> Result<(), Status> {
        if self.registration.stalled.load(Ordering::Relaxed) {
            return Ok(());
        }
        tokio::select! {
            r = self.tx.send(Ok(msg)) => r.map_err(|_| Status::cancelled("the agent went away")),
            _ = self.cancel.cancelled() => Err(self.closed_status()),
        }
    }

    /// Sends every outbox entry above the last one sent.
    async fn send_new(&mut self, first_sent: &mut BTreeMap<u64, Instant>) -> Result<(), Status> {
        let instance_id = self.instance_id.clone();
        let after = self.last_sent;
        let pending = self
            .shared
            .db(move |s| s.outbox_after(&instance_id, after))
            .await
            .map_err(Status::from)?;
        let copies = self.shared.hooks.as_ref().map_or(1, TestHooks::send_copies);
        for (seq, msg) in pending {
            let assigned = match &msg.message {
                Some(scheduler_message::Message::Assignment(a)) => Some(a.task_id.clone()),
                _ => None,
            };
            for _ in 1..copies {
                self.send(msg.clone()).await?;
            }
            self.send(msg).await?;
            tracing::debug!(seq, "sent");
            if let Some(task_id) = assigned {
                tracing::debug!(target: "berth::phase", phase = "assignment_sent", task.id = %task_id, "phase ended");
            }
            first_sent.insert(seq, Instant::now());
            self.last_sent = self.last_sent.max(seq);
        }
        Ok(())
    }

    /// Every interval: a heartbeat, and a resend of what stays unacknowledged three intervals
    /// after it was first sent on this session.
    async fn on_tick(&mut self, first_sent: &mut BTreeMap<u64, Instant>) -> Result<(), Status> {
        self.send(heartbeat()).await?;
        let instance_id = self.instance_id.clone();
        let unacked = self
            .shared
            .db(move |s| s.outbox_after(&instance_id, 0))
            .await
            .map_err(Status::from)?;
        let still: HashSet<u64> = unacked.iter().map(|(seq, _)| *seq).collect();
        first_sent.retain(|seq, _| still.contains(seq));
        let overdue = self.shared.config.heartbeat_interval * 3;
        let now = Instant::now();
        for (seq, msg) in unacked {
            if seq > self.last_sent {
                continue; // not sent yet: send_new's job
            }
            let since = first_sent.entry(seq).or_insert(now);
            if now.saturating_duration_since(*since) >= overdue {
                tracing::info!(seq, "resending an unacknowledged message");
                self.send(msg).await?;
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        msg: AgentMessage,
        first_sent: &mut BTreeMap<u64, Instant>,
    ) -> Result<(), Status> {
        let Some(msg) = msg.message else {
            tracing::debug!("empty agent message ignored");
            return Ok(());
        };
        match msg {
            agent_message::Message::Hello(_) => {
                tracing::warn!("SessionHello in an open session ignored");
            }
            agent_message::Message::Heartbeat(beat) => {
                if !self.heard_heartbeat {
                    self.heard_heartbeat = true;
                    tracing::info!(instance.id = %self.instance_id, "first heartbeat of the session");
                }
                if let Some(health) = beat.health {
                    self.shared.telemetry.record_health(
                        &self.instance_id,
                        health,
                        SystemTime::now(),
                        std::time::Instant::now(),
                    );
                }
                // Liveness is the session's (touched above); the store only gets a heartbeat
                // every so often, and a failed write costs this instance's record, never the
                // session.
                if self
                    .shared
                    .liveness
                    .persist_due(&self.instance_id, Instant::now())
                {
                    let id = self.instance_id.clone();
                    if let Err(error) = self.shared.db(move |s| s.record_heartbeat(&id)).await {
                        tracing::warn!(%error, "cannot persist the agent's heartbeat; its lastHeartbeatAt lags until a later write succeeds");
                    }
                }
            }
            agent_message::Message::Ack(ack) => {
                let id = self.instance_id.clone();
                let removed = self
                    .shared
                    .db(move |s| s.ack(&id, ack.seq))
                    .await
                    .map_err(Status::from)?;
                first_sent.retain(|seq, _| *seq > ack.seq);
                tracing::debug!(seq = ack.seq, removed, "agent acknowledged");
                self.shared.record(|| Event::Acked {
                    instance_id: self.instance_id.clone(),
                    seq: ack.seq,
                });
            }
            agent_message::Message::StateChange(change) => {
                let seq = change.seq;
                self.shared.record(|| Event::StateChange {
                    instance_id: self.instance_id.clone(),
                    seq,
                });
                let state = change.task.unwrap_or_default();
                self.apply(Some(seq), state).await?;
                let hooks = self.shared.hooks.clone();
                for _ in 0..hooks.as_ref().map_or(1, TestHooks::ack_copies) {
                    let ack = message(scheduler_message::Message::Ack(pb::Ack { seq }));
                    let Some(ack) = (match &hooks {
                        Some(hooks) => hooks.hold(&self.tx, ack),
                        None => Some(ack),
                    }) else {
                        continue;
                    };
                    match hooks.as_ref().and_then(TestHooks::ack_delay) {
                        Some(delay) => self.send_later(ack, delay),
                        None => self.send(ack).await?,
                    }
                }
            }
            agent_message::Message::LogChunk(chunk) => self.route_log_chunk(chunk).await?,
            agent_message::Message::LogEnd(end) => {
                if let Some(caller) = self.log_routes.remove(&end.request_id)
                    && let Some(status) = logs::end_status(&end)
                {
                    let _ = caller.try_send(Err(status));
                }
            }
            agent_message::Message::ImagesResponse(response) => {
                if let Some(caller) = self.image_routes.remove(&response.request_id) {
                    // The caller may have given up meanwhile.
                    let _ = caller.send(response);
                }
            }
            agent_message::Message::FullState(full) => {
                if super::reconcile::full_state(&self.shared, &self.instance_id, full)
                    .await
                    .map_err(Status::from)?
                {
                    self.send_new(first_sent).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends `msg` after `delay` (a test hook's delayed ack) on a task of its own, so the
    /// session goes on meanwhile; nothing is sent when the session ends first.
    fn send_later(&self, msg: SchedulerMessage, delay: Duration) {
        let tx = self.tx.clone();
        let cancel = self.cancel.clone();
        let stalled = self.registration.stalled.clone();
        self.shared.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    if !stalled.load(Ordering::Relaxed) {
                        let _ = tx.send(Ok(msg)).await;
                    }
                }
            }
        });
    }

    /// Sends an image request of a `ListImages` or `CollectImages` caller (`images.rs`);
    /// routes of callers that gave up go first.
    async fn on_images_call(&mut self, call: super::images::ImagesCall) -> Result<(), Status> {
        self.image_routes.retain(|_, caller| !caller.is_closed());
        let id = call.request.request_id;
        tracing::debug!(request = id, action = ?call.request.action(), "image request");
        self.image_routes.insert(id, call.reply);
        self.send(message(scheduler_message::Message::ImagesRequest(
            call.request,
        )))
        .await
    }

    /// Starts, credits or cancels a log request of a `GetTaskLogs` caller.
    async fn on_log_command(&mut self, command: LogCommand) -> Result<(), Status> {
        match command {
            LogCommand::Open { request, to_caller } => {
                tracing::debug!(request = request.request_id, task.id = %request.task_id, "log request");
                self.log_routes.insert(request.request_id, to_caller);
                self.send(message(scheduler_message::Message::LogRequest(request)))
                    .await
            }
            LogCommand::Credit { request_id, chunks } => {
                if !self.log_routes.contains_key(&request_id) {
                    return Ok(());
                }
                self.send(message(scheduler_message::Message::LogCredit(
                    pb::LogCredit { request_id, chunks },
                )))
                .await
            }
            LogCommand::Cancel { request_id } => self.cancel_log(request_id).await,
        }
    }

    async fn cancel_log(&mut self, request_id: u64) -> Result<(), Status> {
        if self.log_routes.remove(&request_id).is_none() {
            return Ok(());
        }
        tracing::debug!(request = request_id, "log request cancelled");
        self.send(message(scheduler_message::Message::LogCancel(
            pb::LogCancel { request_id },
        )))
        .await
    }

    /// Hands a chunk to its caller without waiting: the agent keeps within the window, so the
    /// queue has room (one slot stays free for the end).
    async fn route_log_chunk(&mut self, chunk: pb::LogChunk) -> Result<(), Status> {
        let id = chunk.request_id;
        let Some(caller) = self.log_routes.get(&id) else {
            return Ok(()); // cancelled meanwhile
        };
        if caller.capacity() <= 1 {
            tracing::warn!(
                request = id,
                "the agent overran its log window; cancelling the request"
            );
            let _ = caller.try_send(Err(Status::internal(
                "the agent sent more log data than the flow control allows",
            )));
            return self.cancel_log(id).await;
        }
        let response = pb::GetTaskLogsResponse { lines: chunk.lines };
        if caller.try_send(Ok(response)).is_err() {
            // The caller went away.
            return self.cancel_log(id).await;
        }
        Ok(())
    }

    async fn apply(&self, seq: Option<u64>, state: pb::TaskState) -> Result<(), Status> {
        let id = self.instance_id.clone();
        let task_id = state.task_id.clone();
        let status = state.status;
        let applied = self
            .shared
            .db(move |s| s.apply_task_state(&id, seq, &state))
            .await
            .map_err(Status::from)?;
        match applied {
            Applied::Duplicate => {
                tracing::debug!(task.id = %task_id, seq, "duplicate state change ignored");
            }
            Applied::Updated(task) => {
                tracing::debug!(target: "berth::phase", phase = "state_committed", task.id = %task_id, last_status = task.last_status, "phase ended");
                tracing::info!(
                    task.id = %task_id,
                    seq,
                    last_status = task.last_status,
                    "task state updated"
                );
            }
            Applied::Unchanged => {
                tracing::debug!(task.id = %task_id, seq, status, "state change changed nothing");
            }
            Applied::UnknownTask => {
                tracing::warn!(
                    task.id = %task_id,
                    seq,
                    "state change for a task this instance does not run ignored"
                );
            }
        }
        Ok(())
    }
}

/// Reads the SessionHello, which must come first.
pub(crate) async fn read_hello(
    inbound: &mut Streaming<AgentMessage>,
    wait: Duration,
) -> Result<pb::SessionHello, ServerError> {
    let no_hello = || ServerError::NoHello {
        seconds: wait.as_secs(),
    };
    let first = tokio::time::timeout(wait, inbound.message())
        .await
        .map_err(|_| no_hello())?;
    match first {
        Ok(Some(AgentMessage {
            message: Some(agent_message::Message::Hello(hello)),
        })) => Ok(hello),
        Ok(Some(_)) => Err(ServerError::ExpectedHello),
        Ok(None) | Err(_) => Err(no_hello()),
    }
}

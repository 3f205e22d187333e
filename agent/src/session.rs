//! The scheduler session: registers the host (retrying with capped, jittered exponential
//! backoff), keeps one bidirectional stream, sends heartbeats and the outbox of state changes,
//! hands assignments and stop orders to the engine and acknowledges them once applied.
//! When the stream breaks it reconnects and re-registers; tasks keep running meanwhile and
//! their state changes wait in the outbox. Log requests (`logs.rs`) and image requests
//! (`images/requests.rs`) are served beside it and end with the session.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::agent_message::Message as Out;
use berth_proto::v1::agent_service_client::AgentServiceClient;
use berth_proto::v1::scheduler_message::Message as In;
use berth_proto::v1::{
    Ack, AgentMessage, FoundContainer, FullState, Heartbeat, RegisterRequest, Resources,
    SessionHello, StateChange, TaskState, VersionInfo,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::engine::{Command, EngineHandle};
use crate::logs::{LogRequests, LogTargets};
use crate::store::{Store, StoreError};
use crate::task::timestamp;

/// What the session needs of the task engine: it hands over assignments and stop orders and
/// waits until they are applied (and persisted) before acking them, asks for every task's state
/// for the scheduler's reconciliation, and finds containers' logs ([`LogTargets`]).
/// [`EngineHandle`] in production; a recording fake in the session's tests.
#[async_trait::async_trait]
pub(crate) trait TaskEngine: LogTargets + Clone {
    /// Hands a command to the engine; false when the engine has shut down.
    async fn send(&self, command: Command) -> bool;
    /// Waits until every command sent before has been applied; false when the engine has shut
    /// down.
    async fn barrier(&self) -> bool;
    /// Every task's current state.
    async fn full_state(&self) -> Vec<TaskState>;
    /// The containers found at start whose tasks the store lost, as sent to the scheduler
    /// for re-adoption.
    async fn found(&self) -> Vec<FoundContainer>;
}

#[async_trait::async_trait]
impl TaskEngine for EngineHandle {
    async fn send(&self, command: Command) -> bool {
        EngineHandle::send(self, command).await
    }

    async fn barrier(&self) -> bool {
        EngineHandle::barrier(self).await
    }

    async fn full_state(&self) -> Vec<TaskState> {
        EngineHandle::full_state(self).await
    }

    async fn found(&self) -> Vec<FoundContainer> {
        EngineHandle::found(self, true).await
    }
}

/// Who this agent is and what it offers, for registration.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub endpoint: String,
    pub cluster: String,
    pub heartbeat_interval: Duration,
    pub instance_identity: String,
    pub version_info: VersionInfo,
    pub resources: Resources,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// mTLS material, for an https:// endpoint; the latest (renewed) one is used for each
    /// connection.
    pub tls: Option<watch::Receiver<TlsMaterial>>,
    /// The agent's health, read for every heartbeat.
    pub health: Arc<crate::health::Health>,
    /// Whether the data dir takes writes: while it does not, the session makes no store write
    /// it can do without (acks are kept in memory; the outbox is resent, the scheduler drops
    /// what it has), a refused assignment is followed by the full state that reports it, and
    /// each change of the condition sends a heartbeat at once.
    pub disk: Arc<crate::disk::Disk>,
    /// What answers the scheduler's image requests (list-images, collect-images); None
    /// answers each with an error.
    pub images: Option<crate::images::ImageDesk>,
}

/// PEM contents of the agent's mTLS files, read once at start.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial(***)")
    }
}

/// Why one session attempt ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("cannot reach the scheduler at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Registration failed for want of the scheduler (the message is its status's).
    #[error("the scheduler at {endpoint} is unavailable: {message}")]
    Unavailable { endpoint: String, message: String },
    #[error("the scheduler refused the registration: {0}")]
    Register(String),
    #[error("the session broke: {0}")]
    Stream(String),
    /// The scheduler refused this agent or what it said (PermissionDenied, Unauthenticated,
    /// InvalidArgument): retrying at once would only be refused again.
    #[error("the scheduler refused this agent: {0}")]
    Refused(String),
    #[error("the scheduler sent no message for {0:?}")]
    Silent(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task engine has stopped")]
    EngineGone,
}

/// The delays between session attempts: 200 ms doubling up to 30 s, each varied by ±20 % so
/// that the agents of a scheduler that comes back do not all reconnect at once.
fn reconnects() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(30)).jittered(0.2)
}

/// How long the agent waits after the scheduler refused it before trying again.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// How long to wait before the next session attempt after `error`. A refusal does not heal
/// by retrying, but an operator may fix it (a scheduler restored, a bug fixed) without
/// restarting the agent: it is retried once a minute, never in a loop.
fn retry_delay(error: &SessionError, backoff: &mut Backoff) -> Duration {
    match error {
        SessionError::Refused(_) => REFUSED_RETRY,
        _ => backoff.next_delay(),
    }
}

/// A failed call's error: a refusal when the scheduler refused the agent or what it said,
/// else `other`.
fn refusal_or(status: &tonic::Status, other: impl FnOnce(String) -> SessionError) -> SessionError {
    if let Some(alert) = certificate_alert(status) {
        return SessionError::Refused(certificate_refused(&alert));
    }
    match status.code() {
        tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated
        | tonic::Code::InvalidArgument => SessionError::Refused(status.message().to_owned()),
        _ => other(status.message().to_owned()),
    }
}

/// What the agent says when the scheduler refused its certificate with `alert`.
fn certificate_refused(alert: &str) -> String {
    format!(
        "the scheduler refused this agent's certificate during the TLS handshake (alert {alert}): \
         the cluster's CA did not issue it, or it expired or was revoked; remove the tls directory \
         in the agent's data dir and join again with a new join token (berthctl create-join-token)"
    )
}

/// The TLS alert with which the scheduler refused this agent's certificate, when that is why
/// the call failed. The transport carries rustls's alert inside an io::Error, as the error
/// itself or only as its text ("received fatal alert: UnknownCA"), depending on the layer.
fn certificate_alert(status: &tonic::Status) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(e) = next {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner.to_string());
        for text in [Some(e.to_string()), inner].into_iter().flatten() {
            if let Some(alert) = probe::alert_in(&text) {
                return Some(alert);
            }
        }
        next = e.source();
    }
    None
}

/// Why the Register call failed. A call cut without a reason ("operation was canceled") may
/// be TLS 1.3's late refusal of this agent's certificate having reached only the
/// connection's reader: a probe on a connection of its own names the alert, and the agent
/// then waits as after any refusal. Otherwise a cut call is an outage, retried with backoff.
async fn register_error(
    status: &tonic::Status,
    endpoint: &str,
    tls: Option<&TlsMaterial>,
) -> SessionError {
    if certificate_alert(status).is_some() {
        return refusal_or(status, SessionError::Register);
    }
    let cut = matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
    );
    if cut
        && let Some(tls) = tls
        && let Some(alert) = probe::certificate_refusal(endpoint, tls).await
    {
        return SessionError::Refused(certificate_refused(&alert));
    }
    if cut {
        return SessionError::Unavailable {
            endpoint: endpoint.to_owned(),
            message: status.message().to_owned(),
        };
    }
    refusal_or(status, SessionError::Register)
}

/// Runs sessions until cancelled.
pub(crate) async fn run<E: TaskEngine>(
    config: SessionConfig,
    store: Arc<Store>,
    engine: E,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = reconnects();
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = once(&config, &store, &engine, &outbox, &cancel, &mut backoff) => r,
        };
        match result {
            Ok(()) => return,
            Err(SessionError::EngineGone) => return,
            Err(SessionError::Refused(message)) => {
                crate::metrics::AGENT.session_reconnects.inc();
                let delay = retry_delay(&SessionError::Refused(String::new()), &mut backoff);
                tracing::error!(
                    reason = %message,
                    attempt,
                    retry_in_s = delay.as_secs(),
                    "the scheduler refused this agent; a deregistered instance must join again \
                     with a new join token and an empty data dir"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => {
                crate::metrics::AGENT.session_reconnects.inc();
                let delay = retry_delay(&error, &mut backoff);
                // As an error value, so the log shows its sources (the transport's cause).
                tracing::warn!(
                    error = &error as &(dyn std::error::Error + 'static),
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    "scheduler session down; retrying"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// A channel to the scheduler (TLS when configured); the metrics stream dials its own with it.
pub(crate) async fn connect(
    endpoint: &str,
    tls: Option<&TlsMaterial>,
) -> Result<Channel, SessionError> {
    let err = |source| SessionError::Connect {
        endpoint: endpoint.to_owned(),
        source,
    };
    let mut ep = Endpoint::from_shared(endpoint.to_owned()).map_err(err)?;
    if let Some(tls) = tls {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca))
            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key));
        ep = ep.tls_config(config).map_err(err)?;
    }
    ep.connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(err)
}

/// Registers, opens a session and serves it until it breaks (Err) or the agent stops (Ok).
async fn once<E: TaskEngine>(
    config: &SessionConfig,
    store: &Arc<Store>,
    engine: &E,
    outbox: &Notify,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), SessionError> {
    let tls = config.tls.as_ref().map(|rx| rx.borrow().clone());
    let channel = connect(&config.endpoint, tls.as_ref()).await?;
    let mut client = AgentServiceClient::new(channel);
    let known = store
        .off_thread(Store::registration)
        .await?
        .filter(|(cluster, _)| cluster == &config.cluster)
        .map(|(_, id)| id);
    let registered = client
        .register(RegisterRequest {
            cluster: config.cluster.clone(),
            container_instance_id: known.clone().unwrap_or_default(),
            instance_identity: config.instance_identity.clone(),
            version_info: Some(config.version_info.clone()),
            capabilities: [
                "berth.network.none",
                "berth.network.host",
                "berth.network.bridge",
                "berth.network.awsvpc",
            ]
            .map(String::from)
            .to_vec(),
            resources: Some(config.resources.clone()),
            attributes: config.attributes.clone().into_iter().collect(),
        })
        .await;
    let registered = match registered {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(register_error(&s, &config.endpoint, tls.as_ref()).await),
    };
    let instance_id = registered.container_instance_id;
    if known.as_deref() != Some(instance_id.as_str()) {
        // Sequence numbers are per instance: a new one starts both numberings again, else the
        // scheduler would refuse them as forged.
        let (cluster, id) = (config.cluster.clone(), instance_id.clone());
        store
            .off_thread(move |s| s.register_anew(&cluster, &id))
            .await?;
    }
    tracing::info!(instance.id = %instance_id, cluster = %config.cluster, "registered");
    let heartbeat = if registered.heartbeat_interval_seconds > 0 {
        Duration::from_secs(u64::from(registered.heartbeat_interval_seconds))
            .min(config.heartbeat_interval)
    } else {
        config.heartbeat_interval
    };

    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    let hello = AgentMessage {
        message: Some(Out::Hello(SessionHello {
            cluster: config.cluster.clone(),
            container_instance_id: instance_id.clone(),
            last_applied_seq: store.off_thread(Store::last_applied_seq).await?,
        })),
    };
    send(&tx, hello).await?;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| refusal_or(&s, SessionError::Stream))?
        .into_inner();
    let first = inbound
        .message()
        .await
        .map_err(|s| refusal_or(&s, SessionError::Stream))?;
    let Some(In::Accepted(accepted)) = first.and_then(|m| m.message) else {
        return Err(SessionError::Stream(
            "the scheduler did not accept the session".into(),
        ));
    };
    let own_last = store.off_thread(Store::last_recorded_seq).await?;
    let rebuilt = store.off_thread(Store::rebuilt).await?;
    if let Some(why) = rebuilt.as_deref()
        && accepted.last_received_seq > own_last
    {
        // This store started empty (lost, reset or moved aside as corrupt) and the scheduler
        // holds this instance's earlier changes: continue after them. Its full view, asked
        // on this session, reconciles the tasks.
        tracing::warn!(instance.id = %instance_id, store = why, scheduler_seq = accepted.last_received_seq, own_seq = own_last, "this agent's store started empty; numbering state changes after the scheduler's");
        let after = accepted.last_received_seq;
        store
            .off_thread(move |s| s.continue_numbering_after(after))
            .await?;
    } else if accepted.last_received_seq > own_last {
        // The scheduler holds state changes this agent never recorded: another host shares
        // this agent's identity (a data dir copied into a machine image?). Do not trim the
        // outbox on its word; say what to do.
        return Err(SessionError::Register(format!(
            "the scheduler has state changes up to {} from instance {instance_id} but this agent recorded only {own_last}: \
             another host uses this agent's identity; give each host its own data dir \
             (remove instance-identity and agent.redb from a copied one)",
            accepted.last_received_seq
        )));
    }
    let received = accepted.last_received_seq;
    optional_write(config, store, move |s| {
        s.ack(received)?;
        s.mark_established()
    })
    .await;
    let mut sent = accepted.last_received_seq;
    backoff.reset();
    tracing::info!(instance.id = %instance_id, resend_after = sent, "session established");
    send_outbox(&tx, store, &mut sent).await?;
    // Log requests live as long as this session: dropping them at its end cancels them.
    let logs = LogRequests::new(Arc::new(engine.clone()), tx.clone());
    let images = crate::images::ImageRequests::new(config.images.clone(), tx.clone());

    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut disk_changes = config.disk.subscribe();
    let scheduler_interval = Duration::from_secs(u64::from(registered.heartbeat_interval_seconds));
    // The scheduler sends its heartbeat at its own interval; three of those missed is silence.
    let silence = heartbeat.max(scheduler_interval) * 3;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                tracing::info!("closing the scheduler session");
                return Ok(());
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > silence {
                    return Err(SessionError::Silent(silence));
                }
                let beat = Heartbeat {
                    sent_at: Some(timestamp(std::time::SystemTime::now())),
                    health: Some(config.health.report()),
                };
                send(&tx, AgentMessage { message: Some(Out::Heartbeat(beat)) }).await?;
            }
            _ = disk_changes.changed() => {
                // The scheduler learns at once that this agent takes tasks or not.
                let beat = Heartbeat {
                    sent_at: Some(timestamp(std::time::SystemTime::now())),
                    health: Some(config.health.report()),
                };
                send(&tx, AgentMessage { message: Some(Out::Heartbeat(beat)) }).await?;
            }
            _ = outbox.notified() => send_outbox(&tx, store, &mut sent).await?,
            message = inbound.message() => {
                let message = message.map_err(|s| refusal_or(&s, SessionError::Stream))?;
                let Some(message) = message else {
                    return Err(SessionError::Stream("the scheduler closed the session".into()));
                };
                last_heard = Instant::now();
                handle(config, message.message, &tx, store, engine, (&logs, &images)).await?;
            }
        }
    }
}

/// A store write the session can do without (an ack's trimming of the outbox, the end of a
/// rebuilt store's first session, a drain order's number): skipped while the data dir takes no
/// writes, and its failure only degrades the agent (it is made again later, or its absence is
/// harmless: the scheduler drops what it has already).
async fn optional_write<F>(config: &SessionConfig, store: &Arc<Store>, op: F)
where
    F: FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
{
    if config.disk.is_degraded() {
        return;
    }
    if let Err(error) = store.off_thread(op).await {
        config.disk.store_failed(store.path(), &error);
    }
}

async fn handle<E: TaskEngine>(
    config: &SessionConfig,
    message: Option<In>,
    tx: &mpsc::Sender<AgentMessage>,
    store: &Arc<Store>,
    engine: &E,
    (logs, images): (&LogRequests<E>, &crate::images::ImageRequests),
) -> Result<(), SessionError> {
    let ack = |seq| AgentMessage {
        message: Some(Out::Ack(Ack { seq })),
    };
    match message {
        Some(In::Assignment(a))
            if a.seq != 0 && a.seq <= store.off_thread(Store::last_applied_seq).await? =>
        {
            // Applied before (the scheduler resends what it has no ack for): never run again.
            tracing::info!(task.id = %a.task_id, seq = a.seq, "assignment already applied; acknowledging it again");
            send(tx, ack(a.seq)).await
        }
        Some(In::Assignment(a)) => {
            let seq = a.seq;
            let task_id = a.task_id.clone();
            tracing::debug!(task.id = %task_id, seq, "assignment received");
            tracing::debug!(target: "berth::phase", phase = "assignment_received", task.id = %task_id, "phase ended");
            if !(engine.send(Command::Assign(Box::new(a))).await && engine.barrier().await) {
                return Err(SessionError::EngineGone);
            }
            send(tx, ack(seq)).await?;
            tracing::debug!(target: "berth::phase", phase = "assignment_acked", task.id = %task_id, "phase ended");
            if config.disk.is_degraded() {
                // The engine refused it: the full state reports it STOPPED with the reason.
                let tasks = engine.full_state().await;
                let found = engine.found().await;
                send(
                    tx,
                    AgentMessage {
                        message: Some(Out::FullState(FullState { tasks, found })),
                    },
                )
                .await?;
            }
            Ok(())
        }
        Some(In::Stop(order)) => {
            let seq = order.seq;
            if !(engine.send(Command::Stop(order)).await && engine.barrier().await) {
                return Err(SessionError::EngineGone);
            }
            send(tx, ack(seq)).await
        }
        Some(In::Drain(d)) => {
            tracing::info!("the scheduler is draining this instance");
            optional_write(config, store, move |s| s.mark_applied(d.seq)).await;
            send(tx, ack(d.seq)).await
        }
        Some(In::Ack(a)) => {
            optional_write(config, store, move |s| s.ack(a.seq)).await;
            Ok(())
        }
        Some(In::StateRequest(_)) => {
            let tasks = engine.full_state().await;
            let found = engine.found().await;
            send(
                tx,
                AgentMessage {
                    message: Some(Out::FullState(FullState { tasks, found })),
                },
            )
            .await
        }
        Some(In::LogRequest(request)) => {
            logs.start(request);
            Ok(())
        }
        Some(In::LogCredit(credit)) => {
            logs.credit(credit.request_id, credit.chunks);
            Ok(())
        }
        Some(In::LogCancel(cancel)) => {
            logs.cancel(cancel.request_id);
            Ok(())
        }
        Some(In::ImagesRequest(request)) => {
            images.start(request);
            Ok(())
        }
        Some(In::Heartbeat(_)) | Some(In::Accepted(_)) | None => Ok(()),
    }
}

/// Sends every queued state change after `sent`, a page at a time.
async fn send_outbox(
    tx: &mpsc::Sender<AgentMessage>,
    store: &Arc<Store>,
    sent: &mut u64,
) -> Result<(), SessionError> {
    loop {
        let after = *sent;
        let page = store
            .off_thread(move |s| s.outbox_page(after, crate::store::OUTBOX_PAGE))
            .await?;
        if page.is_empty() {
            return Ok(());
        }
        for (seq, task) in page {
            let (task_id, status) = (task.task_id.clone(), task.status);
            send(
                tx,
                AgentMessage {
                    message: Some(Out::StateChange(StateChange {
                        seq,
                        task: Some(task),
                    })),
                },
            )
            .await?;
            tracing::debug!(target: "berth::phase", phase = "state_sent", task.id = %task_id, status, "phase ended");
            crate::metrics::AGENT.state_changes_sent.inc();
            *sent = seq;
        }
    }
}

async fn send(tx: &mpsc::Sender<AgentMessage>, message: AgentMessage) -> Result<(), SessionError> {
    tx.send(message)
        .await
        .map_err(|_| SessionError::Stream("the outgoing stream closed".into()))
}

mod probe;
#[cfg(test)]
mod tests;

//! `AgentService`: Register, the Session stream and StreamMetrics.

use std::sync::Arc;

use berth_proto::v1::agent_service_server::AgentService;
use berth_proto::v1::{
    self as pb, AgentMessage, MetricsAck, MetricsBatch, RegisterRequest, RegisterResponse,
    SchedulerMessage, scheduler_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::session::{Session, read_hello};
use super::{Call, Event, Shared};
use crate::store::DEFAULT_CLUSTER;

/// Messages buffered towards one agent before the session waits for it to read.
const SESSION_BUFFER: usize = 64;

/// The agents' service.
#[derive(Debug)]
pub(crate) struct Agent {
    shared: Arc<Shared>,
}

impl Agent {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn cluster_or_default(name: &str) -> String {
    if name.is_empty() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        name.to_owned()
    }
}

#[tonic::async_trait]
impl AgentService for Agent {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.shared.injected_failure(Call::Register)?;
        let mut req = request.into_inner();
        req.cluster = cluster_or_default(&req.cluster);
        let id = self.shared.db(move |s| s.register_instance(&req)).await?;
        self.shared.record(|| Event::Registered {
            instance_id: id.clone(),
        });
        let heartbeat_interval_seconds =
            u32::try_from(self.shared.config.heartbeat_interval.as_secs()).unwrap_or(u32::MAX);
        Ok(Response::new(RegisterResponse {
            container_instance_id: id,
            heartbeat_interval_seconds,
        }))
    }

    type SessionStream = ReceiverStream<Result<SchedulerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.shared.injected_failure(Call::Session)?;
        let mut inbound = request.into_inner();
        let wait = self.shared.config.heartbeat_interval * 3;
        let hello = read_hello(&mut inbound, wait).await?;
        let cluster = cluster_or_default(&hello.cluster);
        let instance_id = hello.container_instance_id.clone();
        let last_applied = hello.last_applied_seq;
        let start = {
            let (cluster, instance_id) = (cluster.clone(), instance_id.clone());
            self.shared
                .db(move |s| s.open_session(&cluster, &instance_id, last_applied))
                .await?
        };

        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let accepted = SchedulerMessage {
            message: Some(scheduler_message::Message::Accepted(pb::SessionAccepted {
                last_received_seq: start.last_received_seq,
            })),
        };
        // The channel is empty, so this cannot fail for lack of room.
        if tx.try_send(Ok(accepted)).is_err() {
            return Err(Status::internal("cannot queue SessionAccepted"));
        }
        let cancel = self.shared.cancel.child_token();
        let registration = self.shared.sessions.register(&instance_id, cancel.clone());
        let span = tracing::info_span!(
            "session",
            instance.id = %instance_id,
            cluster = %cluster,
            session = registration.id
        );
        span.in_scope(|| {
            tracing::info!(
                last_applied_seq = last_applied,
                last_received_seq = start.last_received_seq,
                "session opened"
            );
        });
        self.shared.record(|| Event::SessionOpened {
            instance_id: instance_id.clone(),
            last_applied_seq: last_applied,
            last_received_seq: start.last_received_seq,
        });
        let session = Session {
            shared: self.shared.clone(),
            instance_id,
            registration,
            inbound,
            tx,
            cancel,
            last_sent: last_applied,
            log_routes: Default::default(),
        };
        self.shared.tracker.spawn(session.run().instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stream_metrics(
        &self,
        request: Request<Streaming<MetricsBatch>>,
    ) -> Result<Response<MetricsAck>, Status> {
        self.shared.injected_failure(Call::StreamMetrics)?;
        let mut inbound = request.into_inner();
        let mut batches = 0u64;
        let cancel = self.shared.cancel.clone();
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                next = inbound.message() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    batches += 1;
                    tracing::debug!(
                        instance.id = %batch.container_instance_id,
                        containers = batch.containers.len(),
                        batches,
                        "metrics batch"
                    );
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, batches, "metrics stream failed");
                    return Err(status);
                }
            }
        }
        Ok(Response::new(MetricsAck { batches }))
    }
}

//! `AgentService`: JoinCluster and RenewCertificate (the TLS bootstrap), Register, the Session
//! stream and StreamMetrics. With TLS every call but JoinCluster is bound to the instance the
//! peer's certificate names (`guard.rs`): an agent speaks only for itself.

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

use super::guard::not_yours;
use super::session::{Session, read_hello};
use super::{Call, Event, ServerError, Shared, TestHooks, TrustConfig};
use crate::store::DEFAULT_CLUSTER;
use crate::trust::AgentIdentity;

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

impl Agent {
    /// Closes what `instance_id` just opened if it was deregistered meanwhile: a
    /// deregistration that committed after the stream's own check cut off whatever was
    /// registered before it, so one of the two always sees the other.
    async fn cut_off_if_deregistered(&self, instance_id: &str) -> Result<(), Status> {
        let id = instance_id.to_owned();
        if self.shared.db(move |s| s.is_deregistered(&id)).await? {
            self.shared.sessions.cut_off(instance_id);
            self.shared.revocations.revoke(instance_id);
        }
        Ok(())
    }
}

/// Signs an agent's certificate request for `agent`, valid from now for the configured
/// lifetime (JoinCluster and RenewCertificate).
fn sign(trust: &TrustConfig, csr_pem: &str, agent: &AgentIdentity) -> Result<String, Status> {
    trust
        .ca
        .sign_agent(
            csr_pem,
            agent,
            trust.agent_cert_lifetime,
            std::time::SystemTime::now(),
        )
        .map_err(|e| Status::from(ServerError::from(e)))
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
        let agent = self.shared.agent_peer(&request, "Register").await?;
        let mut req = request.into_inner();
        req.cluster = cluster_or_default(&req.cluster);
        let id = match agent {
            None => self.shared.db(move |s| s.register_instance(&req)).await?,
            Some(agent) => {
                if req.cluster != agent.cluster {
                    return Err(not_yours(
                        &agent,
                        format!("register in cluster {}", req.cluster),
                    ));
                }
                if !req.container_instance_id.is_empty()
                    && req.container_instance_id != agent.instance_id
                {
                    return Err(not_yours(
                        &agent,
                        format!("register as instance {}", req.container_instance_id),
                    ));
                }
                self.shared
                    .db(move |s| s.register_certified_instance(&req, &agent.instance_id))
                    .await?
            }
        };
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
        let agent = self.shared.agent_peer(&request, "Session").await?;
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let wait = self.shared.config.heartbeat_interval * 3;
        let hello = read_hello(&mut inbound, wait).await?;
        let cluster = cluster_or_default(&hello.cluster);
        let instance_id = hello.container_instance_id.clone();
        if let Some(agent) = &agent
            && (agent.cluster != cluster || agent.instance_id != instance_id)
        {
            return Err(not_yours(
                agent,
                format!("open the session of instance {instance_id} of cluster {cluster}"),
            ));
        }
        let last_applied = hello.last_applied_seq;
        let start = {
            let (cluster, id) = (cluster.clone(), instance_id.clone());
            self.shared
                .db(move |s| s.open_session(&cluster, &id, last_applied))
                .await
                .map_err(|e| {
                    let status = Status::from(e);
                    if status.code() == tonic::Code::InvalidArgument {
                        tracing::warn!(
                            %peer,
                            instance.id = %instance_id,
                            reason = status.message(),
                            "session refused: the agent claimed what the scheduler did not issue or record"
                        );
                    }
                    status
                })?
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
        self.cut_off_if_deregistered(&instance_id).await?;
        let span = tracing::info_span!(
            "session",
            %peer,
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
            image_routes: Default::default(),
            heard_heartbeat: false,
        };
        self.shared.tracker.spawn(session.run().instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stream_metrics(
        &self,
        request: Request<Streaming<MetricsBatch>>,
    ) -> Result<Response<MetricsAck>, Status> {
        self.shared.injected_failure(Call::StreamMetrics)?;
        let agent = self.shared.agent_peer(&request, "StreamMetrics").await?;
        let mut inbound = request.into_inner();
        let mut batches = 0u64;
        let cancel = match &agent {
            Some(agent) => self
                .shared
                .revocations
                .watch(&agent.instance_id, &self.shared.cancel),
            None => self.shared.cancel.clone(),
        };
        if let Some(agent) = &agent {
            self.cut_off_if_deregistered(&agent.instance_id).await?;
        }
        // A test hook may hold the stream: open, never read, until the server stops.
        let held = self
            .shared
            .hooks
            .as_ref()
            .is_some_and(TestHooks::holds_metrics_streams);
        if held {
            self.shared.record(|| Event::MetricsStreamHeld {
                instance_id: agent
                    .as_ref()
                    .map_or_else(String::new, |a| a.instance_id.clone()),
            });
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => {
                    if self.shared.cancel.is_cancelled() {
                        break;
                    }
                    let agent = agent.as_ref().map_or_else(String::new, ToString::to_string);
                    tracing::info!(peer = %agent, batches, "metrics stream cut off: the instance was deregistered");
                    return Err(Status::permission_denied(format!(
                        "{agent} was deregistered and its certificate revoked; join again with a new join token"
                    )));
                }
                next = inbound.message(), if !held => next,
            };
            match next {
                Ok(Some(batch)) => {
                    if let Some(agent) = agent
                        .as_ref()
                        .filter(|a| a.instance_id != batch.container_instance_id)
                    {
                        return Err(not_yours(
                            agent,
                            format!("send metrics of instance {}", batch.container_instance_id),
                        ));
                    }
                    batches += 1;
                    if batch.host.is_none() {
                        // Pull progress alone, sent between samples: the instance's pulls now.
                        self.shared
                            .pulls
                            .replace(&batch.container_instance_id, batch.pulls);
                        continue;
                    }
                    self.shared
                        .telemetry
                        .ingest(&batch, std::time::Instant::now());
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

    async fn join_cluster(
        &self,
        request: Request<pb::JoinClusterRequest>,
    ) -> Result<Response<pb::JoinClusterResponse>, Status> {
        let Some(trust) = self.shared.config.trust.clone() else {
            return Err(Status::failed_precondition(
                "this scheduler runs with --insecure and issues no certificates; start the agent without join_token",
            ));
        };
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        let req = request.into_inner();
        let cluster = cluster_or_default(&req.cluster);
        // Signed before the token is spent, so a bad request spends nothing; the certificate
        // is only handed out once the join is committed.
        let agent = AgentIdentity {
            cluster: cluster.clone(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        };
        let certificate_pem = sign(&trust, &req.csr_pem, &agent)?;
        let instance_id = agent.instance_id.clone();
        let joined = self
            .shared
            .db(move |s| {
                s.join(
                    &req.token,
                    &cluster,
                    &instance_id,
                    std::time::SystemTime::now(),
                )
            })
            .await;
        if let Err(error) = joined {
            tracing::warn!(%peer, cluster = %agent.cluster, %error, "join refused");
            return Err(error.into());
        }
        Ok(Response::new(pb::JoinClusterResponse {
            container_instance_id: agent.instance_id,
            certificate_pem,
            ca_pem: trust.ca.cert_pem().to_owned(),
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let Some(trust) = self.shared.config.trust.clone() else {
            return Err(Status::failed_precondition(
                "this scheduler runs with --insecure and issues no certificates",
            ));
        };
        let Some(agent) = self.shared.agent_peer(&request, "RenewCertificate").await? else {
            return Err(Status::unauthenticated("no agent certificate"));
        };
        let req = request.into_inner();
        let certificate_pem = sign(&trust, &req.csr_pem, &agent)?;
        tracing::info!(instance.id = %agent.instance_id, cluster = %agent.cluster, "agent certificate renewed");
        Ok(Response::new(pb::RenewCertificateResponse {
            certificate_pem,
            ca_pem: trust.ca.cert_pem().to_owned(),
        }))
    }

    async fn drain_instance(
        &self,
        request: Request<pb::DrainInstanceRequest>,
    ) -> Result<Response<pb::DrainInstanceResponse>, Status> {
        let agent = self.shared.agent_peer(&request, "DrainInstance").await?;
        let mut req = request.into_inner();
        req.cluster = cluster_or_default(&req.cluster);
        if let Some(agent) = &agent
            && (req.cluster != agent.cluster || req.container_instance_id != agent.instance_id)
        {
            return Err(not_yours(
                agent,
                format!(
                    "drain instance {} in cluster {}",
                    req.container_instance_id, req.cluster
                ),
            ));
        }
        let (cluster, id) = (req.cluster.clone(), req.container_instance_id.clone());
        let (updated, missing) = self
            .shared
            .db(move |s| {
                s.update_instances_state(
                    &req.cluster,
                    std::slice::from_ref(&req.container_instance_id),
                    "DRAINING",
                )
            })
            .await?;
        if !missing.is_empty() {
            return Err(Status::not_found(format!(
                "unknown container instance {id} in cluster {cluster}; register first"
            )));
        }
        tracing::info!(instance.id = %id, cluster = %cluster, "instance drained at its agent's request");
        Ok(Response::new(pb::DrainInstanceResponse {
            status: updated
                .into_iter()
                .next()
                .map(|i| i.status)
                .unwrap_or_default(),
        }))
    }

    async fn get_task_secrets(
        &self,
        request: Request<pb::GetTaskSecretsRequest>,
    ) -> Result<Response<pb::GetTaskSecretsResponse>, Status> {
        super::secrets::get_task_secrets(&self.shared, request).await
    }
}

//! The server's error enum and its one mapping to `tonic::Status`.

use tonic::Status;

use crate::store::{ServiceError, StoreError};
use crate::taskdef::TaskDefError;

/// What went wrong serving a request or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task definition did not parse; the message is the parser's, for the user.
    #[error(transparent)]
    TaskDefinition(#[from] TaskDefError),
    /// RunTask named no definition.
    #[error("task_definition or task_definition_json is required")]
    MissingDefinition,
    /// The agent's first session message was not a SessionHello.
    #[error("the first session message must be a SessionHello")]
    ExpectedHello,
    /// The agent sent nothing (or closed the stream) before its SessionHello.
    #[error("no SessionHello within {seconds} seconds")]
    NoHello { seconds: u64 },
    /// The `/metrics` address could not be bound.
    #[error("cannot listen on {address} for the scheduler's metrics (see --metrics-listen)")]
    MetricsListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A blocking database call panicked or was cancelled.
    #[error("a database call did not complete")]
    Blocking(#[source] tokio::task::JoinError),
    /// GetTaskLogs named a container the task does not have.
    #[error("task {task_id} has no container {name}; its containers: {}", containers.join(", "))]
    UnknownContainer {
        task_id: String,
        name: String,
        containers: Vec<String>,
    },
    /// GetTaskLogs named no container, and the task has several.
    #[error("task {task_id} has several containers ({}): name one", containers.join(", "))]
    ContainerRequired {
        task_id: String,
        containers: Vec<String>,
    },
    /// GetTaskLogs for a task whose instance has no live session: its logs are out of reach.
    #[error(
        "task {task_id} runs on container instance {instance_id}, which is not connected; its logs are on that host until its agent reconnects"
    )]
    InstanceDisconnected {
        task_id: String,
        instance_id: String,
    },
    /// The task's session ended before the log request reached it.
    #[error("the session of container instance {instance_id} closed; try again")]
    SessionClosed { instance_id: String },
    /// ListImages or CollectImages named no instance.
    #[error("name the container instance whose images to see or collect (--instance ID)")]
    InstanceRequired,
    /// An image request for an instance whose agent has no live session.
    #[error(
        "the agent of container instance {instance_id} is not connected; try again once it reconnects"
    )]
    AgentNotConnected { instance_id: String },
    /// The agent did not answer an image request in time.
    #[error("the agent of container instance {instance_id} did not answer within {seconds} s")]
    AgentTimeout { instance_id: String, seconds: u64 },
    /// The agent answered an image request with an error.
    #[error("the agent of container instance {instance_id} failed: {message}")]
    AgentFailed {
        instance_id: String,
        message: String,
    },
    /// A certificate could not be made or a request could not be signed.
    #[error(transparent)]
    Pki(#[from] crate::trust::PkiError),
    /// The server's TLS configuration could not be built from its certificate, key or CA.
    #[error("cannot use {what} for TLS: {reason}")]
    Tls { what: &'static str, reason: String },
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
}

/// An internal failure, for the caller: what failed and where to look. The cause (the error's
/// sources) goes to the scheduler's log with it.
fn internal(e: &(dyn std::error::Error + 'static)) -> Status {
    tracing::error!(error = e, "request failed");
    Status::internal(format!("{e} (the scheduler's log has the cause)"))
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        let msg = e.to_string();
        match &e {
            ServerError::Store(s) => match s {
                StoreError::InvalidClusterName { .. }
                | StoreError::InvalidTaskDefinitionRef { .. }
                | StoreError::EmptyFamily
                | StoreError::NoIdentity
                | StoreError::SequenceGap { .. }
                | StoreError::NotIssued { .. }
                | StoreError::InvalidCount { .. }
                | StoreError::InvalidInstanceStatus { .. }
                | StoreError::InvalidPlacement { .. }
                | StoreError::NetworkAttachment(_)
                | StoreError::InvalidSecret(_) => Status::invalid_argument(msg),
                StoreError::TokenRefused { .. } => Status::unauthenticated(msg),
                StoreError::TokenNotFound { .. }
                | StoreError::ClientCertificateNotFound { .. }
                | StoreError::SecretNotFound { .. }
                | StoreError::ClusterNotFound { .. }
                | StoreError::TaskDefinitionNotFound { .. }
                | StoreError::TaskNotFound { .. }
                | StoreError::InstanceNotFound { .. } => Status::not_found(msg),
                StoreError::SecretExists { .. } => Status::already_exists(msg),
                StoreError::ClusterInUse { .. }
                | StoreError::InstanceUnavailable { .. }
                | StoreError::InstanceExists { .. }
                | StoreError::InstanceHasTasks { .. } => Status::failed_precondition(msg),
                StoreError::InstanceDeregistered { .. } | StoreError::NotYourTask { .. } => {
                    Status::permission_denied(msg)
                }
                StoreError::NoConnectedInstance { .. }
                | StoreError::NoCapacity { .. }
                | StoreError::NotPlaced { .. }
                | StoreError::NoMatchingPlatform { .. }
                | StoreError::NoFreePort { .. } => Status::resource_exhausted(msg),
                StoreError::Service(
                    ServiceError::InvalidName { .. } | ServiceError::Invalid { .. },
                ) => Status::invalid_argument(msg),
                StoreError::Service(ServiceError::NotFound { .. }) => Status::not_found(msg),
                StoreError::Service(ServiceError::Exists { .. }) => Status::already_exists(msg),
                StoreError::Service(
                    ServiceError::NotActive { .. } | ServiceError::StillScaled { .. },
                ) => Status::failed_precondition(msg),
                StoreError::Open { .. }
                | StoreError::Db(_)
                | StoreError::Corrupt { .. }
                | StoreError::SecretKey(_) => internal(s),
            },
            ServerError::TaskDefinition(_) | ServerError::MissingDefinition => {
                Status::invalid_argument(msg)
            }
            ServerError::ExpectedHello => Status::invalid_argument(msg),
            ServerError::UnknownContainer { .. } => Status::not_found(msg),
            ServerError::ContainerRequired { .. } => Status::invalid_argument(msg),
            ServerError::InstanceDisconnected { .. }
            | ServerError::SessionClosed { .. }
            | ServerError::AgentNotConnected { .. } => Status::unavailable(msg),
            ServerError::InstanceRequired => Status::invalid_argument(msg),
            ServerError::AgentTimeout { .. } => Status::deadline_exceeded(msg),
            ServerError::AgentFailed { .. } => Status::internal(msg),
            ServerError::NoHello { .. } => Status::deadline_exceeded(msg),
            ServerError::Pki(crate::trust::PkiError::BadRequest(_)) => {
                Status::invalid_argument(msg)
            }
            ServerError::Blocking(_)
            | ServerError::Transport(_)
            | ServerError::Pki(_)
            | ServerError::Tls { .. }
            | ServerError::MetricsListen { .. } => internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn store_errors_map_to_their_codes() {
        let cases = [
            (
                StoreError::ClusterNotFound { name: "x".into() },
                Code::NotFound,
            ),
            (
                StoreError::ClusterInUse {
                    name: "x".into(),
                    instances: 1,
                    active_tasks: 0,
                },
                Code::FailedPrecondition,
            ),
            (
                StoreError::NoConnectedInstance {
                    cluster: "x".into(),
                    draining: vec![],
                    degraded: vec![],
                },
                Code::ResourceExhausted,
            ),
            (StoreError::EmptyFamily, Code::InvalidArgument),
            (
                StoreError::NetworkAttachment(crate::store::AttachmentError::Count { count: 2 }),
                Code::InvalidArgument,
            ),
            (
                StoreError::NoFreePort {
                    cluster: "x".into(),
                    ports: vec!["80/tcp".into()],
                    instances: 1,
                    placed: 0,
                    requested: 1,
                },
                Code::ResourceExhausted,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(ServerError::from(e)).code(), code);
        }
        assert_eq!(
            Status::from(ServerError::MissingDefinition).code(),
            Code::InvalidArgument
        );
        let internal = Status::from(ServerError::from(StoreError::Db(
            redb::Error::DatabaseAlreadyOpen,
        )));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(
            internal.message(),
            "scheduler database error (the scheduler's log has the cause)"
        );
    }
}

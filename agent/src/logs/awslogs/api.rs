//! The three CloudWatch Logs calls the shipper makes, behind a trait (the SDK's client in
//! `sdk.rs`; a scripted fake in the shipper's tests), with their failures classified once.

use async_trait::async_trait;

use super::event::Event;

/// Why a CloudWatch Logs call failed, as the shipper acts on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// The group or stream to create is there already (success for the shipper).
    #[error("already exists")]
    AlreadyExists,
    /// The group or stream to write to is not there.
    #[error("log group or stream not found: {0}")]
    NotFound(String),
    /// A sequence token was needed and another is expected (only older emulators still
    /// check tokens; CloudWatch ignores them since 2023).
    #[error("invalid sequence token (expected {expected:?})")]
    InvalidSequenceToken { expected: Option<String> },
    /// The batch was accepted before (a retry of a call whose answer was lost).
    #[error("batch already accepted")]
    DataAlreadyAccepted { next_token: Option<String> },
    /// Worth retrying: throttling, a server error, the endpoint unreachable, a timeout.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: access denied, an invalid parameter, no credentials.
    #[error("{0}")]
    Fatal(String),
}

/// What CloudWatch said about a delivered batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The token of the next call, when the service still hands them out.
    pub(crate) next_token: Option<String>,
    /// Events it refused as too old, too new or expired (they are dropped).
    pub(crate) rejected: u64,
}

/// The CloudWatch Logs calls of the awslogs driver.
#[async_trait]
pub(crate) trait LogsApi: Send + Sync + std::fmt::Debug {
    async fn create_log_group(&self, group: &str) -> Result<(), ApiError>;
    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ApiError>;
    /// Sends one batch (in timestamp order, within the limits of `batch.rs`).
    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[Event],
        sequence_token: Option<&str>,
    ) -> Result<Accepted, ApiError>;
}

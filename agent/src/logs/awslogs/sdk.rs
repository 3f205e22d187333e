//! [`LogsApi`] on the AWS SDK for Rust: one client per region, made by the agent's shared
//! AWS configuration (`crate::aws`: the host's credentials, rustls with ring), at the agent's
//! `awslogs_endpoint` (else `aws_endpoint`) when set (a local emulator in tests). The SDK's
//! own retries are off: the shipper retries with its backoff, and never gives up on a batch
//! while the container runs.

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use super::api::{Accepted, ApiError, LogsApi};
use super::event::Event;

/// CloudWatch Logs of one region, through the SDK.
#[derive(Debug, Clone)]
pub(crate) struct SdkLogs {
    client: Client,
}

impl SdkLogs {
    /// A client for `region`, at `endpoint` when given (else the region's AWS endpoint).
    pub(crate) async fn new(region: &str, endpoint: Option<&str>) -> Self {
        let config = crate::aws::sdk_config(crate::aws::Target {
            region: Some(region),
            endpoint,
            retry: RetryConfig::disabled(),
        })
        .await;
        Self {
            client: Client::new(&config),
        }
    }
}

/// Classifies a failed call by its error code; no code (no answer) is worth retrying.
fn classify<E, R>(error: &SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = aws_sdk_cloudwatchlogs::error::DisplayErrorContext(error).to_string();
    match error {
        SdkError::ConstructionFailure(_) => ApiError::Fatal(message),
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ResourceAlreadyExistsException") => ApiError::AlreadyExists,
            Some("ResourceNotFoundException") => ApiError::NotFound(message),
            Some(
                "InvalidParameterException"
                | "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ValidationException",
            ) => ApiError::Fatal(message),
            _ => ApiError::Transient(message),
        },
        _ => ApiError::Transient(message),
    }
}

#[async_trait]
impl LogsApi for SdkLogs {
    async fn create_log_group(&self, group: &str) -> Result<(), ApiError> {
        self.client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(&e))
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ApiError> {
        self.client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(&e))
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[Event],
        sequence_token: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        let mut call = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_sequence_token(sequence_token.map(str::to_owned));
        for e in events {
            let event = InputLogEvent::builder()
                .timestamp(e.timestamp_ms)
                .message(e.message.clone())
                .build()
                .map_err(|error| ApiError::Fatal(error.to_string()))?;
            call = call.log_events(event);
        }
        match call.send().await {
            Ok(out) => {
                let rejected = out.rejected_log_events_info().map_or(0, |info| {
                    let len = events.len() as i64;
                    let old = info
                        .too_old_log_event_end_index()
                        .max(info.expired_log_event_end_index())
                        .map_or(0, |i| i64::from(i) + 1);
                    let new = info
                        .too_new_log_event_start_index()
                        .map_or(0, |i| len - i64::from(i));
                    u64::try_from((old + new).clamp(0, len)).unwrap_or(0)
                });
                Ok(Accepted {
                    next_token: out.next_sequence_token().map(str::to_owned),
                    rejected,
                })
            }
            Err(error) => {
                if let SdkError::ServiceError(service) = &error {
                    match service.err() {
                        PutLogEventsError::InvalidSequenceTokenException(e) => {
                            return Err(ApiError::InvalidSequenceToken {
                                expected: e.expected_sequence_token().map(str::to_owned),
                            });
                        }
                        PutLogEventsError::DataAlreadyAcceptedException(e) => {
                            return Err(ApiError::DataAlreadyAccepted {
                                next_token: e.expected_sequence_token().map(str::to_owned),
                            });
                        }
                        _ => {}
                    }
                }
                Err(classify(&error))
            }
        }
    }
}

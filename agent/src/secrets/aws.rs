//! Secrets read from AWS with the host's credentials: SSM Parameter Store (GetParameter with
//! decryption) and Secrets Manager (GetSecretValue), behind [`AwsSecretSource`] so the engine
//! is tested with a fake. One pair of clients per region, made on first use from the agent's
//! shared AWS configuration (`crate::aws`), at the agent's `aws_endpoint` when set. Values are
//! returned, never logged; a failure carries AWS's error code and message, which name the
//! parameter or secret and never its value.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use super::arn::AwsRef;

/// Why AWS did not give a secret: its error code (`ParameterNotFound`,
/// `ResourceNotFoundException`, `AccessDeniedException`…, or the agent's word for a call that
/// got no answer) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct FetchError {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl FetchError {
    fn of<E, R>(error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (code, message) = match error {
            SdkError::ServiceError(service) => (
                service.err().code().unwrap_or("UnknownError").to_owned(),
                service
                    .err()
                    .message()
                    .map_or_else(|| DisplayErrorContext(error).to_string(), str::to_owned),
            ),
            SdkError::TimeoutError(_) => {
                ("Timeout".to_owned(), DisplayErrorContext(error).to_string())
            }
            SdkError::DispatchFailure(_) => (
                "ConnectionError".to_owned(),
                DisplayErrorContext(error).to_string(),
            ),
            SdkError::ConstructionFailure(_) => (
                "RequestNotSent".to_owned(),
                DisplayErrorContext(error).to_string(),
            ),
            _ => (
                "InvalidResponse".to_owned(),
                DisplayErrorContext(error).to_string(),
            ),
        };
        Self { code, message }
    }

    fn empty(what: &str) -> Self {
        Self {
            code: "EmptyValue".to_owned(),
            message: format!("the answer holds no value for {what}"),
        }
    }
}

/// Where the agent reads secrets that live in AWS.
#[async_trait]
pub(crate) trait AwsSecretSource: Send + Sync + std::fmt::Debug {
    /// The whole value `what` names (a json-key is applied by the caller).
    async fn get(&self, what: &AwsRef) -> Result<Vec<u8>, FetchError>;
}

/// The clients of one region.
#[derive(Debug, Clone)]
struct Clients {
    ssm: aws_sdk_ssm::Client,
    secrets_manager: aws_sdk_secretsmanager::Client,
}

/// [`AwsSecretSource`] on the AWS SDK for Rust, with the SDK's standard retries.
#[derive(Debug, Default)]
pub(crate) struct SdkSecrets {
    endpoint: Option<String>,
    /// By region; None: the agent's.
    clients: Mutex<HashMap<Option<String>, Arc<Clients>>>,
}

impl SdkSecrets {
    /// Calls go to `endpoint` when given, else to each region's AWS endpoints.
    pub(crate) fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn clients(&self, region: Option<&str>) -> Arc<Clients> {
        let mut clients = self.clients.lock().await;
        let key = region.map(str::to_owned);
        if let Some(c) = clients.get(&key) {
            return Arc::clone(c);
        }
        let config = crate::aws::sdk_config(crate::aws::Target {
            region,
            endpoint: self.endpoint.as_deref(),
            retry: RetryConfig::standard(),
        })
        .await;
        let made = Arc::new(Clients {
            ssm: aws_sdk_ssm::Client::new(&config),
            secrets_manager: aws_sdk_secretsmanager::Client::new(&config),
        });
        clients.insert(key, Arc::clone(&made));
        made
    }
}

#[async_trait]
impl AwsSecretSource for SdkSecrets {
    async fn get(&self, what: &AwsRef) -> Result<Vec<u8>, FetchError> {
        let clients = self.clients(what.region()).await;
        match what {
            AwsRef::Parameter { name, .. } => {
                let out = clients
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| FetchError::of(&e))?;
                out.parameter()
                    .and_then(|p| p.value())
                    .map(|v| v.as_bytes().to_vec())
                    .ok_or_else(|| FetchError::empty(name))
            }
            AwsRef::Secret {
                secret_id,
                version_stage,
                version_id,
                ..
            } => {
                let out = clients
                    .secrets_manager
                    .get_secret_value()
                    .secret_id(secret_id)
                    .set_version_stage(version_stage.clone())
                    .set_version_id(version_id.clone())
                    .send()
                    .await
                    .map_err(|e| FetchError::of(&e))?;
                if let Some(text) = out.secret_string() {
                    return Ok(text.as_bytes().to_vec());
                }
                out.secret_binary()
                    .map(|b| b.as_ref().to_vec())
                    .ok_or_else(|| FetchError::empty(secret_id))
            }
        }
    }
}

/// A source that answers what a test put in it (by parameter name or secret ID) and counts
/// the calls; anything else is not found.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FixedAws {
    pub(crate) values: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    pub(crate) calls: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
#[async_trait]
impl AwsSecretSource for FixedAws {
    async fn get(&self, what: &AwsRef) -> Result<Vec<u8>, FetchError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (key, code) = match what {
            AwsRef::Parameter { name, .. } => (name, "ParameterNotFound"),
            AwsRef::Secret { secret_id, .. } => (secret_id, "ResourceNotFoundException"),
        };
        self.values
            .lock()
            .map_err(|_| FetchError::empty("poisoned"))?
            .get(key)
            .cloned()
            .ok_or_else(|| FetchError {
                code: code.to_owned(),
                message: format!("{key} not found"),
            })
    }
}

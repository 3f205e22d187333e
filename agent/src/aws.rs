//! The AWS SDK configuration every AWS client of the agent is built from (CloudWatch Logs for
//! awslogs, SSM Parameter Store and Secrets Manager for task secrets): credentials from the
//! host by aws-config's default chain (the environment, the shared config and credentials
//! files, the instance role through IMDSv2), HTTPS through rustls with ring, bounded
//! connection and call deadlines, and an endpoint override (a local emulator in tests).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls;

/// Deadline of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one call, attempt and answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How an AWS client of the agent is made.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    /// The region; None: the host's (`AWS_REGION`, the shared config, the instance's).
    pub(crate) region: Option<&'a str>,
    /// The URL calls go to; None: the region's AWS endpoint.
    pub(crate) endpoint: Option<&'a str>,
    /// The SDK's own retries.
    pub(crate) retry: RetryConfig,
}

/// The SDK configuration for `target`, with the host's credentials.
pub(crate) async fn sdk_config(target: Target<'_>) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(target.retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(CALL_TIMEOUT)
                .build(),
        );
    if let Some(region) = target.region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = target.endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

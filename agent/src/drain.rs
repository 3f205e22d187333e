//! drain_on_shutdown: on SIGTERM the agent asks the scheduler to set its own instance DRAINING
//! (a spot interruption or scale-in: no new task comes here; the tasks keep running) and waits
//! for the acknowledgement, retrying while the scheduler is unreachable, up to a deadline.
//! The agent then exits either way: a shutdown is never held hostage by the network.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::DrainInstanceRequest;
use berth_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::watch;
use tonic::{Code, Status};

use crate::backoff::Backoff;
use crate::session::{self, TlsMaterial};
use crate::store::Store;

/// How long the agent waits for the scheduler's acknowledgement before it exits anyway.
pub(crate) const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// How asking for the drain ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The scheduler stored the instance's new status.
    Acknowledged(String),
    /// The scheduler refused; retrying would not help.
    Refused(String),
    /// No acknowledgement within the deadline; the last error.
    TimedOut(String),
}

/// Asks for the drain with `ask` until it is acknowledged, refused, or `timeout` passes;
/// transient failures are retried with backoff.
pub(crate) async fn until_acknowledged<F, Fut>(mut ask: F, timeout: Duration) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, Status>>,
{
    let mut backoff =
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).jittered(0.2);
    let mut last = String::from("no answer");
    let attempts = async {
        loop {
            match ask().await {
                Ok(status) => return Outcome::Acknowledged(status),
                Err(status) if is_final(status.code()) => {
                    return Outcome::Refused(status.message().to_owned());
                }
                Err(status) => {
                    last = format!("{}: {}", status.code(), status.message());
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %last, retry_in_ms = delay.as_millis() as u64, "cannot ask the scheduler to drain this instance yet; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempts).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::TimedOut(last),
    }
}

/// Answers that retrying does not change.
fn is_final(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::Unimplemented
    )
}

/// Asks the scheduler at `endpoint` to drain the instance the store says this host registered
/// as, and logs how it ended.
pub(crate) async fn drain_before_exit(
    endpoint: &str,
    tls: Option<watch::Receiver<TlsMaterial>>,
    store: Arc<Store>,
) {
    let registration = match store.registration() {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::warn!("drain_on_shutdown: this host never registered; nothing to drain");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "drain_on_shutdown: cannot read the registration; not draining");
            return;
        }
    };
    let (cluster, instance) = registration;
    tracing::info!(instance.id = %instance, %cluster, "asking the scheduler to drain this instance before exiting");
    let ask = || {
        let tls = tls.as_ref().map(|rx| rx.borrow().clone());
        let request = DrainInstanceRequest {
            cluster: cluster.clone(),
            container_instance_id: instance.clone(),
        };
        async move {
            let channel = session::connect(endpoint, tls.as_ref())
                .await
                .map_err(|e| Status::unavailable(format!("{:#}", anyhow::Error::new(e))))?;
            let response = AgentServiceClient::new(channel)
                .drain_instance(request)
                .await?;
            Ok(response.into_inner().status)
        }
    };
    match until_acknowledged(ask, DRAIN_ACK_TIMEOUT).await {
        Outcome::Acknowledged(status) => {
            tracing::info!(instance.id = %instance, %cluster, %status, "the scheduler acknowledged the drain");
        }
        Outcome::Refused(reason) => {
            tracing::error!(instance.id = %instance, %cluster, %reason, "the scheduler refused to drain this instance");
        }
        Outcome::TimedOut(error) => tracing::error!(
            instance.id = %instance,
            %cluster,
            %error,
            waited_s = DRAIN_ACK_TIMEOUT.as_secs(),
            "no drain acknowledgement from the scheduler in time; exiting anyway"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_acknowledged() {
        let calls = AtomicU32::new(0);
        let outcome = until_acknowledged(
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(Status::unavailable("connection refused"))
                    } else {
                        Ok("DRAINING".to_owned())
                    }
                }
            },
            DRAIN_ACK_TIMEOUT,
        )
        .await;
        assert_eq!(outcome, Outcome::Acknowledged("DRAINING".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_scheduler_is_waited_for_until_the_deadline() {
        let started = tokio::time::Instant::now();
        let outcome = until_acknowledged(
            || async { Err::<String, _>(Status::unavailable("connection refused")) },
            DRAIN_ACK_TIMEOUT,
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::TimedOut("The service is currently unavailable: connection refused".into())
        );
        assert_eq!(started.elapsed(), DRAIN_ACK_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final() {
        let calls = AtomicU32::new(0);
        let outcome = until_acknowledged(
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<String, _>(Status::permission_denied("not yours")) }
            },
            DRAIN_ACK_TIMEOUT,
        )
        .await;
        assert_eq!(outcome, Outcome::Refused("not yours".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

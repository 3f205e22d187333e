//! The scheduler as a systemd service (`Type=notify`): READY=1 once the store is open and the
//! listener bound, STATUS= lines for `systemctl status`, and watchdog pings sent only while a
//! store read answers within one period, so a wedged scheduler stops them and is restarted.
//! Outside systemd (no NOTIFY_SOCKET) `sd-notify` drops every message.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_scheduler::store::{Store, StoreError};
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// How often STATUS= is refreshed when systemd asked for no watchdog.
const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// Where the scheduler's service-manager messages go.
pub(crate) trait Notifier: Send + Sync {
    fn notify(&self, states: &[NotifyState<'_>]);
}

/// The service manager named by NOTIFY_SOCKET (nothing when unset).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Systemd;

impl Notifier for Systemd {
    fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(states) {
            tracing::debug!(%error, "cannot notify the service manager");
        }
    }
}

/// What the store holds: clusters and container instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Census {
    pub clusters: usize,
    pub instances: usize,
}

/// Start-up is complete; then pings and STATUS= until `cancel`, each after a read of `store`.
pub(crate) async fn supervise(store: Store, listen: SocketAddr, cancel: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
    let probe = move || {
        let store = store.clone();
        async move {
            match tokio::task::spawn_blocking(move || census(&store)).await {
                Ok(answer) => answer,
                Err(join) => {
                    tracing::error!(error = %join, "the store read panicked");
                    Err(None)
                }
            }
        }
    };
    supervise_with(Arc::new(Systemd), watchdog, listen, probe, cancel).await;
}

/// The supervisor behind [`supervise`], with its notifier, watchdog interval and store probe
/// given (the tests run it on paused time with a probe that can wedge). A probe that fails or
/// does not answer within one period withholds that period's ping.
pub(crate) async fn supervise_with<P, F>(
    notifier: Arc<dyn Notifier>,
    watchdog: Option<Duration>,
    listen: SocketAddr,
    probe: P,
    cancel: CancellationToken,
) where
    P: Fn() -> F,
    F: Future<Output = Result<Census, Option<StoreError>>>,
{
    notifier.notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {listen}")),
    ]);
    let period = watchdog.map_or(STATUS_REFRESH, |d| (d / 2).max(Duration::from_millis(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let answer = tokio::select! {
            _ = cancel.cancelled() => break,
            answer = tokio::time::timeout(period, probe()) => answer,
        };
        let line = match answer {
            Ok(Ok(Census {
                clusters,
                instances,
            })) => {
                format!("serving on {listen}; {clusters} clusters, {instances} container instances")
            }
            Ok(Err(error)) => {
                match error {
                    Some(error) => tracing::error!(
                        %error,
                        "the store does not answer; withholding the watchdog ping"
                    ),
                    None => tracing::error!("the store read failed; withholding the watchdog ping"),
                }
                continue;
            }
            Err(_) => {
                tracing::error!(
                    waited_ms = period.as_millis() as u64,
                    "the store did not answer in time; withholding the watchdog ping"
                );
                continue;
            }
        };
        let mut states = Vec::with_capacity(2);
        if watchdog.is_some() {
            states.push(NotifyState::Watchdog);
        }
        if line != last_status {
            states.push(NotifyState::Status(&line));
        }
        if !states.is_empty() {
            notifier.notify(&states);
        }
        last_status = line;
    }
    notifier.notify(&[NotifyState::Stopping]);
}

/// How many clusters and container instances the store holds.
fn census(store: &Store) -> Result<Census, Option<StoreError>> {
    let clusters = store.list_clusters()?;
    let mut instances = 0;
    for cluster in &clusters {
        instances += store.list_instances(cluster)?.len();
    }
    Ok(Census {
        clusters: clusters.len(),
        instances,
    })
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

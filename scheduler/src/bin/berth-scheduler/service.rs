//! The scheduler as a systemd service (`Type=notify`): READY=1 once the store is open and the
//! listener bound, STATUS= lines for `systemctl status`, and watchdog pings sent only while a
//! store read answers within one period, so a wedged scheduler stops them and is restarted.
//! Outside systemd (no NOTIFY_SOCKET) `sd-notify` drops every message.

use std::net::SocketAddr;
use std::time::Duration;

use berth_scheduler::store::Store;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// How often STATUS= is refreshed when systemd asked for no watchdog.
const STATUS_REFRESH: Duration = Duration::from_secs(10);

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "cannot notify the service manager");
    }
}

/// Start-up is complete; then pings and STATUS= until `cancel`.
pub(crate) async fn supervise(store: Store, listen: SocketAddr, cancel: CancellationToken) {
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {listen}")),
    ]);
    let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
    let period = watchdog.map_or(STATUS_REFRESH, |d| (d / 2).max(Duration::from_millis(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let store = store.clone();
        let probe = tokio::task::spawn_blocking(move || census(&store));
        let line = match tokio::time::timeout(period, probe).await {
            Ok(Ok(Ok((clusters, instances)))) => {
                format!("serving on {listen}; {clusters} clusters, {instances} container instances")
            }
            Ok(Ok(Err(error))) => {
                tracing::error!(%error, "the store does not answer; withholding the watchdog ping");
                continue;
            }
            Ok(Err(_)) | Err(_) => {
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
            notify(&states);
        }
        last_status = line;
    }
    notify(&[NotifyState::Stopping]);
}

/// How many clusters and container instances the store holds.
fn census(store: &Store) -> Result<(usize, usize), berth_scheduler::store::StoreError> {
    let clusters = store.list_clusters()?;
    let mut instances = 0;
    for cluster in &clusters {
        instances += store.list_instances(cluster)?.len();
    }
    Ok((clusters.len(), instances))
}

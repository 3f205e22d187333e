//! The agent as a systemd service (`Type=notify`): READY=1 once containerd answers and the
//! store is loaded, STATUS= lines for `systemctl status`, and watchdog pings that are sent only
//! while the task engine's loop answers, so a wedged agent stops them and systemd restarts it.
//! Outside systemd (no NOTIFY_SOCKET) every message is dropped by `sd-notify` itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_proto::v1::TaskStatus;
use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::EngineHandle;
use crate::store::Store;

/// How often STATUS= is refreshed when systemd asked for no watchdog.
const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// Where the agent's service-manager messages go.
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

/// The watchdog interval systemd asked for (WATCHDOG_USEC, for this process), if any.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Tells the service manager what the agent does now.
pub(crate) fn status(notifier: &dyn Notifier, line: &str) {
    notifier.notify(&[NotifyState::Status(line)]);
}

/// Start-up is complete: containerd answers and the store is loaded.
pub(crate) fn ready(notifier: &dyn Notifier, line: &str) {
    notifier.notify(&[NotifyState::Ready, NotifyState::Status(line)]);
}

/// The agent is stopping (systemd then shows "deactivating" with this status).
pub(crate) fn stopping(notifier: &dyn Notifier, line: &str) {
    notifier.notify(&[NotifyState::Stopping, NotifyState::Status(line)]);
}

/// Asks the agent's main loop whether it is alive and what it does; None when it does not
/// answer (the caller bounds the wait).
#[async_trait]
pub(crate) trait Probe: Send + Sync {
    async fn status(&self) -> Option<String>;
}

/// The running agent's probe: the task engine's loop (the one owner of task state) must answer
/// a query, and the store says whether the host is registered.
pub(crate) struct AgentProbe {
    pub engine: EngineHandle,
    pub store: Arc<Store>,
    pub cluster: String,
}

#[async_trait]
impl Probe for AgentProbe {
    async fn status(&self) -> Option<String> {
        let views = self.engine.views().await;
        let running = views
            .iter()
            .filter(|v| v.state.status == TaskStatus::Running as i32)
            .count();
        let registration = self.store.registration().ok().flatten();
        Some(status_line(registration.as_ref(), &self.cluster, running))
    }
}

/// "registered as <instance> in <cluster>; 12 tasks running", or the not-yet-registered form.
pub(crate) fn status_line(
    registration: Option<&(String, String)>,
    cluster: &str,
    running: usize,
) -> String {
    let tasks = match running {
        1 => "1 task running".to_owned(),
        n => format!("{n} tasks running"),
    };
    match registration {
        Some((cluster, instance)) => format!("registered as {instance} in {cluster}; {tasks}"),
        None => format!("not yet registered in {cluster}; {tasks}"),
    }
}

/// What the supervisor asks: before the engine runs, the phase line the start-up sets (the
/// start-up's own progress is the liveness); then the running agent's probe.
pub(crate) enum Phase {
    Starting(String),
    Running(Arc<dyn Probe>),
}

/// Pings the watchdog (at half of `watchdog`) and refreshes STATUS= while the agent's main loop
/// answers its probe within one period. A probe that does not answer withholds the ping, so a
/// wedged loop gets the agent restarted. Runs until `cancel`.
pub(crate) async fn supervise(
    notifier: Arc<dyn Notifier>,
    watchdog: Option<Duration>,
    mut phase: watch::Receiver<Phase>,
    cancel: CancellationToken,
) {
    let period = watchdog.map_or(STATUS_REFRESH, |d| (d / 2).max(Duration::from_millis(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    let mut wedged = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = phase.changed() => if changed.is_err() { return },
        }
        let current = match &*phase.borrow_and_update() {
            Phase::Starting(line) => Err(line.clone()),
            Phase::Running(probe) => Ok(Arc::clone(probe)),
        };
        let line = match current {
            Err(line) => Some(line),
            Ok(probe) => tokio::select! {
                _ = cancel.cancelled() => return,
                answer = tokio::time::timeout(period, probe.status()) => answer.ok().flatten(),
            },
        };
        let Some(line) = line else {
            if !wedged {
                tracing::error!(
                    waited_ms = period.as_millis() as u64,
                    "the task engine did not answer; withholding the watchdog ping"
                );
            }
            wedged = true;
            continue;
        };
        if wedged {
            tracing::info!("the task engine answers again; watchdog pings resume");
            wedged = false;
        }
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
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

//! The agent's own health, sent on every heartbeat: whether containerd answers (and when it
//! last did), the data dir's free space and whether it takes writes (`crate::disk`), the task
//! engine's lag and the time of the last metrics pass.
//!
//! A monitor probes containerd and the data dir every interval, and measures the engine's lag
//! with a barrier sent through its command queue: while a barrier is unanswered, the lag is its
//! age (the oldest event the engine has not handled is at least that old), so a stuck engine
//! shows a growing lag instead of a stale one. Heartbeats only read the latest figures; no
//! probe ever delays a heartbeat.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use berth_proto::v1::AgentHealth;
use berth_runtime::{FilesystemUsage, filesystem_usage};
use tokio_util::sync::CancellationToken;

/// How long a containerd probe may take before containerd counts as unreachable.
const CONTAINERD_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The latest health figures, shared by the monitor, the metrics loop and the session.
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
    /// Whether the data dir takes writes (reported as `storage_degraded`).
    disk: std::sync::OnceLock<std::sync::Arc<crate::disk::Disk>>,
}

#[derive(Debug, Default)]
struct State {
    containerd_reachable: bool,
    containerd_last_ok: Option<SystemTime>,
    data_dir: Option<FilesystemUsage>,
    /// When the unanswered engine barrier was sent.
    engine_probe_since: Option<Instant>,
    /// How long the last answered barrier waited.
    engine_last_lag: Duration,
    last_metrics: Option<SystemTime>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A containerd call's outcome.
    pub(crate) fn containerd(&self, ok: bool, at: SystemTime) {
        let mut state = self.lock();
        state.containerd_reachable = ok;
        if ok {
            state.containerd_last_ok = Some(at);
        }
    }

    /// The data dir's filesystem (None: it could not be read).
    pub(crate) fn data_dir(&self, usage: Option<FilesystemUsage>) {
        self.lock().data_dir = usage;
    }

    /// Reports the data dir's condition from now on.
    pub(crate) fn watch_disk(&self, disk: std::sync::Arc<crate::disk::Disk>) {
        let _ = self.disk.set(disk);
    }

    /// A metrics pass finished.
    pub(crate) fn metrics_collected(&self, at: SystemTime) {
        self.lock().last_metrics = Some(at);
    }

    fn engine_probe_sent(&self, at: Instant) {
        self.lock().engine_probe_since = Some(at);
    }

    fn engine_probe_answered(&self, lag: Duration) {
        let mut state = self.lock();
        state.engine_probe_since = None;
        state.engine_last_lag = lag;
    }

    /// The engine's lag now: the age of an unanswered barrier, else the last one's wait.
    pub(crate) fn engine_lag(&self, now: Instant) -> Duration {
        let state = self.lock();
        match state.engine_probe_since {
            Some(since) => now
                .saturating_duration_since(since)
                .max(state.engine_last_lag),
            None => state.engine_last_lag,
        }
    }

    /// The figures for a heartbeat.
    pub(crate) fn report(&self) -> AgentHealth {
        let lag = self.engine_lag(Instant::now());
        let state = self.lock();
        let data_dir = state.data_dir.unwrap_or_default();
        AgentHealth {
            containerd_reachable: state.containerd_reachable,
            containerd_last_ok_at: state.containerd_last_ok.map(prost_types::Timestamp::from),
            data_dir_free_bytes: data_dir.free_bytes,
            data_dir_total_bytes: data_dir.total_bytes,
            engine_lag_ms: u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
            last_metrics_at: state.last_metrics.map(prost_types::Timestamp::from),
            storage_degraded: self
                .disk
                .get()
                .and_then(|d| d.degraded())
                .map(|d| d.to_proto()),
        }
    }
}

/// What the monitor probes; the agent passes containerd's version call and the engine's
/// barrier, tests pass fakes.
pub(crate) struct Probes<C, E> {
    /// True when containerd answered.
    pub containerd: C,
    /// Resolves when the engine has handled everything sent before it.
    pub engine_barrier: E,
    pub data_dir: PathBuf,
}

/// Probes every `every` until `cancel`. The engine probe runs on its own so that a stuck
/// engine does not stop the containerd and disk probes.
pub(crate) async fn monitor<C, CF, E, EF>(
    health: std::sync::Arc<Health>,
    probes: Probes<C, E>,
    every: Duration,
    cancel: CancellationToken,
) where
    C: Fn() -> CF,
    CF: Future<Output = bool>,
    E: Fn() -> EF,
    EF: Future<Output = bool>,
{
    let Probes {
        containerd,
        engine_barrier,
        data_dir,
    } = probes;
    let host = async {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let ok = tokio::time::timeout(CONTAINERD_PROBE_TIMEOUT, containerd())
                .await
                .unwrap_or(false);
            if !ok {
                tracing::warn!("containerd did not answer the health probe");
            }
            health.containerd(ok, SystemTime::now());
            let dir = data_dir.clone();
            let usage = tokio::task::spawn_blocking(move || filesystem_usage(&dir).ok())
                .await
                .ok()
                .flatten();
            health.data_dir(usage);
        }
    };
    let engine = async {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            health.engine_probe_sent(sent);
            if !engine_barrier().await {
                // The engine has shut down; the agent is stopping.
                return;
            }
            health.engine_probe_answered(sent.elapsed());
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        () = host => {}
        () = engine => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stuck_engine_shows_a_growing_lag_and_containerd_its_last_answer() {
        let health = Arc::new(Health::default());
        let containerd_up = Arc::new(AtomicBool::new(true));
        let (engine_stuck, stuck_rx) = tokio::sync::watch::channel(true);
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let probes = Probes {
            containerd: {
                let up = Arc::clone(&containerd_up);
                move || {
                    let up = up.load(Ordering::SeqCst);
                    async move { up }
                }
            },
            engine_barrier: move || {
                let mut stuck = stuck_rx.clone();
                async move { stuck.wait_for(|stuck| !stuck).await.is_ok() }
            },
            data_dir: dir.path().to_path_buf(),
        };
        let task = tokio::spawn(monitor(
            Arc::clone(&health),
            probes,
            Duration::from_secs(5),
            cancel.clone(),
        ));
        // The first probes run at once; the disk read is on a blocking thread.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..100 {
            if health.report().data_dir_total_bytes > 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = health.report();
        assert!(first.containerd_reachable && first.containerd_last_ok_at.is_some());
        assert!(first.data_dir_total_bytes > 0, "{first:?}");
        assert!(first.last_metrics_at.is_none());

        // The engine never answers: its lag grows with time.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let lag = health.report().engine_lag_ms;
        assert!((30_000..31_000).contains(&lag), "lag {lag} ms");

        // containerd goes away: unreachable, and the last good call's time stays.
        let before = health.report();
        containerd_up.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let down = health.report();
        assert!(!down.containerd_reachable);
        assert_eq!(down.containerd_last_ok_at, before.containerd_last_ok_at);

        // The engine catches up: the next barrier is answered at once.
        engine_stuck.send_replace(false);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(health.report().engine_lag_ms, 0, "{:?}", health.report());

        health.metrics_collected(SystemTime::UNIX_EPOCH + Duration::from_secs(7));
        assert_eq!(
            health.report().last_metrics_at,
            Some(prost_types::Timestamp {
                seconds: 7,
                nanos: 0
            })
        );
        cancel.cancel();
        task.await.expect("the monitor stops on cancel");
    }
}

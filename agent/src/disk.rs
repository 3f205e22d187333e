//! Whether the agent can write its data dir, and its degraded mode when it cannot (a full
//! disk, a failing store write): the agent keeps its running tasks and its session, refuses
//! new assignments with a reason that names the path and the error, reports the condition on
//! its heartbeat (`AgentHealth.storage_degraded`), and recovers by itself.
//!
//! The condition is entered by whoever meets it: the task engine when a store write fails, and
//! [`watch`] when the data dir's filesystem has less than [`RESERVE_BYTES`] free. While it
//! lasts, the engine makes no store write (what it could not write is kept in memory), and
//! [`watch`] probes with a growing delay (1 s doubling to 30 s, never once per write): enough
//! free space, a probe file written and synced, and the engine's pending writes flushed. Only
//! when all three succeed is the condition cleared; each change is logged once.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_proto::v1::StorageDegraded;
use tokio::sync::watch as watch_channel;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::store::StoreError;

/// Free space the data dir's filesystem must keep for the agent to take new tasks: below it,
/// the agent degrades before a store write fails halfway.
pub(crate) const RESERVE_BYTES: u64 = 4 << 20;

/// The size of the probe file written to test that the disk takes writes again.
const PROBE_BYTES: usize = 64 << 10;

/// The name of the probe file in the data dir (written, synced and removed).
const PROBE_FILE: &str = ".write-probe";

/// ENOSPC, the error a full disk gives.
const ENOSPC: i32 = 28;

/// Why the agent cannot write its data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Degraded {
    /// What failed: the database file, or the data dir for a space check or probe.
    pub path: PathBuf,
    /// The operating system's error number, when the failure carried one.
    pub errno: Option<i32>,
    /// The error.
    pub error: String,
    /// When the agent degraded.
    pub since: SystemTime,
}

impl Degraded {
    /// The reason given with a refused assignment and a refused placement.
    pub(crate) fn reason(&self) -> String {
        let errno = self
            .errno
            .map(|e| format!(" (errno {e})"))
            .unwrap_or_default();
        format!(
            "the agent cannot write {}{errno}: {}; it keeps its running tasks and takes new ones once the disk takes writes again",
            self.path.display(),
            self.error
        )
    }

    /// As the heartbeat reports it.
    pub(crate) fn to_proto(&self) -> StorageDegraded {
        StorageDegraded {
            path: self.path.display().to_string(),
            errno: self.errno.unwrap_or(0),
            error: self.error.clone(),
            since: Some(prost_types::Timestamp::from(self.since)),
        }
    }
}

/// The data dir's condition, shared by the engine, the session, the health report and
/// [`watch`].
#[derive(Debug)]
pub(crate) struct Disk {
    data_dir: PathBuf,
    state: watch_channel::Sender<Option<Degraded>>,
}

impl Disk {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            state: watch_channel::Sender::new(None),
        }
    }

    /// The condition, None while the data dir takes writes.
    pub(crate) fn degraded(&self) -> Option<Degraded> {
        self.state.borrow().clone()
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// Notified at each change of the condition.
    pub(crate) fn subscribe(&self) -> watch_channel::Receiver<Option<Degraded>> {
        self.state.subscribe()
    }

    /// Enters the degraded mode (logged once; a later failure while degraded changes nothing).
    pub(crate) fn fail(&self, path: &Path, errno: Option<i32>, error: &str) {
        self.state.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            let degraded = Degraded {
                path: path.to_path_buf(),
                errno,
                error: error.to_owned(),
                since: SystemTime::now(),
            };
            tracing::error!(
                path = %path.display(),
                errno,
                %error,
                "the agent cannot write its data dir: running tasks are kept, new tasks are refused until it takes writes again"
            );
            *state = Some(degraded);
            true
        });
    }

    /// A store write failed.
    pub(crate) fn store_failed(&self, store_path: &Path, error: &StoreError) {
        self.fail(store_path, error.errno(), &error.to_string());
    }

    fn recovered(&self) {
        self.state.send_if_modified(|state| match state.take() {
            Some(was) => {
                let lasted = SystemTime::now()
                    .duration_since(was.since)
                    .unwrap_or_default();
                tracing::info!(
                    path = %was.path.display(),
                    degraded_for_s = lasted.as_secs(),
                    "the agent's data dir takes writes again: new tasks are accepted"
                );
                true
            }
            None => false,
        });
    }
}

/// What [`watch`] checks of the data dir: the real filesystem in production, a fake in tests.
pub(crate) trait DataDir: Send + Sync + 'static {
    /// Bytes free on the data dir's filesystem for unprivileged users.
    fn free_bytes(&self, dir: &Path) -> std::io::Result<u64>;
    /// Writes, syncs and removes a probe file in the data dir.
    fn write_probe(&self, dir: &Path) -> std::io::Result<()>;
}

/// The data dir on the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostDataDir;

impl DataDir for HostDataDir {
    fn free_bytes(&self, dir: &Path) -> std::io::Result<u64> {
        berth_runtime::filesystem_usage(dir)
            .map(|u| u.free_bytes)
            .map_err(std::io::Error::other)
    }

    fn write_probe(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(PROBE_FILE);
        let result = (|| {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&[0u8; PROBE_BYTES])?;
            file.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        result
    }
}

/// Checks the data dir every `check_every` while it takes writes, and probes it with backoff
/// while it does not, until `cancel`. `flush` writes what the engine could not (it resolves
/// with the first store error, if any).
pub(crate) async fn watch<D, F, Fut>(
    disk: std::sync::Arc<Disk>,
    dir: std::sync::Arc<D>,
    flush: F,
    check_every: Duration,
    cancel: CancellationToken,
) where
    D: DataDir,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut changes = disk.subscribe();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        if !disk.is_degraded() {
            backoff.reset();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changes.changed() => continue,
                _ = tokio::time::sleep(check_every) => {}
            }
            if let Some(short) = short_of_space(&disk, &dir).await {
                disk.fail(&disk.data_dir, Some(ENOSPC), &short);
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
        if let Err(why) = probe(&disk, &dir, &flush).await {
            tracing::debug!(%why, "the agent's data dir does not take writes yet");
            continue;
        }
        disk.recovered();
    }
}

/// Why the data dir's filesystem is too full for new tasks, None when it is not (or its space
/// cannot be read: a failing write says more).
async fn short_of_space<D: DataDir>(disk: &Disk, dir: &std::sync::Arc<D>) -> Option<String> {
    let (d, path) = (std::sync::Arc::clone(dir), disk.data_dir.clone());
    let free = tokio::task::spawn_blocking(move || d.free_bytes(&path))
        .await
        .ok()?
        .ok()?;
    (free < RESERVE_BYTES).then(|| {
        format!(
            "its filesystem has {free} bytes free, less than the {RESERVE_BYTES} bytes the agent keeps in reserve"
        )
    })
}

/// One recovery attempt: enough space, a probe file written, the pending writes flushed.
async fn probe<D, F, Fut>(disk: &Disk, dir: &std::sync::Arc<D>, flush: &F) -> Result<(), String>
where
    D: DataDir,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    if let Some(short) = short_of_space(disk, dir).await {
        return Err(short);
    }
    let (d, path) = (std::sync::Arc::clone(dir), disk.data_dir.clone());
    tokio::task::spawn_blocking(move || d.write_probe(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("probe write: {e}"))?;
    flush().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;

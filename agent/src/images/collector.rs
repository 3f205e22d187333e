//! The image collector: every `image_cleanup_interval` it lists the images in containerd, decides what goes
//! by `collect.rs`'s rules, and removes each under [`ImageUse`]'s lock, so that no image a task
//! holds is ever removed. Removals wait for containerd's garbage collector (content and
//! snapshots are reclaimed before the next one), and each is logged with its reason and
//! counted on `/metrics`. One owned task, stopped by its cancellation token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_runtime::{ImageSummary, Runtime};
use tokio_util::sync::CancellationToken;

use super::collect::{self, Candidate, Disk, Policy, Reason};
use super::usage::ImageUse;
use crate::metrics::{AGENT, RemovalLabels};

/// What the collector needs of the host, behind a seam for its tests.
#[async_trait]
pub(crate) trait ImageHost: Send + Sync + 'static {
    /// Every image in the agent's containerd namespace.
    async fn list(&self) -> Result<Vec<ImageSummary>, berth_runtime::Error>;
    /// Removes an image and waits for containerd's garbage collector.
    async fn remove(&self, name: &str) -> Result<(), berth_runtime::Error>;
    /// The use of containerd's root filesystem; None when it cannot be read.
    fn disk(&self) -> Option<Disk>;
}

/// The real host: the runtime and containerd's root directory.
pub(crate) struct RuntimeImages {
    pub(crate) runtime: Runtime,
    pub(crate) containerd_root: PathBuf,
}

#[async_trait]
impl ImageHost for RuntimeImages {
    async fn list(&self) -> Result<Vec<ImageSummary>, berth_runtime::Error> {
        self.runtime.list_images().await
    }
    async fn remove(&self, name: &str) -> Result<(), berth_runtime::Error> {
        self.runtime.remove_image(name).await
    }
    fn disk(&self) -> Option<Disk> {
        match berth_runtime::filesystem_usage(&self.containerd_root) {
            Ok(u) => Some(Disk {
                used: u.total_bytes.saturating_sub(u.free_bytes),
                total: u.total_bytes,
            }),
            Err(error) => {
                tracing::warn!(%error, path = %self.containerd_root.display(), "cannot read the use of containerd's root filesystem");
                None
            }
        }
    }
}

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Collection {
    /// Each image removed, with its size and why.
    pub(crate) removed: Vec<(String, u64, String)>,
    /// Images left for this pass: a task took them while it ran, or their removal failed.
    pub(crate) kept: Vec<(String, String)>,
}

/// The collector. `run` is its owned loop; `collect` is one pass (also asked for by the
/// scheduler, `collect-images`). Passes run one at a time.
pub(crate) struct Collector<H> {
    pub(crate) host: H,
    pub(crate) images: Arc<ImageUse>,
    pub(crate) policy: Policy,
    /// A test hook ([`TEST_GATE_ENV`], debug builds only): each pass, once it
    /// has chosen, writes the chosen names to `decided` in this directory and waits for `go`
    /// to appear there before it removes anything, so an end-to-end trial can assign a task
    /// an image in between.
    pub(crate) gate: Option<PathBuf>,
    passes: tokio::sync::Mutex<()>,
}

impl<H: ImageHost> Collector<H> {
    pub(crate) fn new(host: H, images: Arc<ImageUse>, policy: Policy) -> Self {
        Self {
            host,
            images,
            policy,
            gate: None,
            passes: tokio::sync::Mutex::new(()),
        }
    }

    /// Collects every `interval` (None: never on its own) until `cancel`. A failed pass is
    /// logged and tried again at the next tick.
    pub(crate) async fn run(
        self: Arc<Self>,
        interval: Option<Duration>,
        cancel: CancellationToken,
    ) {
        let mut ticks = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick => {
                    if let Err(error) = self.collect().await {
                        tracing::warn!(%error, "image collection failed; trying again at the next interval");
                    }
                }
            }
        }
    }

    /// One pass: decide, then remove each chosen image that no task holds by then. Disk
    /// pressure removals stop as soon as the disk is under the low mark.
    pub(crate) async fn collect(&self) -> Result<Collection, berth_runtime::Error> {
        let _pass = self.passes.lock().await;
        let started = std::time::Instant::now();
        let now = SystemTime::now();
        let listed = self.host.list().await?;
        let candidates: Vec<Candidate> = listed
            .iter()
            .map(|i| Candidate {
                name: i.name.clone(),
                size: i.size,
                // Never used by a task of this agent: counted from its last pull, else now.
                last_used: self
                    .images
                    .last_used(&i.name)
                    .or(i.updated_at)
                    .unwrap_or(now),
                in_use: self.images.in_use(&i.name),
            })
            .collect();
        let plan = collect::decide(&candidates, self.policy, self.host.disk(), now);
        if let Some(dir) = &self.gate {
            let names: Vec<&str> = plan.iter().map(|r| r.name.as_str()).collect();
            wait_at_gate(dir, &names).await;
        }
        let mut done = Collection::default();
        for removal in plan {
            if matches!(removal.reason, Reason::DiskPressure { .. })
                && self
                    .host
                    .disk()
                    .is_some_and(|d| d.percent() < u64::from(self.policy.low_percent))
            {
                continue;
            }
            let Some(marked) = self.images.begin_removal(&removal.name) else {
                tracing::info!(image.ref = %removal.name, "image kept: a task took it during the collection");
                done.kept.push((removal.name, "a task needs it".to_owned()));
                continue;
            };
            match self.host.remove(&removal.name).await {
                Ok(()) => {
                    if let Err(error) = self.images.forget(&marked) {
                        tracing::warn!(image.ref = %removal.name, %error, "cannot forget the removed image's last use");
                    }
                    drop(marked);
                    tracing::info!(image.ref = %removal.name, size = removal.size, reason = %removal.reason, "image removed");
                    AGENT
                        .image_removals
                        .get_or_create(&RemovalLabels {
                            reason: removal.reason.label(),
                        })
                        .inc();
                    AGENT.image_removed_bytes.inc_by(removal.size);
                    done.removed
                        .push((removal.name, removal.size, removal.reason.to_string()));
                }
                Err(error) => {
                    drop(marked);
                    tracing::warn!(image.ref = %removal.name, %error, "cannot remove the image");
                    done.kept.push((removal.name, error.to_string()));
                }
            }
        }
        tracing::debug!(
            removed = done.removed.len(),
            kept = done.kept.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "image collection done"
        );
        Ok(done)
    }
}

/// The environment variable through which a debug build of the agent takes the image
/// collection's test gate (a directory, see [`Collector::gate`]). A release build ignores it.
pub(crate) const TEST_GATE_ENV: &str = "BERTH_E2E_IMAGE_GATE";

/// The test gate's directory, when a debug build was given one.
pub(crate) fn test_gate() -> Option<PathBuf> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var_os(TEST_GATE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The test hook's gate: `decided` names the chosen images (one a line); the pass goes on
/// once `go` exists (removed again, so the next pass waits too).
async fn wait_at_gate(dir: &std::path::Path, names: &[&str]) {
    let mut listing = names.join("\n");
    listing.push('\n');
    if let Err(error) = tokio::fs::write(dir.join("decided"), listing).await {
        tracing::warn!(%error, dir = %dir.display(), "image collection test gate: cannot write decided");
        return;
    }
    tracing::info!(dir = %dir.display(), chosen = names.len(), "image collection waits at the test gate");
    let go = dir.join("go");
    while tokio::fs::metadata(&go).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tokio::fs::remove_file(&go).await;
    let _ = tokio::fs::remove_file(dir.join("decided")).await;
}

#[cfg(test)]
mod tests;

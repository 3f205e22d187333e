//! The pull pipeline: resolve the reference (an index to the host's platform), skip what this
//! process pulled already, then store and record the image under one lease (`store.rs`, each
//! blob through `blobs.rs`) and release the lease, collecting at once when anything failed.
//! Concurrent pulls of one reference, and concurrent downloads of one blob, share a single
//! execution; progress goes to every caller waiting on a pull.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::auth::Credentials;
use super::content;
use super::manifest::{self, Fetched, Platform};
use super::registry::{Distribution, ImageRef};
use super::single_flight::SingleFlight;
use super::unpack;
use super::{ProgressSender, PullError, PullProgress, PulledImage, RegistryAuth};
use crate::containerd::{Containerd, Lease};

const MANIFEST_TIMEOUT: Duration = Duration::from_secs(60);
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

mod blobs;
mod retry;
mod store;
mod turns;

pub(crate) use retry::DEFAULT_PULL_TIMEOUT;

type PullOutcome = Result<PulledImage, PullError>;

/// Pulls images into containerd. Cheap to clone; clones share downloads.
#[derive(Debug, Clone)]
pub(crate) struct Puller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Arc<dyn Containerd>,
    registry: Arc<dyn Distribution>,
    downloads: Arc<Semaphore>,
    images: SingleFlight<String, PullOutcome>,
    blobs: SingleFlight<String, Result<BlobOutcome, PullError>>,
    progress: Mutex<HashMap<String, Vec<ProgressSender>>>,
    platform: Platform,
    /// The most bytes a manifest, an index or an image config may hold.
    max_manifest_bytes: u64,
    /// The agent's sources of registry credentials, for pulls that bring none.
    credentials: Credentials,
    /// How long a pull may take, all its tries together.
    pull_timeout: Duration,
    /// The last complete pull of each reference in this process, so a re-pull that resolves to
    /// the same digest skips the content walk (see [`Puller::already_pulled`]).
    pulled: Mutex<HashMap<String, PulledImage>>,
}

#[derive(Debug, Clone, Copy)]
struct BlobOutcome {
    downloaded: u64,
}

impl Puller {
    #[cfg(test)]
    pub(crate) fn new(
        client: Arc<dyn Containerd>,
        registry: Arc<dyn Distribution>,
        max_downloads: usize,
        max_manifest_bytes: u64,
    ) -> Self {
        Self::with_sources(
            client,
            registry,
            max_downloads,
            max_manifest_bytes,
            Credentials::default(),
            DEFAULT_PULL_TIMEOUT,
        )
    }

    /// A puller that asks `credentials` for pulls that bring none, and gives each pull
    /// `pull_timeout` for all its tries.
    pub(crate) fn with_sources(
        client: Arc<dyn Containerd>,
        registry: Arc<dyn Distribution>,
        max_downloads: usize,
        max_manifest_bytes: u64,
        credentials: Credentials,
        pull_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                registry,
                downloads: Arc::new(Semaphore::new(max_downloads.max(1))),
                images: SingleFlight::default(),
                blobs: SingleFlight::default(),
                progress: Mutex::new(HashMap::new()),
                platform: Platform::host(),
                max_manifest_bytes,
                credentials,
                pull_timeout,
                pulled: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Pulls `reference` (single flight per reference). Progress, if asked for, goes to
    /// `progress` for as long as this call runs, also when it joined a pull already running.
    pub(crate) async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: Option<ProgressSender>,
    ) -> PullOutcome {
        let image = ImageRef::parse(reference)?;
        if let Some(tx) = &progress {
            self.progress_lock()
                .entry(reference.to_owned())
                .or_default()
                .push(tx.clone());
        }
        let this = self.clone();
        let auth = auth.clone();
        let (outcome, joined) = self
            .inner
            .images
            .run(
                reference.to_owned(),
                move || async move { this.pull_retrying(image, auth).await },
                |r| {
                    Err(PullError::Cancelled {
                        reference: r.clone(),
                    })
                },
            )
            .await;
        if let Some(tx) = &progress {
            let mut map = self.progress_lock();
            if let Some(list) = map.get_mut(reference) {
                list.retain(|s| !s.same_channel(tx) && !s.is_closed());
                if list.is_empty() {
                    map.remove(reference);
                }
            }
        }
        tracing::debug!(image.ref = reference, joined, ok = outcome.is_ok(), "pull finished");
        outcome
    }

    fn progress_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<ProgressSender>>> {
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn report(
        &self,
        reference: &str,
        digest: &str,
        layer: bool,
        done: u64,
        total: u64,
        cached: bool,
    ) {
        if let Some(list) = self.progress_lock().get(reference) {
            for tx in list {
                let _ = tx.send(PullProgress {
                    reference: reference.to_owned(),
                    digest: digest.to_owned(),
                    layer,
                    done,
                    total,
                    cached,
                });
            }
        }
    }

    fn pull_once(&self, image: ImageRef, auth: RegistryAuth) -> BoxFuture<'_, PullOutcome> {
        let span = tracing::info_span!("pull_once", image.ref = image.given());
        Box::pin(
            async move {
                let client = &self.inner.client;
                let (top_bytes, top_digest) = self.fetch_manifest(&image, &auth).await?;
                if let Some(done) = self.already_pulled(&image, &top_digest).await {
                    return Ok(done);
                }
                let (index, manifest_bytes, manifest_digest, manifest) =
                    match manifest::parse(&top_bytes, "", image.given())? {
                        Fetched::Manifest(m) => (None, top_bytes.clone(), top_digest.clone(), m),
                        Fetched::Index(entries) => {
                            let chosen = manifest::select_platform(
                                &entries,
                                &self.inner.platform,
                                image.given(),
                            )?;
                            let pinned = image.with_digest(&chosen.digest);
                            let (bytes, digest) = self.fetch_manifest(&pinned, &auth).await?;
                            if digest != chosen.digest {
                                return Err(PullError::DigestMismatch {
                                    kind: "manifest",
                                    digest: chosen.digest.clone(),
                                    reason: format!(
                                        "registry answered content with digest {digest}"
                                    ),
                                });
                            }
                            let Fetched::Manifest(m) = manifest::parse(&bytes, "", &chosen.digest)?
                            else {
                                return Err(PullError::BadManifest {
                                    what: chosen.digest.clone(),
                                    reason: "an index entry points to another index".into(),
                                });
                            };
                            (Some(entries), bytes, digest, m)
                        }
                    };

                let lease = Lease::create(client, "pull").await?;
                let result = self
                    .store(
                        &image,
                        &auth,
                        &lease,
                        &manifest,
                        manifest_bytes,
                        &manifest_digest,
                    )
                    .await;
                let result = match result {
                    Ok(stored) => {
                        self.record(
                            &image,
                            &lease,
                            index.as_deref(),
                            &top_bytes,
                            &top_digest,
                            &manifest_digest,
                            stored,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                // On failure collect synchronously, so nothing of a failed pull outlives this call.
                let release = lease.release(result.is_err()).await;
                let pulled = result?;
                release?;
                self.pulled_lock()
                    .insert(image.given().to_owned(), pulled.clone());
                Ok(pulled)
            }
            .instrument(span),
        )
    }

    /// The image as this process last pulled it, when the reference still resolves to the same
    /// digest, containerd's record still points there and the unpacked snapshot is still
    /// present with the config it was made from: then nothing needs writing (the record's labels keep the content from the
    /// garbage collector). Anything else, including an error asking, means a full pull.
    fn already_pulled<'a>(
        &'a self,
        image: &'a ImageRef,
        top_digest: &'a str,
    ) -> BoxFuture<'a, Option<PulledImage>> {
        Box::pin(async move {
            let known = self.pulled_lock().get(image.given()).cloned()?;
            if known.target_digest != top_digest {
                return None;
            }
            let client = &*self.inner.client;
            let target = client.image_get(image.given()).await.ok()??;
            if target.digest != top_digest {
                return None;
            }
            if !unpack::snapshot_exists(client, &known.chain_id)
                .await
                .ok()?
                || content::info(client, &known.config_digest)
                    .await
                    .ok()?
                    .is_none()
            {
                return None;
            }
            Some(PulledImage {
                downloaded: 0,
                ..known
            })
        })
    }

    fn pulled_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PulledImage>> {
        self.inner.pulled.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fetch_manifest<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
    ) -> BoxFuture<'a, Result<(Bytes, String), PullError>> {
        Box::pin(async move {
            let limit = self.inner.max_manifest_bytes;
            let (bytes, digest) = tokio::time::timeout(
                MANIFEST_TIMEOUT,
                self.inner.registry.fetch_manifest(image, auth, limit),
            )
            .await
            .map_err(|_| PullError::Timeout {
                what: format!(
                    "manifest fetch of {} from {}",
                    image.given(),
                    image.registry()
                ),
                seconds: MANIFEST_TIMEOUT.as_secs(),
            })??;
            // The registry client holds no more than the cap; this keeps every source to it.
            if bytes.len() as u64 > limit {
                return Err(PullError::TooLarge {
                    registry: image.registry().to_owned(),
                    what: format!("the manifest of {}", image.given()),
                    size: bytes.len() as u64,
                    counted: false,
                    limit,
                });
            }
            Ok((bytes, digest))
        })
    }
}

#[cfg(test)]
mod tests;

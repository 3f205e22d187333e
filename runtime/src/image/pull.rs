//! The pull pipeline: resolve, fetch config, download layers in parallel (bounded) while
//! unpacking them in order, write manifest/index with their garbage-collection labels, record
//! the image, release the lease. Concurrent pulls of one reference, and concurrent downloads of
//! one blob, share a single execution.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::content::{self, LABEL_SOURCE_PREFIX};
use super::manifest::{self, Descriptor, Fetched, Manifest, Platform};
use super::registry::{Distribution, ImageRef};
use super::single_flight::SingleFlight;
use super::unpack;
use super::{ProgressSender, PullError, PullProgress, PulledImage, RegistryAuth};
use crate::containerd::{Blob, Containerd, Lease, SNAPSHOTTER};

const MANIFEST_TIMEOUT: Duration = Duration::from_secs(60);
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

mod blobs;

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
    downloads: Semaphore,
    images: SingleFlight<String, PullOutcome>,
    blobs: SingleFlight<String, Result<BlobOutcome, PullError>>,
    progress: Mutex<HashMap<String, Vec<ProgressSender>>>,
    platform: Platform,
    /// The last complete pull of each reference in this process, so a re-pull that resolves to
    /// the same digest skips the content walk (see [`Puller::already_pulled`]).
    pulled: Mutex<HashMap<String, PulledImage>>,
}

#[derive(Debug, Clone, Copy)]
struct BlobOutcome {
    downloaded: u64,
}

impl Puller {
    pub(crate) fn new(
        client: Arc<dyn Containerd>,
        registry: Arc<dyn Distribution>,
        max_downloads: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                registry,
                downloads: Semaphore::new(max_downloads.max(1)),
                images: SingleFlight::default(),
                blobs: SingleFlight::default(),
                progress: Mutex::new(HashMap::new()),
                platform: Platform::host(),
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
                move || async move { this.pull_once(image, auth).await },
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

    fn report(&self, reference: &str, digest: &str, done: u64, total: u64, cached: bool) {
        if let Some(list) = self.progress_lock().get(reference) {
            for tx in list {
                let _ = tx.send(PullProgress {
                    reference: reference.to_owned(),
                    digest: digest.to_owned(),
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
            tokio::time::timeout(
                MANIFEST_TIMEOUT,
                self.inner.registry.fetch_manifest(image, auth),
            )
            .await
            .map_err(|_| PullError::Timeout {
                what: format!(
                    "manifest fetch of {} from {}",
                    image.given(),
                    image.registry()
                ),
                seconds: MANIFEST_TIMEOUT.as_secs(),
            })?
        })
    }

    /// Writes config and layers, unpacks, writes the manifest. Returns what `record` needs.
    /// Boxed, as are the other large steps of a pull: without, each caller's poll frame holds
    /// the step's whole future (a debug build several copies of it), and along the chain of
    /// awaits those frames add up to a worker's stack.
    fn store<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
        lease: &'a Lease,
        manifest: &'a Manifest,
        manifest_bytes: Bytes,
        manifest_digest: &'a str,
    ) -> BoxFuture<'a, Result<Stored, PullError>> {
        Box::pin(async move {
            let client = &*self.inner.client;
            let source = source_label(image);

            // Config: small, needed in memory for the diff IDs.
            let config_bytes = self.config(image, lease, &manifest.config, &source).await?;
            let diff_ids = manifest::diff_ids(&config_bytes, manifest.layers.len(), image.given())?;
            let chain_ids = manifest::chain_ids(&diff_ids);

            // Layers: start every download now (bounded by the semaphore), unpack in order as each
            // one lands, so unpacking overlaps the downloads of later layers.
            let mut handles: Vec<JoinHandle<Result<BlobOutcome, PullError>>> = manifest
                .layers
                .iter()
                .zip(&diff_ids)
                .map(|(layer, diff_id)| {
                    let this = self.clone();
                    let image = image.clone();
                    let auth = auth.clone();
                    let layer = layer.clone();
                    let labels = HashMap::from([
                        source.clone(),
                        (LABEL_UNCOMPRESSED.to_owned(), diff_id.clone()),
                    ]);
                    let lease_id = lease.id().to_owned();
                    tokio::spawn(async move {
                        this.layer(&image, &auth, &lease_id, &layer, labels).await
                    })
                })
                .collect();
            let abort_all =
                |handles: &mut Vec<JoinHandle<_>>| handles.iter().for_each(JoinHandle::abort);

            let top_exists = match chain_ids.last() {
                Some(top) => unpack::snapshot_exists(client, top).await?,
                None => true,
            };
            let mut downloaded = 0;
            for i in 0..handles.len() {
                let outcome = match (&mut handles[i]).await {
                    Ok(r) => r,
                    Err(_) => Err(PullError::Cancelled {
                        reference: image.given().to_owned(),
                    }),
                };
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        abort_all(&mut handles);
                        return Err(e);
                    }
                };
                downloaded += outcome.downloaded;
                if !top_exists {
                    let parent = if i == 0 {
                        ""
                    } else {
                        chain_ids[i - 1].as_str()
                    };
                    if let Err(e) = unpack::unpack_layer(
                        client,
                        lease,
                        &manifest.layers[i],
                        &diff_ids[i],
                        parent,
                        &chain_ids[i],
                    )
                    .await
                    {
                        abort_all(&mut handles);
                        return Err(e);
                    }
                }
            }
            let top = chain_ids.last().cloned().unwrap_or_default();
            if top_exists && !top.is_empty() {
                lease
                    .hold(&format!("snapshots/{SNAPSHOTTER}"), &top)
                    .await?;
            }

            // The config points at the unpacked snapshot; the manifest at config and layers.
            if !top.is_empty() {
                client
                    .content_update_labels(
                        Some(lease.id()),
                        &manifest.config.digest,
                        HashMap::from([(
                            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                            top.clone(),
                        )]),
                    )
                    .await?;
            }
            let mut labels = HashMap::from([
                source.clone(),
                (
                    "containerd.io/gc.ref.content.config".to_owned(),
                    manifest.config.digest.clone(),
                ),
            ]);
            for (i, layer) in manifest.layers.iter().enumerate() {
                labels.insert(
                    format!("containerd.io/gc.ref.content.l.{i}"),
                    layer.digest.clone(),
                );
            }
            self.put_small(lease, "manifest", manifest_digest, manifest_bytes, labels)
                .await?;
            Ok(Stored {
                config_digest: manifest.config.digest.clone(),
                chain_id: top,
                size: manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
                downloaded,
            })
        })
    }

    /// Writes the index (if any) and creates or updates the image record.
    #[allow(clippy::too_many_arguments)]
    fn record<'a>(
        &'a self,
        image: &'a ImageRef,
        lease: &'a Lease,
        index: Option<&'a [Descriptor]>,
        top_bytes: &'a Bytes,
        top_digest: &'a str,
        manifest_digest: &'a str,
        stored: Stored,
    ) -> BoxFuture<'a, PullOutcome> {
        Box::pin(async move {
            let target_type = match index {
                Some(entries) => {
                    let mut labels = HashMap::from([source_label(image)]);
                    for (i, entry) in entries.iter().enumerate() {
                        labels.insert(
                            format!("containerd.io/gc.ref.content.m.{i}"),
                            entry.digest.clone(),
                        );
                    }
                    self.put_small(lease, "index", top_digest, top_bytes.clone(), labels)
                        .await?;
                    media_type_of(top_bytes, manifest::OCI_INDEX)
                }
                None => media_type_of(top_bytes, manifest::OCI_MANIFEST),
            };
            let target = Blob {
                media_type: target_type,
                digest: top_digest.to_owned(),
                size: top_bytes.len() as i64,
            };
            let client = &*self.inner.client;
            match client
                .image_create(Some(lease.id()), image.given(), target.clone())
                .await
            {
                Ok(()) => {}
                // Pulled before (maybe to another digest): the record is pointed here.
                Err(e) if e.is_already_exists() => {
                    client
                        .image_update(Some(lease.id()), image.given(), target)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
            Ok(PulledImage {
                name: image.given().to_owned(),
                target_digest: top_digest.to_owned(),
                manifest_digest: manifest_digest.to_owned(),
                config_digest: stored.config_digest,
                chain_id: stored.chain_id,
                size: stored.size,
                downloaded: stored.downloaded,
            })
        })
    }
}

#[derive(Debug)]
struct Stored {
    config_digest: String,
    chain_id: String,
    size: u64,
    downloaded: u64,
}

fn source_label(image: &ImageRef) -> (String, String) {
    (
        format!("{LABEL_SOURCE_PREFIX}{}", image.registry()),
        image.repository().to_owned(),
    )
}

/// The document's own mediaType, else the given default.
fn media_type_of(bytes: &[u8], default: &str) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Mt {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Mt>(bytes)
        .ok()
        .and_then(|m| m.media_type)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests;

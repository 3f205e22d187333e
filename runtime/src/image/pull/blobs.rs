//! The blobs of one pull: the config (needed in memory for the diff IDs), manifests and
//! indexes (in memory already) and layers (streamed from the registry, single flight per
//! digest). Each is reused when Berth's namespace holds it (held under the pull's lease and
//! given the labels a clean pull gives it) and written through `ingest` otherwise, which
//! adopts what containerd has of it (a blob another namespace holds, a half-written ingest)
//! rather than downloading it again.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use super::turns::Turn;
use super::{BlobOutcome, Puller};

/// How many times one pull resumes a layer download that was cut off.
const BLOB_RESUMES: u32 = 3;
/// The wait before a resume, times the resumes so far.
const BLOB_RESUME_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
use crate::containerd::Lease;
use crate::image::content;
use crate::image::ingest::{self, BlobWrite, ByteStream};
use crate::image::manifest::Descriptor;
use crate::image::registry::ImageRef;
use crate::image::{PullError, RegistryAuth};

impl Puller {
    /// Takes a blob Berth's namespace already holds into the pull. False when it holds none.
    async fn reuse(
        &self,
        lease: &Lease,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<bool, PullError> {
        let client = &*self.inner.client;
        let Some(existing) = content::info(client, digest).await? else {
            return Ok(false);
        };
        content::adopt(client, lease, digest, &existing, labels).await?;
        Ok(true)
    }

    /// The image config's bytes, read back from the content store once it holds them.
    pub(super) fn config<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
        lease: &'a Lease,
        desc: &'a Descriptor,
        source: &'a (String, String),
    ) -> BoxFuture<'a, Result<Bytes, PullError>> {
        Box::pin(async move {
            // The config is read into memory: one larger than the cap is refused before any
            // byte of it is fetched (the write below takes no more than the declared size).
            let limit = self.inner.max_manifest_bytes;
            if u64::try_from(desc.size).map_or(true, |size| size > limit) {
                return Err(PullError::TooLarge {
                    registry: image.registry().to_owned(),
                    what: format!("the image config {} of {}", desc.digest, image.given()),
                    size: desc.size.max(0) as u64,
                    counted: false,
                    limit,
                });
            }
            let labels = HashMap::from([source.clone()]);
            let cached = self.reuse(lease, &desc.digest, &labels).await? || {
                let mut open = self.registry_opener(image, auth, desc, Permit::Unbounded);
                let blob = BlobWrite {
                    kind: "config",
                    digest: &desc.digest,
                    size: desc.size,
                    labels,
                };
                let written =
                    ingest::write_blob(&*self.inner.client, lease, &blob, &mut open, &mut |_| {})
                        .await?;
                written.sent == 0
            };
            let bytes = self.inner.client.content_read(&desc.digest).await?;
            let size = desc.size.max(0) as u64;
            if bytes.len() as u64 != size {
                return Err(PullError::BadManifest {
                    what: image.given().to_owned(),
                    reason: format!(
                        "the config {} holds {} bytes, not the {size} the manifest declares",
                        desc.digest,
                        bytes.len()
                    ),
                });
            }
            self.report(image.given(), &desc.digest, false, size, size, cached);
            Ok(Bytes::from(bytes))
        })
    }

    /// Writes a manifest or index held in memory, or reuses it.
    pub(super) fn put_small<'a>(
        &'a self,
        lease: &'a Lease,
        kind: &'static str,
        digest: &'a str,
        bytes: Bytes,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), PullError>> {
        Box::pin(async move {
            if self.reuse(lease, digest, &labels).await? {
                return Ok(());
            }
            let blob = BlobWrite {
                kind,
                digest,
                size: bytes.len() as i64,
                labels,
            };
            let mut open = move |offset: u64| {
                let from = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let rest: ByteStream<'static> =
                    futures::stream::iter([Ok(bytes.slice(from..))]).boxed();
                Box::pin(async move { Ok(rest) }) as BoxFuture<'static, _>
            };
            ingest::write_blob(&*self.inner.client, lease, &blob, &mut open, &mut |_| {})
                .await
                .map(|_| ())
        })
    }

    /// Downloads one layer into the content store unless it is there; single flight per digest.
    /// A download made here starts when `turn` comes (see `turns.rs`); without one, when a
    /// permit is free.
    pub(super) fn layer<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
        lease_id: &'a str,
        layer: &'a Descriptor,
        labels: HashMap<String, String>,
        turn: Option<Turn>,
    ) -> BoxFuture<'a, Result<BlobOutcome, PullError>> {
        Box::pin(async move {
            let lease = Lease::borrowed(&self.inner.client, lease_id);
            let size = layer.size.max(0) as u64;
            if self.reuse(&lease, &layer.digest, &labels).await? {
                self.report(image.given(), &layer.digest, true, size, size, true);
                return Ok(BlobOutcome { downloaded: 0 });
            }
            let this = self.clone();
            let image_owned = image.clone();
            let auth_owned = auth.clone();
            let layer_owned = layer.clone();
            let lease_owned = lease_id.to_owned();
            let labels_owned = labels.clone();
            let (outcome, joined) = self
                .inner
                .blobs
                .run(
                    layer.digest.clone(),
                    move || async move {
                        this.download_layer(
                            &image_owned,
                            &auth_owned,
                            &lease_owned,
                            &layer_owned,
                            labels_owned,
                            turn,
                        )
                        .await
                    },
                    |d| {
                        Err(PullError::Cancelled {
                            reference: d.clone(),
                        })
                    },
                )
                .await;
            if joined {
                // Written under another pull's lease, with its labels: take it into this one.
                outcome?;
                self.reuse(&lease, &layer.digest, &labels).await?;
                self.report(image.given(), &layer.digest, true, size, size, true);
                return Ok(BlobOutcome { downloaded: 0 });
            }
            outcome
        })
    }

    pub(super) fn download_layer<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
        lease_id: &'a str,
        layer: &'a Descriptor,
        labels: HashMap<String, String>,
        turn: Option<Turn>,
    ) -> BoxFuture<'a, Result<BlobOutcome, PullError>> {
        Box::pin(async move {
            let client = &*self.inner.client;
            let lease = Lease::borrowed(&self.inner.client, lease_id);
            let total = layer.size.max(0) as u64;
            let reference = image.given().to_owned();
            let digest = layer.digest.clone();
            let mut last_report = 0u64;
            let mut open = self.registry_opener(image, auth, layer, Permit::Bounded(turn));
            let blob = BlobWrite {
                kind: "layer",
                digest: &layer.digest,
                size: layer.size,
                labels,
            };
            let mut on_bytes = |done: u64| {
                if done == total || done.saturating_sub(last_report) >= 1 << 20 {
                    last_report = done;
                    self.report(&reference, &digest, true, done, total, false);
                }
            };
            // A download cut off is resumed where containerd's ingest got to, a few times
            // here under the pull's lease; past that the pull's own tries take over.
            let mut resumes = 0;
            let written = loop {
                match ingest::write_blob(client, &lease, &blob, &mut open, &mut on_bytes).await {
                    Ok(written) => break written,
                    Err(e) if e.is_transient() && resumes < BLOB_RESUMES => {
                        resumes += 1;
                        tracing::warn!(
                            image.ref = %reference,
                            registry = image.registry(),
                            blob = %digest,
                            resumes,
                            error = %e,
                            "layer download cut off; resuming it"
                        );
                        tokio::time::sleep(BLOB_RESUME_WAIT * resumes).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            if written.sent == 0 {
                self.report(&reference, &digest, true, total, total, true);
            }
            Ok(BlobOutcome {
                downloaded: written.sent,
            })
        })
    }

    /// Opens a blob's bytes at the registry from an offset on. When bounded, the stream holds
    /// one of the puller's download permits for as long as it lives, so only downloads that
    /// really happen count against the limit: the first open takes the layer's turn's permit
    /// (when it has a turn), a later one (a resume) queues for one of its own.
    fn registry_opener<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a RegistryAuth,
        desc: &'a Descriptor,
        permit: Permit,
    ) -> impl FnMut(u64) -> BoxFuture<'a, Result<ByteStream<'a>, PullError>> + Send + 'a {
        let inner = &*self.inner;
        let (bounded, mut turn) = match permit {
            Permit::Bounded(turn) => (true, turn),
            Permit::Unbounded => (false, None),
        };
        move |offset| {
            let turn = turn.take();
            Box::pin(async move {
                let cancelled = || PullError::Cancelled {
                    reference: image.given().to_owned(),
                };
                let from_turn = match turn {
                    // A dispatcher gone (its pull ended) hands out nothing: queue instead.
                    Some(turn) => turn.await.ok(),
                    None => None,
                };
                let permit = match from_turn {
                    Some(permit) => Some(permit),
                    None if bounded => Some(
                        Arc::clone(&inner.downloads)
                            .acquire_owned()
                            .await
                            .map_err(|_| cancelled())?,
                    ),
                    None => None,
                };
                let stream = inner
                    .registry
                    .blob_stream(
                        image,
                        auth,
                        &desc.digest,
                        desc.size,
                        &desc.media_type,
                        offset,
                    )
                    .await?;
                Ok(stream
                    .map(move |chunk| {
                        let _held = &permit;
                        chunk
                    })
                    .boxed())
            })
        }
    }
}

/// Whether a blob's download counts against the download limit, and its turn if it has one.
enum Permit {
    Bounded(Option<Turn>),
    Unbounded,
}

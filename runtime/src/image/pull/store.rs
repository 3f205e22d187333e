//! What a pull writes into containerd once it knows the manifest: the config, the layers
//! (downloads running in parallel while they are unpacked in order), the manifest and index
//! with their garbage-collection labels, and the image record, all under the pull's lease.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use super::{BlobOutcome, LABEL_UNCOMPRESSED, PullOutcome, Puller, turns};
use crate::containerd::{Blob, Lease, SNAPSHOTTER};
use crate::image::content::LABEL_SOURCE_PREFIX;
use crate::image::manifest::{self, Descriptor, Manifest};
use crate::image::registry::ImageRef;
use crate::image::unpack;
use crate::image::{PullError, PulledImage, RegistryAuth};

impl Puller {
    /// Writes config and layers, unpacks, writes the manifest. Returns what `record` needs.
    /// Boxed, as are the other large steps of a pull: without, each caller's poll frame holds
    /// the step's whole future (a debug build several copies of it), and along the chain of
    /// awaits those frames add up to a worker's stack.
    pub(super) fn store<'a>(
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
            let config_bytes = self
                .config(image, auth, lease, &manifest.config, &source)
                .await?;
            let diff_ids = manifest::diff_ids(&config_bytes, manifest.layers.len(), image.given())?;
            let chain_ids = manifest::chain_ids(&diff_ids);

            // Every layer is announced before any is written: the first reports give the
            // image's size and layer count.
            for layer in &manifest.layers {
                let size = layer.size.max(0) as u64;
                self.report(image.given(), &layer.digest, true, 0, size, false);
            }

            // Layers: start every download now (bounded by the permits, given in layer order),
            // unpack in order as each one lands, so unpacking overlaps the downloads of later
            // layers.
            let (_turns, turns) =
                turns::in_order(Arc::clone(&self.inner.downloads), manifest.layers.len());
            let mut handles: Vec<JoinHandle<Result<BlobOutcome, PullError>>> = manifest
                .layers
                .iter()
                .zip(&diff_ids)
                .zip(turns)
                .map(|((layer, diff_id), turn)| {
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
                        this.layer(&image, &auth, &lease_id, &layer, labels, Some(turn))
                            .await
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
    #[expect(
        clippy::too_many_arguments,
        reason = "the index and the top manifest travel apart from the stored image"
    )]
    pub(super) fn record<'a>(
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
pub(super) struct Stored {
    pub(super) config_digest: String,
    pub(super) chain_id: String,
    pub(super) size: u64,
    pub(super) downloaded: u64,
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

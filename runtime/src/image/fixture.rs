//! A small image for unit tests: uncompressed layers (so a layer's diff ID is its digest), their
//! config and manifest, and what a clean pull leaves of them in a fake containerd.

use std::collections::HashMap;

use super::manifest::{self, OCI_MANIFEST};
use crate::containerd::{Blob, SNAPSHOTTER, fake::FakeContainerd, fake::digest_of};

/// An uncompressed layer's media type: what the fake's Diff service applies.
pub(crate) const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// An image: its blobs and the digests a pull derives from them.
#[derive(Debug, Clone)]
pub(crate) struct TestImage {
    pub(crate) layers: Vec<Vec<u8>>,
    /// The layers' digests, which are their diff IDs too.
    pub(crate) layer_digests: Vec<String>,
    pub(crate) chain_ids: Vec<String>,
    pub(crate) config: Vec<u8>,
    pub(crate) config_digest: String,
    pub(crate) manifest: Vec<u8>,
    pub(crate) manifest_digest: String,
}

impl TestImage {
    /// An image of these layers whose config runs `sh`.
    pub(crate) fn new(layers: &[&str]) -> Self {
        let layers: Vec<Vec<u8>> = layers.iter().map(|l| l.as_bytes().to_vec()).collect();
        let layer_digests: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": layer_digests},
        })
        .to_string()
        .into_bytes();
        let config_digest = digest_of(&config);
        let layer_descriptors: Vec<serde_json::Value> = layers
            .iter()
            .zip(&layer_digests)
            .map(|(l, d)| serde_json::json!({"mediaType": LAYER_TAR, "digest": d, "size": l.len()}))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
            "layers": layer_descriptors,
        })
        .to_string()
        .into_bytes();
        Self {
            chain_ids: manifest::chain_ids(&layer_digests),
            manifest_digest: digest_of(&manifest),
            layers,
            layer_digests,
            config,
            config_digest,
            manifest,
        }
    }

    /// The snapshot containers are prepared from.
    pub(crate) fn chain_id(&self) -> &str {
        self.chain_ids
            .last()
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The image record's target.
    pub(crate) fn target(&self) -> Blob {
        Blob {
            media_type: OCI_MANIFEST.to_owned(),
            digest: self.manifest_digest.clone(),
            size: self.manifest.len() as i64,
        }
    }

    /// Stores what a clean pull of `name` leaves: the blobs with their garbage-collection
    /// labels, the record, and the snapshots.
    pub(crate) fn install(&self, fake: &FakeContainerd, name: &str) {
        let mut refs = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            self.config_digest.clone(),
        )]);
        for (i, layer) in self.layers.iter().enumerate() {
            fake.put_content(layer, HashMap::new());
            refs.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                self.layer_digests[i].clone(),
            );
        }
        let snapshot_ref = HashMap::from([(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            self.chain_id().to_owned(),
        )]);
        fake.put_content(&self.config, snapshot_ref);
        fake.put_content(&self.manifest, refs);
        let mut parent = "";
        for chain in &self.chain_ids {
            fake.put_snapshot(chain, parent);
            parent = chain;
        }
        fake.put_image(name, self.target());
    }
}

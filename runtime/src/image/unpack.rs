//! Unpacking layers into snapshots: for each layer in order, reuse the snapshot named by its
//! chain ID or prepare one on the parent, apply the layer with the Diff service, check the
//! result against the config's diff ID, and commit it under the chain ID.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_client::types::Mount;
use futures::future::BoxFuture;

use super::PullError;
use super::manifest::Descriptor;
use crate::containerd::{Blob, Containerd, ContainerdError, Lease};

/// Whether a committed snapshot with this name exists.
pub(crate) async fn snapshot_exists(
    client: &dyn Containerd,
    name: &str,
) -> Result<bool, ContainerdError> {
    match client.snapshot_stat(name).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Unpacks one layer on top of `parent` (empty for the first layer) into the snapshot
/// `chain_id`, unless it exists already.
pub(crate) fn unpack_layer<'a>(
    client: &'a dyn Containerd,
    lease: &'a Lease,
    layer: &'a Descriptor,
    diff_id: &'a str,
    parent: &'a str,
    chain_id: &'a str,
) -> BoxFuture<'a, Result<(), PullError>> {
    Box::pin(async move {
        if snapshot_exists(client, chain_id).await? {
            return Ok(());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        // containerd's own client names unpack keys "extract-<unique> <chain id>".
        let key = format!(
            "extract-{nanos}-{:06x} {chain_id}",
            rand::random::<u32>() & 0xff_ffff
        );
        let mounts = client
            .snapshot_prepare(Some(lease.id()), &key, parent, HashMap::new())
            .await?;
        let result = apply_and_commit(client, lease, layer, diff_id, &key, chain_id, mounts).await;
        if result.is_err() {
            remove_key(client, &key).await;
        }
        result
    })
}

async fn apply_and_commit(
    client: &dyn Containerd,
    lease: &Lease,
    layer: &Descriptor,
    diff_id: &str,
    key: &str,
    chain_id: &str,
    mounts: Vec<Mount>,
) -> Result<(), PullError> {
    let blob = Blob {
        media_type: layer.media_type.clone(),
        digest: layer.digest.clone(),
        size: layer.size,
    };
    let applied_digest = client
        .diff_apply(Some(lease.id()), blob, mounts)
        .await
        .map_err(|e| PullError::Unpack {
            layer: layer.digest.clone(),
            reason: format!("diff apply: {}", e.message()),
        })?;
    if applied_digest != diff_id {
        return Err(PullError::DigestMismatch {
            kind: "uncompressed layer",
            digest: layer.digest.clone(),
            reason: format!("the image config says {diff_id}, unpacking produced {applied_digest}"),
        });
    }
    match client
        .snapshot_commit(Some(lease.id()), key, chain_id)
        .await
    {
        Ok(()) => Ok(()),
        // Someone else (another pull, another client) committed the same chain meanwhile.
        Err(e) if e.is_already_exists() => {
            remove_key(client, key).await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn remove_key(client: &dyn Containerd, key: &str) {
    if let Err(error) = client.snapshot_remove(key).await
        && !error.is_not_found()
    {
        tracing::warn!(snapshot.key = key, error = %error.message(), "could not remove unpack snapshot");
    }
}

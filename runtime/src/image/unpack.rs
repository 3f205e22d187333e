//! Unpacking layers into snapshots: for each layer in order, reuse the snapshot named by its
//! chain ID or prepare one on the parent, apply the layer with the Diff service, check the
//! result against the config's diff ID, and commit it under the chain ID.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::types::Descriptor as CdDescriptor;
use futures::future::BoxFuture;

use super::PullError;
use super::manifest::Descriptor;
use crate::containerd::{Containerd, ContainerdError, Lease, SNAPSHOTTER};

/// Applying one layer may take a while for large layers on slow disks.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether a committed snapshot with this name exists.
pub(crate) async fn snapshot_exists(
    client: &Containerd,
    name: &str,
) -> Result<bool, ContainerdError> {
    match client
        .snapshots()
        .stat(client.request(StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: name.to_owned(),
        }))
        .await
    {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(ContainerdError::new("snapshot stat", name, &s)),
    }
}

/// Unpacks one layer on top of `parent` (empty for the first layer) into the snapshot
/// `chain_id`, unless it exists already.
pub(crate) fn unpack_layer<'a>(
    client: &'a Containerd,
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
        let mounts = match client
            .snapshots()
            .prepare(client.request_with(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_owned(),
                    key: key.clone(),
                    parent: parent.to_owned(),
                    labels: HashMap::new(),
                },
                Some(lease),
                Some(crate::containerd::CALL_TIMEOUT),
            ))
            .await
        {
            Ok(r) => r.into_inner().mounts,
            Err(s) => return Err(ContainerdError::new("snapshot prepare", &key, &s).into()),
        };
        let result = apply_and_commit(client, lease, layer, diff_id, &key, chain_id, mounts).await;
        if result.is_err() {
            remove_key(client, &key).await;
        }
        result
    })
}

async fn apply_and_commit(
    client: &Containerd,
    lease: &Lease,
    layer: &Descriptor,
    diff_id: &str,
    key: &str,
    chain_id: &str,
    mounts: Vec<containerd_client::types::Mount>,
) -> Result<(), PullError> {
    let applied = client
        .diff()
        .apply(client.request_with(
            ApplyRequest {
                diff: Some(CdDescriptor {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest.clone(),
                    size: layer.size,
                    annotations: HashMap::new(),
                }),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            },
            Some(lease),
            Some(APPLY_TIMEOUT),
        ))
        .await
        .map_err(|s| PullError::Unpack {
            layer: layer.digest.clone(),
            reason: format!("diff apply: {}", s.message()),
        })?
        .into_inner()
        .applied;
    let applied_digest = applied.map(|d| d.digest).unwrap_or_default();
    if applied_digest != diff_id {
        return Err(PullError::DigestMismatch {
            kind: "uncompressed layer",
            digest: layer.digest.clone(),
            reason: format!("the image config says {diff_id}, unpacking produced {applied_digest}"),
        });
    }
    match client
        .snapshots()
        .commit(client.request_with(
            CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                name: chain_id.to_owned(),
                key: key.to_owned(),
                labels: HashMap::new(),
            },
            Some(lease),
            Some(crate::containerd::CALL_TIMEOUT),
        ))
        .await
    {
        Ok(_) => Ok(()),
        // Someone else (another pull, another client) committed the same chain meanwhile.
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            remove_key(client, key).await;
            Ok(())
        }
        Err(s) => Err(ContainerdError::new("snapshot commit", chain_id, &s).into()),
    }
}

async fn remove_key(client: &Containerd, key: &str) {
    if let Err(s) = client
        .snapshots()
        .remove(client.request(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
        }))
        .await
        && s.code() != tonic::Code::NotFound
    {
        tracing::warn!(snapshot.key = key, error = %s.message(), "could not remove unpack snapshot");
    }
}

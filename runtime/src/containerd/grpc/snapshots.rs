//! The Snapshots service (the overlayfs snapshotter) and the Diff service over gRPC.

use std::collections::HashMap;

use async_trait::async_trait;
use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    StatSnapshotRequest,
};
use containerd_client::types::Mount;

use super::{APPLY_TIMEOUT, Answer, CALL_TIMEOUT, Grpc, descriptor};
use crate::containerd::{Blob, ContainerdError, Op, SNAPSHOTTER, SnapshotsService};

#[async_trait]
impl SnapshotsService for Grpc {
    async fn snapshot_stat(&self, key: &str) -> Result<(), ContainerdError> {
        let request = StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
        };
        self.snapshots()
            .stat(self.request(request))
            .await
            .answer(Op::SnapshotStat, key)
            .map(drop)
    }

    async fn snapshot_prepare(
        &self,
        lease: Option<&str>,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let op = Op::SnapshotPrepare;
        let request = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
            parent: parent.to_owned(),
            labels,
        };
        self.snapshots()
            .prepare(self.leased(op, request, lease, Some(CALL_TIMEOUT))?)
            .await
            .answer(op, key)
            .map(|r| r.mounts)
    }

    async fn snapshot_commit(
        &self,
        lease: Option<&str>,
        key: &str,
        name: &str,
    ) -> Result<(), ContainerdError> {
        let op = Op::SnapshotCommit;
        let request = CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
            labels: HashMap::new(),
        };
        self.snapshots()
            .commit(self.leased(op, request, lease, Some(CALL_TIMEOUT))?)
            .await
            .answer(op, name)
            .map(drop)
    }

    async fn snapshot_remove(&self, key: &str) -> Result<(), ContainerdError> {
        let request = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
        };
        self.snapshots()
            .remove(self.request(request))
            .await
            .answer(Op::SnapshotRemove, key)
            .map(drop)
    }

    async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError> {
        let request = MountsRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
        };
        self.snapshots()
            .mounts(self.request(request))
            .await
            .answer(Op::SnapshotMounts, key)
            .map(|r| r.mounts)
    }

    async fn diff_apply(
        &self,
        lease: Option<&str>,
        layer: Blob,
        mounts: Vec<Mount>,
    ) -> Result<String, ContainerdError> {
        let op = Op::DiffApply;
        let digest = layer.digest.clone();
        let request = ApplyRequest {
            diff: Some(descriptor(layer)),
            mounts,
            payloads: HashMap::new(),
            sync_fs: false,
        };
        self.diff()
            .apply(self.leased(op, request, lease, Some(APPLY_TIMEOUT))?)
            .await
            .answer(op, &digest)
            .map(|r| r.applied.map(|d| d.digest).unwrap_or_default())
    }
}

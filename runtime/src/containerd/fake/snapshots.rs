//! The fake's Snapshots and Diff services: snapshots by key with their parents, and a layer
//! applied as an uncompressed tar.

use std::collections::HashMap;

use async_trait::async_trait;
use containerd_client::types::Mount;
use tonic::Code;

use super::{FakeContainerd, Snapshot, digest_of, exists, not_found, status};
use crate::containerd::{Blob, ContainerdError, Op, SNAPSHOTTER, SnapshotsService};

fn overlay(key: &str) -> Vec<Mount> {
    vec![Mount {
        r#type: "overlay".to_owned(),
        source: "overlay".to_owned(),
        target: String::new(),
        options: vec![format!("upperdir=/fake/{key}")],
    }]
}

#[async_trait]
impl SnapshotsService for FakeContainerd {
    async fn snapshot_stat(&self, key: &str) -> Result<(), ContainerdError> {
        let op = Op::SnapshotStat;
        let state = self.begin(op, key)?;
        let found = state.snapshots.contains_key(key);
        found.then_some(()).ok_or_else(|| not_found(op, key))
    }

    async fn snapshot_prepare(
        &self,
        lease: Option<&str>,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let op = Op::SnapshotPrepare;
        let mut state = self.begin(op, key)?;
        if state.snapshots.contains_key(key) {
            return Err(exists(op, key));
        }
        if !parent.is_empty() && !state.snapshots.get(parent).is_some_and(|s| s.committed) {
            return Err(not_found(op, parent));
        }
        let snapshot = Snapshot {
            parent: parent.to_owned(),
            committed: false,
            labels,
        };
        state.snapshots.insert(key.to_owned(), snapshot);
        state.hold(lease, &format!("snapshots/{SNAPSHOTTER}"), key);
        Ok(overlay(key))
    }

    async fn snapshot_commit(
        &self,
        lease: Option<&str>,
        key: &str,
        name: &str,
    ) -> Result<(), ContainerdError> {
        let op = Op::SnapshotCommit;
        let mut state = self.begin(op, name)?;
        if state.snapshots.get(key).is_none_or(|s| s.committed) {
            return Err(not_found(op, key));
        }
        if state.snapshots.contains_key(name) {
            return Err(exists(op, name));
        }
        if let Some(mut snapshot) = state.snapshots.remove(key) {
            snapshot.committed = true;
            state.snapshots.insert(name.to_owned(), snapshot);
        }
        state.hold(lease, &format!("snapshots/{SNAPSHOTTER}"), name);
        Ok(())
    }

    async fn snapshot_remove(&self, key: &str) -> Result<(), ContainerdError> {
        let op = Op::SnapshotRemove;
        let mut state = self.begin(op, key)?;
        if state.snapshots.values().any(|s| s.parent == key) {
            return Err(status(
                op,
                key,
                Code::FailedPrecondition,
                "snapshot has children",
            ));
        }
        let removed = state.snapshots.remove(key);
        removed.map(|_| ()).ok_or_else(|| not_found(op, key))
    }

    async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError> {
        let op = Op::SnapshotMounts;
        let state = self.begin(op, key)?;
        let active = state.snapshots.get(key).is_some_and(|s| !s.committed);
        active
            .then(|| overlay(key))
            .ok_or_else(|| not_found(op, key))
    }

    /// Applies the layer as an uncompressed tar: what was applied is the blob itself.
    async fn diff_apply(
        &self,
        _lease: Option<&str>,
        layer: Blob,
        _mounts: Vec<Mount>,
    ) -> Result<String, ContainerdError> {
        let op = Op::DiffApply;
        let state = self.begin(op, &layer.digest)?;
        let content = state.content.get(&layer.digest);
        content
            .map(|c| digest_of(&c.data))
            .ok_or_else(|| not_found(op, &layer.digest))
    }
}

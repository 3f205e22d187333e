//! The fake's Leases, Content and Images services. A content Write stream answers each
//! request as containerd does: the ingest's offset, the bytes written, and a commit that checks
//! size and digest.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_client::services::v1::{WriteAction, WriteContentRequest, WriteContentResponse};
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::Code;

use super::{Content, FakeContainerd, State, digest_of, exists, not_found, status};
use crate::containerd::{
    Blob, ContainerdError, ContentService, ImageRecord, ImagesService, LeasesService, Op,
    WriteResponses,
};

impl State {
    /// One request on a content Write stream, answered as containerd answers it.
    fn write(
        &mut self,
        lease: &str,
        req: WriteContentRequest,
    ) -> Result<WriteContentResponse, ContainerdError> {
        let op = Op::ContentWrite;
        let digest = req.expected.clone();
        let answer = |action: WriteAction, offset: usize| WriteContentResponse {
            action: action as i32,
            offset: offset as i64,
            total: req.total,
            digest: String::new(),
            ..Default::default()
        };
        match WriteAction::try_from(req.action) {
            Ok(WriteAction::Stat) => {
                if self.content.contains_key(&digest) {
                    return Err(exists(op, &digest));
                }
                let ingest = self.ingests.entry(req.r#ref.clone()).or_default();
                Ok(answer(WriteAction::Stat, ingest.len()))
            }
            Ok(WriteAction::Write) => {
                let ingest = self.ingests.entry(req.r#ref.clone()).or_default();
                let offset = usize::try_from(req.offset).unwrap_or(usize::MAX);
                if offset > ingest.len() {
                    return Err(status(
                        op,
                        &digest,
                        Code::InvalidArgument,
                        "write beyond the ingest's end",
                    ));
                }
                ingest.truncate(offset);
                ingest.extend_from_slice(&req.data);
                Ok(answer(WriteAction::Write, ingest.len()))
            }
            Ok(WriteAction::Commit) => {
                let data = self.ingests.get(&req.r#ref).cloned().unwrap_or_default();
                let refused = |message: String| {
                    status(
                        op,
                        &digest,
                        Code::FailedPrecondition,
                        format!("{message}: failed precondition"),
                    )
                };
                if req.total > 0 && data.len() as i64 != req.total {
                    return Err(refused(format!(
                        "unexpected commit size {}, expected {}",
                        data.len(),
                        req.total
                    )));
                }
                let actual = digest_of(&data);
                if actual != digest {
                    return Err(refused(format!(
                        "unexpected commit digest {actual}, expected {digest}"
                    )));
                }
                if self.content.contains_key(&digest) {
                    return Err(exists(op, &digest));
                }
                self.ingests.remove(&req.r#ref);
                let len = data.len();
                let labels = req.labels.clone();
                self.content
                    .insert(digest.clone(), Content { data, labels });
                self.hold(Some(lease), "content", &digest);
                let mut committed = answer(WriteAction::Commit, len);
                committed.digest = digest;
                Ok(committed)
            }
            Err(_) => Err(status(op, &digest, Code::InvalidArgument, "unknown action")),
        }
    }
}

#[async_trait]
impl LeasesService for FakeContainerd {
    async fn lease_create(
        &self,
        id: &str,
        _labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let op = Op::LeaseCreate;
        let mut state = self.begin(op, id)?;
        if state.leases.contains_key(id) {
            return Err(exists(op, id));
        }
        state.leases.insert(id.to_owned(), BTreeSet::new());
        self.answer(&state, op)
    }

    async fn lease_add_resource(
        &self,
        lease: &str,
        kind: &str,
        id: &str,
    ) -> Result<(), ContainerdError> {
        let op = Op::LeaseAddResource;
        let mut state = self.begin(op, id)?;
        let resources = state
            .leases
            .get_mut(lease)
            .ok_or_else(|| not_found(op, lease))?;
        resources.insert((kind.to_owned(), id.to_owned()));
        Ok(())
    }

    async fn lease_delete(&self, id: &str, sync: bool) -> Result<(), ContainerdError> {
        let op = Op::LeaseDelete;
        let mut state = self.begin(op, id)?;
        state.leases.remove(id).ok_or_else(|| not_found(op, id))?;
        state.released.push((id.to_owned(), sync));
        if sync {
            state.collect();
        }
        self.answer(&state, op)
    }

    async fn lease_list(&self) -> Result<Vec<String>, ContainerdError> {
        let state = self.begin(Op::LeaseList, "")?;
        Ok(state.leases.keys().cloned().collect())
    }
}

#[async_trait]
impl ContentService for FakeContainerd {
    async fn content_info(&self, digest: &str) -> Result<HashMap<String, String>, ContainerdError> {
        let op = Op::ContentInfo;
        let state = self.begin(op, digest)?;
        let content = state.content.get(digest);
        content
            .map(|c| c.labels.clone())
            .ok_or_else(|| not_found(op, digest))
    }

    async fn content_update_labels(
        &self,
        lease: Option<&str>,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let op = Op::ContentUpdate;
        let mut state = self.begin(op, digest)?;
        let content = state
            .content
            .get_mut(digest)
            .ok_or_else(|| not_found(op, digest))?;
        content.labels.extend(labels);
        state.hold(lease, "content", digest);
        Ok(())
    }

    async fn content_read(&self, digest: &str) -> Result<Vec<u8>, ContainerdError> {
        let op = Op::ContentRead;
        let state = self.begin(op, digest)?;
        let content = state.content.get(digest);
        content
            .map(|c| c.data.clone())
            .ok_or_else(|| not_found(op, digest))
    }

    async fn content_status(&self, reference: &str) -> Result<Option<i64>, ContainerdError> {
        let op = Op::ContentStatus;
        let state = self.begin(op, reference)?;
        let ingest = state.ingests.get(reference);
        ingest
            .map(|data| Some(data.len() as i64))
            .ok_or_else(|| not_found(op, reference))
    }

    async fn content_abort(&self, reference: &str) -> Result<(), ContainerdError> {
        let op = Op::ContentAbort;
        let mut state = self.begin(op, reference)?;
        let removed = state.ingests.remove(reference);
        removed.map(|_| ()).ok_or_else(|| not_found(op, reference))
    }

    async fn content_write(
        &self,
        lease: &str,
        digest: &str,
        requests: mpsc::Receiver<WriteContentRequest>,
    ) -> Result<WriteResponses, ContainerdError> {
        drop(self.begin(Op::ContentWrite, digest)?);
        let state = Arc::clone(&self.state);
        let lease = lease.to_owned();
        // One answer a request; containerd ends the stream after an error.
        let answers = futures::stream::unfold(Some(requests), move |requests| {
            let (state, lease) = (Arc::clone(&state), lease.clone());
            async move {
                let mut requests = requests?;
                let request = requests.recv().await?;
                let answer = state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write(&lease, request);
                let next = answer.is_ok().then_some(requests);
                Some((answer, next))
            }
        });
        Ok(answers.boxed())
    }
}

#[async_trait]
impl ImagesService for FakeContainerd {
    async fn image_get(&self, name: &str) -> Result<Option<Blob>, ContainerdError> {
        let op = Op::ImageGet;
        let state = self.begin(op, name)?;
        let target = state.images.get(name).cloned();
        target.map(Some).ok_or_else(|| not_found(op, name))
    }

    async fn image_create(
        &self,
        _lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        let op = Op::ImageCreate;
        let mut state = self.begin(op, name)?;
        if state.images.contains_key(name) {
            return Err(exists(op, name));
        }
        state.images.insert(name.to_owned(), target);
        Ok(())
    }

    async fn image_update(
        &self,
        _lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        let op = Op::ImageUpdate;
        let mut state = self.begin(op, name)?;
        let image = state
            .images
            .get_mut(name)
            .ok_or_else(|| not_found(op, name))?;
        *image = target;
        Ok(())
    }

    async fn image_list(&self) -> Result<Vec<ImageRecord>, ContainerdError> {
        let state = self.begin(Op::ImageList, "")?;
        Ok(state
            .images
            .iter()
            .map(|(name, target)| ImageRecord {
                name: name.clone(),
                target: target.clone(),
                updated_at: None,
            })
            .collect())
    }

    async fn image_delete(&self, name: &str, sync: bool) -> Result<(), ContainerdError> {
        let op = Op::ImageDelete;
        let mut state = self.begin(op, name)?;
        if state.images.remove(name).is_none() {
            return Err(not_found(op, name));
        }
        if sync {
            state.collect();
        }
        Ok(())
    }
}

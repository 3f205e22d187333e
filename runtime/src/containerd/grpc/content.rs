//! The Leases, Content and Images services over gRPC.

use std::collections::HashMap;

use async_trait::async_trait;
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, CreateImageRequest, CreateRequest, DeleteImageRequest,
    DeleteRequest, GetImageRequest, Image, Info, InfoRequest, ListImagesRequest, ListRequest,
    ReadContentRequest, Resource, StatusRequest, UpdateImageRequest, UpdateRequest,
    WriteContentRequest,
};
use futures::StreamExt;
use prost_types::FieldMask;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Answer, CALL_TIMEOUT, Grpc, descriptor};
use crate::containerd::{
    Blob, ContainerdError, ContentService, ImageRecord, ImagesService, LeasesService, Op,
    WriteResponses,
};

/// The deadline of an image delete that waits for containerd's garbage collector, which walks
/// every object of the namespace and removes snapshots on disk.
const IMAGE_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Grpc {
    async fn image_write(
        &self,
        op: Op,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        let image = Image {
            name: name.to_owned(),
            labels: HashMap::new(),
            target: Some(descriptor(target)),
            created_at: None,
            updated_at: None,
        };
        let mut images = self.images();
        if op == Op::ImageUpdate {
            let request = UpdateImageRequest {
                image: Some(image),
                update_mask: None,
                source_date_epoch: None,
            };
            let request = self.leased(op, request, lease, Some(CALL_TIMEOUT))?;
            images.update(request).await.answer(op, name)?;
        } else {
            let request = CreateImageRequest {
                image: Some(image),
                source_date_epoch: None,
            };
            let request = self.leased(op, request, lease, Some(CALL_TIMEOUT))?;
            images.create(request).await.answer(op, name)?;
        }
        Ok(())
    }
}

#[async_trait]
impl LeasesService for Grpc {
    async fn lease_create(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let request = CreateRequest {
            id: id.to_owned(),
            labels,
        };
        self.leases()
            .create(self.request(request))
            .await
            .answer(Op::LeaseCreate, id)
            .map(drop)
    }

    async fn lease_add_resource(
        &self,
        lease: &str,
        kind: &str,
        id: &str,
    ) -> Result<(), ContainerdError> {
        let request = AddResourceRequest {
            id: lease.to_owned(),
            resource: Some(Resource {
                id: id.to_owned(),
                r#type: kind.to_owned(),
            }),
        };
        self.leases()
            .add_resource(self.request(request))
            .await
            .answer(Op::LeaseAddResource, id)
            .map(drop)
    }

    async fn lease_delete(&self, id: &str, sync: bool) -> Result<(), ContainerdError> {
        let request = DeleteRequest {
            id: id.to_owned(),
            sync,
        };
        self.leases()
            .delete(self.request(request))
            .await
            .answer(Op::LeaseDelete, id)
            .map(drop)
    }

    async fn lease_list(&self) -> Result<Vec<String>, ContainerdError> {
        let request = ListRequest {
            filters: Vec::new(),
        };
        let answer = self
            .leases()
            .list(self.request(request))
            .await
            .answer(Op::LeaseList, "")?;
        Ok(answer.leases.into_iter().map(|l| l.id).collect())
    }
}

#[async_trait]
impl ContentService for Grpc {
    async fn content_info(&self, digest: &str) -> Result<HashMap<String, String>, ContainerdError> {
        let request = InfoRequest {
            digest: digest.to_owned(),
        };
        self.content()
            .info(self.request(request))
            .await
            .answer(Op::ContentInfo, digest)
            .map(|r| r.info.map(|i| i.labels).unwrap_or_default())
    }

    async fn content_update_labels(
        &self,
        lease: Option<&str>,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let op = Op::ContentUpdate;
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let request = UpdateRequest {
            info: Some(Info {
                digest: digest.to_owned(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths }),
        };
        self.content()
            .update(self.leased(op, request, lease, Some(CALL_TIMEOUT))?)
            .await
            .answer(op, digest)
            .map(drop)
    }

    async fn content_read(&self, digest: &str) -> Result<Vec<u8>, ContainerdError> {
        let op = Op::ContentRead;
        let request = ReadContentRequest {
            digest: digest.to_owned(),
            offset: 0,
            size: 0,
        };
        let mut stream = self
            .content()
            .read(self.request(request))
            .await
            .answer(op, digest)?;
        let mut out = Vec::new();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|s| ContainerdError::new(op, digest, &s))?;
            out.extend_from_slice(&msg.data);
        }
        Ok(out)
    }

    async fn content_status(&self, reference: &str) -> Result<Option<i64>, ContainerdError> {
        let request = StatusRequest {
            r#ref: reference.to_owned(),
        };
        self.content()
            .status(self.request(request))
            .await
            .answer(Op::ContentStatus, reference)
            .map(|r| r.status.map(|s| s.offset))
    }

    async fn content_abort(&self, reference: &str) -> Result<(), ContainerdError> {
        let request = AbortRequest {
            r#ref: reference.to_owned(),
        };
        self.content()
            .abort(self.request(request))
            .await
            .answer(Op::ContentAbort, reference)
            .map(drop)
    }

    async fn content_write(
        &self,
        lease: &str,
        digest: &str,
        requests: mpsc::Receiver<WriteContentRequest>,
    ) -> Result<WriteResponses, ContainerdError> {
        let op = Op::ContentWrite;
        let request = self.leased(op, ReceiverStream::new(requests), Some(lease), None)?;
        let responses = self.content().write(request).await.answer(op, digest)?;
        let digest = digest.to_owned();
        Ok(responses
            .map(move |r| r.map_err(|s| ContainerdError::new(op, &digest, &s)))
            .boxed())
    }
}

#[async_trait]
impl ImagesService for Grpc {
    async fn image_get(&self, name: &str) -> Result<Option<Blob>, ContainerdError> {
        let request = GetImageRequest {
            name: name.to_owned(),
        };
        let image = self
            .images()
            .get(self.request(request))
            .await
            .answer(Op::ImageGet, name)?
            .image;
        Ok(image.and_then(|i| i.target).map(|t| Blob {
            media_type: t.media_type,
            digest: t.digest,
            size: t.size,
        }))
    }

    async fn image_create(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        self.image_write(Op::ImageCreate, lease, name, target).await
    }

    async fn image_update(
        &self,
        lease: Option<&str>,
        name: &str,
        target: Blob,
    ) -> Result<(), ContainerdError> {
        self.image_write(Op::ImageUpdate, lease, name, target).await
    }

    async fn image_list(&self) -> Result<Vec<ImageRecord>, ContainerdError> {
        let request = ListImagesRequest {
            filters: Vec::new(),
        };
        let images = self
            .images()
            .list(self.request(request))
            .await
            .answer(Op::ImageList, "")?
            .images;
        Ok(images
            .into_iter()
            .filter_map(|i| {
                let target = i.target?;
                let updated_at = i
                    .updated_at
                    .or(i.created_at)
                    .and_then(|t| std::time::SystemTime::try_from(t).ok());
                Some(ImageRecord {
                    name: i.name,
                    target: Blob {
                        media_type: target.media_type,
                        digest: target.digest,
                        size: target.size,
                    },
                    updated_at,
                })
            })
            .collect())
    }

    async fn image_delete(&self, name: &str, sync: bool) -> Result<(), ContainerdError> {
        let request = DeleteImageRequest {
            name: name.to_owned(),
            sync,
            target: None,
        };
        let timeout = if sync {
            IMAGE_DELETE_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        self.images()
            .delete(self.scoped(request, None, Some(timeout)))
            .await
            .answer(Op::ImageDelete, name)?;
        Ok(())
    }
}

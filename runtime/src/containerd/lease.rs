//! containerd leases: everything a pull writes is held by a lease until the image record and
//! its garbage-collection labels reference it, so the collector never takes half-pulled content.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{AddResourceRequest, CreateRequest, DeleteRequest, Resource};
use tonic::metadata::{Ascii, MetadataValue};

use super::{Containerd, ContainerdError};

/// How long an abandoned lease (the agent died mid-pull) keeps its content before containerd's
/// collector may take it, as containerd's own client does.
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A lease owned by one operation. Release it with [`Lease::release`] on every path; a lease
/// that is dropped unreleased is deleted in the background (and expires after 24 h regardless).
#[derive(Debug)]
pub(crate) struct Lease {
    id: String,
    header: MetadataValue<Ascii>,
    client: Containerd,
    /// Only the owner deletes the lease; borrowed handles just name it in requests.
    owned: bool,
}

impl Lease {
    pub(crate) async fn create(
        client: &Containerd,
        purpose: &str,
    ) -> Result<Self, ContainerdError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("berth-{purpose}-{nanos}-{:08x}", rand::random::<u32>());
        let expire = crate::time::rfc3339(SystemTime::now() + LEASE_EXPIRY);
        let labels = HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]);
        client
            .leases()
            .create(client.request(CreateRequest {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(|s| ContainerdError::new("create lease", &id, &s))?;
        let header = id.parse().map_err(|_| {
            ContainerdError::new(
                "create lease",
                &id,
                &tonic::Status::internal("lease id is not ASCII"),
            )
        })?;
        Ok(Self {
            id,
            header,
            client: client.clone(),
            owned: true,
        })
    }

    /// A handle on a lease created and released by someone else (a spawned download working
    /// for the pull that owns the lease).
    pub(crate) fn borrowed(client: &Containerd, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            header: id
                .parse()
                .unwrap_or_else(|_| MetadataValue::from_static("invalid-lease-id")),
            client: client.clone(),
            owned: false,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn header(&self) -> &MetadataValue<Ascii> {
        &self.header
    }

    /// Adds an object that exists already to the lease, so the collector keeps it for as long
    /// as the lease lives. `kind` is containerd's resource type: "content" or
    /// "snapshots/<snapshotter>".
    pub(crate) async fn hold(&self, kind: &str, id: &str) -> Result<(), ContainerdError> {
        let client = &self.client;
        client
            .leases()
            .add_resource(client.request(AddResourceRequest {
                id: self.id.clone(),
                resource: Some(Resource {
                    id: id.to_owned(),
                    r#type: kind.to_owned(),
                }),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ContainerdError::new("lease add resource", id, &s))
    }

    /// Deletes the lease. With `collect`, containerd runs its garbage collector before
    /// answering, so whatever only the lease held is gone when this returns.
    pub(crate) async fn release(mut self, collect: bool) -> Result<(), ContainerdError> {
        if !std::mem::replace(&mut self.owned, false) {
            return Ok(());
        }
        delete(&self.client, &self.id, collect).await
    }
}

async fn delete(client: &Containerd, id: &str, sync: bool) -> Result<(), ContainerdError> {
    match client
        .leases()
        .delete(client.request(DeleteRequest {
            id: id.to_owned(),
            sync,
        }))
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(ContainerdError::new("delete lease", id, &s)),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.owned, false) {
            let client = self.client.clone();
            let id = std::mem::take(&mut self.id);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(error) = delete(&client, &id, false).await {
                        tracing::warn!(lease.id = %id, %error, "could not delete abandoned lease; it expires within 24h");
                    }
                });
            }
        }
    }
}

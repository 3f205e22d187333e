//! containerd leases: everything a pull writes is held by a lease until the image record and
//! its garbage-collection labels reference it, so the collector never takes half-pulled content.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Containerd, ContainerdError};

/// How long an abandoned lease (the agent died mid-pull) keeps its content before containerd's
/// collector may take it, as containerd's own client does.
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A lease owned by one operation. Release it with [`Lease::release`] on every path; a lease
/// that is dropped unreleased is deleted in the background (and expires after 24 h regardless).
#[derive(Debug)]
pub(crate) struct Lease {
    id: String,
    client: Arc<dyn Containerd>,
    /// Only the owner deletes the lease; borrowed handles just name it in requests.
    owned: bool,
}

impl Lease {
    pub(crate) async fn create(
        client: &Arc<dyn Containerd>,
        purpose: &str,
    ) -> Result<Self, ContainerdError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("{PREFIX}{purpose}-{nanos}-{:08x}", rand::random::<u32>());
        let expire = crate::time::rfc3339(SystemTime::now() + LEASE_EXPIRY);
        let labels = HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]);
        client.lease_create(&id, labels).await?;
        Ok(Self {
            id,
            client: Arc::clone(client),
            owned: true,
        })
    }

    /// A handle on a lease created and released by someone else (a spawned download working
    /// for the pull that owns the lease).
    pub(crate) fn borrowed(client: &Arc<dyn Containerd>, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            client: Arc::clone(client),
            owned: false,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Adds an object that exists already to the lease, so the collector keeps it for as long
    /// as the lease lives. `kind` is containerd's resource type: "content" or
    /// "snapshots/<snapshotter>".
    pub(crate) async fn hold(&self, kind: &str, id: &str) -> Result<(), ContainerdError> {
        self.client.lease_add_resource(&self.id, kind, id).await
    }

    /// Deletes the lease. With `collect`, containerd runs its garbage collector before
    /// answering, so whatever only the lease held is gone when this returns.
    pub(crate) async fn release(mut self, collect: bool) -> Result<(), ContainerdError> {
        if !std::mem::replace(&mut self.owned, false) {
            return Ok(());
        }
        delete(&*self.client, &self.id, collect).await
    }
}

/// The prefix of every lease the runtime makes ([`Lease::create`]).
const PREFIX: &str = "berth-";

/// Deletes the leases an earlier run of the agent made and never released (it was killed
/// mid-pull): no operation of this process holds one yet when it is called at start, and
/// waiting 24 h for their expiry would keep what they hold (half-pulled content, a snapshot
/// being unpacked) that long. The last delete runs containerd's collector. Returns the IDs.
pub(crate) async fn release_abandoned(
    client: &dyn Containerd,
) -> Result<Vec<String>, ContainerdError> {
    let abandoned: Vec<String> = client
        .lease_list()
        .await?
        .into_iter()
        .filter(|id| id.starts_with(PREFIX))
        .collect();
    for (i, id) in abandoned.iter().enumerate() {
        delete(client, id, i + 1 == abandoned.len()).await?;
    }
    Ok(abandoned)
}

/// Deletes a lease; one that is gone already is fine.
async fn delete(client: &dyn Containerd, id: &str, sync: bool) -> Result<(), ContainerdError> {
    match client.lease_delete(id, sync).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.owned, false) {
            let client = Arc::clone(&self.client);
            let id = std::mem::take(&mut self.id);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(error) = delete(&*client, &id, false).await {
                        tracing::warn!(lease.id = %id, %error, "could not delete abandoned lease; it expires within 24h");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::containerd::Op;
    use crate::containerd::fake::FakeContainerd;

    #[tokio::test]
    async fn an_owned_lease_dropped_unreleased_is_deleted_in_the_background() {
        let fake = FakeContainerd::new();
        let client: Arc<dyn Containerd> = fake.clone();
        let lease = Lease::create(&client, "pull").await.unwrap();
        let id = lease.id().to_owned();
        assert!(id.starts_with("berth-pull-"), "{id}");
        // A borrowed handle never deletes what it names.
        drop(Lease::borrowed(&client, &id));
        drop(lease);
        for _ in 0..10 {
            if fake.leases().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(fake.released(), [(id, false)]);
        assert!(fake.leases().is_empty());
    }

    #[tokio::test]
    async fn a_lease_that_is_gone_already_is_released_all_the_same() {
        let fake = FakeContainerd::new();
        let client: Arc<dyn Containerd> = fake.clone();
        let lease = Lease::create(&client, "pull").await.unwrap();
        fake.fail(Op::LeaseDelete, Code::NotFound, "lease not found");
        lease.release(true).await.unwrap();
        fake.fail(Op::LeaseCreate, Code::Unavailable, "connection refused");
        let err = Lease::create(&client, "pull").await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn leases_an_earlier_run_abandoned_are_released_and_others_kept() {
        let fake = FakeContainerd::new();
        let client: Arc<dyn Containerd> = fake.clone();
        let abandoned = Lease::create(&client, "pull").await.unwrap();
        let id = abandoned.id().to_owned();
        std::mem::forget(abandoned);
        client
            .lease_create("someone-else", HashMap::new())
            .await
            .unwrap();
        assert_eq!(
            release_abandoned(&*client).await.unwrap(),
            std::slice::from_ref(&id)
        );
        assert_eq!(fake.leases(), ["someone-else"]);
        assert_eq!(
            fake.released().last(),
            Some(&(id, true)),
            "the collector ran"
        );
        assert!(release_abandoned(&*client).await.unwrap().is_empty());
    }
}

//! [`Grpc`]: the real [`Containerd`], one gRPC channel to containerd's socket. Every request
//! carries the namespace header, the lease header when it has a lease, and a deadline
//! ([`CALL_TIMEOUT`], longer for a layer's apply, none for the waits and the content write);
//! every failure becomes a [`ContainerdError`] naming the call and its object.

mod content;
mod snapshots;
mod tasks;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::types::Descriptor;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::{Blob, CALL_TIMEOUT, ConnectError, Containerd, ContainerdError, Op};

/// Applying one layer may take a while for large layers on slow disks.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message containerd may answer with (a content read's chunk).
const MAX_MESSAGE: usize = 64 << 20;

/// A connected containerd client scoped to one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Grpc {
    channel: Channel,
    namespace: MetadataValue<Ascii>,
    namespace_name: String,
}

impl Grpc {
    /// Connects to the socket and checks that containerd answers.
    pub(crate) async fn connect(socket: &Path, namespace: &str) -> Result<Self, ConnectError> {
        let connect_error = |reason: String| ConnectError {
            socket: socket.to_path_buf(),
            reason,
        };
        if !socket.exists() {
            return Err(connect_error("the socket does not exist".into()));
        }
        let namespace_value = namespace
            .parse()
            .map_err(|_| connect_error(format!("namespace {namespace:?} is not valid ASCII")))?;
        let channel = tokio::time::timeout(
            CONNECT_TIMEOUT,
            containerd_client::connect(socket.to_path_buf()),
        )
        .await
        .map_err(|_| connect_error(format!("timed out after {}s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| connect_error(e.to_string()))?;
        let this = Self {
            channel,
            namespace: namespace_value,
            namespace_name: namespace.to_owned(),
        };
        this.version()
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(this)
    }

    /// A client that connects on first use only (to a socket nobody serves), for tests that
    /// build futures without sending them. Needs a tokio runtime.
    #[cfg(test)]
    pub(crate) fn unconnected(namespace: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_static("http://[::1]:1").connect_lazy();
        Self {
            channel,
            namespace: namespace
                .parse()
                .unwrap_or_else(|_| MetadataValue::from_static("invalid-namespace")),
            namespace_name: namespace.to_owned(),
        }
    }

    /// A request in Berth's namespace with the default deadline.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.scoped(message, None, Some(CALL_TIMEOUT))
    }

    /// A request in Berth's namespace under a lease (refused when its ID cannot be a header),
    /// with an optional deadline.
    fn leased<T>(
        &self,
        op: Op,
        message: T,
        lease: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<tonic::Request<T>, ContainerdError> {
        let header = lease
            .map(|id| {
                id.parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ContainerdError::invalid(op, id, "the lease ID is not ASCII"))
            })
            .transpose()?;
        Ok(self.scoped(message, header, timeout))
    }

    fn scoped<T>(
        &self,
        message: T,
        lease: Option<MetadataValue<Ascii>>,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        let md = req.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = lease {
            md.insert("containerd-lease", lease);
        }
        if let Some(timeout) = timeout {
            req.set_timeout(timeout);
        }
        req
    }

    fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
    fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

/// containerd's answer to a call, a failure named by the call and its object.
trait Answer<T> {
    fn answer(self, op: Op, object: &str) -> Result<T, ContainerdError>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self, op: Op, object: &str) -> Result<T, ContainerdError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| ContainerdError::new(op, object, &s))
    }
}

fn descriptor(blob: Blob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type,
        digest: blob.digest,
        size: blob.size,
        annotations: HashMap::new(),
    }
}

#[async_trait]
impl Containerd for Grpc {
    fn namespace(&self) -> &str {
        &self.namespace_name
    }

    async fn version(&self) -> Result<String, ContainerdError> {
        let mut req = tonic::Request::new(());
        req.set_timeout(CALL_TIMEOUT);
        VersionClient::new(self.channel.clone())
            .version(req)
            .await
            .answer(Op::Version, "")
            .map(|r| r.version)
    }
}

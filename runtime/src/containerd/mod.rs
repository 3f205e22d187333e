//! The seam to containerd: one gRPC channel, namespace- and lease-scoped requests, deadlines,
//! and the translation of gRPC statuses into [`ContainerdError`]. Nothing above this module
//! builds a `tonic::Request` by hand.

mod lease;

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

pub(crate) use lease::Lease;

/// The snapshotter Berth unpacks into and prepares container root filesystems from.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

/// Deadline for ordinary containerd calls (metadata reads and writes).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed containerd call, with the operation and object it concerned.
#[derive(Debug, Clone, thiserror::Error)]
#[error("containerd {op} {object}: {message} ({code:?})")]
pub struct ContainerdError {
    op: &'static str,
    object: String,
    code: tonic::Code,
    message: String,
}

impl ContainerdError {
    pub(crate) fn new(op: &'static str, object: impl Into<String>, status: &tonic::Status) -> Self {
        Self {
            op,
            object: object.into(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// A call refused before it reached containerd, with an InvalidArgument code.
    pub(crate) fn invalid(op: &'static str, object: impl Into<String>, message: &str) -> Self {
        Self {
            op,
            object: object.into(),
            code: tonic::Code::InvalidArgument,
            message: message.to_owned(),
        }
    }

    /// The object does not exist (containerd's NotFound).
    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound
    }

    /// The object exists already (containerd's AlreadyExists).
    pub fn is_already_exists(&self) -> bool {
        self.code == tonic::Code::AlreadyExists
    }

    /// containerd's message, without the operation context.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Could not reach containerd at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to containerd at {socket}: {reason}; is containerd running and is the socket path right?"
)]
pub struct ConnectError {
    socket: PathBuf,
    reason: String,
}

/// A connected containerd client scoped to one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Containerd {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
    namespace_name: String,
}

impl Containerd {
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
            Duration::from_secs(10),
            containerd_client::connect(socket.to_path_buf()),
        )
        .await
        .map_err(|_| connect_error("timed out after 10s".into()))?
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

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace_name
    }

    /// containerd's version string, e.g. "1.6.20".
    pub(crate) async fn version(&self) -> Result<String, ContainerdError> {
        let mut client = VersionClient::new(self.channel.clone());
        let mut req = tonic::Request::new(());
        req.set_timeout(CALL_TIMEOUT);
        client
            .version(req)
            .await
            .map(|r| r.into_inner().version)
            .map_err(|s| ContainerdError::new("version", "", &s))
    }

    /// A request in Berth's namespace with the default deadline.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.request_with(message, None, Some(CALL_TIMEOUT))
    }

    /// A request in Berth's namespace, optionally under a lease, with an optional deadline.
    pub(crate) fn request_with<T>(
        &self,
        message: T,
        lease: Option<&Lease>,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        let md = req.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = lease {
            md.insert("containerd-lease", lease.header().clone());
        }
        if let Some(timeout) = timeout {
            req.set_timeout(timeout);
        }
        req
    }

    pub(crate) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }
    pub(crate) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    pub(crate) fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    pub(crate) fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    pub(crate) fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    pub(crate) fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub(crate) fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

#[cfg(test)]
impl Containerd {
    /// A client that connects on first use only (to a socket nobody serves), for tests that
    /// build requests or futures without sending them. Needs a tokio runtime.
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
}

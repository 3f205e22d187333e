//! Image pull: resolve a reference against its registry, write every blob into containerd's
//! content store (containerd verifies each digest), unpack the layers into snapshots named by
//! chain ID with the Diff service, and record the image, all under one lease. The labels are
//! the ones containerd's own client sets, so `ctr` and containerd's collector treat Berth's
//! images like their own.

mod auth;
mod capped;
mod content;
mod error;
#[cfg(test)]
pub(crate) mod fixture;
mod hosts;
mod ingest;
mod inventory;
mod local;
mod manifest;
mod pull;
mod registry;
mod single_flight;
mod unpack;

pub(crate) use auth::Credentials;
pub use auth::{CREDENTIAL_COMMAND_DEADLINE, CredentialSources, DEFAULT_TOKEN_TTL};
pub use capped::DEFAULT_MAX_MANIFEST_BYTES;
pub use error::PullError;
pub use hosts::DEFAULT_CERTS_DIR;
pub use inventory::ImageSummary;
pub(crate) use inventory::{cached, list as list_images, remove as remove_image};
pub use local::LocalImageError;
pub(crate) use local::{LocalImage, load as load_local};
pub(crate) use pull::DEFAULT_PULL_TIMEOUT;
pub(crate) use pull::Puller;
pub(crate) use registry::Registry;

/// Credentials for a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials; bearer tokens the registry offers anonymously are still fetched.
    #[default]
    Anonymous,
    /// HTTP basic authentication (also used to obtain bearer tokens from the registry's realm).
    Basic { username: String, password: String },
    /// A ready bearer token.
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// One progress report of a pull: bytes of one blob written to containerd so far. Once the
/// manifest is read, every layer is reported with nothing done yet, so the first reports give
/// the image's whole size and layer count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The reference being pulled, as the caller gave it.
    pub reference: String,
    /// Digest of the blob (a layer or the config).
    pub digest: String,
    /// True for a layer, false for the image config.
    pub layer: bool,
    /// Bytes written so far.
    pub done: u64,
    /// The blob's size from its manifest.
    pub total: u64,
    /// True when the blob was already in the content store and nothing was downloaded.
    pub cached: bool,
}

/// Where progress reports go. Reports are never allowed to slow a pull down.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<PullProgress>;

/// What a successful pull left in containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image record's name: the reference as the caller gave it.
    pub name: String,
    /// Digest of what the reference resolved to (an index or a manifest).
    pub target_digest: String,
    /// Digest of the platform's manifest.
    pub manifest_digest: String,
    /// Digest of the image config.
    pub config_digest: String,
    /// Chain ID of the top layer: the snapshot containers are prepared from.
    pub chain_id: String,
    /// Compressed size of all layers.
    pub size: u64,
    /// Bytes downloaded by this pull (0 when everything was cached).
    pub downloaded: u64,
}

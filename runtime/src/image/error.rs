//! Pull errors: each says what failed and on what (registry, repository, tag, digest).

use crate::containerd::ContainerdError;

/// Why a pull failed. Cloneable, because concurrent pulls of one reference share one outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("manifest unknown: registry {registry} has no tag {tag} for {repository}")]
    ManifestUnknown {
        registry: String,
        repository: String,
        tag: String,
    },
    #[error("repository unknown: registry {registry} has no repository {repository}")]
    RepositoryUnknown {
        registry: String,
        repository: String,
    },
    #[error(
        "registry {registry} refused access to {repository}: {reason}; check the registry credentials"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        reason: String,
    },
    #[error("registry {registry} is unreachable: {reason}")]
    RegistryUnreachable { registry: String, reason: String },
    #[error("registry {registry} failed on {what}: {reason}")]
    Registry {
        registry: String,
        what: String,
        reason: String,
        /// A failure that may pass (5xx, 429, a reset connection, a cut stream): worth another
        /// try within the pull's deadline.
        transient: bool,
    },
    #[error("bad manifest for {what}: {reason}")]
    BadManifest { what: String, reason: String },
    #[error("no {wanted} entry in index {index}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        wanted: String,
        index: String,
        available: Vec<String>,
    },
    #[error("digest mismatch for {kind} {digest}: {reason}")]
    DigestMismatch {
        kind: &'static str,
        digest: String,
        reason: String,
    },
    #[error("{what} timed out after {seconds}s")]
    Timeout { what: String, seconds: u64 },
    #[error(
        "content ingest {ingest} of {digest} is held by another containerd client that wrote nothing to it for {seconds}s; `ctr content active` lists it"
    )]
    IngestHeld {
        digest: String,
        ingest: String,
        seconds: u64,
    },
    #[error("unpacking layer {layer} failed: {reason}")]
    Unpack { layer: String, reason: String },
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error(
        "{what} from registry {registry} is {}, over the cap of {} on manifests, indexes and image configs (the agent's max_manifest_size)",
        super::capped::describe_size(*size, *counted),
        super::capped::mebibytes(*limit)
    )]
    TooLarge {
        registry: String,
        what: String,
        /// The declared size, or (when `counted`) the bytes received when the cap was passed.
        size: u64,
        counted: bool,
        limit: u64,
    },
    /// The registry's certs.d directory or a file it names cannot be used.
    #[error("bad configuration for registry {registry} in {}: {reason}", path.display())]
    RegistryConfig {
        registry: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("pull of {reference} was cancelled")]
    Cancelled { reference: String },
    #[error("cannot get credentials for registry {registry} from {source_name}: {reason}")]
    Credentials {
        registry: String,
        source_name: String,
        reason: String,
    },
    /// Every try failed and the pull's deadline leaves no room for another. The last error is
    /// part of the message, which travels alone (a task's stop reason).
    #[error(
        "registry {registry} failed {tries} {} of {reference} within {seconds}s; last error: {last}",
        if *tries == 1 { "try" } else { "tries" }
    )]
    GaveUp {
        registry: String,
        reference: String,
        tries: u32,
        seconds: u64,
        last: Box<PullError>,
    },
}

impl PullError {
    /// True for a failure another try may not see: an unreachable or failing registry, a cut
    /// download, a timeout. An answer (unknown manifest, refused credentials, bad content) is
    /// final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RegistryUnreachable { .. } | Self::Timeout { .. } => true,
            Self::Registry { transient, .. } => *transient,
            // containerd's collector took content a try found present, or a call's answer was
            // lost when containerd went away mid-call: the next try asks containerd again what
            // it has. A containerd that stays unreachable was waited for already (the runtime's
            // client is patient), and any other refusal of containerd's is an answer.
            Self::Containerd(e) => e.is_content_collected() || e.is_answer_lost(),
            Self::GaveUp { .. }
            | Self::InvalidReference { .. }
            | Self::ManifestUnknown { .. }
            | Self::RepositoryUnknown { .. }
            | Self::Unauthorized { .. }
            | Self::BadManifest { .. }
            | Self::NoMatchingPlatform { .. }
            | Self::DigestMismatch { .. }
            | Self::IngestHeld { .. }
            | Self::Unpack { .. }
            | Self::TooLarge { .. }
            | Self::RegistryConfig { .. }
            | Self::Cancelled { .. }
            | Self::Credentials { .. } => false,
        }
    }
}

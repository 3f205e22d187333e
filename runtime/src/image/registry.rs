//! The registry side of a pull, over oci-client: reference parsing, manifest fetches and blob
//! streams, with registry answers turned into [`PullError`]s that name registry and repository.
//! A pull reads through the [`Distribution`] trait, so its unit tests serve images from memory.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::{PullError, RegistryAuth};

mod fetch;

/// How long to wait for a TCP connection to a registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent while sending a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed image reference.
#[derive(Debug, Clone)]
pub(crate) struct ImageRef {
    inner: Reference,
    given: String,
}

impl ImageRef {
    pub(crate) fn parse(reference: &str) -> Result<Self, PullError> {
        let inner: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| PullError::InvalidReference {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            inner,
            given: reference.to_owned(),
        })
    }

    /// The reference as the caller wrote it (the image record's name).
    pub(crate) fn given(&self) -> &str {
        &self.given
    }
    /// The registry host as written in the reference (`docker.io`, `127.0.0.1:5000`).
    pub(crate) fn registry(&self) -> &str {
        self.inner.registry()
    }
    pub(crate) fn repository(&self) -> &str {
        self.inner.repository()
    }
    /// The tag, or the digest when the reference pins one.
    pub(crate) fn tag_or_digest(&self) -> String {
        self.inner
            .digest()
            .or(self.inner.tag())
            .unwrap_or("latest")
            .to_owned()
    }
    /// The same repository at another digest (to fetch a manifest named by an index).
    pub(crate) fn with_digest(&self, digest: &str) -> Self {
        Self {
            inner: self.inner.clone_with_digest(digest.to_owned()),
            given: self.given.clone(),
        }
    }
}

/// The bytes of a blob, from some offset on.
pub(crate) type BlobStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// What a pull reads from a registry (the OCI distribution API).
#[async_trait]
pub(crate) trait Distribution: Send + Sync + std::fmt::Debug {
    /// The manifest or index the reference names: its bytes and digest. An answer of more
    /// than `limit` bytes fails with [`PullError::TooLarge`], and no more than `limit` bytes
    /// of it are ever held.
    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        auth: &RegistryAuth,
        limit: u64,
    ) -> Result<(Bytes, String), PullError>;
    /// A blob's bytes from `offset` on.
    async fn blob_stream(
        &self,
        image: &ImageRef,
        digest: &str,
        size: i64,
        media_type: &str,
        offset: u64,
    ) -> Result<BlobStream, PullError>;
}

/// A registry client shared by all pulls of one runtime.
#[derive(Clone)]
pub(crate) struct Registry {
    client: Client,
    manifests: std::sync::Arc<fetch::ManifestFetcher>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// HTTPS everywhere except the registries listed as insecure (host or host:port).
    pub(crate) fn new(insecure_registries: &[String]) -> Result<Self, PullError> {
        install_crypto_provider();
        let protocol = if insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(insecure_registries.to_vec())
        };
        let user_agent = concat!("berth/", env!("CARGO_PKG_VERSION"));
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent,
            ..ClientConfig::default()
        };
        let manifests = fetch::ManifestFetcher::new(
            insecure_registries,
            CONNECT_TIMEOUT,
            READ_TIMEOUT,
            user_agent,
        )?;
        Ok(Self {
            client: Client::new(config),
            manifests: std::sync::Arc::new(manifests),
        })
    }
}

#[async_trait]
impl Distribution for Registry {
    /// Fetches the manifest or index the reference names, under the size cap (see
    /// `fetch.rs`); returns its bytes and digest.
    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        auth: &RegistryAuth,
        limit: u64,
    ) -> Result<(Bytes, String), PullError> {
        let (client, manifests) = (self.client.clone(), std::sync::Arc::clone(&self.manifests));
        let (image_owned, auth) = (image.clone(), to_oci_auth(auth));
        own_task(image, "manifest", async move {
            manifests.fetch(&client, &image_owned, &auth, limit).await
        })
        .await
    }

    /// Streams a blob from byte `offset` on. From the start, oci-client verifies the digest at
    /// the end of the stream. From further on, the registry is asked for the rest only (HTTP
    /// Range), and containerd's check at commit, over the bytes it already held and these, is
    /// the verification; a registry that ignores the range sends the whole blob, verified, and
    /// its first `offset` bytes are skipped here.
    async fn blob_stream(
        &self,
        image: &ImageRef,
        digest: &str,
        size: i64,
        media_type: &str,
        offset: u64,
    ) -> Result<BlobStream, PullError> {
        let desc = oci_client::manifest::OciDescriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
            ..Default::default()
        };
        let (client, image_owned) = (self.client.clone(), image.clone());
        let what = format!("blob {digest}");
        own_task(image, &format!("blob {digest}"), async move {
            let image = &image_owned;
            let failed = |e| classify(e, image, &what);
            if offset == 0 {
                let sized = client
                    .pull_blob_stream(&image.inner, &desc)
                    .await
                    .map_err(failed)?;
                return Ok(sized.stream);
            }
            let response = client
                .pull_blob_stream_partial(&image.inner, &desc, offset, None)
                .await
                .map_err(failed)?;
            Ok(match response {
                BlobResponse::Partial(rest) => rest.stream,
                BlobResponse::Full(whole) => {
                    tracing::debug!(
                        registry = image.registry(),
                        blob = %desc.digest,
                        offset,
                        "the registry ignored the range; skipping what containerd holds"
                    );
                    skip_bytes(whole.stream, offset)
                }
            })
        })
        .await
    }
}

/// Runs one registry request on a task of its own and waits for it. The HTTP client's futures
/// nest deeply (oci-client, reqwest, hyper, tower, url); started on a fresh task they never add
/// to the depth of the pull that waits for them, so a worker's stack holds one or the other,
/// never both. Dropping the wait (a pull that gives up) aborts the request; a request that
/// panics is a failed request.
async fn own_task<T: Send + 'static>(
    image: &ImageRef,
    what: &str,
    request: impl Future<Output = Result<T, PullError>> + Send + 'static,
) -> Result<T, PullError> {
    let task = AbortOnDropHandle::new(tokio::spawn(request.in_current_span()));
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => Err(PullError::Registry {
            registry: image.registry().to_owned(),
            what: what.to_owned(),
            reason: format!("the request ended abnormally: {e}"),
            transient: false,
        }),
    }
}

/// `stream` without its first `n` bytes.
fn skip_bytes(stream: BlobStream, n: u64) -> BlobStream {
    let mut left = n;
    stream
        .filter_map(move |item| {
            let out = match item {
                Ok(mut chunk) => {
                    let len = chunk.len() as u64;
                    if left >= len {
                        left -= len;
                        None
                    } else {
                        let rest = chunk.split_off(left as usize);
                        left = 0;
                        Some(Ok(rest))
                    }
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .boxed()
}

fn to_oci_auth(auth: &RegistryAuth) -> oci_client::secrets::RegistryAuth {
    match auth {
        RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
        RegistryAuth::Basic { username, password } => {
            oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
        }
        RegistryAuth::Bearer(token) => oci_client::secrets::RegistryAuth::Bearer(token.clone()),
    }
}

/// Turns an oci-client error into the error a person can act on.
pub(crate) fn classify(error: OciDistributionError, image: &ImageRef, what: &str) -> PullError {
    let registry = image.registry().to_owned();
    let repository = image.repository().to_owned();
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(OciErrorCode::ManifestUnknown) | Some(OciErrorCode::NotFound)
                    if what == "manifest" =>
                {
                    PullError::ManifestUnknown {
                        registry,
                        repository,
                        tag: image.tag_or_digest(),
                    }
                }
                Some(OciErrorCode::NameUnknown) => PullError::RepositoryUnknown {
                    registry,
                    repository,
                },
                Some(OciErrorCode::Unauthorized) | Some(OciErrorCode::Denied) => {
                    PullError::Unauthorized {
                        registry,
                        repository,
                        reason: envelope.to_string(),
                    }
                }
                _ => PullError::Registry {
                    registry,
                    what: what.to_owned(),
                    transient: match code {
                        Some(OciErrorCode::Toomanyrequests) => true,
                        Some(OciErrorCode::Other(other)) => other == "UNAVAILABLE",
                        _ => false,
                    },
                    reason: envelope.to_string(),
                },
            }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => PullError::ManifestUnknown {
            registry,
            repository,
            tag: image.tag_or_digest(),
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => PullError::Unauthorized {
            registry,
            repository,
            reason: error.to_string(),
        },
        OciDistributionError::ServerError { code: 404, .. } if what == "manifest" => {
            PullError::ManifestUnknown {
                registry,
                repository,
                tag: image.tag_or_digest(),
            }
        }
        OciDistributionError::ServerError { code, message, .. } => PullError::Registry {
            registry,
            what: what.to_owned(),
            reason: format!("HTTP {code}: {message}"),
            transient: code >= 500 || code == 408 || code == 429,
        },
        // A TLS handshake that fails (plain HTTP on the other end, an unknown CA, a name
        // mismatch) fails the same way every time: an answer to act on, never retried.
        OciDistributionError::RequestError(e) if tls_failure(&e).is_some() => PullError::Registry {
            registry,
            what: what.to_owned(),
            reason: format!(
                "TLS handshake failed: {} (a registry that speaks plain HTTP must be listed in \
                 insecure_registries)",
                tls_failure(&e).unwrap_or_default()
            ),
            transient: false,
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            PullError::RegistryUnreachable {
                registry,
                reason: root_cause(&e),
            }
        }
        OciDistributionError::DigestError(e) => PullError::DigestMismatch {
            kind: "manifest",
            digest: image.tag_or_digest(),
            reason: e.to_string(),
        },
        other => PullError::Registry {
            registry,
            what: what.to_owned(),
            // A request or a stream that broke off; anything else is an answer.
            transient: matches!(
                other,
                OciDistributionError::RequestError(_) | OciDistributionError::IoError(_)
            ),
            reason: root_cause(&other),
        },
    }
}

/// reqwest and oci-client are built without a default crypto provider: install ring, once
/// per process, before any client is built (a second call finds it installed and does nothing).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS error somewhere in `error`'s chain, if the failure was the handshake's. rustls's
/// errors travel inside `std::io::Error`s, whose `source()` skips the wrapped error itself, so
/// each io error's payload is stepped into instead.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            // hyper wraps tokio-rustls's io error in another io error: step into each.
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// What a person can act on in a foreign error: its innermost cause ("Connection refused (os
/// error 111)"). The outer messages say which request failed, which the [`PullError`] names
/// already; the text travels alone (a task's stop reason), so the error is no source of it.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use oci_client::errors::DigestError;

    use super::*;

    /// An error that wraps another, as hyper and reqwest wrap the io error of a failed
    /// handshake.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn a_tls_failure_inside_an_io_error_is_found_and_others_are_not() {
        let tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        // As hyper hands it over: an io error holding tokio-rustls's io error holding rustls's.
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let wrapped = Wrapper(std::io::Error::other(inner));
        let found = tls_failure(&wrapped).expect("the handshake's error is found");
        assert!(found.contains("InvalidContentType"), "{found}");

        let refused = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(tls_failure(&refused), None);
    }

    #[test]
    fn references_keep_the_given_name() {
        let r = ImageRef::parse("127.0.0.1:5000/app:1.3").unwrap();
        assert_eq!(r.given(), "127.0.0.1:5000/app:1.3");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.tag_or_digest(), "1.3");
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag_or_digest(), "latest");
        assert!(ImageRef::parse("registry.local/App:x").is_err());
        assert!(ImageRef::parse("app:bad tag").is_err());
        assert!(ImageRef::parse("").is_err());
    }

    #[tokio::test]
    async fn skipping_drops_exactly_the_first_bytes_across_chunks() {
        let cases = [
            (0, "abcdefghij"),
            (2, "cdefghij"),
            (5, "fghij"),
            (7, "hij"),
            (10, ""),
            (12, ""),
        ];
        for (n, want) in cases {
            let chunks = ["abc", "de", "", "fghij"]
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes())));
            let stream = futures::stream::iter(chunks).boxed();
            let got: Vec<Bytes> = skip_bytes(stream, n).map(|c| c.unwrap()).collect().await;
            assert_eq!(got.concat(), want.as_bytes(), "skipping {n}");
        }
    }

    #[test]
    fn a_foreign_error_is_told_once_by_its_innermost_cause() {
        // oci-client's message embeds the cause that is also its source.
        let nested = OciDistributionError::DigestError(DigestError::MissingAlgorithm);
        assert_eq!(nested.to_string(), "Digest error: Missing digest algorithm");
        assert_eq!(root_cause(&nested), "Missing digest algorithm");
        let r = ImageRef::parse("127.0.0.1:5000/app:1.3").unwrap();
        let wrapped = OciDistributionError::IoError(std::io::Error::other(nested));
        assert_eq!(
            classify(wrapped, &r, "blob sha256:1").to_string(),
            "registry 127.0.0.1:5000 failed on blob sha256:1: Missing digest algorithm"
        );
    }

    #[test]
    fn manifest_unknown_names_registry_tag_and_repository() {
        let r = ImageRef::parse("127.0.0.1:5000/app:1.3").unwrap();
        let err = classify(
            OciDistributionError::ImageManifestNotFoundError("x".into()),
            &r,
            "manifest",
        );
        assert_eq!(
            err.to_string(),
            "manifest unknown: registry 127.0.0.1:5000 has no tag 1.3 for app"
        );
    }
}

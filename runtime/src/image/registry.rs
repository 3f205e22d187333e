//! The registry side of a pull: reference parsing (`reference.rs`), manifest fetches and blob
//! streams, with registry answers turned into [`PullError`]s that name registry and repository.
//! Each request goes to the registry's endpoints as its certs.d directory lists them
//! (`hosts.rs`): mirrors in order, then the upstream. A mirror that fails (unreachable, 5xx,
//! not found, refused) is logged and the next endpoint asked; the upstream's answer is final.
//! Mirrors are asked without the pull's credentials, which belong to the upstream: a mirror
//! that asks for credentials gets its own, what the agent's sources hold for the mirror's host
//! ([`EndpointAuth::Own`]), or none.
//! A pull reads through the [`Distribution`] trait, so its unit tests serve images from memory.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use oci_client::Reference;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::auth::Credentials;
use super::hosts::{self, Endpoint};
use super::{PullError, RegistryAuth};

mod fetch;
mod reference;
mod transport;

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
            self::reference::parse(reference).map_err(|e| PullError::InvalidReference {
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
        auth: &RegistryAuth,
        digest: &str,
        size: i64,
        media_type: &str,
        offset: u64,
    ) -> Result<BlobStream, PullError>;
}

/// The credentials one endpoint is asked with, once it asks for some (a 401).
#[derive(Debug, Clone)]
pub(crate) enum EndpointAuth {
    /// The upstream: the pull's credentials (the task's, else the agent's sources' for the
    /// registry).
    Given(RegistryAuth),
    /// A mirror: what the agent's sources hold for the mirror's own host, looked up when the
    /// mirror asks; anonymous when they hold nothing for it.
    Own(Credentials),
}

/// A registry client shared by all pulls of one runtime.
#[derive(Clone)]
pub(crate) struct Registry {
    transport: Arc<transport::Transport>,
    certs_dir: Option<PathBuf>,
    insecure: Arc<[String]>,
    /// The agent's credential sources, asked for a mirror's own credentials.
    credentials: Credentials,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("certs_dir", &self.certs_dir)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// HTTPS everywhere except the registries listed as insecure (host or host:port) and the
    /// `http://` endpoints a hosts.toml names; `certs_dir` holds the per-registry
    /// directories (`hosts.rs`); `credentials` are asked for mirrors' own credentials.
    pub(crate) fn new(
        insecure_registries: &[String],
        certs_dir: Option<PathBuf>,
        credentials: Credentials,
    ) -> Self {
        let user_agent = concat!("berth/", env!("CARGO_PKG_VERSION"));
        Self {
            transport: Arc::new(transport::Transport::new(
                CONNECT_TIMEOUT,
                READ_TIMEOUT,
                user_agent,
                certs_dir.clone(),
            )),
            certs_dir,
            insecure: insecure_registries.into(),
            credentials,
        }
    }

    /// The endpoints that may serve `image`: those with `resolve` for a tag, those with `pull`
    /// for content named by digest.
    fn endpoints(&self, image: &ImageRef, resolve: bool) -> Result<Vec<Endpoint>, PullError> {
        let hosts = hosts::load(self.certs_dir.as_deref(), image.registry(), &self.insecure)
            .map_err(|e| PullError::RegistryConfig {
                registry: image.registry().to_owned(),
                path: e.path,
                reason: e.reason,
            })?;
        let able: Vec<Endpoint> = hosts.able(resolve).cloned().collect();
        if able.is_empty() {
            return Err(PullError::RegistryConfig {
                registry: image.registry().to_owned(),
                path: self
                    .certs_dir
                    .clone()
                    .unwrap_or_default()
                    .join(image.registry())
                    .join("hosts.toml"),
                reason: format!(
                    "no host has the {} capability",
                    if resolve { "resolve" } else { "pull" }
                ),
            });
        }
        Ok(able)
    }
}

/// Asks each endpoint in turn with `ask`: a mirror's failure is logged and the next asked; the
/// last endpoint's answer (the upstream's) is final. The upstream is asked with `auth`, a
/// mirror with its own credentials from `credentials`.
async fn in_turn<T, F, Fut>(
    image: &ImageRef,
    what: &str,
    endpoints: Vec<Endpoint>,
    auth: &RegistryAuth,
    credentials: &Credentials,
    mut ask: F,
) -> Result<T, PullError>
where
    F: FnMut(Endpoint, EndpointAuth) -> Fut,
    Fut: Future<Output = Result<T, PullError>>,
{
    let count = endpoints.len();
    let mut last = None;
    for (i, endpoint) in endpoints.into_iter().enumerate() {
        let (host, mirror) = (endpoint.host.clone(), endpoint.mirror);
        // A mirror is another party: the upstream's credentials are not for it.
        let auth = if mirror {
            EndpointAuth::Own(credentials.clone())
        } else {
            EndpointAuth::Given(auth.clone())
        };
        match ask(endpoint, auth).await {
            Ok(found) => return Ok(found),
            Err(e) if mirror && i + 1 < count => {
                tracing::warn!(
                    registry = image.registry(),
                    mirror = %host,
                    what,
                    error = %e,
                    "registry mirror failed; asking the next host"
                );
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| PullError::Registry {
        registry: image.registry().to_owned(),
        what: what.to_owned(),
        reason: "no host to ask".to_owned(),
        transient: false,
    }))
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
        let endpoints = self.endpoints(image, image.inner.digest().is_none())?;
        let (transport, image_owned, auth, credentials) = (
            Arc::clone(&self.transport),
            image.clone(),
            auth.clone(),
            self.credentials.clone(),
        );
        own_task(image, "manifest", async move {
            let image = &image_owned;
            in_turn(
                image,
                "manifest",
                endpoints,
                &auth,
                &credentials,
                |endpoint, auth| {
                    let transport = Arc::clone(&transport);
                    async move { fetch::manifest(&transport, &endpoint, image, &auth, limit).await }
                },
            )
            .await
        })
        .await
    }

    /// Streams a blob from byte `offset` on. containerd's check at commit, over the bytes it
    /// already held and these, is the verification.
    async fn blob_stream(
        &self,
        image: &ImageRef,
        auth: &RegistryAuth,
        digest: &str,
        _size: i64,
        _media_type: &str,
        offset: u64,
    ) -> Result<BlobStream, PullError> {
        let endpoints = self.endpoints(image, false)?;
        let (transport, image_owned, auth, credentials) = (
            Arc::clone(&self.transport),
            image.clone(),
            auth.clone(),
            self.credentials.clone(),
        );
        let (digest, what) = (digest.to_owned(), format!("blob {digest}"));
        own_task(image, &what.clone(), async move {
            let image = &image_owned;
            in_turn(
                image,
                &what,
                endpoints,
                &auth,
                &credentials,
                |endpoint, auth| {
                    let (transport, digest) = (Arc::clone(&transport), digest.clone());
                    async move {
                        fetch::blob(&transport, &endpoint, image, &auth, &digest, offset).await
                    }
                },
            )
            .await
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

    fn endpoint(host: &str, mirror: bool) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            base: format!("http://{host}/v2"),
            mirror,
            capabilities: hosts::Capabilities {
                pull: true,
                resolve: true,
            },
            tls: hosts::TlsFiles::default(),
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn mirrors_get_their_own_credentials_and_the_upstream_the_pulls() {
        let r = ImageRef::parse("127.0.0.1:5000/app:1.3").unwrap();
        let given = RegistryAuth::Basic {
            username: "upstream-user".to_owned(),
            password: "upstream-secret".to_owned(),
        };
        let endpoints = vec![
            endpoint("mirror-a:5000", true),
            endpoint("mirror-b:5000", true),
            endpoint("127.0.0.1:5000", false),
        ];
        let asked = std::sync::Mutex::new(Vec::new());
        let found = in_turn(
            &r,
            "manifest",
            endpoints,
            &given,
            &Credentials::default(),
            |endpoint, auth| {
                let own = match &auth {
                    EndpointAuth::Own(_) => "own".to_owned(),
                    EndpointAuth::Given(a) => format!("given {a:?}"),
                };
                asked
                    .lock()
                    .unwrap()
                    .push(format!("{} {own}", endpoint.host));
                async move {
                    if endpoint.mirror {
                        Err(PullError::Registry {
                            registry: endpoint.host.clone(),
                            what: "manifest".to_owned(),
                            reason: "HTTP 401".to_owned(),
                            transient: false,
                        })
                    } else {
                        Ok(endpoint.host)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(found, "127.0.0.1:5000");
        assert_eq!(
            asked.into_inner().unwrap(),
            [
                "mirror-a:5000 own",
                "mirror-b:5000 own",
                "127.0.0.1:5000 given Basic(upstream-user, ***)"
            ]
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

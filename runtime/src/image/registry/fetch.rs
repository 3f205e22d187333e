//! Manifest, index and blob fetches from one endpoint. oci-client reads a manifest answer
//! whole into memory whatever its length, so Berth asks for manifests itself: a plain GET on
//! the distribution API through the endpoint's [`Transport`], the answer read through
//! [`read_capped`], its digest checked here. Blobs stream from the answer; containerd checks
//! each blob's digest when it commits it.

use bytes::Bytes;
use futures::StreamExt;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use reqwest::{Response, StatusCode};
use sha2::{Digest as _, Sha256, Sha512};

use super::EndpointAuth;
use super::transport::{Request, Transport};
use super::{BlobStream, ImageRef, classify, skip_bytes};
use crate::image::PullError;
use crate::image::capped::{CappedError, read_capped};
use crate::image::hosts::Endpoint;
use crate::image::manifest::ACCEPTED_MANIFEST_TYPES;

/// The most of an error answer's body kept (to read the registry's error codes).
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// The manifest or index `image` names, at most `limit` bytes, and its digest.
pub(super) async fn manifest(
    transport: &Transport,
    endpoint: &Endpoint,
    image: &ImageRef,
    auth: &EndpointAuth,
    limit: u64,
) -> Result<(Bytes, String), PullError> {
    let url = url(
        endpoint,
        image,
        &format!("manifests/{}", image.tag_or_digest()),
    );
    let request = Request {
        url: url.clone(),
        what: "manifest",
        accept: Some(ACCEPTED_MANIFEST_TYPES.join(", ")),
        from: None,
    };
    let response = transport.get(endpoint, image, auth, &request).await?;
    if !response.status().is_success() {
        return Err(refusal(response, image, endpoint, &url, "manifest").await);
    }
    let header_digest = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = response.content_length();
    let body = read_capped(declared, response.bytes_stream(), limit)
        .await
        .map_err(|e| match e {
            CappedError::TooLarge { size, counted } => PullError::TooLarge {
                registry: endpoint.host.clone(),
                what: format!("the manifest of {}", image.given()),
                size,
                counted,
                limit,
            },
            CappedError::Body(e) => named(
                classify(OciDistributionError::RequestError(e), image, "manifest"),
                endpoint,
            ),
        })?;
    let digest = verify_digest(
        &body,
        image.inner.digest(),
        header_digest.as_deref(),
        &endpoint.host,
    )?;
    Ok((body, digest))
}

/// A blob's bytes from `offset` on. The registry is asked for the rest only (HTTP Range); one
/// that ignores the range sends the whole blob, and its first `offset` bytes are skipped.
pub(super) async fn blob(
    transport: &Transport,
    endpoint: &Endpoint,
    image: &ImageRef,
    auth: &EndpointAuth,
    digest: &str,
    offset: u64,
) -> Result<BlobStream, PullError> {
    let what = format!("blob {digest}");
    let url = url(endpoint, image, &format!("blobs/{digest}"));
    let request = Request {
        url: url.clone(),
        what: &what,
        accept: None,
        from: Some(offset),
    };
    let response = transport.get(endpoint, image, auth, &request).await?;
    let status = response.status();
    if !status.is_success() {
        return Err(refusal(response, image, endpoint, &url, &what).await);
    }
    let stream = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed();
    if offset > 0 && status != StatusCode::PARTIAL_CONTENT {
        tracing::debug!(
            registry = %endpoint.host,
            blob = digest,
            offset,
            "the registry ignored the range; skipping what containerd holds"
        );
        return Ok(skip_bytes(stream, offset));
    }
    Ok(stream)
}

/// `<base>/<repository>/<rest>`, with `?ns=<registry>` on a mirror, as containerd asks.
fn url(endpoint: &Endpoint, image: &ImageRef, rest: &str) -> String {
    let mut url = format!("{}/{}/{rest}", endpoint.base, image.repository());
    if endpoint.mirror {
        url.push_str("?ns=");
        url.push_str(image.registry());
    }
    url
}

/// `error`, naming the endpoint that failed rather than the reference's registry.
fn named(mut error: PullError, endpoint: &Endpoint) -> PullError {
    match &mut error {
        PullError::RegistryUnreachable { registry, .. }
        | PullError::Registry { registry, .. }
        | PullError::Unauthorized { registry, .. }
        | PullError::ManifestUnknown { registry, .. }
        | PullError::RepositoryUnknown { registry, .. } => registry.clone_from(&endpoint.host),
        _ => {}
    }
    error
}

/// The error a registry's refusal means: its OCI error codes when the body carries them,
/// else its HTTP status.
async fn refusal(
    response: Response,
    image: &ImageRef,
    endpoint: &Endpoint,
    url: &str,
    what: &str,
) -> PullError {
    named(refusal_of(response, image, url, what).await, endpoint)
}

async fn refusal_of(response: Response, image: &ImageRef, url: &str, what: &str) -> PullError {
    let status = response.status();
    let declared = response.content_length();
    // The body only explains the refusal: a short or unreadable one is no error of its own.
    let body = read_capped(declared, response.bytes_stream(), ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    // A failing registry (5xx, 429) is told by its status, whatever its body says: it is
    // worth another try.
    let failing = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    if !failing
        && let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(&body)
        && !envelope.errors.is_empty()
    {
        return classify(
            OciDistributionError::RegistryError {
                envelope,
                url: url.to_owned(),
            },
            image,
            what,
        );
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return PullError::Unauthorized {
            registry: image.registry().to_owned(),
            repository: image.repository().to_owned(),
            reason: format!("HTTP {}", status.as_u16()),
        };
    }
    classify(
        OciDistributionError::ServerError {
            code: status.as_u16(),
            url: url.to_owned(),
            message: String::from_utf8_lossy(&body).trim().to_owned(),
        },
        image,
        what,
    )
}

/// Checks `body` against the digest the reference pins, else the one the registry announced,
/// and returns the body's digest. Without either, the digest is the body's SHA-256.
fn verify_digest(
    body: &[u8],
    pinned: Option<&str>,
    announced: Option<&str>,
    registry: &str,
) -> Result<String, PullError> {
    let Some(expected) = pinned.or(announced) else {
        return Ok(format!("sha256:{}", hex::encode(Sha256::digest(body))));
    };
    let mismatch = |reason: String| PullError::DigestMismatch {
        kind: "manifest",
        digest: expected.to_owned(),
        reason,
    };
    let actual = match expected.split_once(':') {
        Some(("sha256", _)) => format!("sha256:{}", hex::encode(Sha256::digest(body))),
        Some(("sha512", _)) => format!("sha512:{}", hex::encode(Sha512::digest(body))),
        _ => {
            return Err(mismatch(format!(
                "registry {registry} named an unsupported digest algorithm"
            )));
        }
    };
    if actual != expected {
        return Err(mismatch(format!(
            "registry {registry} answered content with digest {actual}"
        )));
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::hosts;

    #[test]
    fn digests_are_checked_against_the_pin_first() {
        let registry = "127.0.0.1:5000";
        let body = b"{}";
        let good = format!("sha256:{}", hex::encode(Sha256::digest(body)));
        assert_eq!(verify_digest(body, None, None, registry).unwrap(), good);
        assert_eq!(
            verify_digest(body, Some(&good), Some("sha256:00"), registry).unwrap(),
            good
        );
        assert_eq!(
            verify_digest(body, None, Some(&good), registry).unwrap(),
            good
        );
        let err = verify_digest(body, None, Some("sha256:00"), registry).unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        let err = verify_digest(body, Some("md5:00"), None, registry).unwrap_err();
        assert!(
            err.to_string().contains("unsupported digest algorithm"),
            "{err}"
        );
        let sha512 = format!("sha512:{}", hex::encode(Sha512::digest(body)));
        assert_eq!(
            verify_digest(body, Some(&sha512), None, registry).unwrap(),
            sha512
        );
    }

    #[test]
    fn urls_use_http_only_for_insecure_registries_and_name_the_upstream_on_mirrors() {
        let insecure = ["127.0.0.1:5000".to_owned()];
        let image = ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap();
        let hosts = hosts::load(None, image.registry(), &insecure).unwrap();
        assert_eq!(
            url(&hosts.endpoints[0], &image, "manifests/1"),
            "http://127.0.0.1:5000/v2/team/app/manifests/1"
        );
        let image = ImageRef::parse("registry.example/app@sha256:abababababababababababababababababababababababababababababababab").unwrap();
        let hosts = hosts::load(None, image.registry(), &insecure).unwrap();
        assert_eq!(
            url(
                &hosts.endpoints[0],
                &image,
                &format!("manifests/{}", image.tag_or_digest())
            ),
            format!(
                "https://registry.example/v2/app/manifests/sha256:{}",
                "ab".repeat(32)
            )
        );
        let hosts = hosts::parse_hosts_toml(
            std::path::Path::new("/etc/berth/certs.d/registry.example/hosts.toml"),
            "[host.\"http://127.0.0.1:5001\"]\n",
            "https://registry.example",
        )
        .unwrap();
        assert_eq!(
            url(&hosts.endpoints[0], &image, "blobs/sha256:1"),
            "http://127.0.0.1:5001/v2/app/blobs/sha256:1?ns=registry.example"
        );
    }
}

//! Manifest and index fetches under a size cap. oci-client reads a manifest answer whole into
//! memory whatever its length, so Berth asks for manifests itself: a plain GET on the
//! distribution API, the answer read through [`read_capped`], its digest checked here. Only
//! the credentials come from oci-client: on a 401 its `auth` answers the registry's challenge
//! (a bearer token from the realm, or basic credentials), and what it answered is kept per
//! registry and repository for the next fetch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::{Client, RegistryOperation};
use reqwest::{RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256, Sha512};

use super::{ImageRef, classify, root_cause};
use crate::image::PullError;
use crate::image::capped::{CappedError, read_capped};
use crate::image::manifest::ACCEPTED_MANIFEST_TYPES;

/// The most of an error answer's body kept (to read the registry's error codes).
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// How a manifest request proves who asks, as the registry's last challenge was answered.
#[derive(Clone)]
enum Credential {
    Bearer(String),
    Basic(String, String),
}

/// Fetches manifests with its own HTTP client (same timeouts, TLS and user agent as
/// oci-client's), remembering the credential each repository needed.
pub(super) struct ManifestFetcher {
    http: reqwest::Client,
    insecure: Vec<String>,
    credentials: Mutex<HashMap<(String, String), Credential>>,
}

impl ManifestFetcher {
    pub(super) fn new(
        insecure: &[String],
        connect_timeout: Duration,
        read_timeout: Duration,
        user_agent: &'static str,
    ) -> Result<Self, PullError> {
        super::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| PullError::HttpClient {
                reason: root_cause(&e),
            })?;
        Ok(Self {
            http,
            insecure: insecure.to_vec(),
            credentials: Mutex::new(HashMap::new()),
        })
    }

    /// The manifest or index `image` names, at most `limit` bytes, and its digest.
    pub(super) async fn fetch(
        &self,
        oci: &Client,
        image: &ImageRef,
        auth: &oci_client::secrets::RegistryAuth,
        limit: u64,
    ) -> Result<(Bytes, String), PullError> {
        let reference = &image.inner;
        let registry = reference.resolve_registry().to_owned();
        // Blob downloads go through oci-client, which finds the credentials stored here.
        oci.store_auth_if_needed(&registry, auth).await;
        let url = self.url(image);
        let key = (registry, reference.repository().to_owned());
        let known = self.credential(&key);
        let mut response = self.get(&url, known.as_ref(), image).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let answered = oci
                .auth(reference, auth, RegistryOperation::Pull)
                .await
                .map_err(|e| classify(e, image, "manifest"))?;
            let credential = match (answered, auth) {
                (Some(token), _) => Some(Credential::Bearer(token)),
                (None, oci_client::secrets::RegistryAuth::Basic(user, password)) => {
                    Some(Credential::Basic(user.clone(), password.clone()))
                }
                (None, _) => None,
            };
            if let Some(credential) = credential {
                response = self.get(&url, Some(&credential), image).await?;
                if response.status().is_success() {
                    self.credentials_lock().insert(key, credential);
                }
            }
        }
        if !response.status().is_success() {
            return Err(refusal(response, image, &url).await);
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
                    registry: image.registry().to_owned(),
                    what: format!("the manifest of {}", image.given()),
                    size,
                    counted,
                    limit,
                },
                CappedError::Body(e) => {
                    classify(OciDistributionError::RequestError(e), image, "manifest")
                }
            })?;
        let digest = verify_digest(&body, reference.digest(), header_digest.as_deref(), image)?;
        Ok((body, digest))
    }

    fn url(&self, image: &ImageRef) -> String {
        let reference = &image.inner;
        let registry = reference.resolve_registry();
        let scheme = if self.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{registry}/v2/{}/manifests/{}",
            reference.repository(),
            image.tag_or_digest()
        )
    }

    async fn get(
        &self,
        url: &str,
        credential: Option<&Credential>,
        image: &ImageRef,
    ) -> Result<Response, PullError> {
        let request: RequestBuilder = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFEST_TYPES.join(", "));
        let request = match credential {
            Some(Credential::Bearer(token)) => request.bearer_auth(token),
            Some(Credential::Basic(user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|e| classify(OciDistributionError::RequestError(e), image, "manifest"))
    }

    fn credential(&self, key: &(String, String)) -> Option<Credential> {
        self.credentials_lock().get(key).cloned()
    }

    fn credentials_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Credential>> {
        self.credentials.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The error a registry's refusal means: its OCI error codes when the body carries them,
/// else its HTTP status.
async fn refusal(response: Response, image: &ImageRef, url: &str) -> PullError {
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
            "manifest",
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
        "manifest",
    )
}

/// Checks `body` against the digest the reference pins, else the one the registry announced,
/// and returns the body's digest. Without either, the digest is the body's SHA-256.
fn verify_digest(
    body: &[u8],
    pinned: Option<&str>,
    announced: Option<&str>,
    image: &ImageRef,
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
                "registry {} named an unsupported digest algorithm",
                image.registry()
            )));
        }
    };
    if actual != expected {
        return Err(mismatch(format!(
            "registry {} answered content with digest {actual}",
            image.registry()
        )));
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_against_the_pin_first() {
        let image = ImageRef::parse("127.0.0.1:5000/app:1").unwrap();
        let body = b"{}";
        let good = format!("sha256:{}", hex::encode(Sha256::digest(body)));
        assert_eq!(verify_digest(body, None, None, &image).unwrap(), good);
        assert_eq!(
            verify_digest(body, Some(&good), Some("sha256:00"), &image).unwrap(),
            good
        );
        assert_eq!(
            verify_digest(body, None, Some(&good), &image).unwrap(),
            good
        );
        let err = verify_digest(body, None, Some("sha256:00"), &image).unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        let err = verify_digest(body, Some("md5:00"), None, &image).unwrap_err();
        assert!(
            err.to_string().contains("unsupported digest algorithm"),
            "{err}"
        );
        let sha512 = format!("sha512:{}", hex::encode(Sha512::digest(body)));
        assert_eq!(
            verify_digest(body, Some(&sha512), None, &image).unwrap(),
            sha512
        );
    }

    #[test]
    fn urls_use_http_only_for_insecure_registries() {
        let fetcher = ManifestFetcher::new(
            &["127.0.0.1:5000".to_owned()],
            Duration::from_secs(1),
            Duration::from_secs(1),
            "berth-test",
        )
        .unwrap();
        let image = ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap();
        assert_eq!(
            fetcher.url(&image),
            "http://127.0.0.1:5000/v2/team/app/manifests/1"
        );
        let image = ImageRef::parse("registry.example/app@sha256:abababababababababababababababababababababababababababababababab").unwrap();
        assert_eq!(
            fetcher.url(&image),
            format!(
                "https://registry.example/v2/app/manifests/sha256:{}",
                "ab".repeat(32)
            )
        );
    }
}

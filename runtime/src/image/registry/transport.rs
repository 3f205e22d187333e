//! Authenticated GETs to one registry endpoint (a mirror or the upstream). Each endpoint's TLS
//! (its CA files, client certificate, `skip_verify`) gets an HTTP client of its own, built once
//! per distinct set of files' contents, so an edited certificate takes effect at the next pull.
//! A 401 is answered as the challenge in it asks: a bearer token from the realm (with basic
//! credentials when the pull has some), or basic credentials; what worked is kept per endpoint,
//! repository and the credentials it was won with, for the next request with the same ones (a
//! pull with other credentials, or none, never rides on a token another pull's earned). A mirror's own credentials are looked up only when it
//! asks for some (`EndpointAuth::Own`), so a mirror that serves anonymously never costs a
//! credential helper's run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use super::{EndpointAuth, ImageRef, classify, root_cause, tls_failure};
use crate::image::hosts::{Endpoint, TlsFiles};
use crate::image::{PullError, RegistryAuth};

/// The most bytes of a token server's answer read.
const TOKEN_BODY_LIMIT: usize = 1 << 20;

/// How a request proves who asks, as the endpoint's last challenge was answered.
#[derive(Clone)]
enum Credential {
    Bearer(String),
    Basic(String, String),
}

/// What one request asks for.
pub(super) struct Request<'a> {
    pub(super) url: String,
    /// What is fetched, for errors (`manifest`, `blob sha256:...`).
    pub(super) what: &'a str,
    pub(super) accept: Option<String>,
    /// Ask for the bytes from this offset on (HTTP Range).
    pub(super) from: Option<u64>,
}

/// HTTP clients per TLS setup and the credentials that worked, shared by all pulls.
pub(super) struct Transport {
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: &'static str,
    certs_dir: Option<PathBuf>,
    clients: Mutex<HashMap<[u8; 32], reqwest::Client>>,
    credentials: Mutex<HashMap<CredentialKey, Credential>>,
}

/// What a credential that worked is kept under: the endpoint's host, the repository and a
/// digest of the credentials the pull offered (so secrets are not kept as keys).
type CredentialKey = (String, String, [u8; 32]);

/// The digest of what a pull offers `endpoint`: its own credentials, or the agent's sources
/// for a mirror.
fn offered(auth: &EndpointAuth) -> [u8; 32] {
    let mut h = Sha256::new();
    match auth {
        EndpointAuth::Own(_) => h.update(b"own"),
        EndpointAuth::Given(RegistryAuth::Anonymous) => h.update(b"anonymous"),
        EndpointAuth::Given(RegistryAuth::Basic { username, password }) => {
            h.update(b"basic\0");
            h.update((username.len() as u64).to_le_bytes());
            h.update(username.as_bytes());
            h.update(password.as_bytes());
        }
        EndpointAuth::Given(RegistryAuth::Bearer(token)) => {
            h.update(b"bearer\0");
            h.update(token.as_bytes());
        }
    }
    h.finalize().into()
}

impl Transport {
    pub(super) fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        user_agent: &'static str,
        certs_dir: Option<PathBuf>,
    ) -> Self {
        super::install_crypto_provider();
        Self {
            connect_timeout,
            read_timeout,
            user_agent,
            certs_dir,
            clients: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
        }
    }

    /// GETs `request.url` at `endpoint`, answering one authentication challenge. Returns the
    /// response whatever its status; a request that could not be made is an error.
    pub(super) async fn get(
        &self,
        endpoint: &Endpoint,
        image: &ImageRef,
        auth: &EndpointAuth,
        request: &Request<'_>,
    ) -> Result<Response, PullError> {
        let client = self.client(endpoint, image)?;
        let key = (
            endpoint.host.clone(),
            image.repository().to_owned(),
            offered(auth),
        );
        let known = lock(&self.credentials).get(&key).cloned();
        let response = self
            .send(&client, endpoint, image, request, known.as_ref())
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let auth = match auth {
            EndpointAuth::Given(auth) => auth.clone(),
            EndpointAuth::Own(sources) => sources.lookup(&endpoint.host).await?,
        };
        let Some(credential) = self
            .answer(&client, endpoint, image, &auth, &response, request.what)
            .await?
        else {
            return Ok(response);
        };
        let response = self
            .send(&client, endpoint, image, request, Some(&credential))
            .await?;
        if response.status().is_success() {
            lock(&self.credentials).insert(key, credential);
        }
        Ok(response)
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        endpoint: &Endpoint,
        image: &ImageRef,
        request: &Request<'_>,
        credential: Option<&Credential>,
    ) -> Result<Response, PullError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &endpoint.headers {
            // hosts.rs checked both when it read the file.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        let mut builder = client.get(&request.url).headers(headers);
        if let Some(accept) = &request.accept {
            builder = builder.header(reqwest::header::ACCEPT, accept);
        }
        if let Some(from) = request.from.filter(|f| *f > 0) {
            builder = builder.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        builder = match credential {
            Some(Credential::Bearer(token)) => builder.bearer_auth(token),
            Some(Credential::Basic(user, password)) => builder.basic_auth(user, Some(password)),
            None => builder,
        };
        builder
            .send()
            .await
            .map_err(|e| self.request_failed(e, endpoint, image, request.what))
    }

    /// The credential a 401's challenge asks for, or None when the pull has nothing to offer.
    async fn answer(
        &self,
        client: &reqwest::Client,
        endpoint: &Endpoint,
        image: &ImageRef,
        auth: &RegistryAuth,
        refused: &Response,
        what: &str,
    ) -> Result<Option<Credential>, PullError> {
        if let RegistryAuth::Bearer(token) = auth {
            return Ok(Some(Credential::Bearer(token.clone())));
        }
        let header = refused
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let Some((realm, service)) = bearer_challenge(&header) else {
            return Ok(match auth {
                RegistryAuth::Basic { username, password } => {
                    Some(Credential::Basic(username.clone(), password.clone()))
                }
                _ => None,
            });
        };
        let scope = format!("repository:{}:pull", image.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = &service {
            query.push(("service", service.as_str()));
        }
        let mut builder = client.get(&realm).query(&query);
        if let RegistryAuth::Basic { username, password } = auth {
            builder = builder.basic_auth(username, Some(password));
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.request_failed(e, endpoint, image, what))?;
        let status = response.status();
        let unauthorized = |reason: String| PullError::Unauthorized {
            registry: endpoint.host.clone(),
            repository: image.repository().to_owned(),
            reason,
        };
        if !status.is_success() {
            return Err(unauthorized(format!(
                "the token server {realm} answered HTTP {}",
                status.as_u16()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.request_failed(e, endpoint, image, what))?;
        if body.len() > TOKEN_BODY_LIMIT {
            return Err(unauthorized(format!(
                "the token server {realm} answered more than {TOKEN_BODY_LIMIT} bytes"
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            unauthorized(format!("the token server {realm} answered no token: {e}"))
        })?;
        match answer.token.or(answer.access_token) {
            Some(token) if !token.is_empty() => Ok(Some(Credential::Bearer(token))),
            _ => Err(unauthorized(format!(
                "the token server {realm} answered no token"
            ))),
        }
    }

    /// The error a failed request means. A failed TLS handshake says what was trusted, so the
    /// fix (a CA file, `insecure_registries`) is plain.
    fn request_failed(
        &self,
        error: reqwest::Error,
        endpoint: &Endpoint,
        image: &ImageRef,
        what: &str,
    ) -> PullError {
        if let Some(tls) = tls_failure(&error) {
            let trusted = if endpoint.tls.skip_verify {
                "any certificate (skip_verify)".to_owned()
            } else if endpoint.tls.ca.is_empty() {
                match &self.certs_dir {
                    Some(dir) => format!(
                        "the system roots only; a registry with its own CA needs it in {}",
                        dir.join(&endpoint.host).join("ca.crt").display()
                    ),
                    None => "the system roots only".to_owned(),
                }
            } else {
                let files: Vec<String> = endpoint
                    .tls
                    .ca
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                format!("the system roots and {}", files.join(", "))
            };
            return PullError::Registry {
                registry: endpoint.host.clone(),
                what: what.to_owned(),
                reason: format!(
                    "TLS handshake failed: {tls} (trusted: {trusted}; a registry that speaks \
                     plain HTTP must be listed in insecure_registries)"
                ),
                transient: false,
            };
        }
        let mut e = classify(OciDistributionError::RequestError(error), image, what);
        // The error names the host that failed, a mirror's or the upstream's.
        match &mut e {
            PullError::RegistryUnreachable { registry, .. }
            | PullError::Registry { registry, .. } => registry.clone_from(&endpoint.host),
            _ => {}
        }
        e
    }

    /// The HTTP client for `endpoint`'s TLS setup, built on first use of that setup.
    fn client(&self, endpoint: &Endpoint, image: &ImageRef) -> Result<reqwest::Client, PullError> {
        let files = TlsContents::read(&endpoint.tls).map_err(|(path, reason)| {
            PullError::RegistryConfig {
                registry: image.registry().to_owned(),
                path,
                reason,
            }
        })?;
        let key = files.key(endpoint.tls.skip_verify);
        if let Some(client) = lock(&self.clients).get(&key) {
            return Ok(client.clone());
        }
        let client = files
            .build(
                reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .read_timeout(self.read_timeout)
                    .user_agent(self.user_agent),
                endpoint.tls.skip_verify,
            )
            .map_err(|(path, reason)| PullError::RegistryConfig {
                registry: image.registry().to_owned(),
                path,
                reason,
            })?;
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }
}

/// The contents of an endpoint's certificate files, checked.
struct TlsContents {
    cas: Vec<(PathBuf, Vec<CertificateDer<'static>>)>,
    /// The client certificate and key, PEM, with the certificate's path.
    identity: Option<(PathBuf, Vec<u8>)>,
}

type FileError = (PathBuf, String);

impl TlsContents {
    fn read(tls: &TlsFiles) -> Result<Self, FileError> {
        let mut cas = Vec::new();
        for path in &tls.ca {
            let pem = read(path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (path.clone(), format!("is no PEM certificate file: {e}")))?;
            if certs.is_empty() {
                return Err((path.clone(), "holds no PEM certificate".to_owned()));
            }
            let mut store = rustls::RootCertStore::empty();
            for cert in &certs {
                store.add(cert.clone()).map_err(|e| {
                    (
                        path.clone(),
                        format!("holds a certificate that cannot be a trusted root: {e}"),
                    )
                })?;
            }
            cas.push((path.clone(), certs));
        }
        // One client certificate is presented; containerd's first wins.
        let identity = match tls.client.first() {
            None => None,
            Some((cert, key)) => {
                let mut pem = read(cert)?;
                let key_pem = if key == cert { pem.clone() } else { read(key)? };
                let der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| (key.clone(), format!("holds no PEM private key: {e}")))?;
                rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
                    (
                        key.clone(),
                        format!("holds a private key that cannot sign: {e}"),
                    )
                })?;
                if key != cert {
                    pem.push(b'\n');
                    pem.extend(key_pem);
                }
                Some((cert.clone(), pem))
            }
        };
        Ok(Self { cas, identity })
    }

    /// What tells one TLS setup from another: the bytes of its files and `skip_verify`.
    fn key(&self, skip_verify: bool) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update([u8::from(skip_verify)]);
        for (_, certs) in &self.cas {
            for cert in certs {
                hash.update((cert.len() as u64).to_be_bytes());
                hash.update(cert);
            }
        }
        if let Some((_, pem)) = &self.identity {
            hash.update(b"identity");
            hash.update(pem);
        }
        hash.finalize().into()
    }

    fn build(
        &self,
        mut builder: reqwest::ClientBuilder,
        skip_verify: bool,
    ) -> Result<reqwest::Client, FileError> {
        let mut roots = Vec::new();
        for (path, certs) in &self.cas {
            for cert in certs {
                roots.push(
                    reqwest::Certificate::from_der(cert.as_ref()).map_err(|e| {
                        (path.clone(), format!("bad certificate: {}", root_cause(&e)))
                    })?,
                );
            }
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        if let Some((path, pem)) = &self.identity {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| {
                (
                    path.clone(),
                    format!(
                        "is no PEM client certificate with its private key: {}",
                        root_cause(&e)
                    ),
                )
            })?;
            builder = builder.identity(identity);
        }
        if skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let path = self
            .cas
            .first()
            .map(|(p, _)| p.clone())
            .or_else(|| self.identity.as_ref().map(|(p, _)| p.clone()))
            .unwrap_or_default();
        builder.build().map_err(|e| {
            (
                path,
                format!("cannot build a TLS client: {}", root_cause(&e)),
            )
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| (path.to_owned(), format!("cannot read: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The realm and service of the first `Bearer` challenge in a `WWW-Authenticate` value.
fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    for challenge in http_auth::ChallengeParser::new(header).flatten() {
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            continue;
        }
        let mut realm = None;
        let mut service = None;
        for (name, value) in &challenge.params {
            if name.eq_ignore_ascii_case("realm") {
                realm = Some(value.to_unescaped());
            } else if name.eq_ignore_ascii_case("service") {
                service = Some(value.to_unescaped());
            }
        }
        if let Some(realm) = realm {
            return Some((realm, service));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry stand-in on 127.0.0.1 that answers 200 to basic credentials `u:p` and 401
    /// (asking for basic credentials) to anything else; returns its host.
    async fn basic_only_registry() -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                            seen.drain(..end + 4);
                            // base64("u:p")
                            let answer = if head.contains("authorization: basic dtpw") {
                                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            } else {
                                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"r\"\r\ncontent-length: 0\r\n\r\n"
                            };
                            if conn.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        host
    }

    #[tokio::test]
    async fn a_credential_that_worked_serves_only_pulls_offering_the_same() {
        let host = basic_only_registry().await;
        let transport = Transport::new(
            Duration::from_secs(5),
            Duration::from_secs(5),
            "berth-test",
            None,
        );
        let endpoint = Endpoint {
            host: host.clone(),
            base: format!("http://{host}/v2"),
            mirror: false,
            capabilities: crate::image::hosts::Capabilities {
                pull: true,
                resolve: true,
            },
            tls: TlsFiles::default(),
            headers: Vec::new(),
        };
        let image = ImageRef::parse(&format!("{host}/private/app:1")).unwrap();
        let request = Request {
            url: format!("http://{host}/v2/private/app/manifests/1"),
            what: "manifest",
            accept: None,
            from: None,
        };
        let right = EndpointAuth::Given(RegistryAuth::Basic {
            username: "u".to_owned(),
            password: "p".to_owned(),
        });
        let get = |auth: EndpointAuth| {
            let (transport, endpoint, image, request) = (&transport, &endpoint, &image, &request);
            async move {
                transport
                    .get(endpoint, image, &auth, request)
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(get(right.clone()).await, StatusCode::OK);
        // The same credentials again: the kept one is sent at once.
        assert_eq!(get(right).await, StatusCode::OK);
        // A pull without credentials, or with others, is refused as if none had worked.
        assert_eq!(
            get(EndpointAuth::Given(RegistryAuth::Anonymous)).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong = EndpointAuth::Given(RegistryAuth::Basic {
            username: "u".to_owned(),
            password: "guess".to_owned(),
        });
        assert_eq!(get(wrong).await, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn bearer_challenges_give_realm_and_service() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some((
                "https://auth.docker.io/token".to_owned(),
                Some("registry.docker.io".to_owned())
            ))
        );
        assert_eq!(
            bearer_challenge(
                r#"Basic realm="Registry Realm", Bearer realm="http://127.0.0.1:1/t""#
            ),
            Some(("http://127.0.0.1:1/t".to_owned(), None))
        );
        assert_eq!(bearer_challenge(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(bearer_challenge(""), None);
    }

    #[test]
    fn certificate_files_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.crt");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let tls = TlsFiles {
            ca: vec![garbage.clone()],
            ..TlsFiles::default()
        };
        let Err((path, reason)) = TlsContents::read(&tls) else {
            panic!("a file without a certificate is refused")
        };
        assert_eq!(path, garbage);
        assert_eq!(reason, "holds no PEM certificate");

        let missing = dir.path().join("missing.crt");
        let tls = TlsFiles {
            ca: vec![missing.clone()],
            ..TlsFiles::default()
        };
        let Err((path, reason)) = TlsContents::read(&tls) else {
            panic!("a missing file is refused")
        };
        assert_eq!(path, missing);
        assert!(reason.starts_with("cannot read:"), "{reason}");
    }

    #[test]
    fn a_ca_and_a_client_certificate_build_a_client_keyed_by_contents() {
        super::super::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen_like_self_signed();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, &ca.0).unwrap();
        let (cert_path, key_path) = (
            dir.path().join("client.cert"),
            dir.path().join("client.key"),
        );
        std::fs::write(&cert_path, &ca.0).unwrap();
        std::fs::write(&key_path, &ca.1).unwrap();
        let tls = TlsFiles {
            ca: vec![ca_path.clone()],
            client: vec![(cert_path.clone(), key_path.clone())],
            skip_verify: false,
        };
        let contents = TlsContents::read(&tls).unwrap();
        contents
            .build(reqwest::Client::builder(), false)
            .expect("a client is built");
        assert_ne!(contents.key(false), contents.key(true));
        let plain = TlsContents::read(&TlsFiles::default()).unwrap();
        assert_ne!(contents.key(false), plain.key(false));

        // A key that is no key is refused, naming the key's file.
        std::fs::write(
            &key_path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let Err((path, reason)) = TlsContents::read(&tls) else {
            panic!("a bad key is refused")
        };
        assert_eq!(path, key_path);
        assert!(
            reason.starts_with("holds a private key that cannot sign"),
            "{reason}"
        );
    }

    /// A self-signed CA certificate and its key, PEM.
    fn rcgen_like_self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["registry.test".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

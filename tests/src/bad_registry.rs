//! A small hand-written registry for what docker-registry cannot be made to do: serve one image
//! whose layer bytes do not match their digest, stall layer downloads after the headers,
//! demand credentials (HTTP basic, or bearer tokens from a token realm it also serves),
//! answer with a manifest, an index or a config far larger than any client should hold, or
//! hold every manifest request until the test releases it, fail the first manifest requests
//! with 503, or cut the first layer download off halfway and then serve HTTP Range requests.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use rand::RngCore;

use crate::image::{BuiltImage, Compression, ImageConfig, Layer, ManifestFormat};

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How the registry misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadMode {
    /// Manifest and config are correct; the layer blob has the right length but different
    /// bytes, so its digest does not match.
    CorruptBlob,
    /// Everything is correct, but a layer blob `GET` sends the headers and then never the body
    /// (the connection stays open until the client closes it or the registry stops). The
    /// config blob is served normally, so clients reach the layer download.
    Stall,
    /// Everything is correct, but every `/v2/` request needs HTTP basic credentials
    /// ([`AUTH_USER`], [`AUTH_PASSWORD`]).
    BasicAuth,
    /// Everything is correct, but every `/v2/` request needs a bearer token, which the token
    /// realm at `/token` hands out for basic credentials ([`AUTH_USER`], [`AUTH_PASSWORD`]), as
    /// Docker Hub and most registries do.
    TokenAuth,
    /// The manifest answer declares and sends [`OVERSIZE`] bytes.
    HugeManifest,
    /// The manifest answer declares no length and sends [`OVERSIZE`] bytes: only counting
    /// what arrives can stop it.
    UnsizedManifest,
    /// The tag answers with an image index of [`OVERSIZE`] bytes (declared).
    HugeIndex,
    /// The manifest is correct but for its config descriptor, which declares [`OVERSIZE`]
    /// bytes; the config blob answer declares and sends as many.
    HugeConfig,
    /// Everything is correct, but every manifest request (by tag or digest, GET or HEAD) waits
    /// until [`BadRegistry::release`]: a pull that has started stays in its first step for as
    /// long as the test needs, whatever the content store already holds.
    Hold,
    /// The first [`UNAVAILABLE_ANSWERS`] manifest requests answer 503 Service Unavailable;
    /// then everything is correct.
    Unavailable,
    /// The first layer download without a Range header sends the headers (the whole length
    /// declared) and half the body, then resets the connection. Range requests (`bytes=N-`)
    /// get 206 Partial Content with the rest; [`BadRegistry::ranges`] lists them.
    ResetMidBlob,
}

/// How many manifest requests [`BadMode::Unavailable`] answers with 503.
pub const UNAVAILABLE_ANSWERS: usize = 2;

/// The size of every oversized answer: 100 MiB.
pub const OVERSIZE: u64 = 100 << 20;

/// The user the authenticating modes accept.
pub const AUTH_USER: &str = "berth";
/// The password the authenticating modes accept.
pub const AUTH_PASSWORD: &str = "s3cret-pass";
/// The token the token realm issues, which the token mode accepts as the bearer.
pub const AUTH_TOKEN: &str = "berth-test-token-0123456789";
const TOKEN: &str = AUTH_TOKEN;

/// The served image, shared with connection tasks.
#[derive(Debug)]
struct Served {
    mode: BadMode,
    image: BuiltImage,
    layer_body: Bytes,
    requests: Mutex<Vec<String>>,
    /// Token endpoint URL announced in bearer challenges.
    realm: String,
    /// Bytes of oversized bodies written so far.
    oversize_sent: AtomicU64,
    /// Becomes true when the test releases held requests ([`BadMode::Hold`]).
    released: watch::Sender<bool>,
    /// Manifest requests answered so far ([`BadMode::Unavailable`]).
    manifests_asked: AtomicU64,
    /// Whether the layer download was cut off already ([`BadMode::ResetMidBlob`]).
    cut: std::sync::atomic::AtomicBool,
    /// `path bytes=…` of every request with a Range header.
    ranges: Mutex<Vec<String>>,
}

/// A misbehaving registry on 127.0.0.1 serving one image under any repository and any tag.
/// The image is unique to each instance (one gzip layer of random bytes at `/bad/nonce.bin`,
/// OCI manifest), so no content store already holds its layer. Stops on drop.
pub struct BadRegistry {
    addr: SocketAddr,
    served: Arc<Served>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for BadRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BadRegistry")
            .field("addr", &self.addr)
            .field("mode", &self.served.mode)
            .finish()
    }
}

impl BadRegistry {
    /// Binds 127.0.0.1:0 and serves from a thread with its own tokio runtime.
    pub fn start(mode: BadMode) -> Result<BadRegistry> {
        Self::start_serving(mode, unique_image()?)
    }

    /// Like [`Self::start`], serving `image` (one layer) instead of an image of random bytes:
    /// for modes that end in a good pull, such as [`BadMode::Hold`], of an image that runs.
    pub fn start_serving(mode: BadMode, image: BuiltImage) -> Result<BadRegistry> {
        let layer = image.layers.first().context("bad image has no layer")?;
        let layer_body = match mode {
            BadMode::Stall
            | BadMode::BasicAuth
            | BadMode::TokenAuth
            | BadMode::HugeManifest
            | BadMode::UnsizedManifest
            | BadMode::HugeIndex
            | BadMode::HugeConfig
            | BadMode::Hold
            | BadMode::Unavailable
            | BadMode::ResetMidBlob => layer.blob.clone(),
            BadMode::CorruptBlob => {
                let mut v = layer.blob.to_vec();
                // Same length, different bytes (past the gzip header, so the digest check or
                // the inflater notices, never the length).
                let mid = v.len() / 2;
                for b in v.iter_mut().skip(mid).take(16) {
                    *b ^= 0xA5;
                }
                Bytes::from(v)
            }
        };
        let mut image = image;
        if mode == BadMode::HugeConfig {
            let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes)
                .context("parse the built manifest")?;
            manifest["config"]["size"] = serde_json::json!(OVERSIZE);
            let bytes = Bytes::from(serde_json::to_vec(&manifest).context("manifest json")?);
            image.manifest.digest = crate::sha256_digest(&bytes);
            image.manifest.bytes = bytes;
        }
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("bind bad registry on 127.0.0.1:0")?;
        std_listener
            .set_nonblocking(true)
            .context("set_nonblocking")?;
        let addr = std_listener.local_addr().context("local_addr")?;
        let served = Arc::new(Served {
            mode,
            image,
            layer_body,
            requests: Mutex::new(Vec::new()),
            realm: format!("http://{addr}/token"),
            oversize_sent: AtomicU64::new(0),
            released: watch::Sender::new(false),
            manifests_asked: AtomicU64::new(0),
            cut: std::sync::atomic::AtomicBool::new(false),
            ranges: Mutex::new(Vec::new()),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("bad registry runtime")?;
        let (stop, stopped) = oneshot::channel();
        let task_served = served.clone();
        let thread = thread::Builder::new()
            .name("bad-registry".into())
            .spawn(move || {
                let result: Result<()> = rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).context("tokio listener")?;
                    tokio::select! {
                        _ = stopped => Ok(()),
                        r = accept_loop(listener, task_served) => r,
                    }
                });
                if let Err(e) = result {
                    tracing::warn!(error = %format!("{e:#}"), "bad registry stopped");
                }
                // Stalled connections are parked forever: drop them.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .context("spawn bad registry thread")?;
        Ok(BadRegistry {
            addr,
            served,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Lets the held manifest requests ([`BadMode::Hold`]) and every later one through.
    pub fn release(&self) {
        self.served.released.send_replace(true);
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT/<repo>:latest`.
    pub fn reference(&self, repo: &str) -> String {
        format!("{}/{repo}:latest", self.host())
    }

    /// The image served (with its correct digests).
    pub fn image(&self) -> &BuiltImage {
        &self.served.image
    }

    /// Digest of the manifest served.
    pub fn manifest_digest(&self) -> &str {
        &self.served.image.manifest.digest
    }

    /// Digest the manifest claims for the layer.
    pub fn layer_digest(&self) -> String {
        self.served
            .image
            .layers
            .first()
            .map(|l| l.digest.clone())
            .unwrap_or_default()
    }

    /// Bytes of oversized answers written so far (what the client let arrive before it
    /// closed the connection, plus what the kernel buffered).
    pub fn oversize_sent(&self) -> u64 {
        self.served.oversize_sent.load(Ordering::SeqCst)
    }

    /// `/path bytes=…` of every request that carried a Range header, in order.
    pub fn ranges(&self) -> Vec<String> {
        self.served
            .ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `METHOD /path` of every request received so far.
    pub fn requests(&self) -> Vec<String> {
        self.served
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for BadRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unique_image() -> Result<BuiltImage> {
    let mut nonce = vec![0u8; 4096];
    rand::rng().fill_bytes(&mut nonce);
    let layer = Layer::new(Compression::Gzip)
        .file("/bad/nonce.bin", nonce, 0o644)
        .build()?;
    let config = ImageConfig {
        cmd: Some(vec!["sh".into()]),
        ..ImageConfig::default()
    };
    BuiltImage::from_layers(vec![layer], &config, ManifestFormat::Oci)
}

async fn accept_loop(listener: TcpListener, served: Arc<Served>) -> Result<()> {
    loop {
        let (conn, _) = listener.accept().await.context("accept")?;
        let served = served.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(conn, &served).await {
                tracing::debug!(error = %format!("{e:#}"), "bad registry connection");
            }
        });
    }
}

struct Response {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    stall: bool,
    /// Send half the body, then reset the connection.
    cut: bool,
    /// Instead of `body`: [`OVERSIZE`] bytes of JSON-looking padding, with their length
    /// declared or not.
    oversize: Option<Declared>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Declared {
    Length,
    Nothing,
}

impl Response {
    fn ok(content_type: &str, digest: &str, body: Bytes) -> Response {
        let mut headers = vec![("Content-Type", content_type.to_owned())];
        if !digest.is_empty() {
            headers.push(("Docker-Content-Digest", digest.to_owned()));
        }
        Response {
            status: "200 OK",
            headers,
            body,
            stall: false,
            cut: false,
            oversize: None,
        }
    }

    fn unauthorized(challenge: String) -> Response {
        let body = serde_json::json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "authentication required", "detail": null }] });
        Response {
            status: "401 Unauthorized",
            headers: vec![
                ("Content-Type", "application/json; charset=utf-8".to_owned()),
                ("WWW-Authenticate", challenge),
            ],
            body: Bytes::from(body.to_string()),
            stall: false,
            cut: false,
            oversize: None,
        }
    }

    fn not_found(code: &str, message: &str) -> Response {
        let body =
            serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
        Response {
            status: "404 Not Found",
            headers: vec![("Content-Type", "application/json; charset=utf-8".to_owned())],
            body: Bytes::from(body.to_string()),
            stall: false,
            cut: false,
            oversize: None,
        }
    }
}

async fn handle(mut conn: TcpStream, served: &Served) -> Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn))
        .await
        .context("request head timed out")??;
    let line = head.lines().next().unwrap_or_default().to_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    served
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or_default();
    let authorization = header(&head, "authorization");
    let range = header(&head, "range");
    if let Some(range) = &range {
        served
            .ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{path} {range}"));
    }
    let resp = if method != "GET" && method != "HEAD" {
        Response::not_found("UNSUPPORTED", "this registry only serves GET and HEAD")
    } else if let Some(denied) = authenticate(path, authorization.as_deref(), served) {
        denied
    } else if let Some(unavailable) = unavailable(path, served) {
        unavailable
    } else {
        let resp = route(path, served);
        match range.as_deref().and_then(range_start) {
            Some(start) if served.mode == BadMode::ResetMidBlob && resp.status == "200 OK" => {
                partial(resp, start)
            }
            _ => resp,
        }
    };
    if served.mode == BadMode::Hold && path.contains("/manifests/") {
        let mut released = served.released.subscribe();
        released
            .wait_for(|r| *r)
            .await
            .context("the registry stopped while holding a request")?;
    }
    let mut out = format!("HTTP/1.1 {}\r\nConnection: close\r\n", resp.status);
    match resp.oversize {
        None => out.push_str(&format!("Content-Length: {}\r\n", resp.body.len())),
        Some(Declared::Length) => out.push_str(&format!("Content-Length: {OVERSIZE}\r\n")),
        // Delimited by the connection's close, as HTTP/1.1 allows.
        Some(Declared::Nothing) => {}
    }
    out.push_str("Docker-Distribution-Api-Version: registry/2.0\r\n");
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    conn.write_all(out.as_bytes()).await.context("write head")?;
    conn.flush().await.context("flush head")?;
    if method == "HEAD" {
        return Ok(());
    }
    if resp.stall {
        // Never send the body; hold the connection until the client gives up.
        let mut sink = [0u8; 1024];
        while conn.read(&mut sink).await.context("read while stalled")? != 0 {}
        return Ok(());
    }
    if resp.oversize.is_some() {
        write_oversize(&mut conn, served).await;
        return Ok(());
    }
    if resp.cut {
        let half = resp.body.len() / 2;
        conn.write_all(&resp.body[..half])
            .await
            .context("write half the body")?;
        conn.flush().await.context("flush half the body")?;
        // An RST rather than a FIN: the client sees the connection reset mid-body.
        conn.set_zero_linger().context("set linger 0")?;
        drop(conn);
        return Ok(());
    }
    conn.write_all(&resp.body).await.context("write body")?;
    conn.shutdown().await.context("shutdown")?;
    Ok(())
}

/// Writes [`OVERSIZE`] bytes (`{"pad":"aaa…`) until done or the client goes away, counting them.
async fn write_oversize(conn: &mut TcpStream, served: &Served) {
    const CHUNK: usize = 64 << 10;
    let mut chunk = vec![b'a'; CHUNK];
    chunk[..8].copy_from_slice(b"{\"pad\":\"");
    let mut left = OVERSIZE;
    while left > 0 {
        let n = CHUNK.min(left as usize);
        if conn.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        served.oversize_sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
        chunk[..8].fill(b'a');
    }
    let _ = conn.shutdown().await;
}

/// A request header's value, by case-insensitive name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn basic_credentials() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"))
}

/// `None` when the request may proceed; else the answer that refuses it (or, for the token
/// realm, the token itself).
fn authenticate(path: &str, authorization: Option<&str>, served: &Served) -> Option<Response> {
    let basic_ok = authorization == Some(format!("Basic {}", basic_credentials()).as_str());
    match served.mode {
        BadMode::BasicAuth if !basic_ok => Some(Response::unauthorized(
            "Basic realm=\"berth-test\"".to_owned(),
        )),
        BadMode::TokenAuth if path == "/token" => Some(if basic_ok {
            let body =
                serde_json::json!({ "token": TOKEN, "access_token": TOKEN, "expires_in": 300 });
            Response::ok("application/json", "", Bytes::from(body.to_string()))
        } else {
            Response::unauthorized("Basic realm=\"berth-test-token\"".to_owned())
        }),
        BadMode::TokenAuth if authorization != Some(format!("Bearer {TOKEN}").as_str()) => {
            let scope = path
                .strip_prefix("/v2/")
                .and_then(|rest| {
                    rest.split_once("/manifests/")
                        .or_else(|| rest.split_once("/blobs/"))
                })
                .map(|(repo, _)| format!(",scope=\"repository:{repo}:pull\""))
                .unwrap_or_default();
            Some(Response::unauthorized(format!(
                "Bearer realm=\"{}\",service=\"berth-test\"{scope}",
                served.realm
            )))
        }
        _ => None,
    }
}

async fn read_head(conn: &mut TcpStream) -> Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = conn.read(&mut chunk).await.context("read request")?;
        if n == 0 {
            bail!("client closed before sending a request");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_HEAD {
            bail!("request head longer than {MAX_HEAD} bytes");
        }
    }
}

/// 503 for the first manifest requests of [`BadMode::Unavailable`].
fn unavailable(path: &str, served: &Served) -> Option<Response> {
    if served.mode != BadMode::Unavailable || !path.contains("/manifests/") {
        return None;
    }
    let asked = served.manifests_asked.fetch_add(1, Ordering::SeqCst);
    (asked < UNAVAILABLE_ANSWERS as u64).then(|| {
        let body = serde_json::json!({ "errors": [{ "code": "UNAVAILABLE", "message": "service unavailable", "detail": null }] });
        Response {
            status: "503 Service Unavailable",
            headers: vec![("Content-Type", "application/json; charset=utf-8".to_owned())],
            body: Bytes::from(body.to_string()),
            stall: false,
            cut: false,
            oversize: None,
        }
    })
}

/// The first byte of a `bytes=N-` range.
fn range_start(range: &str) -> Option<usize> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    end.trim().is_empty().then_some(())?;
    start.trim().parse().ok()
}

/// `resp` from byte `start` on, as 206 Partial Content (416 past its end).
fn partial(mut resp: Response, start: usize) -> Response {
    let total = resp.body.len();
    if start >= total {
        resp.status = "416 Range Not Satisfiable";
        resp.headers
            .push(("Content-Range", format!("bytes */{total}")));
        resp.body = Bytes::new();
        return resp;
    }
    resp.status = "206 Partial Content";
    resp.headers.push((
        "Content-Range",
        format!("bytes {start}-{}/{total}", total - 1),
    ));
    resp.body = resp.body.slice(start..);
    resp.cut = false;
    resp
}

fn route(path: &str, served: &Served) -> Response {
    let image = &served.image;
    if path == "/v2/" || path == "/v2" {
        return Response::ok(
            "application/json; charset=utf-8",
            "",
            Bytes::from_static(b"{}"),
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Response::not_found("NOT_FOUND", "not found");
    };
    if let Some((_, reference)) = rest.rsplit_once("/manifests/") {
        if reference.starts_with("sha256:") && reference != image.manifest.digest {
            return Response::not_found("MANIFEST_UNKNOWN", "manifest unknown");
        }
        let oversized = match served.mode {
            BadMode::HugeManifest => Some((image.manifest.media_type.as_str(), Declared::Length)),
            BadMode::UnsizedManifest => {
                Some((image.manifest.media_type.as_str(), Declared::Nothing))
            }
            BadMode::HugeIndex => {
                Some(("application/vnd.oci.image.index.v1+json", Declared::Length))
            }
            _ => None,
        };
        if let Some((media_type, declared)) = oversized {
            let mut r = Response::ok(media_type, "", Bytes::new());
            r.oversize = Some(declared);
            return r;
        }
        return Response::ok(
            &image.manifest.media_type,
            &image.manifest.digest,
            image.manifest.bytes.clone(),
        );
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        if digest == image.config.digest {
            let mut r = Response::ok(
                "application/octet-stream",
                digest,
                image.config.bytes.clone(),
            );
            if served.mode == BadMode::HugeConfig {
                r.oversize = Some(Declared::Length);
            }
            return r;
        }
        if image.layers.first().is_some_and(|l| l.digest == digest) {
            let mut r = Response::ok(
                "application/octet-stream",
                digest,
                served.layer_body.clone(),
            );
            r.stall = served.mode == BadMode::Stall;
            r.cut = served.mode == BadMode::ResetMidBlob
                && !served.cut.swap(true, std::sync::atomic::Ordering::SeqCst);
            return r;
        }
        return Response::not_found("BLOB_UNKNOWN", "blob unknown to registry");
    }
    Response::not_found("NOT_FOUND", "not found")
}

//! A private distribution registry (`docker-registry`) on 127.0.0.1 with a parsed access log.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::prereq::bins;
use crate::process::{self, POLL};

const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a count waits for the registry to log the marker request it sent.
const SYNC_DEADLINE: Duration = Duration::from_secs(5);
/// Attempts to start when the free port got taken between probe and bind.
const START_ATTEMPTS: usize = 3;

/// How a registry started by [`PrivateRegistry::start_with`] differs from the plain one.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: demand a client certificate signed by one of these CAs (PEM files), as
    /// docker-registry's `http.tls.clientcas` does (mutual TLS).
    pub client_cas: Vec<PathBuf>,
    /// Demand HTTP basic credentials from this htpasswd file (bcrypt lines).
    pub htpasswd: Option<PathBuf>,
    /// Serve the content stored under this directory (another registry's `data_dir()`)
    /// instead of a fresh one.
    pub data: Option<PathBuf>,
}

/// A registry started by the harness. Killed on drop.
#[derive(Debug)]
pub struct PrivateRegistry {
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    pid: u32,
    child: Mutex<Option<Child>>,
    marker: AtomicU64,
}

/// One completed request, from the registry's JSON log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `GET`, `HEAD`, `PUT`...
    pub method: String,
    /// Path and query as requested, e.g. `/v2/hello/blobs/sha256:...`.
    pub uri: String,
    /// HTTP status of the response.
    pub status: u16,
    /// Bytes of the response body the registry wrote (0 when not logged).
    pub written: u64,
}

#[derive(Deserialize)]
struct RawLogLine {
    msg: Option<String>,
    #[serde(rename = "http.request.method")]
    method: Option<String>,
    #[serde(rename = "http.request.uri")]
    uri: Option<String>,
    #[serde(rename = "http.response.status")]
    status: Option<u16>,
    #[serde(rename = "http.response.written")]
    written: Option<u64>,
}

impl PrivateRegistry {
    /// Writes `dir/config.yml` and starts the registry on a free 127.0.0.1 port, waiting until
    /// `GET /v2/` answers 200.
    pub fn start(dir: &Path) -> Result<PrivateRegistry> {
        Self::start_with(dir, &RegistryOptions::default())
    }

    /// Like [`start`](Self::start), with TLS, basic authentication or another registry's
    /// content; ready once `/v2/` answers at all (401 when it demands credentials).
    pub fn start_with(dir: &Path, options: &RegistryOptions) -> Result<PrivateRegistry> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir =
            fs::canonicalize(dir).with_context(|| format!("canonicalize {}", dir.display()))?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&dir, options) {
                Ok(r) => return Ok(r),
                Err(e) if format!("{e:#}").contains("address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn start_once(dir: &Path, options: &RegistryOptions) -> Result<PrivateRegistry> {
        let port = free_port()?;
        let data = options.data.clone().unwrap_or_else(|| dir.join("data"));
        fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let config = dir.join("config.yml");
        let log = dir.join("registry.log");
        fs::write(&config, config_yml(&data, port, options))
            .with_context(|| format!("write {}", config.display()))?;
        let log_file =
            fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let log_err = log_file.try_clone().context("clone log file handle")?;
        let mut cmd = process::daemon_command(Path::new(bins::REGISTRY));
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bins::REGISTRY))?;
        let pid = child.id();
        let me = PrivateRegistry {
            dir: dir.to_owned(),
            log,
            port,
            pid,
            child: Mutex::new(Some(child)),
            marker: AtomicU64::new(0),
        };
        me.wait_ready(options.tls.is_some() || options.htpasswd.is_some())?;
        tracing::debug!(host = %me.host(), pid, "private registry ready");
        Ok(me)
    }

    fn wait_ready(&self, any_answer: bool) -> Result<()> {
        process::wait_ready(
            &format!("registry on {}", self.host()),
            &self.log,
            START_DEADLINE,
            || self.exited(),
            || match http_get_status(self.addr(), "/v2/") {
                Ok(200) => Ok(()),
                // Plain HTTP to a TLS port answers 400; basic authentication answers 401.
                Ok(_) if any_answer => Ok(()),
                Ok(code) => Err(format!("GET /v2/ answered {code}")),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    }

    /// How the registry exited, once it has (reaping it).
    pub(crate) fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT/repo:tag`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// The registry's combined stdout and stderr (JSON lines plus combined-format access lines).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Where blobs and manifests are stored.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log, lines)
    }

    /// Every completed request logged so far. Before reading, sends a marker request and waits
    /// until it is logged, so requests that finished before the call are included.
    pub fn requests(&self) -> Result<Vec<AccessLogEntry>> {
        let n = self.marker.fetch_add(1, Ordering::Relaxed);
        let marker = format!("/v2/?berth-sync={}-{n}", std::process::id());
        http_get_status(self.addr(), &marker).context("registry marker request")?;
        let deadline = Instant::now() + SYNC_DEADLINE;
        loop {
            let entries = self.read_log()?;
            if entries.iter().any(|e| e.uri == marker) {
                return Ok(entries
                    .into_iter()
                    .filter(|e| !e.uri.starts_with("/v2/?berth-sync="))
                    .collect());
            }
            if Instant::now() >= deadline {
                bail!("registry did not log marker {marker} within {SYNC_DEADLINE:?}");
            }
            thread::sleep(POLL);
        }
    }

    fn read_log(&self) -> Result<Vec<AccessLogEntry>> {
        let text = fs::read_to_string(&self.log)
            .with_context(|| format!("read {}", self.log.display()))?;
        Ok(parse_access_log(&text))
    }

    /// Successful (2xx) `GET /v2/<repository>/blobs/<digest>` requests so far.
    pub fn blob_get_count(&self, repository: &str, digest: &str) -> Result<usize> {
        let uri = format!("/v2/{repository}/blobs/{digest}");
        Ok(self
            .requests()?
            .iter()
            .filter(|e| {
                e.method == "GET" && (200..300).contains(&e.status) && path_of(&e.uri) == uri
            })
            .count())
    }

    /// Bytes of a blob the registry sent in successful (2xx, including partial) `GET`s so far.
    pub fn blob_bytes_sent(&self, repository: &str, digest: &str) -> Result<u64> {
        let uri = format!("/v2/{repository}/blobs/{digest}");
        Ok(self
            .requests()?
            .iter()
            .filter(|e| {
                e.method == "GET" && (200..300).contains(&e.status) && path_of(&e.uri) == uri
            })
            .map(|e| e.written)
            .sum())
    }

    /// Successful (2xx) `GET /v2/<repository>/manifests/<tag or digest>` requests so far.
    pub fn manifest_get_count(&self, repository: &str) -> Result<usize> {
        let prefix = format!("/v2/{repository}/manifests/");
        Ok(self
            .requests()?
            .iter()
            .filter(|e| {
                e.method == "GET"
                    && (200..300).contains(&e.status)
                    && path_of(&e.uri).starts_with(&prefix)
            })
            .count())
    }

    /// Kills the registry. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn path_of(uri: &str) -> &str {
    uri.split('?').next().unwrap_or(uri)
}

/// The completed requests in the registry's log: JSON lines whose `msg` starts with
/// `response completed` (also `response completed with error`) and that carry
/// `http.request.method`, `http.request.uri` and `http.response.status`.
pub fn parse_access_log(text: &str) -> Vec<AccessLogEntry> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<RawLogLine>(l).ok())
        .filter(|r| {
            r.msg
                .as_deref()
                .is_some_and(|m| m.starts_with("response completed"))
        })
        .filter_map(|r| {
            Some(AccessLogEntry {
                method: r.method?,
                uri: r.uri?,
                status: r.status?,
                written: r.written.unwrap_or(0),
            })
        })
        .collect()
}

fn config_yml(data: &Path, port: u16, options: &RegistryOptions) -> String {
    let mut yml = format!(
        "# Written by berth-tests; a private registry for end-to-end tests.
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: \"{}\"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
",
        data.display()
    );
    if let Some((cert, key)) = &options.tls {
        yml.push_str(&format!(
            "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ));
        if !options.client_cas.is_empty() {
            yml.push_str("    clientcas:\n");
            for ca in &options.client_cas {
                yml.push_str(&format!("      - \"{}\"\n", ca.display()));
            }
        }
    }
    if let Some(htpasswd) = &options.htpasswd {
        yml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-tests\n    path: \"{}\"\n",
            htpasswd.display()
        ));
    }
    yml
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read, release).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(l.local_addr().context("local_addr")?.port())
}

/// A minimal blocking `GET` that returns the status code; usable outside any async runtime.
pub(crate) fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let timeout = Duration::from_secs(2);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))
        .context("set read timeout")?;
    s.set_write_timeout(Some(timeout))
        .context("set write timeout")?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .context("send request")?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).context("read response")?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    // Drain the rest so the server logs a completed response rather than a broken pipe.
    let _ = s.read_to_end(&mut head);
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| {
            format!(
                "bad HTTP status line from {addr}: {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_log_lines() {
        let log = r#"{"go.version":"go1.19.8","level":"info","msg":"listening on 127.0.0.1:45123"}
{"http.request.method":"GET","http.request.uri":"/v2/","http.response.status":200,"level":"info","msg":"response completed"}
127.0.0.1 - - [27/Nov/2026:10:59:21 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
{"err.code":"blob unknown","http.request.method":"GET","http.request.uri":"/v2/foo/blobs/sha256:aa","http.response.status":404,"http.response.written":157,"level":"error","msg":"response completed with error"}"#;
        let e = parse_access_log(log);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1],
            AccessLogEntry {
                method: "GET".into(),
                uri: "/v2/foo/blobs/sha256:aa".into(),
                status: 404,
                written: 157,
            }
        );
    }
}

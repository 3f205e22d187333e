//! Where a registry's requests go and how they are secured, as containerd reads it: the
//! directory `<certs dir>/<host[:port]>/` (default `/etc/berth/certs.d`, else `_default/`)
//! holds
//! - Docker's files: every `*.crt` is a CA trusted besides the system roots, every `*.cert`
//!   with the `*.key` of the same name is a client certificate;
//! - containerd's `hosts.toml`: `server` (the upstream), and `[host."<url>"]` mirrors tried in
//!   the file's order before it, each with `capabilities` (`pull`, `resolve`), `ca`,
//!   `client`, `skip_verify`, `override_path` and `header`; the same keys at the top level
//!   apply to the upstream.
//!
//! Parsing is pure ([`parse_hosts_toml`]); [`load`] reads the directory. A bad file is an
//! error that names the file and the key. Certificate files are read when a client is built
//! (`registry/transport.rs`), so their errors name them too.

use std::path::{Path, PathBuf};

use reqwest::Url;

/// The directory searched when the agent's config names none.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";
/// What the upstream and mirrors may be asked for when a file does not say.
const DEFAULT_CAPABILITIES: Capabilities = Capabilities {
    pull: true,
    resolve: true,
};

/// A registry host configuration that cannot be used: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad registry host configuration {}: {reason}", path.display())]
pub(crate) struct HostsError {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

impl HostsError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// What a host may be asked: `resolve` turns a tag into a digest, `pull` fetches content by
/// digest (manifests and blobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub(crate) pull: bool,
    pub(crate) resolve: bool,
}

/// How a host's TLS is set up, beyond the system roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsFiles {
    /// PEM files of CAs trusted for this host besides the system roots.
    pub(crate) ca: Vec<PathBuf>,
    /// Client certificates: the certificate's PEM file and its key's (the same file when the
    /// key is in it).
    pub(crate) client: Vec<(PathBuf, PathBuf)>,
    /// Accept any certificate: only where a hosts.toml says `skip_verify = true`.
    pub(crate) skip_verify: bool,
}

/// One place a registry's content can be asked for: a mirror or the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` of the endpoint, as it appears in logs and errors.
    pub(crate) host: String,
    /// `scheme://host[:port]/path`, to which `/<repository>/manifests/...` is appended
    /// (`https://registry.example/v2`).
    pub(crate) base: String,
    /// True for a mirror, false for the upstream.
    pub(crate) mirror: bool,
    pub(crate) capabilities: Capabilities,
    pub(crate) tls: TlsFiles,
    /// Extra request headers, as the file gives them.
    pub(crate) headers: Vec<(String, String)>,
}

/// Every endpoint of one registry in the order they are tried: mirrors, then the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hosts {
    pub(crate) endpoints: Vec<Endpoint>,
}

impl Hosts {
    /// The endpoints that may be asked for `what`.
    pub(crate) fn able(&self, resolve: bool) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(move |e| {
            if resolve {
                e.capabilities.resolve
            } else {
                e.capabilities.pull
            }
        })
    }
}

/// The endpoints of `registry` (`host[:port]` as in image references): what its directory
/// under `certs_dir` says, else the upstream alone, over HTTPS unless the registry is listed in
/// `insecure`. A missing directory is no error.
pub(crate) fn load(
    certs_dir: Option<&Path>,
    registry: &str,
    insecure: &[String],
) -> Result<Hosts, HostsError> {
    let default_server = default_server(registry, insecure);
    let Some(root) = certs_dir else {
        return Ok(upstream_only(registry, &default_server));
    };
    let Some(dir) = host_dir(root, registry) else {
        return Ok(upstream_only(registry, &default_server));
    };
    let docker = docker_files(&dir)?;
    let hosts_toml = dir.join("hosts.toml");
    let mut hosts = match std::fs::read_to_string(&hosts_toml) {
        Ok(text) => parse_hosts_toml(&hosts_toml, &text, &default_server)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            upstream_only(registry, &default_server)
        }
        Err(e) => return Err(HostsError::new(&hosts_toml, format!("cannot read: {e}"))),
    };
    // Docker's files secure the upstream, beside what hosts.toml says of it.
    if let Some(upstream) = hosts.endpoints.iter_mut().find(|e| !e.mirror) {
        upstream.tls.ca.extend(docker.ca);
        upstream.tls.client.extend(docker.client);
    }
    Ok(hosts)
}

/// `<root>/<registry>` when it is a directory, else `<root>/_default` when that is one.
fn host_dir(root: &Path, registry: &str) -> Option<PathBuf> {
    [registry, "_default"]
        .into_iter()
        .map(|name| root.join(name))
        .find(|dir| dir.is_dir())
}

/// The upstream's URL when no file names it: Docker Hub's API host for `docker.io`.
fn default_server(registry: &str, insecure: &[String]) -> String {
    let scheme = if insecure.iter().any(|r| r == registry) {
        "http"
    } else {
        "https"
    };
    let host = match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    };
    format!("{scheme}://{host}")
}

fn upstream_only(registry: &str, server: &str) -> Hosts {
    let url = Url::parse(server).ok();
    let host = url
        .as_ref()
        .map(authority)
        .unwrap_or_else(|| registry.to_owned());
    Hosts {
        endpoints: vec![Endpoint {
            host,
            base: format!("{}/v2", server.trim_end_matches('/')),
            mirror: false,
            capabilities: DEFAULT_CAPABILITIES,
            tls: TlsFiles::default(),
            headers: Vec::new(),
        }],
    }
}

/// Docker's certificate files in `dir`: `*.crt` CAs, `*.cert` + `*.key` client pairs. Sorted
/// by name, so the order does not depend on the filesystem.
fn docker_files(dir: &Path) -> Result<TlsFiles, HostsError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| HostsError::new(dir, format!("cannot list the directory: {e}")))?;
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    let mut files = TlsFiles::default();
    for path in names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => files.ca.push(path),
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.is_file() {
                    return Err(HostsError::new(
                        &path,
                        format!(
                            "a client certificate needs its key beside it, as {}",
                            key.display()
                        ),
                    ));
                }
                files.client.push((path, key));
            }
            Some("key") if !path.with_extension("cert").is_file() => {
                return Err(HostsError::new(
                    &path,
                    format!(
                        "a client key needs its certificate beside it, as {}",
                        path.with_extension("cert").display()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(files)
}

/// Reads a `hosts.toml` (containerd's format). `path` names the file in errors and is the base
/// of relative certificate paths; `default_server` is the upstream when `server` is absent.
pub(crate) fn parse_hosts_toml(
    path: &Path,
    text: &str,
    default_server: &str,
) -> Result<Hosts, HostsError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| HostsError::new(path, e.message().to_owned()))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut endpoints = Vec::new();
    let mut server = None;
    for (key, value) in &table {
        match key.as_str() {
            "server" => {
                let text = value.as_str().ok_or_else(|| {
                    HostsError::new(path, "server must be a URL string, as \"https://host\"")
                })?;
                server = Some(text.to_owned());
            }
            "host" => {
                let hosts = value.as_table().ok_or_else(|| {
                    HostsError::new(path, "host must be a table of [host.\"https://...\"]")
                })?;
                for (url, settings) in hosts {
                    let settings = settings.as_table().ok_or_else(|| {
                        HostsError::new(path, format!("host.\"{url}\" must be a table"))
                    })?;
                    let what = format!("host.\"{url}\"");
                    endpoints.push(endpoint(path, dir, &what, url, settings, true)?);
                }
            }
            "capabilities" | "ca" | "client" | "skip_verify" | "override_path" | "header" => {}
            other => {
                return Err(HostsError::new(
                    path,
                    format!(
                        "unknown key {other:?}; the keys are server, host, capabilities, ca, \
                         client, skip_verify, override_path and header"
                    ),
                ));
            }
        }
    }
    let server = server.unwrap_or_else(|| default_server.to_owned());
    let mut top = table.clone();
    top.remove("server");
    top.remove("host");
    endpoints.push(endpoint(path, dir, "server", &server, &top, false)?);
    Ok(Hosts { endpoints })
}

/// One endpoint from its URL and its settings table. `what` names it in errors.
fn endpoint(
    path: &Path,
    dir: &Path,
    what: &str,
    url: &str,
    settings: &toml::Table,
    mirror: bool,
) -> Result<Endpoint, HostsError> {
    let bad = |key: &str, reason: &str| HostsError::new(path, format!("{what}: {key} {reason}"));
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let parsed = Url::parse(&with_scheme)
        .map_err(|e| HostsError::new(path, format!("{what}: {url:?} is no URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(HostsError::new(
            path,
            format!("{what}: {url:?} must be an http:// or https:// URL with a host"),
        ));
    }
    let mut endpoint = Endpoint {
        host: authority(&parsed),
        base: String::new(),
        mirror,
        capabilities: DEFAULT_CAPABILITIES,
        tls: TlsFiles::default(),
        headers: Vec::new(),
    };
    let mut override_path = false;
    for (key, value) in settings {
        match key.as_str() {
            "capabilities" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| bad(key, "must be a list, as [\"pull\", \"resolve\"]"))?;
                let mut caps = Capabilities {
                    pull: false,
                    resolve: false,
                };
                for cap in list {
                    match cap.as_str() {
                        Some("pull") => caps.pull = true,
                        Some("resolve") => caps.resolve = true,
                        Some("push") => {}
                        _ => {
                            return Err(bad(
                                key,
                                &format!("has {cap}; the capabilities are pull, resolve and push"),
                            ));
                        }
                    }
                }
                endpoint.capabilities = caps;
            }
            "ca" => {
                endpoint.tls.ca = strings(value)
                    .ok_or_else(|| bad(key, "must be a path or a list of paths"))?
                    .into_iter()
                    .map(|p| dir.join(p))
                    .collect();
            }
            "client" => {
                endpoint.tls.client = client_pairs(value, dir).ok_or_else(|| {
                    bad(
                        key,
                        "must be a path, a list of paths, or a list of [certificate, key] pairs",
                    )
                })?;
            }
            "skip_verify" => {
                endpoint.tls.skip_verify = value
                    .as_bool()
                    .ok_or_else(|| bad(key, "must be true or false"))?;
            }
            "override_path" => {
                override_path = value
                    .as_bool()
                    .ok_or_else(|| bad(key, "must be true or false"))?;
            }
            "header" => {
                let headers = value
                    .as_table()
                    .ok_or_else(|| bad(key, "must be a table of name = value"))?;
                for (name, values) in headers {
                    let values = strings(values).ok_or_else(|| {
                        bad(
                            key,
                            &format!("{name} must be a string or a list of strings"),
                        )
                    })?;
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(bad(key, &format!("{name:?} is no HTTP header name")));
                    }
                    for v in values {
                        if reqwest::header::HeaderValue::from_str(&v).is_err() {
                            return Err(bad(
                                key,
                                &format!("{name} has a value that is no HTTP header value"),
                            ));
                        }
                        endpoint.headers.push((name.clone(), v));
                    }
                }
            }
            other => {
                return Err(bad(
                    other,
                    "is unknown; a host takes capabilities, ca, client, skip_verify, \
                     override_path and header",
                ));
            }
        }
    }
    let path_part = parsed.path().trim_end_matches('/');
    let path_part = if override_path || path_part.ends_with("/v2") {
        path_part.to_owned()
    } else {
        format!("{path_part}/v2")
    };
    endpoint.base = format!("{}://{}{}", parsed.scheme(), endpoint.host, path_part);
    Ok(endpoint)
}

/// `host[:port]` of a URL (IPv6 hosts in brackets).
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A string or a list of strings.
fn strings(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// containerd's `client`: a path (certificate and key in one file), a list of such paths, or a
/// list of `[certificate, key]` pairs.
fn client_pairs(value: &toml::Value, dir: &Path) -> Option<Vec<(PathBuf, PathBuf)>> {
    let one = |v: &toml::Value| -> Option<(PathBuf, PathBuf)> {
        match v {
            toml::Value::String(s) => Some((dir.join(s), dir.join(s))),
            toml::Value::Array(pair) => match pair.as_slice() {
                [cert, key] => Some((dir.join(cert.as_str()?), dir.join(key.as_str()?))),
                _ => None,
            },
            _ => None,
        }
    };
    match value {
        toml::Value::String(_) => one(value).map(|p| vec![p]),
        toml::Value::Array(items) => items.iter().map(one).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

//! Merging the layers: each value from the file, the environment or a flag is parsed on its own
//! (so a bad value is reported even when a later layer overrides it), later layers replace
//! earlier ones key by key, and then the checks across keys run on the result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::Ipv4Cidr;

use super::error::ConfigError;
use super::keys::Key;
use super::parse;
use super::{AgentConfig, LoadedConfig, LogFormat, Source, TlsFiles};

/// One value as read from a layer, before parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
    Flag(&'a str),
}

impl Input<'_> {
    /// The value as the operator wrote it: TOML syntax from the file, raw text otherwise.
    fn shown(&self) -> String {
        match self {
            Input::Toml(value) => value.to_string(),
            Input::Env(text) | Input::Flag(text) => (*text).to_owned(),
        }
    }

    /// The text of a TOML string, or of an environment variable or flag.
    fn text(&self) -> Option<&str> {
        match self {
            Input::Toml(toml::Value::String(s)) => Some(s),
            Input::Toml(_) => None,
            Input::Env(text) | Input::Flag(text) => Some(text),
        }
    }

    fn is_toml(&self) -> bool {
        matches!(self, Input::Toml(_))
    }
}

/// A value that some layer set, with where it came from and how it was written.
#[derive(Debug, Clone)]
pub(crate) struct Given<T> {
    value: T,
    origin: Source,
    shown: String,
}

/// The keys set so far; `None` means the default.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    cluster: Option<Given<String>>,
    scheduler_endpoint: Option<Given<String>>,
    tls_ca_file: Option<Given<PathBuf>>,
    tls_cert_file: Option<Given<PathBuf>>,
    tls_key_file: Option<Given<PathBuf>>,
    allow_plaintext: Option<Given<bool>>,
    data_dir: Option<Given<PathBuf>>,
    containerd_address: Option<Given<PathBuf>>,
    containerd_namespace: Option<Given<String>>,
    reserved_cpu: Option<Given<u64>>,
    reserved_memory: Option<Given<u64>>,
    reserved_ports: Option<Given<Vec<u16>>>,
    attributes: Option<Given<BTreeMap<String, String>>>,
    heartbeat_interval: Option<Given<Duration>>,
    task_cleanup_wait: Option<Given<Duration>>,
    stop_timeout: Option<Given<Duration>>,
    image_pull_timeout: Option<Given<Duration>>,
    insecure_registries: Option<Given<Vec<String>>>,
    max_concurrent_downloads: Option<Given<usize>>,
    log_level: Option<Given<String>>,
    log_format: Option<Given<LogFormat>>,
    metrics_listen: Option<Given<SocketAddr>>,
    volume_host_paths: Option<Given<Vec<PathBuf>>>,
    allow_privileged: Option<Given<bool>>,
    init_path: Option<Given<PathBuf>>,
    network_bridge: Option<Given<String>>,
    network_cidr: Option<Given<Ipv4Cidr>>,
    network_masquerade: Option<Given<bool>>,
    network_netns_dir: Option<Given<PathBuf>>,
    network_host_netns: Option<Given<Option<PathBuf>>>,
    allowed_devices: Option<Given<Vec<PathBuf>>>,
}

/// Parsing one value: the key, its input and where it came from.
struct Setting<'a> {
    key: Key,
    input: Input<'a>,
    origin: &'a Source,
}

impl Setting<'_> {
    fn store<T>(
        &self,
        slot: &mut Option<Given<T>>,
        parsed: Result<T, String>,
    ) -> Result<(), ConfigError> {
        match parsed {
            Ok(value) => {
                *slot = Some(Given {
                    value,
                    origin: self.origin.clone(),
                    shown: self.input.shown(),
                });
                Ok(())
            }
            Err(expected) => Err(ConfigError::InvalidValue {
                key: self.key.name(),
                origin: self.origin.clone(),
                value: self.input.shown(),
                expected,
            }),
        }
    }
}

const DURATION: &str = r#"a duration like "30s", "5m" or "1h30m""#;
const POSITIVE_DURATION: &str = r#"a duration greater than zero like "30s", "5m" or "1h30m""#;

impl Partial {
    /// Parses `input` as the value of `key` and records it, replacing an earlier layer's value.
    pub(crate) fn apply(
        &mut self,
        key: Key,
        input: Input<'_>,
        origin: &Source,
    ) -> Result<(), ConfigError> {
        let s = Setting { key, input, origin };
        match key {
            Key::Cluster => s.store(
                &mut self.cluster,
                text_where(input, parse::is_cluster_name, "a cluster name of 1 to 255 letters, digits, '-' or '_'"),
            ),
            Key::SchedulerEndpoint => s.store(&mut self.scheduler_endpoint, endpoint(input)),
            Key::TlsCaFile => s.store(&mut self.tls_ca_file, absolute_path(input, "an absolute file path")),
            Key::TlsCertFile => s.store(&mut self.tls_cert_file, absolute_path(input, "an absolute file path")),
            Key::TlsKeyFile => s.store(&mut self.tls_key_file, absolute_path(input, "an absolute file path")),
            Key::AllowPlaintext => s.store(&mut self.allow_plaintext, boolean(input)),
            Key::DataDir => s.store(&mut self.data_dir, absolute_path(input, "an absolute path")),
            Key::ContainerdAddress => s.store(
                &mut self.containerd_address,
                absolute_path(input, "an absolute path to containerd's socket"),
            ),
            Key::ContainerdNamespace => s.store(
                &mut self.containerd_namespace,
                text_where(
                    input,
                    parse::is_containerd_namespace,
                    "a containerd namespace: letters and digits separated by single '.', '_' or '-', at most 76 characters",
                ),
            ),
            Key::ReservedCpu => s.store(
                &mut self.reserved_cpu,
                unsigned(input).ok_or_else(|| "a whole number of CPU units (1024 = one core)".to_owned()),
            ),
            Key::ReservedMemory => s.store(
                &mut self.reserved_memory,
                unsigned(input).ok_or_else(|| "a whole number of MiB".to_owned()),
            ),
            Key::ReservedPorts => s.store(&mut self.reserved_ports, ports(input)),
            Key::Attributes => s.store(&mut self.attributes, attributes(input)),
            Key::HeartbeatInterval => s.store(&mut self.heartbeat_interval, duration(input, true)),
            Key::TaskCleanupWait => match input {
                Input::Env(text) => s.store(
                    &mut self.task_cleanup_wait,
                    parse::seconds(text).ok_or_else(|| "a number of seconds".to_owned()),
                ),
                _ => s.store(&mut self.task_cleanup_wait, duration(input, false)),
            },
            Key::StopTimeout => s.store(&mut self.stop_timeout, duration(input, true)),
            Key::ImagePullTimeout => s.store(&mut self.image_pull_timeout, duration(input, true)),
            Key::InsecureRegistries => s.store(&mut self.insecure_registries, registries(input)),
            Key::MaxConcurrentDownloads => s.store(
                &mut self.max_concurrent_downloads,
                unsigned(input)
                    .filter(|n| *n >= 1)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| "a whole number of at least 1".to_owned()),
            ),
            Key::LogLevel => s.store(&mut self.log_level, log_level(input)),
            Key::LogFormat => s.store(
                &mut self.log_format,
                match input.text() {
                    Some("plain") => Ok(LogFormat::Plain),
                    Some("json") => Ok(LogFormat::Json),
                    _ => Err("plain or json".to_owned()),
                },
            ),
            Key::MetricsListen => s.store(
                &mut self.metrics_listen,
                input
                    .text()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| "an address and port like 127.0.0.1:51678".to_owned()),
            ),
            Key::VolumeHostPaths => s.store(
                &mut self.volume_host_paths,
                absolute_paths(input, "directories", "/srv/data"),
            ),
            Key::AllowedDevices => s.store(
                &mut self.allowed_devices,
                absolute_paths(input, "device paths", "/dev/fuse"),
            ),
            Key::AllowPrivileged => s.store(&mut self.allow_privileged, boolean(input)),
            Key::InitPath => s.store(&mut self.init_path, absolute_path(input, "an absolute file path")),
            Key::NetworkBridge => s.store(
                &mut self.network_bridge,
                input
                    .text()
                    .filter(|t| parse::is_interface_name(t))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        "an interface name of 1 to 15 letters, digits, '-', '_' or '.'".to_owned()
                    }),
            ),
            Key::NetworkCidr => s.store(
                &mut self.network_cidr,
                input
                    .text()
                    .and_then(|t| t.parse::<Ipv4Cidr>().ok())
                    .filter(|c| (8..=30).contains(&c.prefix_len()))
                    .ok_or_else(|| {
                        "an IPv4 network (host bits zero) with a prefix of /8 to /30, like 10.222.0.0/16"
                            .to_owned()
                    }),
            ),
            Key::NetworkMasquerade => s.store(&mut self.network_masquerade, boolean(input)),
            Key::NetworkNetnsDir => s.store(
                &mut self.network_netns_dir,
                absolute_path(input, "an absolute directory"),
            ),
            Key::NetworkHostNetns => s.store(
                &mut self.network_host_netns,
                absolute_path(input, "the absolute path of a network namespace, like /run/netns/lab")
                    .map(Some),
            ),
        }
    }

    /// Fills in defaults, records sources and runs the checks across keys. `file_exists` is the
    /// only look at the outside world, so that [`super::load`] stays pure.
    pub(crate) fn resolve(
        self,
        file_exists: &dyn Fn(&Path) -> bool,
    ) -> Result<LoadedConfig, Vec<ConfigError>> {
        let defaults = AgentConfig::default();
        let mut sources = BTreeMap::new();
        let mut errors = Vec::new();

        let cluster = pick(self.cluster, Key::Cluster, defaults.cluster, &mut sources);
        let endpoint = pick(
            self.scheduler_endpoint,
            Key::SchedulerEndpoint,
            defaults.scheduler_endpoint,
            &mut sources,
        );
        let allow_plaintext = pick(
            self.allow_plaintext,
            Key::AllowPlaintext,
            defaults.allow_plaintext,
            &mut sources,
        );
        let tls_files = [
            (Key::TlsCaFile, self.tls_ca_file),
            (Key::TlsCertFile, self.tls_cert_file),
            (Key::TlsKeyFile, self.tls_key_file),
        ];
        for (key, _) in &tls_files {
            sources.insert(key.name(), Source::Default);
        }
        let tls = resolve_tls(tls_files, &mut sources, file_exists, &mut errors);

        if let Some(parsed) = parse::endpoint(&endpoint.value) {
            if !parsed.https && tls.is_some() {
                errors.push(invalid(
                    Key::SchedulerEndpoint,
                    &endpoint,
                    "an https:// endpoint when the tls files are set",
                ));
            } else if !parsed.https && !parsed.is_loopback() && !allow_plaintext.value {
                errors.push(invalid(
                    Key::SchedulerEndpoint,
                    &endpoint,
                    "an https:// endpoint or a loopback host (plain http to another host needs allow_plaintext = true)",
                ));
            }
        }

        let config = AgentConfig {
            cluster: cluster.value,
            scheduler_endpoint: endpoint.value,
            tls,
            allow_plaintext: allow_plaintext.value,
            data_dir: pick(self.data_dir, Key::DataDir, defaults.data_dir, &mut sources).value,
            containerd_address: pick(
                self.containerd_address,
                Key::ContainerdAddress,
                defaults.containerd_address,
                &mut sources,
            )
            .value,
            containerd_namespace: pick(
                self.containerd_namespace,
                Key::ContainerdNamespace,
                defaults.containerd_namespace,
                &mut sources,
            )
            .value,
            reserved_cpu: pick(
                self.reserved_cpu,
                Key::ReservedCpu,
                defaults.reserved_cpu,
                &mut sources,
            )
            .value,
            reserved_memory_mib: pick(
                self.reserved_memory,
                Key::ReservedMemory,
                defaults.reserved_memory_mib,
                &mut sources,
            )
            .value,
            reserved_ports: pick(
                self.reserved_ports,
                Key::ReservedPorts,
                defaults.reserved_ports,
                &mut sources,
            )
            .value,
            attributes: pick(
                self.attributes,
                Key::Attributes,
                defaults.attributes,
                &mut sources,
            )
            .value,
            heartbeat_interval: pick(
                self.heartbeat_interval,
                Key::HeartbeatInterval,
                defaults.heartbeat_interval,
                &mut sources,
            )
            .value,
            task_cleanup_wait: pick(
                self.task_cleanup_wait,
                Key::TaskCleanupWait,
                defaults.task_cleanup_wait,
                &mut sources,
            )
            .value,
            stop_timeout: pick(
                self.stop_timeout,
                Key::StopTimeout,
                defaults.stop_timeout,
                &mut sources,
            )
            .value,
            image_pull_timeout: pick(
                self.image_pull_timeout,
                Key::ImagePullTimeout,
                defaults.image_pull_timeout,
                &mut sources,
            )
            .value,
            insecure_registries: pick(
                self.insecure_registries,
                Key::InsecureRegistries,
                defaults.insecure_registries,
                &mut sources,
            )
            .value,
            max_concurrent_downloads: pick(
                self.max_concurrent_downloads,
                Key::MaxConcurrentDownloads,
                defaults.max_concurrent_downloads,
                &mut sources,
            )
            .value,
            log_level: pick(
                self.log_level,
                Key::LogLevel,
                defaults.log_level,
                &mut sources,
            )
            .value,
            log_format: pick(
                self.log_format,
                Key::LogFormat,
                defaults.log_format,
                &mut sources,
            )
            .value,
            metrics_listen: pick(
                self.metrics_listen,
                Key::MetricsListen,
                defaults.metrics_listen,
                &mut sources,
            )
            .value,
            volume_host_paths: pick(
                self.volume_host_paths,
                Key::VolumeHostPaths,
                defaults.volume_host_paths,
                &mut sources,
            )
            .value,
            allow_privileged: pick(
                self.allow_privileged,
                Key::AllowPrivileged,
                defaults.allow_privileged,
                &mut sources,
            )
            .value,
            init_path: pick(
                self.init_path,
                Key::InitPath,
                defaults.init_path,
                &mut sources,
            )
            .value,
            network_bridge: pick(
                self.network_bridge,
                Key::NetworkBridge,
                defaults.network_bridge,
                &mut sources,
            )
            .value,
            network_cidr: pick(
                self.network_cidr,
                Key::NetworkCidr,
                defaults.network_cidr,
                &mut sources,
            )
            .value,
            network_masquerade: pick(
                self.network_masquerade,
                Key::NetworkMasquerade,
                defaults.network_masquerade,
                &mut sources,
            )
            .value,
            network_netns_dir: pick(
                self.network_netns_dir,
                Key::NetworkNetnsDir,
                defaults.network_netns_dir,
                &mut sources,
            )
            .value,
            network_host_netns: pick(
                self.network_host_netns,
                Key::NetworkHostNetns,
                defaults.network_host_netns,
                &mut sources,
            )
            .value,
            allowed_devices: pick(
                self.allowed_devices,
                Key::AllowedDevices,
                defaults.allowed_devices,
                &mut sources,
            )
            .value,
        };

        if errors.is_empty() {
            Ok(LoadedConfig { config, sources })
        } else {
            Err(errors)
        }
    }
}

/// The layer's value or the default, recording the source.
fn pick<T>(
    slot: Option<Given<T>>,
    key: Key,
    default: T,
    sources: &mut BTreeMap<&'static str, Source>,
) -> Given<T> {
    let given = slot.unwrap_or_else(|| Given {
        value: default,
        origin: Source::Default,
        shown: key.doc().default.to_owned(),
    });
    sources.insert(key.name(), given.origin.clone());
    given
}

fn invalid<T>(key: Key, given: &Given<T>, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.name(),
        origin: given.origin.clone(),
        value: given.shown.clone(),
        expected: expected.to_owned(),
    }
}

/// All three files or none; each must exist.
fn resolve_tls(
    files: [(Key, Option<Given<PathBuf>>); 3],
    sources: &mut BTreeMap<&'static str, Source>,
    file_exists: &dyn Fn(&Path) -> bool,
    errors: &mut Vec<ConfigError>,
) -> Option<TlsFiles> {
    let mut given_keys = Vec::new();
    let mut missing = Vec::new();
    for (key, slot) in &files {
        match slot {
            Some(given) => {
                sources.insert(key.name(), given.origin.clone());
                given_keys.push((key.name(), given.origin.clone()));
            }
            None => missing.push(key.name()),
        }
    }
    if given_keys.is_empty() {
        return None;
    }
    if !missing.is_empty() {
        errors.push(ConfigError::TlsIncomplete {
            given: given_keys,
            missing,
        });
        return None;
    }
    let mut all_exist = true;
    for (key, slot) in &files {
        if let Some(given) = slot
            && !file_exists(&given.value)
        {
            errors.push(invalid(*key, given, "an existing file"));
            all_exist = false;
        }
    }
    let [(_, Some(ca)), (_, Some(cert)), (_, Some(key))] = files else {
        return None;
    };
    all_exist.then_some(TlsFiles {
        ca_file: ca.value,
        cert_file: cert.value,
        key_file: key.value,
    })
}

fn text_where(input: Input<'_>, valid: fn(&str) -> bool, expected: &str) -> Result<String, String> {
    input
        .text()
        .filter(|t| valid(t))
        .map(str::to_owned)
        .ok_or_else(|| expected.to_owned())
}

fn endpoint(input: Input<'_>) -> Result<String, String> {
    input
        .text()
        .filter(|t| parse::endpoint(t).is_some())
        .map(|t| t.strip_suffix('/').unwrap_or(t).to_owned())
        .ok_or_else(|| "an http:// or https:// URL with a host and an optional port, like https://scheduler.example:7700".to_owned())
}

fn absolute_path(input: Input<'_>, expected: &str) -> Result<PathBuf, String> {
    input
        .text()
        .map(Path::new)
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .ok_or_else(|| expected.to_owned())
}

/// Absolute paths without `..`, in the order given, without duplicates; `what` and `example`
/// say what they are in the message of a bad value ("directories", "/srv/data").
fn absolute_paths(input: Input<'_>, what: &str, example: &str) -> Result<Vec<PathBuf>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        format!(r#"an array of absolute {what} like "{example}" (without "..")"#)
    } else {
        format!("comma-separated absolute {what} like {example} (without ..)")
    };
    let items = items
        .filter(|items| {
            items.iter().all(|i| {
                let path = Path::new(i);
                path.is_absolute()
                    && !path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
            })
        })
        .ok_or(expected)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for item in items {
        let path = PathBuf::from(item);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn boolean(input: Input<'_>) -> Result<bool, String> {
    match input {
        Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Input::Toml(_) => Err("true or false".to_owned()),
        Input::Env(text) | Input::Flag(text) => {
            parse::boolean(text).ok_or_else(|| "true or false".to_owned())
        }
    }
}

fn unsigned(input: Input<'_>) -> Option<u64> {
    match input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => parse::unsigned(text),
    }
}

fn duration(input: Input<'_>, positive: bool) -> Result<Duration, String> {
    let parsed = match input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok().map(Duration::from_secs),
        other => other.text().and_then(parse::duration),
    };
    let expected = if positive {
        POSITIVE_DURATION
    } else {
        DURATION
    };
    parsed
        .filter(|d| !positive || !d.is_zero())
        .ok_or_else(|| expected.to_owned())
}

/// Port numbers, sorted and without duplicates.
fn ports(input: Input<'_>) -> Result<Vec<u16>, String> {
    let parsed: Option<Vec<u16>> = match input {
        Input::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .and_then(parse::port)
            })
            .collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => parse::comma_list(text)
            .into_iter()
            .map(|item| parse::unsigned(item).and_then(parse::port))
            .collect(),
    };
    let expected = if input.is_toml() {
        "an array of port numbers from 1 to 65535"
    } else {
        "comma-separated port numbers from 1 to 65535"
    };
    let mut ports = parsed.ok_or_else(|| expected.to_owned())?;
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn registries(input: Input<'_>) -> Result<Vec<String>, String> {
    let items: Option<Vec<&str>> = match input {
        Input::Toml(toml::Value::Array(items)) => items.iter().map(toml::Value::as_str).collect(),
        Input::Toml(_) => None,
        Input::Env(text) | Input::Flag(text) => Some(parse::comma_list(text)),
    };
    let expected = if input.is_toml() {
        r#"an array of registry hosts like "127.0.0.1:5000" (host[:port], no scheme)"#
    } else {
        "comma-separated registry hosts like 127.0.0.1:5000 (host[:port], no scheme)"
    };
    items
        .filter(|items| items.iter().all(|i| parse::is_registry_host(i)))
        .map(|items| items.into_iter().map(str::to_owned).collect())
        .ok_or_else(|| expected.to_owned())
}

const ATTRIBUTE_NAME: &str =
    "attribute names of 1 to 128 letters, digits, '_', '-', '.', '/' or '\\'";
const ATTRIBUTE_VALUE: &str = "attribute values of 1 to 128 letters, digits, spaces, '_', '-', '.', '@', '/', '\\' or ':' without leading or trailing spaces";

fn attributes(input: Input<'_>) -> Result<BTreeMap<String, String>, String> {
    let pairs: Vec<(&str, &str)> = match input {
        Input::Toml(toml::Value::Table(table)) => table
            .iter()
            .map(|(name, value)| {
                value.as_str().map(|v| (name.as_str(), v)).ok_or_else(|| {
                    format!("a table of attribute names to strings, but `{name}` is {value}")
                })
            })
            .collect::<Result<_, _>>()?,
        Input::Toml(_) => return Err("a table of attribute names to strings".to_owned()),
        Input::Env(text) | Input::Flag(text) => parse::comma_list(text)
            .into_iter()
            .map(|item| {
                item.split_once('=')
                    .map(|(name, value)| (name.trim(), value.trim()))
                    .ok_or_else(|| {
                        format!("comma-separated name=value pairs, but `{item}` has no `=`")
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut attributes = BTreeMap::new();
    for (name, value) in pairs {
        if !parse::is_attribute_name(name) {
            return Err(format!("{ATTRIBUTE_NAME}, not `{name}`"));
        }
        if !parse::is_attribute_value(value) {
            return Err(format!("{ATTRIBUTE_VALUE}, not `{value}`"));
        }
        if attributes
            .insert(name.to_owned(), value.to_owned())
            .is_some()
        {
            return Err(format!(
                "each attribute name once, but `{name}` is repeated"
            ));
        }
    }
    Ok(attributes)
}

fn log_level(input: Input<'_>) -> Result<String, String> {
    input
        .text()
        .filter(|t| !t.trim().is_empty())
        .filter(|t| tracing_subscriber::EnvFilter::builder().parse(t).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            r#"error, warn, info, debug, trace or a tracing filter like "info,berth_agent=debug""#
                .to_owned()
        })
}

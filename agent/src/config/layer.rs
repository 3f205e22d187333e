//! Merging the layers: each value from the file, the environment or a flag is parsed on its own
//! (so a bad value is reported even when a later layer overrides it) into a [`Partial`], later
//! layers replacing earlier ones key by key; `resolve.rs` then fills in the defaults and runs
//! the checks across keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_policy::PullBehavior;
use berth_runtime::{Ipv4Cidr, MacAddr};

use super::error::ConfigError;
use super::input::{
    Input, absolute_path, absolute_paths, attributes, boolean, capabilities, duration, endpoint,
    endpoint_url, log_level, macs, percent, ports, registries, text_where, token_commands,
    unsigned,
};
use super::keys::Key;
use super::parse;
use super::{LogFormat, MAX_MANIFEST_SIZE_MIB, Source};

mod resolve;

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
    join_token: Option<Given<String>>,
    scheduler_ca_pin: Option<Given<String>>,
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
    metrics_interval: Option<Given<Duration>>,
    volume_host_paths: Option<Given<Vec<PathBuf>>>,
    allow_privileged: Option<Given<bool>>,
    init_path: Option<Given<PathBuf>>,
    network_bridge: Option<Given<String>>,
    network_cidr: Option<Given<Ipv4Cidr>>,
    network_masquerade: Option<Given<bool>>,
    network_netns_dir: Option<Given<PathBuf>>,
    network_host_netns: Option<Given<Option<PathBuf>>>,
    allowed_devices: Option<Given<Vec<PathBuf>>>,
    allow_unconfined_seccomp: Option<Given<bool>>,
    allowed_capabilities: Option<Given<Vec<String>>>,
    environment_file_paths: Option<Given<Vec<PathBuf>>>,
    block_instance_metadata: Option<Given<bool>>,
    task_host_ports: Option<Given<Vec<u16>>>,
    eni_allowed_macs: Option<Given<Vec<MacAddr>>>,
    max_manifest_size: Option<Given<u64>>,
    containerd_root: Option<Given<PathBuf>>,
    registry_docker_config: Option<Given<Option<PathBuf>>>,
    registry_token_commands: Option<Given<BTreeMap<String, PathBuf>>>,
    drain_on_shutdown: Option<Given<bool>>,
    orphan_cleanup_grace: Option<Given<Option<Duration>>>,
    image_pull_behavior: Option<Given<PullBehavior>>,
    image_cleanup_interval: Option<Given<Option<Duration>>>,
    image_minimum_age: Option<Given<Duration>>,
    image_keep_newest: Option<Given<u32>>,
    image_removals_per_cycle: Option<Given<u32>>,
    image_gc_high_percent: Option<Given<u8>>,
    image_gc_low_percent: Option<Given<u8>>,
    allow_host_pid_ipc: Option<Given<bool>>,
    awslogs_endpoint: Option<Given<Option<String>>>,
    registry_certs_dir: Option<Given<PathBuf>>,
    aws_endpoint: Option<Given<Option<String>>>,
}

/// Parsing one value: the key, its input and where it came from.
struct Setting<'a> {
    key: Key,
    input: Input<'a>,
    origin: &'a Source,
}

impl Setting<'_> {
    /// The value as written, except a secret's.
    fn shown(&self) -> String {
        if self.key.is_secret() {
            "(secret)".to_owned()
        } else {
            self.input.shown()
        }
    }

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
                    shown: self.shown(),
                });
                Ok(())
            }
            Err(expected) => Err(ConfigError::InvalidValue {
                key: self.key.name(),
                origin: self.origin.clone(),
                value: self.shown(),
                expected,
            }),
        }
    }
}

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
            Key::JoinToken => s.store(
                &mut self.join_token,
                input
                    .text()
                    .map(str::trim)
                    .filter(|t| parse::is_join_token(t))
                    .map(str::to_owned)
                    .ok_or_else(|| "a join token <id>.<secret> from berthctl create-join-token".to_owned()),
            ),
            Key::SchedulerCaPin => s.store(
                &mut self.scheduler_ca_pin,
                input
                    .text()
                    .map(str::trim)
                    .filter(|t| parse::is_ca_pin(t))
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| "sha256:<64 hex digits>, as berthctl create-join-token prints it".to_owned()),
            ),
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
            Key::MetricsInterval => s.store(
                &mut self.metrics_interval,
                duration(input, false)
                    .ok()
                    .filter(|d| d.is_zero() || *d >= Duration::from_secs(1))
                    .ok_or_else(|| "a duration of 1s or more like \"10s\", or 0 for off".to_owned()),
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
            Key::AllowUnconfinedSeccomp => {
                s.store(&mut self.allow_unconfined_seccomp, boolean(input))
            }
            Key::AllowedCapabilities => {
                s.store(&mut self.allowed_capabilities, capabilities(input))
            }
            Key::EnvironmentFilePaths => s.store(
                &mut self.environment_file_paths,
                absolute_paths(input, "directories", "/etc/berth/env"),
            ),
            Key::BlockInstanceMetadata => {
                s.store(&mut self.block_instance_metadata, boolean(input))
            }
            Key::TaskHostPorts => s.store(&mut self.task_host_ports, ports(input)),
            Key::EniAllowedMacs => s.store(&mut self.eni_allowed_macs, macs(input)),
            Key::MaxManifestSize => s.store(
                &mut self.max_manifest_size,
                unsigned(input)
                    .filter(|n| (1..=MAX_MANIFEST_SIZE_MIB).contains(n))
                    .ok_or_else(|| {
                        format!("a whole number of MiB from 1 to {MAX_MANIFEST_SIZE_MIB}")
                    }),
            ),
            Key::ContainerdRoot => s.store(&mut self.containerd_root, absolute_path(input, "an absolute directory path")),
            Key::DrainOnShutdown => s.store(&mut self.drain_on_shutdown, boolean(input)),
            Key::OrphanCleanupGrace => s.store(
                &mut self.orphan_cleanup_grace,
                match input.text() {
                    Some("off") => Ok(None),
                    _ => duration(input, false).map(Some).map_err(|_| {
                        r#"a duration like "10m", 0 to remove at once, or "off" to only report"#
                            .to_owned()
                    }),
                },
            ),
            Key::ImagePullBehavior => s.store(
                &mut self.image_pull_behavior,
                input
                    .text()
                    .and_then(|t| t.parse::<PullBehavior>().ok())
                    .ok_or_else(|| PullBehavior::expected().to_owned()),
            ),
            Key::ImageCleanupInterval => s.store(
                &mut self.image_cleanup_interval,
                match input.text() {
                    Some("off") => Ok(None),
                    _ => duration(input, true).map(Some).map_err(|_| {
                        r#"a positive duration like "10m", or "off" to collect only when asked"#
                            .to_owned()
                    }),
                },
            ),
            Key::ImageMinimumAge => s.store(&mut self.image_minimum_age, duration(input, false)),
            Key::ImageKeepNewest => s.store(
                &mut self.image_keep_newest,
                unsigned(input)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= 1000)
                    .ok_or_else(|| "a whole number from 0 to 1000".to_owned()),
            ),
            Key::ImageRemovalsPerCycle => s.store(
                &mut self.image_removals_per_cycle,
                unsigned(input)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| "a whole number from 1 to 1000".to_owned()),
            ),
            Key::ImageGcHighPercent => s.store(&mut self.image_gc_high_percent, percent(input)),
            Key::ImageGcLowPercent => s.store(&mut self.image_gc_low_percent, percent(input)),
            Key::AllowHostPidIpc => s.store(&mut self.allow_host_pid_ipc, boolean(input)),
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
            Key::RegistryDockerConfig => s.store(
                &mut self.registry_docker_config,
                absolute_path(input, "the absolute path of a Docker config.json").map(Some),
            ),
            Key::RegistryTokenCommands => {
                s.store(&mut self.registry_token_commands, token_commands(input))
            }
            Key::RegistryCertsDir => s.store(
                &mut self.registry_certs_dir,
                absolute_path(input, "the absolute path of a directory"),
            ),
            Key::AwslogsEndpoint => s.store(&mut self.awslogs_endpoint, endpoint_url(input)),
            Key::AwsEndpoint => s.store(&mut self.aws_endpoint, endpoint_url(input)),
            Key::NetworkHostNetns => s.store(
                &mut self.network_host_netns,
                absolute_path(input, "the absolute path of a network namespace, like /run/netns/lab")
                    .map(Some),
            ),
        }
    }
}

/// Checks `value` as the text of the key `name` would be checked in the file: `Err` holds what
/// was expected. For values taken from elsewhere (the instance's user data or tags) before they
/// are written to the first-boot file. An unknown key is no error here: callers name their keys.
pub(crate) fn check_text(name: &str, value: &str) -> Result<(), String> {
    let Some(key) = Key::from_name(name) else {
        return Ok(());
    };
    let toml_value = toml::Value::String(value.to_owned());
    match Partial::default().apply(key, Input::Toml(&toml_value), &Source::Default) {
        Ok(()) => Ok(()),
        Err(ConfigError::InvalidValue { expected, .. }) => Err(expected),
        Err(other) => Err(other.to_string()),
    }
}

//! The agent's configuration: a typed [`AgentConfig`] loaded from, later winning, the defaults,
//! a TOML file, the first-boot file beside it ([`FIRST_BOOT_FILE`], written by `berth-agent
//! first-boot`), `BERTH_*` environment variables and command-line flags, with the source of every
//! value and every problem reported at once.
//!
//! [`load`] is pure: the caller reads the file and the environment. [`load_from_system`] does
//! that, checks that the TLS files exist, and calls it. Each value is parsed in its own layer,
//! so a bad value is reported even when a later layer overrides it; lists and tables are
//! replaced whole by a later layer, never merged.

mod error;
mod flags;
mod input;
mod keys;
mod layer;
mod load;
mod parse;
mod template;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_policy::PullBehavior;
use berth_runtime::{Ipv4Cidr, MacAddr};

pub use error::{ConfigError, ConfigErrors};
pub use flags::Overrides;
pub use keys::{KeyDoc, reference_table};
#[cfg(test)]
use load::load_with;
pub use load::{load, load_from_system, load_from_system_with_first_boot, load_with_first_boot};
pub use template::default_config_toml;

use keys::Key;
pub(crate) use layer::check_text;

/// Where the agent looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/agent.toml";

/// The file `berth-agent first-boot` writes beside the configuration file: what it took from
/// the instance's user data and tags, a layer over the configuration file (and under the
/// environment and flags).
pub const FIRST_BOOT_FILE: &str = "first-boot.toml";

/// The first-boot file of a configuration file: [`FIRST_BOOT_FILE`] in the same directory.
pub fn first_boot_path(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .unwrap_or(Path::new("/"))
        .join(FIRST_BOOT_FILE)
}

/// The largest `max_manifest_size` accepted, in MiB: a manifest or config is held in memory
/// whole, and real ones are kilobytes.
pub const MAX_MANIFEST_SIZE_MIB: u64 = 64;

/// The effective configuration. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Cluster to join.
    pub cluster: String,
    /// Scheduler URL, `http://` or `https://`, without a trailing `/`.
    pub scheduler_endpoint: String,
    /// mTLS files; `Some` only when all three are set (and, from [`load_from_system`], exist).
    pub tls: Option<TlsFiles>,
    /// How the agent joins the cluster when it has no certificate yet.
    pub join: Option<JoinConfig>,
    /// Plain http to a non-loopback scheduler is allowed.
    pub allow_plaintext: bool,
    /// State: instance identity, database, logs. Absolute.
    pub data_dir: PathBuf,
    /// containerd's socket. Absolute.
    pub containerd_address: PathBuf,
    /// containerd namespace of Berth's containers and images.
    pub containerd_namespace: String,
    /// CPU units (1024 = one core) kept back from tasks.
    pub reserved_cpu: u64,
    /// MiB of memory kept back from tasks (key `reserved_memory`).
    pub reserved_memory_mib: u64,
    /// Host ports never given to tasks: sorted, without duplicates, each 1 to 65535.
    pub reserved_ports: Vec<u16>,
    /// Instance attributes.
    pub attributes: BTreeMap<String, String>,
    /// Session heartbeat interval, above zero.
    pub heartbeat_interval: Duration,
    /// Time after a task stops before its containers are removed; may be zero.
    pub task_cleanup_wait: Duration,
    /// Default wait between SIGTERM and SIGKILL, above zero.
    pub stop_timeout: Duration,
    /// Deadline of one image pull, above zero.
    pub image_pull_timeout: Duration,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Layers downloaded in parallel, at least 1.
    pub max_concurrent_downloads: usize,
    /// A tracing filter directive (checked to parse).
    pub log_level: String,
    /// Plain or JSON log lines.
    pub log_format: LogFormat,
    /// Local address of the metrics and health endpoint.
    pub metrics_listen: SocketAddr,
    /// How often containers, tasks and the host are sampled; zero turns sampling off.
    pub metrics_interval: Duration,
    /// Host directories whose contents tasks may bind-mount (ECS `host.sourcePath`); empty
    /// allows none. Absolute, without `..`.
    pub volume_host_paths: Vec<PathBuf>,
    /// Whether containers may run privileged (ECS `privileged`).
    pub allow_privileged: bool,
    /// The static init run as PID 1 for initProcessEnabled.
    pub init_path: PathBuf,
    /// The bridge of veth tasks.
    pub network_bridge: String,
    /// Where task addresses come from.
    pub network_cidr: Ipv4Cidr,
    /// Outbound NAT of task traffic leaving the CIDR.
    pub network_masquerade: bool,
    /// Where task network namespaces are bind-mounted.
    pub network_netns_dir: PathBuf,
    /// The namespace holding the bridge, nftables table and task interfaces; `None` is the
    /// agent's own.
    pub network_host_netns: Option<PathBuf>,
    /// Host devices tasks may map (ECS `linuxParameters.devices`): device nodes, or
    /// directories whose devices are all allowed; empty allows none. Absolute, without `..`.
    pub allowed_devices: Vec<PathBuf>,
    /// Whether a container may run without a seccomp filter (`seccomp=unconfined`).
    pub allow_unconfined_seccomp: bool,
    /// Capabilities beyond Docker's default set that containers may add, by their kernel names
    /// without `CAP_` (`NET_ADMIN`), or `ALL`.
    pub allowed_capabilities: Vec<String>,
    /// Host directories whose regular files tasks may read as `environmentFiles`; empty allows
    /// none. Absolute, without `..`.
    pub environment_file_paths: Vec<PathBuf>,
    /// Tasks cannot reach the instance metadata service.
    pub block_instance_metadata: bool,
    /// Ports (TCP and UDP) tasks may reach on the host's own addresses, beside the task
    /// endpoint: sorted, without duplicates, each 1 to 65535.
    pub task_host_ports: Vec<u16>,
    /// The only interfaces an ENI attachment may move into a task, by MAC; empty allows any
    /// that passes the built-in refusals.
    pub eni_allowed_macs: Vec<MacAddr>,
    /// MiB a manifest, an index or an image config from a registry may hold (key
    /// `max_manifest_size`); a larger one fails the pull. 1 to [`MAX_MANIFEST_SIZE_MIB`].
    pub max_manifest_size_mib: u64,
    /// containerd's root directory, whose filesystem's use the host metrics report.
    pub containerd_root: PathBuf,
    /// On SIGTERM, ask the scheduler to set this instance DRAINING and wait for its
    /// acknowledgement before exiting.
    pub drain_on_shutdown: bool,
    /// How long a leftover of no known task (container, cgroup, volumes, logs, network
    /// namespace) is reported before the orphan sweep removes it; None: only reported.
    pub orphan_cleanup_grace: Option<Duration>,
    /// A Docker `config.json` giving registry credentials to pulls whose task brings none.
    pub registry_docker_config: Option<PathBuf>,
    /// Per registry host, an executable that prints a token for it (ECR-style).
    pub registry_token_commands: BTreeMap<String, PathBuf>,
    /// When a task's start asks the registry for an image (a task definition may override it).
    pub image_pull_behavior: PullBehavior,
    /// How often the image collector runs on its own; None: only when asked.
    pub image_cleanup_interval: Option<Duration>,
    /// How long an image must have gone unused before the collector may remove it.
    pub image_minimum_age: Duration,
    /// How many of each repository's most recently used images the collector keeps while the
    /// disk is not under pressure.
    pub image_keep_newest: u32,
    /// The most images one collection removes.
    pub image_removals_per_cycle: u32,
    /// Percent use of containerd's root filesystem past which unused images are removed least
    /// recently used first.
    pub image_gc_high_percent: u8,
    /// Percent use those removals bring containerd's root filesystem under.
    pub image_gc_low_percent: u8,
    /// Whether tasks may ask for the host's PID or IPC namespace (ECS `pidMode`/`ipcMode`
    /// host); when not, such a task stops with a reason before any pull.
    pub allow_host_pid_ipc: bool,
    /// URL of the CloudWatch Logs API the awslogs driver uses; None: the region's endpoint.
    pub awslogs_endpoint: Option<String>,
    /// Per-registry TLS files and mirrors (`<dir>/<host[:port]>/`: `*.crt`, `client.cert` +
    /// `client.key`, `hosts.toml`), as containerd's certs.d. A missing directory is none.
    pub registry_certs_dir: PathBuf,
    /// URL every AWS API the agent calls goes to (SSM, Secrets Manager, and CloudWatch Logs
    /// unless `awslogs_endpoint` is set); None: each region's endpoints.
    pub aws_endpoint: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: "default".to_owned(),
            scheduler_endpoint: "http://127.0.0.1:7700".to_owned(),
            tls: None,
            join: None,
            allow_plaintext: false,
            data_dir: PathBuf::from("/var/lib/berth"),
            containerd_address: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespace: "berth".to_owned(),
            reserved_cpu: 0,
            reserved_memory_mib: 0,
            reserved_ports: vec![22, 2375, 2376, 51678, 51679],
            attributes: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(10),
            task_cleanup_wait: Duration::from_secs(3 * 60 * 60),
            stop_timeout: Duration::from_secs(30),
            image_pull_timeout: Duration::from_secs(10 * 60),
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            log_level: "info".to_owned(),
            log_format: LogFormat::Plain,
            metrics_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 51678)),
            metrics_interval: Duration::from_secs(10),
            volume_host_paths: Vec::new(),
            allow_privileged: false,
            init_path: PathBuf::from(berth_runtime::DEFAULT_INIT_PATH),
            network_bridge: berth_runtime::DEFAULT_BRIDGE.to_owned(),
            network_cidr: Ipv4Cidr::DEFAULT,
            network_masquerade: true,
            network_netns_dir: PathBuf::from(berth_runtime::DEFAULT_NETNS_DIR),
            network_host_netns: None,
            allowed_devices: Vec::new(),
            allow_unconfined_seccomp: true,
            allowed_capabilities: Vec::new(),
            environment_file_paths: Vec::new(),
            block_instance_metadata: true,
            task_host_ports: Vec::new(),
            eni_allowed_macs: Vec::new(),
            max_manifest_size_mib: berth_runtime::DEFAULT_MAX_MANIFEST_BYTES >> 20,
            containerd_root: PathBuf::from("/var/lib/containerd"),
            drain_on_shutdown: false,
            orphan_cleanup_grace: Some(Duration::from_secs(10 * 60)),
            registry_docker_config: None,
            registry_token_commands: BTreeMap::new(),
            image_pull_behavior: PullBehavior::Default,
            image_cleanup_interval: Some(Duration::from_secs(10 * 60)),
            image_minimum_age: Duration::from_secs(60 * 60),
            image_keep_newest: 2,
            image_removals_per_cycle: 5,
            image_gc_high_percent: 85,
            image_gc_low_percent: 80,
            allow_host_pid_ipc: false,
            awslogs_endpoint: None,
            registry_certs_dir: PathBuf::from(berth_runtime::DEFAULT_CERTS_DIR),
            aws_endpoint: None,
        }
    }
}

/// The agent's mTLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signs the scheduler's certificate.
    pub ca_file: PathBuf,
    /// The agent's client certificate.
    pub cert_file: PathBuf,
    /// The agent's client private key.
    pub key_file: PathBuf,
}

/// The TLS bootstrap: a join token, and how the scheduler's CA is checked before the token is
/// sent (a pin, or a CA file).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinConfig {
    pub token: String,
    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo.
    pub ca_pin: Option<String>,
    /// The CA's certificate (`tls_ca_file` without the client files).
    pub ca_file: Option<PathBuf>,
    /// The file the token was read from, if any: the agent removes the token from it once it
    /// has joined.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for JoinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinConfig")
            .field("token", &"(secret)")
            .field("ca_pin", &self.ca_pin)
            .field("ca_file", &self.ca_file)
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object a line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        })
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// Its command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// The configuration and, for every key (by its TOML name), where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    pub config: AgentConfig,
    pub sources: BTreeMap<&'static str, Source>,
}

impl LoadedConfig {
    /// Every key with its effective value (TOML syntax) and source, one a line, aligned, in the
    /// order of [`reference_table`]: what `berth-agent check-config` prints.
    pub fn render(&self) -> String {
        let rows: Vec<(&str, String, String)> = Key::ALL
            .into_iter()
            .map(|key| {
                let source = match self.sources.get(key.name()) {
                    Some(Source::Flag) => format!("flag {}", key.flag()),
                    Some(source) => source.to_string(),
                    None => Source::Default.to_string(),
                };
                (key.name(), value_text(&self.config, key), source)
            })
            .collect();
        let key_width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|(_, v, _)| v.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value, source) in rows {
            out.push_str(&format!(
                "{key:key_width$} = {value:value_width$}  # {source}\n"
            ));
        }
        out
    }
}

/// A key's effective value in TOML syntax; `(none)` for an unset TLS file.
fn value_text(config: &AgentConfig, key: Key) -> String {
    let string = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let path = |p: &Path| string(&p.to_string_lossy());
    let tls_path = |pick: fn(&TlsFiles) -> &PathBuf| {
        config
            .tls
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |t| path(pick(t)))
    };
    let duration = |d: Duration| string(&parse::format_duration(d));
    match key {
        Key::Cluster => string(&config.cluster),
        Key::SchedulerEndpoint => string(&config.scheduler_endpoint),
        Key::TlsCaFile => match config.join.as_ref().and_then(|j| j.ca_file.as_deref()) {
            Some(ca) => path(ca),
            None => tls_path(|t| &t.ca_file),
        },
        Key::JoinToken => config
            .join
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |_| "(secret)".to_owned()),
        Key::SchedulerCaPin => config
            .join
            .as_ref()
            .and_then(|j| j.ca_pin.as_deref())
            .map_or_else(|| "(none)".to_owned(), string),
        Key::TlsCertFile => tls_path(|t| &t.cert_file),
        Key::TlsKeyFile => tls_path(|t| &t.key_file),
        Key::AllowPlaintext => config.allow_plaintext.to_string(),
        Key::DataDir => path(&config.data_dir),
        Key::ContainerdAddress => path(&config.containerd_address),
        Key::ContainerdNamespace => string(&config.containerd_namespace),
        Key::ReservedCpu => config.reserved_cpu.to_string(),
        Key::ReservedMemory => config.reserved_memory_mib.to_string(),
        Key::ReservedPorts => {
            let ports: Vec<String> = config.reserved_ports.iter().map(u16::to_string).collect();
            format!("[{}]", ports.join(", "))
        }
        Key::Attributes => {
            let pairs: Vec<String> = config
                .attributes
                .iter()
                .map(|(name, value)| format!("{} = {}", toml_key(name), string(value)))
                .collect();
            if pairs.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", pairs.join(", "))
            }
        }
        Key::HeartbeatInterval => duration(config.heartbeat_interval),
        Key::TaskCleanupWait => duration(config.task_cleanup_wait),
        Key::StopTimeout => duration(config.stop_timeout),
        Key::ImagePullTimeout => duration(config.image_pull_timeout),
        Key::InsecureRegistries => {
            let hosts: Vec<String> = config
                .insecure_registries
                .iter()
                .map(|h| string(h))
                .collect();
            format!("[{}]", hosts.join(", "))
        }
        Key::MaxConcurrentDownloads => config.max_concurrent_downloads.to_string(),
        Key::LogLevel => string(&config.log_level),
        Key::LogFormat => string(&config.log_format.to_string()),
        Key::MetricsListen => string(&config.metrics_listen.to_string()),
        Key::MetricsInterval => duration(config.metrics_interval),
        Key::VolumeHostPaths => {
            let paths: Vec<String> = config.volume_host_paths.iter().map(|p| path(p)).collect();
            format!("[{}]", paths.join(", "))
        }
        Key::AllowPrivileged => config.allow_privileged.to_string(),
        Key::InitPath => path(&config.init_path),
        Key::NetworkBridge => string(&config.network_bridge),
        Key::NetworkCidr => string(&config.network_cidr.to_string()),
        Key::NetworkMasquerade => config.network_masquerade.to_string(),
        Key::NetworkNetnsDir => path(&config.network_netns_dir),
        Key::NetworkHostNetns => config
            .network_host_netns
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), path),
        Key::AllowedDevices => {
            let paths: Vec<String> = config.allowed_devices.iter().map(|p| path(p)).collect();
            format!("[{}]", paths.join(", "))
        }
        Key::AllowUnconfinedSeccomp => config.allow_unconfined_seccomp.to_string(),
        Key::AllowedCapabilities => {
            let names: Vec<String> = config
                .allowed_capabilities
                .iter()
                .map(|c| string(c))
                .collect();
            format!("[{}]", names.join(", "))
        }
        Key::EnvironmentFilePaths => {
            let paths: Vec<String> = config
                .environment_file_paths
                .iter()
                .map(|p| path(p))
                .collect();
            format!("[{}]", paths.join(", "))
        }
        Key::BlockInstanceMetadata => config.block_instance_metadata.to_string(),
        Key::TaskHostPorts => {
            let ports: Vec<String> = config.task_host_ports.iter().map(u16::to_string).collect();
            format!("[{}]", ports.join(", "))
        }
        Key::EniAllowedMacs => {
            let macs: Vec<String> = config
                .eni_allowed_macs
                .iter()
                .map(|m| string(&m.to_string()))
                .collect();
            format!("[{}]", macs.join(", "))
        }
        Key::MaxManifestSize => config.max_manifest_size_mib.to_string(),
        Key::ContainerdRoot => path(&config.containerd_root),
        Key::DrainOnShutdown => config.drain_on_shutdown.to_string(),
        Key::OrphanCleanupGrace => match config.orphan_cleanup_grace {
            Some(grace) => duration(grace),
            None => string("off"),
        },
        Key::RegistryDockerConfig => config
            .registry_docker_config
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), path),
        Key::RegistryTokenCommands => {
            let pairs: Vec<String> = config
                .registry_token_commands
                .iter()
                .map(|(host, command)| format!("{} = {}", toml_key(host), path(command)))
                .collect();
            if pairs.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", pairs.join(", "))
            }
        }
        Key::ImagePullBehavior => string(config.image_pull_behavior.name()),
        Key::ImageCleanupInterval => match config.image_cleanup_interval {
            Some(every) => duration(every),
            None => string("off"),
        },
        Key::ImageMinimumAge => duration(config.image_minimum_age),
        Key::ImageKeepNewest => config.image_keep_newest.to_string(),
        Key::ImageRemovalsPerCycle => config.image_removals_per_cycle.to_string(),
        Key::ImageGcHighPercent => config.image_gc_high_percent.to_string(),
        Key::ImageGcLowPercent => config.image_gc_low_percent.to_string(),
        Key::AllowHostPidIpc => config.allow_host_pid_ipc.to_string(),
        Key::AwslogsEndpoint => config
            .awslogs_endpoint
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), string),
        Key::RegistryCertsDir => path(&config.registry_certs_dir),
        Key::AwsEndpoint => config
            .aws_endpoint
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), string),
    }
}

/// A bare TOML key when it can be one, a quoted one otherwise.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

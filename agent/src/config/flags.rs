//! Command-line overrides: one optional flag a key, taken as text so that a bad flag is reported
//! with every other bad key, in the same words, instead of by clap one at a time.

use clap::Args;

use super::keys::Key;

/// The configuration flags; `main` flattens them into its command (`#[command(flatten)]`).
/// Each flag overrides the file and the environment. No flag reads the environment itself:
/// [`super::load`] does, to record where every value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(about = None, long_about = None)]
#[command(next_help_heading = "Configuration (overrides BERTH_* variables and the config file)")]
pub struct Overrides {
    /// Cluster to join [env: BERTH_CLUSTER]
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Scheduler URL, http:// or https:// [env: BERTH_SCHEDULER_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub scheduler_endpoint: Option<String>,
    /// CA bundle that signs the scheduler's certificate [env: BERTH_TLS_CA_FILE]
    #[arg(long, value_name = "PATH")]
    pub tls_ca_file: Option<String>,
    /// The agent's client certificate [env: BERTH_TLS_CERT_FILE]
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<String>,
    /// The agent's client private key [env: BERTH_TLS_KEY_FILE]
    #[arg(long, value_name = "PATH")]
    pub tls_key_file: Option<String>,
    /// Bootstrap token traded for the agent's certificate (prefer BERTH_JOIN_TOKEN: a flag
    /// shows in `ps`) [env: BERTH_JOIN_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<String>,
    /// The cluster CA's pin, sha256:HEX [env: BERTH_SCHEDULER_CA_PIN]
    #[arg(long, value_name = "PIN")]
    pub scheduler_ca_pin: Option<String>,
    /// Permit http:// to a non-loopback scheduler [env: BERTH_ALLOW_PLAINTEXT]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_plaintext: Option<String>,
    /// Directory for the agent's state [env: BERTH_DATA_DIR]
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<String>,
    /// containerd's socket [env: BERTH_CONTAINERD_ADDRESS]
    #[arg(long, value_name = "PATH")]
    pub containerd_address: Option<String>,
    /// containerd namespace of Berth's containers and images [env: BERTH_CONTAINERD_NAMESPACE]
    #[arg(long, value_name = "NAME")]
    pub containerd_namespace: Option<String>,
    /// CPU units (1024 = one core) kept back from tasks [env: BERTH_RESERVED_CPU]
    #[arg(long, value_name = "UNITS")]
    pub reserved_cpu: Option<String>,
    /// MiB of memory kept back from tasks [env: BERTH_RESERVED_MEMORY]
    #[arg(long, value_name = "MIB")]
    pub reserved_memory: Option<String>,
    /// Host ports never given to tasks, comma-separated [env: BERTH_RESERVED_PORTS]
    #[arg(long, value_name = "PORTS")]
    pub reserved_ports: Option<String>,
    /// Instance attributes, comma-separated name=value pairs [env: BERTH_ATTRIBUTES]
    #[arg(long, value_name = "NAME=VALUE,...")]
    pub attributes: Option<String>,
    /// Session heartbeat interval, like 10s [env: BERTH_HEARTBEAT_INTERVAL]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
    /// Time after a task stops before its containers are removed, like 3h [env: BERTH_TASK_CLEANUP_WAIT]
    #[arg(long, value_name = "DURATION")]
    pub task_cleanup_wait: Option<String>,
    /// Default wait between SIGTERM and SIGKILL, like 30s [env: BERTH_STOP_TIMEOUT]
    #[arg(long, value_name = "DURATION")]
    pub stop_timeout: Option<String>,
    /// Deadline of one image pull, like 10m [env: BERTH_IMAGE_PULL_TIMEOUT]
    #[arg(long, value_name = "DURATION")]
    pub image_pull_timeout: Option<String>,
    /// Registries, as host or host:port, reached over plain HTTP, comma-separated [env: BERTH_INSECURE_REGISTRIES]
    #[arg(long, value_name = "HOSTS")]
    pub insecure_registries: Option<String>,
    /// Layers downloaded in parallel [env: BERTH_MAX_CONCURRENT_DOWNLOADS]
    #[arg(long, value_name = "N")]
    pub max_concurrent_downloads: Option<String>,
    /// Tracing filter: error, warn, info, debug, trace or a directive [env: BERTH_LOG_LEVEL]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format: plain or json [env: BERTH_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Local address of the metrics and health endpoint [env: BERTH_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Resource sampling interval, like 10s (0: off) [env: BERTH_METRICS_INTERVAL]
    #[arg(long, value_name = "DURATION")]
    pub metrics_interval: Option<String>,
    /// Absolute host directories tasks may bind-mount, comma-separated [env: BERTH_VOLUME_HOST_PATHS]
    #[arg(long, value_name = "DIRS")]
    pub volume_host_paths: Option<String>,
    /// Run containers that ask for ECS privileged [env: BERTH_ALLOW_PRIVILEGED]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_privileged: Option<String>,
    /// Static init run as PID 1 for initProcessEnabled [env: BERTH_INIT_PATH]
    #[arg(long, value_name = "PATH")]
    pub init_path: Option<String>,
    /// Bridge for awsvpc (veth) and bridge-mode tasks [env: BERTH_NETWORK_BRIDGE]
    #[arg(long, value_name = "NAME")]
    pub network_bridge: Option<String>,
    /// IPv4 range task addresses come from [env: BERTH_NETWORK_CIDR]
    #[arg(long, value_name = "CIDR")]
    pub network_cidr: Option<String>,
    /// Masquerade traffic from task addresses leaving the CIDR [env: BERTH_NETWORK_MASQUERADE]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub network_masquerade: Option<String>,
    /// Where task network namespaces are bind-mounted [env: BERTH_NETWORK_NETNS_DIR]
    #[arg(long, value_name = "DIR")]
    pub network_netns_dir: Option<String>,
    /// Network namespace holding the bridge and task interfaces [env: BERTH_NETWORK_HOST_NETNS]
    #[arg(long, value_name = "PATH")]
    pub network_host_netns: Option<String>,
    /// Absolute host device paths (or directories of devices) tasks may map, comma-separated [env: BERTH_ALLOWED_DEVICES]
    #[arg(long, value_name = "PATHS")]
    pub allowed_devices: Option<String>,
    /// Run containers that ask for seccomp=unconfined [env: BERTH_ALLOW_UNCONFINED_SECCOMP]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_unconfined_seccomp: Option<String>,
    /// Capabilities beyond Docker's defaults that containers may add, comma-separated [env: BERTH_ALLOWED_CAPABILITIES]
    #[arg(long, value_name = "CAPS")]
    pub allowed_capabilities: Option<String>,
    /// Absolute host directories tasks may read environment files from, comma-separated [env: BERTH_ENVIRONMENT_FILE_PATHS]
    #[arg(long, value_name = "DIRS")]
    pub environment_file_paths: Option<String>,
    /// Whether tasks are kept from the instance metadata service [env: BERTH_BLOCK_INSTANCE_METADATA]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub block_instance_metadata: Option<String>,
    /// Ports tasks may reach on the host's own addresses, comma-separated [env: BERTH_TASK_HOST_PORTS]
    #[arg(long, value_name = "PORTS")]
    pub task_host_ports: Option<String>,
    /// MAC addresses an ENI attachment may move into a task, comma-separated [env: BERTH_ENI_ALLOWED_MACS]
    #[arg(long, value_name = "MACS")]
    pub eni_allowed_macs: Option<String>,
    /// MiB a manifest, an index or an image config may hold [env: BERTH_MAX_MANIFEST_SIZE]
    #[arg(long, value_name = "MIB")]
    pub max_manifest_size: Option<String>,
    /// containerd's root directory, for its disk use in metrics [env: BERTH_CONTAINERD_ROOT]
    #[arg(long, value_name = "PATH")]
    pub containerd_root: Option<String>,
    /// On SIGTERM, ask the scheduler to drain this instance first [env: BERTH_DRAIN_ON_SHUTDOWN]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub drain_on_shutdown: Option<String>,
    /// How long leftovers of unknown tasks are kept before removal, or off [env: BERTH_ORPHAN_CLEANUP_GRACE]
    #[arg(long, value_name = "DURATION|off")]
    pub orphan_cleanup_grace: Option<String>,
    /// A Docker config.json giving registry credentials [env: BERTH_REGISTRY_DOCKER_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub registry_docker_config: Option<String>,
    /// Per registry, a command printing a token, comma-separated host=/path pairs [env: BERTH_REGISTRY_TOKEN_COMMANDS]
    #[arg(long, value_name = "HOST=PATH,...")]
    pub registry_token_commands: Option<String>,
    /// When a task's start asks the registry: default, always, once or prefer-cached [env: BERTH_IMAGE_PULL_BEHAVIOR]
    #[arg(long, value_name = "BEHAVIOR")]
    pub image_pull_behavior: Option<String>,
    /// How often the image collector runs, or off [env: BERTH_IMAGE_CLEANUP_INTERVAL]
    #[arg(long, value_name = "DURATION|off")]
    pub image_cleanup_interval: Option<String>,
    /// How long an image must go unused before it may be removed [env: BERTH_IMAGE_MINIMUM_AGE]
    #[arg(long, value_name = "DURATION")]
    pub image_minimum_age: Option<String>,
    /// Most recently used images kept per repository [env: BERTH_IMAGE_KEEP_NEWEST]
    #[arg(long, value_name = "N")]
    pub image_keep_newest: Option<String>,
    /// The most images one collection removes [env: BERTH_IMAGE_REMOVALS_PER_CYCLE]
    #[arg(long, value_name = "N")]
    pub image_removals_per_cycle: Option<String>,
    /// Disk use of containerd's root (percent) past which images are removed [env: BERTH_IMAGE_GC_HIGH_PERCENT]
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_high_percent: Option<String>,
    /// Disk use of containerd's root (percent) those removals bring it under [env: BERTH_IMAGE_GC_LOW_PERCENT]
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_low_percent: Option<String>,
    /// Run tasks that ask for pidMode or ipcMode host [env: BERTH_ALLOW_HOST_PID_IPC]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_host_pid_ipc: Option<String>,
    /// URL of the CloudWatch Logs API for the awslogs driver [env: BERTH_AWSLOGS_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub awslogs_endpoint: Option<String>,
    /// Directory of per-registry CA files, client certificates and hosts.toml [env: BERTH_REGISTRY_CERTS_DIR]
    #[arg(long, value_name = "DIR")]
    pub registry_certs_dir: Option<String>,
    /// URL of every AWS API the agent calls (SSM, Secrets Manager, CloudWatch Logs)
    /// [env: BERTH_AWS_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
}

impl Overrides {
    /// The flags given, in key order.
    pub(crate) fn entries(&self) -> Vec<(Key, &str)> {
        let all = [
            (Key::Cluster, &self.cluster),
            (Key::SchedulerEndpoint, &self.scheduler_endpoint),
            (Key::TlsCaFile, &self.tls_ca_file),
            (Key::TlsCertFile, &self.tls_cert_file),
            (Key::TlsKeyFile, &self.tls_key_file),
            (Key::JoinToken, &self.join_token),
            (Key::SchedulerCaPin, &self.scheduler_ca_pin),
            (Key::AllowPlaintext, &self.allow_plaintext),
            (Key::DataDir, &self.data_dir),
            (Key::ContainerdAddress, &self.containerd_address),
            (Key::ContainerdNamespace, &self.containerd_namespace),
            (Key::ReservedCpu, &self.reserved_cpu),
            (Key::ReservedMemory, &self.reserved_memory),
            (Key::ReservedPorts, &self.reserved_ports),
            (Key::Attributes, &self.attributes),
            (Key::HeartbeatInterval, &self.heartbeat_interval),
            (Key::TaskCleanupWait, &self.task_cleanup_wait),
            (Key::StopTimeout, &self.stop_timeout),
            (Key::ImagePullTimeout, &self.image_pull_timeout),
            (Key::InsecureRegistries, &self.insecure_registries),
            (Key::MaxConcurrentDownloads, &self.max_concurrent_downloads),
            (Key::LogLevel, &self.log_level),
            (Key::LogFormat, &self.log_format),
            (Key::MetricsListen, &self.metrics_listen),
            (Key::MetricsInterval, &self.metrics_interval),
            (Key::VolumeHostPaths, &self.volume_host_paths),
            (Key::AllowPrivileged, &self.allow_privileged),
            (Key::InitPath, &self.init_path),
            (Key::NetworkBridge, &self.network_bridge),
            (Key::NetworkCidr, &self.network_cidr),
            (Key::NetworkMasquerade, &self.network_masquerade),
            (Key::NetworkNetnsDir, &self.network_netns_dir),
            (Key::NetworkHostNetns, &self.network_host_netns),
            (Key::AllowedDevices, &self.allowed_devices),
            (Key::AllowUnconfinedSeccomp, &self.allow_unconfined_seccomp),
            (Key::AllowedCapabilities, &self.allowed_capabilities),
            (Key::EnvironmentFilePaths, &self.environment_file_paths),
            (Key::BlockInstanceMetadata, &self.block_instance_metadata),
            (Key::TaskHostPorts, &self.task_host_ports),
            (Key::EniAllowedMacs, &self.eni_allowed_macs),
            (Key::MaxManifestSize, &self.max_manifest_size),
            (Key::ContainerdRoot, &self.containerd_root),
            (Key::DrainOnShutdown, &self.drain_on_shutdown),
            (Key::OrphanCleanupGrace, &self.orphan_cleanup_grace),
            (Key::RegistryDockerConfig, &self.registry_docker_config),
            (Key::RegistryTokenCommands, &self.registry_token_commands),
            (Key::ImagePullBehavior, &self.image_pull_behavior),
            (Key::ImageCleanupInterval, &self.image_cleanup_interval),
            (Key::ImageMinimumAge, &self.image_minimum_age),
            (Key::ImageKeepNewest, &self.image_keep_newest),
            (Key::ImageRemovalsPerCycle, &self.image_removals_per_cycle),
            (Key::ImageGcHighPercent, &self.image_gc_high_percent),
            (Key::ImageGcLowPercent, &self.image_gc_low_percent),
            (Key::AllowHostPidIpc, &self.allow_host_pid_ipc),
            (Key::AwslogsEndpoint, &self.awslogs_endpoint),
            (Key::RegistryCertsDir, &self.registry_certs_dir),
            (Key::AwsEndpoint, &self.aws_endpoint),
        ];
        all.into_iter()
            .filter_map(|(key, value)| value.as_deref().map(|v| (key, v)))
            .collect()
    }
}

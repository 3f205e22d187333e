//! The closed list of configuration keys: names in TOML, the environment and on the command line,
//! defaults and meanings, in one table that the README's reference is generated from.

/// One row of the configuration reference: how a key is spelled everywhere and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The TOML key, e.g. `task_cleanup_wait`.
    pub key: &'static str,
    /// The environment variable, `BERTH_` and the key upper-cased.
    pub env: &'static str,
    /// The command-line flag, `--` and the key with dashes.
    pub flag: &'static str,
    /// The default, written as a TOML value (`(none)` when unset).
    pub default: &'static str,
    /// What the key does, one sentence.
    pub meaning: &'static str,
}

/// Every key, in the order of [`KEYS`] and of `check-config`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Cluster,
    SchedulerEndpoint,
    TlsCaFile,
    TlsCertFile,
    TlsKeyFile,
    // Issue 15 (trust): the TLS bootstrap.
    JoinToken,
    SchedulerCaPin,
    AllowPlaintext,
    DataDir,
    ContainerdAddress,
    ContainerdNamespace,
    ReservedCpu,
    ReservedMemory,
    ReservedPorts,
    Attributes,
    HeartbeatInterval,
    TaskCleanupWait,
    StopTimeout,
    ImagePullTimeout,
    InsecureRegistries,
    MaxConcurrentDownloads,
    LogLevel,
    LogFormat,
    MetricsListen,
    MetricsInterval,
    VolumeHostPaths,
    AllowPrivileged,
    InitPath,
    NetworkBridge,
    NetworkCidr,
    NetworkMasquerade,
    NetworkNetnsDir,
    NetworkHostNetns,
    AllowedDevices,
    // Confinement (issue 16): what a task may get beyond Docker's defaults.
    AllowUnconfinedSeccomp,
    AllowedCapabilities,
    EnvironmentFilePaths,
    // Network confinement (issue 16).
    BlockInstanceMetadata,
    TaskHostPorts,
    EniAllowedMacs,
    // Registry answers held in memory (issue 16).
    MaxManifestSize,
    // Telemetry (issue 18).
    ContainerdRoot,
    // Instance lifecycle (issue 19).
    DrainOnShutdown,
    // Durability (issue 17).
    OrphanCleanupGrace,
    // Registry credentials (issue 21).
    RegistryDockerConfig,
    RegistryTokenCommands,
    // Images (issue 21): pull behaviours and the image collector.
    ImagePullBehavior,
    ImageCleanupInterval,
    ImageMinimumAge,
    ImageKeepNewest,
    ImageRemovalsPerCycle,
    ImageGcHighPercent,
    ImageGcLowPercent,
    // pidMode and ipcMode host (issue 23).
    AllowHostPidIpc,
    // awslogs (issue 23): where CloudWatch Logs is reached.
    AwslogsEndpoint,
    // Registry TLS and mirrors (issue 21): the certs.d directory.
    RegistryCertsDir,
    // Secrets from AWS (issue 23): where SSM and Secrets Manager are reached.
    AwsEndpoint,
}

impl Key {
    pub(crate) const ALL: [Key; 57] = [
        Key::Cluster,
        Key::SchedulerEndpoint,
        Key::TlsCaFile,
        Key::TlsCertFile,
        Key::TlsKeyFile,
        Key::JoinToken,
        Key::SchedulerCaPin,
        Key::AllowPlaintext,
        Key::DataDir,
        Key::ContainerdAddress,
        Key::ContainerdNamespace,
        Key::ReservedCpu,
        Key::ReservedMemory,
        Key::ReservedPorts,
        Key::Attributes,
        Key::HeartbeatInterval,
        Key::TaskCleanupWait,
        Key::StopTimeout,
        Key::ImagePullTimeout,
        Key::InsecureRegistries,
        Key::MaxConcurrentDownloads,
        Key::LogLevel,
        Key::LogFormat,
        Key::MetricsListen,
        Key::MetricsInterval,
        Key::VolumeHostPaths,
        Key::AllowPrivileged,
        Key::InitPath,
        Key::NetworkBridge,
        Key::NetworkCidr,
        Key::NetworkMasquerade,
        Key::NetworkNetnsDir,
        Key::NetworkHostNetns,
        Key::AllowedDevices,
        Key::AllowUnconfinedSeccomp,
        Key::AllowedCapabilities,
        Key::EnvironmentFilePaths,
        Key::BlockInstanceMetadata,
        Key::TaskHostPorts,
        Key::EniAllowedMacs,
        Key::MaxManifestSize,
        Key::ContainerdRoot,
        Key::DrainOnShutdown,
        Key::OrphanCleanupGrace,
        Key::RegistryDockerConfig,
        Key::RegistryTokenCommands,
        Key::ImagePullBehavior,
        Key::ImageCleanupInterval,
        Key::ImageMinimumAge,
        Key::ImageKeepNewest,
        Key::ImageRemovalsPerCycle,
        Key::ImageGcHighPercent,
        Key::ImageGcLowPercent,
        Key::AllowHostPidIpc,
        Key::AwslogsEndpoint,
        Key::RegistryCertsDir,
        Key::AwsEndpoint,
    ];

    pub(crate) fn doc(self) -> &'static KeyDoc {
        &KEYS[self as usize]
    }

    pub(crate) fn name(self) -> &'static str {
        self.doc().key
    }

    pub(crate) fn env(self) -> &'static str {
        self.doc().env
    }

    pub(crate) fn flag(self) -> &'static str {
        self.doc().flag
    }

    /// A key whose value is a secret: never shown, in errors or in `check-config`.
    pub(crate) fn is_secret(self) -> bool {
        matches!(self, Key::JoinToken)
    }

    pub(crate) fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(crate) fn from_env(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.env() == name)
    }

    /// The known key closest to a misspelled one, if it is close enough to be a likely typo.
    pub(crate) fn nearest(unknown: &str) -> Option<Key> {
        let unknown = unknown.to_ascii_lowercase().replace('-', "_");
        let threshold = (unknown.chars().count() / 3).max(2);
        Key::ALL
            .into_iter()
            .map(|k| (strsim::levenshtein(&unknown, k.name()), k))
            .filter(|(d, _)| *d <= threshold)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }
}

/// The prefix of every agent environment variable.
pub(crate) const ENV_PREFIX: &str = "BERTH_";

/// `BERTH_*` variables that belong to other Berth tools and are not agent keys.
pub(crate) const IGNORED_ENV: &[&str] = &[
    // The CLI's scheduler address.
    "BERTH_ENDPOINT",
];

/// Prefixes of `BERTH_*` variables that belong to other tools (the end-to-end suites).
pub(crate) const IGNORED_ENV_PREFIXES: &[&str] = &["BERTH_E2E_"];

pub(crate) fn is_ignored_env(name: &str) -> bool {
    IGNORED_ENV.contains(&name) || IGNORED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The configuration reference, one row a key (see [`KeyDoc`]).
pub fn reference_table() -> Vec<KeyDoc> {
    KEYS.to_vec()
}

const fn doc(
    key: &'static str,
    env: &'static str,
    flag: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc {
        key,
        env,
        flag,
        default,
        meaning,
    }
}

/// Public interface: these spellings are what operators write. Indexed by [`Key`].
const KEYS: [KeyDoc; 57] = [
    doc(
        "cluster",
        "BERTH_CLUSTER",
        "--cluster",
        r#""default""#,
        "cluster to join: 1 to 255 letters, digits, '-' or '_'",
    ),
    doc(
        "scheduler_endpoint",
        "BERTH_SCHEDULER_ENDPOINT",
        "--scheduler-endpoint",
        r#""http://127.0.0.1:7700""#,
        "scheduler URL, http:// or https://; plain http only to a loopback host unless allow_plaintext",
    ),
    doc(
        "tls_ca_file",
        "BERTH_TLS_CA_FILE",
        "--tls-ca-file",
        "(none)",
        "CA bundle that signs the scheduler's certificate (mTLS: all three tls files or none)",
    ),
    doc(
        "tls_cert_file",
        "BERTH_TLS_CERT_FILE",
        "--tls-cert-file",
        "(none)",
        "the agent's client certificate (mTLS: all three tls files or none)",
    ),
    doc(
        "tls_key_file",
        "BERTH_TLS_KEY_FILE",
        "--tls-key-file",
        "(none)",
        "the agent's client private key (mTLS: all three tls files or none)",
    ),
    doc(
        "join_token",
        "BERTH_JOIN_TOKEN",
        "--join-token",
        "(none)",
        "bootstrap token (berthctl create-join-token) traded once for the agent's certificate; needs scheduler_ca_pin or tls_ca_file",
    ),
    doc(
        "scheduler_ca_pin",
        "BERTH_SCHEDULER_CA_PIN",
        "--scheduler-ca-pin",
        "(none)",
        "sha256:<hex> of the cluster CA's public key, checked before the join token is sent",
    ),
    doc(
        "allow_plaintext",
        "BERTH_ALLOW_PLAINTEXT",
        "--allow-plaintext",
        "false",
        "permit http:// to a non-loopback scheduler",
    ),
    doc(
        "data_dir",
        "BERTH_DATA_DIR",
        "--data-dir",
        r#""/var/lib/berth""#,
        "absolute directory for state: instance identity, database, logs",
    ),
    doc(
        "containerd_address",
        "BERTH_CONTAINERD_ADDRESS",
        "--containerd-address",
        r#""/run/containerd/containerd.sock""#,
        "absolute path of containerd's socket",
    ),
    doc(
        "containerd_namespace",
        "BERTH_CONTAINERD_NAMESPACE",
        "--containerd-namespace",
        r#""berth""#,
        "containerd namespace of Berth's containers and images",
    ),
    doc(
        "reserved_cpu",
        "BERTH_RESERVED_CPU",
        "--reserved-cpu",
        "0",
        "CPU units (1024 = one core) kept back from tasks",
    ),
    doc(
        "reserved_memory",
        "BERTH_RESERVED_MEMORY",
        "--reserved-memory",
        "0",
        "MiB of memory kept back from tasks",
    ),
    doc(
        "reserved_ports",
        "BERTH_RESERVED_PORTS",
        "--reserved-ports",
        "[22, 2375, 2376, 51678, 51679]",
        "host ports never given to tasks (comma-separated in the environment and flag)",
    ),
    doc(
        "attributes",
        "BERTH_ATTRIBUTES",
        "--attributes",
        "{}",
        "instance attributes: a TOML table; `name=value,name2=value2` in the environment and flag",
    ),
    doc(
        "heartbeat_interval",
        "BERTH_HEARTBEAT_INTERVAL",
        "--heartbeat-interval",
        r#""10s""#,
        "interval of the session heartbeat to the scheduler",
    ),
    doc(
        "task_cleanup_wait",
        "BERTH_TASK_CLEANUP_WAIT",
        "--task-cleanup-wait",
        r#""3h""#,
        "time after a task stops before its containers are removed (the environment variable is in seconds)",
    ),
    doc(
        "stop_timeout",
        "BERTH_STOP_TIMEOUT",
        "--stop-timeout",
        r#""30s""#,
        "default wait between SIGTERM and SIGKILL when stopping a container",
    ),
    doc(
        "image_pull_timeout",
        "BERTH_IMAGE_PULL_TIMEOUT",
        "--image-pull-timeout",
        r#""10m""#,
        "deadline of one image pull",
    ),
    doc(
        "insecure_registries",
        "BERTH_INSECURE_REGISTRIES",
        "--insecure-registries",
        "[]",
        "registries (host[:port]) reached over plain HTTP (comma-separated in the environment and flag)",
    ),
    doc(
        "max_concurrent_downloads",
        "BERTH_MAX_CONCURRENT_DOWNLOADS",
        "--max-concurrent-downloads",
        "3",
        "layers downloaded in parallel",
    ),
    doc(
        "log_level",
        "BERTH_LOG_LEVEL",
        "--log-level",
        r#""info""#,
        "tracing filter: error, warn, info, debug, trace, or a full filter directive",
    ),
    doc(
        "log_format",
        "BERTH_LOG_FORMAT",
        "--log-format",
        r#""plain""#,
        "log output format: plain or json",
    ),
    doc(
        "metrics_listen",
        "BERTH_METRICS_LISTEN",
        "--metrics-listen",
        r#""127.0.0.1:51678""#,
        "local address of the HTTP endpoint for metrics and health",
    ),
    doc(
        "metrics_interval",
        "BERTH_METRICS_INTERVAL",
        "--metrics-interval",
        r#""10s""#,
        "how often containers, tasks and the host are sampled (1s or more; 0 turns sampling off)",
    ),
    doc(
        "volume_host_paths",
        "BERTH_VOLUME_HOST_PATHS",
        "--volume-host-paths",
        "[]",
        "absolute host directories whose contents tasks may bind-mount (ECS host.sourcePath); none by default (comma-separated in the environment and flag)",
    ),
    doc(
        "allow_privileged",
        "BERTH_ALLOW_PRIVILEGED",
        "--allow-privileged",
        "false",
        "run containers that ask for ECS privileged; when false such a task stops with a reason",
    ),
    doc(
        "init_path",
        "BERTH_INIT_PATH",
        "--init-path",
        r#""/usr/bin/tini-static""#,
        "absolute path of the static init (Debian's tini) run as PID 1 for initProcessEnabled",
    ),
    doc(
        "network_bridge",
        "BERTH_NETWORK_BRIDGE",
        "--network-bridge",
        r#""berth0""#,
        "the bridge the agent creates for awsvpc (veth) and bridge-mode tasks; it gets the CIDR's first address and 169.254.170.2",
    ),
    doc(
        "network_cidr",
        "BERTH_NETWORK_CIDR",
        "--network-cidr",
        r#""10.222.0.0/16""#,
        "IPv4 range task addresses come from (agent IPAM); must not overlap an address of the host",
    ),
    doc(
        "network_masquerade",
        "BERTH_NETWORK_MASQUERADE",
        "--network-masquerade",
        "true",
        "masquerade (outbound NAT) traffic from task addresses that leaves the CIDR",
    ),
    doc(
        "network_netns_dir",
        "BERTH_NETWORK_NETNS_DIR",
        "--network-netns-dir",
        r#""/run/berth/netns""#,
        "where task network namespaces are bind-mounted, one file per task",
    ),
    doc(
        "network_host_netns",
        "BERTH_NETWORK_HOST_NETNS",
        "--network-host-netns",
        "(none)",
        "a network namespace (path like /run/netns/lab) holding the bridge, nftables table and task interfaces instead of the agent's own; for tests and nested setups",
    ),
    doc(
        "allowed_devices",
        "BERTH_ALLOWED_DEVICES",
        "--allowed-devices",
        "[]",
        "absolute host device paths (or directories of devices) tasks may map (ECS linuxParameters.devices); none by default (comma-separated in the environment and flag)",
    ),
    doc(
        "allow_unconfined_seccomp",
        "BERTH_ALLOW_UNCONFINED_SECCOMP",
        "--allow-unconfined-seccomp",
        "true",
        "run containers that ask for dockerSecurityOptions seccomp=unconfined (no seccomp filter), as Docker does; when false such a task stops with a reason and every container gets a filter",
    ),
    doc(
        "allowed_capabilities",
        "BERTH_ALLOWED_CAPABILITIES",
        "--allowed-capabilities",
        "[]",
        "capabilities beyond Docker's default set that containers may add (like \"NET_ADMIN\"; \"ALL\" allows every one); none by default, and allow_privileged allows all (comma-separated in the environment and flag)",
    ),
    doc(
        "environment_file_paths",
        "BERTH_ENVIRONMENT_FILE_PATHS",
        "--environment-file-paths",
        "[]",
        "absolute host directories whose regular files tasks may read as environmentFiles; none by default (comma-separated in the environment and flag)",
    ),
    doc(
        "block_instance_metadata",
        "BERTH_BLOCK_INSTANCE_METADATA",
        "--block-instance-metadata",
        "true",
        "tasks cannot reach the instance metadata service at 169.254.169.254 (as ECS_AWSVPC_BLOCK_IMDS); false lets them",
    ),
    doc(
        "task_host_ports",
        "BERTH_TASK_HOST_PORTS",
        "--task-host-ports",
        "[]",
        "ports (TCP and UDP) tasks may reach on the host's own addresses, beside the task endpoint; none by default (comma-separated in the environment and flag)",
    ),
    doc(
        "eni_allowed_macs",
        "BERTH_ENI_ALLOWED_MACS",
        "--eni-allowed-macs",
        "[]",
        "MAC addresses of the only interfaces an ENI attachment may move into a task; empty allows any that passes the built-in refusals (comma-separated in the environment and flag)",
    ),
    doc(
        "max_manifest_size",
        "BERTH_MAX_MANIFEST_SIZE",
        "--max-manifest-size",
        "4",
        "MiB a manifest, an index or an image config from a registry may hold (1 to 64); a larger one fails the pull",
    ),
    doc(
        "containerd_root",
        "BERTH_CONTAINERD_ROOT",
        "--containerd-root",
        r#""/var/lib/containerd""#,
        "containerd's root directory, whose filesystem's use is reported with the host's metrics and drives the image collector's disk marks",
    ),
    doc(
        "drain_on_shutdown",
        "BERTH_DRAIN_ON_SHUTDOWN",
        "--drain-on-shutdown",
        "false",
        "on SIGTERM, ask the scheduler to set this instance DRAINING (no new tasks; its tasks keep running) and wait up to 20s for its acknowledgement before exiting: for spot interruptions and scale-in",
    ),
    doc(
        "orphan_cleanup_grace",
        "BERTH_ORPHAN_CLEANUP_GRACE",
        "--orphan-cleanup-grace",
        r#""10m""#,
        "how long a container, cgroup, volume or log directory or network namespace that belongs to no task the agent knows is reported before it is removed (0: at once; off: only reported)",
    ),
    doc(
        "registry_docker_config",
        "BERTH_REGISTRY_DOCKER_CONFIG",
        "--registry-docker-config",
        "(none)",
        "a Docker config.json whose credHelpers, credsStore (docker-credential-* helpers on PATH, run with a 10s deadline) and auths give registry credentials to pulls whose task brings none; read at each pull, a missing file gives none",
    ),
    doc(
        "registry_token_commands",
        "BERTH_REGISTRY_TOKEN_COMMANDS",
        "--registry-token-commands",
        "{}",
        "per registry host, an executable (absolute path, no shell) run with the host as its argument that prints a token, or JSON with username and password or token and an optional expires_at, as ECR logins do; asked after the Docker config, its answer kept until its expiry or for 60s: a TOML table; `host=/path,host2=/path2` in the environment and flag",
    ),
    doc(
        "image_pull_behavior",
        "BERTH_IMAGE_PULL_BEHAVIOR",
        "--image-pull-behavior",
        r#""default""#,
        "when a task's start asks the registry (ECS_IMAGE_PULL_BEHAVIOR's values): default pulls and falls back to the cached image when the registry fails; always pulls and fails with the registry; once pulls only an image this agent has not pulled; prefer-cached uses any cached image; a task definition's berth.imagePullBehavior overrides it",
    ),
    doc(
        "image_cleanup_interval",
        "BERTH_IMAGE_CLEANUP_INTERVAL",
        "--image-cleanup-interval",
        r#""10m""#,
        "how often the image collector runs (off: never on its own; berthctl collect-images still runs it)",
    ),
    doc(
        "image_minimum_age",
        "BERTH_IMAGE_MINIMUM_AGE",
        "--image-minimum-age",
        r#""1h""#,
        "how long an image must have gone unused by any task before the collector may remove it",
    ),
    doc(
        "image_keep_newest",
        "BERTH_IMAGE_KEEP_NEWEST",
        "--image-keep-newest",
        "2",
        "how many of each repository's most recently used images the collector keeps while the disk is not past image_gc_high_percent",
    ),
    doc(
        "image_removals_per_cycle",
        "BERTH_IMAGE_REMOVALS_PER_CYCLE",
        "--image-removals-per-cycle",
        "5",
        "the most images one collection removes (1 to 1000)",
    ),
    doc(
        "image_gc_high_percent",
        "BERTH_IMAGE_GC_HIGH_PERCENT",
        "--image-gc-high-percent",
        "85",
        "percent use of containerd_root's filesystem past which the collector removes unused images, least recently used first, even the newest of their repository (1 to 100)",
    ),
    doc(
        "image_gc_low_percent",
        "BERTH_IMAGE_GC_LOW_PERCENT",
        "--image-gc-low-percent",
        "80",
        "percent use of containerd_root's filesystem those removals bring it under (below image_gc_high_percent)",
    ),
    doc(
        "allow_host_pid_ipc",
        "BERTH_ALLOW_HOST_PID_IPC",
        "--allow-host-pid-ipc",
        "false",
        "run tasks that ask for pidMode or ipcMode host (the host's PID or IPC namespace); when false such a task stops with a reason before any pull",
    ),
    doc(
        "awslogs_endpoint",
        "BERTH_AWSLOGS_ENDPOINT",
        "--awslogs-endpoint",
        "(none)",
        "URL of the CloudWatch Logs API the awslogs log driver sends to (http:// or https://); by default the region's AWS endpoint",
    ),
    doc(
        "registry_certs_dir",
        "BERTH_REGISTRY_CERTS_DIR",
        "--registry-certs-dir",
        r#""/etc/berth/certs.d""#,
        "directory of per-registry TLS files and mirrors, as containerd's certs.d: `<host[:port]>/` holds `ca.crt` (and other `*.crt`), `client.cert` + `client.key`, and `hosts.toml`",
    ),
    doc(
        "aws_endpoint",
        "BERTH_AWS_ENDPOINT",
        "--aws-endpoint",
        "(none)",
        "URL every AWS API the agent calls is sent to (http:// or https://): SSM Parameter Store and Secrets Manager for task secrets, and CloudWatch Logs unless awslogs_endpoint is set; by default each region's AWS endpoints",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_key_and_spelled_by_the_rules() {
        for (i, key) in Key::ALL.into_iter().enumerate() {
            assert_eq!(key as usize, i);
            let doc = key.doc();
            assert_eq!(doc.env, format!("BERTH_{}", doc.key.to_ascii_uppercase()));
            assert_eq!(doc.flag, format!("--{}", doc.key.replace('_', "-")));
            assert_eq!(Key::from_name(doc.key), Some(key));
            assert_eq!(Key::from_env(doc.env), Some(key));
            assert!(!is_ignored_env(doc.env));
        }
        assert_eq!(reference_table().len(), Key::ALL.len());
    }

    #[test]
    fn nearest_suggests_only_likely_typos() {
        assert_eq!(Key::nearest("clustr"), Some(Key::Cluster));
        assert_eq!(
            Key::nearest("scheduler-endpoint"),
            Some(Key::SchedulerEndpoint)
        );
        assert_eq!(Key::nearest("CLUSTER"), Some(Key::Cluster));
        assert_eq!(
            Key::nearest("reserved_memory_mib"),
            Some(Key::ReservedMemory)
        );
        assert_eq!(Key::nearest("xyz"), None);
        assert_eq!(Key::nearest("completely_unrelated"), None);
    }

    #[test]
    fn other_tools_variables_are_ignored() {
        assert!(is_ignored_env("BERTH_ENDPOINT"));
        assert!(is_ignored_env("BERTH_E2E_KEEP"));
        assert!(!is_ignored_env("BERTH_CLUSTR"));
    }
}

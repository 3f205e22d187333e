//! Resolving the merged layers: every key's value or its default, with where it came from,
//! and the checks across keys (the endpoint against the TLS files and `allow_plaintext`; all
//! three TLS files or none, each existing; a join token with a way to check the scheduler's CA
//! and no client files), every problem reported at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::error::ConfigError;
use super::super::keys::Key;
use super::super::parse;
use super::super::{AgentConfig, JoinConfig, LoadedConfig, Source, TlsFiles};
use super::{Given, Partial};

impl Partial {
    /// Fills in defaults, records sources and runs the checks across keys. `file_exists` is the
    /// only look at the outside world, so that [`super::load`] stays pure.
    pub(crate) fn resolve(
        mut self,
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
        for key in [Key::JoinToken, Key::SchedulerCaPin] {
            sources.insert(key.name(), Source::Default);
        }
        let join_token = self.join_token;
        let ca_pin = self.scheduler_ca_pin;
        if let Some(given) = &join_token {
            sources.insert(Key::JoinToken.name(), given.origin.clone());
        }
        if let Some(given) = &ca_pin {
            sources.insert(Key::SchedulerCaPin.name(), given.origin.clone());
        }
        // A joining agent may check the scheduler against a CA file instead of a pin.
        let join_ca = match (&join_token, &self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None, None) => self.tls_ca_file.take(),
            _ => None,
        };
        let tls_files = [
            (Key::TlsCaFile, self.tls_ca_file),
            (Key::TlsCertFile, self.tls_cert_file),
            (Key::TlsKeyFile, self.tls_key_file),
        ];
        for (key, _) in &tls_files {
            sources.insert(key.name(), Source::Default);
        }
        let tls = resolve_tls(tls_files, &mut sources, file_exists, &mut errors);
        if let Some(ca) = &join_ca {
            sources.insert(Key::TlsCaFile.name(), ca.origin.clone());
            if !file_exists(&ca.value) {
                errors.push(invalid(Key::TlsCaFile, ca, "an existing file"));
            }
        }
        let join = match join_token {
            None => None,
            Some(token) => {
                if tls.is_some() {
                    errors.push(invalid(
                        Key::JoinToken,
                        &token,
                        "no join_token when tls_cert_file and tls_key_file are set (an agent either joins or brings its own certificate)",
                    ));
                } else if ca_pin.is_none() && join_ca.is_none() {
                    errors.push(invalid(
                        Key::JoinToken,
                        &token,
                        "scheduler_ca_pin (or tls_ca_file) beside it, to check the scheduler before the token is sent",
                    ));
                }
                if !endpoint.value.starts_with("https://") {
                    errors.push(invalid(
                        Key::SchedulerEndpoint,
                        &endpoint,
                        "an https:// endpoint when join_token is set",
                    ));
                }
                let token_file = match &token.origin {
                    Source::File(path) => Some(path.clone()),
                    _ => None,
                };
                Some(JoinConfig {
                    token_file,
                    token: token.value,
                    ca_pin: ca_pin.map(|p| p.value),
                    ca_file: join_ca.map(|c| c.value),
                })
            }
        };

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

        let gc_high = pick(
            self.image_gc_high_percent,
            Key::ImageGcHighPercent,
            defaults.image_gc_high_percent,
            &mut sources,
        );
        let gc_low = pick(
            self.image_gc_low_percent,
            Key::ImageGcLowPercent,
            defaults.image_gc_low_percent,
            &mut sources,
        );
        if gc_low.value >= gc_high.value {
            errors.push(invalid(
                Key::ImageGcLowPercent,
                &gc_low,
                &format!(
                    "a percentage below image_gc_high_percent ({})",
                    gc_high.value
                ),
            ));
        }

        let config = AgentConfig {
            cluster: cluster.value,
            scheduler_endpoint: endpoint.value,
            tls,
            join,
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
            metrics_interval: pick(
                self.metrics_interval,
                Key::MetricsInterval,
                defaults.metrics_interval,
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
            allow_unconfined_seccomp: pick(
                self.allow_unconfined_seccomp,
                Key::AllowUnconfinedSeccomp,
                defaults.allow_unconfined_seccomp,
                &mut sources,
            )
            .value,
            allowed_capabilities: pick(
                self.allowed_capabilities,
                Key::AllowedCapabilities,
                defaults.allowed_capabilities,
                &mut sources,
            )
            .value,
            environment_file_paths: pick(
                self.environment_file_paths,
                Key::EnvironmentFilePaths,
                defaults.environment_file_paths,
                &mut sources,
            )
            .value,
            block_instance_metadata: pick(
                self.block_instance_metadata,
                Key::BlockInstanceMetadata,
                defaults.block_instance_metadata,
                &mut sources,
            )
            .value,
            task_host_ports: pick(
                self.task_host_ports,
                Key::TaskHostPorts,
                defaults.task_host_ports,
                &mut sources,
            )
            .value,
            eni_allowed_macs: pick(
                self.eni_allowed_macs,
                Key::EniAllowedMacs,
                defaults.eni_allowed_macs,
                &mut sources,
            )
            .value,
            max_manifest_size_mib: pick(
                self.max_manifest_size,
                Key::MaxManifestSize,
                defaults.max_manifest_size_mib,
                &mut sources,
            )
            .value,
            containerd_root: pick(
                self.containerd_root,
                Key::ContainerdRoot,
                defaults.containerd_root,
                &mut sources,
            )
            .value,
            drain_on_shutdown: pick(
                self.drain_on_shutdown,
                Key::DrainOnShutdown,
                defaults.drain_on_shutdown,
                &mut sources,
            )
            .value,
            orphan_cleanup_grace: pick(
                self.orphan_cleanup_grace,
                Key::OrphanCleanupGrace,
                defaults.orphan_cleanup_grace,
                &mut sources,
            )
            .value,
            registry_docker_config: pick(
                self.registry_docker_config,
                Key::RegistryDockerConfig,
                defaults.registry_docker_config,
                &mut sources,
            )
            .value,
            registry_token_commands: pick(
                self.registry_token_commands,
                Key::RegistryTokenCommands,
                defaults.registry_token_commands,
                &mut sources,
            )
            .value,
            image_pull_behavior: pick(
                self.image_pull_behavior,
                Key::ImagePullBehavior,
                defaults.image_pull_behavior,
                &mut sources,
            )
            .value,
            image_cleanup_interval: pick(
                self.image_cleanup_interval,
                Key::ImageCleanupInterval,
                defaults.image_cleanup_interval,
                &mut sources,
            )
            .value,
            image_minimum_age: pick(
                self.image_minimum_age,
                Key::ImageMinimumAge,
                defaults.image_minimum_age,
                &mut sources,
            )
            .value,
            image_keep_newest: pick(
                self.image_keep_newest,
                Key::ImageKeepNewest,
                defaults.image_keep_newest,
                &mut sources,
            )
            .value,
            image_removals_per_cycle: pick(
                self.image_removals_per_cycle,
                Key::ImageRemovalsPerCycle,
                defaults.image_removals_per_cycle,
                &mut sources,
            )
            .value,
            image_gc_high_percent: gc_high.value,
            image_gc_low_percent: gc_low.value,
            allow_host_pid_ipc: pick(
                self.allow_host_pid_ipc,
                Key::AllowHostPidIpc,
                defaults.allow_host_pid_ipc,
                &mut sources,
            )
            .value,
            awslogs_endpoint: pick(
                self.awslogs_endpoint,
                Key::AwslogsEndpoint,
                defaults.awslogs_endpoint,
                &mut sources,
            )
            .value,
            registry_certs_dir: pick(
                self.registry_certs_dir,
                Key::RegistryCertsDir,
                defaults.registry_certs_dir,
                &mut sources,
            )
            .value,
            aws_endpoint: pick(
                self.aws_endpoint,
                Key::AwsEndpoint,
                defaults.aws_endpoint,
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

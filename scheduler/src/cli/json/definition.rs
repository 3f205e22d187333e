//! ECS-style JSON of a registered task definition: ECS's RegisterTaskDefinition shape, with
//! cpu and memory as strings, as ECS has them.

use std::collections::BTreeMap;

use berth_proto::v1 as proto;
use serde::Serialize;

use super::{Attribute, non_empty, non_zero, time};

/// `{"taskDefinition": {...}}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OneTaskDefinition {
    pub(crate) task_definition: TaskDefinition,
}

/// `{"taskDefinition": {...}, "notes": [...]}`: what register-task-definition prints, with the
/// scheduler's notes on what it ignored (left out when there are none).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisteredTaskDefinition {
    pub(crate) task_definition: TaskDefinition,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
}

/// A registered task definition in ECS's shape (cpu and memory as strings, as ECS has them).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskDefinition {
    family: String,
    revision: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_at: Option<String>,
    container_definitions: Vec<ContainerDefinition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_platform: Option<RuntimePlatform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipc_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    berth: Option<BerthExtensions>,
}

/// ECS RuntimePlatform, as registered (members left out when any will do).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuntimePlatform {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operating_system_family: Option<String>,
}

/// Berth's extensions of a task definition, as it was registered with them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BerthExtensions {
    image_pull_behavior: String,
}

/// ECS Volume.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Volume {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<HostVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    docker_volume_configuration: Option<DockerVolumeConfiguration>,
}

/// ECS HostVolumeProperties.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostVolume {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_path: Option<String>,
}

/// ECS DockerVolumeConfiguration.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DockerVolumeConfiguration {
    scope: String,
    driver: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

/// ECS MountPoint.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MountPoint {
    source_volume: String,
    container_path: String,
    read_only: bool,
}

/// ECS VolumeFrom.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeFrom {
    source_container: String,
    read_only: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerDefinition {
    name: String,
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_reservation: Option<u64>,
    essential: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_point: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    environment: Vec<Attribute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_directory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    readonly_root_filesystem: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    docker_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<ContainerDependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mount_points: Vec<MountPoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes_from: Vec<VolumeFrom>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_configuration: Option<LogConfiguration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system_controls: Vec<SystemControl>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<HostEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_search_domains: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linux_parameters: Option<LinuxParameters>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    environment_files: Vec<EnvironmentFile>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_networking: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    port_mappings: Vec<PortMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    docker_security_options: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    interactive: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pseudo_terminal: bool,
    /// The secrets' names only (`valueFrom`); their values never leave the scheduler's store
    /// except to the agent that runs the task.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_credentials: Option<RepositoryCredentials>,
}

/// ECS Secret: the variable and the secret's name, never its value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Secret {
    name: String,
    value_from: String,
}

/// ECS RepositoryCredentials: the secret's name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepositoryCredentials {
    credentials_parameter: String,
}

/// ECS PortMapping, as registered: hostPort 0 is a dynamic port (bridge mode); in host and
/// awsvpc modes the registration filled in the container port.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PortMapping {
    container_port: u32,
    host_port: u32,
    protocol: String,
}

/// ECS HealthCheck, with the defaults the registration filled in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthCheck {
    command: Vec<String>,
    interval: u32,
    timeout: u32,
    retries: u32,
    start_period: u32,
}

/// ECS LogConfiguration; `max-size` is shown in bytes, as the registration resolved it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogConfiguration {
    log_driver: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<String, String>,
}

/// ECS EnvironmentFile (always type `file` on Berth).
#[derive(Debug, Serialize)]
pub(crate) struct EnvironmentFile {
    value: String,
    #[serde(rename = "type")]
    typ: &'static str,
}

/// ECS SystemControl.
#[derive(Debug, Serialize)]
pub(crate) struct SystemControl {
    namespace: String,
    value: String,
}

/// ECS HostEntry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostEntry {
    hostname: String,
    ip_address: String,
}

/// ECS LinuxParameters (the members Berth supports).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinuxParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<KernelCapabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_memory_size: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<Tmpfs>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    init_process_enabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_swap: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swappiness: Option<u32>,
}

/// ECS Device, with the container path and permissions the registration filled in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Device {
    host_path: String,
    container_path: String,
    permissions: Vec<String>,
}

/// ECS KernelCapabilities.
#[derive(Debug, Serialize)]
pub(crate) struct KernelCapabilities {
    add: Vec<String>,
    drop: Vec<String>,
}

/// ECS Tmpfs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tmpfs {
    container_path: String,
    size: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mount_options: Vec<String>,
}

/// ECS ContainerRestartPolicy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestartPolicy {
    enabled: bool,
    ignored_exit_codes: Vec<u32>,
    restart_attempt_period: u32,
}

/// ECS ContainerDependency.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerDependency {
    container_name: String,
    condition: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ulimit {
    name: String,
    soft_limit: u64,
    hard_limit: u64,
}

impl From<&proto::TaskDefinition> for TaskDefinition {
    fn from(d: &proto::TaskDefinition) -> Self {
        Self {
            family: d.family.clone(),
            revision: d.revision,
            cpu: non_zero(d.cpu).map(|c| c.to_string()),
            memory: non_zero(d.memory_mib).map(|m| m.to_string()),
            network_mode: non_empty(&d.network_mode),
            registered_at: time(d.registered_at.as_ref()),
            container_definitions: d.containers.iter().map(ContainerDefinition::from).collect(),
            runtime_platform: d.runtime_platform.as_ref().map(|p| RuntimePlatform {
                cpu_architecture: non_empty(&p.cpu_architecture),
                operating_system_family: non_empty(&p.operating_system_family),
            }),
            pid_mode: non_empty(&d.pid_mode),
            ipc_mode: non_empty(&d.ipc_mode),
            berth: non_empty(&d.image_pull_behavior).map(|image_pull_behavior| BerthExtensions {
                image_pull_behavior,
            }),
            volumes: d
                .volumes
                .iter()
                .map(|v| Volume {
                    name: v.name.clone(),
                    host: v.host.as_ref().map(|h| HostVolume {
                        source_path: non_empty(&h.source_path),
                    }),
                    docker_volume_configuration: v.docker_volume_configuration.as_ref().map(|c| {
                        DockerVolumeConfiguration {
                            scope: c.scope.clone(),
                            driver: c.driver.clone(),
                            driver_opts: c
                                .driver_opts
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                            labels: c
                                .labels
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        }
                    }),
                })
                .collect(),
        }
    }
}

impl From<&proto::ContainerDefinition> for ContainerDefinition {
    fn from(c: &proto::ContainerDefinition) -> Self {
        let environment: BTreeMap<&String, &String> = c.environment.iter().collect();
        Self {
            name: c.name.clone(),
            image: c.image.clone(),
            cpu: non_zero(c.cpu),
            memory: non_zero(c.memory_mib),
            memory_reservation: non_zero(c.memory_reservation_mib),
            essential: c.essential,
            entry_point: (c.entry_point_set || !c.entry_point.is_empty())
                .then(|| c.entry_point.clone()),
            command: (c.command_set || !c.command.is_empty()).then(|| c.command.clone()),
            environment: environment
                .into_iter()
                .map(|(name, value)| Attribute {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            working_directory: non_empty(&c.working_directory),
            user: non_empty(&c.user),
            stop_timeout: non_zero(c.stop_timeout_seconds),
            readonly_root_filesystem: c.readonly_root_filesystem,
            ulimits: c
                .ulimits
                .iter()
                .map(|u| Ulimit {
                    name: u.name.clone(),
                    soft_limit: u.soft_limit,
                    hard_limit: u.hard_limit,
                })
                .collect(),
            hostname: non_empty(&c.hostname),
            docker_labels: c
                .docker_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            depends_on: c
                .depends_on
                .iter()
                .map(|d| ContainerDependency {
                    container_name: d.container_name.clone(),
                    condition: match proto::DependencyCondition::try_from(d.condition) {
                        Ok(proto::DependencyCondition::Start) => "START",
                        Ok(proto::DependencyCondition::Complete) => "COMPLETE",
                        Ok(proto::DependencyCondition::Success) => "SUCCESS",
                        Ok(proto::DependencyCondition::Healthy) => "HEALTHY",
                        _ => "UNSPECIFIED",
                    },
                })
                .collect(),
            start_timeout: non_zero(c.start_timeout_seconds),
            restart_policy: c.restart_policy.as_ref().map(|p| RestartPolicy {
                enabled: p.enabled,
                ignored_exit_codes: p.ignored_exit_codes.clone(),
                restart_attempt_period: p.restart_attempt_period_seconds,
            }),
            mount_points: c
                .mount_points
                .iter()
                .map(|m| MountPoint {
                    source_volume: m.source_volume.clone(),
                    container_path: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            volumes_from: c
                .volumes_from
                .iter()
                .map(|v| VolumeFrom {
                    source_container: v.source_container.clone(),
                    read_only: v.read_only,
                })
                .collect(),
            health_check: c.health_check.as_ref().map(|h| HealthCheck {
                command: h.command.clone(),
                interval: h.interval_seconds,
                timeout: h.timeout_seconds,
                retries: h.retries,
                start_period: h.start_period_seconds,
            }),
            log_configuration: c.log_configuration.as_ref().map(|l| {
                let mut options: BTreeMap<String, String> = l
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if l.max_size_bytes > 0 {
                    options.insert("max-size".into(), l.max_size_bytes.to_string());
                }
                if l.max_files > 0 {
                    options.insert("max-file".into(), l.max_files.to_string());
                }
                LogConfiguration {
                    log_driver: l.log_driver.clone(),
                    options,
                }
            }),
            system_controls: c
                .system_controls
                .iter()
                .map(|s| SystemControl {
                    namespace: s.namespace.clone(),
                    value: s.value.clone(),
                })
                .collect(),
            extra_hosts: c
                .extra_hosts
                .iter()
                .map(|h| HostEntry {
                    hostname: h.hostname.clone(),
                    ip_address: h.ip_address.clone(),
                })
                .collect(),
            dns_servers: c.dns_servers.clone(),
            dns_search_domains: c.dns_search_domains.clone(),
            linux_parameters: c.linux_parameters.as_ref().map(|p| LinuxParameters {
                capabilities: p.capabilities.as_ref().map(|k| KernelCapabilities {
                    add: k.add.clone(),
                    drop: k.drop.clone(),
                }),
                shared_memory_size: non_zero(p.shared_memory_size_mib),
                tmpfs: p
                    .tmpfs
                    .iter()
                    .map(|t| Tmpfs {
                        container_path: t.container_path.clone(),
                        size: t.size_mib,
                        mount_options: t.mount_options.clone(),
                    })
                    .collect(),
                init_process_enabled: p.init_process_enabled,
                devices: p
                    .devices
                    .iter()
                    .map(|d| Device {
                        host_path: d.host_path.clone(),
                        container_path: d.container_path.clone(),
                        permissions: d.permissions.clone(),
                    })
                    .collect(),
                max_swap: p.max_swap_mib,
                swappiness: p.swappiness,
            }),
            privileged: c.privileged,
            environment_files: c
                .environment_files
                .iter()
                .map(|path| EnvironmentFile {
                    value: path.clone(),
                    typ: "file",
                })
                .collect(),
            disable_networking: c.disable_networking,
            port_mappings: c
                .port_mappings
                .iter()
                .map(|m| PortMapping {
                    container_port: m.container_port,
                    host_port: m.host_port,
                    protocol: m.protocol.clone(),
                })
                .collect(),
            links: c.links.clone(),
            docker_security_options: security_options(c),
            interactive: c.interactive,
            pseudo_terminal: c.pseudo_terminal,
            secrets: c
                .secrets
                .iter()
                .map(|s| Secret {
                    name: s.name.clone(),
                    value_from: s.value_from.clone(),
                })
                .collect(),
            repository_credentials: c.repository_credentials.as_ref().map(|r| {
                RepositoryCredentials {
                    credentials_parameter: r.credentials_parameter.clone(),
                }
            }),
        }
    }
}

/// ECS dockerSecurityOptions as the registration understood them, in Docker's `=` syntax.
fn security_options(c: &proto::ContainerDefinition) -> Vec<String> {
    let mut options = Vec::new();
    match c.no_new_privileges {
        Some(true) => options.push("no-new-privileges".to_owned()),
        Some(false) => options.push("no-new-privileges=false".to_owned()),
        None => {}
    }
    if !c.seccomp_profile.is_empty() {
        options.push(format!("seccomp={}", c.seccomp_profile));
    }
    options
}

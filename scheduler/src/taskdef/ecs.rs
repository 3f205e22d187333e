//! Serde structs of the supported subset of ECS RegisterTaskDefinition JSON.
//!
//! They mirror the supported and ignored entries of `fields.rs` (a unit test keeps the two in
//! step); the structural check in `walk.rs` has already run when they are deserialized, so
//! their own errors are a last line of defence.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TaskDefinition {
    pub(super) family: String,
    pub(super) container_definitions: Vec<ContainerDefinition>,
    /// An integer or a string ("256", "1 vCPU"); read by `walk::task_cpu`.
    #[serde(default)]
    pub(super) cpu: Option<Value>,
    /// An integer or a string ("512", "1 GB"); read by `walk::task_memory`.
    #[serde(default)]
    pub(super) memory: Option<Value>,
    #[serde(default)]
    pub(super) network_mode: Option<String>,
    #[serde(default)]
    pub(super) volumes: Option<Vec<Volume>>,
    #[serde(default)]
    pub(super) berth: Option<Berth>,
    pub(super) runtime_platform: Option<RuntimePlatform>,
    #[serde(default)]
    pub(super) pid_mode: Option<String>,
    #[serde(default)]
    pub(super) ipc_mode: Option<String>,
    #[serde(default)]
    pub(super) placement_constraints: Option<Vec<PlacementConstraint>>,
    // Accepted and ignored: see `fields::TASK_DEFINITION`.
    #[serde(default, rename = "executionRoleArn")]
    _execution_role_arn: Option<IgnoredAny>,
    #[serde(default, rename = "taskRoleArn")]
    _task_role_arn: Option<IgnoredAny>,
    #[serde(default, rename = "requiresCompatibilities")]
    _requires_compatibilities: Option<IgnoredAny>,
    #[serde(default, rename = "tags")]
    _tags: Option<IgnoredAny>,
    // Read-only fields of describe output, and `ephemeralStorage`: accepted and ignored with a
    // note, see `fields::TASK_DEFINITION`.
    #[serde(default, rename = "taskDefinitionArn")]
    _task_definition_arn: Option<IgnoredAny>,
    #[serde(default, rename = "revision")]
    _revision: Option<IgnoredAny>,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
    #[serde(default, rename = "requiresAttributes")]
    _requires_attributes: Option<IgnoredAny>,
    #[serde(default, rename = "compatibilities")]
    _compatibilities: Option<IgnoredAny>,
    #[serde(default, rename = "registeredAt")]
    _registered_at: Option<IgnoredAny>,
    #[serde(default, rename = "registeredBy")]
    _registered_by: Option<IgnoredAny>,
    #[serde(default, rename = "deregisteredAt")]
    _deregistered_at: Option<IgnoredAny>,
    #[serde(default, rename = "ephemeralStorage")]
    _ephemeral_storage: Option<IgnoredAny>,
}

/// Berth's extensions (`fields::BERTH`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Berth {
    #[serde(default)]
    pub(super) image_pull_behavior: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ContainerDefinition {
    pub(super) name: String,
    pub(super) image: String,
    #[serde(default)]
    pub(super) cpu: Option<u32>,
    #[serde(default)]
    pub(super) memory: Option<u64>,
    #[serde(default)]
    pub(super) memory_reservation: Option<u64>,
    #[serde(default)]
    pub(super) essential: Option<bool>,
    #[serde(default)]
    pub(super) entry_point: Option<Vec<String>>,
    #[serde(default)]
    pub(super) command: Option<Vec<String>>,
    #[serde(default)]
    pub(super) environment: Option<Vec<KeyValuePair>>,
    #[serde(default)]
    pub(super) working_directory: Option<String>,
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) stop_timeout: Option<u32>,
    #[serde(default)]
    pub(super) readonly_root_filesystem: Option<bool>,
    #[serde(default)]
    pub(super) ulimits: Option<Vec<Ulimit>>,
    #[serde(default)]
    pub(super) hostname: Option<String>,
    #[serde(default)]
    pub(super) docker_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) depends_on: Option<Vec<ContainerDependency>>,
    #[serde(default)]
    pub(super) start_timeout: Option<u32>,
    #[serde(default)]
    pub(super) restart_policy: Option<RestartPolicy>,
    #[serde(default)]
    pub(super) log_configuration: Option<LogConfiguration>,
    #[serde(default)]
    pub(super) mount_points: Option<Vec<MountPoint>>,
    #[serde(default)]
    pub(super) volumes_from: Option<Vec<VolumeFrom>>,
    #[serde(default)]
    pub(super) health_check: Option<HealthCheck>,
    #[serde(default)]
    pub(super) system_controls: Option<Vec<SystemControl>>,
    #[serde(default)]
    pub(super) extra_hosts: Option<Vec<HostEntry>>,
    #[serde(default)]
    pub(super) dns_servers: Option<Vec<String>>,
    #[serde(default)]
    pub(super) dns_search_domains: Option<Vec<String>>,
    #[serde(default)]
    pub(super) linux_parameters: Option<LinuxParameters>,
    #[serde(default)]
    pub(super) privileged: Option<bool>,
    #[serde(default)]
    pub(super) environment_files: Option<Vec<EnvironmentFile>>,
    #[serde(default)]
    pub(super) disable_networking: Option<bool>,
    /// Docker's `--security-opt` strings; parsed in `linux.rs`.
    #[serde(default)]
    pub(super) docker_security_options: Option<Vec<String>>,
    #[serde(default)]
    pub(super) interactive: Option<bool>,
    #[serde(default)]
    pub(super) pseudo_terminal: Option<bool>,
    #[serde(default)]
    pub(super) port_mappings: Option<Vec<PortMapping>>,
    #[serde(default)]
    pub(super) links: Option<Vec<String>>,
    #[serde(default)]
    pub(super) secrets: Option<Vec<Secret>>,
    #[serde(default)]
    pub(super) repository_credentials: Option<RepositoryCredentials>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Secret {
    pub(super) name: String,
    pub(super) value_from: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RepositoryCredentials {
    pub(super) credentials_parameter: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PortMapping {
    pub(super) container_port: u32,
    /// Absent differs from 0 in host and awsvpc modes (absent: the container port).
    #[serde(default)]
    pub(super) host_port: Option<u32>,
    /// "tcp" or "udp" in any case; checked in `network.rs` so that every bad one is listed.
    #[serde(default)]
    pub(super) protocol: Option<String>,
    // Accepted and ignored: see `fields::PORT_MAPPING`.
    #[serde(default, rename = "name")]
    _name: Option<IgnoredAny>,
    #[serde(default, rename = "appProtocol")]
    _app_protocol: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvironmentFile {
    pub(super) value: String,
    #[serde(rename = "type")]
    pub(super) typ: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemControl {
    pub(super) namespace: String,
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LogConfiguration {
    /// Checked in `mod.rs`, so that an unsupported driver is refused by name.
    pub(super) log_driver: String,
    #[serde(default)]
    pub(super) options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HostEntry {
    pub(super) hostname: String,
    pub(super) ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Volume {
    pub(super) name: String,
    #[serde(default)]
    pub(super) host: Option<HostVolume>,
    #[serde(default)]
    pub(super) docker_volume_configuration: Option<DockerVolumeConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LinuxParameters {
    #[serde(default)]
    pub(super) capabilities: Option<KernelCapabilities>,
    #[serde(default)]
    pub(super) shared_memory_size: Option<u32>,
    #[serde(default)]
    pub(super) tmpfs: Option<Vec<Tmpfs>>,
    #[serde(default)]
    pub(super) init_process_enabled: Option<bool>,
    #[serde(default)]
    pub(super) devices: Option<Vec<Device>>,
    #[serde(default)]
    pub(super) max_swap: Option<u32>,
    #[serde(default)]
    pub(super) swappiness: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Device {
    pub(super) host_path: String,
    #[serde(default)]
    pub(super) container_path: Option<String>,
    /// read, write, mknod; checked in `linux.rs` so that every bad one is listed.
    #[serde(default)]
    pub(super) permissions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KernelCapabilities {
    #[serde(default)]
    pub(super) add: Option<Vec<String>>,
    #[serde(default)]
    pub(super) drop: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HostVolume {
    #[serde(default)]
    pub(super) source_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DockerVolumeConfiguration {
    /// "task" or "shared"; checked in `mod.rs` so that every bad one is listed.
    #[serde(default)]
    pub(super) scope: Option<String>,
    #[serde(default)]
    pub(super) autoprovision: Option<bool>,
    #[serde(default)]
    pub(super) driver: Option<String>,
    #[serde(default)]
    pub(super) driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MountPoint {
    pub(super) source_volume: String,
    pub(super) container_path: String,
    #[serde(default)]
    pub(super) read_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VolumeFrom {
    pub(super) source_container: String,
    #[serde(default)]
    pub(super) read_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HealthCheck {
    /// ["CMD", ...] or ["CMD-SHELL", "..."]; checked in `mod.rs`.
    pub(super) command: Vec<String>,
    #[serde(default)]
    pub(super) interval: Option<u32>,
    #[serde(default)]
    pub(super) timeout: Option<u32>,
    #[serde(default)]
    pub(super) retries: Option<u32>,
    #[serde(default)]
    pub(super) start_period: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Tmpfs {
    pub(super) container_path: String,
    pub(super) size: u32,
    #[serde(default)]
    pub(super) mount_options: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RestartPolicy {
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) ignored_exit_codes: Option<Vec<u32>>,
    #[serde(default)]
    pub(super) restart_attempt_period: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ContainerDependency {
    pub(super) container_name: String,
    /// START, COMPLETE, SUCCESS or HEALTHY; checked in `mod.rs` so that every bad one is listed.
    pub(super) condition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyValuePair {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Ulimit {
    pub(super) name: String,
    pub(super) soft_limit: u64,
    pub(super) hard_limit: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PlacementConstraint {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) expression: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RuntimePlatform {
    #[serde(default)]
    pub(super) cpu_architecture: Option<String>,
    #[serde(default)]
    pub(super) operating_system_family: Option<String>,
}

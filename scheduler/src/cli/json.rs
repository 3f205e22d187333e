//! ECS-style JSON views of the proto model: ECS's camelCase field names, RFC 3339 UTC times,
//! statuses without their enum prefix, and no nulls (absent values are left out).

use std::collections::BTreeMap;

use berth_proto::v1 as proto;
use serde::Serialize;

use super::time::rfc3339_millis;

/// A task status without its prefix: "RUNNING"; "UNKNOWN(n)" for a value this build does not know.
pub(super) fn task_status_name(value: i32) -> String {
    proto::TaskStatus::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

/// A desired status without its prefix: "RUNNING" or "STOPPED".
pub(super) fn desired_status_name(value: i32) -> String {
    proto::DesiredStatus::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DESIRED_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

/// A container status without its prefix.
pub(super) fn container_status_name(value: i32) -> String {
    proto::ContainerStatus::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("CONTAINER_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

/// ECS's name of a health status: "HEALTHY", "UNHEALTHY" or "UNKNOWN".
pub(super) fn health_status_name(value: i32) -> String {
    proto::HealthStatus::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("HEALTH_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

/// ECS's name of a stop code ("EssentialContainerExited"); `None` when unspecified.
pub(super) fn stop_code_name(value: i32) -> Option<String> {
    let name = match proto::StopCode::try_from(value) {
        Ok(proto::StopCode::Unspecified) => return None,
        Ok(proto::StopCode::TaskFailedToStart) => "TaskFailedToStart",
        Ok(proto::StopCode::EssentialContainerExited) => "EssentialContainerExited",
        Ok(proto::StopCode::UserInitiated) => "UserInitiated",
        Ok(proto::StopCode::ServiceSchedulerInitiated) => "ServiceSchedulerInitiated",
        Err(_) => return Some(format!("Unknown({value})")),
    };
    Some(name.to_owned())
}

fn time(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    ts.map(rfc3339_millis)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn non_zero<T: Copy + Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// `{"tasks": [...], "failures": [...]}`; `failures` only when the call has them.
#[derive(Debug, Serialize)]
pub(super) struct Tasks {
    pub(super) tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failures: Option<Vec<Failure>>,
}

impl Tasks {
    /// The JSON of some tasks, with the failures of a describe call (none for a list).
    pub(super) fn of(tasks: &[proto::Task], failures: Option<&[proto::Failure]>) -> Self {
        Self {
            tasks: tasks.iter().map(Task::from).collect(),
            failures: failures.and_then(self::failures),
        }
    }
}

/// `{"task": {...}}`
#[derive(Debug, Serialize)]
pub(super) struct OneTask {
    pub(super) task: Task,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Task {
    task_id: String,
    task_definition: String,
    last_status: String,
    desired_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_instance_id: Option<String>,
    /// A string, as ECS has it ("256").
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<String>,
    /// MiB as a string, as ECS has it ("512").
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopping_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<String>,
    /// Berth's own: when the host released what the STOPPED task still held (containers,
    /// logs, volumes, cgroup), after the agent's task_cleanup_wait. ECS has no such field.
    #[serde(skip_serializing_if = "Option::is_none")]
    resources_released_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_reason: Option<String>,
    /// From the essential containers' health checks; UNKNOWN without any, as on ECS.
    health_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_mode: Option<String>,
    /// The task's ENI (awsvpc mode), as ECS shows an ElasticNetworkInterface attachment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    containers: Vec<Container>,
}

/// ECS Attachment: the task's network interface, its properties as name/value details.
#[derive(Debug, Serialize)]
pub(super) struct Attachment {
    #[serde(rename = "type")]
    kind: &'static str,
    /// PRECREATED while it is only asked for (the agent has not reported the interface yet),
    /// ATTACHED while the task holds it, DELETED once the task is STOPPED (its network is
    /// released before it stops), as ECS names an attachment's states.
    status: &'static str,
    details: Vec<Attribute>,
}

impl Attachment {
    fn of(a: &proto::NetworkAttachment, task_status: i32) -> Self {
        let details = [
            ("macAddress", &a.mac_address),
            ("privateIPv4Address", &a.private_ipv4_address),
            ("subnet", &a.subnet),
            ("gateway", &a.gateway),
            ("interfaceName", &a.interface_name),
        ];
        Self {
            kind: "ElasticNetworkInterface",
            status: if task_status >= proto::TaskStatus::Stopped as i32 {
                "DELETED"
            } else if a.interface_name.is_empty() {
                "PRECREATED"
            } else {
                "ATTACHED"
            },
            details: details
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| Attribute {
                    name: name.to_owned(),
                    value: value.clone(),
                })
                .collect(),
        }
    }
}

/// ECS NetworkBinding: a host port bound to a container port.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NetworkBinding {
    #[serde(rename = "bindIP")]
    bind_ip: String,
    container_port: u32,
    host_port: u32,
    protocol: String,
}

/// ECS NetworkInterface of a container: its address.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NetworkInterface {
    private_ipv4_address: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Container {
    name: String,
    last_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_digest: Option<String>,
    /// Restarts under the container's restartPolicy; shown once there was one (the task's
    /// state does not say whether the container has a policy, so 0 is left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_count: Option<u32>,
    /// UNKNOWN without a health check, as on ECS.
    health_status: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    network_bindings: Vec<NetworkBinding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    network_interfaces: Vec<NetworkInterface>,
}

impl From<&proto::Task> for Task {
    fn from(t: &proto::Task) -> Self {
        Self {
            task_id: t.task_id.clone(),
            task_definition: t.task_definition.clone(),
            last_status: task_status_name(t.last_status),
            desired_status: desired_status_name(t.desired_status),
            container_instance_id: non_empty(&t.container_instance_id),
            cpu: non_zero(t.cpu).map(|c| c.to_string()),
            memory: non_zero(t.memory_mib).map(|m| m.to_string()),
            started_by: non_empty(&t.started_by),
            created_at: time(t.created_at.as_ref()),
            pull_started_at: time(t.pull_started_at.as_ref()),
            pull_stopped_at: time(t.pull_stopped_at.as_ref()),
            started_at: time(t.started_at.as_ref()),
            stopping_at: time(t.stopping_at.as_ref()),
            stopped_at: time(t.stopped_at.as_ref()),
            resources_released_at: time(t.resources_released_at.as_ref()),
            stop_code: stop_code_name(t.stop_code),
            stopped_reason: non_empty(&t.stopped_reason),
            health_status: health_status_name(t.health_status),
            network_mode: non_empty(&t.network_mode),
            attachments: t
                .attachments
                .iter()
                .map(|a| Attachment::of(a, t.last_status))
                .collect(),
            containers: t
                .containers
                .iter()
                .map(|c| Container::of(c, task_address(t)))
                .collect(),
        }
    }
}

/// The address of the task's own interface (awsvpc mode), which all its containers share.
pub(super) fn task_address(t: &proto::Task) -> &str {
    t.attachments
        .iter()
        .map(|a| a.private_ipv4_address.as_str())
        .find(|a| !a.is_empty())
        .unwrap_or("")
}

impl Container {
    /// A container of a task whose own interface (if any) has `task_address`.
    fn of(c: &proto::ContainerState, task_address: &str) -> Self {
        let address = if c.private_ipv4_address.is_empty() {
            task_address
        } else {
            &c.private_ipv4_address
        };
        Self {
            name: c.name.clone(),
            last_status: container_status_name(c.status),
            exit_code: c.exit_code,
            reason: non_empty(&c.reason),
            runtime_id: non_empty(&c.runtime_id),
            image: non_empty(&c.image),
            image_digest: non_empty(&c.image_digest),
            restart_count: non_zero(c.restart_count),
            health_status: health_status_name(c.health_status),
            network_bindings: c
                .network_bindings
                .iter()
                .map(|b| NetworkBinding {
                    bind_ip: b.bind_ip.clone(),
                    container_port: b.container_port,
                    host_port: b.host_port,
                    protocol: b.protocol.clone(),
                })
                .collect(),
            network_interfaces: non_empty(address)
                .map(|a| NetworkInterface {
                    private_ipv4_address: a,
                })
                .into_iter()
                .collect(),
        }
    }
}

/// `{"arn": ..., "reason": ...}`
#[derive(Debug, Serialize)]
pub(super) struct Failure {
    arn: String,
    reason: String,
}

impl From<&proto::Failure> for Failure {
    fn from(f: &proto::Failure) -> Self {
        Self {
            arn: f.arn.clone(),
            reason: f.reason.clone(),
        }
    }
}

pub(super) fn failures(failures: &[proto::Failure]) -> Option<Vec<Failure>> {
    Some(failures.iter().map(Failure::from).collect())
}

/// `{"containerInstances": [...], "failures": [...]}`; `failures` only when the call has them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerInstances {
    pub(super) container_instances: Vec<ContainerInstance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failures: Option<Vec<Failure>>,
}

impl ContainerInstances {
    /// The JSON of some instances, with the failures of a describe call (none for a list).
    pub(super) fn of(
        instances: &[proto::ContainerInstance],
        failures: Option<&[proto::Failure]>,
    ) -> Self {
        Self {
            container_instances: instances.iter().map(ContainerInstance::from).collect(),
            failures: failures.and_then(self::failures),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerInstance {
    container_instance_id: String,
    status: String,
    agent_connected: bool,
    registered_resources: Vec<Resource>,
    remaining_resources: Vec<Resource>,
    attributes: Vec<Attribute>,
    running_tasks_count: u32,
    pending_tasks_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<VersionInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_at: Option<String>,
}

/// ECS's resource entry: INTEGER with `integerValue` or STRINGSET with `stringSetValue`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Resource {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    integer_value: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    string_set_value: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub(super) struct Attribute {
    name: String,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VersionInfo {
    agent_version: String,
    containerd_version: String,
}

/// CPU, MEMORY, PORTS and PORTS_UDP, as ECS lists an instance's resources; none when absent.
fn resources(r: Option<&proto::Resources>) -> Vec<Resource> {
    let Some(r) = r else { return Vec::new() };
    let integer = |name, value| Resource {
        name,
        kind: "INTEGER",
        integer_value: Some(value),
        string_set_value: None,
    };
    vec![
        integer("CPU", r.cpu),
        integer("MEMORY", r.memory_mib),
        Resource {
            name: "PORTS",
            kind: "STRINGSET",
            integer_value: None,
            string_set_value: Some(r.ports.iter().map(u32::to_string).collect()),
        },
        Resource {
            name: "PORTS_UDP",
            kind: "STRINGSET",
            integer_value: None,
            string_set_value: Some(r.udp_ports.iter().map(u32::to_string).collect()),
        },
    ]
}

impl From<&proto::ContainerInstance> for ContainerInstance {
    fn from(i: &proto::ContainerInstance) -> Self {
        let attributes: BTreeMap<&String, &String> = i.attributes.iter().collect();
        Self {
            container_instance_id: i.container_instance_id.clone(),
            status: i.status.clone(),
            agent_connected: i.agent_connected,
            registered_resources: resources(i.registered_resources.as_ref()),
            remaining_resources: resources(i.remaining_resources.as_ref()),
            attributes: attributes
                .into_iter()
                .map(|(name, value)| Attribute {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            running_tasks_count: i.running_tasks_count,
            pending_tasks_count: i.pending_tasks_count,
            version_info: i.version_info.as_ref().map(|v| VersionInfo {
                agent_version: v.agent_version.clone(),
                containerd_version: v.containerd_version.clone(),
            }),
            registered_at: time(i.registered_at.as_ref()),
        }
    }
}

/// `{"clusters": [...], "failures": [...]}`; `failures` only when the call has them.
#[derive(Debug, Serialize)]
pub(super) struct Clusters {
    pub(super) clusters: Vec<Cluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failures: Option<Vec<Failure>>,
}

/// `{"cluster": {...}}`
#[derive(Debug, Serialize)]
pub(super) struct OneCluster {
    pub(super) cluster: Cluster,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Cluster {
    cluster_name: String,
    status: String,
    registered_container_instances_count: u32,
    running_tasks_count: u32,
    pending_tasks_count: u32,
}

impl From<&proto::Cluster> for Cluster {
    fn from(c: &proto::Cluster) -> Self {
        Self {
            cluster_name: c.name.clone(),
            status: c.status.clone(),
            registered_container_instances_count: c.registered_container_instances_count,
            running_tasks_count: c.running_tasks_count,
            pending_tasks_count: c.pending_tasks_count,
        }
    }
}

/// `{"clusterNames": [...]}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ClusterNames {
    pub(super) cluster_names: Vec<String>,
}

/// `{"taskDefinitions": ["family:revision", ...]}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TaskDefinitionNames {
    pub(super) task_definitions: Vec<String>,
}

/// `{"taskDefinition": {...}}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OneTaskDefinition {
    pub(super) task_definition: TaskDefinition,
}

/// A registered task definition in ECS's shape (cpu and memory as strings, as ECS has them).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TaskDefinition {
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
}

/// ECS Volume.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Volume {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<HostVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    docker_volume_configuration: Option<DockerVolumeConfiguration>,
}

/// ECS HostVolumeProperties.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostVolume {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_path: Option<String>,
}

/// ECS DockerVolumeConfiguration.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DockerVolumeConfiguration {
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
pub(super) struct MountPoint {
    source_volume: String,
    container_path: String,
    read_only: bool,
}

/// ECS VolumeFrom.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VolumeFrom {
    source_container: String,
    read_only: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerDefinition {
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
}

/// ECS PortMapping, as registered: hostPort 0 is a dynamic port (bridge mode); in host and
/// awsvpc modes the registration filled in the container port.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PortMapping {
    container_port: u32,
    host_port: u32,
    protocol: String,
}

/// ECS HealthCheck, with the defaults the registration filled in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthCheck {
    command: Vec<String>,
    interval: u32,
    timeout: u32,
    retries: u32,
    start_period: u32,
}

/// ECS LogConfiguration; `max-size` is shown in bytes, as the registration resolved it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogConfiguration {
    log_driver: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<&'static str, String>,
}

/// ECS EnvironmentFile (always type `file` on Berth).
#[derive(Debug, Serialize)]
pub(super) struct EnvironmentFile {
    value: String,
    #[serde(rename = "type")]
    typ: &'static str,
}

/// ECS SystemControl.
#[derive(Debug, Serialize)]
pub(super) struct SystemControl {
    namespace: String,
    value: String,
}

/// ECS HostEntry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostEntry {
    hostname: String,
    ip_address: String,
}

/// ECS LinuxParameters (the members Berth supports).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LinuxParameters {
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
pub(super) struct Device {
    host_path: String,
    container_path: String,
    permissions: Vec<String>,
}

/// ECS KernelCapabilities.
#[derive(Debug, Serialize)]
pub(super) struct KernelCapabilities {
    add: Vec<String>,
    drop: Vec<String>,
}

/// ECS Tmpfs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Tmpfs {
    container_path: String,
    size: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mount_options: Vec<String>,
}

/// ECS ContainerRestartPolicy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RestartPolicy {
    enabled: bool,
    ignored_exit_codes: Vec<u32>,
    restart_attempt_period: u32,
}

/// ECS ContainerDependency.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerDependency {
    container_name: String,
    condition: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ulimit {
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
                let mut options = BTreeMap::new();
                if l.max_size_bytes > 0 {
                    options.insert("max-size", l.max_size_bytes.to_string());
                }
                if l.max_files > 0 {
                    options.insert("max-file", l.max_files.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use serde_json::json;

    fn at(seconds: i64, millis: i32) -> Option<Timestamp> {
        Some(Timestamp {
            seconds,
            nanos: millis * 1_000_000,
        })
    }

    #[test]
    fn status_and_stop_code_names() {
        assert_eq!(
            task_status_name(proto::TaskStatus::Running as i32),
            "RUNNING"
        );
        assert_eq!(
            task_status_name(proto::TaskStatus::Stopped as i32),
            "STOPPED"
        );
        assert_eq!(
            task_status_name(proto::TaskStatus::Provisioning as i32),
            "PROVISIONING"
        );
        assert_eq!(task_status_name(42), "UNKNOWN(42)");
        assert_eq!(
            desired_status_name(proto::DesiredStatus::Stopped as i32),
            "STOPPED"
        );
        assert_eq!(
            container_status_name(proto::ContainerStatus::Pulled as i32),
            "PULLED"
        );
        assert_eq!(stop_code_name(proto::StopCode::Unspecified as i32), None);
        assert_eq!(
            stop_code_name(proto::StopCode::EssentialContainerExited as i32).as_deref(),
            Some("EssentialContainerExited")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::UserInitiated as i32).as_deref(),
            Some("UserInitiated")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::TaskFailedToStart as i32).as_deref(),
            Some("TaskFailedToStart")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::ServiceSchedulerInitiated as i32).as_deref(),
            Some("ServiceSchedulerInitiated")
        );
        assert_eq!(stop_code_name(9).as_deref(), Some("Unknown(9)"));
        assert_eq!(
            health_status_name(proto::HealthStatus::Unknown as i32),
            "UNKNOWN"
        );
        assert_eq!(
            health_status_name(proto::HealthStatus::Healthy as i32),
            "HEALTHY"
        );
    }

    #[test]
    fn task_json() {
        let task = proto::Task {
            task_id: "t-1".into(),
            cluster: "default".into(),
            task_definition: "web:3".into(),
            container_instance_id: "i-1".into(),
            last_status: proto::TaskStatus::Stopped as i32,
            desired_status: proto::DesiredStatus::Stopped as i32,
            cpu: 256,
            memory_mib: 512,
            created_at: at(1_795_778_400, 123),
            pull_started_at: at(1_795_778_401, 0),
            pull_stopped_at: at(1_795_778_402, 0),
            started_at: at(1_795_778_403, 0),
            stopping_at: at(1_795_778_404, 0),
            stopped_at: at(1_795_778_405, 500),
            stop_code: proto::StopCode::EssentialContainerExited as i32,
            stopped_reason: "Essential container in task exited".into(),
            containers: vec![
                proto::ContainerState {
                    name: "app".into(),
                    status: proto::ContainerStatus::Stopped as i32,
                    exit_code: Some(137),
                    reason: "OOMKilled".into(),
                    runtime_id: "t-1.app".into(),
                    image: "nginx:1".into(),
                    image_digest: "sha256:abc".into(),
                    oom_killed: true,
                    restart_count: 2,
                    health_status: proto::HealthStatus::Unhealthy as i32,
                    ..Default::default()
                },
                proto::ContainerState {
                    name: "side".into(),
                    status: proto::ContainerStatus::Pending as i32,
                    ..Default::default()
                },
            ],
            started_by: "berthctl".into(),
            health_status: proto::HealthStatus::Unhealthy as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(Tasks {
            tasks: vec![Task::from(&task)],
            failures: failures(&[proto::Failure {
                arn: "t-2".into(),
                reason: "MISSING".into(),
            }]),
        })
        .unwrap();
        assert_eq!(
            json,
            json!({
                "tasks": [{
                    "taskId": "t-1",
                    "taskDefinition": "web:3",
                    "lastStatus": "STOPPED",
                    "desiredStatus": "STOPPED",
                    "containerInstanceId": "i-1",
                    "cpu": "256",
                    "memory": "512",
                    "startedBy": "berthctl",
                    "createdAt": "2026-11-27T11:20:00.123Z",
                    "pullStartedAt": "2026-11-27T11:20:01.000Z",
                    "pullStoppedAt": "2026-11-27T11:20:02.000Z",
                    "startedAt": "2026-11-27T11:20:03.000Z",
                    "stoppingAt": "2026-11-27T11:20:04.000Z",
                    "stoppedAt": "2026-11-27T11:20:05.500Z",
                    "stopCode": "EssentialContainerExited",
                    "stoppedReason": "Essential container in task exited",
                    "healthStatus": "UNHEALTHY",
                    "containers": [
                        {
                            "name": "app",
                            "lastStatus": "STOPPED",
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "runtimeId": "t-1.app",
                            "image": "nginx:1",
                            "imageDigest": "sha256:abc",
                            "restartCount": 2,
                            "healthStatus": "UNHEALTHY"
                        },
                        {"name": "side", "lastStatus": "PENDING", "healthStatus": "UNKNOWN"}
                    ]
                }],
                "failures": [{"arn": "t-2", "reason": "MISSING"}]
            })
        );
        // A fresh task: no nulls, absent times left out; no failures key for list calls.
        let fresh = proto::Task {
            task_id: "t-3".into(),
            task_definition: "web:3".into(),
            last_status: proto::TaskStatus::Provisioning as i32,
            desired_status: proto::DesiredStatus::Running as i32,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&Tasks {
                tasks: vec![Task::from(&fresh)],
                failures: None
            })
            .unwrap(),
            r#"{"tasks":[{"taskId":"t-3","taskDefinition":"web:3","lastStatus":"PROVISIONING","desiredStatus":"RUNNING","healthStatus":"UNKNOWN","containers":[]}]}"#
        );
    }

    #[test]
    fn task_network_json() {
        let bridge = proto::Task {
            task_id: "t-1".into(),
            task_definition: "web:1".into(),
            last_status: proto::TaskStatus::Running as i32,
            desired_status: proto::DesiredStatus::Running as i32,
            network_mode: "bridge".into(),
            containers: vec![proto::ContainerState {
                name: "app".into(),
                status: proto::ContainerStatus::Running as i32,
                network_bindings: vec![proto::NetworkBinding {
                    bind_ip: "0.0.0.0".into(),
                    container_port: 80,
                    host_port: 49153,
                    protocol: "tcp".into(),
                }],
                private_ipv4_address: "172.17.0.2".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(Task::from(&bridge)).unwrap(),
            json!({
                "taskId": "t-1",
                "taskDefinition": "web:1",
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
                "healthStatus": "UNKNOWN",
                "networkMode": "bridge",
                "containers": [{
                    "name": "app",
                    "lastStatus": "RUNNING",
                    "healthStatus": "UNKNOWN",
                    "networkBindings": [
                        {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"}
                    ],
                    "networkInterfaces": [{"privateIpv4Address": "172.17.0.2"}]
                }]
            })
        );
        let awsvpc = proto::Task {
            task_id: "t-2".into(),
            task_definition: "vpc:1".into(),
            last_status: proto::TaskStatus::Running as i32,
            desired_status: proto::DesiredStatus::Running as i32,
            network_mode: "awsvpc".into(),
            attachments: vec![proto::NetworkAttachment {
                mac_address: "0a:58:0a:01:00:05".into(),
                private_ipv4_address: "10.1.0.5".into(),
                subnet: "10.1.0.0/24".into(),
                gateway: "10.1.0.1".into(),
                interface_name: "eth0".into(),
            }],
            containers: vec![proto::ContainerState {
                name: "app".into(),
                status: proto::ContainerStatus::Running as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(Task::from(&awsvpc)).unwrap(),
            json!({
                "taskId": "t-2",
                "taskDefinition": "vpc:1",
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
                "healthStatus": "UNKNOWN",
                "networkMode": "awsvpc",
                "attachments": [{
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [
                        {"name": "macAddress", "value": "0a:58:0a:01:00:05"},
                        {"name": "privateIPv4Address", "value": "10.1.0.5"},
                        {"name": "subnet", "value": "10.1.0.0/24"},
                        {"name": "gateway", "value": "10.1.0.1"},
                        {"name": "interfaceName", "value": "eth0"}
                    ]
                }],
                "containers": [{
                    "name": "app",
                    "lastStatus": "RUNNING",
                    "healthStatus": "UNKNOWN",
                    "networkInterfaces": [{"privateIpv4Address": "10.1.0.5"}]
                }]
            })
        );
        let mut asked = awsvpc.clone();
        asked.attachments[0].interface_name.clear();
        assert_eq!(
            serde_json::to_value(Task::from(&asked)).unwrap()["attachments"][0]["status"],
            "PRECREATED",
            "asked for, not reported yet"
        );
        let gone = proto::Task {
            last_status: proto::TaskStatus::Stopped as i32,
            resources_released_at: Some(prost_types::Timestamp {
                seconds: 1_795_778_400,
                nanos: 0,
            }),
            ..awsvpc
        };
        let json = serde_json::to_value(Task::from(&gone)).unwrap();
        assert_eq!(json["lastStatus"], "STOPPED");
        assert_eq!(json["attachments"][0]["status"], "DELETED");
        assert_eq!(json["resourcesReleasedAt"], "2026-11-27T11:20:00.000Z");
    }

    #[test]
    fn container_instance_json() {
        let instance = proto::ContainerInstance {
            container_instance_id: "i-1".into(),
            cluster: "default".into(),
            status: "ACTIVE".into(),
            agent_connected: true,
            registered_resources: Some(proto::Resources {
                cpu: 2048,
                memory_mib: 3768,
                cpu_millicores: 2000,
                cores: 2,
                ports: vec![22],
                ..Default::default()
            }),
            remaining_resources: Some(proto::Resources {
                cpu: 1024,
                memory_mib: 3256,
                ports: vec![22, 80],
                udp_ports: vec![53],
                ..Default::default()
            }),
            attributes: [("ecs.os-type", "linux"), ("ecs.cpu-architecture", "x86_64")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            running_tasks_count: 1,
            pending_tasks_count: 2,
            version_info: Some(proto::VersionInfo {
                agent_version: "0.1.0".into(),
                containerd_version: "2.1.4".into(),
            }),
            registered_at: at(1_795_778_400, 0),
            last_heartbeat_at: at(1_795_778_460, 0),
            instance_identity: "machine-1".into(),
        };
        let json = serde_json::to_value(ContainerInstances {
            container_instances: vec![ContainerInstance::from(&instance)],
            failures: None,
        })
        .unwrap();
        assert_eq!(
            json,
            json!({"containerInstances": [{
                "containerInstanceId": "i-1",
                "status": "ACTIVE",
                "agentConnected": true,
                "registeredResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 3768},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
                    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
                ],
                "remainingResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 3256},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "80"]},
                    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": ["53"]}
                ],
                "attributes": [
                    {"name": "ecs.cpu-architecture", "value": "x86_64"},
                    {"name": "ecs.os-type", "value": "linux"}
                ],
                "runningTasksCount": 1,
                "pendingTasksCount": 2,
                "versionInfo": {"agentVersion": "0.1.0", "containerdVersion": "2.1.4"},
                "registeredAt": "2026-11-27T11:20:00.000Z"
            }]})
        );
    }

    #[test]
    fn cluster_json() {
        let cluster = proto::Cluster {
            name: "default".into(),
            status: "ACTIVE".into(),
            registered_container_instances_count: 2,
            running_tasks_count: 3,
            pending_tasks_count: 1,
            created_at: at(1_795_778_400, 0),
        };
        assert_eq!(
            serde_json::to_string(&Clusters {
                clusters: vec![Cluster::from(&cluster)],
                failures: failures(&[])
            })
            .unwrap(),
            r#"{"clusters":[{"clusterName":"default","status":"ACTIVE","registeredContainerInstancesCount":2,"runningTasksCount":3,"pendingTasksCount":1}],"failures":[]}"#
        );
    }

    #[test]
    fn task_definition_json() {
        let def = crate::taskdef::parse(
            r#"{"family":"web","cpu":"256","containerDefinitions":[{"name":"app","image":"nginx","memory":64,
                "entryPoint":[],"environment":[{"name":"B","value":"2"},{"name":"A","value":"1"}],
                "ulimits":[{"name":"nofile","softLimit":1,"hardLimit":2}],
                "portMappings":[{"containerPort":80},{"containerPort":53,"hostPort":5353,"protocol":"udp"}],
                "links":["db:database"]},
                {"name":"db","image":"postgres","memory":64}]}"#,
        )
        .unwrap();
        let def = proto::TaskDefinition {
            revision: 4,
            registered_at: at(1_795_778_400, 0),
            ..def
        };
        assert_eq!(
            serde_json::to_value(OneTaskDefinition {
                task_definition: TaskDefinition::from(&def)
            })
            .unwrap(),
            json!({"taskDefinition": {
                "family": "web",
                "revision": 4,
                "cpu": "256",
                "networkMode": "bridge",
                "registeredAt": "2026-11-27T11:20:00.000Z",
                "containerDefinitions": [{
                    "name": "app",
                    "image": "nginx",
                    "memory": 64,
                    "essential": true,
                    "entryPoint": [],
                    "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ulimits": [{"name": "nofile", "softLimit": 1, "hardLimit": 2}],
                    "portMappings": [
                        {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
                        {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}
                    ],
                    "links": ["db:database"]
                }, {
                    "name": "db",
                    "image": "postgres",
                    "memory": 64,
                    "essential": true
                }]
            }})
        );
    }

    #[test]
    fn security_options_devices_swap_and_terminal_show_in_ecs_shape() {
        let def = crate::taskdef::parse(
            r#"{"family":"web","networkMode":"none","containerDefinitions":[{"name":"app","image":"i","memory":64,
                "dockerSecurityOptions":["no-new-privileges:true","seccomp:/etc/p.json"],
                "interactive":true,"pseudoTerminal":true,
                "linuxParameters":{"devices":[{"hostPath":"/dev/fuse","permissions":["read"]}],
                                   "maxSwap":32,"swappiness":10}}]}"#,
        )
        .unwrap();
        let c = serde_json::to_value(ContainerDefinition::from(&def.containers[0])).unwrap();
        assert_eq!(
            c["dockerSecurityOptions"],
            json!(["no-new-privileges", "seccomp=/etc/p.json"])
        );
        assert_eq!(
            (&c["interactive"], &c["pseudoTerminal"]),
            (&json!(true), &json!(true))
        );
        assert_eq!(
            c["linuxParameters"],
            json!({
                "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse",
                             "permissions": ["read"]}],
                "maxSwap": 32,
                "swappiness": 10
            })
        );
        let off = crate::taskdef::parse(
            r#"{"family":"web","containerDefinitions":[{"name":"app","image":"i","memory":64,
                "dockerSecurityOptions":["no-new-privileges=false","seccomp=unconfined"]}]}"#,
        )
        .unwrap();
        let c = serde_json::to_value(ContainerDefinition::from(&off.containers[0])).unwrap();
        assert_eq!(
            c["dockerSecurityOptions"],
            json!(["no-new-privileges=false", "seccomp=unconfined"])
        );
        assert_eq!(c.get("interactive"), None);
        assert_eq!(c.get("linuxParameters"), None);
    }
}

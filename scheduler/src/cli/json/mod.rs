//! ECS-style JSON views of the proto model: ECS's camelCase field names, RFC 3339 UTC times,
//! statuses without their enum prefix, and no nulls (absent values are left out). Tasks,
//! instances and clusters are here; task definitions in `definition.rs`.

mod definition;
#[cfg(test)]
mod tests;

pub(super) use definition::{OneTaskDefinition, RegisteredTaskDefinition, TaskDefinition};

use std::collections::BTreeMap;

use berth_proto::v1 as proto;
use serde::Serialize;

use super::names::{
    container_status_name, desired_status_name, health_status_name, stop_code_name,
    task_status_name,
};
use super::time::rfc3339_millis;

pub(super) fn time(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    ts.map(rfc3339_millis)
}

pub(super) fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

pub(super) fn non_zero<T: Copy + Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// `{"tasks": [...], "failures": [...], "notes": [...]}`; `failures` only when the call has
/// them, `notes` only when run-task registered a definition given as JSON with notes.
#[derive(Debug, Serialize)]
pub(super) struct Tasks {
    pub(super) tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failures: Option<Vec<Failure>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) notes: Vec<String>,
}

impl Tasks {
    /// The JSON of some tasks, with the failures of a describe call (none for a list).
    pub(super) fn of(tasks: &[proto::Task], failures: Option<&[proto::Failure]>) -> Self {
        Self {
            tasks: tasks.iter().map(Task::from).collect(),
            failures: failures.and_then(self::failures),
            notes: Vec::new(),
        }
    }

    /// [`Tasks::of`], with the notes of the definition run-task registered.
    pub(super) fn with_notes(mut self, notes: &[String]) -> Self {
        self.notes = notes.to_vec();
        self
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
    /// ECS's task group: `service:NAME` or `family:FAMILY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
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
    /// Berth's own: while the task is PENDING, how far the pull of each of its images got
    /// (ECS has only pullStartedAt and pullStoppedAt).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pull_progress: Vec<PullProgress>,
}

/// One image's pull of a PENDING task.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PullProgress {
    image: String,
    bytes_downloaded: u64,
    bytes_total: u64,
    layers_downloaded: u32,
    layers_total: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
}

impl From<&proto::ImagePullProgress> for PullProgress {
    fn from(p: &proto::ImagePullProgress) -> Self {
        Self {
            image: p.image.clone(),
            bytes_downloaded: p.bytes_downloaded,
            bytes_total: p.bytes_total,
            layers_downloaded: p.layers_downloaded,
            layers_total: p.layers_total,
            updated_at: time(p.updated_at.as_ref()),
        }
    }
}

/// ECS Attachment: the task's network interface, its properties as name/value details.
#[derive(Debug, Serialize)]
pub(super) struct Attachment {
    #[serde(rename = "type")]
    kind: &'static str,
    /// PRECREATED while it is only asked for (the agent has not reported the interface yet),
    /// ATTACHED while the task holds it, DELETED once the task is deprovisioned (its network
    /// torn down), as ECS names an attachment's states.
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
    /// When its process exited, as containerd recorded it; Berth's own field.
    #[serde(skip_serializing_if = "Option::is_none")]
    exited_at: Option<String>,
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
            group: non_empty(&t.group),
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
            pull_progress: t.pull_progress.iter().map(PullProgress::from).collect(),
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
            exited_at: time(c.exited_at.as_ref()),
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

/// `{"containerInstance": {...}}` (DeregisterContainerInstance's answer).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OneContainerInstance {
    pub(super) container_instance: ContainerInstance,
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
    /// CPU and MEMORY its tasks use, measured (absent until a metrics batch arrives).
    #[serde(skip_serializing_if = "Option::is_none")]
    measured_resources: Option<Vec<Resource>>,
    /// The agent's health from its latest heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_health: Option<super::stats::HealthJson>,
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
            measured_resources: i.measured.map(|m| {
                let integer = |name, value| Resource {
                    name,
                    kind: "INTEGER",
                    integer_value: Some(value),
                    string_set_value: None,
                };
                vec![
                    integer("CPU", m.tasks_cpu),
                    integer("MEMORY", m.tasks_memory_mib),
                ]
            }),
            agent_health: super::stats::health_json(i.health.as_ref(), i.health_at.as_ref()),
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

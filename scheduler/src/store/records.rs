//! The on-disk records: serde mirrors of the proto types the store keeps, encoded as JSON.
//!
//! The scheduler crate does not depend on `prost` directly, so the proto types cannot be
//! encoded with `prost::Message` here; these mirrors are the stored schema instead. Every
//! struct is `#[serde(default)]`, so a field added later reads back as its default from older
//! records. Conversions are total in both directions.

use std::collections::HashMap;

use berth_proto::v1 as pb;
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TimeRec {
    seconds: i64,
    nanos: i32,
}

fn to_rec(t: &Option<Timestamp>) -> Option<TimeRec> {
    t.as_ref().map(|t| TimeRec {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn from_rec(t: Option<TimeRec>) -> Option<Timestamp> {
    t.map(|t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// A cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ClusterRec {
    pub(crate) name: String,
    pub(crate) created_at: Option<TimeRec>,
}

impl ClusterRec {
    pub(crate) fn new(name: &str, created_at: &Option<Timestamp>) -> Self {
        Self {
            name: name.to_owned(),
            created_at: to_rec(created_at),
        }
    }

    pub(crate) fn created_at(&self) -> Option<Timestamp> {
        from_rec(self.created_at)
    }
}

/// Per-instance session bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SessionRec {
    /// The sequence number the next scheduler message to this instance gets (from 1).
    pub(crate) next_seq: u64,
    /// The highest agent state-change sequence number stored.
    pub(crate) last_received_seq: u64,
}

/// A message to an agent that waits in the outbox until acknowledged. An assignment is
/// materialised when sent (definition looked up, desired status from the task as it is then).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum OutboxRec {
    Assignment {
        task_id: String,
    },
    Stop {
        task_id: String,
        stop_code: i32,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UlimitRec {
    name: String,
    soft_limit: u64,
    hard_limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerDefinitionRec {
    name: String,
    image: String,
    cpu: u32,
    memory_mib: u64,
    memory_reservation_mib: u64,
    essential: bool,
    entry_point: Vec<String>,
    command: Vec<String>,
    environment: HashMap<String, String>,
    working_directory: String,
    user: String,
    stop_timeout_seconds: u32,
    readonly_root_filesystem: bool,
    ulimits: Vec<UlimitRec>,
    hostname: String,
    docker_labels: HashMap<String, String>,
    entry_point_set: bool,
    command_set: bool,
}

/// A task definition revision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TaskDefinitionRec {
    family: String,
    revision: u32,
    cpu: u32,
    memory_mib: u64,
    network_mode: String,
    containers: Vec<ContainerDefinitionRec>,
    registered_at: Option<TimeRec>,
    source_json: String,
}

impl From<&pb::TaskDefinition> for TaskDefinitionRec {
    fn from(d: &pb::TaskDefinition) -> Self {
        Self {
            family: d.family.clone(),
            revision: d.revision,
            cpu: d.cpu,
            memory_mib: d.memory_mib,
            network_mode: d.network_mode.clone(),
            containers: d
                .containers
                .iter()
                .map(|c| ContainerDefinitionRec {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    cpu: c.cpu,
                    memory_mib: c.memory_mib,
                    memory_reservation_mib: c.memory_reservation_mib,
                    essential: c.essential,
                    entry_point: c.entry_point.clone(),
                    command: c.command.clone(),
                    environment: c.environment.clone(),
                    working_directory: c.working_directory.clone(),
                    user: c.user.clone(),
                    stop_timeout_seconds: c.stop_timeout_seconds,
                    readonly_root_filesystem: c.readonly_root_filesystem,
                    ulimits: c
                        .ulimits
                        .iter()
                        .map(|u| UlimitRec {
                            name: u.name.clone(),
                            soft_limit: u.soft_limit,
                            hard_limit: u.hard_limit,
                        })
                        .collect(),
                    hostname: c.hostname.clone(),
                    docker_labels: c.docker_labels.clone(),
                    entry_point_set: c.entry_point_set,
                    command_set: c.command_set,
                })
                .collect(),
            registered_at: to_rec(&d.registered_at),
            source_json: d.source_json.clone(),
        }
    }
}

impl From<TaskDefinitionRec> for pb::TaskDefinition {
    fn from(d: TaskDefinitionRec) -> Self {
        Self {
            family: d.family,
            revision: d.revision,
            cpu: d.cpu,
            memory_mib: d.memory_mib,
            network_mode: d.network_mode,
            containers: d
                .containers
                .into_iter()
                .map(|c| pb::ContainerDefinition {
                    name: c.name,
                    image: c.image,
                    cpu: c.cpu,
                    memory_mib: c.memory_mib,
                    memory_reservation_mib: c.memory_reservation_mib,
                    essential: c.essential,
                    entry_point: c.entry_point,
                    command: c.command,
                    environment: c.environment,
                    working_directory: c.working_directory,
                    user: c.user,
                    stop_timeout_seconds: c.stop_timeout_seconds,
                    readonly_root_filesystem: c.readonly_root_filesystem,
                    ulimits: c
                        .ulimits
                        .into_iter()
                        .map(|u| pb::Ulimit {
                            name: u.name,
                            soft_limit: u.soft_limit,
                            hard_limit: u.hard_limit,
                        })
                        .collect(),
                    hostname: c.hostname,
                    docker_labels: c.docker_labels,
                    entry_point_set: c.entry_point_set,
                    command_set: c.command_set,
                })
                .collect(),
            registered_at: from_rec(d.registered_at),
            source_json: d.source_json,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerStateRec {
    name: String,
    status: i32,
    exit_code: Option<i32>,
    reason: String,
    runtime_id: String,
    image: String,
    image_digest: String,
    oom_killed: bool,
}

pub(crate) fn container_states_to_rec(cs: &[pb::ContainerState]) -> Vec<ContainerStateRec> {
    cs.iter()
        .map(|c| ContainerStateRec {
            name: c.name.clone(),
            status: c.status,
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            runtime_id: c.runtime_id.clone(),
            image: c.image.clone(),
            image_digest: c.image_digest.clone(),
            oom_killed: c.oom_killed,
        })
        .collect()
}

fn container_states_from_rec(cs: Vec<ContainerStateRec>) -> Vec<pb::ContainerState> {
    cs.into_iter()
        .map(|c| pb::ContainerState {
            name: c.name,
            status: c.status,
            exit_code: c.exit_code,
            reason: c.reason,
            runtime_id: c.runtime_id,
            image: c.image,
            image_digest: c.image_digest,
            oom_killed: c.oom_killed,
        })
        .collect()
}

/// A task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TaskRec {
    task_id: String,
    cluster: String,
    task_definition: String,
    container_instance_id: String,
    last_status: i32,
    desired_status: i32,
    cpu: u32,
    memory_mib: u64,
    created_at: Option<TimeRec>,
    pull_started_at: Option<TimeRec>,
    pull_stopped_at: Option<TimeRec>,
    started_at: Option<TimeRec>,
    stopping_at: Option<TimeRec>,
    stopped_at: Option<TimeRec>,
    stop_code: i32,
    stopped_reason: String,
    containers: Vec<ContainerStateRec>,
    started_by: String,
}

impl From<&pb::Task> for TaskRec {
    fn from(t: &pb::Task) -> Self {
        Self {
            task_id: t.task_id.clone(),
            cluster: t.cluster.clone(),
            task_definition: t.task_definition.clone(),
            container_instance_id: t.container_instance_id.clone(),
            last_status: t.last_status,
            desired_status: t.desired_status,
            cpu: t.cpu,
            memory_mib: t.memory_mib,
            created_at: to_rec(&t.created_at),
            pull_started_at: to_rec(&t.pull_started_at),
            pull_stopped_at: to_rec(&t.pull_stopped_at),
            started_at: to_rec(&t.started_at),
            stopping_at: to_rec(&t.stopping_at),
            stopped_at: to_rec(&t.stopped_at),
            stop_code: t.stop_code,
            stopped_reason: t.stopped_reason.clone(),
            containers: container_states_to_rec(&t.containers),
            started_by: t.started_by.clone(),
        }
    }
}

impl From<TaskRec> for pb::Task {
    fn from(t: TaskRec) -> Self {
        Self {
            task_id: t.task_id,
            cluster: t.cluster,
            task_definition: t.task_definition,
            container_instance_id: t.container_instance_id,
            last_status: t.last_status,
            desired_status: t.desired_status,
            cpu: t.cpu,
            memory_mib: t.memory_mib,
            created_at: from_rec(t.created_at),
            pull_started_at: from_rec(t.pull_started_at),
            pull_stopped_at: from_rec(t.pull_stopped_at),
            started_at: from_rec(t.started_at),
            stopping_at: from_rec(t.stopping_at),
            stopped_at: from_rec(t.stopped_at),
            stop_code: t.stop_code,
            stopped_reason: t.stopped_reason,
            containers: container_states_from_rec(t.containers),
            started_by: t.started_by,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ResourcesRec {
    cpu: u64,
    memory_mib: u64,
    cpu_millicores: u64,
    cores: u32,
    ports: Vec<u32>,
}

impl From<&pb::Resources> for ResourcesRec {
    fn from(r: &pb::Resources) -> Self {
        Self {
            cpu: r.cpu,
            memory_mib: r.memory_mib,
            cpu_millicores: r.cpu_millicores,
            cores: r.cores,
            ports: r.ports.clone(),
        }
    }
}

impl From<ResourcesRec> for pb::Resources {
    fn from(r: ResourcesRec) -> Self {
        Self {
            cpu: r.cpu,
            memory_mib: r.memory_mib,
            cpu_millicores: r.cpu_millicores,
            cores: r.cores,
            ports: r.ports,
        }
    }
}

/// A container instance as registered; remaining resources, counts and connection state are
/// derived when it is read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct InstanceRec {
    pub(crate) container_instance_id: String,
    pub(crate) cluster: String,
    pub(crate) status: String,
    pub(crate) registered_resources: ResourcesRec,
    pub(crate) attributes: HashMap<String, String>,
    pub(crate) agent_version: String,
    pub(crate) containerd_version: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) registered_at: Option<TimeRec>,
    pub(crate) last_heartbeat_at: Option<TimeRec>,
    pub(crate) instance_identity: String,
}

impl InstanceRec {
    pub(crate) fn set_registered_at(&mut self, t: &Option<Timestamp>) {
        self.registered_at = to_rec(t);
    }

    pub(crate) fn set_last_heartbeat_at(&mut self, t: &Option<Timestamp>) {
        self.last_heartbeat_at = to_rec(t);
    }

    pub(crate) fn registered_cpu(&self) -> u64 {
        self.registered_resources.cpu
    }

    pub(crate) fn registered_memory_mib(&self) -> u64 {
        self.registered_resources.memory_mib
    }

    /// The proto view, without the derived fields (remaining resources, counts, connection).
    pub(crate) fn to_proto(&self) -> pb::ContainerInstance {
        pb::ContainerInstance {
            container_instance_id: self.container_instance_id.clone(),
            cluster: self.cluster.clone(),
            status: self.status.clone(),
            agent_connected: false,
            registered_resources: Some(self.registered_resources.clone().into()),
            remaining_resources: None,
            attributes: self.attributes.clone(),
            running_tasks_count: 0,
            pending_tasks_count: 0,
            version_info: Some(pb::VersionInfo {
                agent_version: self.agent_version.clone(),
                containerd_version: self.containerd_version.clone(),
            }),
            registered_at: from_rec(self.registered_at),
            last_heartbeat_at: from_rec(self.last_heartbeat_at),
            instance_identity: self.instance_identity.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_round_trips() {
        let def = pb::TaskDefinition {
            family: "web".into(),
            revision: 3,
            cpu: 256,
            memory_mib: 512,
            network_mode: "awsvpc".into(),
            containers: vec![pb::ContainerDefinition {
                name: "app".into(),
                image: "nginx:1".into(),
                environment: HashMap::from([("A".into(), "1".into())]),
                ulimits: vec![pb::Ulimit {
                    name: "nofile".into(),
                    soft_limit: 1,
                    hard_limit: 2,
                }],
                entry_point_set: true,
                ..Default::default()
            }],
            registered_at: Some(Timestamp {
                seconds: 5,
                nanos: 6,
            }),
            source_json: "{}".into(),
        };
        let json = serde_json::to_vec(&TaskDefinitionRec::from(&def)).unwrap();
        let back: TaskDefinitionRec = serde_json::from_slice(&json).unwrap();
        assert_eq!(pb::TaskDefinition::from(back), def);
    }

    #[test]
    fn task_round_trips() {
        let task = pb::Task {
            task_id: "t".into(),
            last_status: 5,
            containers: vec![pb::ContainerState {
                name: "app".into(),
                exit_code: Some(137),
                oom_killed: true,
                ..Default::default()
            }],
            stopped_at: Some(Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = serde_json::to_vec(&TaskRec::from(&task)).unwrap();
        let back: TaskRec = serde_json::from_slice(&json).unwrap();
        assert_eq!(pb::Task::from(back), task);
    }
}

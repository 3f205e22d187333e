//! Values derived from the tasks when they are read, never stored (so they cannot drift):
//! whether a task still holds resources, the host ports it takes, an instance's remaining
//! resources and task counts, a cluster's counts, a task's size.

use std::collections::{BTreeSet, HashMap};

use berth_proto::v1::{self as pb, TaskStatus};
use redb::ReadableTable;

use super::StoreError;
use super::definitions::load_definition;
use super::ports::{HostPort, Protocol};
use super::records::InstanceRecord;

/// Not yet STOPPED: holds its resources (a STOPPED task's network is released on its host).
pub(super) fn is_active(t: &pb::Task) -> bool {
    t.last_status < TaskStatus::Stopped as i32
}

fn is_running(t: &pb::Task) -> bool {
    t.last_status == TaskStatus::Running as i32
}

fn is_pending(t: &pb::Task) -> bool {
    is_active(t) && !is_running(t)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The definition's network mode; empty (never stored by the registration) means bridge.
pub(super) fn network_mode(def: &pb::TaskDefinition) -> &str {
    if def.network_mode.is_empty() {
        "bridge"
    } else {
        &def.network_mode
    }
}

/// Whether a task of this network mode binds host ports: bridge (also an empty mode) and host
/// do; an awsvpc task has its own address, and a task in none mode has no network.
fn takes_host_ports(network_mode: &str) -> bool {
    matches!(network_mode, "" | "bridge" | "host")
}

/// The fixed host ports a task of `def` takes on its instance, each once, in definition order.
pub(super) fn fixed_host_ports(def: &pb::TaskDefinition) -> Vec<HostPort> {
    if !takes_host_ports(network_mode(def)) {
        return Vec::new();
    }
    let mut ports = Vec::new();
    for m in def.containers.iter().flat_map(|c| &c.port_mappings) {
        let port = HostPort {
            protocol: Protocol::named(&m.protocol),
            port: m.host_port,
        };
        if m.host_port != 0 && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// The host ports an active task holds on its instance: in bridge and host modes the fixed
/// host ports of its definition and every host port the agent reported bound (the dynamic ones
/// among them); none in awsvpc and none modes.
fn task_host_ports(task: &pb::Task, def: Option<&pb::TaskDefinition>) -> Vec<HostPort> {
    let mode = def.map_or(task.network_mode.as_str(), network_mode);
    if !takes_host_ports(mode) {
        return Vec::new();
    }
    let mut ports = def.map(fixed_host_ports).unwrap_or_default();
    ports.extend(
        task.containers
            .iter()
            .flat_map(|c| &c.network_bindings)
            .filter(|b| b.host_port != 0)
            .map(|b| HostPort {
                protocol: Protocol::named(&b.protocol),
                port: b.host_port,
            }),
    );
    ports
}

/// The definitions of the tasks still holding resources, by reference, for their host ports.
/// A definition that cannot be found is left out (its task then holds only the ports the agent
/// reported).
pub(super) fn active_definitions(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    tasks: &[pb::Task],
) -> Result<HashMap<String, pb::TaskDefinition>, StoreError> {
    let mut defs = HashMap::new();
    for t in tasks.iter().filter(|t| is_active(t)) {
        if defs.contains_key(&t.task_definition) {
            continue;
        }
        match load_definition(table, &t.task_definition) {
            Ok(def) => {
                defs.insert(t.task_definition.clone(), def);
            }
            Err(
                error @ (StoreError::TaskDefinitionNotFound { .. }
                | StoreError::InvalidTaskDefinitionRef { .. }),
            ) => {
                tracing::warn!(task.id = %t.task_id, %error, "the definition of an active task is missing; counting only its reported ports");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(defs)
}

/// An instance with its derived fields, from all tasks and the active ones' definitions.
pub(super) fn instance_view(
    rec: &InstanceRecord,
    tasks: &[pb::Task],
    defs: &HashMap<String, pb::TaskDefinition>,
) -> pb::ContainerInstance {
    let mut view = rec.instance.clone();
    let mine = || {
        tasks
            .iter()
            .filter(|t| t.container_instance_id == rec.instance.container_instance_id)
    };
    let (used_cpu, used_mem) = mine()
        .filter(|t| is_active(t))
        .fold((0u64, 0u64), |(c, m), t| {
            (
                c.saturating_add(u64::from(t.cpu)),
                m.saturating_add(t.memory_mib),
            )
        });
    if let Some(reg) = &view.registered_resources {
        let mut tcp: BTreeSet<u32> = reg.ports.iter().copied().collect();
        let mut udp: BTreeSet<u32> = reg.udp_ports.iter().copied().collect();
        for port in mine()
            .filter(|t| is_active(t))
            .flat_map(|t| task_host_ports(t, defs.get(&t.task_definition)))
        {
            match port.protocol {
                Protocol::Tcp => tcp.insert(port.port),
                Protocol::Udp => udp.insert(port.port),
            };
        }
        view.remaining_resources = Some(pb::Resources {
            cpu: reg.cpu.saturating_sub(used_cpu),
            memory_mib: reg.memory_mib.saturating_sub(used_mem),
            cpu_millicores: reg.cpu_millicores.saturating_sub(used_cpu * 1000 / 1024),
            cores: reg.cores,
            ports: tcp.into_iter().collect(),
            udp_ports: udp.into_iter().collect(),
        });
    }
    view.running_tasks_count = count(mine().filter(|t| is_running(t)).count());
    view.pending_tasks_count = count(mine().filter(|t| is_pending(t)).count());
    view
}

pub(super) fn cluster_view(
    rec: &pb::Cluster,
    instances: &[InstanceRecord],
    tasks: &[pb::Task],
    status: &str,
) -> pb::Cluster {
    let in_cluster = || tasks.iter().filter(|t| t.cluster == rec.name);
    pb::Cluster {
        name: rec.name.clone(),
        status: status.to_owned(),
        registered_container_instances_count: count(
            instances
                .iter()
                .filter(|i| i.instance.cluster == rec.name && !super::deregister::is_inactive(i))
                .count(),
        ),
        running_tasks_count: count(in_cluster().filter(|t| is_running(t)).count()),
        pending_tasks_count: count(in_cluster().filter(|t| is_pending(t)).count()),
        created_at: rec.created_at,
    }
}

/// The task's CPU units and memory: the definition's, or the sums of its containers'.
pub(crate) fn task_size(def: &pb::TaskDefinition) -> (u32, u64) {
    let cpu = if def.cpu > 0 {
        def.cpu
    } else {
        def.containers
            .iter()
            .fold(0u32, |a, c| a.saturating_add(c.cpu))
    };
    let memory = if def.memory_mib > 0 {
        def.memory_mib
    } else {
        def.containers.iter().fold(0u64, |a, c| {
            let m = if c.memory_mib > 0 {
                c.memory_mib
            } else {
                c.memory_reservation_mib
            };
            a.saturating_add(m)
        })
    };
    (cpu, memory)
}

//! Task placement, pure: which instances are candidates (the cluster's connected ACTIVE ones
//! whose agent can write its data dir, or the one a RunTask pins) with their free capacity, as
//! the placement engine (`crate::placement`) sees them; and why none fits, in the terms of
//! free capacity.
//!
//! It lives beside the store because placement and reservation happen in one write
//! transaction: the capacity it sees cannot change before the tasks are written.

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_proto::v1 as pb;

use super::ports::{HostPort, Protocol};
use super::records::InstanceRecord;
use super::views::{fixed_host_ports, instance_view, is_active, task_size};
use crate::placement::{Candidate, Free};

/// An instance that takes tasks (ECS's container instance status).
pub(crate) const ACTIVE: &str = "ACTIVE";
/// An instance that takes no new task; its tasks keep running until stopped.
pub(crate) const DRAINING: &str = "DRAINING";

/// Free capacity of one connected ACTIVE instance, and the host ports taken on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub(crate) instance_id: String,
    pub(crate) cpu: u64,
    pub(crate) memory_mib: u64,
    pub(crate) ports: BTreeSet<HostPort>,
}

/// What one task needs on an instance: CPU, memory and its fixed host ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Demand {
    pub(crate) cpu: u64,
    pub(crate) memory_mib: u64,
    pub(crate) ports: Vec<HostPort>,
}

impl Demand {
    /// What a task of `def` needs: its size (see [`task_size`]) and its fixed host ports.
    pub(crate) fn of(def: &pb::TaskDefinition) -> Self {
        let (cpu, memory_mib) = task_size(def);
        Self {
            cpu: u64::from(cpu),
            memory_mib,
            ports: fixed_host_ports(def),
        }
    }
}

impl Capacity {
    fn ports_free(&self, demand: &Demand) -> bool {
        demand.ports.iter().all(|p| !self.ports.contains(p))
    }
}

/// What placement sees of a cluster: its instances, every task, the definitions of the tasks
/// still holding resources (by reference), and the instances with a live session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool<'a> {
    pub(crate) cluster: &'a str,
    pub(crate) instances: &'a [InstanceRecord],
    pub(crate) tasks: &'a [pb::Task],
    pub(crate) definitions: &'a HashMap<String, pb::TaskDefinition>,
    pub(crate) connected: &'a HashSet<String>,
    /// Connected instances whose agent cannot write its data dir, with why: not candidates.
    pub(crate) degraded: &'a std::collections::BTreeMap<String, String>,
}

/// Why an instance a RunTask pins cannot take tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoCandidate {
    /// The cluster has no such instance.
    Unknown,
    /// It exists but cannot take tasks, for this reason.
    Unavailable(String),
}

impl Pool<'_> {
    fn instance(&self, id: &str) -> Option<&InstanceRecord> {
        self.instances
            .iter()
            .find(|i| i.instance.cluster == self.cluster && i.instance.container_instance_id == id)
    }

    /// Whether the instance `id` can take tasks: it is in the cluster, ACTIVE and connected.
    pub(crate) fn check_pinned(&self, id: &str) -> Result<(), NoCandidate> {
        let instance = self.instance(id).ok_or(NoCandidate::Unknown)?;
        if instance.instance.status != ACTIVE {
            Err(NoCandidate::Unavailable(
                "it is DRAINING (berthctl update-container-instances-state ID --status ACTIVE takes tasks on it again)".into(),
            ))
        } else if !self.connected.contains(id) {
            Err(NoCandidate::Unavailable(
                "its agent is not connected".into(),
            ))
        } else if let Some(why) = self.degraded.get(id) {
            Err(NoCandidate::Unavailable(why.clone()))
        } else {
            Ok(())
        }
    }

    /// The cluster's connected instances that are DRAINING (named when nothing can be placed).
    pub(crate) fn draining(&self) -> Vec<String> {
        self.instances
            .iter()
            .map(|i| &i.instance)
            .filter(|i| {
                i.cluster == self.cluster
                    && i.status == DRAINING
                    && self.connected.contains(&i.container_instance_id)
            })
            .map(|i| i.container_instance_id.clone())
            .collect()
    }

    /// The cluster's connected ACTIVE instances that take no new task because their agent
    /// cannot write its data dir, with why (named when nothing can be placed).
    pub(crate) fn degraded(&self) -> Vec<(String, String)> {
        self.instances
            .iter()
            .map(|i| &i.instance)
            .filter(|i| {
                i.cluster == self.cluster
                    && i.status == ACTIVE
                    && self.connected.contains(&i.container_instance_id)
            })
            .filter_map(|i| {
                let why = self.degraded.get(&i.container_instance_id)?;
                Some((i.container_instance_id.clone(), why.clone()))
            })
            .collect()
    }

    /// The instances tasks may go to, with their free capacity and taken host ports: the
    /// cluster's connected ACTIVE instances, only `pinned` among them when given.
    pub(crate) fn candidates(&self, pinned: Option<&str>) -> Vec<Capacity> {
        self.instances
            .iter()
            .filter(|i| {
                let id = i.instance.container_instance_id.as_str();
                i.instance.cluster == self.cluster
                    && i.instance.status == ACTIVE
                    && self.connected.contains(id)
                    && !self.degraded.contains_key(id)
                    && pinned.is_none_or(|p| p == id)
            })
            .map(|i| {
                let view = instance_view(i, self.tasks, self.definitions);
                let free = view.remaining_resources.unwrap_or_default();
                let port = |protocol| move |&port| HostPort { protocol, port };
                Capacity {
                    instance_id: view.container_instance_id,
                    cpu: free.cpu,
                    memory_mib: free.memory_mib,
                    ports: free
                        .ports
                        .iter()
                        .map(port(Protocol::Tcp))
                        .chain(free.udp_ports.iter().map(port(Protocol::Udp)))
                        .collect(),
                }
            })
            .collect()
    }
}

/// The attribute in which an agent reports how many addresses its task network has: each task
/// in bridge or awsvpc mode takes one. Absent: no limit is known.
pub(crate) const ADDRESSES_ATTRIBUTE: &str = "berth.network.addresses";

/// The task group of the tasks a service starts (ECS's `service:NAME`, by the service's ID,
/// which its tasks carry in `startedBy`).
pub(crate) fn service_group(service_id: &str) -> String {
    format!("service:{service_id}")
}

/// The task group of `task` (ECS's `group`): the one it carries (a service's tasks carry
/// their service's), its service's for a task an early service started (`startedBy`
/// `ecs-svc/ID`), else `family:NAME` of its definition.
pub(crate) fn task_group(task: &pb::Task) -> String {
    if !task.group.is_empty() {
        return task.group.clone();
    }
    if let Some(id) = task.started_by.strip_prefix("ecs-svc/") {
        return service_group(id);
    }
    let family = task
        .task_definition
        .rsplit_once(':')
        .map_or(task.task_definition.as_str(), |(family, _)| family);
    format!("family:{family}")
}

impl Pool<'_> {
    /// The candidates as the placement engine sees them: their free capacity (from
    /// [`Pool::candidates`]) with the instance's identity, attributes, versions, awsvpc
    /// addresses left and the groups of the tasks that hold resources on it.
    pub(crate) fn engine_candidates(&self, capacities: Vec<Capacity>) -> Vec<Candidate> {
        capacities
            .into_iter()
            .filter_map(|c| {
                let record = self.instance(&c.instance_id)?;
                let instance = &record.instance;
                let on_it: Vec<&pb::Task> = self
                    .tasks
                    .iter()
                    .filter(|t| t.container_instance_id == c.instance_id && is_active(t))
                    .collect();
                let addressed = on_it
                    .iter()
                    .filter(|t| t.network_mode == "bridge" || t.network_mode == "awsvpc")
                    .count();
                let awsvpc_addresses = instance
                    .attributes
                    .get(ADDRESSES_ATTRIBUTE)
                    .and_then(|n| n.parse::<u32>().ok())
                    .map(|n| n.saturating_sub(u32::try_from(addressed).unwrap_or(u32::MAX)));
                Some(Candidate {
                    ec2_instance_id: instance.instance_identity.clone(),
                    attributes: instance
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    agent_version: instance
                        .version_info
                        .as_ref()
                        .map(|v| v.agent_version.clone())
                        .unwrap_or_default(),
                    registered_at: instance
                        .registered_at
                        .as_ref()
                        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
                        .map(|t| format!("{t:.0}"))
                        .unwrap_or_default(),
                    running_tasks_count: u32::try_from(
                        on_it
                            .iter()
                            .filter(|t| t.last_status == pb::TaskStatus::Running as i32)
                            .count(),
                    )
                    .unwrap_or(u32::MAX),
                    groups: on_it.iter().map(|t| task_group(t)).collect(),
                    free: Free {
                        cpu: c.cpu,
                        memory_mib: c.memory_mib,
                        taken_ports: c.ports,
                        awsvpc_addresses,
                    },
                    instance_id: c.instance_id,
                })
            })
            .collect()
    }
}

/// The free capacity the engine's candidates have left (after the tasks it placed took theirs).
pub(crate) fn capacities(candidates: &[Candidate]) -> Vec<Capacity> {
    candidates
        .iter()
        .map(|c| Capacity {
            instance_id: c.instance_id.clone(),
            cpu: c.free.cpu,
            memory_mib: c.free.memory_mib,
            ports: c.free.taken_ports.clone(),
        })
        .collect()
}

/// Why the tasks of one request were not all placed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unplaced {
    /// How many fitted before one did not (none is started then).
    pub(crate) placed: u32,
    /// Why the next one did not fit.
    pub(crate) shortage: Shortage,
}

/// Why no candidate fits a demand, in the terms of free capacity.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shortage {
    /// Every candidate has one of the demand's host ports taken; these are the ones taken on
    /// some candidate, in the demand's order.
    Ports(Vec<HostPort>),
    /// The candidates with the ports free lack CPU or memory; the one of them with the most
    /// free memory (ties: most CPU).
    Room(Option<Capacity>),
}

/// Why no candidate fits `demand`: ports when they are taken everywhere, else room.
pub(crate) fn shortage(candidates: &[Capacity], demand: &Demand) -> Shortage {
    let free: Vec<&Capacity> = candidates.iter().filter(|c| c.ports_free(demand)).collect();
    if free.is_empty() && !candidates.is_empty() {
        let taken = demand
            .ports
            .iter()
            .filter(|p| candidates.iter().any(|c| c.ports.contains(p)))
            .copied()
            .collect();
        return Shortage::Ports(taken);
    }
    Shortage::Room(
        free.into_iter()
            .max_by(|a, b| (a.memory_mib, a.cpu).cmp(&(b.memory_mib, b.cpu)))
            .cloned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(id: &str, cpu: u64, memory_mib: u64) -> Capacity {
        Capacity {
            instance_id: id.into(),
            cpu,
            memory_mib,
            ports: BTreeSet::new(),
        }
    }

    fn demand(cpu: u64, memory_mib: u64) -> Demand {
        Demand {
            cpu,
            memory_mib,
            ports: Vec::new(),
        }
    }

    fn tcp(port: u32) -> HostPort {
        HostPort {
            protocol: Protocol::Tcp,
            port,
        }
    }

    fn udp(port: u32) -> HostPort {
        HostPort {
            protocol: Protocol::Udp,
            port,
        }
    }

    #[test]
    fn shortage_names_the_roomiest_instance_or_the_ports() {
        let c = [
            cap("a", 4096, 8192),
            cap("b", 4096, 1024),
            cap("c", 128, 2048),
        ];
        assert_eq!(
            shortage(&c, &demand(256, 9000)),
            Shortage::Room(Some(c[0].clone()))
        );
        assert_eq!(shortage(&[], &demand(0, 0)), Shortage::Room(None));
        let mut a = cap("a", 4096, 1024);
        a.ports.insert(tcp(80));
        let mut b = cap("b", 4096, 8192);
        b.ports.insert(udp(80));
        let c = [a, b];
        let dns = Demand {
            ports: vec![tcp(80), udp(80)],
            ..demand(256, 512)
        };
        assert_eq!(shortage(&c, &dns), Shortage::Ports(vec![tcp(80), udp(80)]));
        // Room is judged among the instances with the ports free.
        let big = Demand {
            ports: vec![tcp(80)],
            ..demand(256, 9000)
        };
        assert_eq!(shortage(&c, &big), Shortage::Room(Some(c[1].clone())));
        assert_eq!(tcp(8080).to_string(), "8080/tcp");
        assert_eq!(udp(53).to_string(), "53/udp");
        assert_eq!(Protocol::named("UDP"), Protocol::Udp);
        assert_eq!(Protocol::named(""), Protocol::Tcp);
    }

    fn instance(
        id: &str,
        cluster: &str,
        status: &str,
        cpu: u64,
        memory_mib: u64,
    ) -> InstanceRecord {
        InstanceRecord {
            instance: pb::ContainerInstance {
                container_instance_id: id.into(),
                cluster: cluster.into(),
                status: status.into(),
                registered_resources: Some(pb::Resources {
                    cpu,
                    memory_mib,
                    ports: vec![22],
                    ..Default::default()
                }),
                ..Default::default()
            },
            capabilities: Vec::new(),
        }
    }

    fn task(id: &str, on: &str, cpu: u32, memory_mib: u64, status: pb::TaskStatus) -> pb::Task {
        pb::Task {
            task_id: id.into(),
            cluster: "c".into(),
            task_definition: "web:1".into(),
            container_instance_id: on.into(),
            last_status: status as i32,
            cpu,
            memory_mib,
            ..Default::default()
        }
    }

    #[test]
    fn candidates_are_the_connected_active_instances_of_the_cluster() {
        let instances = [
            instance("a", "c", "ACTIVE", 1024, 2048),
            instance("b", "c", "DRAINING", 4096, 8192),
            instance("d", "c", "ACTIVE", 4096, 8192),
            instance("e", "other", "ACTIVE", 4096, 8192),
            instance("f", "c", "ACTIVE", 4096, 8192),
        ];
        let tasks = [
            task("t1", "a", 256, 512, pb::TaskStatus::Running),
            // A stopped task holds nothing.
            task("t2", "a", 512, 1024, pb::TaskStatus::Stopped),
        ];
        let web = pb::TaskDefinition {
            family: "web".into(),
            revision: 1,
            network_mode: "bridge".into(),
            containers: vec![pb::ContainerDefinition {
                name: "app".into(),
                port_mappings: vec![pb::PortMapping {
                    container_port: 80,
                    host_port: 8080,
                    protocol: "tcp".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let definitions = HashMap::from([("web:1".to_owned(), web)]);
        let connected: HashSet<String> = ["a", "b", "e", "f"].map(String::from).into();
        let degraded = std::collections::BTreeMap::from([(
            "f".to_owned(),
            "its agent cannot write /var/lib/berth/agent.redb (errno 28): no space".to_owned(),
        )]);
        let pool = Pool {
            cluster: "c",
            instances: &instances,
            tasks: &tasks,
            definitions: &definitions,
            connected: &connected,
            degraded: &degraded,
        };
        let a = Capacity {
            instance_id: "a".into(),
            cpu: 768,
            memory_mib: 1536,
            ports: BTreeSet::from([tcp(22), tcp(8080)]),
        };
        assert_eq!(pool.candidates(None), vec![a.clone()]);
        assert_eq!(pool.candidates(Some("a")), vec![a]);
        assert_eq!(pool.candidates(Some("d")), vec![]);
        assert_eq!(pool.check_pinned("a"), Ok(()));
        assert!(matches!(
            pool.check_pinned("b"),
            Err(NoCandidate::Unavailable(why)) if why.contains("DRAINING")
        ));
        assert_eq!(
            pool.check_pinned("d"),
            Err(NoCandidate::Unavailable(
                "its agent is not connected".into()
            ))
        );
        // A degraded agent takes no task, pinned or not, and its reason is given.
        assert!(matches!(
            pool.check_pinned("f"),
            Err(NoCandidate::Unavailable(why)) if why.contains("errno 28")
        ));
        assert_eq!(pool.candidates(Some("f")), vec![]);
        assert_eq!(pool.degraded().len(), 1);
        assert_eq!(pool.check_pinned("e"), Err(NoCandidate::Unknown));
        assert_eq!(pool.check_pinned("x"), Err(NoCandidate::Unknown));
    }
}

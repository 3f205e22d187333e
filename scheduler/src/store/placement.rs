//! Task placement, pure: which instances are candidates (the cluster's connected ACTIVE ones
//! whose agent can write its data dir, or the one a RunTask pins) with their free capacity, and BINPACK on memory among those where
//! the task's fixed host ports are free.
//!
//! It lives beside the store because placement and reservation happen in one write
//! transaction: the capacity it sees cannot change before the tasks are written.

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_proto::v1 as pb;

use super::ports::{HostPort, Protocol};
use super::records::InstanceRecord;
use super::views::{fixed_host_ports, instance_view, task_size};

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
    fn has_room(&self, demand: &Demand) -> bool {
        self.cpu >= demand.cpu && self.memory_mib >= demand.memory_mib
    }

    fn ports_free(&self, demand: &Demand) -> bool {
        demand.ports.iter().all(|p| !self.ports.contains(p))
    }

    /// Reserves `demand` here, so that the next placement of the same request sees it.
    pub(crate) fn take(&mut self, demand: &Demand) {
        self.cpu = self.cpu.saturating_sub(demand.cpu);
        self.memory_mib = self.memory_mib.saturating_sub(demand.memory_mib);
        self.ports.extend(demand.ports.iter().copied());
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

/// Why the tasks of one request were not all placed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unplaced {
    /// How many fitted before one did not (none is started then).
    pub(crate) placed: u32,
    /// Why the next one did not fit.
    pub(crate) shortage: Shortage,
}

/// The instance of each of `count` tasks of `demand`, placed one after the other by
/// [`binpack`], each seeing the capacity the ones before took; all or none.
pub(crate) fn place(
    candidates: &mut [Capacity],
    demand: &Demand,
    count: u32,
) -> Result<Vec<String>, Unplaced> {
    let mut placements = Vec::new();
    for placed in 0..count {
        let Some(chosen) = binpack(candidates, demand).and_then(|i| candidates.get_mut(i)) else {
            return Err(Unplaced {
                placed,
                shortage: shortage(candidates, demand),
            });
        };
        chosen.take(demand);
        placements.push(chosen.instance_id.clone());
    }
    Ok(placements)
}

/// The index of the instance with the least free memory that still fits the demand's CPU and
/// memory and has its host ports free (ties: least free CPU, then instance ID), or `None` when
/// none does.
pub(crate) fn binpack(candidates: &[Capacity], demand: &Demand) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.has_room(demand) && c.ports_free(demand))
        .min_by(|(_, a), (_, b)| {
            (a.memory_mib, a.cpu, &a.instance_id).cmp(&(b.memory_mib, b.cpu, &b.instance_id))
        })
        .map(|(i, _)| i)
}

/// Why no candidate fits a demand (when [`binpack`] found none).
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
    fn picks_the_fullest_instance_that_fits() {
        let c = [
            cap("a", 4096, 8192),
            cap("b", 4096, 1024),
            cap("c", 4096, 2048),
        ];
        assert_eq!(binpack(&c, &demand(256, 512)), Some(1));
        assert_eq!(binpack(&c, &demand(256, 1500)), Some(2));
        assert_eq!(binpack(&c, &demand(256, 4096)), Some(0));
        assert_eq!(binpack(&c, &demand(256, 9000)), None);
        assert_eq!(
            shortage(&c, &demand(256, 9000)),
            Shortage::Room(Some(c[0].clone()))
        );
    }

    #[test]
    fn cpu_must_fit_too() {
        let c = [cap("a", 128, 1024), cap("b", 2048, 4096)];
        assert_eq!(binpack(&c, &demand(256, 512)), Some(1));
        assert_eq!(
            shortage(&c, &demand(4096, 512)),
            Shortage::Room(Some(c[1].clone()))
        );
        assert_eq!(binpack(&[], &demand(0, 0)), None);
        assert_eq!(shortage(&[], &demand(0, 0)), Shortage::Room(None));
    }

    #[test]
    fn fixed_host_ports_must_be_free() {
        let mut a = cap("a", 4096, 1024);
        a.ports.insert(tcp(80));
        let mut b = cap("b", 4096, 8192);
        b.ports.insert(udp(80));
        let c = [a, b];
        let web = Demand {
            ports: vec![tcp(80)],
            ..demand(256, 512)
        };
        // The fuller instance has 80/tcp taken; 80/udp is another port.
        assert_eq!(binpack(&c, &web), Some(1));
        let dns = Demand {
            ports: vec![tcp(80), udp(80)],
            ..demand(256, 512)
        };
        assert_eq!(binpack(&c, &dns), None);
        assert_eq!(shortage(&c, &dns), Shortage::Ports(vec![tcp(80), udp(80)]));
        let other = Demand {
            ports: vec![tcp(8080), udp(80)],
            ..demand(256, 512)
        };
        assert_eq!(binpack(&c, &other), Some(0));
        // Room is judged among the instances with the ports free.
        let big = Demand {
            ports: vec![tcp(80)],
            ..demand(256, 9000)
        };
        assert_eq!(shortage(&c, &big), Shortage::Room(Some(c[1].clone())));
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

    #[test]
    fn place_is_all_or_none_and_counts_what_fitted() {
        let fresh = || [cap("a", 1024, 1024), cap("b", 1024, 2048)];
        let half = demand(512, 1024);
        let mut c = fresh();
        assert_eq!(
            place(&mut c, &half, 3),
            Ok(vec!["a".to_owned(), "b".to_owned(), "b".to_owned()])
        );
        let mut c = fresh();
        let Err(unplaced) = place(&mut c, &half, 4) else {
            panic!("four placed")
        };
        assert_eq!(unplaced.placed, 3);
        assert_eq!(unplaced.shortage, Shortage::Room(Some(cap("a", 512, 0))));
        let web = Demand {
            ports: vec![tcp(80)],
            ..demand(1, 1)
        };
        let mut c = fresh();
        assert_eq!(
            place(&mut c, &web, 3),
            Err(Unplaced {
                placed: 2,
                shortage: Shortage::Ports(vec![tcp(80)])
            })
        );
        assert_eq!(place(&mut [], &web, 1).map_err(|u| u.placed), Err(0));
    }

    #[test]
    fn a_placement_takes_its_ports() {
        let mut c = [cap("a", 4096, 8192), cap("b", 4096, 8192)];
        let web = Demand {
            ports: vec![tcp(8080)],
            ..demand(1024, 1024)
        };
        let first = binpack(&c, &web).unwrap();
        c[first].take(&web);
        assert_eq!(c[first].ports, BTreeSet::from([tcp(8080)]));
        assert_eq!((c[first].cpu, c[first].memory_mib), (3072, 7168));
        let second = binpack(&c, &web).unwrap();
        assert_ne!(first, second);
        c[second].take(&web);
        assert_eq!(binpack(&c, &web), None);
        assert_eq!(shortage(&c, &web), Shortage::Ports(vec![tcp(8080)]));
        assert_eq!(tcp(8080).to_string(), "8080/tcp");
        assert_eq!(udp(53).to_string(), "53/udp");
        assert_eq!(Protocol::named("UDP"), Protocol::Udp);
        assert_eq!(Protocol::named(""), Protocol::Tcp);
    }
}

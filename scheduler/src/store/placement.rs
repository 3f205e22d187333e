//! Task placement: BINPACK on memory among the instances where the task's fixed host ports are
//! free, a pure function over the free capacity of candidates.
//!
//! It lives beside the store because placement and reservation happen in one write
//! transaction: the capacity it sees cannot change before the tasks are written.

use std::collections::BTreeSet;
use std::fmt;

/// The protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The protocol a port mapping or binding names: "udp" (in any case) is UDP; anything else
    /// is TCP, the default (the registration stores only "tcp" and "udp").
    pub(crate) fn named(name: &str) -> Self {
        if name.eq_ignore_ascii_case("udp") {
            Self::Udp
        } else {
            Self::Tcp
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A host port with its protocol, shown as "8080/tcp".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct HostPort {
    pub(crate) protocol: Protocol,
    pub(crate) port: u32,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.name())
    }
}

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
pub(crate) enum Shortage<'a> {
    /// Every candidate has one of the demand's host ports taken; these are the ones taken on
    /// some candidate, in the demand's order.
    Ports(Vec<HostPort>),
    /// The candidates with the ports free lack CPU or memory; the one of them with the most
    /// free memory (ties: most CPU).
    Room(Option<&'a Capacity>),
}

/// Why no candidate fits `demand`: ports when they are taken everywhere, else room.
pub(crate) fn shortage<'a>(candidates: &'a [Capacity], demand: &Demand) -> Shortage<'a> {
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
            .max_by(|a, b| (a.memory_mib, a.cpu).cmp(&(b.memory_mib, b.cpu))),
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
            Shortage::Room(Some(&c[0]))
        );
    }

    #[test]
    fn cpu_must_fit_too() {
        let c = [cap("a", 128, 1024), cap("b", 2048, 4096)];
        assert_eq!(binpack(&c, &demand(256, 512)), Some(1));
        assert_eq!(
            shortage(&c, &demand(4096, 512)),
            Shortage::Room(Some(&c[1]))
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
        assert_eq!(shortage(&c, &big), Shortage::Room(Some(&c[1])));
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

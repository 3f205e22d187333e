//! IPAM and host-port allocation: the pure allocator over one IPv4 CIDR and the ephemeral
//! port range, and its state file (atomic write + fsync, so allocations survive a restart).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::error::NetworkError;

/// An IPv4 network in CIDR notation whose host bits are zero, e.g. `10.213.0.0/24` (the
/// arithmetic is ipnet's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr(Ipv4Net);

impl Ipv4Cidr {
    /// The agent's default task range, 10.222.0.0/16.
    pub const DEFAULT: Ipv4Cidr = Ipv4Cidr(Ipv4Net::new_assert(Ipv4Addr::new(10, 222, 0, 0), 16));

    /// The network `address/prefix_len`, refusing set host bits.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Result<Self, NetworkError> {
        let invalid = |reason: String| NetworkError::InvalidCidr {
            cidr: format!("{address}/{prefix_len}"),
            reason,
        };
        let net = Ipv4Net::new(address, prefix_len)
            .map_err(|_| invalid("the prefix length must be between 0 and 32".to_owned()))?;
        if net.trunc() != net {
            return Err(invalid(format!(
                "host bits are set (the network is {})",
                net.trunc()
            )));
        }
        Ok(Self(net))
    }

    /// The network that `address/prefix_len` belongs to (host bits cleared).
    pub fn containing(address: Ipv4Addr, prefix_len: u8) -> Result<Self, NetworkError> {
        let net = Ipv4Net::new(address, prefix_len).map_err(|_| NetworkError::InvalidCidr {
            cidr: format!("{address}/{prefix_len}"),
            reason: "the prefix length must be between 0 and 32".to_owned(),
        })?;
        Ok(Self(net.trunc()))
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The first host address: the bridge's (the tasks' gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(1))
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.0.broadcast()
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }

    /// The addresses tasks can get: every host but the bridge's.
    fn task_range(&self) -> RangeInclusive<u32> {
        u32::from(self.network()) + 2..=u32::from(self.broadcast()) - 1
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetworkError;

    /// `address/prefix`; the error says which part is wrong.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| NetworkError::InvalidCidr {
            cidr: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (address, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected address/prefix, e.g. 10.213.0.0/24"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| bad("the address is not a dotted-quad IPv4 address"))?;
        let prefix_len: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length must be a number between 0 and 32"))?;
        Self::new(address, prefix_len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The protocol's lowercase name, as nftables and ECS spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host port bound to a task's container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// What an ENI was called on the host before it moved into a task's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EniRecord {
    pub(crate) mac: String,
    pub(crate) host_name: String,
}

/// Everything allocated to one task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    /// The bridge address (for an ENI task, that of its endpoint veth; its own address comes
    /// from its attachment).
    #[serde(default)]
    pub(crate) address: Option<Ipv4Addr>,
    #[serde(default)]
    pub(crate) ports: Vec<PortBinding>,
    #[serde(default)]
    pub(crate) eni: Option<EniRecord>,
}

/// Every task's allocations; the whole content of the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Allocations {
    /// Where the next address search starts, so a just-released address is not reused at once.
    #[serde(default)]
    next: Option<Ipv4Addr>,
    #[serde(default)]
    pub(crate) tasks: BTreeMap<String, TaskRecord>,
}

impl Allocations {
    /// The task's address: the one it already has, or the next free one in `cidr`.
    pub(crate) fn allocate_address(
        &mut self,
        cidr: &Ipv4Cidr,
        task: &str,
    ) -> Result<Ipv4Addr, NetworkError> {
        if let Some(ip) = self.tasks.get(task).and_then(|r| r.address) {
            return Ok(ip);
        }
        let used: BTreeSet<u32> = self
            .tasks
            .values()
            .filter_map(|r| r.address)
            .map(u32::from)
            .collect();
        let range = cidr.task_range();
        if range.is_empty() {
            return Err(NetworkError::CidrTooSmall {
                cidr: cidr.to_string(),
            });
        }
        let start = self
            .next
            .map(u32::from)
            .filter(|n| range.contains(n))
            .unwrap_or(*range.start());
        let found = (start..=*range.end())
            .chain(*range.start()..start)
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| NetworkError::Exhausted {
                cidr: cidr.to_string(),
                task: task.to_owned(),
            })?;
        let ip = Ipv4Addr::from(found);
        self.next = Some(Ipv4Addr::from(if found >= *range.end() {
            *range.start()
        } else {
            found + 1
        }));
        self.tasks.entry(task.to_owned()).or_default().address = Some(ip);
        Ok(ip)
    }

    /// Binds each requested `(protocol, host port or 0, container port)` for `task`: the same
    /// bindings when the task already has them; a port 0 takes the first port of `range` that no
    /// task maps and `is_free` accepts. A host port mapped by another task is refused.
    pub(crate) fn allocate_ports(
        &mut self,
        task: &str,
        requests: &[PortBinding],
        range: &RangeInclusive<u16>,
        mut is_free: impl FnMut(Protocol, u16) -> bool,
    ) -> Result<Vec<PortBinding>, NetworkError> {
        if let Some(r) = self.tasks.get(task).filter(|r| !r.ports.is_empty()) {
            return Ok(r.ports.clone());
        }
        let mut taken: BTreeMap<(Protocol, u16), String> = self
            .tasks
            .iter()
            .filter(|(owner, _)| owner.as_str() != task)
            .flat_map(|(owner, r)| {
                r.ports
                    .iter()
                    .map(move |p| ((p.protocol, p.host_port), owner.clone()))
            })
            .collect();
        let mut bound = Vec::with_capacity(requests.len());
        for req in requests.iter().filter(|r| r.host_port != 0) {
            if let Some(owner) = taken.get(&(req.protocol, req.host_port)) {
                return Err(NetworkError::PortTaken {
                    port: req.host_port,
                    protocol: req.protocol.as_str(),
                    owner: owner.clone(),
                });
            }
            taken.insert((req.protocol, req.host_port), task.to_owned());
            bound.push(PortBinding {
                protocol: req.protocol,
                host_port: req.host_port,
                container_port: req.container_port,
            });
        }
        for req in requests.iter().filter(|r| r.host_port == 0) {
            let port = range
                .clone()
                .find(|p| !taken.contains_key(&(req.protocol, *p)) && is_free(req.protocol, *p))
                .ok_or_else(|| NetworkError::NoFreePort {
                    first: *range.start(),
                    last: *range.end(),
                    task: task.to_owned(),
                })?;
            taken.insert((req.protocol, port), task.to_owned());
            bound.push(PortBinding {
                protocol: req.protocol,
                host_port: port,
                container_port: req.container_port,
            });
        }
        self.tasks.entry(task.to_owned()).or_default().ports = bound.clone();
        Ok(bound)
    }

    /// Forgets everything of `task`; true when it had anything.
    pub(crate) fn release(&mut self, task: &str) -> bool {
        self.tasks.remove(task).is_some()
    }
}

/// A requested port mapping (ECS `portMappings`): host port 0 takes a free port from the
/// ephemeral range. Ports are checked to be in range when the task is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRequest {
    pub protocol: Protocol,
    pub host_port: u32,
    pub container_port: u32,
}

/// The state file's name under the state dir.
pub(crate) const STATE_FILE: &str = "network-allocations.json";

/// Reads the allocations at `path`; a missing file is an empty state.
pub(crate) fn load(path: &Path) -> Result<Allocations, NetworkError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetworkError::CorruptState {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allocations::default()),
        Err(error) => Err(NetworkError::Io {
            what: "read the network allocations",
            path: path.to_owned(),
            error,
        }),
    }
}

/// Writes the allocations to `path` atomically: a temporary file, fsync, rename, fsync of the dir.
pub(crate) fn save(path: &Path, allocations: &Allocations) -> Result<(), NetworkError> {
    let io = |what: &'static str, p: &Path| {
        let p: PathBuf = p.to_owned();
        move |error| NetworkError::Io {
            what,
            path: p,
            error,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create the state dir", dir))?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(allocations).map_err(|e| NetworkError::Io {
        what: "serialize the network allocations",
        path: path.to_owned(),
        error: std::io::Error::other(e),
    })?;
    {
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename the state file into", path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync the state dir", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_describe() {
        let c = cidr("10.213.0.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 213, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 213, 0, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 213, 1, 0)));
        assert!(c.overlaps(&cidr("10.213.0.128/25")));
        assert!(c.overlaps(&cidr("10.0.0.0/8")));
        assert!(!c.overlaps(&cidr("10.213.1.0/24")));
        assert_eq!(c.to_string(), "10.213.0.0/24");
    }

    #[test]
    fn malformed_cidrs_say_why() {
        for (text, why) in [
            ("10.213.0.0", "expected address/prefix"),
            ("10.213.0/24", "dotted-quad"),
            ("10.213.0.0/33", "between 0 and 32"),
            ("10.213.0.0/x", "between 0 and 32"),
            (
                "10.213.0.1/24",
                "host bits are set (the network is 10.213.0.0/24)",
            ),
        ] {
            let e = text.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn never_hands_out_network_gateway_or_broadcast() {
        let c = cidr("10.213.0.0/30");
        let mut a = Allocations::default();
        assert_eq!(
            a.allocate_address(&c, "t1").unwrap(),
            Ipv4Addr::new(10, 213, 0, 2)
        );
        let e = a.allocate_address(&c, "t2").unwrap_err();
        assert!(matches!(e, NetworkError::Exhausted { .. }), "{e}");
        let e = Allocations::default()
            .allocate_address(&cidr("10.213.0.0/31"), "t")
            .unwrap_err();
        assert!(matches!(e, NetworkError::CidrTooSmall { .. }), "{e}");
    }

    #[test]
    fn idempotent_per_owner_unique_and_released() {
        let c = cidr("10.213.0.0/29");
        let mut a = Allocations::default();
        let ips: Vec<_> = (0..5)
            .map(|i| a.allocate_address(&c, &format!("t{i}")).unwrap())
            .collect();
        let unique: BTreeSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), 5);
        assert_eq!(a.allocate_address(&c, "t3").unwrap(), ips[3]);
        assert!(a.allocate_address(&c, "t5").is_err());
        assert!(a.release("t1"));
        assert!(!a.release("t1"));
        assert_eq!(a.allocate_address(&c, "t6").unwrap(), ips[1]);
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let c = cidr("10.213.0.0/24");
        let mut a = Allocations::default();
        let first = a.allocate_address(&c, "a").unwrap();
        a.release("a");
        let second = a.allocate_address(&c, "b").unwrap();
        assert_ne!(first, second);
    }

    fn req(protocol: Protocol, host_port: u16, container_port: u16) -> PortBinding {
        PortBinding {
            protocol,
            host_port,
            container_port,
        }
    }

    #[test]
    fn ports_fixed_ephemeral_conflicts_and_idempotence() {
        let mut a = Allocations::default();
        let range = 49153..=49154;
        let got = a
            .allocate_ports(
                "t1",
                &[req(Protocol::Tcp, 8080, 80), req(Protocol::Tcp, 0, 81)],
                &range,
                |_, p| p != 49153,
            )
            .unwrap();
        assert_eq!(got[0].host_port, 8080);
        assert_eq!(got[1].host_port, 49154);
        let again = a
            .allocate_ports("t1", &[req(Protocol::Tcp, 0, 99)], &range, |_, _| true)
            .unwrap();
        assert_eq!(again, got);
        let e = a
            .allocate_ports("t2", &[req(Protocol::Tcp, 8080, 80)], &range, |_, _| true)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "host port 8080/tcp is already mapped by task t1"
        );
        // udp 8080 is another port
        a.allocate_ports("t3", &[req(Protocol::Udp, 8080, 53)], &range, |_, _| true)
            .unwrap();
        let got = a
            .allocate_ports("t4", &[req(Protocol::Tcp, 0, 1)], &range, |_, _| true)
            .unwrap();
        assert_eq!(got[0].host_port, 49153);
        let e = a
            .allocate_ports("t5", &[req(Protocol::Tcp, 0, 1)], &range, |_, _| true)
            .unwrap_err();
        assert!(matches!(e, NetworkError::NoFreePort { .. }), "{e}");
    }

    #[test]
    fn state_file_round_trips_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(STATE_FILE);
        assert_eq!(load(&path).unwrap(), Allocations::default());
        let mut a = Allocations::default();
        let ip = a.allocate_address(&cidr("10.213.0.0/24"), "t").unwrap();
        save(&path, &a).unwrap();
        let mut b = load(&path).unwrap();
        assert_eq!(b, a);
        assert_eq!(b.allocate_address(&cidr("10.213.0.0/24"), "t").unwrap(), ip);
        fs::write(&path, b"{not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("is corrupt"), "{e}");
    }
}

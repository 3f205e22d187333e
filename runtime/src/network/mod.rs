//! Task networking on the host: each task's network namespace, its interface (a veth pair on
//! the agent's bridge, or an ENI found by MAC), its address from the agent's IPAM, its DNAT
//! port mappings and outbound masquerade in Berth's own nftables table, and its resolv.conf,
//! hosts and hostname files. Teardown removes all of it; `repair` removes what a crash left
//! (`teardown.rs`).
//! The same tables confine tasks (`nft.rs`): what of the host they reach, what is forwarded for
//! them, and that each sends only with its own MAC and address.
//!
//! `Network` is the one entry point; everything that touches the host goes through the
//! `HostOps` seam (`host.rs`), so the orchestration here is unit-tested with a fake.

mod eni;
mod error;
mod files;
mod host;
mod ipam;
mod mac;
mod netlink;
mod netns;
mod nft;
mod teardown;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

pub use error::NetworkError;
pub use files::{DnsConfig, TaskFiles};
pub use ipam::{Ipv4Cidr, PortBinding, PortRequest, Protocol};
pub use mac::MacAddr;
pub use netns::{DEFAULT_NETNS_DIR, NetNs};
pub use nft::{INSTANCE_METADATA_ADDRESS, INSTANCE_METADATA_ADDRESS_V6};

use host::{ENDPOINT_IF, HostOps, LinuxHost, TASK_IF, VethPlan};
use ipam::{Allocations, EniRecord, STATE_FILE};
use netlink::IfPlan;
use nft::{BaseRules, TaskIdentity};

/// The file in the state dir that records that Berth turned IPv4 forwarding on (it was off
/// before), so it keeps forwarding nothing but tasks' traffic across restarts.
const FORWARDING_MARKER: &str = "ip-forward-enabled-by-berth";

/// The default bridge's name.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default MTU of bridge and task interfaces.
pub const DEFAULT_MTU: u32 = 1500;
/// The link-local address of the agent's endpoint (task metadata, credentials) inside tasks, as
/// on ECS: an address of the bridge, reached through the task's default route.
pub const ENDPOINT_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The endpoint's port, as tasks see it.
pub const ENDPOINT_PORT: u16 = 80;
/// The port the agent listens on at [`ENDPOINT_ADDRESS`]; nftables sends [`ENDPOINT_PORT`]
/// there, so the agent never competes for the host's port 80 (ECS's credentials port).
pub const ENDPOINT_LISTEN_PORT: u16 = 51679;
/// ECS's ephemeral host-port range for `hostPort` 0.
pub const DEFAULT_EPHEMERAL_PORTS: RangeInclusive<u16> = 49153..=65535;

/// How the host's task networking is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The bridge task veths attach to; it gets the CIDR's first address.
    pub bridge: String,
    /// Where task addresses come from.
    pub cidr: Ipv4Cidr,
    pub mtu: u32,
    /// Masquerade traffic from the CIDR that leaves it (outbound NAT).
    pub masquerade: bool,
    /// Where task namespaces are bind-mounted (`<netns_dir>/<task>`).
    pub netns_dir: PathBuf,
    /// Where the allocation state file is kept.
    pub state_dir: PathBuf,
    /// Where each task's resolv.conf, hosts and hostname go (`<files_dir>/<task>/`).
    pub files_dir: PathBuf,
    /// The namespace that plays the host (tests); `None` is the agent's own.
    pub host_netns: Option<PathBuf>,
    /// Where `hostPort` 0 takes a port from.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Tasks never reach the instance metadata service ([`INSTANCE_METADATA_ADDRESS`]).
    pub block_instance_metadata: bool,
    /// Ports (TCP and UDP) tasks may reach on the host's own addresses, beside the task
    /// endpoint; none by default.
    pub task_host_ports: BTreeSet<u16>,
    /// TCP destinations tasks never reach (the scheduler's); an address of loopback blocks the
    /// port on every address of the host. [`Network::block_destinations`] replaces them.
    pub blocked_destinations: Vec<SocketAddrV4>,
    /// The only interfaces an ENI attachment may move into a task, by MAC; empty allows any
    /// that passes the built-in refusals (`eni.rs`).
    pub eni_allowed_macs: Vec<MacAddr>,
}

impl NetworkConfig {
    /// The defaults for `cidr`, with state and files under `state_dir`.
    pub fn new(cidr: Ipv4Cidr, state_dir: &Path) -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_owned(),
            cidr,
            mtu: DEFAULT_MTU,
            masquerade: true,
            netns_dir: PathBuf::from(DEFAULT_NETNS_DIR),
            state_dir: state_dir.to_owned(),
            files_dir: state_dir.join("task-files"),
            host_netns: None,
            ephemeral_ports: DEFAULT_EPHEMERAL_PORTS,
            block_instance_metadata: true,
            task_host_ports: BTreeSet::new(),
            blocked_destinations: Vec::new(),
            eni_allowed_macs: Vec::new(),
        }
    }
}

/// Which interface a task gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInterface {
    /// A veth pair on the bridge, with an address from the IPAM.
    Veth,
    /// An ENI already attached to the host, found by its MAC, with its attachment's address.
    Eni {
        mac: MacAddr,
        address: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    },
}

/// What a task's network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetworkSpec {
    /// The task's name (its ID): letters, digits, `-`, `_`, `.`, at most 200 characters.
    pub task: String,
    pub interface: TaskInterface,
    /// DNAT port mappings (veth tasks only).
    pub ports: Vec<PortRequest>,
    pub dns: DnsConfig,
}

/// A task's network as set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetwork {
    pub task: String,
    /// The namespace every container of the task joins.
    pub netns: PathBuf,
    /// The interface's name inside the namespace (`eth0`).
    pub interface: String,
    /// The interface's MAC address (an ENI's own; for a veth, derived from the address).
    pub mac: MacAddr,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The host ports bound, with the ephemeral ones chosen.
    pub ports: Vec<PortBinding>,
    pub files: TaskFiles,
}

/// The host's task networking: bridge, IPAM, namespaces, nftables, per-task files.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    ops: Arc<dyn HostOps>,
    state: Mutex<Allocations>,
    state_path: PathBuf,
}

const MAX_TASK_NAME: usize = 200;

fn check_task_name(task: &str) -> Result<(), NetworkError> {
    let ok = !task.is_empty()
        && task.len() <= MAX_TASK_NAME
        && task != "."
        && task != ".."
        && task
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidTaskName {
            task: task.to_owned(),
        })
    }
}

/// The prefix of every task veth's host-side name (anti-spoofing checks every such port).
pub(crate) const VETH_PREFIX: &str = "bv";

/// The host-side name of a task's veth: short (IFNAMSIZ), stable, unique per task name.
fn veth_name(task: &str) -> String {
    let digest = hex::encode(Sha256::digest(task.as_bytes()));
    format!("{VETH_PREFIX}{}", &digest[..11])
}

/// The MAC address of a veth task's interface, derived from its address as Docker does
/// (`02:42` and the four address bytes): stable for the address, locally administered.
pub(crate) fn veth_mac(address: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = address.octets();
    MacAddr([0x02, 0x42, a, b, c, d])
}

/// Who may send from the veth of namespace `task` on the bridge.
fn identity(task: &str, address: Ipv4Addr) -> TaskIdentity {
    TaskIdentity {
        veth: veth_name(task),
        mac: veth_mac(address),
        address,
    }
}

/// Whether Berth owns the host's IPv4 forwarding: it was off when Berth first opened the
/// network (recorded in `state_dir`, so a restart, which finds it on, still knows).
async fn forwarding_owner(ops: &dyn HostOps, state_dir: &Path) -> Result<bool, NetworkError> {
    let marker = state_dir.join(FORWARDING_MARKER);
    if marker.exists() {
        return Ok(true);
    }
    if ops.ip_forwarding().await? {
        return Ok(false);
    }
    let io = |error| NetworkError::Io {
        what: "record that berth turns on ipv4 forwarding",
        path: marker.clone(),
        error,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    std::fs::write(
        &marker,
        b"ipv4 forwarding was off before berth turned it on\n",
    )
    .map_err(io)?;
    Ok(true)
}

fn port(what: &'static str, value: u32, zero_ok: bool) -> Result<u16, NetworkError> {
    match u16::try_from(value) {
        Ok(p) if p != 0 || zero_ok => Ok(p),
        _ => Err(NetworkError::InvalidInput {
            what,
            value: value.to_string(),
            reason: if zero_ok {
                "use a port between 0 (any free ephemeral port) and 65535".to_owned()
            } else {
                "use a port between 1 and 65535".to_owned()
            },
        }),
    }
}

impl Network {
    /// Checks the CIDR against the host's addresses, creates or checks the bridge, installs
    /// Berth's nftables table and loads the persisted allocations.
    pub async fn open(config: NetworkConfig) -> Result<Network, NetworkError> {
        let ops = Arc::new(LinuxHost {
            host: config.host_netns.clone().map(NetNs::open),
            netns_dir: config.netns_dir.clone(),
        });
        Self::with_ops(config, ops).await
    }

    async fn with_ops(
        config: NetworkConfig,
        ops: Arc<dyn HostOps>,
    ) -> Result<Network, NetworkError> {
        let cidr = config.cidr;
        if cidr.prefix_len() > 30 {
            return Err(NetworkError::CidrTooSmall {
                cidr: cidr.to_string(),
            });
        }
        if config.ephemeral_ports.is_empty() || *config.ephemeral_ports.start() == 0 {
            return Err(NetworkError::InvalidInput {
                what: "ephemeral port range",
                value: format!(
                    "{}-{}",
                    config.ephemeral_ports.start(),
                    config.ephemeral_ports.end()
                ),
                reason: "use a non-empty range of ports between 1 and 65535".to_owned(),
            });
        }
        for a in ops.host_addresses().await? {
            if a.interface == config.bridge {
                continue;
            }
            let theirs = Ipv4Cidr::containing(a.address, a.prefix_len)?;
            if cidr.overlaps(&theirs) {
                return Err(NetworkError::CidrOverlaps {
                    cidr: cidr.to_string(),
                    interface: a.interface,
                    address: a.address,
                    prefix_len: a.prefix_len,
                });
            }
        }
        let owns_forwarding = forwarding_owner(&*ops, &config.state_dir).await?;
        ops.ensure_bridge(&config.bridge, &cidr, config.mtu).await?;
        let state_path = config.state_dir.join(STATE_FILE);
        let state = ipam::load(&state_path)?;
        let identities: Vec<TaskIdentity> = state
            .tasks
            .iter()
            .filter_map(|(task, r)| r.address.map(|a| identity(task, a)))
            .collect();
        ops.nft_apply(nft::base_ruleset(&BaseRules {
            cidr,
            bridge: &config.bridge,
            masquerade: config.masquerade,
            block_instance_metadata: config.block_instance_metadata,
            task_host_ports: &config.task_host_ports,
            owns_forwarding,
            blocked: &config.blocked_destinations,
            identities: &identities,
        }))
        .await?;
        Ok(Network {
            config,
            ops,
            state: Mutex::new(state),
            state_path,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Replaces the TCP destinations tasks never reach (the scheduler's, re-resolved), in one
    /// transaction: no moment lets a task through.
    pub async fn block_destinations(
        &self,
        destinations: &[SocketAddrV4],
    ) -> Result<(), NetworkError> {
        self.ops
            .nft_apply(nft::blocked_elements(destinations))
            .await
    }

    /// The namespace path of `task`.
    pub fn netns_path(&self, task: &str) -> PathBuf {
        self.config.netns_dir.join(task)
    }

    /// Sets up `spec.task`'s network (idempotent: a task already set up gets the same address
    /// and ports). On any failure everything of the task is removed again before the error is
    /// returned.
    pub async fn setup(&self, spec: &TaskNetworkSpec) -> Result<TaskNetwork, NetworkError> {
        check_task_name(&spec.task)?;
        files::validate(&spec.dns)?;
        let mut requests = Vec::with_capacity(spec.ports.len());
        for p in &spec.ports {
            requests.push(PortBinding {
                protocol: p.protocol,
                host_port: port("host port", p.host_port, true)?,
                container_port: port("container port", p.container_port, false)?,
            });
        }
        if let TaskInterface::Eni {
            address,
            prefix_len,
            gateway,
            ..
        } = &spec.interface
        {
            let c = Ipv4Cidr::containing(*address, *prefix_len)?;
            if !c.contains(*gateway) || *gateway == *address {
                return Err(NetworkError::InvalidInput {
                    what: "eni gateway",
                    value: gateway.to_string(),
                    reason: format!("the gateway must be another address of {c}"),
                });
            }
            if !requests.is_empty() {
                return Err(NetworkError::InvalidInput {
                    what: "port mappings",
                    value: format!("{} mapping(s)", requests.len()),
                    reason: "an eni task is reached at its own address; port mappings need a veth on the bridge".to_owned(),
                });
            }
        }
        match self.try_setup(spec, &requests).await {
            Ok(net) => Ok(net),
            Err(e) => {
                if let Err(cleanup) = self.teardown(&spec.task).await {
                    tracing::warn!(task.id = %spec.task, error = %cleanup, "cleaning up a failed network setup failed; repair will retry");
                }
                Err(e)
            }
        }
    }

    async fn try_setup(
        &self,
        spec: &TaskNetworkSpec,
        requests: &[PortBinding],
    ) -> Result<TaskNetwork, NetworkError> {
        let task = spec.task.as_str();
        let cidr = self.config.cidr;
        // Allocate first and persist, so a crash after this point is repaired from the state.
        let (plan, ports, eni_host_name, existed) = {
            let mut state = self.state.lock().await;
            let existed = state.tasks.contains_key(task);
            let mut next = state.clone();
            let result = match &spec.interface {
                TaskInterface::Veth => {
                    let address = next.allocate_address(&cidr, task)?;
                    let ports = next.allocate_ports(
                        task,
                        requests,
                        &self.config.ephemeral_ports,
                        |proto, p| self.ops.port_free(proto, p),
                    )?;
                    let plan = IfPlan {
                        address,
                        prefix_len: cidr.prefix_len(),
                        gateway: cidr.gateway(),
                        mtu: self.config.mtu,
                        default_route: true,
                        // The bridge's forward path refuses it (nft.rs).
                        block_instance_metadata: false,
                    };
                    (plan, ports, None)
                }
                TaskInterface::Eni {
                    mac,
                    address,
                    prefix_len,
                    gateway,
                } => {
                    let known = next.tasks.get(task).and_then(|r| r.eni.clone());
                    let host_name = match known {
                        Some(r) => r.host_name,
                        None => {
                            let name = self.ops.find_mac(&mac.0).await?.ok_or_else(|| {
                                NetworkError::UnknownMac {
                                    mac: mac.to_string(),
                                }
                            })?;
                            let link = self.ops.host_link(&name).await?;
                            let rule = eni::refusal(
                                &link,
                                *mac,
                                task,
                                &next,
                                &self.config.bridge,
                                &self.config.eni_allowed_macs,
                            );
                            if let Some(rule) = rule {
                                return Err(NetworkError::EniRefused {
                                    interface: name,
                                    mac: mac.to_string(),
                                    task: task.to_owned(),
                                    rule,
                                });
                            }
                            name
                        }
                    };
                    next.tasks.entry(task.to_owned()).or_default().eni = Some(EniRecord {
                        mac: mac.to_string(),
                        host_name: host_name.clone(),
                    });
                    // A second, bridge-side address: the task reaches the agent's endpoint
                    // through a veth of its own, as its default route leaves through the ENI.
                    let endpoint_address = next.allocate_address(&cidr, task)?;
                    // Its traffic leaves through the ENI, past the host's forward path: the
                    // metadata service is refused by routes in the task's own namespace.
                    let plan = IfPlan {
                        address: *address,
                        prefix_len: *prefix_len,
                        gateway: *gateway,
                        mtu: self.config.mtu,
                        default_route: true,
                        block_instance_metadata: self.config.block_instance_metadata,
                    };
                    (plan, Vec::new(), Some((mac.0, host_name, endpoint_address)))
                }
            };
            if next != *state {
                ipam::save(&self.state_path, &next)?;
                *state = next;
            }
            (result.0, result.1, result.2, existed)
        };
        let ns = self.ops.create_netns(task).await?;
        match &eni_host_name {
            None => {
                let veth = VethPlan {
                    task: task.to_owned(),
                    host_if: veth_name(task),
                    peer: TASK_IF.to_owned(),
                    bridge: self.config.bridge.clone(),
                    interface: plan.clone(),
                };
                self.ops.add_veth(&veth, &ns).await?;
            }
            Some((mac, host_name, endpoint_address)) => {
                // Still on the host: move it in; already gone from the host: a repeated setup.
                if self.ops.find_mac(mac).await?.is_some() {
                    self.ops.eni_in(host_name, &plan, &ns).await?;
                }
                let veth = VethPlan {
                    task: task.to_owned(),
                    host_if: veth_name(task),
                    peer: ENDPOINT_IF.to_owned(),
                    bridge: self.config.bridge.clone(),
                    interface: IfPlan {
                        address: *endpoint_address,
                        prefix_len: 32,
                        gateway: cidr.gateway(),
                        mtu: self.config.mtu,
                        default_route: false,
                        block_instance_metadata: false,
                    },
                };
                self.ops.add_veth(&veth, &ns).await?;
            }
        }
        // Rules are only ever added under a persisted allocation: a task that had none has none.
        let stale = if existed {
            self.task_rule_handles(task).await?
        } else {
            Vec::new()
        };
        let bridge_address = match &eni_host_name {
            Some((_, _, endpoint_address)) => *endpoint_address,
            None => plan.address,
        };
        let mut script = nft::add_identity(&identity(task, bridge_address));
        script.push_str(&nft::task_rules(task, plan.address, &ports, &stale));
        self.ops.nft_apply(script).await?;
        let files = files::write(&self.config.files_dir.join(task), &spec.dns, plan.address)?;
        let mac = match &eni_host_name {
            Some((mac, _, _)) => MacAddr(*mac),
            None => veth_mac(plan.address),
        };
        Ok(TaskNetwork {
            task: task.to_owned(),
            netns: ns.path().to_owned(),
            interface: TASK_IF.to_owned(),
            mac,
            address: plan.address,
            prefix_len: plan.prefix_len,
            gateway: plan.gateway,
            ports,
            files,
        })
    }

    async fn task_rule_handles(&self, task: &str) -> Result<Vec<u64>, NetworkError> {
        Ok(self
            .ops
            .nft_rules()
            .await?
            .into_iter()
            .filter(|r| r.comment.as_deref() == Some(task))
            .map(|r| r.handle)
            .collect())
    }

    /// The task (namespace name) that holds `address` on the bridge: a veth task's address, or
    /// the endpoint veth of an ENI task.
    pub async fn owner_of(&self, address: Ipv4Addr) -> Option<String> {
        self.state
            .lock()
            .await
            .tasks
            .iter()
            .find(|(_, r)| r.address == Some(address))
            .map(|(name, _)| name.clone())
    }

    /// Rewrites `task`'s resolv.conf, hosts and hostname (e.g. to add the addresses of linked
    /// containers once they are known); the task must be set up.
    pub fn write_files(
        &self,
        task: &str,
        dns: &DnsConfig,
        address: Ipv4Addr,
    ) -> Result<TaskFiles, NetworkError> {
        check_task_name(task)?;
        files::validate(dns)?;
        files::write(&self.config.files_dir.join(task), dns, address)
    }
}

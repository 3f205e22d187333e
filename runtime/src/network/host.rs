//! The seam between the task-network logic and the host: `HostOps`, implemented for real by
//! `LinuxHost` (rtnetlink, namespaces, `nft`) and by a recording fake in the unit tests.

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::error::NetworkError;
use super::ipam::{Ipv4Cidr, Protocol};
use super::netlink::{HostLink, IfAddress, IfPlan, Netlink, VethPair, link_alias, link_name};
use super::netns::{NetNs, run_in};
use super::nft::{self, NftRule};

/// The prefix of the alias given to a task veth's host side; the task's name follows it.
pub(crate) const VETH_ALIAS_PREFIX: &str = "berth-task:";

/// What the logic above needs from the host, each step idempotent where it says so.
#[async_trait]
pub(crate) trait HostOps: Send + Sync + Debug {
    /// Every IPv4 address in the host namespace.
    async fn host_addresses(&self) -> Result<Vec<IfAddress>, NetworkError>;
    /// Creates or checks the bridge, turns on IPv4 forwarding.
    async fn ensure_bridge(
        &self,
        bridge: &str,
        cidr: &Ipv4Cidr,
        mtu: u32,
    ) -> Result<(), NetworkError>;
    /// Whether IPv4 forwarding is on in the host namespace.
    async fn ip_forwarding(&self) -> Result<bool, NetworkError>;
    /// Applies an nft script in one transaction.
    async fn nft_apply(&self, script: String) -> Result<(), NetworkError>;
    /// The rules of the per-task chain.
    async fn nft_rules(&self) -> Result<Vec<NftRule>, NetworkError>;
    /// Creates (or finds) the namespace `name`; idempotent.
    async fn create_netns(&self, name: &str) -> Result<NetNs, NetworkError>;
    /// Deletes the namespace `name`; idempotent.
    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError>;
    /// The names of the namespaces in the run dir.
    async fn list_netns(&self) -> Result<Vec<String>, NetworkError>;
    /// The veth pair of a task: host side on the bridge, peer configured as `eth0` in `ns`.
    async fn add_veth(&self, plan: &VethPlan, ns: &NetNs) -> Result<(), NetworkError>;
    /// Deletes a host link; idempotent.
    async fn delete_link(&self, name: &str) -> Result<(), NetworkError>;
    /// Host veths made for tasks: (interface, task).
    async fn task_veths(&self) -> Result<Vec<(String, String)>, NetworkError>;
    /// The name of the host link with this MAC address.
    async fn find_mac(&self, mac: &[u8; 6]) -> Result<Option<String>, NetworkError>;
    /// What the ENI refusals look at of the host link `name`.
    async fn host_link(&self, name: &str) -> Result<HostLink, NetworkError>;
    /// Moves the host link `host_name` into `ns` as `eth0`, configured.
    async fn eni_in(&self, host_name: &str, plan: &IfPlan, ns: &NetNs) -> Result<(), NetworkError>;
    /// Moves the link with this MAC from `ns` back to the host as `host_name`; idempotent.
    async fn eni_out(&self, mac: &[u8; 6], host_name: &str, ns: &NetNs)
    -> Result<(), NetworkError>;
    /// Whether nothing on the host is bound to this port.
    fn port_free(&self, protocol: Protocol, port: u16) -> bool;
}

/// A task's veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VethPlan {
    pub(crate) task: String,
    pub(crate) host_if: String,
    pub(crate) peer: String,
    pub(crate) bridge: String,
    pub(crate) interface: IfPlan,
}

/// The task interface's name inside its namespace.
pub(crate) const TASK_IF: &str = "eth0";
/// The name of an ENI task's second interface, a veth on the bridge that only reaches the
/// agent's endpoint.
pub(crate) const ENDPOINT_IF: &str = "ep0";

/// The real host: rtnetlink in the host namespace (the agent's, or the configured one) and in
/// each task's, namespaces under a run dir, and `nft`.
#[derive(Debug)]
pub(crate) struct LinuxHost {
    pub(crate) host: Option<NetNs>,
    pub(crate) netns_dir: PathBuf,
}

impl LinuxHost {
    fn host_netlink(&self) -> Result<Netlink, NetworkError> {
        Netlink::connect(self.host.as_ref())
    }

    fn ns(&self, name: &str) -> NetNs {
        NetNs::open(self.netns_dir.join(name))
    }
}

fn write_sysctl(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

#[async_trait]
impl HostOps for LinuxHost {
    async fn host_addresses(&self) -> Result<Vec<IfAddress>, NetworkError> {
        self.host_netlink()?.addresses().await
    }

    async fn ensure_bridge(
        &self,
        bridge: &str,
        cidr: &Ipv4Cidr,
        mtu: u32,
    ) -> Result<(), NetworkError> {
        let netlink = self.host_netlink()?;
        netlink.ensure_bridge(bridge, cidr, mtu).await?;
        // The bridge is IPv4 only: no IPv6 link-local address through which tasks could reach
        // the host around Berth's `ip` rules. A host without IPv6 has no such file.
        let v6 = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"));
        match run_in(self.host.as_ref(), || write_sysctl(&v6, "1"))? {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(NetworkError::Io {
                    what: "turn off ipv6 on the bridge",
                    path: v6,
                    error,
                });
            }
        }
        let path = Path::new("/proc/sys/net/ipv4/ip_forward");
        run_in(self.host.as_ref(), || write_sysctl(path, "1"))?.map_err(|error| NetworkError::Io {
            what: "turn on ipv4 forwarding",
            path: path.to_owned(),
            error,
        })
    }

    async fn ip_forwarding(&self) -> Result<bool, NetworkError> {
        let path = Path::new("/proc/sys/net/ipv4/ip_forward");
        let value =
            run_in(self.host.as_ref(), || std::fs::read_to_string(path))?.map_err(|error| {
                NetworkError::Io {
                    what: "read whether ipv4 forwarding is on",
                    path: path.to_owned(),
                    error,
                }
            })?;
        Ok(value.trim() != "0")
    }

    async fn nft_apply(&self, script: String) -> Result<(), NetworkError> {
        if script.is_empty() {
            return Ok(());
        }
        let host = self.host.clone();
        blocking(move || nft::run_nft(host.as_ref(), &["-f", "-"], &script).map(drop)).await
    }

    async fn nft_rules(&self) -> Result<Vec<NftRule>, NetworkError> {
        let host = self.host.clone();
        let namespace = host.as_ref().map_or_else(
            || "of the agent".to_owned(),
            |n| n.path().display().to_string(),
        );
        let json = blocking(move || {
            nft::run_nft(
                host.as_ref(),
                &["-j", "list", "chain", "ip", "berth", nft::PORTS_CHAIN],
                "",
            )
        })
        .await?;
        nft::parse_rules(&json).map_err(|message| NetworkError::Nft { namespace, message })
    }

    async fn create_netns(&self, name: &str) -> Result<NetNs, NetworkError> {
        let dir = self.netns_dir.clone();
        let name = name.to_owned();
        blocking(move || NetNs::create(&dir, &name)).await
    }

    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError> {
        let ns = self.ns(name);
        blocking(move || ns.delete()).await
    }

    async fn list_netns(&self) -> Result<Vec<String>, NetworkError> {
        NetNs::list(&self.netns_dir)
    }

    async fn add_veth(&self, plan: &VethPlan, ns: &NetNs) -> Result<(), NetworkError> {
        let host = self.host_netlink()?;
        // A leftover of an earlier attempt would make the add fail: start clean.
        host.delete_link(&plan.host_if).await?;
        let alias = format!("{VETH_ALIAS_PREFIX}{}", plan.task);
        let pair = VethPair {
            host_if: &plan.host_if,
            peer: &plan.peer,
            peer_mac: super::veth_mac(plan.interface.address).0,
            alias: &alias,
            bridge: &plan.bridge,
            mtu: plan.interface.mtu,
        };
        host.add_veth(&pair, ns).await?;
        let inside = Netlink::connect(Some(ns))?;
        inside
            .configure_task_interface(&plan.peer, &plan.peer, &plan.interface)
            .await
    }

    async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        self.host_netlink()?.delete_link(name).await
    }

    async fn task_veths(&self) -> Result<Vec<(String, String)>, NetworkError> {
        Ok(self
            .host_netlink()?
            .links()
            .await?
            .iter()
            .filter_map(|l| {
                let task = link_alias(l)?.strip_prefix(VETH_ALIAS_PREFIX)?.to_owned();
                Some((link_name(l)?, task))
            })
            .collect())
    }

    async fn find_mac(&self, mac: &[u8; 6]) -> Result<Option<String>, NetworkError> {
        self.host_netlink()?.link_by_mac(mac).await
    }

    async fn host_link(&self, name: &str) -> Result<HostLink, NetworkError> {
        self.host_netlink()?.host_link(name).await
    }

    async fn eni_in(&self, host_name: &str, plan: &IfPlan, ns: &NetNs) -> Result<(), NetworkError> {
        self.host_netlink()?
            .move_link(host_name, host_name, ns)
            .await?;
        Netlink::connect(Some(ns))?
            .configure_task_interface(host_name, TASK_IF, plan)
            .await
    }

    async fn eni_out(
        &self,
        mac: &[u8; 6],
        host_name: &str,
        ns: &NetNs,
    ) -> Result<(), NetworkError> {
        if !ns.exists() {
            return Ok(());
        }
        let inside = Netlink::connect(Some(ns))?;
        let Some(name) = inside.link_by_mac(mac).await? else {
            return Ok(());
        };
        let host = match &self.host {
            Some(h) => h.clone(),
            None => NetNs::open("/proc/self/ns/net"),
        };
        inside.move_link(&name, host_name, &host).await
    }

    fn port_free(&self, protocol: Protocol, port: u16) -> bool {
        let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        run_in(self.host.as_ref(), || match protocol {
            Protocol::Tcp => TcpListener::bind(addr).is_ok(),
            Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        })
        .unwrap_or(false)
    }
}

/// Runs blocking work (threads entering namespaces, `nft`) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(NetworkError::Io {
            what: "run a blocking network step",
            path: PathBuf::new(),
            error: std::io::Error::other(e),
        })
    })
}

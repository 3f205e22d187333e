//! rtnetlink work in one namespace: the bridge, veth pairs, ENIs moved in and out, addresses,
//! routes. A connection's socket is opened inside its namespace and stays bound to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAttribute, RouteScope, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::NetworkError;
use super::ipam::Ipv4Cidr;
use super::netns::{NetNs, run_in};

/// How the task's interface is configured inside its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfPlan {
    pub(crate) address: Ipv4Addr,
    pub(crate) prefix_len: u8,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
    /// The task's default route goes through this interface; otherwise the interface only
    /// routes to the agent's endpoint (the endpoint veth of an ENI task).
    pub(crate) default_route: bool,
    /// The namespace gets `prohibit` routes for the instance metadata service (IPv4 and
    /// IPv6), for an interface whose traffic bypasses the host's forward path (an ENI).
    pub(crate) block_instance_metadata: bool,
}

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EAFNOSUPPORT: i32 = 97;

/// A netlink connection whose socket lives in one namespace.
#[derive(Debug)]
pub(crate) struct Netlink {
    handle: Handle,
    namespace: String,
}

/// An IPv4 address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfAddress {
    pub(crate) interface: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) prefix_len: u8,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a connection inside `ns` (the process's namespace when `None`), driven by the
    /// current tokio runtime.
    pub(crate) fn connect(ns: Option<&NetNs>) -> Result<Netlink, NetworkError> {
        let namespace = ns.map_or_else(
            || "of the agent".to_owned(),
            |n| n.path().display().to_string(),
        );
        let rt = tokio::runtime::Handle::current();
        let opened = run_in(ns, || {
            let _entered = rt.enter();
            rtnetlink::new_connection()
        })?;
        let (connection, handle, _) = opened.map_err(|e| NetworkError::Netlink {
            what: "open a netlink socket for",
            interface: "links".to_owned(),
            namespace: namespace.clone(),
            message: e.to_string(),
        })?;
        rt.spawn(connection);
        Ok(Netlink { handle, namespace })
    }

    fn err(&self, what: &'static str, interface: &str, e: impl ToString) -> NetworkError {
        NetworkError::Netlink {
            what,
            interface: interface.to_owned(),
            namespace: self.namespace.clone(),
            message: e.to_string(),
        }
    }

    /// Every link of the namespace.
    pub(crate) async fn links(&self) -> Result<Vec<LinkMessage>, NetworkError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list", "links", e))
    }

    /// The link named `name`, if any.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match s.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(self.err("look up", name, e)),
        }
    }

    async fn index(&self, name: &str) -> Result<u32, NetworkError> {
        self.link(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| self.err("find", name, "no such interface"))
    }

    /// Every IPv4 address of the namespace, with its interface's name.
    pub(crate) async fn addresses(&self) -> Result<Vec<IfAddress>, NetworkError> {
        let links = self.links().await?;
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list", "addresses", e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let address = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })?;
                let interface = links
                    .iter()
                    .find(|l| l.header.index == m.header.index)
                    .and_then(link_name)
                    .unwrap_or_else(|| format!("#{}", m.header.index));
                Some(IfAddress {
                    interface,
                    address,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    /// Creates the bridge with the CIDR's first address, or checks the existing one, and brings
    /// it up.
    pub(crate) async fn ensure_bridge(
        &self,
        name: &str,
        cidr: &Ipv4Cidr,
        mtu: u32,
    ) -> Result<(), NetworkError> {
        let wanted = format!("{}/{}", cidr.gateway(), cidr.prefix_len());
        let endpoint = format!("{}/32", super::ENDPOINT_ADDRESS);
        match self.link(name).await? {
            Some(link) if link_kind(&link) != Some(InfoKind::Bridge) => {
                return Err(NetworkError::BridgeConflict {
                    bridge: name.to_owned(),
                    found: "an interface that is not a bridge".to_owned(),
                    wanted,
                });
            }
            Some(_) => {}
            None => {
                let msg = LinkBridge::new(name).mtu(mtu).build();
                match self.handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(self.err("create bridge", name, e)),
                }
            }
        }
        let index = self.index(name).await?;
        let found: Vec<String> = self
            .addresses()
            .await?
            .into_iter()
            .filter(|a| a.interface == name)
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect();
        if found.iter().any(|f| *f != wanted && *f != endpoint) {
            return Err(NetworkError::BridgeConflict {
                bridge: name.to_owned(),
                found: found.join(", "),
                wanted,
            });
        }
        // The gateway, and the agent's endpoint that tasks reach through it.
        for (address, prefix_len, what) in [
            (
                cidr.gateway(),
                cidr.prefix_len(),
                "add the gateway address to",
            ),
            (super::ENDPOINT_ADDRESS, 32, "add the endpoint address to"),
        ] {
            if found.contains(&format!("{address}/{prefix_len}")) {
                continue;
            }
            match self
                .handle
                .address()
                .add(index, IpAddr::V4(address), prefix_len)
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(e) => return Err(self.err(what, name, e)),
            }
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| self.err("bring up", name, e))
    }

    /// Creates the veth pair `host_if`/`peer` with `peer` made directly inside `task_ns` (no
    /// move, no rename), and attaches `host_if` to the bridge (hairpin on, up, alias naming its
    /// task).
    pub(crate) async fn add_veth(
        &self,
        pair: &VethPair<'_>,
        task_ns: &NetNs,
    ) -> Result<(), NetworkError> {
        let VethPair {
            host_if,
            peer,
            peer_mac,
            alias,
            bridge,
            mtu,
        } = *pair;
        let bridge_index = self.index(bridge).await?;
        let ns_file =
            std::fs::File::open(task_ns.path()).map_err(|error| NetworkError::Namespace {
                what: "open",
                path: task_ns.path().to_owned(),
                error,
            })?;
        let peer_msg = LinkUnspec::new_with_name(peer)
            .setns_by_fd(ns_file.as_raw_fd())
            .mtu(mtu)
            .address(peer_mac.to_vec())
            .build();
        let msg = LinkVeth::new(host_if, peer)
            .mtu(mtu)
            .alias(alias)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| self.err("create veth pair", host_if, e))?;
        let host_index = self.index(host_if).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge_index)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| self.err("attach to the bridge", host_if, e))?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| self.err("turn on hairpin mode on", host_if, e))?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(host_index).up().build())
            .execute()
            .await
            .map_err(|e| self.err("bring up", host_if, e))
    }

    /// Deletes the link `name`; an absent link is not an error.
    pub(crate) async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
            Err(e) => Err(self.err("delete", name, e)),
        }
    }

    /// The name of the link whose hardware address is `mac`.
    pub(crate) async fn link_by_mac(&self, mac: &[u8; 6]) -> Result<Option<String>, NetworkError> {
        Ok(self
            .links()
            .await?
            .iter()
            .find(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Address(m) if m.as_slice() == mac))
            })
            .and_then(link_name))
    }

    /// What the ENI refusals look at of the link named `name`.
    pub(crate) async fn host_link(&self, name: &str) -> Result<HostLink, NetworkError> {
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| self.err("find", name, "no such interface"))?;
        let index = link.header.index;
        let kind = if link.header.flags.contains(LinkFlags::Loopback) {
            LinkKind::Loopback
        } else {
            match link_kind(&link) {
                Some(InfoKind::Bridge) => LinkKind::Bridge,
                Some(InfoKind::Veth) => LinkKind::Veth,
                _ => LinkKind::Other,
            }
        };
        let addresses = self
            .addresses()
            .await?
            .into_iter()
            .filter(|a| a.interface == name)
            .map(|a| a.address)
            .collect();
        let routes: Vec<_> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list the routes of", name, e))?;
        let default_route = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && r.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index))
        });
        Ok(HostLink {
            name: name.to_owned(),
            kind,
            alias: link_alias(&link),
            addresses,
            default_route,
        })
    }

    /// Renames `name` (down, in this namespace) and moves it into `target`.
    pub(crate) async fn move_link(
        &self,
        name: &str,
        new_name: &str,
        target: &NetNs,
    ) -> Result<(), NetworkError> {
        let index = self.index(name).await?;
        let file = std::fs::File::open(target.path()).map_err(|error| NetworkError::Namespace {
            what: "open",
            path: target.path().to_owned(),
            error,
        })?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(|e| self.err("bring down", name, e))?;
        if name != new_name {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).name(new_name).build())
                .execute()
                .await
                .map_err(|e| self.err("rename", name, e))?;
        }
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_fd(file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| self.err("move out of this namespace", new_name, e))
    }

    /// Inside a task's namespace: renames `name` to `new_name`, sets its MTU, address and up,
    /// brings `lo` up, and routes everything through `gateway`.
    pub(crate) async fn configure_task_interface(
        &self,
        name: &str,
        new_name: &str,
        plan: &IfPlan,
    ) -> Result<(), NetworkError> {
        let IfPlan {
            address,
            prefix_len,
            gateway,
            mtu,
            default_route,
            block_instance_metadata,
        } = *plan;
        let index = self.index(name).await?;
        let mut rename = LinkUnspec::new_with_index(index).mtu(mtu);
        if name != new_name {
            rename = rename.name(new_name);
        }
        self.handle
            .link()
            .set(rename.build())
            .execute()
            .await
            .map_err(|e| self.err("rename and set the mtu of", name, e))?;
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(address), prefix_len)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(self.err("add the task address to", new_name, e)),
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| self.err("bring up", new_name, e))?;
        let lo = self.index("lo").await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(|e| self.err("bring up", "lo", e))?;
        let (route, what) = if default_route {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(index)
                .build();
            (route, "add the default route through")
        } else {
            // On link: the bridge answers ARP for the endpoint address it carries.
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(super::ENDPOINT_ADDRESS, 32)
                .output_interface(index)
                .pref_source(address)
                .scope(RouteScope::Link)
                .build();
            (route, "add the endpoint route through")
        };
        match self.handle.route().add(route).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(self.err(what, new_name, e)),
        }
        if block_instance_metadata {
            self.prohibit_instance_metadata(new_name).await?;
        }
        Ok(())
    }

    /// Inside a task's namespace: `prohibit` routes for the instance metadata service, so a
    /// connection to it fails at once with EACCES whatever interface the task has. Without
    /// IPv6 in the kernel there is nothing to route there, and so no IPv6 route.
    async fn prohibit_instance_metadata(&self, interface: &str) -> Result<(), NetworkError> {
        let v4 = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(super::INSTANCE_METADATA_ADDRESS, 32)
            .kind(RouteType::Prohibit)
            .build();
        match self.handle.route().add(v4).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => {
                return Err(self.err("refuse the instance metadata service beside", interface, e));
            }
        }
        let v6 = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(super::INSTANCE_METADATA_ADDRESS_V6, 128)
            .kind(RouteType::Prohibit)
            .build();
        match self.handle.route().add(v6).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(EEXIST | EAFNOSUPPORT)) => Ok(()),
            Err(e) => Err(self.err(
                "refuse the IPv6 instance metadata service beside",
                interface,
                e,
            )),
        }
    }
}

/// The kind of a host link, as far as the ENI refusals care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Bridge,
    Veth,
    Loopback,
    Other,
}

/// A host link an ENI attachment names, with what the refusals look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostLink {
    pub(crate) name: String,
    pub(crate) kind: LinkKind,
    pub(crate) alias: Option<String>,
    /// Its IPv4 addresses.
    pub(crate) addresses: Vec<Ipv4Addr>,
    /// The host's default route leaves through it.
    pub(crate) default_route: bool,
}

/// A veth pair to create: the host side on a bridge, the peer inside a task's namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VethPair<'a> {
    pub(crate) host_if: &'a str,
    pub(crate) peer: &'a str,
    pub(crate) peer_mac: [u8; 6],
    /// The host side's alias (names the task, for repair).
    pub(crate) alias: &'a str,
    pub(crate) bridge: &'a str,
    pub(crate) mtu: u32,
}

/// A link's name.
pub(crate) fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// A link's alias.
pub(crate) fn link_alias(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(n) => Some(n.clone()),
        _ => None,
    })
}

fn link_kind(link: &LinkMessage) -> Option<InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    })
}

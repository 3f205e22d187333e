//! What a task definition's network mode asks for, as pure plans the driver sets up through
//! the `TaskNetworking` seam (`crate::network`), and what is reported of the result:
//!
//! - `awsvpc`: one namespace for the task (named by its ID), joined by every container; a veth
//!   on the bridge with an address from the agent's IPAM, or the ENI of the assignment.
//! - `bridge`: one namespace per container (named `<task>.<index>`), each with its own veth,
//!   address and DNAT port mappings, as Docker's bridge network; `links` resolve through the
//!   linking container's hosts file.
//! - `host`: the host's namespace; `none`: a namespace with only loopback.
//!
//! Every container that joins a namespace finds the agent's task endpoint through it, at the
//! URL in [`METADATA_ENV`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use berth_proto::v1::{ContainerDefinition, NetworkAttachment, NetworkBinding, TaskDefinition};
use berth_runtime::{
    DnsConfig, ENDPOINT_ADDRESS, Ipv4Cidr, MacAddr, NetworkError, PortBinding, PortRequest,
    Protocol, TaskInterface, TaskNetwork, TaskNetworkSpec,
};

use super::error::{AttachmentProblem, InputError, NetworkProblem};

/// The variable that gives each container its metadata URL, as on ECS.
pub(crate) const METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// The metadata URL of a container, as its task sees it: its endpoint ID is the secret part.
pub(crate) fn metadata_uri(endpoint_id: &str) -> String {
    format!("http://{ENDPOINT_ADDRESS}/v4/{endpoint_id}")
}

/// The task a namespace belongs to (awsvpc: its name; bridge: `<task>.<index>`).
pub(crate) fn task_of_namespace(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((task, index)) if index.bytes().all(|b| b.is_ascii_digit()) => task,
        _ => name,
    }
}

/// The network modes of ECS on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Awsvpc,
    Bridge,
    Host,
    None,
}

impl Mode {
    /// The mode of a definition; empty means bridge, as on ECS for Linux.
    pub(crate) fn of(def: &TaskDefinition) -> Result<Mode, InputError> {
        match def.network_mode.as_str() {
            "awsvpc" => Ok(Mode::Awsvpc),
            "bridge" | "" => Ok(Mode::Bridge),
            "host" => Ok(Mode::Host),
            "none" => Ok(Mode::None),
            other => Err(InputError::UnknownNetworkMode(other.to_owned())),
        }
    }
}

/// The namespace name of a bridge-mode container: the task's ID and the container's index.
fn container_netns(task_id: &str, index: usize) -> String {
    format!("{task_id}.{index}")
}

/// Every namespace the agent makes for a task (what teardown and repair act on).
pub(crate) fn namespaces(task_id: &str, def: &TaskDefinition) -> Vec<String> {
    match Mode::of(def) {
        Ok(Mode::Awsvpc) => vec![task_id.to_owned()],
        Ok(Mode::Bridge) => def
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.disable_networking)
            .map(|(i, _)| container_netns(task_id, i))
            .collect(),
        _ => Vec::new(),
    }
}

/// A host name from `seed`: its first 12 letters and digits (as Docker's short container ID),
/// lowercased; `task` when it has none.
pub(crate) fn hostname_from(seed: &str) -> String {
    let name: String = seed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    if name.is_empty() {
        "task".to_owned()
    } else {
        name
    }
}

/// The name servers and search domains of the host's resolv.conf that a task can use: loopback
/// resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq) are unreachable from a task's
/// namespace and are left out, as Docker does.
pub(crate) fn host_dns(resolv_conf: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !ip.is_loopback()
                {
                    dns.servers.push(ip);
                }
            }
            Some("search") | Some("domain") => {
                dns.search_domains = words.map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    dns
}

/// What one namespace of a task is set up with, and which containers join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) spec: TaskNetworkSpec,
    /// Indexes of the containers that join the namespace.
    pub(crate) containers: Vec<usize>,
    /// For bridge mode: (name, alias) of the containers linked from this one.
    pub(crate) links: Vec<(usize, String)>,
}

/// The namespaces a task needs, in set-up order. `host` is the host's resolv.conf settings.
pub(crate) fn plan(
    task_id: &str,
    def: &TaskDefinition,
    attachment: Option<&NetworkAttachment>,
    host: &DnsConfig,
) -> Result<Vec<Plan>, InputError> {
    match Mode::of(def)? {
        Mode::Host | Mode::None => Ok(Vec::new()),
        Mode::Awsvpc => {
            let interface = match attachment {
                Some(a) if !a.mac_address.is_empty() => eni(a)?,
                _ => TaskInterface::Veth,
            };
            Ok(vec![Plan {
                spec: TaskNetworkSpec {
                    task: task_id.to_owned(),
                    interface,
                    ports: Vec::new(),
                    dns: DnsConfig {
                        hostname: hostname_from(task_id),
                        ..host.clone()
                    },
                },
                containers: def
                    .containers
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.disable_networking)
                    .map(|(i, _)| i)
                    .collect(),
                links: Vec::new(),
            }])
        }
        Mode::Bridge => def
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.disable_networking)
            .map(|(i, c)| {
                let name = container_netns(task_id, i);
                Ok(Plan {
                    spec: TaskNetworkSpec {
                        task: name.clone(),
                        interface: TaskInterface::Veth,
                        ports: port_requests(c)?,
                        dns: container_dns(c, host, &name)?,
                    },
                    containers: vec![i],
                    links: links(def, c)?,
                })
            })
            .collect(),
    }
}

/// The ENI of an assignment, checked.
fn eni(a: &NetworkAttachment) -> Result<TaskInterface, InputError> {
    let refuse = InputError::Attachment;
    let mac: MacAddr = a
        .mac_address
        .parse()
        .map_err(|e: NetworkError| refuse(AttachmentProblem::Mac(e)))?;
    let address: Ipv4Addr = a
        .private_ipv4_address
        .parse()
        .map_err(|_| refuse(AttachmentProblem::Address(a.private_ipv4_address.clone())))?;
    let subnet: Ipv4Cidr = a
        .subnet
        .parse()
        .map_err(|e: NetworkError| refuse(AttachmentProblem::Subnet(e)))?;
    let gateway: Ipv4Addr = a
        .gateway
        .parse()
        .map_err(|_| refuse(AttachmentProblem::Gateway(a.gateway.clone())))?;
    if !subnet.contains(address) {
        return Err(refuse(AttachmentProblem::NotInSubnet { address, subnet }));
    }
    Ok(TaskInterface::Eni {
        mac,
        address,
        prefix_len: subnet.prefix_len(),
        gateway,
    })
}

/// A container's network problem, as the task's.
fn refuse(c: &ContainerDefinition, problem: NetworkProblem) -> InputError {
    InputError::ContainerNetwork {
        container: c.name.clone(),
        problem,
    }
}

fn protocol(name: &str) -> Result<Protocol, NetworkProblem> {
    match name {
        "tcp" | "" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(NetworkProblem::Protocol(other.to_owned())),
    }
}

fn port_requests(c: &ContainerDefinition) -> Result<Vec<PortRequest>, InputError> {
    c.port_mappings
        .iter()
        .map(|m| {
            Ok(PortRequest {
                protocol: protocol(&m.protocol).map_err(|p| refuse(c, p))?,
                host_port: m.host_port,
                container_port: m.container_port,
            })
        })
        .collect()
}

/// A bridge-mode container's resolv.conf and hosts settings: its own name servers and search
/// domains where it gives them, the host's otherwise, and its extra hosts.
fn container_dns(
    c: &ContainerDefinition,
    host: &DnsConfig,
    name: &str,
) -> Result<DnsConfig, InputError> {
    let mut dns = host.clone();
    if !c.dns_servers.is_empty() {
        dns.servers = c
            .dns_servers
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| refuse(c, NetworkProblem::DnsServer(s.clone())))
            })
            .collect::<Result<_, _>>()?;
    }
    if !c.dns_search_domains.is_empty() {
        dns.search_domains = c.dns_search_domains.clone();
    }
    for h in &c.extra_hosts {
        let ip = h
            .ip_address
            .parse()
            .map_err(|_| refuse(c, NetworkProblem::ExtraHost(h.ip_address.clone())))?;
        dns.extra_hosts.push((h.hostname.clone(), ip));
    }
    dns.hostname = if c.hostname.is_empty() {
        hostname_from(&format!("{:x}", fnv1a(name)))
    } else {
        c.hostname.clone()
    };
    Ok(dns)
}

/// A stable 64-bit hash of a namespace name (FNV-1a), for generated host names.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The containers a container links to, by index, with the name it knows each by.
fn links(
    def: &TaskDefinition,
    c: &ContainerDefinition,
) -> Result<Vec<(usize, String)>, InputError> {
    c.links
        .iter()
        .map(|link| {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            let index = def
                .containers
                .iter()
                .position(|o| o.name == target && o.name != c.name)
                .ok_or_else(|| refuse(c, NetworkProblem::LinkUnknown(target.to_owned())))?;
            if def.containers[index].disable_networking {
                return Err(refuse(
                    c,
                    NetworkProblem::LinkWithoutNetwork(target.to_owned()),
                ));
            }
            Ok((index, alias.to_owned()))
        })
        .collect()
}

/// The hosts entries a container's links add: the linked container's alias and name.
pub(crate) fn link_hosts(
    def: &TaskDefinition,
    links: &[(usize, String)],
    address_of: impl Fn(usize) -> Option<Ipv4Addr>,
) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for (index, alias) in links {
        let Some(address) = address_of(*index) else {
            continue;
        };
        let name = &def.containers[*index].name;
        out.push((alias.clone(), IpAddr::V4(address)));
        if alias != name {
            out.push((name.clone(), IpAddr::V4(address)));
        }
    }
    out
}

/// The attachment reported for an awsvpc task.
pub(crate) fn attachment(net: &TaskNetwork) -> NetworkAttachment {
    let subnet = Ipv4Cidr::containing(net.address, net.prefix_len)
        .map(|c| c.to_string())
        .unwrap_or_default();
    NetworkAttachment {
        mac_address: net.mac.to_string(),
        private_ipv4_address: net.address.to_string(),
        subnet,
        gateway: net.gateway.to_string(),
        interface_name: net.interface.clone(),
    }
}

/// The bindings reported for a container's bound ports.
pub(crate) fn bindings(ports: &[PortBinding]) -> Vec<NetworkBinding> {
    ports
        .iter()
        .map(|p| NetworkBinding {
            bind_ip: "0.0.0.0".to_owned(),
            container_port: u32::from(p.container_port),
            host_port: u32::from(p.host_port),
            protocol: p.protocol.as_str().to_owned(),
        })
        .collect()
}

/// The bindings of a host-mode container: its ports are the host's.
pub(crate) fn host_mode_bindings(c: &ContainerDefinition) -> Vec<NetworkBinding> {
    c.port_mappings
        .iter()
        .map(|m| NetworkBinding {
            bind_ip: "0.0.0.0".to_owned(),
            container_port: m.container_port,
            host_port: if m.host_port == 0 {
                m.container_port
            } else {
                m.host_port
            },
            protocol: if m.protocol.is_empty() {
                "tcp".to_owned()
            } else {
                m.protocol.clone()
            },
        })
        .collect()
}

/// The live namespaces of tasks not yet released, for repair at start.
pub(crate) fn live_namespaces<'a>(
    tasks: impl IntoIterator<Item = (&'a str, &'a TaskDefinition)>,
) -> BTreeSet<String> {
    tasks
        .into_iter()
        .flat_map(|(id, def)| namespaces(id, def))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::PortMapping;

    fn def(mode: &str, names: &[&str]) -> TaskDefinition {
        TaskDefinition {
            network_mode: mode.into(),
            containers: names
                .iter()
                .map(|n| ContainerDefinition {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_absent_mode_is_bridge_and_unknown_ones_are_named() {
        assert_eq!(Mode::of(&def("", &[])).unwrap(), Mode::Bridge);
        assert_eq!(Mode::of(&def("awsvpc", &[])).unwrap(), Mode::Awsvpc);
        let e = Mode::of(&def("nat", &[])).unwrap_err().to_string();
        assert!(e.contains("\"nat\" is not known"), "{e}");
    }

    #[test]
    fn namespaces_per_mode() {
        let mut d = def("bridge", &["a", "b", "c"]);
        d.containers[1].disable_networking = true;
        assert_eq!(namespaces("t", &d), ["t.0", "t.2"]);
        assert_eq!(namespaces("t", &def("awsvpc", &["a", "b"])), ["t"]);
        assert!(namespaces("t", &def("host", &["a"])).is_empty());
        assert!(namespaces("t", &def("none", &["a"])).is_empty());
    }

    #[test]
    fn host_dns_leaves_out_loopback_resolvers() {
        let dns = host_dns(
            "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n\
             nameserver fd00::2\nsearch ec2.internal corp\noptions edns0\n",
        );
        let servers: Vec<String> = dns.servers.iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["10.0.0.2", "fd00::2"]);
        assert_eq!(dns.search_domains, ["ec2.internal", "corp"]);
        assert_eq!(host_dns(""), DnsConfig::default());
    }

    #[test]
    fn metadata_uris_use_the_link_local_address() {
        assert_eq!(metadata_uri("app"), "http://169.254.170.2/v4/app");
    }

    #[test]
    fn namespaces_name_their_task() {
        assert_eq!(task_of_namespace("5f0c-11.2"), "5f0c-11");
        assert_eq!(task_of_namespace("5f0c-11"), "5f0c-11");
        assert_eq!(task_of_namespace("a.b"), "a.b");
    }

    #[test]
    fn hostnames_are_short_and_valid() {
        assert_eq!(
            hostname_from("5F0C2A7E-1B2C-4D3E-8F90-123456789ABC"),
            "5f0c2a7e1b2c"
        );
        assert_eq!(hostname_from("--"), "task");
    }

    #[test]
    fn bridge_plans_carry_ports_dns_and_links() {
        let mut d = def("bridge", &["web", "db"]);
        d.containers[0].port_mappings = vec![PortMapping {
            container_port: 80,
            host_port: 0,
            protocol: String::new(),
        }];
        d.containers[0].links = vec!["db".into()];
        d.containers[0].dns_servers = vec!["1.1.1.1".into()];
        d.containers[0].hostname = "web".into();
        let host = host_dns("nameserver 10.0.0.2\nsearch corp\n");
        let plans = plan("t", &d, None, &host).unwrap();
        assert_eq!(plans.len(), 2);
        let web = &plans[0];
        assert_eq!(web.spec.task, "t.0");
        assert_eq!(web.spec.ports[0].protocol, Protocol::Tcp);
        assert_eq!(web.spec.dns.servers[0].to_string(), "1.1.1.1");
        assert_eq!(web.spec.dns.search_domains, ["corp"]);
        assert_eq!(web.spec.dns.hostname, "web");
        assert_eq!(web.links, [(1, "db".to_owned())]);
        assert_eq!(plans[1].spec.dns.servers[0].to_string(), "10.0.0.2");
        let hosts = link_hosts(&d, &web.links, |_| Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(hosts, [("db".to_owned(), "10.0.0.3".parse().unwrap())]);

        d.containers[0].links = vec!["web".into()];
        let e = plan("t", &d, None, &host).unwrap_err().to_string();
        assert!(e.contains("\"web\" is not another container"), "{e}");
        d.containers[0].links.clear();
        d.containers[0].port_mappings[0].protocol = "sctp".into();
        let e = plan("t", &d, None, &host).unwrap_err().to_string();
        assert!(e.contains("\"sctp\" is not supported"), "{e}");
    }

    #[test]
    fn a_bad_attachment_is_refused_by_what_is_wrong() {
        let d = def("awsvpc", &["a"]);
        let mut a = NetworkAttachment {
            mac_address: "0a:58:0a:01:00:05".into(),
            private_ipv4_address: "10.1.0.5".into(),
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            ..Default::default()
        };
        assert!(plan("t", &d, Some(&a), &DnsConfig::default()).is_ok());
        a.mac_address = "0a:58".into();
        let e = plan("t", &d, Some(&a), &DnsConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mac address"), "{e}");
        a.mac_address = "0a:58:0a:01:00:05".into();
        a.gateway = "gw".into();
        let e = plan("t", &d, Some(&a), &DnsConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway \"gw\""), "{e}");
    }
}

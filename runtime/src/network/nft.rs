//! The nftables rulesets Berth owns, rendering pure and applied by `nft -f -` inside the host
//! namespace, in one transaction each:
//!
//! - table `ip berth`: DNAT of mapped ports (per-task rules in chain `ports`, each commented
//!   with its task's name, so teardown deletes exactly that task's rules by handle), outbound
//!   masquerade, and the filter that confines tasks: to the host's own addresses a task reaches
//!   only the task endpoint and the ports of set `task_host_ports`; it never reaches the
//!   instance metadata service nor the destinations of sets `blocked` (address and TCP port)
//!   and `blocked_local_ports` (a TCP port on any address of the host): the scheduler. The
//!   forward path accepts tasks' traffic out, mapped ports in and replies; when Berth itself
//!   turned IPv4 forwarding on, it drops whatever else would be forwarded.
//! - table `bridge berth`: anti-spoofing. A frame entering the bridge from a task's veth must
//!   carry that task's MAC and IPv4 address (set `tasks`: veth, MAC, address; ARP too), and be
//!   IPv4 or ARP.
//!
//! Every decision on the hot path is one set lookup; flows already accepted skip the filter
//! through conntrack's established state. The hooked chains and the sets are rebuilt at every
//! start; deleting both tables removes every trace.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use super::MacAddr;
use super::error::NetworkError;
use super::ipam::{Ipv4Cidr, PortBinding};
use super::netns::{NetNs, run_in};

/// The table's family and name.
pub(crate) const TABLE: &str = "ip berth";
/// The anti-spoofing table's family and name (the same name, so both go together).
pub(crate) const BRIDGE_TABLE: &str = "bridge berth";
/// The chain holding every task's DNAT rules.
pub(crate) const PORTS_CHAIN: &str = "ports";
/// The instance metadata service of EC2 (and of most clouds), which holds the host role's
/// credentials.
pub const INSTANCE_METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// EC2's instance metadata service over IPv6 (Nitro instances).
pub const INSTANCE_METADATA_ADDRESS_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// What the base rulesets are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseRules<'a> {
    pub(crate) cidr: Ipv4Cidr,
    pub(crate) bridge: &'a str,
    pub(crate) masquerade: bool,
    /// Tasks never reach [`INSTANCE_METADATA_ADDRESS`].
    pub(crate) block_instance_metadata: bool,
    /// Ports (TCP and UDP) tasks may reach on the host's own addresses.
    pub(crate) task_host_ports: &'a BTreeSet<u16>,
    /// Berth turned IPv4 forwarding on: nothing but tasks' traffic is forwarded.
    pub(crate) owns_forwarding: bool,
    /// Destinations tasks never reach (the scheduler's).
    pub(crate) blocked: &'a [SocketAddrV4],
    /// Every task veth's identity, for the anti-spoofing set.
    pub(crate) identities: &'a [TaskIdentity],
}

/// Who may send from a task's veth: the host side's name, the task's MAC and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskIdentity {
    pub(crate) veth: String,
    pub(crate) mac: MacAddr,
    pub(crate) address: Ipv4Addr,
}

impl TaskIdentity {
    fn element(&self) -> String {
        format!("\"{}\" . {} . {}", self.veth, self.mac, self.address)
    }
}

/// Both base rulesets: the tables, their sets (refilled) and their hooked chains (recreated on
/// every start), and the per-task chain (never flushed, so restarting keeps the tasks' rules).
pub(crate) fn base_ruleset(r: &BaseRules<'_>) -> String {
    let (cidr, bridge) = (r.cidr, r.bridge);
    let endpoint = super::ENDPOINT_ADDRESS;
    let (port, listen) = (super::ENDPOINT_PORT, super::ENDPOINT_LISTEN_PORT);
    let mut s = format!(
        "add table {TABLE}\n\
         add chain {TABLE} {PORTS_CHAIN}\n\
         add set {TABLE} task_host_ports {{ type inet_service; }}\n\
         add set {TABLE} blocked {{ type ipv4_addr . inet_service; }}\n\
         add set {TABLE} blocked_local_ports {{ type inet_service; }}\n\
         flush set {TABLE} task_host_ports\n"
    );
    if !r.task_host_ports.is_empty() {
        let ports: Vec<String> = r.task_host_ports.iter().map(u16::to_string).collect();
        s.push_str(&format!(
            "add element {TABLE} task_host_ports {{ {} }}\n",
            ports.join(", ")
        ));
    }
    s.push_str(&blocked_elements(r.blocked));
    s.push_str(&format!(
        "add chain {TABLE} input {{ type filter hook input priority filter; policy accept; }}\n\
         add chain {TABLE} task_to_host\n\
         add chain {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}\n\
         add chain {TABLE} task_out\n\
         add chain {TABLE} task_in\n\
         flush chain {TABLE} input\n\
         flush chain {TABLE} task_to_host\n\
         flush chain {TABLE} forward\n\
         flush chain {TABLE} task_out\n\
         flush chain {TABLE} task_in\n\
         add rule {TABLE} input ip daddr {endpoint} iifname != {{ \"lo\", \"{bridge}\" }} drop\n\
         add rule {TABLE} input iifname \"{bridge}\" jump task_to_host\n\
         add rule {TABLE} task_to_host ct state established,related accept\n"
    ));
    let metadata = INSTANCE_METADATA_ADDRESS;
    let refuse = "reject with icmp type admin-prohibited";
    if r.block_instance_metadata {
        s.push_str(&format!(
            "add rule {TABLE} task_to_host ip daddr {metadata} {refuse}\n"
        ));
    }
    s.push_str(&format!(
        "add rule {TABLE} task_to_host tcp dport @blocked_local_ports {refuse}\n\
         add rule {TABLE} task_to_host ip daddr . tcp dport @blocked {refuse}\n\
         add rule {TABLE} task_to_host ip daddr {endpoint} tcp dport {listen} accept\n\
         add rule {TABLE} task_to_host meta l4proto {{ tcp, udp }} th dport @task_host_ports accept\n\
         add rule {TABLE} task_to_host {refuse}\n\
         add rule {TABLE} forward iifname \"{bridge}\" jump task_out\n\
         add rule {TABLE} forward oifname \"{bridge}\" jump task_in\n"
    ));
    if r.owns_forwarding {
        // Forwarding is on only because of Berth: it forwards nothing else.
        s.push_str(&format!("add rule {TABLE} forward drop\n"));
    }
    s.push_str(&format!(
        "add rule {TABLE} task_out ct state established,related accept\n"
    ));
    if r.block_instance_metadata {
        s.push_str(&format!(
            "add rule {TABLE} task_out ip daddr {metadata} {refuse}\n"
        ));
    }
    s.push_str(&format!(
        "add rule {TABLE} task_out ip daddr . tcp dport @blocked {refuse}\n\
         add rule {TABLE} task_out accept\n\
         add rule {TABLE} task_in ct state established,related accept\n\
         add rule {TABLE} task_in ct status dnat accept\n\
         add rule {TABLE} task_in drop\n\
         add chain {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {TABLE} prerouting\n\
         flush chain {TABLE} output\n\
         flush chain {TABLE} postrouting\n\
         add rule {TABLE} prerouting iifname \"{bridge}\" ip daddr {endpoint} tcp dport {port} dnat to {endpoint}:{listen}\n\
         add rule {TABLE} prerouting fib daddr type local jump {PORTS_CHAIN}\n\
         add rule {TABLE} output ip daddr {endpoint} tcp dport {port} dnat to {endpoint}:{listen}\n\
         add rule {TABLE} output ip daddr != 127.0.0.0/8 fib daddr type local jump {PORTS_CHAIN}\n\
         add rule {TABLE} postrouting ip saddr {cidr} ip daddr {cidr} ct status dnat masquerade\n"
    ));
    if r.masquerade {
        s.push_str(&format!(
            "add rule {TABLE} postrouting ip saddr {cidr} ip daddr != {cidr} masquerade\n"
        ));
    }
    s.push_str(&bridge_ruleset(r.identities));
    s
}

/// Table `bridge berth`: frames from a task's veth (every one named with Berth's prefix) carry
/// their task's MAC and address, in IPv4 and ARP alike; nothing else enters a bridge from a
/// task. (Not every kernel matches a port's bridge, `meta ibrname`; the name prefix serves.)
fn bridge_ruleset(identities: &[TaskIdentity]) -> String {
    let port = format!("iifname \"{}*\"", super::VETH_PREFIX);
    let mut s = format!(
        "add table {BRIDGE_TABLE}\n\
         add set {BRIDGE_TABLE} tasks {{ type ifname . ether_addr . ipv4_addr; }}\n\
         flush set {BRIDGE_TABLE} tasks\n"
    );
    if !identities.is_empty() {
        let elements: Vec<String> = identities.iter().map(TaskIdentity::element).collect();
        s.push_str(&format!(
            "add element {BRIDGE_TABLE} tasks {{ {} }}\n",
            elements.join(", ")
        ));
    }
    s.push_str(&format!(
        "add chain {BRIDGE_TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n\
         flush chain {BRIDGE_TABLE} prerouting\n\
         add rule {BRIDGE_TABLE} prerouting {port} ether type ip iifname . ether saddr . ip saddr != @tasks drop\n\
         add rule {BRIDGE_TABLE} prerouting {port} ether type arp iifname . ether saddr . arp saddr ip != @tasks drop\n\
         add rule {BRIDGE_TABLE} prerouting {port} ether type arp iifname . arp saddr ether . arp saddr ip != @tasks drop\n\
         add rule {BRIDGE_TABLE} prerouting {port} ether type != {{ ip, arp }} drop\n"
    ));
    s
}

/// Refills the sets of destinations tasks never reach: an address of this host's loopback (or
/// the unspecified address) blocks the port on every address of the host.
pub(crate) fn blocked_elements(blocked: &[SocketAddrV4]) -> String {
    let mut s = format!("flush set {TABLE} blocked\nflush set {TABLE} blocked_local_ports\n");
    let (local, remote): (Vec<&SocketAddrV4>, Vec<&SocketAddrV4>) = blocked
        .iter()
        .partition(|d| d.ip().is_loopback() || d.ip().is_unspecified());
    let local: BTreeSet<u16> = local.iter().map(|d| d.port()).collect();
    let remote: BTreeSet<String> = remote
        .iter()
        .map(|d| format!("{} . {}", d.ip(), d.port()))
        .collect();
    if !local.is_empty() {
        let ports: Vec<String> = local.iter().map(u16::to_string).collect();
        s.push_str(&format!(
            "add element {TABLE} blocked_local_ports {{ {} }}\n",
            ports.join(", ")
        ));
    }
    if !remote.is_empty() {
        s.push_str(&format!(
            "add element {TABLE} blocked {{ {} }}\n",
            remote.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    s
}

/// Adds a task veth's identity to the anti-spoofing set (idempotent).
pub(crate) fn add_identity(identity: &TaskIdentity) -> String {
    format!(
        "add element {BRIDGE_TABLE} tasks {{ {} }}\n",
        identity.element()
    )
}

/// Removes a task veth's identity from the anti-spoofing set, present or not (nft 1.0.6 has no
/// `destroy`: adding first makes the delete always find it, in the same transaction).
pub(crate) fn remove_identity(identity: &TaskIdentity) -> String {
    let e = identity.element();
    format!(
        "add element {BRIDGE_TABLE} tasks {{ {e} }}\n\
         delete element {BRIDGE_TABLE} tasks {{ {e} }}\n"
    )
}

/// Replaces `task`'s rules (`stale` handles) by one DNAT rule per binding, in one transaction.
pub(crate) fn task_rules(
    task: &str,
    address: Ipv4Addr,
    ports: &[PortBinding],
    stale: &[u64],
) -> String {
    let mut s = delete_rules(stale);
    for p in ports {
        s.push_str(&format!(
            "add rule {TABLE} {PORTS_CHAIN} {proto} dport {host} dnat to {address}:{container} comment \"{task}\"\n",
            proto = p.protocol,
            host = p.host_port,
            container = p.container_port,
        ));
    }
    s
}

/// Deletes rules of chain `ports` by handle.
pub(crate) fn delete_rules(handles: &[u64]) -> String {
    handles
        .iter()
        .map(|h| format!("delete rule {TABLE} {PORTS_CHAIN} handle {h}\n"))
        .collect()
}

/// A rule of chain `ports`: its handle and comment (the task's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NftRule {
    pub(crate) handle: u64,
    pub(crate) comment: Option<String>,
}

/// Parses `nft -j list chain ip berth ports`.
pub(crate) fn parse_rules(json: &str) -> Result<Vec<NftRule>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable nft json: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or_else(|| "nft json has no \"nftables\" array".to_owned())?;
    items
        .iter()
        .filter_map(|i| i.get("rule"))
        .map(|r| {
            let handle = r
                .get("handle")
                .and_then(|h| h.as_u64())
                .ok_or_else(|| format!("nft rule without a handle: {r}"))?;
            let comment = r.get("comment").and_then(|c| c.as_str()).map(str::to_owned);
            Ok(NftRule { handle, comment })
        })
        .collect()
}

/// Runs `nft` with `args` and `stdin` inside `ns`; stdout on success, stderr in the error.
pub(crate) fn run_nft(
    ns: Option<&NetNs>,
    args: &[&str],
    stdin: &str,
) -> Result<String, NetworkError> {
    let namespace = ns.map_or_else(
        || "of the agent".to_owned(),
        |n| n.path().display().to_string(),
    );
    let fail = |message: String| NetworkError::Nft {
        namespace: namespace.clone(),
        message,
    };
    let out = run_in(ns, || -> std::io::Result<std::process::Output> {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        child.wait_with_output()
    })?
    .map_err(|e| fail(format!("cannot run nft (install nftables): {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "nft {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ipam::Protocol;

    fn rules<'a>(ports: &'a BTreeSet<u16>, identities: &'a [TaskIdentity]) -> BaseRules<'a> {
        BaseRules {
            cidr: "10.213.0.0/24".parse().unwrap(),
            bridge: "berth0",
            masquerade: true,
            block_instance_metadata: true,
            task_host_ports: ports,
            owns_forwarding: true,
            blocked: &[],
            identities,
        }
    }

    #[test]
    fn base_ruleset_owns_only_its_tables() {
        let ports = BTreeSet::new();
        let with = base_ruleset(&rules(&ports, &[]));
        assert!(
            with.lines()
                .all(|l| l.contains(" ip berth") || l.contains(" bridge berth")),
            "{with}"
        );
        assert!(!with.contains("flush ruleset"));
        assert!(!with.contains(&format!("flush chain {TABLE} {PORTS_CHAIN}")));
        assert!(with.contains("ip saddr 10.213.0.0/24 ip daddr != 10.213.0.0/24 masquerade"));
        assert!(
            with.contains(r#"ip daddr 169.254.170.2 iifname != { "lo", "berth0" } drop"#),
            "the endpoint is reached from tasks and the host only"
        );
        assert!(
            with.contains(r#"prerouting iifname "berth0" ip daddr 169.254.170.2 tcp dport 80 dnat to 169.254.170.2:51679"#),
            "{with}"
        );
        let mut r = rules(&ports, &[]);
        r.masquerade = false;
        let without = base_ruleset(&r);
        assert!(!without.contains("ip daddr != 10.213.0.0/24 masquerade"));
        assert!(
            without.contains("ct status dnat masquerade"),
            "hairpin stays"
        );
    }

    #[test]
    fn tasks_reach_only_the_endpoint_and_allowed_ports_of_the_host() {
        let ports = BTreeSet::from([53, 8125]);
        let s = base_ruleset(&rules(&ports, &[]));
        let to_host: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("add rule ip berth task_to_host "))
            .collect();
        assert_eq!(
            to_host,
            [
                "ct state established,related accept",
                "ip daddr 169.254.169.254 reject with icmp type admin-prohibited",
                "tcp dport @blocked_local_ports reject with icmp type admin-prohibited",
                "ip daddr . tcp dport @blocked reject with icmp type admin-prohibited",
                "ip daddr 169.254.170.2 tcp dport 51679 accept",
                "meta l4proto { tcp, udp } th dport @task_host_ports accept",
                "reject with icmp type admin-prohibited",
            ]
        );
        assert!(s.contains("add rule ip berth input iifname \"berth0\" jump task_to_host\n"));
        assert!(s.contains("add element ip berth task_host_ports { 53, 8125 }\n"));
        assert!(
            s.contains("flush set ip berth task_host_ports\n"),
            "rebuilt at start"
        );
    }

    #[test]
    fn forward_path_accepts_only_tasks_traffic() {
        let ports = BTreeSet::new();
        let s = base_ruleset(&rules(&ports, &[]));
        let chain = |name: &str| -> Vec<String> {
            let prefix = format!("add rule ip berth {name} ");
            s.lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
                .collect()
        };
        assert_eq!(
            chain("forward"),
            [
                "iifname \"berth0\" jump task_out",
                "oifname \"berth0\" jump task_in",
                "drop"
            ]
        );
        assert_eq!(
            chain("task_out"),
            [
                "ct state established,related accept",
                "ip daddr 169.254.169.254 reject with icmp type admin-prohibited",
                "ip daddr . tcp dport @blocked reject with icmp type admin-prohibited",
                "accept",
            ]
        );
        assert_eq!(
            chain("task_in"),
            [
                "ct state established,related accept",
                "ct status dnat accept",
                "drop"
            ]
        );
        let mut r = rules(&ports, &[]);
        r.owns_forwarding = false;
        r.block_instance_metadata = false;
        let s = base_ruleset(&r);
        assert!(
            !s.contains("forward drop"),
            "another owner's forwarding stays"
        );
        assert!(!s.contains("169.254.169.254"), "{s}");
    }

    #[test]
    fn blocked_destinations_split_by_whether_they_are_this_host() {
        let s = blocked_elements(&[
            "127.0.0.1:7700".parse().unwrap(),
            "10.0.0.9:443".parse().unwrap(),
            "10.0.0.8:443".parse().unwrap(),
            "0.0.0.0:7701".parse().unwrap(),
        ]);
        assert_eq!(
            s,
            "flush set ip berth blocked\n\
             flush set ip berth blocked_local_ports\n\
             add element ip berth blocked_local_ports { 7700, 7701 }\n\
             add element ip berth blocked { 10.0.0.8 . 443, 10.0.0.9 . 443 }\n"
        );
        assert_eq!(
            blocked_elements(&[]),
            "flush set ip berth blocked\nflush set ip berth blocked_local_ports\n"
        );
    }

    #[test]
    fn anti_spoofing_checks_mac_and_address_of_every_bridge_port() {
        let ports = BTreeSet::new();
        let id = TaskIdentity {
            veth: "bv0123456789a".to_owned(),
            mac: MacAddr([0x02, 0x42, 10, 213, 0, 2]),
            address: Ipv4Addr::new(10, 213, 0, 2),
        };
        let s = base_ruleset(&rules(&ports, std::slice::from_ref(&id)));
        assert!(s.contains(
            "add element bridge berth tasks { \"bv0123456789a\" . 02:42:0a:d5:00:02 . 10.213.0.2 }\n"
        ));
        for rule in [
            "iifname \"bv*\" ether type ip iifname . ether saddr . ip saddr != @tasks drop",
            "iifname \"bv*\" ether type arp iifname . arp saddr ether . arp saddr ip != @tasks drop",
            "iifname \"bv*\" ether type != { ip, arp } drop",
        ] {
            assert!(s.contains(rule), "{rule}\n{s}");
        }
        assert_eq!(
            remove_identity(&id),
            "add element bridge berth tasks { \"bv0123456789a\" . 02:42:0a:d5:00:02 . 10.213.0.2 }\n\
             delete element bridge berth tasks { \"bv0123456789a\" . 02:42:0a:d5:00:02 . 10.213.0.2 }\n"
        );
    }

    #[test]
    fn task_rules_replace_stale_handles_and_name_the_task() {
        let ports = [
            PortBinding {
                protocol: Protocol::Tcp,
                host_port: 8080,
                container_port: 80,
            },
            PortBinding {
                protocol: Protocol::Udp,
                host_port: 5353,
                container_port: 53,
            },
        ];
        let s = task_rules("t-1", Ipv4Addr::new(10, 213, 0, 2), &ports, &[7, 9]);
        assert_eq!(
            s,
            "delete rule ip berth ports handle 7\n\
             delete rule ip berth ports handle 9\n\
             add rule ip berth ports tcp dport 8080 dnat to 10.213.0.2:80 comment \"t-1\"\n\
             add rule ip berth ports udp dport 5353 dnat to 10.213.0.2:53 comment \"t-1\"\n"
        );
        assert_eq!(task_rules("t", Ipv4Addr::LOCALHOST, &[], &[]), "");
    }

    #[test]
    fn parses_nft_json_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"chain": {"family": "ip", "table": "berth", "name": "ports", "handle": 2}},
            {"rule": {"family": "ip", "table": "berth", "chain": "ports", "handle": 11,
              "comment": "t-1", "expr": []}},
            {"rule": {"family": "ip", "table": "berth", "chain": "ports", "handle": 12, "expr": []}}]}"#;
        assert_eq!(
            parse_rules(json).unwrap(),
            vec![
                NftRule {
                    handle: 11,
                    comment: Some("t-1".to_owned())
                },
                NftRule {
                    handle: 12,
                    comment: None
                },
            ]
        );
        assert!(parse_rules("{}").is_err());
        assert!(parse_rules("nope").is_err());
    }
}

//! The nftables ruleset Berth owns (table `ip berth`): rendering is pure; `nft -f -` applies it
//! inside the host namespace. Per-task DNAT rules sit in chain `ports`, each commented with its
//! task's name, so teardown deletes exactly that task's rules by handle.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::error::NetworkError;
use super::ipam::{Ipv4Cidr, PortBinding};
use super::netns::{NetNs, run_in};

/// The table's family and name.
pub(crate) const TABLE: &str = "ip berth";
/// The chain holding every task's DNAT rules.
pub(crate) const PORTS_CHAIN: &str = "ports";

/// The base ruleset: the table, its hooked chains (recreated on every start), and the per-task
/// chain (never flushed, so restarting keeps the tasks' rules).
pub(crate) fn base_ruleset(cidr: &Ipv4Cidr, bridge: &str, masquerade: bool) -> String {
    let endpoint = super::ENDPOINT_ADDRESS;
    let (port, listen) = (super::ENDPOINT_PORT, super::ENDPOINT_LISTEN_PORT);
    let mut s = format!(
        "add table {TABLE}\n\
         add chain {TABLE} {PORTS_CHAIN}\n\
         add chain {TABLE} input {{ type filter hook input priority filter; policy accept; }}\n\
         flush chain {TABLE} input\n\
         add rule {TABLE} input ip daddr {endpoint} iifname != {{ \"lo\", \"{bridge}\" }} drop\n\
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
    );
    if masquerade {
        s.push_str(&format!(
            "add rule {TABLE} postrouting ip saddr {cidr} ip daddr != {cidr} masquerade\n"
        ));
    }
    s
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

    #[test]
    fn base_ruleset_owns_only_its_table() {
        let cidr: Ipv4Cidr = "10.213.0.0/24".parse().unwrap();
        let with = base_ruleset(&cidr, "berth0", true);
        assert!(with.lines().all(|l| l.contains(" ip berth")), "{with}");
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
        let without = base_ruleset(&cidr, "berth0", false);
        assert!(!without.contains("ip daddr != 10.213.0.0/24 masquerade"));
        assert!(
            without.contains("ct status dnat masquerade"),
            "hairpin stays"
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

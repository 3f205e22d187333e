//! Which host interfaces an ENI attachment may move into a task: never one the host itself
//! uses (its default route, any address), nor a bridge, a veth, loopback or anything Berth
//! made, nor one another task holds; and, when the agent lists MACs, only one of those. Pure:
//! the refusal's rule is worded for the task's stop reason.

use super::MacAddr;
use super::host::VETH_ALIAS_PREFIX;
use super::ipam::Allocations;
use super::netlink::{HostLink, LinkKind};

/// Why `link` (with `mac`) must not move into `task`, if it must not.
pub(crate) fn refusal(
    link: &HostLink,
    mac: MacAddr,
    task: &str,
    state: &Allocations,
    bridge: &str,
    allowed: &[MacAddr],
) -> Option<String> {
    let wanted = mac.to_string();
    if let Some((other, _)) = state
        .tasks
        .iter()
        .find(|(name, r)| name.as_str() != task && r.eni.as_ref().is_some_and(|e| e.mac == wanted))
    {
        return Some(format!("it is in use by task {other}"));
    }
    let berths = link.name == bridge
        || link.name.starts_with(super::VETH_PREFIX)
        || link
            .alias
            .as_deref()
            .is_some_and(|a| a.starts_with(VETH_ALIAS_PREFIX));
    if berths {
        return Some("berth created it (the task bridge or a task's veth)".to_owned());
    }
    if link.kind == LinkKind::Loopback {
        return Some("it is the loopback interface".to_owned());
    }
    if link.default_route {
        return Some("it carries the host's default route".to_owned());
    }
    if !link.addresses.is_empty() {
        let list: Vec<String> = link.addresses.iter().map(|a| a.to_string()).collect();
        return Some(format!(
            "the host uses it: it has address {} (an eni for a task is attached without addresses)",
            list.join(", ")
        ));
    }
    match link.kind {
        LinkKind::Bridge => Some("it is a bridge".to_owned()),
        LinkKind::Veth => Some("it is a veth".to_owned()),
        LinkKind::Loopback => Some("it is the loopback interface".to_owned()),
        LinkKind::Other if !allowed.is_empty() && !allowed.contains(&mac) => {
            Some("its mac address is not in the agent's eni_allowed_macs".to_owned())
        }
        LinkKind::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ipam::{EniRecord, TaskRecord};

    fn link(name: &str, kind: LinkKind) -> HostLink {
        HostLink {
            name: name.to_owned(),
            kind,
            alias: None,
            addresses: Vec::new(),
            default_route: false,
        }
    }

    const MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 1, 0, 5]);

    fn check(l: &HostLink) -> Option<String> {
        refusal(l, MAC, "t1", &Allocations::default(), "berth0", &[])
    }

    #[test]
    fn an_unused_interface_moves() {
        assert_eq!(check(&link("ens6", LinkKind::Other)), None);
    }

    #[test]
    fn what_the_host_or_berth_uses_is_refused_with_its_rule() {
        let mut primary = link("ens5", LinkKind::Other);
        primary.default_route = true;
        primary.addresses = vec!["172.31.0.10".parse().unwrap()];
        assert_eq!(
            check(&primary).unwrap(),
            "it carries the host's default route"
        );
        primary.default_route = false;
        assert!(
            check(&primary)
                .unwrap()
                .contains("it has address 172.31.0.10")
        );
        assert!(
            check(&link("berth0", LinkKind::Bridge))
                .unwrap()
                .contains("berth created it")
        );
        assert!(
            check(&link("bv0123456789a", LinkKind::Veth))
                .unwrap()
                .contains("berth created it")
        );
        let mut aliased = link("renamed", LinkKind::Veth);
        aliased.alias = Some("berth-task:t9".to_owned());
        assert!(check(&aliased).unwrap().contains("berth created it"));
        assert_eq!(
            check(&link("docker0", LinkKind::Bridge)).unwrap(),
            "it is a bridge"
        );
        assert_eq!(
            check(&link("veth9", LinkKind::Veth)).unwrap(),
            "it is a veth"
        );
        assert_eq!(
            check(&link("lo", LinkKind::Loopback)).unwrap(),
            "it is the loopback interface"
        );
    }

    #[test]
    fn another_tasks_eni_and_unlisted_macs_are_refused() {
        let mut state = Allocations::default();
        state.tasks.insert(
            "t0".to_owned(),
            TaskRecord {
                eni: Some(EniRecord {
                    mac: MAC.to_string(),
                    host_name: "ens6".to_owned(),
                }),
                ..TaskRecord::default()
            },
        );
        let l = link("ens6", LinkKind::Other);
        assert_eq!(
            refusal(&l, MAC, "t1", &state, "berth0", &[]).unwrap(),
            "it is in use by task t0"
        );
        assert_eq!(
            refusal(&l, MAC, "t0", &state, "berth0", &[]),
            None,
            "its own"
        );
        let other = MacAddr([0x0a, 0, 0, 0, 0, 1]);
        assert!(
            refusal(&l, MAC, "t1", &Allocations::default(), "berth0", &[other])
                .unwrap()
                .contains("eni_allowed_macs")
        );
        assert_eq!(
            refusal(&l, MAC, "t1", &Allocations::default(), "berth0", &[MAC]),
            None
        );
    }
}

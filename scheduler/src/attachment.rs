//! Network attachments: the ENI a task is run with (awsvpc mode), its MAC address, IPv4
//! address, subnet and gateway. Pure parsing and checking, shared by the scheduler (which
//! refuses a bad RunTask) and berthctl (which refuses a bad flag before connecting).

use std::net::Ipv4Addr;

use berth_proto::v1 as pb;
use ipnet::Ipv4Net;

/// Why a RunTask request's network attachment was refused. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("network attachment: {field} is required")]
    Missing { field: &'static str },
    #[error(
        "network attachment: mac_address {mac:?} is not a MAC address: use six pairs of hex digits like 0a:58:0a:01:00:05"
    )]
    Mac { mac: String },
    #[error("network attachment: {field} {value:?} is not an IPv4 address")]
    NotIpv4 { field: &'static str, value: String },
    #[error("network attachment: subnet {subnet:?} is not an IPv4 CIDR like 10.1.0.0/24")]
    Subnet { subnet: String },
    #[error("network attachment: subnet {subnet} has host bits set: use {network}")]
    SubnetHostBits { subnet: String, network: String },
    #[error("network attachment: {field} {address} is not in subnet {subnet}")]
    OutsideSubnet {
        field: &'static str,
        address: Ipv4Addr,
        subnet: String,
    },
    #[error(
        "network attachment: private_ipv4_address {address} is the {which} address of subnet {subnet}, which no interface may have"
    )]
    Reserved {
        address: Ipv4Addr,
        which: &'static str,
        subnet: String,
    },
    #[error(
        "network attachment: gateway {gateway} is the task's own address: use the subnet's router"
    )]
    GatewayIsAddress { gateway: Ipv4Addr },
    #[error(
        "network attachment: interface_name is reported by the agent, not chosen: leave it empty"
    )]
    InterfaceName,
    #[error(
        "a network attachment is for a task definition in networkMode awsvpc; {task_definition} is in networkMode {network_mode}"
    )]
    NotAwsvpc {
        task_definition: String,
        network_mode: String,
    },
    #[error("a network attachment is one ENI for one task: run 1 task, not {count}")]
    Count { count: u32 },
    #[error(
        "network attachment: the ENI {mac} is in use by task {task_id}; stop it first or use another ENI"
    )]
    InUse { mac: String, task_id: String },
}

/// Whether `text` is a MAC address written aa:bb:cc:dd:ee:ff (hex digits in either case).
pub(crate) fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The attachment of a RunTask request, checked: a MAC address, an IPv4 address inside the
/// subnet (not its network or broadcast address), the subnet as a network CIDR, and a gateway
/// inside the subnet other than the address. Returned with the MAC address in lower case, as
/// the kernel shows it; the interface name is left to the agent.
pub(crate) fn checked(a: &pb::NetworkAttachment) -> Result<pb::NetworkAttachment, AttachmentError> {
    let required = |field: &'static str, value: &str| {
        if value.is_empty() {
            Err(AttachmentError::Missing { field })
        } else {
            Ok(())
        }
    };
    required("mac_address", &a.mac_address)?;
    required("private_ipv4_address", &a.private_ipv4_address)?;
    required("subnet", &a.subnet)?;
    required("gateway", &a.gateway)?;
    if !is_mac(&a.mac_address) {
        return Err(AttachmentError::Mac {
            mac: a.mac_address.clone(),
        });
    }
    if !a.interface_name.is_empty() {
        return Err(AttachmentError::InterfaceName);
    }
    let ipv4 = |field: &'static str, value: &str| {
        value
            .parse::<Ipv4Addr>()
            .map_err(|_| AttachmentError::NotIpv4 {
                field,
                value: value.to_owned(),
            })
    };
    let address = ipv4("private_ipv4_address", &a.private_ipv4_address)?;
    let gateway = ipv4("gateway", &a.gateway)?;
    let subnet: Ipv4Net = a.subnet.parse().map_err(|_| AttachmentError::Subnet {
        subnet: a.subnet.clone(),
    })?;
    if subnet.trunc() != subnet {
        return Err(AttachmentError::SubnetHostBits {
            subnet: a.subnet.clone(),
            network: subnet.trunc().to_string(),
        });
    }
    for (field, ip) in [("private_ipv4_address", address), ("gateway", gateway)] {
        if !subnet.contains(&ip) {
            return Err(AttachmentError::OutsideSubnet {
                field,
                address: ip,
                subnet: a.subnet.clone(),
            });
        }
    }
    // /31 and /32 networks have no network or broadcast address (RFC 3021).
    if subnet.prefix_len() <= 30 {
        let which = if address == subnet.network() {
            Some("network")
        } else if address == subnet.broadcast() {
            Some("broadcast")
        } else {
            None
        };
        if let Some(which) = which {
            return Err(AttachmentError::Reserved {
                address,
                which,
                subnet: a.subnet.clone(),
            });
        }
    }
    if gateway == address {
        return Err(AttachmentError::GatewayIsAddress { gateway });
    }
    Ok(pb::NetworkAttachment {
        mac_address: a.mac_address.to_ascii_lowercase(),
        ..a.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(mac: &str, address: &str, subnet: &str, gateway: &str) -> pb::NetworkAttachment {
        pb::NetworkAttachment {
            mac_address: mac.into(),
            private_ipv4_address: address.into(),
            subnet: subnet.into(),
            gateway: gateway.into(),
            interface_name: String::new(),
        }
    }

    fn refused(a: pb::NetworkAttachment) -> String {
        match checked(&a) {
            Ok(a) => panic!("accepted: {a:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn subnets_are_ipv4_cidrs() {
        let mac = "0a:58:0a:01:00:05";
        for bad in [
            "10.1.0.0",
            "10.1.0.0/33",
            "10.1.0.0/",
            "10.1.0.0/+4",
            "10.1.0/24",
            "::/64",
        ] {
            let refused = checked(&attachment(mac, "10.1.0.5", bad, "10.1.0.1"));
            assert!(
                matches!(refused, Err(AttachmentError::Subnet { .. })),
                "{bad}: {refused:?}"
            );
        }
        // Every address is in 0.0.0.0/0; a /32 is its own network.
        assert!(checked(&attachment(mac, "192.0.2.7", "0.0.0.0/0", "192.0.2.1")).is_ok());
        assert!(matches!(
            checked(&attachment(mac, "192.0.2.7", "192.0.2.7/32", "192.0.2.7")),
            Err(AttachmentError::GatewayIsAddress { .. })
        ));
    }

    #[test]
    fn macs() {
        assert!(is_mac("0a:58:0a:01:00:05"));
        assert!(is_mac("AA:BB:CC:DD:EE:FF"));
        for bad in [
            "0a:58:0a:01:00",
            "0a-58-0a-01-00-05",
            "0a:58:0a:01:00:0g",
            "a:58:0a:01:00:05",
        ] {
            assert!(!is_mac(bad), "{bad}");
        }
    }

    #[test]
    fn a_good_attachment_is_kept_with_its_mac_in_lower_case() {
        let a = checked(&attachment(
            "0A:58:0A:01:00:05",
            "10.1.0.5",
            "10.1.0.0/24",
            "10.1.0.1",
        ))
        .unwrap();
        assert_eq!(
            a,
            attachment("0a:58:0a:01:00:05", "10.1.0.5", "10.1.0.0/24", "10.1.0.1")
        );
        // A point-to-point /31 has no network or broadcast address.
        assert!(
            checked(&attachment(
                "0a:58:0a:01:00:05",
                "10.1.0.0",
                "10.1.0.0/31",
                "10.1.0.1"
            ))
            .is_ok()
        );
    }

    #[test]
    fn every_rule_has_its_message() {
        let mac = "0a:58:0a:01:00:05";
        let cases = [
            (
                attachment("", "10.1.0.5", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: mac_address is required",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.0/24", ""),
                "network attachment: gateway is required",
            ),
            (
                attachment("0a:58", "10.1.0.5", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: mac_address \"0a:58\" is not a MAC address: use six pairs of hex digits like 0a:58:0a:01:00:05",
            ),
            (
                attachment(mac, "10.1.0.300", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: private_ipv4_address \"10.1.0.300\" is not an IPv4 address",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.0/24", "fe80::1"),
                "network attachment: gateway \"fe80::1\" is not an IPv4 address",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.0", "10.1.0.1"),
                "network attachment: subnet \"10.1.0.0\" is not an IPv4 CIDR like 10.1.0.0/24",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.5/24", "10.1.0.1"),
                "network attachment: subnet 10.1.0.5/24 has host bits set: use 10.1.0.0/24",
            ),
            (
                attachment(mac, "10.2.0.5", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: private_ipv4_address 10.2.0.5 is not in subnet 10.1.0.0/24",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.0/24", "10.2.0.1"),
                "network attachment: gateway 10.2.0.1 is not in subnet 10.1.0.0/24",
            ),
            (
                attachment(mac, "10.1.0.0", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: private_ipv4_address 10.1.0.0 is the network address of subnet 10.1.0.0/24, which no interface may have",
            ),
            (
                attachment(mac, "10.1.0.255", "10.1.0.0/24", "10.1.0.1"),
                "network attachment: private_ipv4_address 10.1.0.255 is the broadcast address of subnet 10.1.0.0/24, which no interface may have",
            ),
            (
                attachment(mac, "10.1.0.5", "10.1.0.0/24", "10.1.0.5"),
                "network attachment: gateway 10.1.0.5 is the task's own address: use the subnet's router",
            ),
            (
                pb::NetworkAttachment {
                    interface_name: "eth0".into(),
                    ..attachment(mac, "10.1.0.5", "10.1.0.0/24", "10.1.0.1")
                },
                "network attachment: interface_name is reported by the agent, not chosen: leave it empty",
            ),
        ];
        for (a, message) in cases {
            assert_eq!(refused(a), message);
        }
    }
}

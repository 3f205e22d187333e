//! `/proc/<pid>/net/dev`: the interface counters of the network namespace `<pid>` is in.

use crate::cgroup::CgroupError;

use super::InterfaceStats;
use super::parse::error;

const FILE: &str = "net/dev";

/// Every interface but loopback. The first two lines are headers; each other line is
/// `name: rx_bytes rx_packets rx_errs rx_drop fifo frame compressed multicast tx_bytes
/// tx_packets tx_errs tx_drop fifo colls carrier compressed`.
pub(super) fn parse(text: &str) -> Result<Vec<InterfaceStats>, CgroupError> {
    let mut interfaces = Vec::new();
    for line in text.lines().skip(2) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let (name, counters) = line
            .split_once(':')
            .ok_or_else(|| error(FILE, format!("no \"name:\" in {line:?}")))?;
        let name = name.trim_ascii();
        if name == "lo" {
            continue;
        }
        let values = counters
            .split_ascii_whitespace()
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| error(FILE, format!("a counter of {name} is not a number")))?;
        let [
            rx_b,
            rx_p,
            rx_e,
            rx_d,
            _,
            _,
            _,
            _,
            tx_b,
            tx_p,
            tx_e,
            tx_d,
            ..,
        ] = values[..]
        else {
            return Err(error(
                FILE,
                format!("{name} has {} counters, expected 16", values.len()),
            ));
        };
        interfaces.push(InterfaceStats {
            name: name.to_owned(),
            rx_bytes: rx_b,
            rx_packets: rx_p,
            rx_errors: rx_e,
            rx_dropped: rx_d,
            tx_bytes: tx_b,
            tx_packets: tx_p,
            tx_errors: tx_e,
            tx_dropped: tx_d,
        });
    }
    Ok(interfaces)
}

//! The networking layer's error type: every variant names the namespace, interface, CIDR,
//! task or port at fault.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Everything setting up or tearing down task networking can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid cidr {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: String },
    #[error(
        "cidr {cidr} is too small: it needs room for the network, the bridge address, the broadcast and at least one task (a prefix of /30 or shorter)"
    )]
    CidrTooSmall { cidr: String },
    #[error(
        "cidr {cidr} overlaps address {address}/{prefix_len} on host interface {interface}: choose a range no host interface uses"
    )]
    CidrOverlaps {
        cidr: String,
        interface: String,
        address: Ipv4Addr,
        prefix_len: u8,
    },
    #[error(
        "cidr {cidr} has no free address left for task {task}: tear down stopped tasks or configure a larger range"
    )]
    Exhausted { cidr: String, task: String },
    #[error(
        "invalid task name {task:?}: use 1 to 200 characters among letters, digits, '-', '_' and '.'"
    )]
    InvalidTaskName { task: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("host port {port}/{protocol} is already mapped by task {owner}")]
    PortTaken {
        port: u16,
        protocol: &'static str,
        owner: String,
    },
    #[error("no free host port left in {first}-{last} for task {task}")]
    NoFreePort { first: u16, last: u16, task: String },
    #[error(
        "bridge {bridge} exists with address {found}, not {wanted}: remove it or configure its address as the cidr"
    )]
    BridgeConflict {
        bridge: String,
        found: String,
        wanted: String,
    },
    #[error("no host interface has mac address {mac}: check the eni attachment")]
    UnknownMac { mac: String },
    #[error("refusing to move host interface {interface} ({mac}) into task {task}: {rule}")]
    EniRefused {
        interface: String,
        mac: String,
        task: String,
        rule: String,
    },
    /// The cause's text is part of the message (it travels as a task's stop reason), so it is
    /// not also a source.
    #[error("network namespace {}: cannot {what}: {error}", path.display())]
    Namespace {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("netlink in network namespace {namespace}: cannot {what} {interface}: {message}")]
    Netlink {
        what: &'static str,
        interface: String,
        namespace: String,
        message: String,
    },
    #[error("nftables in network namespace {namespace}: {message}")]
    Nft { namespace: String, message: String },
    /// The cause's text is part of the message, so it is not also a source.
    #[error("cannot {what} at {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("allocation state at {} is corrupt: {reason}; move it away to start from an empty state", path.display())]
    CorruptState { path: PathBuf, reason: String },
}

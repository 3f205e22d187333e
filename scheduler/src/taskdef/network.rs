//! A container's network fields, `portMappings` and `links`: conversion to the proto model and
//! ECS's rules, each problem with its JSON path.
//!
//! Host ports follow the task's network mode as on ECS: in bridge mode an absent (or 0) host
//! port is a dynamic one, taken by the agent from its ephemeral range; in host and awsvpc modes
//! the host port is the container port (filled in here when absent); in none mode there is no
//! port to map. Links (Docker's legacy links) exist only in bridge mode.

use std::collections::HashMap;

use berth_proto::v1 as proto;

use super::error::Problem;
use super::fields::{DEFAULT_PORT_PROTOCOL, MAX_LINK_ALIAS_LEN, PORT_PROTOCOLS, PORTS};
use super::refs::{container_indexes, find_cycle};
use super::{ecs, walk};

/// The modes in which every container shares the task's one network stack, so a host port is
/// the container port.
const SHARED_STACK_MODES: &[&str] = &["host", "awsvpc"];

/// The proto port mappings of the container at `path`, with the checks that need to know
/// whether `hostPort` was given: ports in range, the protocol, and in host and awsvpc modes a
/// host port equal to the container port (filled in when absent).
pub(super) fn port_mappings(
    mappings: Vec<ecs::PortMapping>,
    network_mode: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<proto::PortMapping> {
    let list = walk::child(path, "portMappings");
    let shared_stack = SHARED_STACK_MODES.contains(&network_mode);
    mappings
        .into_iter()
        .enumerate()
        .map(|(j, m)| {
            let entry = walk::index(&list, j);
            if !PORTS.contains(&m.container_port) {
                problems.push(Problem::at(
                    &walk::child(&entry, "containerPort"),
                    format!(
                        "{} is not a port: use {} to {}",
                        m.container_port,
                        PORTS.start(),
                        PORTS.end()
                    ),
                ));
            }
            let host_port = match m.host_port {
                Some(port) if port > *PORTS.end() => {
                    problems.push(Problem::at(
                        &walk::child(&entry, "hostPort"),
                        format!(
                            "{port} is not a port: use {} to {}, or 0 for a dynamic one",
                            PORTS.start(),
                            PORTS.end()
                        ),
                    ));
                    port
                }
                Some(port) if shared_stack && port != m.container_port => {
                    problems.push(Problem::at(
                        &walk::child(&entry, "hostPort"),
                        format!(
                            "{port} must equal containerPort {} in networkMode {network_mode}, as \
                             on ECS: leave hostPort out or set it to {}",
                            m.container_port, m.container_port
                        ),
                    ));
                    port
                }
                Some(port) => port,
                None if shared_stack => m.container_port,
                None => 0,
            };
            let given = m
                .protocol
                .unwrap_or_else(|| DEFAULT_PORT_PROTOCOL.to_owned());
            let protocol = given.to_ascii_lowercase();
            if !PORT_PROTOCOLS.contains(&protocol.as_str()) {
                problems.push(Problem::at(
                    &walk::child(&entry, "protocol"),
                    format!(
                        "`{given}` is not a port protocol: use {}",
                        PORT_PROTOCOLS.join(" or ")
                    ),
                ));
            }
            proto::PortMapping {
                container_port: m.container_port,
                host_port,
                protocol,
            }
        })
        .collect()
}

/// ECS's rules across the task: port mappings only where there is a network to map from
/// (not in none mode, not on a container with disableNetworking), each container port mapped
/// once per container and each fixed host port taken once per task (per protocol); links only
/// in bridge mode, to another container of the task, with valid and distinct aliases, and
/// without a cycle (a linked container starts before the one linking to it).
pub(super) fn validate(def: &proto::TaskDefinition, problems: &mut Vec<Problem>) {
    let mode = def.network_mode.as_str();
    let containers = container_indexes(def);
    // The first mapping of each fixed host port, by (port, protocol).
    let mut host_ports: HashMap<(u32, &str), String> = HashMap::new();
    let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); def.containers.len()];
    for (i, c) in def.containers.iter().enumerate() {
        let path = walk::index("containerDefinitions", i);
        let list = walk::child(&path, "portMappings");
        if !c.port_mappings.is_empty() {
            if mode == "none" {
                problems.push(Problem::at(
                    &list,
                    "is not valid with networkMode none, as on ECS: the task has no network \
                     to map ports from",
                ));
            } else if c.disable_networking {
                problems.push(Problem::at(
                    &list,
                    "is not valid on a container with disableNetworking: it has no network to \
                     map ports from",
                ));
            }
        }
        let mut container_ports: HashMap<(u32, &str), usize> = HashMap::new();
        for (j, m) in c.port_mappings.iter().enumerate() {
            let entry = walk::index(&list, j);
            let protocol = m.protocol.as_str();
            if let Some(first) = container_ports.get(&(m.container_port, protocol)) {
                problems.push(Problem::at(
                    &entry,
                    format!(
                        "container port {}/{protocol} is already mapped by portMappings[{first}]",
                        m.container_port
                    ),
                ));
                continue;
            }
            container_ports.insert((m.container_port, protocol), j);
            if m.host_port == 0 {
                continue;
            }
            if let Some(first) = host_ports.get(&(m.host_port, protocol)) {
                problems.push(Problem::at(
                    &entry,
                    format!(
                        "host port {}/{protocol} is already taken by {first}",
                        m.host_port
                    ),
                ));
            } else {
                host_ports.insert((m.host_port, protocol), entry);
            }
        }
        if !c.links.is_empty() && mode != "bridge" {
            let why = if mode == "none" {
                "the task has no network"
            } else {
                "the task's containers share one network and reach each other on localhost"
            };
            problems.push(Problem::at(
                &walk::child(&path, "links"),
                format!("is not valid with networkMode {mode}, as on ECS: {why}"),
            ));
            continue;
        }
        let mut aliases: HashMap<&str, usize> = HashMap::new();
        for (j, link) in c.links.iter().enumerate() {
            let at = walk::index(&walk::child(&path, "links"), j);
            let (name, alias) = match link.split_once(':') {
                Some((name, alias)) => (name, Some(alias)),
                None => (link.as_str(), None),
            };
            match containers.get(name) {
                None => problems.push(Problem::at(
                    &at,
                    format!("no container named {name:?} in this task definition"),
                )),
                Some(&target) if target == i => problems.push(Problem::at(
                    &at,
                    format!("container {:?} cannot link to itself", c.name),
                )),
                Some(&target) => edges[i].push((target, at.clone())),
            }
            // Without an alias, the container's name is the name the link gives.
            let given = alias.unwrap_or(name);
            if let Some(message) = alias.and_then(alias_problem) {
                problems.push(Problem::at(&at, message));
            } else if let Some(first) = aliases.get(given) {
                problems.push(Problem::at(
                    &at,
                    format!("alias `{given}` is already used by links[{first}]"),
                ));
            } else {
                aliases.insert(given, j);
            }
        }
    }
    if let Some(cycle) = find_cycle(def, &edges, "links") {
        problems.push(cycle);
    }
}

/// Why `alias` is not a link alias, if it is not: ECS allows up to 255 letters, digits,
/// hyphens and underscores.
fn alias_problem(alias: &str) -> Option<String> {
    let valid = !alias.is_empty()
        && alias.len() <= MAX_LINK_ALIAS_LEN
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!valid).then(|| {
        format!(
            "{alias:?} is not a link alias: use \"name\" or \"name:alias\" with an alias of 1 to \
             {MAX_LINK_ALIAS_LEN} letters, digits, hyphens and underscores"
        )
    })
}

//! The driver's side of a task's network: its namespaces set up beside the pulls, and each
//! container pointed at its own with the namespace's files; what is reported of it.

use std::collections::HashMap;

use berth_proto::v1::TaskDefinition;
use berth_runtime::{ContainerSpec, Mount, NetworkError, NetworkNamespace, TaskNetwork};

use super::super::{ContainerNetwork, NetworkReport};
use crate::network::TaskNetworking;
use crate::store::EndpointIds;
use crate::task::network::{self, Mode};
use crate::task::{Causes, METADATA_ENV, metadata_uri};

/// Why a task's namespaces could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum NetSetupError {
    /// A namespace that could not be set up.
    #[error("cannot set up the task's network ({netns}): {}", Causes(.error))]
    Setup { netns: String, error: NetworkError },
    /// The hosts file of a linking container that could not be written.
    #[error("cannot write the links of {netns}: {}", Causes(.error))]
    Links { netns: String, error: NetworkError },
}

/// Points each container at its namespace (set up by [`set_up_namespaces`]) and its
/// read-only resolv.conf, hosts and hostname; what is reported of the task's network.
pub(super) fn join_network(
    def: &TaskDefinition,
    mode: Mode,
    plans: &[network::Plan],
    nets: &[TaskNetwork],
    endpoint_ids: &EndpointIds,
    specs: &mut [ContainerSpec],
) -> NetworkReport {
    for (plan, net) in plans.iter().zip(nets) {
        for &i in &plan.containers {
            let id = endpoint_ids
                .get(&def.containers[i].name)
                .map(String::as_str);
            join_namespace(&mut specs[i], net, &plan.spec.dns.hostname, id);
        }
    }
    let mut containers = HashMap::new();
    match mode {
        Mode::Bridge => {
            for (plan, net) in plans.iter().zip(nets) {
                for &i in &plan.containers {
                    containers.insert(
                        def.containers[i].name.clone(),
                        ContainerNetwork {
                            address: net.address.to_string(),
                            bindings: network::bindings(&net.ports),
                        },
                    );
                }
            }
        }
        Mode::Host => {
            for c in def
                .containers
                .iter()
                .filter(|c| !c.port_mappings.is_empty())
            {
                containers.insert(
                    c.name.clone(),
                    ContainerNetwork {
                        address: String::new(),
                        bindings: network::host_mode_bindings(c),
                    },
                );
            }
        }
        Mode::Awsvpc | Mode::None => {}
    }
    let attachments = match mode {
        Mode::Awsvpc => nets.iter().map(network::attachment).collect(),
        _ => Vec::new(),
    };
    NetworkReport {
        attachments,
        containers,
    }
}

/// Sets up a task's namespaces (awsvpc: one for the task; bridge: one per container) and
/// writes the links into the linking containers' hosts files. On failure, what was set up is
/// left for the task's cleanup, which tears down every namespace of the task.
pub(super) async fn set_up_namespaces(
    network: &dyn TaskNetworking,
    def: &TaskDefinition,
    plans: &[network::Plan],
) -> Result<Vec<TaskNetwork>, NetSetupError> {
    let mut nets = Vec::with_capacity(plans.len());
    for plan in plans {
        let net = network
            .setup(&plan.spec)
            .await
            .map_err(|error| NetSetupError::Setup {
                netns: plan.spec.task.clone(),
                error,
            })?;
        tracing::debug!(netns = %plan.spec.task, address = %net.address, "network set up");
        nets.push(net);
    }
    let address_of = |index: usize| {
        plans
            .iter()
            .zip(&nets)
            .find(|(p, _)| p.containers.contains(&index))
            .map(|(_, n)| n.address)
    };
    for (plan, net) in plans.iter().zip(&nets) {
        if plan.links.is_empty() {
            continue;
        }
        let mut dns = plan.spec.dns.clone();
        dns.extra_hosts
            .extend(network::link_hosts(def, &plan.links, address_of));
        network
            .write_files(&plan.spec.task, &dns, net.address)
            .map_err(|error| NetSetupError::Links {
                netns: plan.spec.task.clone(),
                error,
            })?;
    }
    Ok(nets)
}

/// Points a container at its namespace, with the namespace's resolv.conf, hosts and hostname
/// bound read-only (they hold its DNS settings and extra hosts, so the runtime writes none).
fn join_namespace(
    spec: &mut ContainerSpec,
    net: &TaskNetwork,
    hostname: &str,
    endpoint_id: Option<&str>,
) {
    spec.network = NetworkNamespace::Join(net.netns.clone());
    for (source, destination) in [
        (&net.files.resolv_conf, "/etc/resolv.conf"),
        (&net.files.hosts, "/etc/hosts"),
        (&net.files.hostname, "/etc/hostname"),
    ] {
        spec.mounts.push(Mount {
            source: source.clone(),
            destination: destination.to_owned(),
            read_only: true,
        });
    }
    if spec.hostname.is_none() {
        spec.hostname = Some(hostname.to_owned());
    }
    // The task endpoint answers at the link-local address through the namespace's route, to
    // the URL with the container's own ID only; a container without one (a task accepted by
    // an older agent) gets no URL rather than one that answers 404.
    if let Some(id) = endpoint_id {
        spec.environment
            .entry(METADATA_ENV.to_owned())
            .or_insert_with(|| metadata_uri(id));
    }
    spec.extra_hosts.clear();
    spec.dns_servers.clear();
    spec.dns_search_domains.clear();
}

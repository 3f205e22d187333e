//! The seam to the host's task networking: [`TaskNetworking`], implemented by
//! `berth_runtime::Network` and by a recording fake in the engine's tests. What a definition's
//! network mode asks of it is planned in `task/network.rs`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use berth_runtime::{DnsConfig, Network, NetworkError, TaskFiles, TaskNetwork, TaskNetworkSpec};

/// What the engine asks of the host's task networking.
#[async_trait]
pub(crate) trait TaskNetworking: Send + Sync + Debug + 'static {
    /// Sets up one namespace with its interface, address, port mappings and files
    /// (idempotent; on failure nothing of it is left).
    async fn setup(&self, spec: &TaskNetworkSpec) -> Result<TaskNetwork, NetworkError>;
    /// Rewrites a namespace's resolv.conf, hosts and hostname.
    fn write_files(
        &self,
        name: &str,
        dns: &DnsConfig,
        address: Ipv4Addr,
    ) -> Result<TaskFiles, NetworkError>;
    /// Removes everything of one namespace; idempotent.
    async fn teardown(&self, name: &str) -> Result<(), NetworkError>;
    /// Removes what is left of every namespace not in `live` and not of a task in `held`.
    async fn repair(
        &self,
        live: &BTreeSet<String>,
        held: &BTreeSet<String>,
    ) -> Result<Vec<String>, NetworkError>;
    /// The namespace that holds `address` on the bridge, if any.
    async fn owner_of(&self, address: Ipv4Addr) -> Option<String>;
}

#[async_trait]
impl TaskNetworking for Network {
    async fn setup(&self, spec: &TaskNetworkSpec) -> Result<TaskNetwork, NetworkError> {
        Network::setup(self, spec).await
    }
    fn write_files(
        &self,
        name: &str,
        dns: &DnsConfig,
        address: Ipv4Addr,
    ) -> Result<TaskFiles, NetworkError> {
        Network::write_files(self, name, dns, address)
    }
    async fn teardown(&self, name: &str) -> Result<(), NetworkError> {
        Network::teardown(self, name).await
    }
    async fn repair(
        &self,
        live: &BTreeSet<String>,
        held: &BTreeSet<String>,
    ) -> Result<Vec<String>, NetworkError> {
        let mut live = live.clone();
        if !held.is_empty() {
            live.extend(
                Network::namespaces(self)
                    .await?
                    .into_iter()
                    .filter(|n| held.contains(crate::task::network::task_of_namespace(n))),
            );
        }
        Network::repair(self, &live).await
    }
    async fn owner_of(&self, address: Ipv4Addr) -> Option<String> {
        Network::owner_of(self, address).await
    }
}

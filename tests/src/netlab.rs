//! `NetLab`: a private "host" network namespace with its own run and state dirs, for the
//! network suite and benchmark, so nothing touches the machine's own network; removed on drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use berth_runtime::{NetNs, Network, NetworkConfig};

use crate::prereq::which;

/// Why the network suite or benchmark cannot run here, if it cannot.
pub fn prerequisites() -> Option<String> {
    let mut why = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        why.push("network tests need root (run as root or in CI)".to_owned());
    }
    for bin in ["nft", "ip"] {
        if which(bin).is_none() {
            why.push(format!(
                "{bin} is not on PATH (install nftables and iproute2)"
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// A private host: its own network namespace (with `lo` up), namespace run dir and state dir,
/// and a tokio runtime to drive `Network` with.
#[derive(Debug)]
pub struct NetLab {
    dir: tempfile::TempDir,
    /// The namespace that plays the host.
    pub host: NetNs,
    /// Drives the async network calls.
    pub rt: tokio::runtime::Runtime,
}

impl NetLab {
    /// Creates the lab's namespace and dirs.
    pub fn new() -> Result<NetLab> {
        let dir = tempfile::Builder::new().prefix("berth-net").tempdir()?;
        let host = NetNs::create(&dir.path().join("host"), "host")?;
        let lab = NetLab {
            dir,
            host,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        };
        lab.sh("ip link set lo up")?;
        Ok(lab)
    }

    /// Where task namespaces go.
    pub fn netns_dir(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    /// Where the allocations and task files go.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A configuration for `cidr` inside the lab (ephemeral ports 49153-49200).
    pub fn config(&self, cidr: &str) -> Result<NetworkConfig> {
        let mut c = NetworkConfig::new(cidr.parse()?, &self.state_dir());
        c.netns_dir = self.netns_dir();
        c.host_netns = Some(self.host.path().to_owned());
        c.ephemeral_ports = 49153..=49200;
        Ok(c)
    }

    /// Opens the host's task networking for `cidr` inside the lab.
    pub fn open(&self, cidr: &str) -> Result<Network> {
        Ok(self.rt.block_on(Network::open(self.config(cidr)?))?)
    }

    /// Runs a shell command inside the lab's host namespace; its stdout.
    pub fn sh(&self, cmd: &str) -> Result<String> {
        ns_sh(&self.host, cmd)
    }

    /// What must be the same before and after a task's life, counted independently of Berth
    /// (with `ip` and `nft`).
    pub fn counts(&self) -> Result<BTreeMap<&'static str, usize>> {
        let state = self.state_dir().join("network-allocations.json");
        let allocations = match std::fs::read(&state) {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)?["tasks"]
                .as_object()
                .map_or(0, |o| o.len()),
            Err(_) => 0,
        };
        Ok(BTreeMap::from([
            ("namespaces", NetNs::list(&self.netns_dir())?.len()),
            ("links", self.sh("ip -o link show")?.lines().count()),
            ("addresses", self.sh("ip -o addr show")?.lines().count()),
            (
                "routes",
                self.sh("ip route show table all")?.lines().count(),
            ),
            (
                "nft rules",
                self.sh("nft -a list table ip berth 2>/dev/null || true")?
                    .lines()
                    .filter(|l| {
                        l.contains("# handle") && !l.contains("chain ") && !l.contains("table ")
                    })
                    .count(),
            ),
            ("allocations", allocations),
            (
                "task files",
                std::fs::read_dir(self.state_dir().join("task-files")).map_or(0, |d| d.count()),
            ),
        ]))
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for name in NetNs::list(&self.netns_dir()).unwrap_or_default() {
            let _ = NetNs::open(self.netns_dir().join(name)).delete();
        }
        let _ = self.host.delete();
    }
}

/// The network an agent under test keeps its bridge, nftables table and task namespaces in: a
/// namespace of its own (with `lo` up) that plays the agent's host, so nothing touches the
/// machine's network. The agent itself stays in the machine's namespace (it reaches the
/// scheduler, registry and containerd there). Removed, task namespaces first, on drop.
#[derive(Debug)]
pub struct AgentNetns {
    /// The namespace that plays the host.
    pub host: NetNs,
    /// Where the agent bind-mounts task namespaces.
    pub netns_dir: PathBuf,
}

impl AgentNetns {
    /// Creates the namespace under `dir` (`dir/host`), task namespaces going to `dir/netns`.
    pub fn create(dir: &std::path::Path) -> Result<AgentNetns> {
        let host = NetNs::create(dir, "host")?;
        let netns = AgentNetns {
            host,
            netns_dir: dir.join("netns"),
        };
        netns.sh("ip link set lo up")?;
        Ok(netns)
    }

    /// Runs a shell command inside the namespace that plays the host; its stdout.
    pub fn sh(&self, cmd: &str) -> Result<String> {
        ns_sh(&self.host, cmd)
    }

    /// Runs a shell command inside a task's namespace (awsvpc: the task ID; bridge:
    /// `<task>.<container index>`); its stdout.
    pub fn task_sh(&self, name: &str, cmd: &str) -> Result<String> {
        ns_sh(&NetNs::open(self.netns_dir.join(name)), cmd)
    }

    /// The task namespaces that exist now.
    pub fn task_namespaces(&self) -> Result<Vec<String>> {
        Ok(NetNs::list(&self.netns_dir)?)
    }
}

impl Drop for AgentNetns {
    fn drop(&mut self) {
        for name in NetNs::list(&self.netns_dir).unwrap_or_default() {
            let _ = NetNs::open(self.netns_dir.join(name)).delete();
        }
        let _ = self.host.delete();
    }
}

/// Runs a shell command inside `ns`; its stdout, or an error with its stderr.
pub fn ns_sh(ns: &NetNs, cmd: &str) -> Result<String> {
    let out = ns
        .run(|| Command::new("sh").arg("-c").arg(cmd).output())?
        .with_context(|| format!("run {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

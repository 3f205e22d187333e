//! An ENI task's traffic leaves through its own interface, past the host's forward path and
//! its nftables rules: the instance metadata service is refused in the task's own namespace,
//! by `prohibit` routes for 169.254.169.254 and fd00:ec2::254, unless the agent's
//! `block_instance_metadata` is off. The ENI stand-in is a macvlan on a veth whose peer, in
//! the lab's host, plays the VPC's router and the metadata service; with the block off the
//! same task reaches it, so the stand-in is known to carry the traffic the routes refuse.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};

use anyhow::{Context, Result, ensure};
use berth_runtime::{
    DnsConfig, INSTANCE_METADATA_ADDRESS, MacAddr, Network, TaskInterface, TaskNetworkSpec,
};
use berth_tests::netlab::{NetLab, ns_sh};

use super::{IO_TIMEOUT, fetch_tcp, serve_tcp, task_ns};

const MAC: &str = "02:42:ac:1f:0b:0a";

fn eni_spec(task: &str) -> Result<TaskNetworkSpec> {
    Ok(TaskNetworkSpec {
        task: task.to_owned(),
        interface: TaskInterface::Eni {
            mac: MAC.parse::<MacAddr>()?,
            address: "172.31.11.10".parse()?,
            prefix_len: 24,
            gateway: "172.31.11.1".parse()?,
        },
        ports: vec![],
        dns: DnsConfig {
            hostname: task.to_owned(),
            ..DnsConfig::default()
        },
    })
}

pub(super) fn an_eni_task_cannot_reach_the_metadata_service() -> Result<()> {
    let lab = NetLab::new()?;
    lab.sh(&format!(
        "ip link add vpc0 type veth peer name vpc0peer \
         && ip link add link vpc0 name eni11 address {MAC} type macvlan mode bridge \
         && ip link set vpc0 up && ip link set vpc0peer up \
         && ip addr add 172.31.11.1/24 dev vpc0peer \
         && ip addr add {INSTANCE_METADATA_ADDRESS}/32 dev vpc0peer"
    ))?;
    let port = serve_tcp(&lab.host, 0, "credentials")?;
    let metadata = SocketAddr::from((INSTANCE_METADATA_ADDRESS, port));

    // Blocked (the default): the routes are there and a connection fails at once.
    let network = lab.open("10.213.11.0/24")?;
    let net = lab.rt.block_on(network.setup(&eni_spec("eni-imds")?))?;
    let ns = task_ns(&net);
    let routes = ns_sh(
        &ns,
        "ip route show type prohibit; ip -6 route show type prohibit",
    )?;
    ensure!(
        routes.contains("prohibit 169.254.169.254") && routes.contains("prohibit fd00:ec2::254"),
        "no metadata routes in the task: {routes}"
    );
    let refused = ns
        .run(move || TcpStream::connect_timeout(&metadata, IO_TIMEOUT))?
        .err()
        .context("an ENI task reached the metadata service")?;
    ensure!(
        refused.kind() == ErrorKind::PermissionDenied,
        "refused otherwise than by the route: {refused}"
    );
    lab.rt.block_on(network.teardown("eni-imds"))?;

    // Allowed: the same task reaches it through the same stand-in, and no route is there.
    let mut config = lab.config("10.213.11.0/24")?;
    config.block_instance_metadata = false;
    let network = lab.rt.block_on(Network::open(config))?;
    let net = lab.rt.block_on(network.setup(&eni_spec("eni-imds2")?))?;
    let ns = task_ns(&net);
    let routes = ns_sh(
        &ns,
        "ip route show type prohibit; ip -6 route show type prohibit",
    )?;
    ensure!(routes.trim().is_empty(), "routes left: {routes}");
    ensure!(fetch_tcp(&ns, metadata)? == "credentials");
    lab.rt.block_on(network.teardown("eni-imds2"))?;
    Ok(())
}

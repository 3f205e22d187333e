//! `make bench`: the cost of one awsvpc-style task network (namespace, veth on the bridge,
//! address, route, a DNAT mapping, resolv.conf/hosts/hostname; then its teardown) beside a
//! bare namespace made and removed (what network mode none costs). Prints figures; asserts
//! nothing. Runs inside a private "host" namespace, like the network suite. Then 1,000
//! setup/teardown cycles (veth with a DNAT mapping, every other one with two) and the counts of
//! namespaces, links, addresses, routes, nftables rules, allocations and files before and
//! after. Last, the cost of Berth's task filter (confinement and anti-spoofing) per packet:
//! small UDP datagrams from one task to another (the bridge's anti-spoofing lookup) and to an
//! allowed host port (that lookup and the host filter), with the filter and without it.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_runtime::{DnsConfig, NetNs, PortRequest, Protocol, TaskInterface, TaskNetworkSpec};
use berth_tests::bench::{percentile, report};
use berth_tests::netlab::{NetLab, prerequisites};

const RUNS: usize = 30;
const LEAK_CYCLES: usize = 1000;
/// Rounds of the filter's cost, each with and without it.
const ROUNDS: usize = 5;

fn main() -> ExitCode {
    berth_tests::bench::main_with(prerequisites, run)
}

fn run() -> Result<()> {
    let lab = NetLab::new()?;
    let network = lab.open("10.213.200.0/24")?;
    let mut awsvpc = Vec::with_capacity(RUNS);
    let mut setups = Vec::with_capacity(RUNS);
    let mut none = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let spec = TaskNetworkSpec {
            task: format!("bench-{i}"),
            interface: TaskInterface::Veth,
            ports: vec![PortRequest {
                protocol: Protocol::Tcp,
                host_port: 0,
                container_port: 80,
            }],
            dns: DnsConfig {
                servers: vec!["10.213.200.53".parse()?],
                hostname: format!("bench-{i}"),
                ..DnsConfig::default()
            },
        };
        let start = Instant::now();
        lab.rt.block_on(network.setup(&spec))?;
        setups.push(start.elapsed());
        lab.rt.block_on(network.teardown(&spec.task))?;
        awsvpc.push(start.elapsed());

        let start = Instant::now();
        let ns = NetNs::create(&lab.netns_dir(), &format!("none-{i}"))?;
        ns.delete()?;
        none.push(start.elapsed());
    }
    setups.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("task network benchmarks (debug or release as built; a shared, loaded machine)");
    println!(
        "  awsvpc setup alone    p50 {:>8.1} ms   p95 {:>8.1} ms",
        ms(percentile(&setups, 0.5)),
        ms(percentile(&setups, 0.95))
    );
    report(
        "awsvpc task network setup + teardown, beside a bare namespace (mode none)",
        "awsvpc",
        &mut awsvpc,
        "none",
        &mut none,
    );

    let before = lab.counts()?;
    let start = Instant::now();
    for i in 0..LEAK_CYCLES {
        let mut ports = vec![PortRequest {
            protocol: Protocol::Tcp,
            host_port: 0,
            container_port: 80,
        }];
        if i % 2 == 0 {
            ports.push(PortRequest {
                protocol: Protocol::Udp,
                host_port: 0,
                container_port: 53,
            });
        }
        let spec = TaskNetworkSpec {
            task: format!("leak-{i}"),
            interface: TaskInterface::Veth,
            ports,
            dns: DnsConfig {
                hostname: format!("leak-{i}"),
                ..DnsConfig::default()
            },
        };
        lab.rt.block_on(network.setup(&spec))?;
        lab.rt.block_on(network.teardown(&spec.task))?;
    }
    let took = start.elapsed();
    let after = lab.counts()?;
    println!(
        "\n{LEAK_CYCLES} task network setup/teardown cycles in {:.1} s ({:.1} ms each)",
        took.as_secs_f64(),
        ms(took) / LEAK_CYCLES as f64
    );
    for (what, b) in &before {
        let a = after.get(what).copied().unwrap_or_default();
        let verdict = if a == *b { "same" } else { "LEAKED" };
        println!("  {what:<12} before {b:>5}   after {a:>5}   {verdict}");
    }
    filter_cost(&lab)
}

/// How long the sender takes per small datagram (the whole bridge and filter path runs in the
/// sender's system call on veths), over `FLOOD` of sending.
fn per_datagram(from: &NetNs, to: SocketAddr) -> Result<Duration> {
    const FLOOD: Duration = Duration::from_secs(1);
    let socket = from.run(|| UdpSocket::bind("0.0.0.0:0"))??;
    let payload = [0u8; 32];
    let start = Instant::now();
    let mut sent = 0u32;
    while start.elapsed() < FLOOD {
        for _ in 0..256 {
            // A full receive buffer drops datagrams after the filter; the send still counts.
            let _ = socket.send_to(&payload, to);
            sent += 1;
        }
    }
    Ok(start.elapsed() / sent)
}

fn filter_cost(lab: &NetLab) -> Result<()> {
    let mut config = lab.config("10.213.201.0/24")?;
    config.bridge = "berth1".to_owned();
    config.task_host_ports = [18300].into();
    let network = lab
        .rt
        .block_on(berth_runtime::Network::open(config.clone()))?;
    let spec = |task: &str| TaskNetworkSpec {
        task: task.to_owned(),
        interface: TaskInterface::Veth,
        ports: vec![],
        dns: DnsConfig {
            hostname: task.to_owned(),
            ..DnsConfig::default()
        },
    };
    let a = lab.rt.block_on(network.setup(&spec("flood-a")))?;
    let b = lab.rt.block_on(network.setup(&spec("flood-b")))?;
    let (ns_a, ns_b) = (NetNs::open(&a.netns), NetNs::open(&b.netns));
    let sink_b = ns_b.run(|| UdpSocket::bind("0.0.0.0:18301"))??;
    let sink_host = lab.host.run(|| UdpSocket::bind("0.0.0.0:18300"))??;
    let to_b = SocketAddr::from((b.address, 18301));
    let to_host = SocketAddr::from((a.gateway, 18300));
    // Warm up the neighbour caches.
    per_datagram(&ns_a, to_b)?;
    per_datagram(&ns_a, to_host)?;
    // Rounds alternate, so the machine's other load weighs on both alike; medians of each.
    let (mut with, mut without) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for _ in 0..ROUNDS {
        lab.rt
            .block_on(berth_runtime::Network::open(config.clone()))?;
        with.0.push(per_datagram(&ns_a, to_b)?);
        with.1.push(per_datagram(&ns_a, to_host)?);
        lab.sh(
            "nft flush chain bridge berth prerouting && nft flush chain ip berth input \
             && nft flush chain ip berth forward",
        )?;
        without.0.push(per_datagram(&ns_a, to_b)?);
        without.1.push(per_datagram(&ns_a, to_host)?);
    }
    lab.rt.block_on(berth_runtime::Network::open(config))?;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        percentile(&v, 0.5)
    };
    let with = (median(with.0), median(with.1));
    let without = (median(without.0), median(without.1));
    drop((sink_b, sink_host));
    let ns = |d: Duration| d.as_nanos();
    println!("\nBerth's task filter, per 32-byte UDP datagram sent (sender-side, whole path):");
    println!(
        "  task to task (anti-spoofing)        with {:>6} ns   without {:>6} ns   cost {:>5} ns",
        ns(with.0),
        ns(without.0),
        ns(with.0).saturating_sub(ns(without.0))
    );
    println!(
        "  task to allowed host port (+ input) with {:>6} ns   without {:>6} ns   cost {:>5} ns",
        ns(with.1),
        ns(without.1),
        ns(with.1).saturating_sub(ns(without.1))
    );
    lab.rt.block_on(network.teardown("flood-a"))?;
    lab.rt.block_on(network.teardown("flood-b"))?;
    Ok(())
}

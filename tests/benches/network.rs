//! `make bench`: the cost of one awsvpc-style task network (namespace, veth on the bridge,
//! address, route, a DNAT mapping, resolv.conf/hosts/hostname; then its teardown) beside a
//! bare namespace made and removed (what network mode none costs). Prints figures; asserts
//! nothing. Runs inside a private "host" namespace, like the network suite. Then 1,000
//! setup/teardown cycles (veth with a DNAT mapping, every other one with two) and the counts of
//! namespaces, links, addresses, routes, nftables rules, allocations and files before and
//! after.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_runtime::{DnsConfig, NetNs, PortRequest, Protocol, TaskInterface, TaskNetworkSpec};
use berth_tests::bench::{percentile, report};
use berth_tests::netlab::{NetLab, prerequisites};

const RUNS: usize = 30;
const LEAK_CYCLES: usize = 1000;

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
    Ok(())
}

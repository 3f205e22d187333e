//! berth-runtime's task networking for real: namespaces, bridge, veths, an ENI stand-in,
//! nftables DNAT and repair. Every trial works only inside a "host" network namespace it creates
//! itself (so the machine's own network is never touched) and only with private ranges there.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_runtime::{
    DnsConfig, Ipv4Cidr, MacAddr, NetNs, Network, NetworkError, PortRequest, Protocol,
    TaskInterface, TaskNetwork, TaskNetworkSpec,
};
use berth_tests::netlab::{NetLab, ns_sh, prerequisites};
use berth_tests::{Policy, trace_init};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Generous: the machine is shared and loaded; these bound a hang, they never measure speed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

type TestFn = fn() -> Result<()>;

#[path = "network/confinement.rs"]
mod confinement;
#[path = "network/eni_metadata.rs"]
mod eni_metadata;

fn main() -> ExitCode {
    trace_init();
    let args = Arguments::from_args();
    let tests: Vec<(&str, TestFn)> = vec![
        (
            "two_tasks_reach_each_other_and_the_bridge",
            two_tasks_reach_each_other_and_the_bridge,
        ),
        (
            "eni_moves_into_the_task_and_back",
            eni_moves_into_the_task_and_back,
        ),
        (
            "dnat_reaches_the_task_tcp_udp_and_hairpin",
            dnat_reaches_the_task_tcp_udp_and_hairpin,
        ),
        (
            "setup_teardown_200_cycles_leave_nothing",
            setup_teardown_200_cycles_leave_nothing,
        ),
        (
            "repair_cleans_up_half_made_tasks",
            repair_cleans_up_half_made_tasks,
        ),
        (
            "bad_inputs_clear_errors_nothing_left",
            bad_inputs_clear_errors_nothing_left,
        ),
        (
            "parallel_setups_get_distinct_addresses_and_ports",
            parallel_setups_get_distinct_addresses_and_ports,
        ),
        (
            "existing_bridge_reused_or_refused",
            existing_bridge_reused_or_refused,
        ),
        (
            "confinement_tasks_reach_only_what_the_host_allows",
            confinement::tasks_reach_only_what_the_host_allows,
        ),
        (
            "confinement_a_spoofing_task_reaches_nothing",
            confinement::a_spoofing_task_reaches_nothing,
        ),
        (
            "confinement_eni_requests_for_what_the_host_uses_are_refused",
            confinement::eni_requests_for_what_the_host_uses_are_refused,
        ),
        (
            "confinement_an_eni_task_cannot_reach_the_metadata_service",
            eni_metadata::an_eni_task_cannot_reach_the_metadata_service,
        ),
    ];
    let missing = prerequisites();
    let policy = Policy::from_env();
    if let Some(why) = &missing {
        let bar = "=".repeat(78);
        let verdict = if policy == Policy::Fail {
            "FAILED"
        } else {
            "SKIPPED"
        };
        eprintln!("{bar}\n{verdict}: suite `network`: {why}\n{bar}");
    }
    let trials = tests
        .into_iter()
        .map(|(name, f)| match (&missing, policy) {
            (None, _) => Trial::test(name, move || {
                f().map_err(|e| Failed::from(format!("{e:#}")))
            }),
            (Some(why), Policy::Fail) => {
                let why = why.clone();
                Trial::test(name, move || {
                    Err(Failed::from(format!("prerequisites: {why}")))
                })
            }
            (Some(why), Policy::Skip) => {
                let why = why.clone();
                Trial::ignorable_test(name, move || {
                    Ok(Completion::ignored_with(format!("SKIPPED: {why}")))
                })
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn veth(task: &str, ports: Vec<PortRequest>) -> TaskNetworkSpec {
    TaskNetworkSpec {
        task: task.to_owned(),
        interface: TaskInterface::Veth,
        ports,
        dns: DnsConfig {
            servers: vec!["10.213.0.53".parse().expect("literal")],
            search_domains: vec!["svc.berth.test".to_owned()],
            extra_hosts: vec![(
                "db.berth.test".to_owned(),
                "10.213.0.99".parse().expect("literal"),
            )],
            hostname: format!("{task}-host"),
        },
    }
}

fn tcp(host_port: u32, container_port: u32) -> PortRequest {
    PortRequest {
        protocol: Protocol::Tcp,
        host_port,
        container_port,
    }
}

/// A TCP listener inside `ns` whose accepting thread answers each connection with `reply`.
fn serve_tcp(ns: &NetNs, port: u16, reply: &'static str) -> Result<u16> {
    let listener =
        ns.run(move || TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))??;
    let port = listener.local_addr()?.port();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(reply.as_bytes());
        }
    });
    Ok(port)
}

/// Connects from inside `ns` to `to` and reads the whole reply.
fn fetch_tcp(ns: &NetNs, to: SocketAddr) -> Result<String> {
    let mut s = ns
        .run(move || TcpStream::connect_timeout(&to, IO_TIMEOUT))?
        .with_context(|| format!("connect to {to} from {}", ns.path().display()))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

fn task_ns(net: &TaskNetwork) -> NetNs {
    NetNs::open(&net.netns)
}

fn two_tasks_reach_each_other_and_the_bridge() -> Result<()> {
    let lab = NetLab::new()?;
    let mut config = lab.config("10.213.1.0/24")?;
    config.task_host_ports = [18201].into();
    let network = lab.rt.block_on(Network::open(config))?;
    let before = lab.counts()?;
    let a = lab.rt.block_on(network.setup(&veth("task-a", vec![])))?;
    let b = lab.rt.block_on(network.setup(&veth("task-b", vec![])))?;
    ensure!(a.address != b.address, "both got {}", a.address);
    let bridge_ip: Ipv4Addr = "10.213.1.1".parse()?;
    ensure!(a.gateway == bridge_ip && b.gateway == bridge_ip);
    ensure!(Ipv4Cidr::new("10.213.1.0".parse()?, 24)?.contains(a.address));

    let inside = ns_sh(
        &task_ns(&a),
        "ip -o addr show eth0; ip route; ip -o link show lo",
    )?;
    ensure!(inside.contains(&format!("{}/24", a.address)), "{inside}");
    ensure!(
        inside.contains("default via 10.213.1.1 dev eth0"),
        "{inside}"
    );
    ensure!(
        inside.contains("mtu 1500") || inside.contains("lo:"),
        "{inside}"
    );
    ensure!(inside.contains("UP"), "lo is up: {inside}");

    let pa = serve_tcp(&task_ns(&a), 0, "from a")?;
    ensure!(fetch_tcp(&lab.host, SocketAddr::from((a.address, pa)))? == "from a");
    ensure!(fetch_tcp(&task_ns(&b), SocketAddr::from((a.address, pa)))? == "from a");
    let pb = serve_tcp(&task_ns(&b), 0, "from b")?;
    ensure!(fetch_tcp(&task_ns(&a), SocketAddr::from((b.address, pb)))? == "from b");
    // The host's own ports: only those of `task_host_ports`.
    let ph = serve_tcp(&lab.host, 18201, "from the host")?;
    ensure!(fetch_tcp(&task_ns(&b), SocketAddr::from((bridge_ip, ph)))? == "from the host");

    let hosts = std::fs::read_to_string(&a.files.hosts)?;
    ensure!(
        hosts.contains(&format!("{}\ttask-a-host", a.address)),
        "{hosts}"
    );
    ensure!(hosts.contains("10.213.0.99\tdb.berth.test"), "{hosts}");
    let resolv = std::fs::read_to_string(&a.files.resolv_conf)?;
    ensure!(
        resolv == "nameserver 10.213.0.53\nsearch svc.berth.test\n",
        "{resolv}"
    );
    ensure!(std::fs::read_to_string(&a.files.hostname)? == "task-a-host\n");

    lab.rt.block_on(network.teardown("task-a"))?;
    lab.rt.block_on(network.teardown("task-b"))?;
    lab.rt.block_on(network.teardown("task-b"))?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

fn eni_moves_into_the_task_and_back() -> Result<()> {
    let lab = NetLab::new()?;
    let mac = "02:42:ac:1f:09:0a";
    // The ENI stand-in: a macvlan with a known MAC on a veth (this kernel has no dummy, and a
    // veth itself is refused as an ENI).
    lab.sh(&format!(
        "ip link add eni7par type veth peer name eni7peer \
         && ip link add link eni7par name eni7 address {mac} type macvlan"
    ))?;
    let network = lab.open("10.213.2.0/24")?;
    let before = lab.counts()?;
    let spec = TaskNetworkSpec {
        task: "eni-task".to_owned(),
        interface: TaskInterface::Eni {
            mac: mac.parse::<MacAddr>()?,
            address: "172.31.9.10".parse()?,
            prefix_len: 24,
            gateway: "172.31.9.1".parse()?,
        },
        ports: vec![],
        dns: DnsConfig {
            hostname: "eni-task".to_owned(),
            ..DnsConfig::default()
        },
    };
    let net = lab.rt.block_on(network.setup(&spec))?;
    ensure!(net.address == "172.31.9.10".parse::<Ipv4Addr>()?);
    let host_links = lab.sh("ip -o link show")?;
    ensure!(
        !host_links.contains(mac),
        "the eni is still on the host: {host_links}"
    );
    let inside = ns_sh(
        &task_ns(&net),
        "ip -o link show eth0; ip -o addr show eth0; ip route",
    )?;
    ensure!(inside.contains(mac), "{inside}");
    ensure!(inside.contains("172.31.9.10/24"), "{inside}");
    ensure!(
        inside.contains("default via 172.31.9.1 dev eth0"),
        "{inside}"
    );
    // Setting up again is idempotent.
    lab.rt.block_on(network.setup(&spec))?;

    lab.rt.block_on(network.teardown("eni-task"))?;
    let back = lab.sh("ip -o link show eni7")?;
    ensure!(
        back.contains(mac),
        "the eni did not come back as eni7: {back}"
    );
    ensure!(!task_ns(&net).exists(), "the namespace is gone");
    lab.rt.block_on(network.teardown("eni-task"))?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

fn dnat_reaches_the_task_tcp_udp_and_hairpin() -> Result<()> {
    let lab = NetLab::new()?;
    // The host's "public" address, on a stand-in uplink inside the lab.
    // IPv4 only, so no IPv6 link-local address appears later (the kernel adds those
    // asynchronously once the link has carrier) and skews the before/after counts.
    lab.sh("ip link add uplink type veth peer name uplinkpeer \
         && echo 1 > /proc/sys/net/ipv6/conf/uplink/disable_ipv6 \
         && echo 1 > /proc/sys/net/ipv6/conf/uplinkpeer/disable_ipv6 \
         && ip addr add 172.31.3.5/24 dev uplink && ip link set uplink up \
         && ip link set uplinkpeer up")?;
    let network = lab.open("10.213.3.0/24")?;
    let before = lab.counts()?;
    let web = lab.rt.block_on(network.setup(&veth(
        "web",
        vec![
            tcp(18080, 8080),
            tcp(0, 8081),
            PortRequest {
                protocol: Protocol::Udp,
                host_port: 0,
                container_port: 5353,
            },
        ],
    )))?;
    ensure!(web.ports[0].host_port == 18080);
    let eph = web.ports[1].host_port;
    let udp_port = web.ports[2].host_port;
    ensure!(
        (49153..=49200).contains(&eph) && (49153..=49200).contains(&udp_port),
        "{:?}",
        web.ports
    );
    let client = lab.rt.block_on(network.setup(&veth("client", vec![])))?;

    serve_tcp(&task_ns(&web), 8080, "web 8080")?;
    serve_tcp(&task_ns(&web), 8081, "web 8081")?;
    let udp = task_ns(&web).run(|| UdpSocket::bind("0.0.0.0:5353"))??;
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&[b"echo ", &buf[..n]].concat(), from);
        }
    });

    let public: Ipv4Addr = "172.31.3.5".parse()?;
    // From the host itself (output chain), to its public and bridge addresses.
    ensure!(fetch_tcp(&lab.host, SocketAddr::from((public, 18080)))? == "web 8080");
    ensure!(fetch_tcp(&lab.host, SocketAddr::from((web.gateway, 18080)))? == "web 8080");
    ensure!(fetch_tcp(&lab.host, SocketAddr::from((public, eph)))? == "web 8081");
    // Hairpin: another task, and the task itself, through the host's public address.
    ensure!(fetch_tcp(&task_ns(&client), SocketAddr::from((public, 18080)))? == "web 8080");
    ensure!(fetch_tcp(&task_ns(&web), SocketAddr::from((public, 18080)))? == "web 8080");
    // UDP from the host.
    let reply = lab.host.run(move || -> Result<String> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            s.send_to(b"ping", (public, udp_port))?;
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        bail!("no udp reply through {public}:{udp_port}")
    })??;
    ensure!(reply == "echo ping", "{reply}");

    lab.rt.block_on(network.teardown("web"))?;
    lab.rt.block_on(network.teardown("client"))?;
    let refused = lab
        .host
        .run(move || TcpStream::connect_timeout(&SocketAddr::from((public, 18080)), IO_TIMEOUT))?;
    ensure!(refused.is_err(), "the mapping outlived its task");
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

fn setup_teardown_200_cycles_leave_nothing() -> Result<()> {
    let lab = NetLab::new()?;
    let network = lab.open("10.213.4.0/24")?;
    let before = lab.counts()?;
    let routes_before = lab.sh("ip route show table all")?;
    let mut addresses = BTreeSet::new();
    for i in 0..200 {
        let task = format!("cycle-{i}");
        let net = lab
            .rt
            .block_on(network.setup(&veth(&task, vec![tcp(0, 80), tcp(20000, 81)])))
            .with_context(|| format!("setup {i}"))?;
        addresses.insert(net.address);
        lab.rt
            .block_on(network.teardown(&task))
            .with_context(|| format!("teardown {i}"))?;
    }
    ensure!(addresses.len() > 1, "released addresses rotate");
    let after = lab.counts()?;
    let routes_after = lab.sh("ip route show table all")?;
    ensure!(
        after == before,
        "{after:?} != {before:?}\nroutes before:\n{routes_before}\nroutes after:\n{routes_after}"
    );
    Ok(())
}

fn repair_cleans_up_half_made_tasks() -> Result<()> {
    let lab = NetLab::new()?;
    let before = {
        let _network = lab.open("10.213.5.0/24")?;
        lab.counts()?
    };
    {
        let network = lab.open("10.213.5.0/24")?;
        lab.rt
            .block_on(network.setup(&veth("live", vec![tcp(18081, 80)])))?;
        lab.rt
            .block_on(network.setup(&veth("crashed", vec![tcp(18082, 80)])))?;
        // The agent dies here: nothing is torn down.
    }
    // A task whose setup died right after its namespace was made.
    NetNs::create(&lab.netns_dir(), "half-made")?;
    // And one whose namespace went while its rules and allocation stayed.
    let network = lab.open("10.213.5.0/24")?;
    NetNs::open(lab.netns_dir().join("crashed")).delete()?;

    let live = BTreeSet::from(["live".to_owned()]);
    let repaired = lab.rt.block_on(network.repair(&live))?;
    ensure!(repaired == ["crashed", "half-made"], "{repaired:?}");
    ensure!(lab.rt.block_on(network.repair(&live))?.is_empty());
    ensure!(NetNs::list(&lab.netns_dir())? == ["live"]);
    let rules = lab.sh("nft list chain ip berth ports")?;
    ensure!(
        rules.contains("18081") && !rules.contains("18082"),
        "{rules}"
    );
    // The live task still works and keeps its address.
    let again = lab
        .rt
        .block_on(network.setup(&veth("live", vec![tcp(18081, 80)])))?;
    ensure!(
        again.address == "10.213.5.2".parse::<Ipv4Addr>()?,
        "{}",
        again.address
    );
    lab.rt.block_on(network.repair(&BTreeSet::new()))?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, NetworkError>, wanted: &str) -> Result<()> {
    match r {
        Ok(v) => bail!("expected an error containing {wanted:?}, got {v:?}"),
        Err(e) if e.to_string().contains(wanted) => Ok(()),
        Err(e) => bail!("expected an error containing {wanted:?}, got: {e}"),
    }
}

fn bad_inputs_clear_errors_nothing_left() -> Result<()> {
    let lab = NetLab::new()?;
    lab.sh("ip link add lan0 type veth peer name lan0peer && ip addr add 10.213.60.5/16 dev lan0")?;
    let pristine = lab.counts()?;
    expect_err(
        "10.213.6.0".parse::<Ipv4Cidr>(),
        "invalid cidr \"10.213.6.0\": expected address/prefix",
    )?;
    expect_err(
        "10.213.6.7/24".parse::<Ipv4Cidr>(),
        "host bits are set (the network is 10.213.6.0/24)",
    )?;
    expect_err(
        lab.rt.block_on(Network::open(lab.config("10.213.6.0/24")?)),
        "cidr 10.213.6.0/24 overlaps address 10.213.60.5/16 on host interface lan0",
    )?;
    expect_err(
        lab.rt.block_on(Network::open(lab.config("10.214.6.0/31")?)),
        "cidr 10.214.6.0/31 is too small",
    )?;
    ensure!(lab.counts()? == pristine, "refused opens left something");

    let network = lab.open("10.214.6.0/24")?;
    let before = lab.counts()?;
    let eni = TaskNetworkSpec {
        task: "ghost-eni".to_owned(),
        interface: TaskInterface::Eni {
            mac: "02:00:5e:00:53:01".parse()?,
            address: "172.31.6.10".parse()?,
            prefix_len: 24,
            gateway: "172.31.6.1".parse()?,
        },
        ports: vec![],
        dns: DnsConfig {
            hostname: "ghost".to_owned(),
            ..DnsConfig::default()
        },
    };
    expect_err(
        lab.rt.block_on(network.setup(&eni)),
        "no host interface has mac address 02:00:5e:00:53:01",
    )?;
    expect_err(
        lab.rt
            .block_on(network.setup(&veth("big-port", vec![tcp(70000, 80)]))),
        "invalid host port \"70000\"",
    )?;
    expect_err(
        lab.rt
            .block_on(network.setup(&veth("zero-port", vec![tcp(8080, 0)]))),
        "invalid container port \"0\"",
    )?;
    lab.rt
        .block_on(network.setup(&veth("owner", vec![tcp(18090, 80)])))?;
    expect_err(
        lab.rt
            .block_on(network.setup(&veth("thief", vec![tcp(18090, 80)]))),
        "host port 18090/tcp is already mapped by task owner",
    )?;
    lab.rt.block_on(network.teardown("owner"))?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

fn existing_bridge_reused_or_refused() -> Result<()> {
    let lab = NetLab::new()?;
    lab.sh("ip link add berth0 type bridge && ip addr add 10.213.7.1/24 dev berth0")?;
    let network = lab.open("10.213.7.0/24")?;
    let net = lab.rt.block_on(network.setup(&veth("reuse", vec![])))?;
    let port = serve_tcp(&task_ns(&net), 0, "ok")?;
    ensure!(fetch_tcp(&lab.host, SocketAddr::from((net.address, port)))? == "ok");
    lab.rt.block_on(network.teardown("reuse"))?;
    drop(network);
    // Reopening with the bridge in place reuses it.
    lab.open("10.213.7.0/24")?;
    let other = NetLab::new()?;
    other.sh("ip link add berth0 type bridge && ip addr add 10.213.8.9/24 dev berth0")?;
    expect_err(
        other
            .rt
            .block_on(Network::open(other.config("10.213.9.0/24")?)),
        "bridge berth0 exists with address 10.213.8.9/24, not 10.213.9.1/24",
    )?;
    Ok(())
}

fn parallel_setups_get_distinct_addresses_and_ports() -> Result<()> {
    let lab = NetLab::new()?;
    let network = std::sync::Arc::new(lab.open("10.213.10.0/24")?);
    let before = lab.counts()?;
    let tasks: Vec<String> = (0..12).map(|i| format!("par-{i}")).collect();
    let nets = lab.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for task in &tasks {
            let (network, spec) = (network.clone(), veth(task, vec![tcp(0, 80)]));
            set.spawn(async move { network.setup(&spec).await });
        }
        let mut nets = Vec::new();
        while let Some(r) = set.join_next().await {
            nets.push(r??);
        }
        anyhow::Ok(nets)
    })?;
    let addresses: BTreeSet<_> = nets.iter().map(|n| n.address).collect();
    let ports: BTreeSet<_> = nets.iter().map(|n| n.ports[0].host_port).collect();
    ensure!(addresses.len() == 12, "{addresses:?}");
    ensure!(ports.len() == 12, "{ports:?}");
    let rules = lab.sh("nft list chain ip berth ports")?;
    ensure!(rules.matches("dnat to").count() == 12, "{rules}");
    lab.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for task in tasks {
            let network = network.clone();
            set.spawn(async move { network.teardown(&task).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

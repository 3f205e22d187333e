//! What confines tasks, rule by rule, with real namespaces: the host's addresses (only the
//! endpoint and `task_host_ports`), the instance metadata service and the scheduler (never),
//! the forward path (tasks out, mapped ports in, nothing else), and anti-spoofing (a task
//! sends only with its own address and MAC).
//!
//! The "outside" is a namespace behind a veth of the lab's host (172.31.20.0/24): it plays the
//! VPC, with 169.254.169.254 and a remote scheduler on it; "far" is a network behind another
//! veth (172.31.21.0/24) that the outside could route to through the host.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_runtime::{NetNs, Network, TaskNetwork};
use berth_tests::netlab::{NetLab, ns_sh};

use super::{fetch_tcp, serve_tcp, task_ns, tcp, veth};

/// Long enough for a connection the rules let through on a loaded machine; a refused one fails
/// at once (rejected) or when this runs out (dropped).
const BLOCKED_WITHIN: Duration = Duration::from_secs(3);

const HOST_UPLINK: &str = "172.31.20.5";
const OUTSIDE: &str = "172.31.20.9";
const FAR: &str = "172.31.21.9";

/// Whether a TCP connection from `ns` to `to` fails.
fn blocked(ns: &NetNs, to: SocketAddr) -> Result<bool> {
    Ok(ns
        .run(move || TcpStream::connect_timeout(&to, BLOCKED_WITHIN))?
        .is_err())
}

fn sa(ip: &str, port: u16) -> Result<SocketAddr> {
    Ok(SocketAddr::from((ip.parse::<Ipv4Addr>()?, port)))
}

/// The outside world of a lab: namespaces `outside` and `far` wired to the lab's host.
struct World {
    _dir: tempfile::TempDir,
    outside: NetNs,
    far: NetNs,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.outside.delete();
        let _ = self.far.delete();
    }
}

fn world(lab: &NetLab) -> Result<World> {
    let dir = tempfile::tempdir()?;
    let outside = NetNs::create(dir.path(), "outside")?;
    let far = NetNs::create(dir.path(), "far")?;
    let w = World {
        _dir: dir,
        outside,
        far,
    };
    let (o, f) = (w.outside.path().display(), w.far.path().display());
    lab.sh(&format!(
        "ip link add uplink type veth peer name up0 \
         && ip link set up0 netns {o} \
         && echo 1 > /proc/sys/net/ipv6/conf/uplink/disable_ipv6 \
         && ip addr add {HOST_UPLINK}/24 dev uplink && ip link set uplink up \
         && ip route add 169.254.169.254/32 via {OUTSIDE} \
         && ip link add lan2 type veth peer name far0 \
         && ip link set far0 netns {f} \
         && echo 1 > /proc/sys/net/ipv6/conf/lan2/disable_ipv6 \
         && ip addr add 172.31.21.5/24 dev lan2 && ip link set lan2 up"
    ))?;
    ns_sh(
        &w.outside,
        &format!(
            "ip link set lo up && ip addr add {OUTSIDE}/24 dev up0 \
             && ip addr add 169.254.169.254/32 dev up0 && ip link set up0 up \
             && ip route add default via {HOST_UPLINK}"
        ),
    )?;
    ns_sh(
        &w.far,
        &format!(
            "ip link set lo up && ip addr add {FAR}/24 dev far0 && ip link set far0 up \
             && ip route add default via 172.31.21.5"
        ),
    )?;
    Ok(w)
}

pub(super) fn tasks_reach_only_what_the_host_allows() -> Result<()> {
    let lab = NetLab::new()?;
    let w = world(&lab)?;
    let mut config = lab.config("10.213.20.0/24")?;
    // 7701 is allowed but is also the scheduler's port on this host: the scheduler wins.
    config.task_host_ports = [18125, 7701].into();
    config.blocked_destinations = vec![
        "127.0.0.1:7701".parse()?,
        format!("{OUTSIDE}:7700").parse()?,
    ];
    let network = lab.rt.block_on(Network::open(config.clone()))?;
    let before = lab.counts()?;
    let task = lab
        .rt
        .block_on(network.setup(&veth("confined", vec![tcp(18080, 8080)])))?;
    let ns = task_ns(&task);
    serve_tcp(&ns, 8080, "mapped")?;
    for port in [80, 7700, 7702] {
        serve_tcp(&w.outside, port, "outside")?;
    }
    serve_tcp(&w.far, 7703, "far")?;
    for port in [18125, 18126, 7701] {
        serve_tcp(&lab.host, port, "host")?;
    }
    let endpoint = lab.host.run(|| {
        std::net::TcpListener::bind((
            berth_runtime::ENDPOINT_ADDRESS,
            berth_runtime::ENDPOINT_LISTEN_PORT,
        ))
    })??;
    std::thread::spawn(move || {
        for mut s in endpoint.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut s, b"endpoint");
        }
    });
    let gateway = task.gateway.to_string();

    // Out through the host, masqueraded: yes.
    ensure!(fetch_tcp(&ns, sa(OUTSIDE, 7702)?)? == "outside");
    // The metadata service, the remote scheduler: never.
    ensure!(
        blocked(&ns, sa("169.254.169.254", 80)?)?,
        "metadata reached"
    );
    ensure!(
        blocked(&ns, sa(OUTSIDE, 7700)?)?,
        "the remote scheduler reached"
    );
    // The host: the allowed port on any of its addresses, the endpoint; nothing else.
    ensure!(fetch_tcp(&ns, sa(&gateway, 18125)?)? == "host");
    ensure!(fetch_tcp(&ns, sa(HOST_UPLINK, 18125)?)? == "host");
    ensure!(fetch_tcp(&ns, sa("169.254.170.2", 80)?)? == "endpoint");
    ensure!(
        blocked(&ns, sa(&gateway, 18126)?)?,
        "an unlisted host port reached"
    );
    ensure!(
        blocked(&ns, sa(HOST_UPLINK, 18126)?)?,
        "an unlisted host port reached"
    );
    ensure!(
        blocked(&ns, sa(&gateway, 7701)?)?,
        "the local scheduler reached"
    );
    // The host itself is not confined.
    ensure!(fetch_tcp(&lab.host, sa(&gateway, 18126)?)? == "host");
    // In from outside: the mapped port, not the task's address itself.
    ensure!(fetch_tcp(&w.outside, sa(HOST_UPLINK, 18080)?)? == "mapped");
    ns_sh(&w.outside, "ip route add 10.213.20.0/24 via 172.31.20.5")?;
    ensure!(
        blocked(&w.outside, SocketAddr::from((task.address, 8080)))?,
        "the task's address was routed to from outside"
    );
    // Forwarding is on because of Berth only: the host routes nothing else.
    ns_sh(&w.outside, "ip route add 172.31.21.0/24 via 172.31.20.5")?;
    ensure!(
        blocked(&w.outside, sa(FAR, 7703)?)?,
        "the host forwarded for the outside"
    );

    // The scheduler's address changes: the rule follows.
    lab.rt.block_on(network.block_destinations(&[]))?;
    ensure!(fetch_tcp(&ns, sa(OUTSIDE, 7700)?)? == "outside");
    // An operator who lets tasks reach the metadata service.
    config.block_instance_metadata = false;
    lab.rt.block_on(Network::open(config.clone()))?;
    ensure!(fetch_tcp(&ns, sa("169.254.169.254", 80)?)? == "outside");
    ensure!(
        blocked(&ns, sa(&gateway, 18126)?)?,
        "restart kept the host closed"
    );
    config.block_instance_metadata = true;
    let network = lab.rt.block_on(Network::open(config))?;
    ensure!(
        blocked(&ns, sa("169.254.169.254", 80)?)?,
        "metadata reached"
    );

    lab.rt.block_on(network.teardown("confined"))?;
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

pub(super) fn a_spoofing_task_reaches_nothing() -> Result<()> {
    let lab = NetLab::new()?;
    let network = lab.open("10.213.21.0/24")?;
    let before = lab.counts()?;
    let nets =
        ["honest", "spoofer", "target"].map(|t| lab.rt.block_on(network.setup(&veth(t, vec![]))));
    let [honest, spoofer, target] = nets;
    let (honest, spoofer, target) = (honest?, spoofer?, target?);
    // One-way UDP, so nothing depends on a reply finding its way back: the target counts what
    // arrives. The spoofer knows the target's MAC already (no ARP of its own needed).
    let inbox = task_ns(&target).run(|| UdpSocket::bind("0.0.0.0:0"))??;
    inbox.set_read_timeout(Some(Duration::from_millis(300)))?;
    let to = SocketAddr::from((target.address, inbox.local_addr()?.port()));
    let arrives = |from: &TaskNetwork, tag: &str| -> Result<bool> {
        let sender = task_ns(from).run(|| UdpSocket::bind("0.0.0.0:0"))??;
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            sender.send_to(tag.as_bytes(), to)?;
            while let Ok((n, _)) = inbox.recv_from(&mut buf) {
                if &buf[..n] == tag.as_bytes() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    let spoof = |cmd: &str| ns_sh(&task_ns(&spoofer), cmd);
    spoof(&format!(
        "ip neigh replace {} lladdr {} dev eth0 nud permanent",
        target.address, target.mac
    ))?;
    ensure!(
        arrives(&spoofer, "as itself")?,
        "the spoofer's own traffic arrives"
    );

    // Another task's address, with its own MAC.
    let (mine, theirs, gw) = (spoofer.address, honest.address, spoofer.gateway);
    spoof(&format!(
        "ip addr del {mine}/24 dev eth0 && ip addr add {theirs}/24 dev eth0 \
         && ip route add default via {gw} \
         && ip neigh replace {} lladdr {} dev eth0 nud permanent",
        target.address, target.mac
    ))?;
    ensure!(
        !arrives(&spoofer, "as honest")?,
        "a datagram with another task's address arrived"
    );
    ensure!(
        arrives(&honest, "honest")?,
        "the address's owner still gets through"
    );
    // Its own address again, with another task's MAC, then with a made-up one.
    spoof(&format!(
        "ip addr del {theirs}/24 dev eth0 && ip addr add {mine}/24 dev eth0 \
         && ip route replace default via {gw} \
         && ip neigh replace {} lladdr {} dev eth0 nud permanent",
        target.address, target.mac
    ))?;
    ensure!(
        arrives(&spoofer, "restored")?,
        "the restored spoofer gets through"
    );
    for mac in [honest.mac.to_string(), "02:42:de:ad:be:ef".to_owned()] {
        spoof(&format!("ip link set eth0 address {mac}"))
            .with_context(|| format!("set mac {mac}"))?;
        ensure!(
            !arrives(&spoofer, &mac)?,
            "a datagram from mac {mac} arrived"
        );
    }
    for t in ["honest", "spoofer", "target"] {
        lab.rt.block_on(network.teardown(t))?;
    }
    ensure!(lab.counts()? == before, "{:?} != {before:?}", lab.counts()?);
    Ok(())
}

/// The MAC address of a link in the lab's host namespace.
fn mac_of(lab: &NetLab, link: &str) -> Result<String> {
    let out = lab.sh(&format!("ip -o link show dev {link}"))?;
    out.split("link/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().nth(1))
        .map(str::to_owned)
        .with_context(|| format!("no mac address in {out}"))
}

fn eni(task: &str, mac: &str) -> Result<berth_runtime::TaskNetworkSpec> {
    let mut spec = veth(task, vec![]);
    spec.interface = berth_runtime::TaskInterface::Eni {
        mac: mac.parse()?,
        address: "172.31.31.10".parse()?,
        prefix_len: 24,
        gateway: "172.31.31.1".parse()?,
    };
    Ok(spec)
}

pub(super) fn eni_requests_for_what_the_host_uses_are_refused() -> Result<()> {
    let lab = NetLab::new()?;
    lab.sh("ip link add uplink type veth peer name uplinkpeer \
         && echo 1 > /proc/sys/net/ipv6/conf/uplink/disable_ipv6 \
         && ip addr add 172.31.30.5/24 dev uplink && ip link set uplink up \
         && ip route add default via 172.31.30.1 \
         && ip link add br9 type bridge \
         && ip link add spare type veth peer name sparepeer \
         && ip link add link spare name eni-ok address 0a:58:0a:01:00:07 type macvlan")?;
    let mut config = lab.config("10.213.30.0/24")?;
    config.eni_allowed_macs = vec!["0a:58:0a:01:00:08".parse()?];
    let network = lab.rt.block_on(Network::open(config))?;
    let victim = lab.rt.block_on(network.setup(&veth("victim", vec![])))?;
    let victim_veth = lab
        .sh("ip -o link show")?
        .lines()
        .find_map(|l| l.split(": ").nth(1).filter(|n| n.starts_with("bv")))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .context("the task's veth is not on the host")?;
    let links_before = lab.sh("ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-2 | sort")?;
    let addresses_before = lab.sh("ip -o addr show | sort")?;
    // A bridge takes the MAC of its first port: the victim's veth and berth0 share one, and the
    // refusal may name either.
    let either = format!("{victim_veth} berth0");
    for (link, named, rule) in [
        ("uplink", "uplink", "it carries the host's default route"),
        ("berth0", "berth0", "berth created it"),
        (victim_veth.as_str(), either.as_str(), "berth created it"),
        ("br9", "br9", "it is a bridge"),
        ("sparepeer", "sparepeer", "it is a veth"),
        ("lo", "lo", "it is the loopback interface"),
        ("eni-ok", "eni-ok", "not in the agent's eni_allowed_macs"),
    ] {
        let mac = mac_of(&lab, link)?;
        let err = match lab.rt.block_on(network.setup(&eni("intruder", &mac)?)) {
            Ok(_) => anyhow::bail!("{link} ({mac}) moved into a task"),
            Err(e) => e.to_string(),
        };
        ensure!(
            named
                .split(' ')
                .any(|n| err.contains(&format!("host interface {n} ")))
                && err.contains(rule),
            "{link}: {err}"
        );
    }
    ensure!(
        lab.sh("ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-2 | sort")? == links_before,
        "the host's interfaces changed"
    );
    ensure!(
        lab.sh("ip -o addr show | sort")? == addresses_before,
        "the host's addresses changed"
    );
    ensure!(victim.address.octets()[0] == 10);
    lab.rt.block_on(network.teardown("victim"))?;
    Ok(())
}

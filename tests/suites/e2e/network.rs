//! Task networking end to end: awsvpc (veth and ENI), bridge with port mappings, the task
//! endpoint, and leaks over many cycles. Each agent keeps its bridge, nftables table and task
//! namespaces in a namespace of the trial's own (`Env::net`); every address used is private
//! and exists only there.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_runtime::NetNs;
use berth_tests::World;
use berth_tests::berth::attachment_detail;
use serde_json::{Value, json};

use super::{Env, hello, poll};

/// The bridge's address in every trial's namespace (the agent's default CIDR's gateway).
const BRIDGE_IP: &str = "10.222.0.1";

fn def(family: &str, mode: &str, containers: Value) -> Value {
    json!({ "family": family, "networkMode": mode, "containerDefinitions": containers })
}

/// A shell command run in the namespace that plays the agent's host.
fn host_sh(env: &Env, cmd: &str) -> Result<String> {
    env.net.sh(cmd)
}

/// awsvpc: the task's address answers from the host side, its containers talk over
/// localhost, its DNS files are in place, the task endpoint answers from inside, and two tasks
/// get different addresses.
pub(super) fn awsvpc(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-net-awsvpc")?;
    let server = "while true; do echo hello-from-task | nc -l -p 8080; done";
    // The checks run in a second container of the task; it exits 0 only when all pass.
    let checks = r#"set -e
for i in $(seq 100); do out=$(nc 127.0.0.1 8080 </dev/null 2>/dev/null || true); [ -n "$out" ] && break; sleep 0.05; done
echo "localhost: $out"; [ "$out" = hello-from-task ]
h=$(hostname); echo "hostname: $h"; [ "$(cat /etc/hostname)" = "$h" ]
grep -q "$h" /etc/hosts
touch /etc/hosts 2>/dev/null && { echo "/etc/hosts is writable"; exit 1; }
echo "metadata: $ECS_CONTAINER_METADATA_URI_V4"
# busybox's static wget crashes in glibc's resolver: speak HTTP with nc.
# stdin stays open until the server closes the connection, or nc stops reading early.
get() { { printf 'GET %s HTTP/1.0\r\n\r\n' "$1"; sleep 3; } | nc 169.254.170.2 80; }
me=${ECS_CONTAINER_METADATA_URI_V4#http://169.254.170.2}
get "$me/task" > /tmp/task; cat /tmp/task; echo
grep -q '200 OK' /tmp/task
grep -q '"Family":"netaws"' /tmp/task
get "$me" > /tmp/me
grep -q '"Name":"checks"' /tmp/me
echo all-good"#;
    env.register(&def(
        "netaws",
        "awsvpc",
        json!([
            {"name": "server", "image": image, "memory": 64, "command": ["sh", "-c", server],
             "stopTimeout": 2},
            {"name": "checks", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", checks]}
        ]),
    ))?;
    let a = env.run_task("netaws")?;
    let b = env.run_task("netaws")?;
    let ta = env.wait_status(&a, "RUNNING", Duration::from_secs(60))?;
    let tb = env.wait_status(&b, "RUNNING", Duration::from_secs(60))?;
    let ip_a = attachment_detail(&ta, "privateIPv4Address")
        .with_context(|| format!("no attachment address: {ta}"))?;
    let ip_b = attachment_detail(&tb, "privateIPv4Address")
        .with_context(|| format!("no attachment address: {tb}"))?;
    ensure!(ip_a != ip_b, "two tasks share {ip_a}");
    for (task, ip) in [(&ta, &ip_a), (&tb, &ip_b)] {
        ensure!(
            ip.starts_with("10.222."),
            "address {ip} outside the CIDR: {task}"
        );
        ensure!(
            attachment_detail(task, "macAddress").is_some_and(|m| m.starts_with("02:42:")),
            "{task}"
        );
        ensure!(
            attachment_detail(task, "gateway").as_deref() == Some(BRIDGE_IP),
            "{task}"
        );
    }
    // From the host side, each task's own address answers on the container's port.
    for ip in [&ip_a, &ip_b] {
        let said = poll(Duration::from_secs(10), || {
            let out = host_sh(
                &env,
                &format!("/bin/busybox nc -w 2 {ip} 8080 </dev/null || true"),
            )?;
            Ok((out.trim() == "hello-from-task").then_some(out))
        })
        .with_context(|| format!("{ip}:8080 did not answer{}", env.logs()))?;
        ensure!(said.contains("hello"), "{said}");
    }
    for id in [&a, &b] {
        let t = env.wait_exited(id, 1, Duration::from_secs(30))?;
        let logs = env.ok(&["logs", id, "--container", "checks"])?.stdout;
        ensure!(
            t["containers"][1]["exitCode"] == 0 && logs.contains("all-good"),
            "the checks inside task {id} failed: {logs}\n{t}"
        );
    }
    // The endpoint is not on the host's other addresses.
    let other = host_sh(
        &env,
        &format!("/bin/busybox nc -w 1 {BRIDGE_IP} 51679 </dev/null >/dev/null 2>&1; echo $?"),
    )?;
    ensure!(other.trim() != "0", "the endpoint answered on {BRIDGE_IP}");
    for id in [&a, &b] {
        let t = env.stop_task(id, Duration::from_secs(60))?;
        ensure!(t["attachments"][0]["status"] == "DELETED", "{t}");
    }
    // STOPPED means released: the network went before the status was reported.
    let left = env.net.task_namespaces()?;
    ensure!(left.is_empty(), "namespaces left after STOPPED: {left:?}");
    Ok(())
}

/// awsvpc with an ENI: an interface with a known MAC stands in for it; it moves into the task's
/// namespace with the attachment's address and back to the host when the task ends.
pub(super) fn awsvpc_eni(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-net-eni")?;
    let mac = "0a:58:0a:01:00:05";
    host_sh(
        &env,
        // A macvlan with a known MAC on a veth (this kernel has no dummy interfaces, and a
        // veth itself is refused as an ENI).
        &format!(
            "ip link add eni-par type veth peer name eni-peer \
             && ip link add link eni-par name eni-test address {mac} type macvlan"
        ),
    )?;
    env.register(&def(
        "neteni",
        "awsvpc",
        json!([{"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
                "command": ["sh", "-c",
                    "echo \"metadata: $ECS_CONTAINER_METADATA_URI_V4\"; exec sleep 3600"]}]),
    ))?;
    let attachment = format!("mac={mac},address=10.1.0.5/24,gateway=10.1.0.1");
    let instance = env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .context("no instance id")?
        .to_owned();
    let id = env
        .run_tasks(&[
            "--task-definition",
            "neteni",
            "--network-attachment",
            &attachment,
            "--container-instance",
            &instance,
        ])?
        .swap_remove(0);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    ensure!(
        attachment_detail(&t, "privateIPv4Address").as_deref() == Some("10.1.0.5")
            && attachment_detail(&t, "macAddress").as_deref() == Some(mac),
        "{t}"
    );
    let inside = env.net.task_sh(&id, "ip -o addr show eth0")?;
    ensure!(inside.contains("10.1.0.5/24"), "{inside}");
    // The same ENI cannot go to a second task while this one holds it.
    let twice = env.ctl(&[
        "run-task",
        "--task-definition",
        "neteni",
        "--network-attachment",
        &format!("mac={mac},address=10.1.0.6/24,gateway=10.1.0.1"),
    ])?;
    ensure!(
        twice.status != 0
            && twice.stderr.contains("is in use by task")
            && twice.stderr.contains(&id),
        "{twice:?}"
    );
    // The task endpoint, through the task's second interface (its default route is the ENI's).
    let path = super::confinement_net::metadata_path(&env, &id, "app")?;
    let endpoint = env.net.task_sh(
        &id,
        &format!(
            "ip -o addr show ep0; {{ printf 'GET {path}/task HTTP/1.0\r\n\r\n'; sleep 2; }} \
             | /bin/busybox nc 169.254.170.2 80"
        ),
    )?;
    ensure!(
        endpoint.contains("/32") && endpoint.contains("200 OK") && endpoint.contains(&id),
        "the endpoint did not answer the ENI task: {endpoint}"
    );
    let host_links = host_sh(&env, "ip -o link show")?;
    ensure!(
        !host_links.contains(mac),
        "the ENI is still on the host: {host_links}"
    );
    env.stop_task(&id, Duration::from_secs(60))?;
    let back = poll(Duration::from_secs(10), || {
        let links = host_sh(&env, "ip -o link show")?;
        Ok(links.contains(mac).then_some(links))
    })
    .context("the ENI never came back to the host")?;
    ensure!(
        back.contains("eni-test"),
        "the ENI came back renamed: {back}"
    );
    // A MAC that is not on the host fails the task with a reason naming it.
    let missing = "0a:58:0a:01:00:99".to_owned();
    let id = env
        .run_tasks(&[
            "--task-definition",
            "neteni",
            "--network-attachment",
            &format!("mac={missing},address=10.1.0.6/24,gateway=10.1.0.1"),
        ])?
        .swap_remove(0);
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(
        t.to_string().contains(&missing),
        "the reason does not name the MAC: {t}"
    );
    Ok(())
}

/// The host port of a container's binding to `container_port`.
fn host_port(task: &Value, container: usize, container_port: u64, protocol: &str) -> Option<u16> {
    task["containers"][container]["networkBindings"]
        .as_array()?
        .iter()
        .find(|b| b["containerPort"] == container_port && b["protocol"] == protocol)?
        .get("hostPort")?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// bridge: a static and a dynamic host port reach the container, from the host side and from
/// the task itself (hairpin), UDP too; a second task wanting the same static port is refused
/// at placement; links resolve.
pub(super) fn bridge(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-net-bridge")?;
    let server = "serve() { while true; do echo hello-from-bridge | nc -l -p $1; done; }; \
                  serve 8081 & serve 8080";
    let (id, t) = env.start_task(&def(
        "netbridge",
        "bridge",
        json!([
            {"name": "web", "image": image, "memory": 64, "command": ["sh", "-c", server],
             "stopTimeout": 2,
             "portMappings": [
                {"containerPort": 8080, "hostPort": 18080},
                {"containerPort": 8081, "hostPort": 0, "protocol": "tcp"},
                {"containerPort": 5353, "protocol": "udp"}
             ]},
            {"name": "client", "image": image, "memory": 64, "essential": false,
             "links": ["web:frontend"],
             "command": ["sh", "-c",
                "getent hosts frontend || grep frontend /etc/hosts; \
                 for i in $(seq 100); do out=$(nc frontend 8080 </dev/null 2>/dev/null || true); \
                 [ -n \"$out\" ] && break; sleep 0.05; done; echo \"link: $out\"; \
                 [ \"$out\" = hello-from-bridge ]"]}
        ]),
    ))?;
    let fixed = host_port(&t, 0, 8080, "tcp").filter(|p| *p == 18080);
    ensure!(fixed.is_some(), "no 18080 binding: {t}");
    let bindings: Vec<u16> = t["containers"][0]["networkBindings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["hostPort"].as_u64().and_then(|p| u16::try_from(p).ok()))
                .collect()
        })
        .unwrap_or_default();
    let dynamic = host_port(&t, 0, 8081, "tcp")
        .filter(|p| (49153..=65535).contains(p))
        .with_context(|| format!("no dynamic binding: {t}"))?;
    ensure!(bindings.len() == 3, "{t}");
    let udp = host_port(&t, 0, 5353, "udp").with_context(|| format!("no udp binding: {t}"))?;
    ensure!((49153..=65535).contains(&udp), "udp host port {udp}");
    for port in [18080, dynamic] {
        poll(Duration::from_secs(10), || {
            let out = host_sh(
                &env,
                &format!("/bin/busybox nc -w 2 {BRIDGE_IP} {port} </dev/null || true"),
            )?;
            Ok((out.trim() == "hello-from-bridge").then_some(()))
        })
        .with_context(|| format!("host port {port} did not reach the container{}", env.logs()))?;
    }
    // Hairpin: the task reaches its own host port through the bridge.
    let web_ns = format!("{id}.0");
    let hairpin = env.net.task_sh(
        &web_ns,
        &format!("/bin/busybox nc -w 2 {BRIDGE_IP} 18080 </dev/null || true"),
    )?;
    ensure!(
        hairpin.trim() == "hello-from-bridge",
        "hairpin: {hairpin:?}"
    );
    // UDP: a datagram to the host port arrives at the container's port in its namespace.
    let ns = NetNs::open(env.net.netns_dir.join(&web_ns));
    let receiver = ns.run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353)))??;
    receiver.set_read_timeout(Some(Duration::from_secs(5)))?;
    let sender = env
        .net
        .host
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    sender.send_to(b"ping-udp", (BRIDGE_IP.parse::<Ipv4Addr>()?, udp))?;
    let mut buf = [0u8; 64];
    let (n, _) = receiver
        .recv_from(&mut buf)
        .context("the udp datagram never reached the container's namespace")?;
    ensure!(&buf[..n] == b"ping-udp");
    // The link: the client resolved "frontend" to web's address and got the answer.
    let t = env.wait_exited(&id, 1, Duration::from_secs(30))?;
    let logs = env.ok(&["logs", &id, "--container", "client"])?.stdout;
    ensure!(
        t["containers"][1]["exitCode"] == 0,
        "the link did not work: {logs}\n{t}"
    );
    // A second task wanting the static port 18080 has no room on the only instance.
    let clash = env.ctl(&["run-task", "--task-definition", "netbridge"])?;
    ensure!(
        clash.status != 0 && clash.stderr.contains("18080"),
        "a port clash was not refused at placement: {clash:?}"
    );
    env.stop_task(&id, Duration::from_secs(60))?;
    let rules = host_sh(&env, "nft list chain ip berth ports")?;
    ensure!(!rules.contains("dnat"), "rules left after STOPPED: {rules}");
    Ok(())
}

/// What must be the same before and after many task lives, counted in the trial's namespace
/// (and the task cgroups of the tasks run).
fn counts(env: &Env) -> Result<BTreeMap<&'static str, usize>> {
    let allocations = match std::fs::read(
        env.opts
            .data_dir
            .join("network")
            .join("network-allocations.json"),
    ) {
        Ok(b) => serde_json::from_slice::<Value>(&b)?["tasks"]
            .as_object()
            .map_or(0, |o| o.len()),
        Err(_) => 0,
    };
    Ok(BTreeMap::from([
        ("namespaces", env.net.task_namespaces()?.len()),
        ("links", host_sh(env, "ip -o link show")?.lines().count()),
        (
            "addresses",
            host_sh(env, "ip -o addr show")?.lines().count(),
        ),
        (
            "routes",
            host_sh(env, "ip route show table all")?.lines().count(),
        ),
        (
            "nft rules",
            host_sh(env, "nft -a list table ip berth")?
                .lines()
                .filter(|l| {
                    l.contains("# handle") && !l.contains("chain ") && !l.contains("table ")
                })
                .count(),
        ),
        ("allocations", allocations),
    ]))
}

/// 200 task lives (awsvpc and bridge with a dynamic port, 10 at a time) leave the namespace,
/// link, address, route, nftables rule, allocation and cgroup counts as they were.
pub(super) fn leaks(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-net-leaks")?;
    for (family, mode) in [("leakaws", "awsvpc"), ("leakbridge", "bridge")] {
        env.register(&def(
            family,
            mode,
            json!([{"name": "app", "image": image, "memory": 16, "command": ["true"],
                    "portMappings": [{"containerPort": 80}]}]),
        ))?;
    }
    // One life first, so the bridge and table exist before counting.
    let warm = env.run_task("leakaws")?;
    env.wait_released(&warm, Duration::from_secs(60))?;
    let before = counts(&env)?;
    let mut ids = Vec::new();
    for round in 0..20 {
        let family = if round % 2 == 0 {
            "leakaws"
        } else {
            "leakbridge"
        };
        let batch = env.run_tasks(&["--task-definition", family, "--count", "10"])?;
        ensure!(batch.len() == 10, "round {round}: {batch:?}");
        for id in &batch {
            env.wait_released(id, Duration::from_secs(120))?;
        }
        ids.extend(batch);
    }
    ensure!(ids.len() == 200);
    let after = counts(&env)?;
    ensure!(
        before == after,
        "200 task lives changed the counts: before {before:?}, after {after:?}{}",
        env.logs()
    );
    let cgroups: Vec<PathBuf> = ids
        .iter()
        .flat_map(|id| {
            ["cpu", "memory", "pids"]
                .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/berth/{id}")))
        })
        .filter(|p| p.exists())
        .collect();
    ensure!(cgroups.is_empty(), "task cgroups left: {cgroups:?}");
    Ok(())
}

/// A network_cidr that overlaps an address of the host stops the agent at start with a reason
/// naming both, and leaves no bridge or nftables table behind.
pub(super) fn overlapping_cidr(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    // The cluster exists, so the agent joins and then meets the overlap.
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    host_sh(&env, "ip addr add 10.50.0.5/16 dev lo")?;
    env.opts.extra_args = vec!["--network-cidr".into(), "10.50.8.0/24".into()];
    env.start_agent()?;
    env.agent()?.daemon.wait_for_log(
        "cidr 10.50.8.0/24 overlaps address 10.50.0.5/16 on host interface lo",
        Duration::from_secs(20),
    )?;
    let pid = env.agent()?.daemon.pid().context("agent pid")?;
    poll(Duration::from_secs(10), || {
        Ok((!berth_tests::pid_alive(pid)).then_some(()))
    })
    .context("the agent kept running with an overlapping cidr")?;
    let links = host_sh(&env, "ip -o link show")?;
    ensure!(!links.contains("berth0"), "a bridge was left: {links}");
    let tables = host_sh(&env, "nft list tables")?;
    ensure!(!tables.contains("berth"), "a table was left: {tables}");
    Ok(())
}

/// An agent restart (SIGKILL) keeps an awsvpc task's network: the repair at start leaves the
/// namespace of a task it still runs, the address still answers, and the cleanup after the
/// restart removes it all.
pub(super) fn agent_restart_keeps_the_network(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-net-restart")?;
    let server = "while true; do echo still-here | nc -l -p 8080; done";
    let (id, t) = env.start_task(&def(
        "netrestart",
        "awsvpc",
        json!([{"name": "server", "image": image, "memory": 64, "stopTimeout": 2,
                "command": ["sh", "-c", server]}]),
    ))?;
    let ip = attachment_detail(&t, "privateIPv4Address").context("no address")?;
    env.agent()?
        .daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(15))?;
    env.start_agent()?;
    env.agent()?
        .daemon
        .wait_for_log("session established", Duration::from_secs(30))?;
    poll(Duration::from_secs(10), || {
        let out = host_sh(
            &env,
            &format!("/bin/busybox nc -w 2 {ip} 8080 </dev/null || true"),
        )?;
        Ok((out.trim() == "still-here").then_some(()))
    })
    .with_context(|| {
        format!(
            "{ip} stopped answering after the agent restart{}",
            env.logs()
        )
    })?;
    ensure!(env.net.task_namespaces()? == std::slice::from_ref(&id));
    env.stop_task(&id, Duration::from_secs(60))?;
    let left = env.net.task_namespaces()?;
    ensure!(left.is_empty(), "namespaces left after STOPPED: {left:?}");
    let rules = host_sh(&env, "nft list chain ip berth ports")?;
    ensure!(!rules.contains("dnat"), "{rules}");
    Ok(())
}

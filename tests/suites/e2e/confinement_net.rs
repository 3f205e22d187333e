//! Network confinement end to end, from inside real containers: a task reaches neither the
//! instance metadata service (a veth in the trial's namespace carries 169.254.169.254), nor the
//! scheduler's port, nor an unlisted port of its host, but reaches an allowed host port and
//! its own metadata URL; a guessed or named metadata URL answers 404; and one task's open
//! connections to the endpoint are capped.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use serde_json::json;

use super::{Env, hello, poll};

const ALLOWED: u16 = 18125;
const UNLISTED: u16 = 18126;

/// The path of a container's metadata URL, from the line `metadata: <url>` its command logs.
pub(super) fn metadata_path(env: &Env, task: &str, container: &str) -> Result<String> {
    poll(Duration::from_secs(30), || {
        let log = env.container_log(task, container);
        Ok(log.lines().find_map(|l| {
            l.strip_prefix("metadata: http://169.254.170.2")
                .filter(|p| p.starts_with("/v4/"))
                .map(|p| p.trim().to_owned())
        }))
    })
    .with_context(|| format!("{container} of task {task} never logged its metadata url"))
}

/// A TCP server in the namespace playing the agent's host that answers `tag` to anyone.
fn serve(env: &Env, address: Ipv4Addr, port: u16, tag: &'static str) -> Result<()> {
    let listener = env
        .net
        .host
        .run(move || TcpListener::bind(SocketAddr::from((address, port))))?
        .with_context(|| format!("listen on {address}:{port}"))?;
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(tag.as_bytes());
        }
    });
    Ok(())
}

pub(super) fn reach(w: &World) -> Result<()> {
    let mut env = Env::new(w, "0")?;
    env.opts.extra_args = vec![format!("--task-host-ports={ALLOWED}")];
    env.connect()?;
    // The metadata service's stand-in (this kernel has no dummy interfaces: one end of a veth).
    env.net.sh("ip link add imds type veth peer name imdspeer \
         && ip addr add 169.254.169.254/32 dev imds \
         && ip link set imds up && ip link set imdspeer up")?;
    let any = Ipv4Addr::UNSPECIFIED;
    serve(&env, Ipv4Addr::new(169, 254, 169, 254), 80, "imds")?;
    // The scheduler runs on the agent's host (a loopback endpoint): its port on every address
    // of the host is closed to tasks.
    let scheduler_port = env.scheduler.port();
    serve(&env, any, scheduler_port, "scheduler")?;
    serve(&env, any, ALLOWED, "allowed")?;
    serve(&env, any, UNLISTED, "unlisted")?;
    let image = hello(w, "e2e-confine-net")?;
    let probe = format!(
        r#"echo "metadata: $ECS_CONTAINER_METADATA_URI_V4"
try() {{ out=$(nc -w 3 "$1" "$2" </dev/null 2>/dev/null); echo "$3: ${{out:-none}}"; }}
try 169.254.169.254 80 imds
try 10.222.0.1 {scheduler_port} scheduler
try 10.222.0.1 {UNLISTED} unlisted
try 10.222.0.1 {ALLOWED} allowed
# busybox's static wget crashes in glibc's resolver: speak HTTP with nc.
get() {{ {{ printf 'GET %s HTTP/1.0\r\n\r\n' "$1"; sleep 2; }} | nc 169.254.170.2 80 | head -n 1; }}
own=${{ECS_CONTAINER_METADATA_URI_V4#http://169.254.170.2}}
echo "own: $(get "$own")"
echo "own task: $(get "$own/task")"
echo "guessed: $(get /v4/0123456789abcdef0123456789abcdef)"
echo "by name: $(get /v4/probe)"
echo done
exec sleep 3600"#
    );
    env.register(&json!({
        "family": "confinenet",
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {"name": "probe", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sh", "-c", probe]}
        ]
    }))?;
    let id = env.run_task("confinenet")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let log = poll(Duration::from_secs(60), || {
        let log = env.container_log(&id, "probe");
        Ok(log.contains("done").then_some(log))
    })
    .with_context(|| format!("the probe never finished{}", env.logs()))?;
    for (line, wanted) in [
        ("imds: ", "none"),
        ("scheduler: ", "none"),
        ("unlisted: ", "none"),
        ("allowed: ", "allowed"),
    ] {
        let got = log
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .with_context(|| format!("no {line:?} in {log}"))?;
        ensure!(
            got.trim() == wanted,
            "{line}{got} (wanted {wanted}):\n{log}"
        );
    }
    let status = |line: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_default()
            .to_owned()
    };
    ensure!(status("own: ").contains("200 OK"), "{log}");
    ensure!(status("own task: ").contains("200 OK"), "{log}");
    ensure!(status("guessed: ").contains("404"), "{log}");
    ensure!(status("by name: ").contains("404"), "{log}");
    let path = metadata_path(&env, &id, "probe")?;
    let secret = path.trim_start_matches("/v4/");
    ensure!(
        secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "the metadata id is 128 random bits in hex: {path}"
    );
    // The right URL from anywhere but the task: 404 (the host namespace is not the task).
    let from_host = env.net.sh(&format!(
        "{{ printf 'GET {path} HTTP/1.0\\r\\n\\r\\n'; sleep 2; }} | /bin/busybox nc 169.254.170.2 51679 | head -n 1"
    ))?;
    ensure!(from_host.contains("404"), "{from_host}");

    // The cap: 16 idle connections held by the task; the 17th is refused with a 429.
    let capped = env.net.task_sh(
        &id,
        "for i in $(seq 16); do { sleep 6; } | /bin/busybox nc 169.254.170.2 80 >/dev/null 2>&1 & done; \
         sleep 2; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 169.254.170.2 80 | head -n 1",
    )?;
    ensure!(capped.contains("429"), "the 17th connection: {capped:?}");
    let freed = poll(Duration::from_secs(20), || {
        let out = env.net.task_sh(
            &id,
            &format!(
                "{{ printf 'GET {path} HTTP/1.0\\r\\n\\r\\n'; sleep 1; }} | /bin/busybox nc 169.254.170.2 80 | head -n 1"
            ),
        )?;
        Ok(out.contains("200 OK").then_some(out))
    })
    .context("the endpoint never answered again once the connections closed")?;
    ensure!(freed.contains("200"), "{freed}");
    env.stop_task(&id, Duration::from_secs(60))?;
    Ok(())
}

/// The MAC address of a link in the namespace playing the agent's host.
fn mac_of(env: &Env, link: &str) -> Result<String> {
    let out = env.net.sh(&format!("ip -o link show dev {link}"))?;
    out.split("link/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().nth(1))
        .map(str::to_owned)
        .with_context(|| format!("no mac address in {out}"))
}

/// ENI attachments naming the host's default-route interface, the task bridge and another
/// task's veth: each task stops before it runs, its reason naming the interface and the rule,
/// and the host's interfaces are as they were.
pub(super) fn eni_refusals(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    env.net
        .sh("ip link add uplink type veth peer name uplinkpeer \
         && echo 1 > /proc/sys/net/ipv6/conf/uplink/disable_ipv6 \
         && ip addr add 172.31.40.5/24 dev uplink && ip link set uplink up \
         && ip route add default via 172.31.40.1")?;
    let image = hello(w, "e2e-confine-eni")?;
    env.register(&json!({
        "family": "confineeni",
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sleep", "3600"]}
        ]
    }))?;
    // A veth task, whose host-side veth is the third target.
    let victim = env.run_task("confineeni")?;
    env.wait_status(&victim, "RUNNING", Duration::from_secs(60))?;
    let veth = env
        .net
        .sh("ip -o link show")?
        .lines()
        .find_map(|l| l.split(": ").nth(1).filter(|n| n.starts_with("bv")))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .context("the task's veth is not on the host")?;
    let links = || {
        env.net
            .sh("ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-2 | sort")
    };
    let before = (links()?, env.net.sh("ip -o addr show | sort")?);
    let instance = env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .context("no instance id")?
        .to_owned();
    // A bridge takes the MAC of its first port, so the veth's MAC may be found on berth0.
    for (link, named, rule) in [
        (
            "uplink",
            vec!["uplink"],
            "it carries the host's default route",
        ),
        ("berth0", vec!["berth0"], "berth created it"),
        (
            veth.as_str(),
            vec![veth.as_str(), "berth0"],
            "berth created it",
        ),
    ] {
        let mac = mac_of(&env, link)?;
        let id = env
            .run_tasks(&[
                "--task-definition",
                "confineeni",
                "--network-attachment",
                &format!("mac={mac},address=172.31.41.10/24,gateway=172.31.41.1"),
                "--container-instance",
                &instance,
            ])?
            .swap_remove(0);
        let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(
            named
                .iter()
                .any(|n| reason.contains(&format!("host interface {n} ")))
                && reason.contains(rule),
            "{link}: {t}"
        );
    }
    ensure!(
        (links()?, env.net.sh("ip -o addr show | sort")?) == before,
        "the host's interfaces changed"
    );
    env.stop_task(&victim, Duration::from_secs(60))?;
    Ok(())
}

//! `make bench`, the price of telemetry: the agent's CPU (user and system time from
//! `/proc/<pid>/stat`, as a share of one core) and resident memory with 100 running
//! containers (100 tasks of one `sleep` container each), with metrics every 1 s, every 10 s
//! and off, in one run: the same agent (same data dir and instance) restarted with each
//! `--metrics-interval`, over the same containers, which keep running across the restarts.
//! Beside each, the mean time of one collection pass over the 100 containers, from the
//! agent's own counters (`berth_agent_metrics_collection_seconds_total` over
//! `berth_agent_metrics_collections_total`), and the CPU time of any child the agent reaped
//! (a pass spawns nothing: it should stay 0), and the agent's open files (the sampler keeps
//! each sampled cgroup's files open between passes). Goal: under 1 % of one core at 1 s.
//! Prints figures; asserts nothing. Needs the release binaries (`make bench` builds them
//! first). `telemetry_pass.rs` measures one pass alone, without the agent around it.
//!
//! The harness's agents heartbeat every second (the default is longer), which every phase
//! pays alike; the difference between a phase and "off" is what metrics cost.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_tests::bench::{Serve, World, stat_seconds};
use berth_tests::berth::{Agent, berthctl};
use berth_tests::poll;

const CONTAINERS: usize = 100;
/// How long each phase is measured: six passes at 10 s.
const WINDOW: Duration = Duration::from_secs(60);
/// After an agent starts: its startup (reconciling 100 tasks) is not what is measured.
const SETTLE: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

fn ctl(config: &Path, args: &[&str]) -> Result<String> {
    Ok(berthctl(config, "bench", args)?.success(args)?.stdout)
}

/// A process's CPU time in seconds: its own in user mode (utime) and in the kernel (stime), and
/// its reaped children's (cutime + cstime).
fn cpu_seconds(pid: u32) -> Result<(f64, f64, f64)> {
    let [utime, stime, cutime, cstime] =
        stat_seconds(&format!("/proc/{pid}/stat"), [14, 15, 16, 17])?;
    Ok((utime, stime, cutime + cstime))
}

/// The process's open file descriptors.
fn open_files(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib as f64 / 1024.0)
}

/// The agent's introspection endpoint: one GET, the body.
fn get(address: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {head}");
    }
    Ok(body.to_owned())
}

/// A sample without labels on `/metrics`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The agent's passes so far and the seconds they took.
fn passes(agent: &Agent) -> Result<(f64, f64)> {
    let text = get(agent.metrics, "/metrics")?;
    Ok((
        sample(&text, "berth_agent_metrics_collections_total"),
        sample(&text, "berth_agent_metrics_collection_seconds_total"),
    ))
}

/// The tasks the agent knows RUNNING (its introspection API).
fn running(agent: &Agent) -> Result<usize> {
    let body = get(agent.metrics, "/v1/tasks")?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok(v["Tasks"].as_array().map_or(0, |t| {
        t.iter().filter(|t| t["KnownStatus"] == "RUNNING").count()
    }))
}

fn run() -> Result<()> {
    // TLS, as deployed: the batches go over it.
    let World {
        mut opts,
        net: _net,
        scheduler,
        image,
        registry: _registry,
        host,
    } = World::start("telemetry", Serve::Tls)?;
    let root = host.root();
    let config = scheduler.ctl_config.clone();
    let def = root.join("sleeper.json");
    std::fs::write(
        &def,
        serde_json::to_vec(
            &serde_json::json!({"family": "sleeper", "networkMode": "none",
            "containerDefinitions": [{"name": "c", "image": image, "memory": 8,
                                      "stopTimeout": 1, "command": ["sleep", "3600"]}]}),
        )?,
    )?;
    ctl(
        &config,
        &["register-task-definition", "--file", &def.to_string_lossy()],
    )?;

    println!("\ntelemetry with {CONTAINERS} running containers, {WINDOW:?} a phase");
    println!(
        "{:<12} {:>12} {:>8} {:>8} {:>10} {:>8} {:>10} {:>16} {:>8}",
        "metrics",
        "agent CPU %",
        "user %",
        "sys %",
        "RSS MiB",
        "passes",
        "pass ms",
        "children CPU s",
        "fds"
    );
    let mut ids: Vec<String> = Vec::new();
    let mut agent: Option<Agent> = None;
    for (name, interval) in [("every 1s", "1s"), ("every 10s", "10s"), ("off", "0")] {
        if let Some(previous) = agent.take() {
            previous
                .daemon
                .signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))?;
        }
        opts.extra_args = vec!["--metrics-interval".into(), interval.into()];
        let started = Agent::start(&opts, root.join(format!("agent-{interval}.log")))?;
        started
            .daemon
            .wait_for_log("session established", Duration::from_secs(60))?;
        if ids.is_empty() {
            // Ten at a time: one berthctl call each.
            while ids.len() < CONTAINERS {
                let args = ["run-task", "--task-definition", "sleeper", "--count", "10"];
                ids.extend(
                    berthctl(&config, "bench", &args)?
                        .success(&args)?
                        .task_ids(),
                );
            }
            let mut wait = vec!["wait", "tasks-running"];
            wait.extend(ids.iter().map(String::as_str));
            wait.extend(["--timeout", "900"]);
            ctl(&config, &wait)?;
        }
        poll(Duration::from_secs(120), || {
            Ok((running(&started)? >= CONTAINERS).then_some(()))
        })
        .context("the agent never saw every task running")?;
        std::thread::sleep(SETTLE);
        let pid = started.daemon.pid().context("agent pid")?;
        let (user_before, sys_before, children_before) = cpu_seconds(pid)?;
        let (passes_before, seconds_before) = passes(&started)?;
        let start = Instant::now();
        std::thread::sleep(WINDOW);
        let (user_after, sys_after, children_after) = cpu_seconds(pid)?;
        let (passes_after, seconds_after) = passes(&started)?;
        let wall = start.elapsed().as_secs_f64();
        let count = passes_after - passes_before;
        let pass_ms = if count > 0.0 {
            format!("{:.2}", (seconds_after - seconds_before) / count * 1000.0)
        } else {
            "-".to_owned()
        };
        let (user, sys) = (
            (user_after - user_before) / wall * 100.0,
            (sys_after - sys_before) / wall * 100.0,
        );
        println!(
            "{name:<12} {:>12.3} {user:>8.3} {sys:>8.3} {:>10.1} {:>8} {pass_ms:>10} {:>16.2} {:>8}",
            user + sys,
            rss_mib(pid)?,
            count,
            children_after - children_before,
            open_files(pid)?,
        );
        agent = Some(started);
    }

    for id in &ids {
        ctl(&config, &["stop-task", id])?;
    }
    let mut wait = vec!["wait", "tasks-stopped"];
    wait.extend(ids.iter().map(String::as_str));
    wait.extend(["--timeout", "600"]);
    ctl(&config, &wait)?;
    drop(agent);
    Ok(())
}

//! `make bench`, the price of telemetry: the agent's CPU (user and system time from
//! `/proc/<pid>/stat`: CPU time consumed, as a share of one core over the window, so a loaded
//! machine slows the agent down without inflating the figure) and resident memory with 100
//! running containers (100 tasks of one `sleep` container each), with metrics every 1 s,
//! every 10 s and off. The containers are started by a setup agent first; then every phase
//! is a fresh agent (same data dir and instance) that re-adopts them with its
//! `--metrics-interval`, so no phase carries the memory or the work of starting 100 tasks.
//! The phases run in rounds (`BERTH_TELEMETRY_BENCH_ROUNDS`, default 2), in alternating
//! order, and the summary gives each phase's median and spread, and what metrics add over
//! "off".
//!
//! Beside each, the mean time of one collection pass over the 100 containers, from the
//! agent's own counters (`berth_agent_metrics_collection_seconds_total` over
//! `berth_agent_metrics_collections_total`); the read and write syscalls the agent made
//! (`syscr`/`syscw` of `/proc/<pid>/io`; a pass's are what a phase makes beyond "off"); the CPU
//! time of any child the agent reaped (a pass spawns nothing: it should stay 0); and the
//! agent's open files (the sampler keeps each sampled cgroup's files open between passes).
//! Goal: under 1 % of one core at 1 s. Prints figures; asserts nothing. Needs the release
//! binaries (`make bench` builds them first). `telemetry_pass.rs` measures one pass alone,
//! without the agent around it.
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
use berth_tests::berth::{Agent, AgentOptions, berthctl};
use berth_tests::poll;

const CONTAINERS: usize = 100;
/// How long each phase is measured: six passes at 10 s.
const WINDOW: Duration = Duration::from_secs(60);
/// After an agent starts: its startup (reconciling 100 tasks) is not what is measured.
const SETTLE: Duration = Duration::from_secs(15);
/// Each phase's name and `--metrics-interval`, and its interval in seconds (0: off).
const PHASES: [(&str, &str, f64); 3] = [
    ("off", "0", 0.0),
    ("every 1s", "1s", 1.0),
    ("every 10s", "10s", 10.0),
];

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

/// The read and write syscalls the process made so far (`syscr`, `syscw` of `/proc/<pid>/io`).
fn syscalls(pid: u32) -> Result<(f64, f64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let field = |name: &str| -> Result<f64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/io"))
    };
    Ok((field("syscr:")?, field("syscw:")?))
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

/// One phase's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    user: f64,
    sys: f64,
    rss_mib: f64,
    passes: f64,
    pass_ms: Option<f64>,
    /// Read and write syscalls a second.
    reads: f64,
    writes: f64,
    children_s: f64,
    fds: usize,
}

impl Figures {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// Starts an agent with `interval`, waits until it has re-adopted every task and settled,
/// and measures it over `WINDOW`; the agent is returned to be stopped by the caller.
fn measure(
    opts: &mut AgentOptions,
    root: &Path,
    interval: &str,
    tag: &str,
) -> Result<(Agent, Figures)> {
    opts.extra_args = vec!["--metrics-interval".into(), interval.into()];
    let agent = Agent::start(opts, root.join(format!("agent-{tag}.log")))?;
    agent
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    poll(Duration::from_secs(120), || {
        Ok((running(&agent)? >= CONTAINERS).then_some(()))
    })
    .context("the agent never saw every task running")?;
    std::thread::sleep(SETTLE);
    let pid = agent.daemon.pid().context("agent pid")?;
    let (user_before, sys_before, children_before) = cpu_seconds(pid)?;
    let (reads_before, writes_before) = syscalls(pid)?;
    let (passes_before, seconds_before) = passes(&agent)?;
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let (user_after, sys_after, children_after) = cpu_seconds(pid)?;
    let (reads_after, writes_after) = syscalls(pid)?;
    let (passes_after, seconds_after) = passes(&agent)?;
    let wall = start.elapsed().as_secs_f64();
    let count = passes_after - passes_before;
    let figures = Figures {
        user: (user_after - user_before) / wall * 100.0,
        sys: (sys_after - sys_before) / wall * 100.0,
        rss_mib: rss_mib(pid)?,
        passes: count,
        pass_ms: (count > 0.0).then(|| (seconds_after - seconds_before) / count * 1000.0),
        reads: (reads_after - reads_before) / wall,
        writes: (writes_after - writes_before) / wall,
        children_s: children_after - children_before,
        fds: open_files(pid)?,
    };
    Ok((agent, figures))
}

/// The median and the range of `values`.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
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

    let rounds: usize = match std::env::var("BERTH_TELEMETRY_BENCH_ROUNDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .context("BERTH_TELEMETRY_BENCH_ROUNDS must be a positive number")?,
        Err(_) => 2,
    };

    // The setup agent starts the containers, ten at a time (one berthctl call each).
    opts.extra_args = vec!["--metrics-interval".into(), "0".into()];
    let setup = Agent::start(&opts, root.join("agent-setup.log"))?;
    setup
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    let mut ids: Vec<String> = Vec::new();
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
    setup
        .daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))?;

    println!(
        "\ntelemetry with {CONTAINERS} running containers, {WINDOW:?} a phase, {rounds} round(s)"
    );
    println!(
        "{:<6} {:<10} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>9} {:>9} {:>10} {:>5}",
        "round",
        "metrics",
        "CPU %",
        "user %",
        "sys %",
        "RSS MiB",
        "passes",
        "pass ms",
        "reads/s",
        "writes/s",
        "children s",
        "fds"
    );
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); PHASES.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..PHASES.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for phase in order {
            let (name, interval, _) = PHASES[phase];
            let (agent, f) = measure(&mut opts, root, interval, &format!("{round}-{interval}"))?;
            agent
                .daemon
                .signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))?;
            let pass_ms = f.pass_ms.map_or("-".to_owned(), |ms| format!("{ms:.2}"));
            println!(
                "{round:<6} {name:<10} {:>8.3} {:>7.3} {:>7.3} {:>8.1} {:>7} {pass_ms:>8} {:>9.1} {:>9.1} {:>10.2} {:>5}",
                f.cpu(),
                f.user,
                f.sys,
                f.rss_mib,
                f.passes,
                f.reads,
                f.writes,
                f.children_s,
                f.fds,
            );
            results[phase].push(f);
        }
    }

    println!(
        "\nsummary: median [min - max] over {rounds} round(s); added = the phase minus the median of \"off\""
    );
    let off_cpu = spread(&mut results[0].iter().map(Figures::cpu).collect::<Vec<_>>()).0;
    let off_rss = spread(&mut results[0].iter().map(|f| f.rss_mib).collect::<Vec<_>>()).0;
    let off_reads = spread(&mut results[0].iter().map(|f| f.reads).collect::<Vec<_>>()).0;
    for (phase, (name, _, interval_s)) in PHASES.iter().enumerate() {
        let (cpu, cpu_lo, cpu_hi) =
            spread(&mut results[phase].iter().map(Figures::cpu).collect::<Vec<_>>());
        let (rss, rss_lo, rss_hi) =
            spread(&mut results[phase].iter().map(|f| f.rss_mib).collect::<Vec<_>>());
        let (reads, ..) = spread(&mut results[phase].iter().map(|f| f.reads).collect::<Vec<_>>());
        let mut line = format!(
            "{name:<10} CPU {cpu:.3} % [{cpu_lo:.3} - {cpu_hi:.3}], RSS {rss:.1} MiB [{rss_lo:.1} - {rss_hi:.1}]"
        );
        if *interval_s > 0.0 {
            line.push_str(&format!(
                "; added: CPU {:.3} % of a core [{:.3} - {:.3}], RSS {:.1} MiB, {:.0} read syscalls a pass",
                cpu - off_cpu,
                cpu_lo - off_cpu,
                cpu_hi - off_cpu,
                rss - off_rss,
                (reads - off_reads) * interval_s,
            ));
        }
        println!("{line}");
    }
    println!("goal: metrics every 1s add under 1 % of one core");

    // An agent to stop the containers with.
    opts.extra_args = vec!["--metrics-interval".into(), "0".into()];
    let cleanup = Agent::start(&opts, root.join("agent-cleanup.log"))?;
    cleanup
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    for id in &ids {
        ctl(&config, &["stop-task", id])?;
    }
    let mut wait = vec!["wait", "tasks-stopped"];
    wait.extend(ids.iter().map(String::as_str));
    wait.extend(["--timeout", "600"]);
    ctl(&config, &wait)?;
    drop(cleanup);
    Ok(())
}

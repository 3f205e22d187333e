//! `make bench`, the awslogs driver: how many lines per second one container can write in
//! non-blocking mode with delivery to CloudWatch Logs (moto's server on 127.0.0.1), and the
//! agent's CPU per 10,000 lines, beside the json-file driver alone in the same run. The
//! container times its own writing (`/proc/uptime` before and after, printed on stderr);
//! the agent's CPU is read from `/proc/<pid>/stat` around each run, up to the moment its json-
//! file copy is complete (json-file) or every line is in moto or counted as dropped
//! (awslogs). Prints figures; asserts nothing but that the runs completed. Needs the release
//! binaries (`cargo build --release --workspace --bins`, which `make bench` runs first) and
//! moto (`make deps`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_tests::bench::{Serve, World, register_definition, stat_seconds};
use berth_tests::berth::{Agent, berthctl};
use berth_tests::moto::{Moto, REGION, moto_server};
use berth_tests::poll;
use serde_json::{Value, json};

/// Lines each container writes.
const LINES: usize = 100_000;
/// Runs of each driver.
const ROUNDS: usize = 3;
const GROUP: &str = "/bench/awslogs";

fn main() -> ExitCode {
    berth_tests::bench::main_with(
        || {
            berth_tests::Prereq::check().err().or_else(|| {
                moto_server()
                    .is_none()
                    .then(|| "moto_server not installed: run `make deps`".into())
            })
        },
        run,
    )
}
/// One measured run: the container's writing time and the agent's CPU seconds.
struct Run {
    write: f64,
    cpu: f64,
}

fn run() -> Result<()> {
    let world = World::start("awslogs", Serve::Plaintext)?;
    let root = world.host.root();
    let moto = Moto::start(&root.join("moto"))?;
    let mut opts = world.opts.clone();
    // The bench reads each container's own timing from its log file after it exits: the
    // task's cleanup must not remove the file first.
    opts.cleanup_wait = "600".into();
    opts.extra_args
        .push(format!("--awslogs-endpoint={}", moto.endpoint()));
    let agent = Agent::start_with_env(&opts, root.join("agent.log"), &Moto::agent_env())?;
    agent
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    let pid = agent.daemon.pid().context("agent not running")?;
    let config = world.scheduler.ctl_config.clone();
    let script = format!(
        "read a _ < /proc/uptime; i=0; while [ $i -lt {LINES} ]; do \
         echo \"line $i: the quick brown fox jumps over the lazy dog\"; i=$((i+1)); done; \
         read b _ < /proc/uptime; echo \"elapsed $a $b\" >&2"
    );
    let mut results: Vec<(&str, Vec<Run>)> = Vec::new();
    for (label, family, log) in [
        ("json-file", "bench-jsonfile", Value::Null),
        (
            "awslogs non-blocking",
            "bench-awslogs",
            json!({"logDriver": "awslogs", "options": {
                "awslogs-group": GROUP, "awslogs-region": REGION,
                "awslogs-stream-prefix": "bench", "awslogs-create-group": "true",
                "mode": "non-blocking"}}),
        ),
    ] {
        let mut c = json!({"name": "app", "image": world.image, "memory": 64,
                           "command": ["sh", "-c", script]});
        if !log.is_null() {
            c["logConfiguration"] = log;
        }
        let def = json!({"family": family, "networkMode": "none", "containerDefinitions": [c]});
        register_definition(&config, "bench", root, &def)?;
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            runs.push(one_run(
                &config,
                &opts.data_dir,
                pid,
                family,
                &moto,
                &agent,
            )?);
        }
        results.push((label, runs));
    }
    println!("\nawslogs throughput: one container writing {LINES} lines, {ROUNDS} runs each");
    for (label, runs) in &results {
        for r in runs {
            println!(
                "  {label:22} {:>9.0} lines/s written   agent CPU {:.3} s per 10,000 lines",
                LINES as f64 / r.write.max(0.01),
                r.cpu * 10_000.0 / LINES as f64
            );
        }
    }
    Ok(())
}

fn one_run(
    config: &Path,
    data_dir: &Path,
    pid: u32,
    family: &str,
    moto: &Moto,
    agent: &Agent,
) -> Result<Run> {
    let stat = format!("/proc/{pid}/stat");
    let [u0, s0] = stat_seconds(&stat, [14, 15])?;
    let dropped_before = dropped_so_far(agent)?;
    let args = ["run-task", "--task-definition", family];
    let id = berthctl(config, "bench", &args)?
        .success(&args)?
        .task_ids()
        .into_iter()
        .next()
        .context("no task ID printed")?;
    let log = data_dir.join("logs").join(&id).join("app.log");
    // The container's own timing, from its last (stderr) line.
    // The container's stderr line with its own timing: stderr is drained beside stdout, so
    // it can land anywhere among the last lines, or in the rotated file.
    let rotated = log.with_extension("log.1");
    let write = poll(Duration::from_secs(600), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(&rotated).unwrap_or_default();
        Ok(text
            .lines()
            .filter(|l| l.contains("elapsed "))
            .find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                let rest = v["log"].as_str()?.strip_prefix("elapsed ")?.to_owned();
                let (a, b) = rest.trim().split_once(' ')?;
                Some(b.parse::<f64>().ok()? - a.parse::<f64>().ok()?)
            }))
    })
    .with_context(|| format!("the container of {id} did not finish"))?;
    if family == "bench-awslogs" {
        let stream = format!("bench/app/{id}");
        // Every line and the timing line, delivered or counted as dropped.
        poll(Duration::from_secs(600), || {
            let delivered = moto.log_events(GROUP, &stream)?.len() as f64;
            let dropped = dropped_so_far(agent)? - dropped_before;
            Ok((delivered + dropped >= LINES as f64 + 1.0).then_some(()))
        })
        .with_context(|| format!("the events of {id} did not all arrive"))?;
    }
    let [u1, s1] = stat_seconds(&stat, [14, 15])?;
    Ok(Run {
        write,
        cpu: (u1 - u0) + (s1 - s0),
    })
}

/// The agent's count of lines the awslogs driver dropped (all runs so far).
fn dropped_so_far(agent: &Agent) -> Result<f64> {
    let mut s = TcpStream::connect_timeout(&agent.metrics, Duration::from_secs(5))
        .context("connect to the agent's metrics")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
        agent.metrics
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .find_map(|l| {
            l.strip_prefix("berth_agent_awslogs_lines_dropped_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0))
}

//! `make bench`, the price of trust: `berthctl run-task` → RUNNING (`berthctl wait
//! tasks-running`, cached image, one `sleep` container) against a TLS scheduler with an API
//! token beside the same path against an `--insecure` one, interleaved run by run on the same
//! containerd, printed as a ratio (goal: at most 1.1); and the cost of one agent join, from
//! starting an agent with a join token to its session (and first heartbeat), beside an
//! agent's start against the plaintext scheduler. Prints figures; asserts nothing. Needs the
//! release binaries (`make bench` builds them first).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_tests::PrivateRegistry;
use berth_tests::bench::{Host, report};
use berth_tests::berth::{Agent, AgentOptions, Scheduler, berthctl};
use berth_tests::netlab::AgentNetns;

const RUNS: usize = 20;
const JOINS: usize = 5;

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

/// One side of the comparison: a scheduler and its agent, in a namespace of its own (each
/// agent serves the task endpoint on 169.254.170.2:51679 in its host namespace).
struct Side {
    scheduler: Scheduler,
    _agent: Agent,
    _net: AgentNetns,
}

/// An agent of its own (data dir `agent-NAME`, containerd namespace `bench-trust-NAME`).
fn agent_options(
    host: &Host,
    name: &str,
    scheduler: &Scheduler,
    registry: &PrivateRegistry,
    net: &AgentNetns,
) -> AgentOptions {
    host.agent_options(
        scheduler,
        registry,
        net,
        host.root().join(format!("agent-{name}")),
        format!("bench-trust-{name}"),
    )
}

fn ctl(config: &Path, args: &[&str]) -> Result<String> {
    Ok(berthctl(config, "bench", args)?.success(args)?.stdout)
}

/// run-task, then `wait tasks-running`: the whole user-visible path, TLS handshakes included.
fn run_to_running(config: &Path) -> Result<(Duration, String)> {
    let start = Instant::now();
    let args = ["run-task", "--task-definition", "sleeper"];
    let id = berthctl(config, "bench", &args)?
        .success(&args)?
        .task_ids()
        .into_iter()
        .next()
        .context("no task id")?;
    ctl(config, &["wait", "tasks-running", &id, "--timeout", "60"])?;
    Ok((start.elapsed(), id))
}

fn run() -> Result<()> {
    let host = Host::start("trust")?;
    let (registry, image) = host.registry()?;
    let root = host.root();
    let def = root.join("sleeper.json");
    std::fs::write(
        &def,
        serde_json::to_vec(
            &serde_json::json!({"family": "sleeper", "networkMode": "none",
            "containerDefinitions": [{"name": "c", "image": image, "memory": 16,
                                      "stopTimeout": 1, "command": ["sleep", "3600"]}]}),
        )?,
    )?;

    let mut sides = Vec::new();
    for (name, insecure) in [("tls", false), ("insecure", true)] {
        let side_dir = root.join(name);
        std::fs::create_dir_all(&side_dir)?;
        let scheduler = Scheduler::start_with(&side_dir, None, insecure)?;
        ctl(&scheduler.ctl_config, &["create-cluster", "bench"])?;
        let net = AgentNetns::create(&side_dir.join("net"))?;
        let mut opts = agent_options(&host, name, &scheduler, &registry, &net);
        if !insecure {
            opts.join = Some(scheduler.join_token("bench")?);
        }
        let agent = Agent::start(&opts, side_dir.join("agent.log"))?;
        agent
            .daemon
            .wait_for_log("session established", Duration::from_secs(30))?;
        ctl(
            &scheduler.ctl_config,
            &["register-task-definition", "--file", &def.to_string_lossy()],
        )?;
        // Warm: the image is pulled once per agent namespace.
        let (_, warm) = run_to_running(&scheduler.ctl_config)?;
        ctl(&scheduler.ctl_config, &["stop-task", &warm])?;
        sides.push(Side {
            scheduler,
            _agent: agent,
            _net: net,
        });
    }

    let (mut tls, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        for (side, samples) in sides.iter().zip([&mut tls, &mut plain]) {
            let config = &side.scheduler.ctl_config;
            let (took, id) = run_to_running(config)?;
            samples.push(took);
            ctl(config, &["stop-task", &id])?;
        }
    }
    report(
        "berthctl run-task -> RUNNING, TLS + API token vs --insecure (goal: ratio <= 1.1)",
        "tls+token",
        &mut tls,
        "insecure",
        &mut plain,
    );

    // Joins: a fresh agent with a join token against the TLS scheduler, from its start to its
    // session (its first heartbeat follows at once), beside a fresh agent's start against the
    // plaintext scheduler, which registers without joining.
    let (mut joined, mut registered) = (Vec::new(), Vec::new());
    for i in 0..JOINS {
        for (side, samples, join) in [
            (&sides[0], &mut joined, true),
            (&sides[1], &mut registered, false),
        ] {
            let name = format!("{}-{i}", if join { "join" } else { "plain" });
            let net = AgentNetns::create(&root.join(format!("net-{name}")))?;
            let mut opts = agent_options(&host, &name, &side.scheduler, &registry, &net);
            if join {
                opts.join = Some(side.scheduler.join_token("bench")?);
            }
            let start = Instant::now();
            let agent = Agent::start(&opts, root.join(format!("agent-{name}.log")))?;
            agent
                .daemon
                .wait_for_log("session established", Duration::from_secs(30))?;
            samples.push(start.elapsed());
            drop(agent);
            drop(net);
        }
    }
    report(
        "agent start -> session established (first heartbeat): join with a token vs --insecure",
        "join",
        &mut joined,
        "insecure",
        &mut registered,
    );
    let p50 = |s: &[Duration]| berth_tests::bench::percentile(s, 0.5).as_secs_f64() * 1000.0;
    println!(
        "  one join (key, CA pin check, token, certificate) costs {:+.1} ms at p50",
        p50(&joined) - p50(&registered)
    );
    drop(sides);
    Ok(())
}

//! `make bench`, an agent restart: with 100 running tasks, the time from the agent's start until
//! every task is re-adopted (its containers reattached: the agent logs `task resumed after
//! restart`) and the session with the scheduler is established, and how many containers were
//! restarted (their process changed); then the same with 100 tasks half started when the agent
//! was killed (SIGKILL as soon as it had accepted them all): the time until the scheduler sees
//! all 100 RUNNING, and how many containers were created or started twice, beside the time as
//! many tasks as were not RUNNING at the kill take to start with no restart (what they cost
//! anyway: what the restarted agent takes beyond it is the restart's own share). Goals: under 1 s,
//! none restarted. Prints figures; asserts nothing but that the runs completed. Needs the
//! release binaries (`cargo build --release --workspace --bins`, which `make bench` runs first).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{DescribeTasksRequest, TaskStatus};
use berth_tests::PrivateContainerd;
use berth_tests::bench::{Serve, World, register_definition};
use berth_tests::berth::{Agent, AgentOptions, berthctl};
use nix::sys::signal::Signal;

const TASKS: usize = 100;
const NAMESPACE: &str = "bench-restart";

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

fn run() -> Result<()> {
    let world = World::start("restart", Serve::Plaintext)?;
    let (root, rt, containerd) = (world.host.root(), &world.host.rt, &world.host.containerd);
    let (scheduler, image, opts) = (&world.scheduler, &world.image, &world.opts);
    let config = scheduler.ctl_config.clone();
    let mut generation = 0;
    let mut agent = start_agent(opts, root, &mut generation)?;
    agent
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    let def = serde_json::json!({"family": "sleeper", "networkMode": "none",
        "containerDefinitions": [{"name": "c", "image": image, "memory": 8, "stopTimeout": 1,
            "command": ["sleep", "3600"]}]});
    register_definition(&config, "bench", root, &def)?;
    let mut client = rt.block_on(ControlServiceClient::connect(scheduler.endpoint.clone()))?;

    // 100 running tasks, then the agent killed and started again.
    let ids = run_until_running(rt, &mut client, &config, TASKS)?;
    let before = pids(containerd)?;
    agent
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    drop(agent);
    let start = Instant::now();
    agent = start_agent(opts, root, &mut generation)?;
    let readopted = wait_log(&agent, start, |log| {
        log.matches("task resumed after restart").count() >= TASKS
            && log.contains("session established")
    })?;
    let after = pids(containerd)?;
    let restarted = before
        .iter()
        .filter(|(id, pid)| after.get(*id) != Some(pid))
        .count();
    println!("\nagent restart with {TASKS} running tasks");
    println!(
        "  start -> all re-adopted, session up   {:>8.1} ms (goal: under 1000 ms)",
        readopted.as_secs_f64() * 1000.0
    );
    println!("  containers restarted                  {restarted:>8} (goal: 0)");

    stop_all(rt, &mut client, &config, &ids)?;

    // 100 tasks half started: the agent is killed as soon as it has accepted them all.
    let accepted_before = agent.daemon.log().matches("task assigned").count();
    let ids = run_tasks(&config, TASKS)?;
    wait_log(&agent, Instant::now(), |log| {
        log.matches("task assigned").count() >= accepted_before + TASKS
    })?;
    agent
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    drop(agent);
    let states = rt.block_on(statuses(&mut client, &ids))?;
    let running_at_kill = states
        .values()
        .filter(|s| **s == TaskStatus::Running as i32)
        .count();
    let start = Instant::now();
    let agent = start_agent(opts, root, &mut generation)?;
    rt.block_on(wait_all(
        &mut client,
        &ids,
        TaskStatus::Running,
        Duration::from_secs(600),
    ))?;
    let all_running = start.elapsed();
    let (twice, restarts) = rt.block_on(started_twice(&mut client, containerd, &ids))?;
    println!(
        "\nagent restart with {TASKS} tasks half started ({running_at_kill} RUNNING when it was killed)"
    );
    println!(
        "  start -> all {TASKS} RUNNING at the scheduler {:>8.1} ms",
        all_running.as_secs_f64() * 1000.0
    );
    println!("  containers created twice              {twice:>8} (goal: 0)");
    println!("  containers restarted                  {restarts:>8} (goal: 0)");
    stop_all(rt, &mut client, &config, &ids)?;

    // What the tasks that were not RUNNING at the kill cost anyway: as many run with no
    // restart (asked for with run-task, so this also pays the calls and the placement the
    // restarted ones had behind them). What the time above has beyond it is the restart's own.
    let left = TASKS - running_at_kill;
    if left > 0 {
        let began = Instant::now();
        let ids = run_until_running(rt, &mut client, &config, left)?;
        let alone = began.elapsed();
        println!(
            "  {left} tasks run with no restart, until all RUNNING {:>8.1} ms",
            alone.as_secs_f64() * 1000.0
        );
        println!(
            "  difference (after the restart minus with no restart) {:>8.1} ms",
            (all_running.as_secs_f64() - alone.as_secs_f64()) * 1000.0
        );
        stop_all(rt, &mut client, &config, &ids)?;
    }
    drop(agent);
    Ok(())
}

/// Stops the tasks and waits until the scheduler sees every one STOPPED.
fn stop_all(
    rt: &tokio::runtime::Runtime,
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    config: &Path,
    ids: &[String],
) -> Result<()> {
    for id in ids {
        ctl(config, &["stop-task", id])?;
    }
    rt.block_on(wait_all(
        client,
        ids,
        TaskStatus::Stopped,
        Duration::from_secs(600),
    ))
}

fn start_agent(opts: &AgentOptions, root: &Path, generation: &mut u32) -> Result<Agent> {
    *generation += 1;
    Agent::start(opts, root.join(format!("agent-{generation}.log")))
}

fn ctl(config: &Path, args: &[&str]) -> Result<String> {
    Ok(berthctl(config, "bench", args)?.success(args)?.stdout)
}

/// Runs `n` sleeper tasks, ten a call (the scheduler's limit per RunTask).
fn run_tasks(config: &Path, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let count = (n - ids.len()).min(10).to_string();
        let args = [
            "run-task",
            "--task-definition",
            "sleeper",
            "--count",
            &count,
        ];
        ids.extend(berthctl(config, "bench", &args)?.success(&args)?.task_ids());
    }
    Ok(ids)
}

/// Runs `n` sleeper tasks and waits until the scheduler sees every one RUNNING; their IDs.
fn run_until_running(
    rt: &tokio::runtime::Runtime,
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    config: &Path,
    n: usize,
) -> Result<Vec<String>> {
    let ids = run_tasks(config, n)?;
    rt.block_on(wait_all(
        client,
        &ids,
        TaskStatus::Running,
        Duration::from_secs(600),
    ))?;
    Ok(ids)
}

/// Polls the agent's log every 2 ms until `done` holds; the time since `start`.
fn wait_log(agent: &Agent, start: Instant, done: impl Fn(&str) -> bool) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if done(&agent.daemon.log()) {
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the agent's log never showed what was awaited");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Each containerd task's PID, by container ID.
fn pids(containerd: &PrivateContainerd) -> Result<HashMap<String, String>> {
    let out = containerd.ctr(&["-n", NAMESPACE, "tasks", "ls"])?;
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect())
}

async fn statuses(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    ids: &[String],
) -> Result<HashMap<String, i32>> {
    let r = client
        .describe_tasks(DescribeTasksRequest {
            cluster: "bench".into(),
            task_ids: ids.to_vec(),
        })
        .await?
        .into_inner();
    Ok(r.tasks
        .into_iter()
        .map(|t| (t.task_id, t.last_status))
        .collect())
}

async fn wait_all(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    ids: &[String],
    status: TaskStatus,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let s = statuses(client, ids).await?;
        if s.len() == ids.len() && s.values().all(|v| *v >= status as i32) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not every task reached {status:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many of the tasks' containers exist twice in containerd, and how many were restarted
/// (their restart count as the scheduler shows it).
async fn started_twice(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    containerd: &PrivateContainerd,
    ids: &[String],
) -> Result<(usize, u32)> {
    let listed = containerd.ctr(&["-n", NAMESPACE, "containers", "ls", "-q"])?;
    let twice = ids
        .iter()
        .filter(|id| listed.lines().filter(|l| l.contains(id.as_str())).count() > 1)
        .count();
    let r = client
        .describe_tasks(DescribeTasksRequest {
            cluster: "bench".into(),
            task_ids: ids.to_vec(),
        })
        .await
        .context("describe tasks")?
        .into_inner();
    let restarts = r
        .tasks
        .iter()
        .flat_map(|t| &t.containers)
        .map(|c| c.restart_count)
        .sum();
    Ok((twice, restarts))
}

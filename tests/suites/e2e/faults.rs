//! Fault bursts end to end: 50 task lives (short ones that exit with codes of their own, long
//! ones that are stopped) while one part of the system is killed at 20 seeded random moments
//! and restarted: the agent (SIGKILL), the scheduler (SIGKILL), or containerd (SIGKILL, its
//! shims living on). Afterwards every task is STOPPED with the exit code its container really
//! had (containerd's event stream, read by the trial, is the truth), no container was created
//! or started twice, and once the tasks are cleaned up nothing is left: containers, snapshots,
//! leases, task cgroups, network namespaces, links, nftables rules, address allocations,
//! volumes and logs count as before.
//!
//! The seed is printed; `BERTH_FAULTS_SEED=<seed>` replays a run's plan.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::Scheduler;
use berth_tests::{PrivateContainerd, World, bins, poll};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{Env, hello};

/// Replays a burst's plan.
const SEED_ENV: &str = "BERTH_FAULTS_SEED";
const TASKS: usize = 50;
const KILLS: usize = 20;
/// What a long task's container exits with on SIGTERM.
const TERM_CODE: i64 = 42;

/// What is killed and restarted during a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Agent,
    Scheduler,
    Containerd,
}

/// One step of the burst.
#[derive(Debug, Clone, Copy)]
enum Op {
    Run(usize),
    Stop(usize),
}

/// A task of the burst: short ones exit by themselves with `code`; long ones run until
/// stopped.
fn family(i: usize) -> String {
    format!("burst-{i}")
}

fn is_short(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// The exit code of short task `i`: distinct for every short task.
fn short_code(i: usize) -> i64 {
    10 + i as i64 / 2
}

fn definition(i: usize, image: &str) -> Value {
    // Network modes and volumes mixed in, so the leak counts cover what they hold.
    let mode = match i % 5 {
        1 => "awsvpc",
        3 => "bridge",
        _ => "none",
    };
    let command = if is_short(i) {
        format!("sleep 0.{}; exit {}", i % 10, short_code(i))
    } else {
        format!("trap 'exit {TERM_CODE}' TERM; while true; do sleep 0.1; done")
    };
    let mut container = json!({
        "name": "app", "image": image, "memory": 16, "stopTimeout": 10,
        "command": ["sh", "-c", command],
    });
    let mut def = json!({
        "family": family(i), "networkMode": mode, "containerDefinitions": [],
    });
    if mode == "bridge" {
        container["portMappings"] = json!([{"containerPort": 80}]);
    }
    if !is_short(i) {
        def["volumes"] = json!([{"name": "scratch"}]);
        container["mountPoints"] =
            json!([{"sourceVolume": "scratch", "containerPath": "/scratch"}]);
    }
    def["containerDefinitions"] = json!([container]);
    def
}

/// The burst's steps: every task run in order; each long task stopped a few runs later.
fn plan() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut stops = Vec::new();
    for i in 0..TASKS {
        ops.push(Op::Run(i));
        if !is_short(i) {
            stops.push((i + 5, i));
        }
        while let Some(&(at, task)) = stops.first() {
            if at > i {
                break;
            }
            ops.push(Op::Stop(task));
            stops.remove(0);
        }
    }
    ops.extend(stops.into_iter().map(|(_, task)| Op::Stop(task)));
    ops
}

fn seed() -> Result<u64> {
    match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("{SEED_ENV}={s:?} is not a number")),
        Err(_) => Ok(rand::random()),
    }
}

/// containerd's event stream (`ctr events`), read by a thread of the trial: how often each
/// container was created and started, and each container's exit code. `ctr events` ends with
/// its daemon; [`Events::subscribe`] starts it again after a restart.
struct Events {
    socket: PathBuf,
    namespace: String,
    seen: Arc<Mutex<Seen>>,
    child: Option<Child>,
}

#[derive(Debug, Default)]
struct Seen {
    created: HashMap<String, usize>,
    started: HashMap<String, usize>,
    exits: HashMap<String, i64>,
}

impl Events {
    fn new(socket: &Path, namespace: &str) -> Result<Events> {
        let mut events = Events {
            socket: socket.to_owned(),
            namespace: namespace.to_owned(),
            seen: Arc::default(),
            child: None,
        };
        events.subscribe()?;
        Ok(events)
    }

    /// (Re)starts `ctr events` and waits until it is subscribed (it prints nothing before the
    /// first event, so a probe event is made: a namespace label set and removed).
    fn subscribe(&mut self) -> Result<()> {
        self.stop();
        let mut child = Command::new(bins::CTR)
            .arg("--address")
            .arg(&self.socket)
            .arg("events")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start ctr events")?;
        let stdout = child.stdout.take().context("ctr events has no stdout")?;
        let seen = Arc::clone(&self.seen);
        let namespace = self.namespace.clone();
        let probes = Arc::new(Mutex::new(0usize));
        let probed = Arc::clone(&probes);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("/namespaces/update") {
                    *probed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                record(&mut seen, &namespace, &line);
            }
        });
        self.child = Some(child);
        poll(Duration::from_secs(20), || {
            let out = Command::new(bins::CTR)
                .arg("--address")
                .arg(&self.socket)
                .args([
                    "namespaces",
                    "label",
                    &self.namespace,
                    "berth.faults.probe=1",
                ])
                .output()
                .context("ctr namespaces label")?;
            ensure!(out.status.success(), "ctr namespaces label failed: {out:?}");
            std::thread::sleep(Duration::from_millis(50));
            Ok((*probes.lock().unwrap_or_else(|p| p.into_inner()) > 0).then_some(()))
        })
        .context("ctr events never saw the probe event")
    }

    fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Takes one line of `ctr events` (`<time> <namespace> <topic> <json>`) into `seen`.
fn record(seen: &mut Seen, namespace: &str, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(at) = words.iter().position(|w| w.starts_with('/')) else {
        return;
    };
    if at == 0 || words[at - 1] != namespace {
        return;
    }
    let Ok(event) = serde_json::from_str::<Value>(&words[at + 1..].join(" ")) else {
        return;
    };
    match words[at] {
        "/containers/create" => {
            if let Some(id) = event["id"].as_str() {
                *seen.created.entry(id.to_owned()).or_default() += 1;
            }
        }
        "/tasks/start" => {
            if let Some(id) = event["container_id"].as_str() {
                *seen.started.entry(id.to_owned()).or_default() += 1;
            }
        }
        // The init process's exit (an exec's has an ID of its own); a zero status is
        // left out of the JSON.
        // containerd's cleanup of a shim it found dead after a restart publishes an exit
        // (137, no PID: the shim binary's cleanup names none) that no process had; a missed
        // real exit would otherwise be taken as that one.
        "/tasks/exit"
            if event["id"] == event["container_id"] && event["pid"].as_u64().unwrap_or(0) > 0 =>
        {
            if let Some(id) = event["container_id"].as_str() {
                // The first after the container's start: containerd also publishes one (137)
                // for the process of an interrupted create that never started, and may
                // publish another when it reaps the shim of a task deleted while killed.
                let code = event["exit_status"].as_i64().unwrap_or(0);
                if seen.started.contains_key(id) {
                    seen.exits.entry(id.to_owned()).or_insert(code);
                }
            }
        }
        _ => {}
    }
}

/// A `ctr` of the trial's containerd in the agent's namespace; its stdout's non-empty lines.
fn ctr_lines(socket: &Path, ns: &str, args: &[&str]) -> Result<usize> {
    let out = Command::new(bins::CTR)
        .arg("--address")
        .arg(socket)
        .args(["-n", ns])
        .args(args)
        .output()
        .with_context(|| format!("ctr {args:?}"))?;
    ensure!(out.status.success(), "ctr {args:?} failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

fn dir_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Everything a task holds on the host, counted.
fn counts(env: &Env, socket: &Path, tasks: &[String]) -> Result<BTreeMap<&'static str, usize>> {
    let ns = env.opts.namespace.as_str();
    let data = &env.opts.data_dir;
    let allocations = match std::fs::read(data.join("network").join("network-allocations.json")) {
        Ok(b) => serde_json::from_slice::<Value>(&b)?["tasks"]
            .as_object()
            .map_or(0, |o| o.len()),
        Err(_) => 0,
    };
    let cgroups = tasks
        .iter()
        .flat_map(|id| {
            ["cpu", "memory", "pids"]
                .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/berth/{id}")))
        })
        .filter(|p| p.exists())
        .count();
    let nft_rules = env
        .net
        .sh("nft -a list table ip berth 2>/dev/null || true")?
        .lines()
        .filter(|l| l.contains("# handle") && !l.contains("chain ") && !l.contains("table "))
        .count();
    Ok(BTreeMap::from([
        (
            "containers",
            ctr_lines(socket, ns, &["containers", "ls", "-q"])?,
        ),
        ("tasks", ctr_lines(socket, ns, &["tasks", "ls", "-q"])?),
        ("snapshots", ctr_lines(socket, ns, &["snapshots", "ls"])?),
        ("leases", ctr_lines(socket, ns, &["leases", "ls", "-q"])?),
        ("task cgroups", cgroups),
        ("network namespaces", env.net.task_namespaces()?.len()),
        ("links", env.net.sh("ip -o link show")?.lines().count()),
        ("nft rules", nft_rules),
        ("address allocations", allocations),
        ("volumes", dir_entries(&data.join("volumes"))),
        ("logs", dir_entries(&data.join("logs"))),
    ]))
}

/// Runs a task of `family`, retrying while the scheduler has no connected instance to place
/// it on (the agent is restarting, or has not reconnected to a restarted scheduler yet), as
/// a user would; its ID.
fn run_placed(env: &Env, family: &str) -> Result<String> {
    let args = ["run-task", "--task-definition", family];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = env.ctl(&args)?;
        if out.status == 0
            || !out
                .stderr
                .contains("no connected ACTIVE container instance")
        {
            // Any other failure ends the trial: a retry could run the task twice.
            let ids = env.succeeded(&args, out)?.task_ids();
            return ids
                .into_iter()
                .next()
                .context("run-task printed no task id");
        }
        if Instant::now() > deadline {
            bail!(
                "run-task {family}: no instance to place it on for 60 s{}",
                env.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The trial: a burst with `victim` killed at 20 moments.
fn burst(w: &World, victim: Victim) -> Result<()> {
    let seed = seed()?;
    eprintln!("faults burst ({victim:?} killed): seed {seed}; set {SEED_ENV}={seed} to replay");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut env = Env::new(w, "0")?;
    // containerd restarts only when the trial has a daemon of its own: the suite's is shared.
    let mut own_containerd = match victim {
        Victim::Containerd => {
            let d = PrivateContainerd::start(&env.dir.join("cd"))?;
            env.opts.containerd_socket = d.socket().to_path_buf();
            Some(d)
        }
        _ => None,
    };
    let socket = env.opts.containerd_socket.clone();
    env.connect()?;
    let image = hello(w, "e2e-faults")?;
    for i in 0..TASKS {
        env.register(&definition(i, &image))?;
    }
    // One life first, so the image's snapshots, the bridge and the table exist before counting.
    let warm = env.run_task(&family(1))?;
    env.wait_status(&warm, "RUNNING", Duration::from_secs(120))?;
    env.ok(&["stop-task", &warm])?;
    env.wait_released(&warm, Duration::from_secs(120))?;
    let before = counts(&env, &socket, &[])?;
    let mut events = Events::new(&socket, &env.opts.namespace)?;

    let ops = plan();
    let mut kill_at: Vec<usize> = rand::seq::index::sample(&mut rng, ops.len(), KILLS).into_vec();
    kill_at.sort_unstable();
    let started = Instant::now();
    let mut ids: Vec<Option<String>> = vec![None; TASKS];
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Run(i) => ids[i] = Some(run_placed(&env, &family(i))?),
            Op::Stop(i) => {
                let id = ids[i].as_deref().context("stopping a task never run")?;
                env.ok(&["stop-task", id])?;
            }
        }
        if kill_at.binary_search(&n).is_ok() {
            // A random moment after this step; then down for a random while.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
            let down = Duration::from_millis(rng.random_range(0..1000));
            match victim {
                Victim::Agent => {
                    env.agent()?
                        .daemon
                        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
                    std::thread::sleep(down);
                    env.start_agent()?;
                    // Back in session before the next kill, so that kills land in every phase
                    // of a run, resumes included. Outside kills never count against a task's
                    // resumes (only crashes of the agent do), so the guard lets every task be
                    // taken back however often the agent dies.
                    env.agent()?
                        .daemon
                        .wait_for_log("session established", Duration::from_secs(60))?;
                }
                Victim::Scheduler => {
                    env.scheduler
                        .daemon
                        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
                    std::thread::sleep(down);
                    let port = env.scheduler.port();
                    env.scheduler = Scheduler::start(&env.dir, Some(port))?;
                }
                Victim::Containerd => {
                    let d = own_containerd
                        .as_mut()
                        .context("no containerd of the trial's")?;
                    d.restart()?;
                    events.subscribe()?;
                }
            }
        }
    }
    let ids: Vec<String> = ids.into_iter().flatten().collect();
    ensure!(ids.len() == TASKS);
    eprintln!(
        "faults burst ({victim:?}): {} steps and {KILLS} kills in {:.1}s",
        ops.len(),
        started.elapsed().as_secs_f64()
    );

    // Every task ends STOPPED and released.
    let mut args = vec!["describe-tasks"];
    args.extend(ids.iter().map(String::as_str));
    let described = poll(Duration::from_secs(150), || {
        let tasks = env.json(&args)?["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = tasks.len() == TASKS
            && tasks
                .iter()
                .all(|t| t["lastStatus"] == "STOPPED" && t["resourcesReleasedAt"].is_string());
        Ok(done.then_some(tasks))
    })
    .with_context(|| {
        let tasks = env.json(&args).unwrap_or_default();
        let left: Vec<String> = tasks["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["lastStatus"] != "STOPPED" || t["resourcesReleasedAt"].is_null())
            .map(|t| {
                format!(
                    "{} {} (desired {}): {}",
                    t["taskId"], t["lastStatus"], t["desiredStatus"], t["stoppedReason"]
                )
            })
            .collect();
        format!(
            "not every task STOPPED and released (seed {seed}): {left:?}{}",
            env.logs()
        )
    })?;

    // The scheduler's history against containerd's.
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut wrong = Vec::new();
    for t in &described {
        let id = t["taskId"].as_str().context("a task without an ID")?;
        let i = index[id];
        let container = format!("{id}.app");
        let app = &t["containers"][0];
        let reported = app["exitCode"].as_i64();
        let (created, started, exit) = events.seen(|s| {
            (
                s.created.get(&container).copied().unwrap_or(0),
                s.started.get(&container).copied().unwrap_or(0),
                s.exits.get(&container).copied(),
            )
        });
        // A containerd restart may hide an event from the trial (it resubscribes after the
        // restart), never show one twice.
        let complete = victim != Victim::Containerd;
        // A long task stopped before its container was created or started never runs it.
        let never_ran = !is_short(i) && started == 0 && reported.is_none();
        // A hidden create event leaves a start without its create: then only twice is wrong.
        let unmatched = if complete {
            started > created
        } else {
            started > 1
        };
        if created > 1 || unmatched || (complete && !never_ran && started != 1) {
            wrong.push(format!("{id}: created {created}, started {started} times"));
        }
        // containerd also reports the exit (137) of a process it made for a create that was
        // interrupted and never started: only a started one's exit is the container's.
        if let Some(exit) = exit
            && started > 0
            && reported != Some(exit)
        {
            wrong.push(format!(
                "{id}: exit {exit} in containerd, {reported:?} reported: {t}"
            ));
        }
        if complete && started == 1 && exit.is_none() {
            wrong.push(format!("{id}: containerd saw no exit: {t}"));
        }
        if is_short(i) {
            if reported != Some(short_code(i)) || t["stopCode"] != "EssentialContainerExited" {
                wrong.push(format!(
                    "{id}: short task {i} should exit {}: {t}",
                    short_code(i)
                ));
            }
        } else if t["stopCode"] != "UserInitiated"
            || !(never_ran || matches!(reported, Some(TERM_CODE) | Some(137)))
        {
            wrong.push(format!(
                "{id}: long task {i} should be stopped by the user: {t}"
            ));
        }
    }
    if !wrong.is_empty() {
        bail!("seed {seed}:\n{}{}", wrong.join("\n"), env.logs());
    }

    // Nothing leaked once everything is cleaned up.
    let after = poll(Duration::from_secs(60), || {
        let now = counts(&env, &socket, &ids)?;
        Ok((now == before).then_some(now))
    })
    .with_context(|| {
        format!(
            "the burst left things behind (seed {seed}): before {before:?}, after {:?}{}",
            counts(&env, &socket, &ids).unwrap_or_default(),
            env.logs()
        )
    })?;
    drop(events);
    drop(env);
    drop(own_containerd);
    ensure!(after == before);
    Ok(())
}

pub(super) fn burst_with_agent_kills(w: &World) -> Result<()> {
    burst(w, Victim::Agent)
}

pub(super) fn burst_with_scheduler_kills(w: &World) -> Result<()> {
    burst(w, Victim::Scheduler)
}

pub(super) fn burst_with_containerd_restarts(w: &World) -> Result<()> {
    burst(w, Victim::Containerd)
}

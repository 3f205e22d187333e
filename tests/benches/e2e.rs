//! `make bench`, end to end: `berthctl run-task` → RUNNING as the scheduler sees it (cached
//! image, one `sleep` container) in network modes none, awsvpc (veth) and bridge (one dynamic
//! port mapping), with the default seccomp profile beside `seccomp=unconfined`, and run-task →
//! STOPPED for `sh -c true`,
//! beside `ctr run -d` (→ RUNNING) and `ctr run --rm` (→ STOPPED) of the same image on the same
//! containerd, each its own process timed as a person runs it; and the agent's resident
//! memory idle and with 20 running tasks (section `modes`); and the start latency a user sees,
//! berthctl processes beside `ctr run --rm` and `ctr run -d` (section `start`, in
//! `e2e/start.rs`); and where a start's time goes, phase by phase and in CPU, under the
//! default seccomp profile beside `seccomp=unconfined` (section `profile`, in
//! `e2e/profile.rs`); and bursts and density, 100 tasks at once beside 100 `ctr run -d` and
//! 250 running tasks (section `burst`, in `e2e/burst.rs`; section `density` the 250 alone);
//! and the cold start of a task whose image is not cached beside `ctr images pull` + `ctr run
//! -d` (section `cold`, in `e2e/cold.rs`). `cargo bench -p berth-tests --bench
//! e2e -- SECTION` runs one section. Prints figures; asserts nothing. Needs the release binaries (`cargo build --release
//! --workspace --bins`, which `make bench` runs first).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{DescribeTasksRequest, Task, TaskStatus};
use berth_tests::PrivateContainerd;
use berth_tests::bench::{
    Paired, Serve, World, percentile, register_definition, report, timed, wants,
};
use berth_tests::berth::{Agent, berthctl};

#[path = "e2e/burst.rs"]
mod burst;
#[path = "e2e/cold.rs"]
mod cold;
#[path = "e2e/profile.rs"]
mod profile;
#[path = "e2e/start.rs"]
mod start;

const RUNS: usize = 30;

/// moby's default seccomp profile as Debian installs it (`make deps`).
const MOBY_PROFILE: &str =
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json";

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

fn run() -> Result<()> {
    // Plaintext: this run measures the task path, not TLS (the TLS comparison is its own).
    let world = World::start("e2e", Serve::Plaintext)?;
    let (root, rt, containerd) = (world.host.root(), &world.host.rt, &world.host.containerd);
    let (scheduler, image, opts) = (&world.scheduler, &world.image, &world.opts);
    let config = scheduler.ctl_config.clone();
    let endpoint = scheduler.endpoint.clone();
    // The phase marks on, for the profile (`e2e/profile.rs`).
    let filter = format!(
        "info,berth_agent=debug,berth_runtime=debug,{}",
        profile::PHASE_FILTER
    );
    let agent = Agent::start_with_env(opts, root.join("agent.log"), &[("RUST_LOG", &filter)])?;
    agent
        .daemon
        .wait_for_log("session established", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = agent.daemon.pid().context("agent pid")?;
    let idle_rss = rss_kib(pid)?;

    let defs = root.join("defs");
    std::fs::create_dir_all(&defs)?;
    for (family, mode, cmd) in [
        ("sleeper", "none", vec!["sleep", "3600"]),
        ("sleeper-awsvpc", "awsvpc", vec!["sleep", "3600"]),
        ("sleeper-bridge", "bridge", vec!["sleep", "3600"]),
        ("sleeper-unconfined", "none", vec!["sleep", "3600"]),
        ("sleeper-moby", "none", vec!["sleep", "3600"]),
        ("oneshot", "none", vec!["sh", "-c", "true"]),
    ] {
        if family == "sleeper-moby" && !Path::new(MOBY_PROFILE).exists() {
            continue;
        }
        let mut container = serde_json::json!(
            {"name": "c", "image": image, "memory": 16, "stopTimeout": 1, "command": cmd});
        if mode == "bridge" {
            container["portMappings"] = serde_json::json!([{"containerPort": 80}]);
        }
        // Every other container runs under the default seccomp profile.
        if family == "sleeper-unconfined" {
            container["dockerSecurityOptions"] = serde_json::json!(["seccomp=unconfined"]);
        }
        // moby's own profile, which lists every compatibility ABI (x86 and x32 beside x86_64),
        // for the cost of what the default profile leaves out (see seccomp/compare.rs).
        if family == "sleeper-moby" {
            container["dockerSecurityOptions"] =
                serde_json::json!([format!("seccomp={MOBY_PROFILE}")]);
        }
        let def = serde_json::json!({"family": family, "networkMode": mode,
            "containerDefinitions": [container]});
        register_definition(&config, "bench", &defs, &def)?;
    }
    let mut client = rt.block_on(ControlServiceClient::connect(endpoint.clone()))?;
    // Warm: pull the image once through a task.
    let warm = run_task(&config, "oneshot")?;
    rt.block_on(wait_status(&mut client, &warm, TaskStatus::Stopped))?;

    let ctr = Ctr {
        containerd,
        namespace: "bench-e2e",
        image,
    };
    if wants("cold") {
        let big = rt.block_on(berth_tests::fixtures::big(
            &world.registry.host(),
            "bench/cold",
            "v1",
        ))?;
        let def = serde_json::json!({"family": "cold", "networkMode": "none",
            "containerDefinitions": [{"name": "c", "image": big.reference, "memory": 16,
                "stopTimeout": 1, "command": ["sleep", "3600"]}]});
        register_definition(&config, "bench", &defs, &def)?;
        let cold = cold::Cold {
            config: &config,
            family: "cold",
            image: &big,
            containerd,
            namespace: ctr.namespace,
            agent_pid: pid,
        };
        cold.run(&mut |id, status| rt.block_on(settled(&mut client, id, status)))?;
    }
    if wants("start") {
        let start = start::Start {
            config: &config,
            cluster: "bench",
            sleeper: "sleeper",
            oneshot: "oneshot",
            ctr: &ctr,
        };
        start.run(&mut |id, status| rt.block_on(settled(&mut client, id, status)))?;
    }
    if wants("profile") {
        let profile = profile::Profile {
            config: &config,
            cluster: "bench",
            families: &[
                ("seccomp=unconfined", "sleeper-unconfined"),
                ("default seccomp profile", "sleeper"),
            ],
            scheduler_log: &root.join("scheduler.log"),
            agent_log: &root.join("agent.log"),
            agent_pid: pid,
            containerd_pid: containerd.pid(),
        };
        profile.run(&mut |id, status| rt.block_on(settled(&mut client, id, status)))?;
    }
    if wants("burst") || wants("density") {
        let burst = burst::Burst {
            config: &config,
            cluster: "bench",
            endpoint: &endpoint,
            ctr: &ctr,
            agent_pid: pid,
            scheduler_pid: scheduler.daemon.pid().context("scheduler pid")?,
            dir: &defs,
        };
        burst.run(rt, !wants("burst"))?;
    }
    if !wants("modes") {
        return Ok(());
    }

    let moby = Path::new(MOBY_PROFILE).exists();
    let families = [
        "sleeper",
        "sleeper-awsvpc",
        "sleeper-bridge",
        "sleeper-unconfined",
        "sleeper-moby",
    ];
    let mut running: Vec<(&str, Vec<Duration>)> = families
        .into_iter()
        .filter(|f| moby || *f != "sleeper-moby")
        .map(|f| (f, Vec::new()))
        .collect();
    let mut to_stopped = Vec::new();
    let mut ctr_runs = Vec::new();
    let mut ctr_detached = Vec::new();
    for i in 0..RUNS {
        // In turn, from a different family each run: a start overlaps the stop of the task
        // before it, so a fixed order would charge one family more than another.
        let n = running.len();
        for k in 0..n {
            let (family, samples) = &mut running[(i + k) % n];
            let start = Instant::now();
            let id = run_task(&config, family)?;
            rt.block_on(wait_status(&mut client, &id, TaskStatus::Running))?;
            samples.push(start.elapsed());
            ctl(&config, &["stop-task", &id])?;
        }

        let start = Instant::now();
        let id = run_task(&config, "oneshot")?;
        rt.block_on(wait_status(&mut client, &id, TaskStatus::Stopped))?;
        to_stopped.push(start.elapsed());

        if i == 0 {
            containerd.ctr(&["-n", "bench-e2e", "images", "ls", "-q"])?;
        }
        ctr_runs.push(ctr.run_rm(&format!("ctr-{i}"))?);
        ctr_detached.push(ctr.run_detached(&format!("ctr-d-{i}"))?);
    }
    let mut samples_of = |family: &str| {
        running
            .iter_mut()
            .find(|(f, _)| *f == family)
            .map(|(_, s)| std::mem::take(s))
            .unwrap_or_default()
    };
    let mut to_running = samples_of("sleeper");
    let mut awsvpc_running = samples_of("sleeper-awsvpc");
    let mut bridge_running = samples_of("sleeper-bridge");
    let mut unconfined_running = samples_of("sleeper-unconfined");
    let mut moby_running = samples_of("sleeper-moby");
    // Paired by round, before the reports sort the samples.
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let pair_with_unconfined = |samples: &[Duration]| -> Vec<(f64, f64)> {
        unconfined_running
            .iter()
            .zip(samples)
            .map(|(a, b)| (ms(a), ms(b)))
            .collect()
    };
    let default_paired = Paired::of(&pair_with_unconfined(&to_running));
    let moby_paired = Paired::of(&pair_with_unconfined(&moby_running));
    report(
        "berthctl run-task -> RUNNING (sleep)",
        "berth",
        &mut to_running,
        "ctr run -d",
        &mut ctr_detached.clone(),
    );
    report(
        "berthctl run-task -> RUNNING (sleep), network mode awsvpc",
        "berth awsvpc",
        &mut awsvpc_running,
        "ctr run -d",
        &mut ctr_detached.clone(),
    );
    report(
        "berthctl run-task -> RUNNING (sleep), network mode bridge + 1 port",
        "berth bridge",
        &mut bridge_running,
        "ctr run -d",
        &mut ctr_detached.clone(),
    );
    report(
        "berthctl run-task -> RUNNING (sleep), seccomp=unconfined",
        "berth unconfined",
        &mut unconfined_running,
        "ctr run -d",
        &mut ctr_detached.clone(),
    );
    let p50 = |s: &[Duration]| percentile(s, 0.5).as_secs_f64() * 1000.0;
    println!(
        "  added over mode none at p50: awsvpc {:+.1} ms, bridge {:+.1} ms",
        p50(&awsvpc_running) - p50(&to_running),
        p50(&bridge_running) - p50(&to_running)
    );
    println!(
        "  the default seccomp profile over seccomp=unconfined (goal: at most +5 ms at p50), \
         paired within each round (the section `profile` pairs them back to back): {}",
        default_paired.line("ms")
    );
    if moby {
        report(
            "berthctl run-task -> RUNNING (sleep), seccomp=<moby's default.json>",
            "berth moby",
            &mut moby_running,
            "ctr run -d",
            &mut ctr_detached.clone(),
        );
        println!(
            "  moby's profile (every ABI, given as seccomp=<file>) over seccomp=unconfined: {}",
            moby_paired.line("ms")
        );
    }
    report(
        "berthctl run-task -> STOPPED (sh -c true)",
        "berth",
        &mut to_stopped,
        "ctr run --rm",
        &mut ctr_runs,
    );

    // Memory with 20 running tasks.
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(run_task(&config, "sleeper")?);
    }
    for id in &ids {
        rt.block_on(wait_status(&mut client, id, TaskStatus::Running))?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let busy_rss = rss_kib(pid)?;
    println!("\nberth-agent resident memory");
    println!(
        "  idle (registered, no task)   {:>8.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  with 20 running tasks        {:>8.1} MiB",
        busy_rss as f64 / 1024.0
    );
    for id in &ids {
        ctl(&config, &["stop-task", id])?;
    }
    for id in &ids {
        rt.block_on(wait_status(&mut client, id, TaskStatus::Stopped))?;
    }
    drop(agent);
    drop(world);
    Ok(())
}

/// containerd's own client on the agent's containerd, in the agent's namespace (where the
/// image is already unpacked): the reference the sections time Berth against, each command its
/// own process run as a person runs it (output on /dev/null, waited for without polling; the
/// harness's `ctr` polls for the exit every 50 ms).
pub(crate) struct Ctr<'a> {
    pub(crate) containerd: &'a PrivateContainerd,
    pub(crate) namespace: &'a str,
    pub(crate) image: &'a str,
}

impl Ctr<'_> {
    /// `ctr --address SOCKET -n NAMESPACE`, for the arguments to follow.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(berth_tests::bins::CTR);
        cmd.arg("--address")
            .arg(self.containerd.socket())
            .args(["-n", self.namespace]);
        cmd
    }

    /// `ctr run --rm IMAGE ID sh -c true` (→ exited and removed), timed.
    pub(crate) fn run_rm(&self, id: &str) -> Result<Duration> {
        timed(
            self.command()
                .args(["run", "--rm", self.image, id, "sh", "-c", "true"]),
        )
    }

    /// `ctr run -d IMAGE ID sleep 3600` (create and start: the fair reference for → RUNNING),
    /// timed; the container stays until [`Ctr::remove`].
    pub(crate) fn start_detached(&self, id: &str) -> Result<Duration> {
        timed(
            self.command()
                .args(["run", "-d", self.image, id, "sleep", "3600"]),
        )
    }

    /// Kills and removes the container `id` and its task.
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        let ns = self.namespace;
        self.containerd
            .ctr(&["-n", ns, "tasks", "delete", "--force", id])?;
        self.containerd
            .ctr(&["-n", ns, "containers", "delete", id])?;
        Ok(())
    }

    /// [`Ctr::start_detached`], then [`Ctr::remove`] outside the timing.
    pub(crate) fn run_detached(&self, id: &str) -> Result<Duration> {
        let took = self.start_detached(id)?;
        self.remove(id)?;
        Ok(took)
    }
}

fn ctl(config: &Path, args: &[&str]) -> Result<String> {
    Ok(berthctl(config, "bench", args)?.success(args)?.stdout)
}

fn run_task(config: &Path, family: &str) -> Result<String> {
    let args = ["run-task", "--task-definition", family];
    berthctl(config, "bench", &args)?
        .success(&args)?
        .task_ids()
        .into_iter()
        .next()
        .context("no task id")
}

/// [`wait_status`]; for STOPPED, also until the host has released what the task held (its
/// container, snapshot, cgroup): the start and profile sections stop each task outside their
/// timing, and a cleanup still running would share containerd with the next start, as no
/// `ctr` reference's does (each is removed before the next command).
async fn settled(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    id: &str,
    status: TaskStatus,
) -> Result<()> {
    wait_status(client, id, status).await?;
    if status != TaskStatus::Stopped {
        return Ok(());
    }
    let released = until_task(client, id, |t| t.resources_released_at.is_some()).await?;
    if !released {
        bail!("task {id} stopped but its resources were never released");
    }
    Ok(())
}

async fn wait_status(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    id: &str,
    status: TaskStatus,
) -> Result<()> {
    if !until_task(client, id, |t| t.last_status >= status as i32).await? {
        bail!("task {id} never reached {status:?}");
    }
    Ok(())
}

/// Asks the scheduler for the task every 2 ms until `done` holds of it: whether it did within
/// 60 s.
async fn until_task(
    client: &mut ControlServiceClient<tonic::transport::Channel>,
    id: &str,
    done: impl Fn(&Task) -> bool,
) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .describe_tasks(DescribeTasksRequest {
                cluster: "bench".into(),
                task_ids: vec![id.to_owned()],
            })
            .await?
            .into_inner();
        if r.tasks.first().is_some_and(&done) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

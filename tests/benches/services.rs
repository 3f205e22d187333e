//! `make bench`, the service scheduler through the real binaries on 4 agents (each with its own
//! data dir, containerd namespace and network namespace, on one private containerd): a service
//! converging from 0 to 100 tasks (create-service until 100 RUNNING), then a rolling deployment
//! of those 100 tasks to a new revision (update-service until 100 RUNNING of the new revision
//! and every old task STOPPED). Prints the wall time of each and the CPU time the scheduler
//! process spent on it (utime + stime from /proc/<pid>/stat). Asserts nothing but that the runs
//! completed. Needs the release binaries (`cargo build --release --workspace --bins`, which
//! `make bench` runs first); `cargo bench -p berth-tests --bench services` runs it alone.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{
    DescribeServicesRequest, DesiredStatus, ListContainerInstancesRequest, ListTasksRequest,
    Service, Task, TaskStatus,
};
use berth_tests::bench::{Serve, World, register_definition};
use berth_tests::berth::{Agent, berthctl};
use berth_tests::netlab::AgentNetns;
use tonic::transport::Channel;

const AGENTS: usize = 4;
const TASKS: u32 = 100;
const SERVICE: &str = "bench-svc";
/// How long one phase may take before the bench gives up.
const PHASE_WITHIN: Duration = Duration::from_secs(900);

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

fn run() -> Result<()> {
    let world = World::start("services", Serve::Plaintext)?;
    let (root, rt) = (world.host.root(), &world.host.rt);
    let config = world.scheduler.ctl_config.clone();
    let scheduler_pid = world
        .scheduler
        .daemon
        .pid()
        .context("the scheduler has no process")?;

    // Four agents; the nets outlive the agents (dropped after them, in reverse order).
    let mut nets: Vec<AgentNetns> = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    for n in 0..AGENTS {
        let mut opts = world.opts.clone();
        if n > 0 {
            let net = AgentNetns::create(&root.join(format!("net-{n}")))?;
            opts.data_dir = root.join(format!("agent-{n}"));
            opts.namespace = format!("bench-services-{n}");
            opts.host_netns = net.host.path().to_owned();
            opts.netns_dir = net.netns_dir.clone();
            nets.push(net);
        }
        agents.push(Agent::start(&opts, root.join(format!("agent-{n}.log")))?);
    }
    let mut client = rt.block_on(ControlServiceClient::connect(
        world.scheduler.endpoint.clone(),
    ))?;
    rt.block_on(wait_connected(&mut client, AGENTS))?;

    for revision in ["1", "2"] {
        let def = serde_json::json!({"family": "svc", "networkMode": "none",
            "containerDefinitions": [{"name": "c", "image": world.image, "memory": 8,
                "stopTimeout": 1, "command": ["sleep", "3600"],
                "environment": [{"name": "REVISION", "value": revision}]}]});
        register_definition(&config, "bench", root, &def)?;
    }

    println!("\nservice scheduler, {TASKS} tasks on {AGENTS} agents");
    let count = TASKS.to_string();
    let converge = measure(scheduler_pid, || {
        ctl(
            &config,
            &[
                "create-service",
                "--service-name",
                SERVICE,
                "--task-definition",
                "svc:1",
                "--desired-count",
                &count,
            ],
        )?;
        rt.block_on(wait_settled(&mut client, "svc:1"))
    })?;
    converge.print(&format!("converge 0 -> {TASKS} tasks"));

    let deploy = measure(scheduler_pid, || {
        ctl(
            &config,
            &["update-service", SERVICE, "--task-definition", "svc:2"],
        )?;
        rt.block_on(wait_settled(&mut client, "svc:2"))
    })?;
    deploy.print(&format!("rolling deployment of {TASKS} tasks to svc:2"));

    // Leave nothing running: the service deleted, every task STOPPED.
    ctl(&config, &["delete-service", SERVICE, "--force"])?;
    rt.block_on(wait_all_stopped(&mut client))?;
    drop(agents);
    drop(nets);
    Ok(())
}

/// One phase's wall time and the scheduler's CPU time during it.
struct Figures {
    wall: Duration,
    cpu_seconds: f64,
}

impl Figures {
    fn print(&self, what: &str) {
        println!(
            "  {what:<44} wall {:>8.1} ms   scheduler CPU {:>8.1} ms",
            self.wall.as_secs_f64() * 1000.0,
            self.cpu_seconds * 1000.0
        );
    }
}

/// Runs `phase`, timing it and the CPU (user + system) the scheduler process spent meanwhile.
fn measure(pid: u32, phase: impl FnOnce() -> Result<()>) -> Result<Figures> {
    let stat = format!("/proc/{pid}/stat");
    let [user0, system0] = berth_tests::bench::stat_seconds(&stat, [14, 15])?;
    let start = Instant::now();
    phase()?;
    let wall = start.elapsed();
    let [user1, system1] = berth_tests::bench::stat_seconds(&stat, [14, 15])?;
    Ok(Figures {
        wall,
        cpu_seconds: (user1 - user0) + (system1 - system0),
    })
}

fn ctl(config: &Path, args: &[&str]) -> Result<String> {
    Ok(berthctl(config, "bench", args)?.success(args)?.stdout)
}

/// Polls until `n` agents are connected.
async fn wait_connected(client: &mut ControlServiceClient<Channel>, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = client
            .list_container_instances(ListContainerInstancesRequest {
                cluster: "bench".into(),
            })
            .await
            .context("list container instances")?
            .into_inner()
            .container_instances
            .iter()
            .filter(|i| i.agent_connected)
            .count();
        if up >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {up} of {n} agents connected");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service as the scheduler describes it.
async fn service(client: &mut ControlServiceClient<Channel>) -> Result<Service> {
    client
        .describe_services(DescribeServicesRequest {
            cluster: "bench".into(),
            services: vec![SERVICE.into()],
        })
        .await
        .context("describe services")?
        .into_inner()
        .services
        .into_iter()
        .next()
        .context("the service is not described")
}

async fn tasks(client: &mut ControlServiceClient<Channel>) -> Result<Vec<Task>> {
    Ok(client
        .list_tasks(ListTasksRequest {
            cluster: "bench".into(),
            ..Default::default()
        })
        .await
        .context("list tasks")?
        .into_inner()
        .tasks)
}

/// Polls (every 100 ms) until the service runs [`TASKS`] tasks of `revision`, all RUNNING,
/// and every other task of the cluster is STOPPED.
async fn wait_settled(client: &mut ControlServiceClient<Channel>, revision: &str) -> Result<()> {
    let deadline = Instant::now() + PHASE_WITHIN;
    loop {
        let s = service(client).await?;
        let all = tasks(client).await?;
        let running = all
            .iter()
            .filter(|t| {
                t.task_definition == revision
                    && t.last_status == TaskStatus::Running as i32
                    && t.desired_status == DesiredStatus::Running as i32
            })
            .count();
        let others = all
            .iter()
            .filter(|t| {
                t.task_definition != revision && t.last_status != TaskStatus::Stopped as i32
            })
            .count();
        if s.running_count == TASKS
            && s.pending_count == 0
            && running == TASKS as usize
            && others == 0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the service never settled on {revision}: runningCount {}, pendingCount {}, {running} RUNNING of {revision}, {others} others not STOPPED",
                s.running_count,
                s.pending_count
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until every task of the cluster is STOPPED.
async fn wait_all_stopped(client: &mut ControlServiceClient<Channel>) -> Result<()> {
    let deadline = Instant::now() + PHASE_WITHIN;
    loop {
        let left = tasks(client)
            .await?
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped as i32)
            .count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} tasks never stopped");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

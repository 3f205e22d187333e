//! Services end to end through the real binaries with several agents (each with its own data
//! dir, containerd namespace and network namespace): the service scheduler keeps the desired
//! count across a container crash, a task that turns UNHEALTHY, an agent killed for good and
//! an instance set DRAINING; a DAEMON service reaches an instance that joins later; and a
//! scheduler SIGKILLed while a service converges starts nothing twice after its restart.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::berth::{Agent, Scheduler};
use berth_tests::netlab::AgentNetns;
use berth_tests::{World, poll};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::{Env, hello, taskdef};

/// How long a service may take to reach what a trial waits for (pulls, starts, replacements).
pub(super) const CONVERGE_WITHIN: Duration = Duration::from_secs(45);

/// An Env with more agents, each in its own data dir, containerd namespace and network
/// namespace. Agents drop before their namespaces (field order).
pub(super) struct Fleet {
    more: Vec<Agent>,
    nets: Vec<AgentNetns>,
    pub(super) env: Env,
}

/// The agent flags that make it report `attributes` (none when empty).
fn attribute_args(attributes: &str) -> Vec<String> {
    if attributes.is_empty() {
        Vec::new()
    } else {
        vec!["--attributes".to_owned(), attributes.to_owned()]
    }
}

impl Fleet {
    /// A scheduler (with `scheduler_env`), a cluster and `agents` connected agents.
    pub(super) fn start(w: &World, agents: usize, scheduler_env: &[(&str, &str)]) -> Result<Fleet> {
        Fleet::start_with_attributes(w, &vec![""; agents], scheduler_env)
    }

    /// [`Fleet::start`] with one agent for each entry of `attributes`, which the agent reports
    /// as its custom attributes (`name=value,…` as its `--attributes` takes them; empty: none).
    pub(super) fn start_with_attributes(
        w: &World,
        attributes: &[&str],
        scheduler_env: &[(&str, &str)],
    ) -> Result<Fleet> {
        let mut env = Env::new(w, "10800")?;
        if !scheduler_env.is_empty() {
            let dir = env.dir.clone();
            let port = env.scheduler.port();
            env.scheduler
                .daemon
                .signal_and_wait(Signal::SIGTERM, Duration::from_secs(20))?;
            env.scheduler = Scheduler::start_with_env(&dir, Some(port), false, scheduler_env)?;
        }
        let (first, rest) = attributes
            .split_first()
            .context("a fleet needs at least one agent")?;
        env.opts.extra_args = attribute_args(first);
        env.connect()?;
        env.opts.extra_args.clear();
        let mut fleet = Fleet {
            more: Vec::new(),
            nets: Vec::new(),
            env,
        };
        for attributes in rest {
            fleet.add_agent_with_attributes(w, attributes)?;
        }
        fleet.wait_connected(attributes.len())?;
        Ok(fleet)
    }

    pub(super) fn add_agent(&mut self, w: &World) -> Result<()> {
        self.add_agent_with_attributes(w, "")
    }

    /// Starts one more agent that reports `attributes` (see [`Fleet::start_with_attributes`]).
    pub(super) fn add_agent_with_attributes(&mut self, w: &World, attributes: &str) -> Result<()> {
        let n = self.more.len() + 1;
        let mut opts = self.env.opts.clone();
        opts.extra_args = attribute_args(attributes);
        opts.data_dir = self.env.dir.join(format!("agent-data-{n}"));
        opts.namespace = w.unique("ns");
        let net = AgentNetns::create(&self.env.dir.join(format!("net-{n}")))?;
        opts.host_netns = net.host.path().to_owned();
        opts.netns_dir = net.netns_dir.clone();
        let agent = Agent::start(&opts, self.env.dir.join(format!("agent-more-{n}.log")))?;
        self.more.push(agent);
        self.nets.push(net);
        Ok(())
    }

    /// The IDs of the connected instances, once there are `n`.
    pub(super) fn wait_connected(&self, n: usize) -> Result<Vec<String>> {
        poll(CONVERGE_WITHIN, || {
            let up: Vec<String> = self
                .env
                .instances()?
                .into_iter()
                .filter(|i| i["agentConnected"] == true)
                .filter_map(|i| i["containerInstanceId"].as_str().map(str::to_owned))
                .collect();
            Ok((up.len() >= n).then_some(up))
        })
        .with_context(|| format!("{n} agents never connected{}", self.env.logs()))
    }

    pub(super) fn service(&self, name: &str) -> Result<Value> {
        let out = self.env.json(&["describe-services", name])?;
        out["services"][0]
            .as_object()
            .map(|o| Value::Object(o.clone()))
            .with_context(|| format!("no service {name}: {out}"))
    }

    /// Every task of the cluster started by the service (its task group, whichever its
    /// deployment).
    pub(super) fn tasks_of(&self, service: &Value) -> Result<Vec<Value>> {
        let group = format!(
            "service:{}",
            service["serviceName"]
                .as_str()
                .context("service without a name")?
        );
        Ok(self.env.json(&["list-tasks"])?["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["group"] == group.as_str())
            .collect())
    }

    /// Polls until `done` holds for the service and its tasks, or fails with both.
    pub(super) fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&Value, &[Value]) -> bool,
    ) -> Result<(Value, Vec<Value>)> {
        let last = std::cell::RefCell::new(None);
        poll(CONVERGE_WITHIN, || {
            let service = self.service(name)?;
            let tasks = self.tasks_of(&service)?;
            let ok = done(&service, &tasks);
            *last.borrow_mut() = Some((service.clone(), tasks.clone()));
            Ok(ok.then_some((service, tasks)))
        })
        .with_context(|| {
            format!(
                "service {name} never reached: {what}; last seen {:?}{}",
                last.borrow(),
                self.env.logs()
            )
        })
    }
}

/// SIGKILLs every process of the task's containers (found in its cgroups): a crash.
fn kill_task_processes(task_id: &str) -> Result<()> {
    // An empty or pathy ID would make the walk below every task's cgroup, or the host's.
    ensure!(
        !task_id.is_empty()
            && task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "not a task ID: {task_id:?}"
    );
    let roots = [
        format!("/sys/fs/cgroup/memory/berth/{task_id}"),
        format!("/sys/fs/cgroup/berth/{task_id}"),
    ];
    let root = roots
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_dir())
        .with_context(|| format!("no cgroup of task {task_id}"))?;
    let mut dirs = vec![root];
    let mut killed = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // Gone already is fine: the container is dying.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            killed += 1;
        }
    }
    ensure!(killed > 0, "task {task_id} has no process to kill");
    Ok(())
}

pub(super) fn live(tasks: &[Value]) -> Vec<&Value> {
    tasks
        .iter()
        .filter(|t| t["desiredStatus"] == "RUNNING" && t["lastStatus"] != "STOPPED")
        .collect()
}

pub(super) fn running_on<'a>(tasks: &'a [Value], instance: &str) -> Vec<&'a Value> {
    live(tasks)
        .into_iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["containerInstanceId"] == instance)
        .collect()
}

pub(super) fn steady(service: &Value, tasks: &[Value], desired: u64) -> bool {
    service["runningCount"] == desired
        && service["pendingCount"] == 0
        && live(tasks).len() as u64 == desired
}

pub(super) fn create(
    env: &Env,
    name: &str,
    family: &str,
    desired: u32,
    more: &[&str],
) -> Result<Value> {
    let count = desired.to_string();
    let mut args = vec![
        "create-service",
        "--service-name",
        name,
        "--task-definition",
        family,
        "--desired-count",
        &count,
    ];
    args.extend_from_slice(more);
    env.json(&args)
}

pub(super) fn keeps_desired_count_across_a_crash_and_a_draining_instance(w: &World) -> Result<()> {
    let fleet = Fleet::start(w, 2, &[])?;
    let env = &fleet.env;
    let image = hello(w, "e2e-svc-keep")?;
    env.register(&taskdef(
        "svc-keep",
        serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
    ))?;
    // Given as `aws ecs create-service --cli-input-json` takes it; a field Berth ignores is
    // named, not refused.
    let input = env.dir.join("svc-keep.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "serviceName": "keep",
            "taskDefinition": "svc-keep",
            "desiredCount": 2,
            "launchType": "EC2",
            "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200}
        })
        .to_string(),
    )?;
    let created = env.ctl(&[
        "-o",
        "json",
        "create-service",
        "--cli-input-json",
        &format!("file://{}", input.display()),
    ])?;
    ensure!(created.status == 0, "{created:?}");
    ensure!(created.stderr.contains("launchType"), "{created:?}");
    let created = created.json()?;
    ensure!(created["service"]["desiredCount"] == 2, "{created}");
    ensure!(
        created["service"]["schedulingStrategy"] == "REPLICA",
        "{created}"
    );
    // The steady-state event follows the report that made the tasks RUNNING by one step of
    // the service scheduler: waited for too.
    let (service, tasks) = fleet.wait_for("keep", "2 RUNNING and a steady state", |s, t| {
        steady(s, t, 2)
            && s["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["message"] == "(service keep) has reached a steady state.")
            })
    })?;
    ensure!(
        service["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("(service keep) has started 2 tasks: (task ")))),
        "{service}"
    );

    // A container crash (its process killed): its task stops and is replaced.
    let victim = live(&tasks)[0]["taskId"]
        .as_str()
        .context("no task ID")?
        .to_owned();
    kill_task_processes(&victim)?;
    let (_, tasks) = fleet.wait_for("keep", "the crashed task replaced", |s, t| {
        steady(s, t, 2) && live(t).iter().all(|t| t["taskId"] != victim.as_str())
    })?;
    let crashed = tasks
        .iter()
        .find(|t| t["taskId"] == victim.as_str())
        .context("the crashed task is gone")?;
    ensure!(
        crashed["stopCode"] == "EssentialContainerExited",
        "{crashed}"
    );

    // An instance set DRAINING: its tasks move, the replacements running before they stop.
    let (_, tasks) = fleet.wait_for("keep", "2 RUNNING", |s, t| steady(s, t, 2))?;
    let drained = live(&tasks)[0]["containerInstanceId"]
        .as_str()
        .context("no instance")?
        .to_owned();
    env.ok(&[
        "update-container-instances-state",
        &drained,
        "--status",
        "DRAINING",
    ])?;
    let (_, tasks) = fleet.wait_for("keep", "nothing left on the DRAINING instance", |s, t| {
        steady(s, t, 2) && running_on(t, &drained).is_empty()
    })?;
    for old in tasks.iter().filter(|t| {
        t["containerInstanceId"] == drained.as_str()
            && t["desiredStatus"] == "STOPPED"
            && t["stopCode"] == "ServiceSchedulerInitiated"
    }) {
        let reason = old["stoppedReason"].as_str().unwrap_or_default();
        ensure!(reason.contains("DRAINING"), "{old}");
        // Its replacement was RUNNING before it was told to stop.
        let stopping = old["stoppingAt"].as_str().context("no stoppingAt")?;
        ensure!(
            tasks
                .iter()
                .any(|t| t["containerInstanceId"] != drained.as_str()
                    && t["startedAt"].as_str().is_some_and(|s| s <= stopping)),
            "no replacement running before {stopping}: {tasks:?}"
        );
    }
    // The events command prints the history, oldest first.
    let events = env.ok(&["events", "keep"])?.stdout;
    ensure!(
        events.contains("(service keep) has stopped") && events.contains("running tasks: (task "),
        "{events}"
    );
    Ok(())
}

pub(super) fn replaces_an_unhealthy_task(w: &World) -> Result<()> {
    let fleet = Fleet::start(w, 1, &[])?;
    let env = &fleet.env;
    let image = hello(w, "e2e-svc-sick")?;
    let def = taskdef(
        "svc-sick",
        serde_json::json!([{
            "name": "app", "image": image, "memory": 16,
            "stopTimeout": 1,
            "command": ["sh", "-c", "sleep 2; touch /tmp/sick; exec sleep 3600"],
            "healthCheck": {"command": ["CMD-SHELL", "test ! -e /tmp/sick"], "interval": 5, "timeout": 2, "retries": 1}
        }]),
    );
    env.register(&def)?;
    create(env, "sick", "svc-sick", 1, &[])?;
    // Whoever stops it first, the agent (its essential container is UNHEALTHY) or the
    // service scheduler (ServiceSchedulerInitiated), says why, and the service replaces it.
    let (_, tasks) = fleet.wait_for("sick", "an UNHEALTHY task replaced", |_, t| {
        t.iter().any(|t| {
            t["lastStatus"] == "STOPPED"
                && t["healthStatus"] == "UNHEALTHY"
                && t["stoppedReason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("Task failed container health checks"))
        }) && live(t).len() == 1
    })?;
    ensure!(tasks.len() >= 2, "{tasks:?}");
    Ok(())
}

pub(super) fn replaces_the_tasks_of_an_agent_killed_for_good(w: &World) -> Result<()> {
    let mut fleet = Fleet::start(w, 2, &[("BERTH_SCHEDULER_INSTANCE_LOST_AFTER", "3s")])?;
    let image = hello(w, "e2e-svc-lost")?;
    fleet.env.register(&taskdef(
        "svc-lost",
        serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
    ))?;
    create(
        &fleet.env,
        "lost",
        "svc-lost",
        2,
        &[
            "--placement-strategy",
            r#"[{"type":"spread","field":"instanceId"}]"#,
        ],
    )?;
    let (_, tasks) = fleet.wait_for("lost", "2 RUNNING", |s, t| steady(s, t, 2))?;
    let both = fleet.wait_connected(2)?;
    // Kill (for good) the agent of an instance that runs a task of the service: the agent
    // logs its instance ID when it registers.
    let doomed = live(&tasks)[0]["containerInstanceId"]
        .as_str()
        .context("no instance")?
        .to_owned();
    let survivor = both
        .iter()
        .find(|i| **i != doomed)
        .context("no second instance")?
        .clone();
    // Dropping an agent SIGKILLs it; it never comes back.
    if fleet.env.agent()?.daemon.log().contains(&doomed) {
        drop(fleet.env.agent.take());
    } else {
        drop(fleet.more.pop().context("no second agent")?);
    }
    let gone: BTreeSet<&str> = [doomed.as_str()].into();
    let (_, tasks) = fleet.wait_for("lost", "2 RUNNING on the surviving instance", |s, t| {
        steady(s, t, 2) && running_on(t, &survivor).len() == 2
    })?;
    let lost: Vec<&Value> = tasks
        .iter()
        .filter(|t| {
            t["containerInstanceId"]
                .as_str()
                .is_some_and(|i| gone.contains(i))
        })
        .collect();
    ensure!(
        !lost.is_empty(),
        "no task was on the killed agent: {tasks:?}"
    );
    for t in lost {
        ensure!(
            t["lastStatus"] == "STOPPED" && t["stopCode"] == "InstanceLost",
            "{t}"
        );
    }
    Ok(())
}

pub(super) fn daemon_reaches_an_instance_that_joins_later(w: &World) -> Result<()> {
    let mut fleet = Fleet::start(w, 1, &[])?;
    let image = hello(w, "e2e-svc-daemon")?;
    fleet.env.register(&taskdef(
        "svc-daemon",
        serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
    ))?;
    let created = create(
        &fleet.env,
        "everywhere",
        "svc-daemon",
        0,
        &["--scheduling-strategy", "DAEMON"],
    )?;
    ensure!(
        created["service"]["schedulingStrategy"] == "DAEMON",
        "{created}"
    );
    fleet.wait_for("everywhere", "1 RUNNING", |s, t| {
        steady(s, t, 1) && s["desiredCount"] == 1
    })?;
    fleet.add_agent(w)?;
    let up = fleet.wait_connected(2)?;
    let (_, tasks) = fleet.wait_for("everywhere", "one RUNNING on each instance", |s, t| {
        steady(s, t, 2) && up.iter().all(|i| running_on(t, i).len() == 1)
    })?;
    ensure!(live(&tasks).len() == 2, "{tasks:?}");
    Ok(())
}

pub(super) fn scheduler_sigkilled_while_converging_starts_nothing_twice(w: &World) -> Result<()> {
    let mut fleet = Fleet::start(w, 2, &[])?;
    let image = hello(w, "e2e-svc-kill")?;
    fleet.env.register(&taskdef(
        "svc-kill",
        serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
    ))?;
    create(&fleet.env, "kill", "svc-kill", 6, &[])?;
    // Killed as soon as the first tasks exist: the service is still converging.
    poll(CONVERGE_WITHIN, || {
        let service = fleet.service("kill")?;
        Ok((!fleet.tasks_of(&service)?.is_empty()).then_some(()))
    })?;
    let dir = fleet.env.dir.clone();
    let port = fleet.env.scheduler.port();
    fleet
        .env
        .scheduler
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    fleet.env.scheduler = Scheduler::start(&dir, Some(port))?;
    let (_, tasks) = fleet.wait_for("kill", "6 RUNNING after the restart", |s, t| {
        steady(s, t, 6)
    })?;
    ensure!(
        tasks.len() == 6,
        "tasks were started twice (or replaced): {} tasks: {tasks:?}",
        tasks.len()
    );
    Ok(())
}

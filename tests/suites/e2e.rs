//! Berth end to end through the real binaries: berthctl → berth-scheduler → berth-agent →
//! containerd and runc, and every state change back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::{Agent, AgentOptions, CtlOutput, Scheduler, berthctl};
use berth_tests::{BadMode, BadRegistry, World, fixtures, run_suite};
use nix::sys::signal::Signal;
use serde_json::Value;

fn main() -> ExitCode {
    run_suite("e2e", |w| {
        vec![
            w.trial("clusters_lifecycle_and_delete_refused_in_use", clusters),
            w.trial("agent_for_unknown_cluster_is_refused", unknown_cluster),
            w.trial("register_lists_resources_and_restart_keeps_id", register),
            w.trial(
                "run_task_reaches_running_with_cgroup_limits",
                run_task_running,
            ),
            w.trial("essential_exit_3_stops_the_task", essential_exit),
            w.trial(
                "stop_task_kills_sigterm_ignorer_after_stop_timeout",
                stop_task,
            ),
            w.trial("bad_requests_give_clear_errors", bad_requests),
            w.trial(
                "missing_image_stops_task_with_registry_reason",
                missing_image,
            ),
            w.trial("scheduler_sigkill_restart_loses_nothing", scheduler_restart),
            w.trial("cleanup_wait_zero_leaves_nothing", cleanup),
            w.trial("agent_restart_keeps_containers_running", agent_restart),
            w.trial("slow_tasks_never_delay_another_task", isolation),
            w.trial(
                "depends_on_success_orders_start_and_failure_names_both",
                depends_on,
            ),
            w.trial(
                "restart_policy_restarts_in_place_until_an_ignored_exit",
                restart_policy,
            ),
            w.trial(
                "container_fields_take_effect_inside_the_container",
                container_fields,
            ),
            w.trial(
                "unsupported_container_fields_are_refused_by_name",
                unsupported_fields,
            ),
            w.trial(
                "privileged_is_refused_by_default_and_runs_when_allowed",
                privileged,
            ),
        ]
    })
}

/// One scheduler, one agent and one cluster, private to a trial.
struct Env {
    dir: PathBuf,
    scheduler: Scheduler,
    agent: Option<Agent>,
    opts: AgentOptions,
    cluster: String,
}

impl Env {
    /// A scheduler and a cluster; no agent yet.
    fn new(w: &World, cleanup_wait: &str) -> Result<Env> {
        let dir = w.scratch_dir("e2e")?;
        let scheduler = Scheduler::start(&dir, None)?;
        let cluster = w.unique("c");
        let opts = AgentOptions {
            cluster: cluster.clone(),
            endpoint: scheduler.endpoint.clone(),
            data_dir: dir.join("agent-data"),
            containerd_socket: w.containerd().socket().to_path_buf(),
            namespace: w.unique("ns"),
            insecure_registries: vec![w.registry().host()],
            cleanup_wait: cleanup_wait.to_owned(),
            extra_args: Vec::new(),
        };
        Ok(Env {
            dir,
            scheduler,
            agent: None,
            opts,
            cluster,
        })
    }

    /// A scheduler, a created cluster and a registered, connected agent.
    fn with_agent(w: &World, cleanup_wait: &str) -> Result<Env> {
        let mut env = Env::new(w, cleanup_wait)?;
        env.ok(&["create-cluster", &env.cluster.clone()])?;
        env.start_agent()?;
        env.wait_instance_connected()?;
        Ok(env)
    }

    fn start_agent(&mut self) -> Result<()> {
        let n = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.agent = Some(Agent::start(
            &self.opts,
            self.dir.join(format!("agent-{n}.log")),
        )?);
        Ok(())
    }

    fn agent(&self) -> Result<&Agent> {
        self.agent.as_ref().context("no agent started")
    }

    fn ctl(&self, args: &[&str]) -> Result<CtlOutput> {
        berthctl(&self.scheduler.endpoint, &self.cluster, args)
    }

    /// Runs berthctl and requires success.
    fn ok(&self, args: &[&str]) -> Result<CtlOutput> {
        let out = self.ctl(args)?;
        if out.status != 0 {
            bail!(
                "berthctl {args:?} failed ({}): {}{}",
                out.status,
                out.stderr,
                self.logs()
            );
        }
        Ok(out)
    }

    /// Runs berthctl -o json and requires success.
    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        self.ok(&full)?.json()
    }

    fn logs(&self) -> String {
        let agent = self
            .agent
            .as_ref()
            .map(|a| a.daemon.log())
            .unwrap_or_default();
        let tail = |s: &str| {
            s.lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "\n--- scheduler log tail ---\n{}\n--- agent log tail ---\n{}",
            tail(&self.scheduler.daemon.log()),
            tail(&agent)
        )
    }

    fn instances(&self) -> Result<Vec<Value>> {
        Ok(
            self.json(&["list-container-instances"])?["containerInstances"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    }

    fn wait_instance_connected(&self) -> Result<Value> {
        poll(Duration::from_secs(20), || {
            Ok(self
                .instances()?
                .into_iter()
                .find(|i| i["agentConnected"] == true))
        })
        .with_context(|| format!("the agent never connected{}", self.logs()))
    }

    fn register(&self, def: &Value) -> Result<PathBuf> {
        let path = self.dir.join(format!(
            "taskdef-{}.json",
            def["family"].as_str().unwrap_or("x")
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(def)?)?;
        let p = path.to_string_lossy().into_owned();
        self.ok(&["register-task-definition", "--file", &p])?;
        Ok(path)
    }

    fn run_task(&self, family: &str) -> Result<String> {
        let out = self.ok(&["run-task", "--task-definition", family])?;
        out.stdout
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .context("run-task printed no task id")
    }

    fn task(&self, id: &str) -> Result<Value> {
        let v = self.json(&["describe-tasks", id])?;
        v["tasks"]
            .get(0)
            .cloned()
            .with_context(|| format!("task {id} not described: {v}"))
    }

    /// Waits until the task's lastStatus is `status`.
    fn wait_status(&self, id: &str, status: &str, within: Duration) -> Result<Value> {
        poll(within, || {
            let t = self.task(id)?;
            Ok((t["lastStatus"] == status).then_some(t))
        })
        .with_context(|| {
            format!(
                "task {id} never reached {status}: {}{}",
                self.task(id).map(|t| t.to_string()).unwrap_or_default(),
                self.logs()
            )
        })
    }
}

/// Polls `f` every 50 ms until it returns Some, or fails after `within`.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + within;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(last_err.unwrap_or_else(|| anyhow::anyhow!("timed out after {within:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hello(w: &World, repo: &str) -> Result<String> {
    Ok(
        w.block_on(fixtures::hello(&w.registry().host(), repo, "v1"))?
            .reference,
    )
}

fn taskdef(family: &str, containers: Value) -> Value {
    serde_json::json!({ "family": family, "networkMode": "none", "containerDefinitions": containers })
}

fn clusters(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let c = env.cluster.clone();
    env.ok(&["create-cluster", &c])?;
    let list = env.json(&["list-clusters"])?;
    ensure!(list.to_string().contains(&c), "{list}");
    env.start_agent()?;
    env.wait_instance_connected()?;
    // A name that does not exist is a failure entry, and berthctl exits non-zero for it.
    let out = env.ctl(&["-o", "json", "describe-clusters", &c, "nosuch"])?;
    ensure!(
        out.status == 1 && out.stderr.contains("nosuch: MISSING"),
        "{out:?}"
    );
    let described = out.json()?;
    ensure!(
        described["clusters"][0]["registeredContainerInstancesCount"] == 1,
        "{described}"
    );
    ensure!(
        described["failures"][0]["arn"]
            .as_str()
            .unwrap_or_default()
            .contains("nosuch"),
        "{described}"
    );
    let refused = env.ctl(&["delete-cluster", &c])?;
    ensure!(
        refused.status != 0 && refused.stderr.contains(&c),
        "delete of a cluster in use: {refused:?}"
    );
    Ok(())
}

fn unknown_cluster(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.start_agent()?;
    let needle = format!("berthctl create-cluster {}", env.cluster);
    env.agent()?
        .daemon
        .wait_for_log(&needle, Duration::from_secs(20))?;
    ensure!(env.instances().map(|i| i.is_empty()).unwrap_or(true));
    Ok(())
}

fn register(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let inst = env.wait_instance_connected()?;
    let id = inst["containerInstanceId"]
        .as_str()
        .context("no id")?
        .to_owned();
    let text = inst.to_string();
    for needle in [
        "\"CPU\"",
        "\"MEMORY\"",
        "berth.cgroup-version",
        "berth.kernel-version",
        "berth.containerd-version",
        "berth.agent-version",
    ] {
        ensure!(text.contains(needle), "{needle} missing from {text}");
    }
    ensure!(inst["versionInfo"]["agentVersion"].is_string(), "{text}");
    // Restart the agent: same instance, connected again.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    poll(Duration::from_secs(10), || {
        Ok(env
            .instances()?
            .iter()
            .any(|i| i["agentConnected"] == false)
            .then_some(()))
    })
    .context("instance never marked disconnected")?;
    env.start_agent()?;
    let again = env.wait_instance_connected()?;
    ensure!(
        again["containerInstanceId"] == id.as_str(),
        "instance id changed: {id} → {again}"
    );
    ensure!(env.instances()?.len() == 1, "a second instance appeared");
    Ok(())
}

fn run_task_running(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-run")?;
    env.register(&serde_json::json!({
        "family": "web", "networkMode": "none", "cpu": "512", "memory": "256",
        "containerDefinitions": [{"name": "app", "image": image, "cpu": 256, "memory": 128, "memoryReservation": 64,
                                  "command": ["sleep", "300"], "stopTimeout": 1}]
    }))?;
    let id = env.run_task("web")?;
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    ensure!(
        t["startedAt"].is_string()
            && t["pullStartedAt"].is_string()
            && t["pullStoppedAt"].is_string(),
        "{t}"
    );
    ensure!(
        t["containers"][0]["lastStatus"] == "RUNNING"
            && t["containers"][0]["runtimeId"].is_string(),
        "{t}"
    );
    let cg = |c: &str, p: &str, f: &str| -> Result<String> {
        let path = format!("/sys/fs/cgroup/{c}/berth/{p}/{f}");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| path.clone())?
            .trim()
            .to_owned())
    };
    ensure!(cg("cpu", &id, "cpu.cfs_quota_us")? == "50000");
    ensure!(cg("memory", &id, "memory.limit_in_bytes")? == (256u64 << 20).to_string());
    ensure!(cg("cpu", &format!("{id}/app"), "cpu.shares")? == "256");
    ensure!(
        cg("memory", &format!("{id}/app"), "memory.limit_in_bytes")? == (128u64 << 20).to_string()
    );
    let tasks = env.ok(&["tasks"])?;
    ensure!(tasks.stdout.contains(&id[..8]), "table: {}", tasks.stdout);
    env.ok(&["stop-task", &id])?;
    env.wait_status(&id, "STOPPED", Duration::from_secs(20))?;
    Ok(())
}

fn essential_exit(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-exit")?;
    env.register(&taskdef("exit3", serde_json::json!([
        {"name": "main", "image": image, "memory": 64, "command": ["sh", "-c", "exit 3"]},
        {"name": "side", "image": image, "memory": 64, "essential": false, "command": ["sleep", "300"], "stopTimeout": 1}
    ])))?;
    let id = env.run_task("exit3")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    let main = t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "main"))
        .context("main")?;
    ensure!(main["exitCode"] == 3, "{t}");
    ensure!(t["stoppedAt"].is_string(), "{t}");
    Ok(())
}

fn stop_task(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-stop")?;
    env.register(&taskdef(
        "stubborn",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 2,
             "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
        ]),
    ))?;
    let id = env.run_task("stubborn")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let start = Instant::now();
    env.ok(&["stop-task", &id, "--reason", "maintenance window"])?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(10))?;
    let took = start.elapsed();
    ensure!(took <= Duration::from_secs(3), "stop took {took:?}");
    ensure!(
        t["stopCode"] == "UserInitiated" && t["stoppedReason"] == "maintenance window",
        "{t}"
    );
    ensure!(t["containers"][0]["exitCode"] == 137, "{t}");
    Ok(())
}

fn bad_requests(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-bad")?;
    // No capacity.
    env.register(&taskdef(
        "huge",
        serde_json::json!([{"name": "app", "image": image, "memory": 10_000_000}]),
    ))?;
    let out = env.ctl(&["run-task", "--task-definition", "huge"])?;
    ensure!(
        out.status != 0 && out.stderr.contains("largest free capacity"),
        "{out:?}"
    );
    // Unknown family.
    let out = env.ctl(&["run-task", "--task-definition", "nosuchfamily"])?;
    ensure!(
        out.status != 0 && out.stderr.contains("nosuchfamily"),
        "{out:?}"
    );
    // Malformed JSON: line and column.
    let bad = env.dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"family\": \"x\",\n  \"containerDefinitions\": [\n    {\"name\": \"a\" \"image\": \"b\"}\n  ]\n}\n",
    )?;
    let out = env.ctl(&["register-task-definition", "--file", &bad.to_string_lossy()])?;
    ensure!(
        out.status != 0 && out.stderr.contains("line 4") && out.stderr.contains("column"),
        "{out:?}"
    );
    // A misspelt field, with the suggestion.
    let typo = env.dir.join("typo.json");
    std::fs::write(
        &typo,
        serde_json::to_vec(&taskdef(
            "typo",
            serde_json::json!([{"name": "a", "image": image, "memroy": 64}]),
        ))?,
    )?;
    let out = env.ctl(&[
        "register-task-definition",
        "--file",
        &typo.to_string_lossy(),
    ])?;
    ensure!(
        out.status != 0
            && out.stderr.contains("memroy")
            && out.stderr.contains("did you mean `memory`"),
        "{out:?}"
    );
    Ok(())
}

fn missing_image(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = format!("{}/does-not-exist:1.0", w.registry().host());
    env.register(&taskdef(
        "ghost",
        serde_json::json!([{"name": "app", "image": image, "memory": 64}]),
    ))?;
    let id = env.run_task("ghost")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("does-not-exist") && reason.contains(&w.registry().host()),
        "{t}"
    );
    Ok(())
}

fn scheduler_restart(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-restart")?;
    env.register(&taskdef("longrun", serde_json::json!([
        {"name": "app", "image": image, "memory": 64, "command": ["sh", "-c", "sleep 2; exit 7"]}
    ])))?;
    let id = env.run_task("longrun")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let instance = env.wait_instance_connected()?["containerInstanceId"].clone();
    // Kill the scheduler; the task exits while it is down.
    env.scheduler
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_secs(3));
    let port = env.scheduler.port();
    env.scheduler = Scheduler::start(&env.dir, Some(port))?;
    let back = env.wait_instance_connected()?;
    ensure!(
        back["containerInstanceId"] == instance,
        "instance changed across the restart"
    );
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30))?;
    ensure!(
        t["containers"][0]["exitCode"] == 7 && t["stopCode"] == "EssentialContainerExited",
        "{t}"
    );
    Ok(())
}

fn cleanup(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-clean")?;
    env.register(&taskdef(
        "brief",
        serde_json::json!([{"name": "app", "image": image, "memory": 64, "command": ["true"]}]),
    ))?;
    let id = env.run_task("brief")?;
    env.wait_status(&id, "DEPROVISIONED", Duration::from_secs(60))
        .or_else(|_| env.wait_status(&id, "STOPPED", Duration::from_secs(1)))?;
    let ns = env.opts.namespace.clone();
    poll(Duration::from_secs(20), || {
        let containers = w.ctr(&["-n", &ns, "containers", "ls", "-q"])?;
        let gone = containers.trim().is_empty()
            && ["cpu", "memory", "pids"]
                .iter()
                .all(|c| !PathBuf::from(format!("/sys/fs/cgroup/{c}/berth/{id}")).exists());
        Ok(gone.then_some(()))
    })
    .with_context(|| format!("task {id} left containers or cgroups behind{}", env.logs()))?;
    let snaps = w.ctr(&["-n", &ns, "snapshots", "ls"])?;
    ensure!(!snaps.contains(&id), "snapshot left: {snaps}");
    Ok(())
}

fn agent_restart(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-agent-restart")?;
    env.register(&taskdef(
        "survivor",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]}
        ]),
    ))?;
    let id = env.run_task("survivor")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let ns = env.opts.namespace.clone();
    let pid_before = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    // Stop the agent; the container must keep running and keep its process.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    std::thread::sleep(Duration::from_millis(500));
    let during = w.ctr(&["-n", &ns, "tasks", "ls"])?;
    ensure!(
        during.contains("RUNNING") && during == pid_before,
        "container changed while the agent was down:\n{pid_before}\n{during}"
    );
    env.start_agent()?;
    env.wait_instance_connected()?;
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(10))?;
    ensure!(t["containers"][0]["lastStatus"] == "RUNNING", "{t}");
    ensure!(
        w.ctr(&["-n", &ns, "tasks", "ls"])? == pid_before,
        "the container was restarted"
    );
    // The output keeps flowing into the log after the restart, and the task still stops.
    let log = env.opts.data_dir.join("logs").join(&id).join("app.log");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    poll(Duration::from_secs(5), || {
        Ok((std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > size).then_some(()))
    })
    .context("the log stopped growing after the agent restarted")?;
    env.ok(&["stop-task", &id])?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(15))?;
    ensure!(t["stopCode"] == "UserInitiated", "{t}");
    Ok(())
}

/// One task's container ignores SIGTERM for a long stop timeout and another's image pull is
/// held by a stalled registry; a third task still starts and stops at once.
fn isolation(w: &World) -> Result<()> {
    let stall = BadRegistry::start(BadMode::Stall)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.insecure_registries.push(stall.host());
    let c = env.cluster.clone();
    env.ok(&["create-cluster", &c])?;
    env.start_agent()?;
    env.wait_instance_connected()?;
    let image = hello(w, "e2e-isolation")?;
    env.register(&taskdef(
        "stubborn",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 100,
             "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
        ]),
    ))?;
    env.register(&taskdef(
        "stalled",
        serde_json::json!([{"name": "app", "image": stall.reference("held/app"), "memory": 32}]),
    ))?;
    env.register(&taskdef("quick", serde_json::json!([
        {"name": "app", "image": image, "memory": 32, "stopTimeout": 1, "command": ["sleep", "300"]}
    ])))?;
    let stubborn = env.run_task("stubborn")?;
    env.wait_status(&stubborn, "RUNNING", Duration::from_secs(60))?;
    env.ok(&["stop-task", &stubborn])?; // will take 100 s to die
    let stalled = env.run_task("stalled")?;
    poll(Duration::from_secs(20), || {
        Ok(stall
            .requests()
            .iter()
            .any(|r| r.contains("/blobs/") && !r.contains(&stall.image().config.digest))
            .then_some(()))
    })
    .context("the stalled registry never saw the layer request")?;

    let start = Instant::now();
    let quick = env.run_task("quick")?;
    env.wait_status(&quick, "RUNNING", Duration::from_secs(10))?;
    env.ok(&["stop-task", &quick])?;
    env.wait_status(&quick, "STOPPED", Duration::from_secs(10))?;
    let took = start.elapsed();
    ensure!(
        took < Duration::from_secs(5),
        "the quick task took {took:?} beside the slow ones"
    );
    ensure!(
        env.task(&stubborn)?["lastStatus"] == "RUNNING",
        "the stubborn task should still be stopping"
    );
    ensure!(
        env.task(&stalled)?["lastStatus"] == "PENDING",
        "the stalled pull should still be pending: {}",
        env.task(&stalled)?
    );
    Ok(())
}

/// The first line of a container's json-file log and its time, once it is there.
fn first_log_line(env: &Env, task: &str, container: &str) -> Result<(String, String)> {
    let path = env
        .opts
        .data_dir
        .join("logs")
        .join(task)
        .join(format!("{container}.log"));
    poll(Duration::from_secs(30), || {
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let Some(line) = text.lines().next() else {
            return Ok(None);
        };
        let v: Value = serde_json::from_str(line)?;
        Ok(Some((
            v["log"].as_str().unwrap_or_default().to_owned(),
            v["time"].as_str().unwrap_or_default().to_owned(),
        )))
    })
    .with_context(|| format!("no log line in {}", path.display()))
}

fn depends_on(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-deps")?;
    env.register(&taskdef(
        "deps",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "echo app started; exec sleep 300"],
             "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
            {"name": "init", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "sleep 1; echo init done; exit 0"]}
        ]),
    ))?;
    let described = env.json(&["describe-task-definition", "deps"])?;
    ensure!(
        described
            .to_string()
            .contains(r#""dependsOn":[{"condition":"SUCCESS","containerName":"init"}]"#)
            || described
                .to_string()
                .contains(r#""dependsOn":[{"containerName":"init","condition":"SUCCESS"}]"#),
        "{described}"
    );
    let id = env.run_task("deps")?;
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let init = t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "init"))
        .context("init")?;
    ensure!(
        init["exitCode"] == 0,
        "init exited before the task ran: {t}"
    );
    let (init_log, init_time) = first_log_line(&env, &id, "init")?;
    let (app_log, app_time) = first_log_line(&env, &id, "app")?;
    ensure!(init_log == "init done\n" && app_log == "app started\n");
    // Same fixed-width RFC 3339 format: the strings order as the times do.
    ensure!(
        app_time > init_time,
        "app started at {app_time}, before init finished at {init_time}"
    );
    env.ok(&["stop-task", &id])?;

    env.register(&taskdef(
        "deps-fail",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "command": ["sleep", "300"],
             "dependsOn": [{"containerName": "db", "condition": "SUCCESS"}]},
            {"name": "db", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "exit 3"]}
        ]),
    ))?;
    let id = env.run_task("deps-fail")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
    ensure!(
        t["stoppedReason"] == "dependency db of container app exited with 3; condition SUCCESS",
        "{t}"
    );
    Ok(())
}

/// ECS's rules leave no shortcut: a container is restarted only after a run of at least
/// restartAttemptPeriod (60 s at the least), then after the first backoff (10 s). The container
/// runs 61 s and exits 1 (restarted, in place: the file its first run wrote is still there),
/// then exits 3 at once, which is ignored: the essential container ends and stops the task.
fn restart_policy(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-restart")?;
    env.register(&taskdef(
        "restarts",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c",
                 "echo run; if [ -f /ran ]; then exit 3; fi; touch /ran; sleep 61; exit 1"],
             "restartPolicy": {"enabled": true, "ignoredExitCodes": [3],
                               "restartAttemptPeriod": 60}}
        ]),
    ))?;
    let described = env
        .json(&["describe-task-definition", "restarts"])?
        .to_string();
    ensure!(
        described.contains(
            r#""restartPolicy":{"enabled":true,"ignoredExitCodes":[3],"restartAttemptPeriod":60}"#
        ),
        "{described}"
    );
    let id = env.run_task("restarts")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(180))?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    let app = t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "app"))
        .context("app")?;
    ensure!(app["exitCode"] == 3 && app["restartCount"] == 1, "{t}");
    let path = env.opts.data_dir.join("logs").join(&id).join("app.log");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let runs = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["log"] == "run\n")
        .count();
    ensure!(runs == 2, "two runs in one log file: {text}");
    Ok(())
}

/// Every supported container-level field, checked from inside its container: each check is a
/// shell test, so the container's exit code proves it. `probe` (root, no capabilities but
/// NET_ADMIN and SYS_TIME) starts only once `nobody` has passed its own checks.
fn container_fields(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-fields")?;
    let nobody_checks = [
        r#"test "$(id -u)" = 65534"#,
        r#"test "$(ulimit -n)" = 1000"#,
        r#"test "$(ulimit -Hn)" = 2000"#,
    ];
    let probe_checks = [
        r#"test "$(hostname)" = probe-host"#,
        r#"test "$(cat /proc/sys/kernel/shmmax)" = 1234"#,
        r#"grep -q '^CapEff:[[:space:]]*0000000002001000$' /proc/self/status"#,
        r#"grep ' /dev/shm ' /proc/mounts | grep -q size=102400k"#,
        r#"grep ' /scratch tmpfs ' /proc/mounts | grep -q size=8192k"#,
        r#"echo ok > /scratch/file"#,
        r#"! touch /probe 2>/dev/null"#,
        r#"grep -q '^10.1.2.3[[:space:]]db.internal$' /etc/hosts"#,
        r#"grep -q '^nameserver 10.0.0.53$' /etc/resolv.conf"#,
        r#"grep -q '^search corp.example$' /etc/resolv.conf"#,
        r#"test "$FROM_FILE" = 'from a file'"#,
        r#"test "$BOTH" = explicit"#,
        r#"test "$LATER" = second"#,
        r#"test "$(cat /proc/1/comm)" = docker-init"#,
        r#"test "$(ls /sys/class/net)" = lo"#,
    ];
    let first = env.dir.join("first.env");
    let second = env.dir.join("second.env");
    std::fs::write(
        &first,
        "# read by the agent\nFROM_FILE=from a file\nBOTH=from the file\nLATER=first\n",
    )?;
    std::fs::write(&second, "\nLATER=second\n")?;
    // Each failed check names itself on stdout before the container exits with its number.
    let script = |checks: &[&str]| {
        checks
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} || {{ echo 'failed: {i}'; exit {}; }}", i + 10))
            .collect::<Vec<_>>()
            .join("; ")
    };
    env.register(&taskdef(
        "fields",
        serde_json::json!([
            {"name": "nobody", "image": image, "memory": 64, "essential": false,
             "user": "nobody",
             "ulimits": [{"name": "nofile", "softLimit": 1000, "hardLimit": 2000}],
             "command": ["sh", "-c", script(&nobody_checks)]},
            {"name": "probe", "image": image, "memory": 64,
             "hostname": "probe-host",
             "readonlyRootFilesystem": true,
             "disableNetworking": true,
             "systemControls": [{"namespace": "kernel.shmmax", "value": "1234"}],
             "extraHosts": [{"hostname": "db.internal", "ipAddress": "10.1.2.3"}],
             "dnsServers": ["10.0.0.53"],
             "dnsSearchDomains": ["corp.example"],
             "environment": [{"name": "BOTH", "value": "explicit"}],
             "environmentFiles": [{"value": first, "type": "file"},
                                  {"value": second, "type": "file"}],
             "linuxParameters": {
                 "capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["ALL"]},
                 "sharedMemorySize": 100,
                 "initProcessEnabled": true,
                 "tmpfs": [{"containerPath": "/scratch", "size": 8, "mountOptions": ["noexec"]}]
             },
             "dependsOn": [{"containerName": "nobody", "condition": "SUCCESS"}],
             "command": ["sh", "-c", script(&probe_checks)]}
        ]),
    ))?;
    let id = env.run_task("fields")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(90))?;
    let exit_of = |name: &str| {
        t["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["exitCode"].clone())
    };
    let logs = |name: &str| {
        std::fs::read_to_string(
            env.opts
                .data_dir
                .join("logs")
                .join(&id)
                .join(format!("{name}.log")),
        )
        .unwrap_or_default()
    };
    ensure!(
        exit_of("nobody") == Some(Value::from(0)),
        "nobody's checks: {t}\n{}",
        logs("nobody")
    );
    ensure!(
        exit_of("probe") == Some(Value::from(0)),
        "probe's checks: {t}\n{}",
        logs("probe")
    );
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    Ok(())
}

/// Every container field Berth does not support is refused at registration by name, with its
/// JSON path, all at once.
fn unsupported_fields(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let unsupported = [
        "repositoryCredentials",
        "links",
        "portMappings",
        "mountPoints",
        "volumesFrom",
        "secrets",
        "versionConsistency",
        "dockerSecurityOptions",
        "interactive",
        "pseudoTerminal",
        "logConfiguration",
        "healthCheck",
        "resourceRequirements",
        "firelensConfiguration",
        "credentialSpecs",
    ];
    let mut container = serde_json::json!({"name": "app", "image": "busybox", "memory": 64});
    for field in unsupported {
        container[field] = serde_json::json!(true);
    }
    container["linuxParameters"] =
        serde_json::json!({"devices": [], "maxSwap": 0, "swappiness": 1});
    let def = taskdef("refused", serde_json::json!([container]));
    let path = env.dir.join("refused.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&def)?)?;
    let out = env.ctl(&[
        "register-task-definition",
        "--file",
        &path.to_string_lossy(),
    ])?;
    ensure!(out.status != 0, "registered: {}", out.stdout);
    for field in unsupported {
        let want =
            format!("field `{field}` at containerDefinitions[0] is not supported by Berth yet");
        ensure!(
            out.stderr.contains(&want),
            "{want:?} missing from: {}",
            out.stderr
        );
    }
    for field in ["devices", "maxSwap", "swappiness"] {
        let want = format!(
            "field `{field}` at containerDefinitions[0].linuxParameters is not supported by Berth yet"
        );
        ensure!(
            out.stderr.contains(&want),
            "{want:?} missing from: {}",
            out.stderr
        );
    }
    Ok(())
}

/// ECS `privileged`: an agent refuses it by default (the task stops with a reason that names
/// the setting); an agent started with --allow-privileged runs it with every capability, the
/// host's devices, and /sys writable, as Docker's --privileged.
fn privileged(w: &World) -> Result<()> {
    let image = hello(w, "e2e-privileged")?;
    // Every capability the agent may hand on: its bounding set, which is this process's.
    let status = std::fs::read_to_string("/proc/self/status")?;
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim)
        .context("no CapBnd in /proc/self/status")?
        .to_owned();
    let checks = [
        format!("grep -q '^CapEff:[[:space:]]*{bounding}$' /proc/self/status"),
        "test -c /dev/loop-control".to_owned(),
        "grep -q ' /sys sysfs rw' /proc/mounts".to_owned(),
    ]
    .iter()
    .enumerate()
    .map(|(i, c)| format!("{c} || {{ echo 'failed: {i}'; exit {}; }}", i + 10))
    .collect::<Vec<_>>()
    .join("; ");
    let def = taskdef(
        "privileged",
        serde_json::json!([
            {"name": "root", "image": image, "memory": 64, "privileged": true,
             "command": ["sh", "-c", checks]}
        ]),
    );

    let env = Env::with_agent(w, "10800")?;
    env.register(&def)?;
    let id = env.run_task("privileged")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("container root asks to run privileged")
            && reason.contains("allow_privileged = true (BERTH_ALLOW_PRIVILEGED)"),
        "{t}"
    );

    let mut allowed = Env::new(w, "10800")?;
    allowed
        .opts
        .extra_args
        .push("--allow-privileged".to_owned());
    allowed.ok(&["create-cluster", &allowed.cluster.clone()])?;
    allowed.start_agent()?;
    allowed.wait_instance_connected()?;
    allowed.register(&def)?;
    let id = allowed.run_task("privileged")?;
    let t = allowed.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    let root = t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "root"))
        .context("root")?;
    let log = std::fs::read_to_string(
        allowed
            .opts
            .data_dir
            .join("logs")
            .join(&id)
            .join("root.log"),
    )
    .unwrap_or_default();
    ensure!(root["exitCode"] == 0, "privileged checks: {t}\n{log}");
    Ok(())
}

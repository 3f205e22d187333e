//! Berth end to end through the real binaries: berthctl → berth-scheduler → berth-agent →
//! containerd and runc, and every state change back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::{Agent, AgentOptions, CtlOutput, Scheduler, berthctl, bin};
use berth_tests::netlab::AgentNetns;
use berth_tests::{BadMode, BadRegistry, World, fixtures, run_suite};
use nix::sys::signal::Signal;
use serde_json::Value;

#[path = "e2e/fidelity.rs"]
mod fidelity;
#[path = "e2e/network.rs"]
mod network;
#[path = "e2e/pull.rs"]
mod pull;

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
                "volumes_a_task_volume_is_shared_by_its_containers",
                volume_shared,
            ),
            w.trial(
                "volumes_a_read_only_bind_mount_refuses_writes",
                volume_read_only_bind,
            ),
            w.trial(
                "volumes_a_host_path_outside_the_allowed_dirs_is_refused",
                volume_host_path_refused,
            ),
            w.trial(
                "volumes_the_task_directory_is_gone_after_cleanup",
                volume_cleanup,
            ),
            w.trial("volumes_a_tmpfs_docker_volume_is_shared", volume_tmpfs),
            w.trial(
                "health_check_gates_a_healthy_dependency_and_shows_in_describe",
                health_gating,
            ),
            w.trial(
                "unhealthy_essential_container_stops_its_task_with_a_reason",
                health_unhealthy,
            ),
            w.trial(
                "logs_rotate_lose_nothing_and_follow_across_rotations",
                logs_rotate_and_follow,
            ),
            w.trial(
                "logs_unsupported_log_driver_is_refused_by_name",
                logs_unsupported_driver,
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
            w.trial(
                "network_awsvpc_task_address_localhost_dns_files_and_endpoint",
                network::awsvpc,
            ),
            w.trial(
                "network_awsvpc_eni_moves_into_the_task_and_back",
                network::awsvpc_eni,
            ),
            w.trial(
                "network_bridge_port_mappings_hairpin_udp_links_and_clash",
                network::bridge,
            ),
            w.trial("network_200_task_lives_leave_nothing", network::leaks),
            w.trial(
                "network_overlapping_cidr_stops_the_agent_with_a_reason",
                network::overlapping_cidr,
            ),
            w.trial(
                "network_agent_sigkill_keeps_an_awsvpc_task_reachable",
                network::agent_restart_keeps_the_network,
            ),
            w.trial(
                "security_options_no_new_privileges_and_seccomp_inside_the_container",
                security_options,
            ),
            w.trial(
                "security_options_a_bad_seccomp_profile_stops_the_task_naming_the_file",
                bad_seccomp_profile,
            ),
            w.trial(
                "devices_an_allowed_device_is_mapped_and_another_stops_the_task",
                devices,
            ),
            w.trial(
                "swap_max_swap_and_swappiness_reach_the_container_or_are_noted",
                swap,
            ),
            w.trial(
                "terminal_and_interactive_stdin_inside_the_container",
                terminal_and_stdin,
            ),
            w.trial(
                "fidelity_stop_signals_the_main_process_then_kills_all",
                fidelity::stop_signals_the_main_process_then_kills_all,
            ),
            w.trial(
                "fidelity_a_non_essential_container_that_cannot_start",
                fidelity::a_non_essential_container_that_cannot_start,
            ),
            w.trial(
                "fidelity_without_task_level_limits_nothing_caps_the_task",
                fidelity::without_task_level_limits_nothing_caps_the_task,
            ),
            w.trial(
                "fidelity_metadata_answers_every_first_instruction",
                fidelity::metadata_from_the_first_instruction,
            ),
            w.trial(
                "pull_image_pulled_into_another_namespace_runs",
                pull::image_pulled_into_another_namespace,
            ),
            w.trial(
                "pull_partial_content_of_other_clients_runs",
                pull::partial_content_of_other_clients,
            ),
        ]
    })
}

/// One scheduler, one agent and one cluster, private to a trial; the agent's network lives in
/// a namespace of the trial's own.
struct Env {
    dir: PathBuf,
    scheduler: Scheduler,
    agent: Option<Agent>,
    opts: AgentOptions,
    cluster: String,
    /// Dropped after the agent (fields drop in order), so the agent never loses its namespace.
    net: AgentNetns,
}

impl Env {
    /// A scheduler and a cluster; no agent yet.
    fn new(w: &World, cleanup_wait: &str) -> Result<Env> {
        let dir = w.scratch_dir("e2e")?;
        let scheduler = Scheduler::start(&dir, None)?;
        let cluster = w.unique("c");
        let net = AgentNetns::create(&dir.join("net"))?;
        let opts = AgentOptions {
            cluster: cluster.clone(),
            endpoint: scheduler.endpoint.clone(),
            data_dir: dir.join("agent-data"),
            containerd_socket: w.containerd().socket().to_path_buf(),
            namespace: w.unique("ns"),
            insecure_registries: vec![w.registry().host()],
            cleanup_wait: cleanup_wait.to_owned(),
            host_netns: net.host.path().to_owned(),
            netns_dir: net.netns_dir.clone(),
            extra_args: Vec::new(),
        };
        Ok(Env {
            dir,
            scheduler,
            agent: None,
            opts,
            cluster,
            net,
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

    /// Waits until the host released what the STOPPED task held (after its cleanup wait): the
    /// task shows `resourcesReleasedAt` and is still STOPPED, the last status.
    fn wait_released(&self, id: &str, within: Duration) -> Result<Value> {
        poll(within, || {
            let t = self.task(id)?;
            Ok(t["resourcesReleasedAt"].is_string().then_some(t))
        })
        .and_then(|t| {
            ensure!(
                t["lastStatus"] == "STOPPED",
                "released but not STOPPED: {t}"
            );
            Ok(t)
        })
        .with_context(|| {
            format!(
                "task {id} was never released: {}{}",
                self.task(id).map(|t| t.to_string()).unwrap_or_default(),
                self.logs()
            )
        })
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
    env.wait_released(&id, Duration::from_secs(60))?;
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

/// Like [`Env::with_agent`], with an agent that lets tasks bind-mount `allowed` host paths.
fn env_allowing(w: &World, cleanup_wait: &str, allowed: &[&std::path::Path]) -> Result<Env> {
    let mut env = Env::new(w, cleanup_wait)?;
    if !allowed.is_empty() {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        env.opts.extra_args = vec![format!("--volume-host-paths={}", list.join(","))];
    }
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    env.start_agent()?;
    env.wait_instance_connected()?;
    Ok(env)
}

fn container<'a>(t: &'a Value, name: &str) -> Result<&'a Value> {
    t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .with_context(|| format!("no container {name} in {t}"))
}

/// `writer` writes into a task volume; `reader` starts once it succeeded, takes its volumes
/// (read-only) and exits 0 only when it reads what was written and cannot write itself.
fn volume_shared(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "shared-volume",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared"}],
             "command": ["sh", "-c", "echo hello > /shared/msg"]},
            {"name": "reader", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}],
             "volumesFrom": [{"sourceContainer": "writer", "readOnly": true}],
             "command": ["sh", "-c",
                 "test \"$(cat /shared/msg)\" = hello || exit 3; if touch /shared/other; then exit 4; fi; exit 0"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "shared"}]);
    env.register(&def)?;
    let described = env
        .json(&["describe-task-definition", "shared-volume"])?
        .to_string();
    ensure!(
        described.contains(r#""volumes":[{"name":"shared"}]"#)
            && (described
                .contains(r#""volumesFrom":[{"readOnly":true,"sourceContainer":"writer"}]"#)
                || described
                    .contains(r#""volumesFrom":[{"sourceContainer":"writer","readOnly":true}]"#)),
        "{described}"
    );
    let id = env.run_task("shared-volume")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(90))?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    ensure!(container(&t, "writer")?["exitCode"] == 0, "{t}");
    ensure!(
        container(&t, "reader")?["exitCode"] == 0,
        "reader exit 3: it did not read what writer wrote; 4: it could write: {t}"
    );
    Ok(())
}

/// A host directory mounted read-only: a write fails (non-zero exit), a read succeeds, and
/// nothing reaches the host.
fn volume_read_only_bind(w: &World) -> Result<()> {
    let scratch = w.scratch_dir("e2e-host-data")?;
    let host_data = scratch.join("data");
    std::fs::create_dir_all(&host_data)?;
    std::fs::write(host_data.join("greeting"), "hi from the host")?;
    let env = env_allowing(w, "10800", &[&scratch])?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "ro-bind",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
             "command": ["sh", "-c", "echo x > /data/new"]},
            {"name": "reader", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "writer", "condition": "COMPLETE"}],
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
             "command": ["sh", "-c", "test \"$(cat /data/greeting)\" = 'hi from the host'"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "data", "host": {"sourcePath": host_data.display().to_string()}}]);
    env.register(&def)?;
    let id = env.run_task("ro-bind")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(90))?;
    let writer = container(&t, "writer")?["exitCode"].as_i64();
    ensure!(
        writer.is_some_and(|code| code != 0),
        "a write to a read-only mount must fail: {t}"
    );
    ensure!(
        container(&t, "reader")?["exitCode"] == 0,
        "the read failed: {t}"
    );
    ensure!(
        !host_data.join("new").exists(),
        "the write reached the host"
    );
    Ok(())
}

/// A host path outside `volume_host_paths`, directly or through a symlink inside an allowed
/// directory, stops the task before it starts, saying why.
fn volume_host_path_refused(w: &World) -> Result<()> {
    let scratch = w.scratch_dir("e2e-host-allowed")?;
    std::os::unix::fs::symlink("/etc", scratch.join("etc-link"))?;
    let env = env_allowing(w, "10800", &[&scratch])?;
    let image = hello(w, "e2e-volumes")?;
    for (family, source, resolved) in [
        ("host-etc", "/etc".to_owned(), ""),
        (
            "host-link",
            scratch.join("etc-link").display().to_string(),
            " (resolved to /etc)",
        ),
    ] {
        let mut def = taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "mountPoints": [{"sourceVolume": "etc", "containerPath": "/host-etc"}],
                 "command": ["cat", "/host-etc/shadow"]}
            ]),
        );
        def["volumes"] = serde_json::json!([{"name": "etc", "host": {"sourcePath": source}}]);
        env.register(&def)?;
        let id = env.run_task(family)?;
        let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
        ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
        let expected = format!(
            "volume etc: host path {source} is outside the directories this agent allows{resolved}; volume_host_paths: {}",
            scratch.display()
        );
        ensure!(
            t["stoppedReason"] == expected.as_str(),
            "expected {expected:?}: {t}"
        );
        ensure!(
            container(&t, "app")?["exitCode"].is_null(),
            "the container must never have run: {t}"
        );
    }
    Ok(())
}

/// The task's volume directory exists on the host while it runs and is gone once the task is
/// cleaned up (cleanup wait 0).
fn volume_cleanup(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "volume-clean",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}],
             "command": ["sh", "-c", "echo x > /scratch/f; exec sleep 300"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "scratch", "host": {}}]);
    env.register(&def)?;
    let id = env.run_task("volume-clean")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let task_dir = env.opts.data_dir.join("volumes").join(&id);
    poll(Duration::from_secs(20), || {
        Ok(task_dir.join("scratch/f").exists().then_some(()))
    })
    .with_context(|| format!("{} never appeared{}", task_dir.display(), env.logs()))?;
    env.ok(&["stop-task", &id])?;
    env.wait_released(&id, Duration::from_secs(60))?;
    poll(Duration::from_secs(20), || {
        Ok((!task_dir.exists()).then_some(()))
    })
    .with_context(|| format!("{} is left behind{}", task_dir.display(), env.logs()))?;
    Ok(())
}

/// A tmpfs docker volume is mounted once on the host and shared: `writer` writes, `reader`
/// sees the file on a tmpfs, the host sees the tmpfs with its size, and the cleanup unmounts
/// and removes it.
fn volume_tmpfs(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "tmpfs-volume",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}],
             "command": ["sh", "-c", "echo fast > /fast/f"]},
            {"name": "reader", "image": image, "memory": 64, "stopTimeout": 1,
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}],
             "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}],
             "command": ["sh", "-c",
                 "grep -q ' /fast tmpfs ' /proc/mounts || exit 3; test \"$(cat /fast/f)\" = fast || exit 4; touch /fast/ok; exec sleep 300"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "fast", "dockerVolumeConfiguration": {
        "scope": "task", "driver": "local",
        "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}}}]);
    env.register(&def)?;
    let id = env.run_task("tmpfs-volume")?;
    let host_dir = env.opts.data_dir.join("volumes").join(&id).join("fast");
    poll(Duration::from_secs(60), || {
        if env.task(&id)?["lastStatus"] == "STOPPED" {
            bail!("the task stopped: reader exit 3 = no tmpfs, 4 = file not shared");
        }
        Ok(host_dir.join("ok").exists().then_some(()))
    })
    .with_context(|| {
        format!(
            "reader never confirmed the shared tmpfs: {}{}",
            env.task(&id).map(|t| t.to_string()).unwrap_or_default(),
            env.logs()
        )
    })?;
    let mount_line = |dir: &std::path::Path| -> Result<Option<String>> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let dir = dir.display().to_string();
        Ok(mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dir.as_str()))
            .map(str::to_owned))
    };
    let line = mount_line(&host_dir)?.context("the tmpfs is not mounted on the host")?;
    ensure!(
        line.contains(" - tmpfs ") && line.contains("size=8192k"),
        "not an 8 MiB tmpfs: {line}"
    );
    env.ok(&["stop-task", &id])?;
    env.wait_released(&id, Duration::from_secs(60))?;
    poll(Duration::from_secs(20), || {
        Ok((mount_line(&host_dir)?.is_none() && !host_dir.exists()).then_some(()))
    })
    .with_context(|| {
        format!(
            "the tmpfs at {} outlived its task{}",
            host_dir.display(),
            env.logs()
        )
    })?;
    Ok(())
}

/// The health of a described task's container.
fn container_health(t: &Value, name: &str) -> Result<String> {
    t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .and_then(|c| c["healthStatus"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no healthStatus for container {name}: {t}"))
}

/// db becomes ready only after 7 s, so its first check (at 5 s) fails and the second (at 10 s)
/// passes; app depends on db being HEALTHY and must start after db's ready line was written.
/// describe-tasks shows both healths (app has no check: UNKNOWN) and the task's, in JSON and in
/// the table.
fn health_gating(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-health")?;
    env.register(&taskdef(
        "healthy",
        serde_json::json!([
            {"name": "db", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "sleep 7; touch /ready; echo db ready; exec sleep 300"],
             "healthCheck": {"command": ["CMD-SHELL", "test -f /ready"],
                             "interval": 5, "timeout": 2, "retries": 3}},
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "echo app started; exec sleep 300"],
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}
        ]),
    ))?;
    let described = env
        .json(&["describe-task-definition", "healthy"])?
        .to_string();
    ensure!(
        described.contains(
            r#""healthCheck":{"command":["CMD-SHELL","test -f /ready"],"interval":5,"retries":3,"startPeriod":0,"timeout":2}"#
        ) || described.contains(
            r#""healthCheck":{"command":["CMD-SHELL","test -f /ready"],"interval":5,"timeout":2,"retries":3,"startPeriod":0}"#
        ),
        "{described}"
    );
    let id = env.run_task("healthy")?;
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(120))?;
    ensure!(container_health(&t, "db")? == "HEALTHY", "{t}");
    ensure!(container_health(&t, "app")? == "UNKNOWN", "{t}");
    ensure!(t["healthStatus"] == "HEALTHY", "{t}");
    let (db_log, db_time) = first_log_line(&env, &id, "db")?;
    let (app_log, app_time) = first_log_line(&env, &id, "app")?;
    ensure!(db_log == "db ready\n" && app_log == "app started\n");
    // Same fixed-width RFC 3339 format: the strings order as the times do.
    ensure!(
        app_time > db_time,
        "app started at {app_time}, before db was ready at {db_time}"
    );
    let table = env.ok(&["describe-tasks", &id])?.stdout;
    ensure!(
        table.lines().next().is_some_and(|h| h.contains("HEALTH"))
            && table.lines().nth(1).is_some_and(|r| r.contains("HEALTHY")),
        "{table}"
    );
    env.ok(&["stop-task", &id])?;
    env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    Ok(())
}

/// An essential container whose check always fails (retries 1) turns UNHEALTHY at its first
/// check and stops its task, with a reason naming it; a HEALTHY dependency on it that never
/// became healthy leaves its dependent unstarted.
fn health_unhealthy(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-unhealthy")?;
    env.register(&taskdef(
        "unhealthy",
        serde_json::json!([
            {"name": "web", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sleep", "300"],
             "healthCheck": {"command": ["CMD", "sh", "-c", "exit 1"],
                             "interval": 5, "timeout": 2, "retries": 1}},
            {"name": "late", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sleep", "300"],
             "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}]}
        ]),
    ))?;
    let id = env.run_task("unhealthy")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(120))?;
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with(
            "Task failed container health checks: essential container web is unhealthy after 1 consecutive failed checks"
        ) && reason.contains("exited with 1"),
        "{t}"
    );
    ensure!(t["healthStatus"] == "UNHEALTHY", "{t}");
    ensure!(container_health(&t, "web")? == "UNHEALTHY", "{t}");
    let late = t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "late"))
        .context("late")?;
    ensure!(
        late.get("exitCode").is_none(),
        "late never ran, so it has no exit code: {t}"
    );
    Ok(())
}

/// How many numbered lines the chatty container prints.
const CHATTY_LINES: usize = 1500;

/// The numbers of "line N" lines, in the order printed.
fn line_numbers(text: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Requires the lines 0..CHATTY_LINES, each once, in order.
fn ensure_complete(what: &str, text: &str) -> Result<()> {
    let numbers = line_numbers(text);
    let expected: Vec<usize> = (0..CHATTY_LINES).collect();
    if numbers != expected {
        let first_bad = numbers
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(numbers.len().min(expected.len()));
        bail!(
            "{what}: {} lines, first difference at index {first_bad} (got {:?})",
            numbers.len(),
            numbers.get(first_bad)
        );
    }
    Ok(())
}

/// A container prints numbered lines for several seconds into a json-file log rotated every
/// 4 KiB (logConfiguration); `berthctl logs --follow`, started while it runs, sees every line
/// once and in order across the rotations and ends by itself when the container stops; so does
/// a plain `logs` afterwards. Then --tail, --timestamps, stderr, an unknown container, an
/// unknown task and a disconnected instance.
fn logs_rotate_and_follow(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-logs")?;
    let script = format!(
        "i=0; while [ $i -lt {CHATTY_LINES} ]; do echo \"line $i\"; i=$((i+1)); \
         if [ $((i % 50)) -eq 0 ]; then sleep 0.2; fi; done; echo 'all done' >&2"
    );
    env.register(&taskdef(
        "chatty",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c", script],
             "logConfiguration": {"logDriver": "json-file",
                                  "options": {"max-size": "4k", "max-file": "100"}}}
        ]),
    ))?;
    let described = env
        .json(&["describe-task-definition", "chatty"])?
        .to_string();
    ensure!(
        described.contains(
            r#""logConfiguration":{"logDriver":"json-file","options":{"max-file":"100","max-size":"4096"}}"#
        ),
        "{described}"
    );
    let id = env.run_task("chatty")?;
    env.wait_status(&id, "RUNNING", Duration::from_secs(60))?;
    let follow = std::process::Command::new(bin("berthctl")?)
        .env_remove("BERTH_ENDPOINT")
        .env_remove("BERTH_CLUSTER")
        .args([
            "--endpoint",
            &env.scheduler.endpoint,
            "--cluster",
            &env.cluster,
        ])
        .args(["logs", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("start berthctl logs --follow")?;
    let started = Instant::now();
    let mut follow = Some(follow);
    let exited = poll(Duration::from_secs(90), || {
        let child = follow.as_mut().context("follower gone")?;
        Ok(child.try_wait()?.map(|status| status.code()))
    });
    let child = follow.take().context("follower gone")?;
    let output = match exited {
        Ok(_) => child.wait_with_output()?,
        Err(e) => {
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "logs --follow did not end when the container stopped: {e}; printed {} lines{}",
                line_numbers(&String::from_utf8_lossy(&out.stdout)).len(),
                env.logs()
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "logs --follow failed: {stderr}{}",
        env.logs()
    );
    ensure_complete("logs --follow", &stdout)?;
    ensure!(
        stderr.contains("all done"),
        "stderr line not on stderr: {stderr:?}"
    );
    ensure!(!stdout.contains("all done"), "stderr line on stdout");
    eprintln!(
        "    logs --follow: {CHATTY_LINES} lines in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The log was rotated, several times, and nothing is missing from the files either.
    let dir = env.opts.data_dir.join("logs").join(&id);
    let files = std::fs::read_dir(&dir)?.count();
    ensure!(
        files >= 5,
        "expected several rotated files in {}, found {files}",
        dir.display()
    );
    env.wait_status(&id, "STOPPED", Duration::from_secs(30))?;

    let all = env.ok(&["logs", &id])?;
    ensure_complete("logs", &all.stdout)?;
    ensure!(all.stderr.contains("all done"), "{:?}", all.stderr);

    let tail = env.ok(&["logs", "--tail", "5", &id])?;
    let last: Vec<usize> = (CHATTY_LINES - 4..CHATTY_LINES).collect();
    ensure!(
        line_numbers(&tail.stdout) == last,
        "--tail 5 printed {:?} (and stderr {:?})",
        tail.stdout,
        tail.stderr
    );
    let stamped = env.ok(&[
        "logs",
        "--tail",
        "1",
        "--timestamps",
        "--container",
        "app",
        &id,
    ])?;
    ensure!(
        stamped.stderr.starts_with("20") && stamped.stderr.contains("Z all done"),
        "--timestamps: {:?}",
        stamped.stderr
    );
    let recent = env.ok(&["logs", "--since", "10m", &id])?;
    ensure_complete("logs --since 10m", &recent.stdout)?;
    let future = env.ok(&["logs", "--since", "2099-01-01T00:00:00Z", &id])?;
    ensure!(
        future.stdout.is_empty() && future.stderr.is_empty(),
        "--since in the future: {future:?}"
    );

    let unknown = env.ctl(&["logs", "--container", "nope", &id])?;
    ensure!(
        unknown.status != 0
            && unknown.stderr.contains("no container nope")
            && unknown.stderr.contains("app"),
        "unknown container: {unknown:?}"
    );
    let missing = env.ctl(&["logs", "no-such-task"])?;
    ensure!(
        missing.status != 0 && missing.stderr.contains("no-such-task"),
        "unknown task: {missing:?}"
    );

    // With the agent gone, its host's logs are out of reach: said so, not hung.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    let gone = poll(Duration::from_secs(30), || {
        let out = env.ctl(&["logs", &id])?;
        Ok((out.status != 0 && out.stderr.contains("not connected")).then_some(out))
    })
    .context("logs of a disconnected instance's task did not say so")?;
    ensure!(gone.stdout.is_empty(), "{gone:?}");
    Ok(())
}

/// logConfiguration with another driver is refused at registration, by name and JSON path.
fn logs_unsupported_driver(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let def = taskdef(
        "awslogs",
        serde_json::json!([
            {"name": "app", "image": "busybox", "memory": 64,
             "logConfiguration": {"logDriver": "awslogs",
                                  "options": {"awslogs-group": "g"}}}
        ]),
    );
    let path = env.dir.join("taskdef-awslogs.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&def)?)?;
    let out = env.ctl(&[
        "register-task-definition",
        "--file",
        &path.to_string_lossy(),
    ])?;
    ensure!(out.status != 0, "registered: {out:?}");
    ensure!(
        out.stderr.contains(
            "containerDefinitions[0].logConfiguration.logDriver awslogs is not supported by Berth; supported: json-file"
        ) && out.stderr.contains("awslogs-group"),
        "{:?}",
        out.stderr
    );
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
        "secrets",
        "versionConsistency",
        "resourceRequirements",
        "firelensConfiguration",
        "credentialSpecs",
    ];
    let mut container = serde_json::json!({"name": "app", "image": "busybox", "memory": 64});
    for field in unsupported {
        container[field] = serde_json::json!(true);
    }
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

/// Shell checks that each print their index on stdout when they fail, then exit with their
/// number (from 10).
fn checks_script(checks: &[String]) -> String {
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} || {{ echo 'failed: {i}'; exit {}; }}", i + 10))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A container's whole json-file log, as text (the `log` members joined).
fn container_log(env: &Env, task: &str, container: &str) -> String {
    let path = env
        .opts
        .data_dir
        .join("logs")
        .join(task)
        .join(format!("{container}.log"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["log"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits for the task to stop and requires every named container to have exited 0, showing
/// its log otherwise.
fn expect_clean_exits(env: &Env, id: &str, names: &[&str]) -> Result<Value> {
    let t = env.wait_status(id, "STOPPED", Duration::from_secs(90))?;
    for name in names {
        let c = container(&t, name)?;
        ensure!(
            c["exitCode"] == 0,
            "container {name}'s checks: {t}\n{}",
            container_log(env, id, name)
        );
    }
    Ok(t)
}

/// ECS dockerSecurityOptions: no-new-privileges sets the process's NoNewPrivs (and =false
/// clears it), seccomp=unconfined leaves the container without a filter, and a profile read
/// from the host becomes its filter: mkdir fails with EPERM as the profile says, and nothing
/// else does.
fn security_options(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-security")?;
    let profile = env.dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::to_vec_pretty(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64",
                         "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "comment": "EPERM"},
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"caps": ["CAP_SYS_BOOT"]}}
            ]
        }))?,
    )?;
    let status = |field: &str, value: u32| {
        format!("grep -q '^{field}:[[:space:]]*{value}$' /proc/self/status")
    };
    let nnp = [status("NoNewPrivs", 1), status("Seccomp", 0)];
    let open = [
        status("NoNewPrivs", 0),
        status("Seccomp", 0),
        "mkdir /tmp/allowed".to_owned(),
    ];
    let filtered = [
        status("Seccomp", 2),
        "! mkdir /tmp/blocked 2>/dev/null".to_owned(),
        "mkdir /tmp/blocked 2>&1 | grep -q 'Operation not permitted'".to_owned(),
        "test ! -e /tmp/blocked".to_owned(),
        "touch /tmp/other-syscalls-work".to_owned(),
    ];
    let profile_opt = format!("seccomp={}", profile.display());
    env.register(&taskdef(
        "security",
        serde_json::json!([
            {"name": "nnp", "image": image, "memory": 64, "essential": false,
             "dockerSecurityOptions": ["no-new-privileges"],
             "command": ["sh", "-c", checks_script(&nnp)]},
            {"name": "open", "image": image, "memory": 64, "essential": false,
             "dockerSecurityOptions": ["no-new-privileges:false", "seccomp:unconfined"],
             "command": ["sh", "-c", checks_script(&open)]},
            {"name": "filtered", "image": image, "memory": 64,
             "dockerSecurityOptions": [profile_opt],
             "dependsOn": [{"containerName": "nnp", "condition": "SUCCESS"},
                           {"containerName": "open", "condition": "SUCCESS"}],
             "command": ["sh", "-c", checks_script(&filtered)]}
        ]),
    ))?;
    let described = env.json(&["describe-task-definition", "security"])?;
    let options = &described["taskDefinition"]["containerDefinitions"][1]["dockerSecurityOptions"];
    ensure!(
        *options == serde_json::json!(["no-new-privileges=false", "seccomp=unconfined"]),
        "describe shows the options in Docker's syntax: {described}"
    );
    let id = env.run_task("security")?;
    expect_clean_exits(&env, &id, &["nnp", "open", "filtered"])?;
    Ok(())
}

/// A profile the agent cannot use stops the task before it starts, with a reason that names the
/// file and says what is wrong in it; so does a profile that is not there.
fn bad_seccomp_profile(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-bad-seccomp")?;
    let profile = env.dir.join("typo.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]}"#,
    )?;
    for (family, path, want) in [
        (
            "bad-seccomp",
            profile.clone(),
            format!(
                "container app: seccomp profile {} is not usable: syscalls[0].action: \
                 `SCMP_ACT_DENY` is not a seccomp action",
                profile.display()
            ),
        ),
        (
            "missing-seccomp",
            env.dir.join("missing.json"),
            format!(
                "container app: cannot read seccomp profile {} on the host",
                env.dir.join("missing.json").display()
            ),
        ),
    ] {
        env.register(&taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "dockerSecurityOptions": [format!("seccomp={}", path.display())],
                 "command": ["true"]}
            ]),
        ))?;
        let id = env.run_task(family)?;
        let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
        ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        ensure!(
            reason.starts_with(&want),
            "{want:?} is not how {reason:?} starts"
        );
    }
    Ok(())
}

/// The host device a trial may map: one runc does not allow by default, so that only the
/// mapping's cgroup rule lets the container use it.
fn mappable_device() -> Result<(PathBuf, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for candidate in ["/dev/fuse", "/dev/loop-control"] {
        let path = PathBuf::from(candidate);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.file_type().is_char_device()
        {
            return Ok((path, meta.rdev()));
        }
    }
    bail!("this host has neither /dev/fuse nor /dev/loop-control to map into a container")
}

/// ECS linuxParameters.devices on an agent that allows one device: the container sees the node
/// with the host's numbers at its containerPath and may read it but not write it (permissions
/// read), while a device outside allowed_devices stops its task with a reason naming both.
fn devices(w: &World) -> Result<()> {
    let (device, rdev) = mappable_device()?;
    // glibc's major() and minor(), as busybox stat prints them in hex (%t:%T).
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    let mut env = Env::new(w, "10800")?;
    env.opts.extra_args = vec![format!("--allowed-devices={}", device.display())];
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    env.start_agent()?;
    env.wait_instance_connected()?;
    let image = hello(w, "e2e-devices")?;
    let checks = [
        "test -c /dev/mapped".to_owned(),
        format!("test \"$(stat -c '%t:%T' /dev/mapped)\" = '{major:x}:{minor:x}'"),
        "true < /dev/mapped".to_owned(),
        "! sh -c 'true > /dev/mapped' 2>/dev/null".to_owned(),
        "sh -c 'true > /dev/mapped' 2>&1 | grep -q 'Operation not permitted'".to_owned(),
    ];
    env.register(&taskdef(
        "devices",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "linuxParameters": {"devices": [
                 {"hostPath": device, "containerPath": "/dev/mapped", "permissions": ["read"]}]},
             "command": ["sh", "-c", checks_script(&checks)]}
        ]),
    ))?;
    let id = env.run_task("devices")?;
    expect_clean_exits(&env, &id, &["app"])?;

    env.register(&taskdef(
        "other-device",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "linuxParameters": {"devices": [{"hostPath": "/dev/zero"}]},
             "command": ["true"]}
        ]),
    ))?;
    let id = env.run_task("other-device")?;
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
    let want = format!(
        "container app: device /dev/zero is not among the devices this agent allows; \
         allowed_devices: {}",
        device.display()
    );
    ensure!(t["stoppedReason"] == want.as_str(), "{want:?}: {t}");
    Ok(())
}

/// ECS maxSwap and swappiness. Where the host's cgroups limit swap (cgroup v1 with swap
/// accounting, the case this suite is written for), the container's own memory cgroup has
/// memory.memsw.limit_in_bytes = memory + maxSwap and the swappiness asked for (60 when not
/// given). Where they cannot, the container runs anyway and its reason says what was not
/// applied, which is what this checks then.
fn swap(w: &World) -> Result<()> {
    let memsw = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");
    let v1_memory = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-swap")?;
    let mib = 1u64 << 20;
    let inside =
        |file: &str, value: u64| format!("test \"$(cat /sys/fs/cgroup/memory/{file})\" = {value}");
    let (swapping, no_swap) = if memsw.exists() {
        (
            vec![
                inside("memory.limit_in_bytes", 64 * mib),
                inside("memory.memsw.limit_in_bytes", 96 * mib),
                inside("memory.swappiness", 10),
            ],
            vec![
                inside("memory.memsw.limit_in_bytes", 64 * mib),
                inside("memory.swappiness", 60),
            ],
        )
    } else {
        (vec!["true".to_owned()], vec!["true".to_owned()])
    };
    env.register(&taskdef(
        "swap",
        serde_json::json!([
            {"name": "swapping", "image": image, "memory": 64, "essential": false,
             "linuxParameters": {"maxSwap": 32, "swappiness": 10},
             "command": ["sh", "-c", checks_script(&swapping)]},
            {"name": "noswap", "image": image, "memory": 64,
             "linuxParameters": {"maxSwap": 0},
             "dependsOn": [{"containerName": "swapping", "condition": "SUCCESS"}],
             "command": ["sh", "-c", checks_script(&no_swap)]}
        ]),
    ))?;
    let id = env.run_task("swap")?;
    if memsw.exists() {
        let t = expect_clean_exits(&env, &id, &["swapping", "noswap"])?;
        ensure!(
            container(&t, "swapping")?["reason"].is_null(),
            "nothing to note where swap is limited: {t}"
        );
    } else {
        eprintln!(
            "e2e swap: this kernel does not account swap per cgroup (no {}): checking that the \
             containers run and their reasons say maxSwap was not applied",
            memsw.display()
        );
        let t = expect_clean_exits(&env, &id, &["swapping", "noswap"])?;
        let reason = container(&t, "swapping")?["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            reason.starts_with("maxSwap 32 MiB not applied"),
            "the reason names what was not applied: {t}"
        );
        if !v1_memory {
            ensure!(reason.contains("swappiness 10 not applied"), "{t}");
        }
    }
    Ok(())
}

/// ECS pseudoTerminal gives the container a terminal (stdout and stdin are ttys, and its
/// output, stderr included, is logged as stdout); without it neither is a tty. ECS interactive
/// keeps stdin open: cat blocks until killed instead of reading end-of-file at once, which is
/// what a container without it sees.
fn terminal_and_stdin(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-terminal")?;
    // busybox timeout execs cat and kills it after 2 s: 137 when cat was still reading.
    let cat_status = "busybox timeout -s KILL 2 cat; echo \"cat: $?\"";
    env.register(&taskdef(
        "terminal",
        serde_json::json!([
            {"name": "tty", "image": image, "memory": 64, "essential": false,
             "pseudoTerminal": true,
             "command": ["sh", "-c",
                 "test -t 1 && echo tty; test -t 0 && echo stdin-tty; echo \"term=$TERM\"; echo to-stderr >&2"]},
            {"name": "notty", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", "test -t 1 || echo notty"]},
            {"name": "stdin", "image": image, "memory": 64, "essential": false,
             "interactive": true,
             "command": ["sh", "-c", cat_status]},
            {"name": "nostdin", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "tty", "condition": "COMPLETE"},
                           {"containerName": "notty", "condition": "COMPLETE"},
                           {"containerName": "stdin", "condition": "COMPLETE"}],
             "command": ["sh", "-c", cat_status]}
        ]),
    ))?;
    let id = env.run_task("terminal")?;
    expect_clean_exits(&env, &id, &["tty", "notty", "stdin", "nostdin"])?;
    let tty = container_log(&env, &id, "tty");
    ensure!(
        tty.contains("tty\r\n") && tty.contains("stdin-tty") && tty.contains("term=xterm"),
        "a terminal's output, with its carriage returns: {tty:?}"
    );
    let path = env.opts.data_dir.join("logs").join(&id).join("tty.log");
    let streams: Vec<String> = std::fs::read_to_string(&path)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["stream"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        !streams.is_empty() && streams.iter().all(|s| s == "stdout"),
        "one stream with a terminal: {streams:?}"
    );
    ensure!(
        container_log(&env, &id, "tty").contains("to-stderr"),
        "stderr goes to the terminal too"
    );
    ensure!(container_log(&env, &id, "notty") == "notty\n");
    let stdin = container_log(&env, &id, "stdin");
    // The shell also says "Killed", on stderr, so in either order.
    ensure!(
        stdin.contains("cat: 137\n"),
        "interactive: cat was still reading: {stdin:?}"
    );
    let nostdin = container_log(&env, &id, "nostdin");
    ensure!(
        nostdin == "cat: 0\n",
        "not interactive: cat read end-of-file: {nostdin:?}"
    );
    Ok(())
}

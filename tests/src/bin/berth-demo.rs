//! `make demo`: Berth end to end on this machine, narrated. Starts a private containerd and a
//! registry holding a demo image built from busybox, the scheduler and one agent (all under a
//! temp dir), runs a two-container task through berthctl, shows its state and cgroup limits,
//! stops it, and removes everything it made.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_tests::berth::{Agent, AgentOptions, CtlOutput, Scheduler, attachment_detail, berthctl};
use berth_tests::{Prereq, PrivateContainerd, PrivateRegistry, fixtures, poll_every};

fn main() -> ExitCode {
    if let Err(why) = Prereq::check() {
        eprintln!("berth-demo: {why}");
        return ExitCode::FAILURE;
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

/// Runs berthctl against the default cluster, echoing the command and its output.
fn ctl(config: &Path, args: &[&str]) -> Result<CtlOutput> {
    println!("$ berthctl {}", args.join(" "));
    let out = berthctl(config, "default", args)?;
    print!("{}", out.stdout);
    out.success(args)
}

fn show_cgroup(path: &str) {
    for (controller, file) in [
        ("cpu", "cpu.cfs_quota_us"),
        ("cpu", "cpu.shares"),
        ("memory", "memory.limit_in_bytes"),
        ("memory", "memory.soft_limit_in_bytes"),
    ] {
        let full = format!("/sys/fs/cgroup/{controller}{path}/{file}");
        if let Ok(v) = std::fs::read_to_string(&full) {
            println!("  {full} = {}", v.trim());
        }
    }
}

fn demo() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("berth-demo-").tempdir()?;
    let root = dir.path();
    step("starting a private containerd and a local registry");
    let containerd = PrivateContainerd::start(&root.join("containerd"))?;
    let registry = PrivateRegistry::start(&root.join("registry"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let image = rt.block_on(fixtures::hello(&registry.host(), "demo/busybox", "1.0"))?;
    println!(
        "  containerd on {}, registry on {}, image {}",
        containerd.socket().display(),
        registry.host(),
        image.reference
    );

    step("starting berth-scheduler and one berth-agent");
    let scheduler = Scheduler::start(root, None)?;
    let config = scheduler.ctl_config.clone();
    // The agent's bridge and task namespaces live in a namespace of their own.
    let net = berth_tests::netlab::AgentNetns::create(&root.join("net"))?;
    let opts = AgentOptions {
        cluster: "default".into(),
        endpoint: scheduler.endpoint.clone(),
        data_dir: root.join("agent"),
        containerd_socket: containerd.socket().to_path_buf(),
        namespace: "berth-demo".into(),
        insecure_registries: vec![registry.host()],
        cleanup_wait: "3".into(),
        host_netns: net.host.path().to_owned(),
        netns_dir: net.netns_dir.clone(),
        extra_args: Vec::new(),
        join: None,
    };
    println!(
        "  TLS with the cluster CA; berthctl uses the admin config {}",
        config.display()
    );
    ctl(&config, &["create-cluster", "default"])?;
    println!("$ berthctl create-join-token   (the token goes to the agent in BERTH_JOIN_TOKEN)");
    let join = scheduler.join_token("default")?;
    println!("  caPin: {}", join.ca_pin);
    let opts = AgentOptions {
        join: Some(join),
        ..opts
    };
    let agent = Agent::start(&opts, root.join("agent.log"))?;
    agent
        .daemon
        .wait_for_log("session established", Duration::from_secs(30))?;
    ctl(&config, &["instances"])?;

    step("registering a two-container awsvpc task definition");
    let def = serde_json::json!({
        "family": "demo",
        "networkMode": "awsvpc",
        "cpu": "512",
        "memory": "256",
        "containerDefinitions": [
            {"name": "web", "image": image.reference, "essential": true, "cpu": 256, "memory": 128,
             "memoryReservation": 64, "stopTimeout": 2,
             "command": ["sh", "-c",
                "echo \"metadata: $ECS_CONTAINER_METADATA_URI_V4\"; echo serving; while true; do echo hello from the web container | nc -l -p 8080; done"]},
            {"name": "init", "image": image.reference, "essential": false, "memory": 32,
             "command": ["sh", "-c", "echo hello from the init container; exit 0"]}
        ]
    });
    let file = root.join("demo-task.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&def)?)?;
    println!("{}", serde_json::to_string_pretty(&def)?);
    ctl(
        &config,
        &[
            "register-task-definition",
            "--file",
            &file.to_string_lossy(),
        ],
    )?;

    step("running it");
    let id = ctl(&config, &["run-task", "--task-definition", "demo"])?
        .task_ids()
        .into_iter()
        .next()
        .context("run-task printed no task id")?;
    ctl(&config, &["wait", "tasks-running", &id, "--timeout", "60"])?;
    ctl(&config, &["tasks"])?;
    let described = ctl(&config, &["-o", "json", "describe-tasks", &id])?.json()?;

    step("the task's own address answers, and the agent's endpoint answers inside the task");
    let address = attachment_detail(&described["tasks"][0], "privateIPv4Address")
        .context("the task has no address")?;
    let said = net.sh(&format!("/bin/busybox nc -w 2 {address} 8080 </dev/null"))?;
    println!("  {address}:8080 says: {}", said.trim());
    // Each container's metadata URL holds an unguessable ID: the container logged its own.
    let logs = ctl(&config, &["logs", &id, "--container", "web"])?.stdout;
    let url = logs
        .lines()
        .find_map(|l| l.strip_prefix("metadata: "))
        .context("the web container did not log its metadata url")?
        .trim()
        .to_owned();
    let path = url.trim_start_matches("http://169.254.170.2");
    let metadata = net.task_sh(
        &id,
        &format!(
            "{{ printf 'GET {path}/task HTTP/1.0\\r\\n\\r\\n'; sleep 1; }} | /bin/busybox nc 169.254.170.2 80"
        ),
    )?;
    let body = metadata.split("\r\n\r\n").nth(1).unwrap_or_default();
    println!("  {url}/task from inside the task:");
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => println!(
            "  {{\"Family\": {}, \"Revision\": {}, \"KnownStatus\": {}, \"Containers\": {} }}",
            v["Family"],
            v["Revision"],
            v["KnownStatus"],
            v["Containers"].as_array().map_or(0, Vec::len)
        ),
        Err(_) => println!("  {}", metadata.trim()),
    }

    step("cgroup limits containerd and runc applied");
    show_cgroup(&format!("/berth/{id}"));
    show_cgroup(&format!("/berth/{id}/web"));

    step("stopping the task: its network is released before it shows STOPPED, as on ECS");
    ctl(&config, &["stop-task", &id, "--reason", "demo finished"])?;
    ctl(&config, &["wait", "tasks-stopped", &id, "--timeout", "30"])?;
    ctl(&config, &["-o", "json", "describe-tasks", &id])?;
    ctl(&config, &["tasks"])?;
    println!(
        "  task network namespaces left: {}",
        net.task_namespaces()?.len()
    );

    step(
        "after the cleanup wait (3 s here) the agent removes the task's containers and cgroups \
         (resourcesReleasedAt; the task stays STOPPED)",
    );
    let released = poll_every(Duration::from_secs(30), Duration::from_millis(200), || {
        let v = berthctl(&config, "default", &["-o", "json", "describe-tasks", &id])?
            .json()
            .unwrap_or_default();
        Ok(v["tasks"][0]["resourcesReleasedAt"]
            .is_string()
            .then(|| v["tasks"][0].clone()))
    })
    .context("the host did not release the task within 30s")?;
    println!(
        "  lastStatus {}, resourcesReleasedAt {}",
        released["lastStatus"], released["resourcesReleasedAt"]
    );
    ctl(&config, &["tasks"])?;
    let left = containerd.ctr(&["-n", "berth-demo", "containers", "ls", "-q"])?;
    println!(
        "  containers left in containerd: {}",
        if left.trim().is_empty() {
            "none"
        } else {
            left.trim()
        }
    );
    println!(
        "  task cgroup /berth/{id} exists: {}",
        Path::new("/sys/fs/cgroup/memory/berth").join(&id).exists()
    );

    step("stopping everything and removing what the demo made");
    drop(agent);
    drop(scheduler);
    drop(containerd);
    drop(registry);
    println!("  done: {}", root.display());
    Ok(())
}

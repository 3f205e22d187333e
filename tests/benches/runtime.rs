//! `make bench`: berth-runtime against containerd's own client on the same containerd, in the
//! same run. Prints figures; asserts nothing.
//!
//! 1. start-to-exit of `sh -c true` (image cached): berth-runtime's create, start, wait and
//!    delete, beside `ctr run --rm`.
//! 2. pull of a three-layer image of about 30 MiB from a local registry into an emptied content
//!    store: berth-runtime beside `ctr images pull`.
//! 3. what the default seccomp profile costs a start, step by step: create (Berth's spec into
//!    containerd) and start (runc create, where `runc init` compiles and loads the filter, and
//!    runc start) of a `sleep` container, beside the same with `seccomp=unconfined`, in turn,
//!    and the size of the bundle's config.json each way; then `runc run` alone of that same
//!    config.json (a busybox rootfs, `true`), with and without its `linux.seccomp`, wall time
//!    and the CPU time of runc and `runc init`.
//! 4. (run right after 2) pull of a ten-layer image of about 200 MiB (layers downloaded in
//!    parallel, unpacked in order) into an emptied content store: berth-runtime beside `ctr
//!    images pull`, each with three parallel downloads; goal: Berth at most 0.8 times ctr.
//!    Beside the wall times, the CPU each pull cost the client (Berth: this process; ctr: its
//!    process), containerd and the registry, which the machine's load does not inflate.
//!
//! `cargo bench -p berth-tests --bench runtime -- SECTION` runs one section: `run` (1), `pull`
//! (2), `seccomp` (3) or `wide` (4).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_runtime::{ContainerSpec, RegistryAuth, Runtime, RuntimeConfig, Seccomp};
use berth_tests::bench::{percentile, report, stat_seconds, wants};
use berth_tests::{PrivateContainerd, PrivateRegistry, fixtures};

const RUNS: usize = 30;
const PULL_RUNS: usize = 7;
/// Runs of each client pulling the ten-layer image (each moves about 200 MiB).
const WIDE_PULL_RUNS: usize = 4;

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

fn run() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    let containerd = PrivateContainerd::start(&dir.path().join("containerd"))?;
    let registry = PrivateRegistry::start(&dir.path().join("registry"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(benches(&containerd, &registry, dir.path()));
    drop(rt);
    containerd.shutdown();
    registry.shutdown();
    result
}

async fn benches(
    containerd: &PrivateContainerd,
    registry: &PrivateRegistry,
    dir: &std::path::Path,
) -> Result<()> {
    let host = registry.host();
    let hello = fixtures::hello(&host, "bench-hello", "v1").await?;
    let big = fixtures::big(&host, "bench-big", "v1").await?;
    let ns = "bench";
    let mut config = RuntimeConfig::new(containerd.socket(), dir.join("data"));
    config.namespace = ns.to_owned();
    config.insecure_registries = vec![host.clone()];
    let runtime = Runtime::connect(config).await?;
    println!(
        "berth-runtime benchmarks (containerd {}, cgroup {})",
        runtime.containerd_version().await?,
        runtime.cgroup_version()
    );

    // 1. start-to-exit, image cached.
    runtime
        .pull_image(&hello.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let ctr = |args: &[&str]| -> Result<()> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        containerd.ctr(&full).map(|_| ())
    };
    ctr(&["images", "pull", "--plain-http", &hello.reference])?;
    if wants("seccomp") {
        let config = seccomp_steps(&runtime, containerd, ns, &hello.reference).await?;
        runc_steps(&config, dir)?;
    }
    if wants("run") {
        start_to_exit(&runtime, &hello.reference, &ctr).await?;
    }
    if wants("pull") {
        pull_small(&runtime, containerd, ns, &hello, &big).await?;
    }
    if wants("wide") {
        pull_wide(&runtime, containerd, registry, ns, &hello, &big).await?;
    }
    Ok(())
}

/// Section 1: start-to-exit of `sh -c true`, image cached, beside `ctr run --rm`.
async fn start_to_exit(
    runtime: &Runtime,
    image: &str,
    ctr: &dyn Fn(&[&str]) -> Result<()>,
) -> Result<()> {
    // Warm both paths once (shim binary and runc in the page cache).
    one_berth_run(runtime, image, "warm").await?;
    ctr(&["run", "--rm", image, "warm-ctr", "sh", "-c", "true"])?;
    let mut berth = Vec::with_capacity(RUNS);
    let mut ctr_runs = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        berth.push(one_berth_run(runtime, image, &format!("run{i}")).await?);
        let id = format!("ctr-run-{i}");
        let start = Instant::now();
        ctr(&["run", "--rm", image, &id, "sh", "-c", "true"])?;
        ctr_runs.push(start.elapsed());
    }
    report(
        "start-to-exit of sh -c true",
        "berth-runtime",
        &mut berth,
        "ctr run --rm",
        &mut ctr_runs,
    );
    Ok(())
}

/// Section 2: pull of ~30 MiB into an emptied content store, alternating the two clients. The
/// hello image shares the base layer: remove it too, so the store really is empty.
async fn pull_small(
    runtime: &Runtime,
    containerd: &PrivateContainerd,
    ns: &str,
    hello: &fixtures::ImageFixture,
    big: &fixtures::ImageFixture,
) -> Result<()> {
    let ctr = |args: &[&str]| -> Result<()> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        containerd.ctr(&full).map(|_| ())
    };
    empty_store(containerd, ns, hello)?;
    let size_mib = big.image.layers.iter().map(|l| l.size()).sum::<u64>() as f64 / (1 << 20) as f64;
    let mut berth_pulls = Vec::new();
    let mut ctr_pulls = Vec::new();
    for _ in 0..PULL_RUNS {
        empty_store(containerd, ns, big)?;
        let start = Instant::now();
        runtime
            .pull_image(&big.reference, &RegistryAuth::Anonymous, None)
            .await?;
        berth_pulls.push(start.elapsed());
        empty_store(containerd, ns, big)?;
        let start = Instant::now();
        ctr(&["images", "pull", "--plain-http", &big.reference])?;
        ctr_pulls.push(start.elapsed());
    }
    empty_store(containerd, ns, big)?;
    report(
        &format!("pull of a 3-layer {size_mib:.1} MiB image (gzip) into an empty store"),
        "berth-runtime",
        &mut berth_pulls,
        "ctr images pull",
        &mut ctr_pulls,
    );

    Ok(())
}

/// CPU seconds (user + system) so far of this process, of its waited-for children, of
/// containerd and of the registry.
fn cpu_now(containerd: &PrivateContainerd, registry: &PrivateRegistry) -> Result<[f64; 4]> {
    let [user, system, child_user, child_system] =
        stat_seconds("/proc/self/stat", [14, 15, 16, 17])?;
    let daemon = |pid: u32| -> Result<f64> {
        let [u, s] = stat_seconds(&format!("/proc/{pid}/stat"), [14, 15])?;
        Ok(u + s)
    };
    Ok([
        user + system,
        child_user + child_system,
        daemon(containerd.pid())?,
        daemon(registry.pid())?,
    ])
}

/// Section 4: pull of ten layers, ~200 MiB, into an emptied content store, alternating the two
/// clients (each goes first every other round), with the CPU each pull cost.
async fn pull_wide(
    runtime: &Runtime,
    containerd: &PrivateContainerd,
    registry: &PrivateRegistry,
    ns: &str,
    hello: &fixtures::ImageFixture,
    big: &fixtures::ImageFixture,
) -> Result<()> {
    let wide = fixtures::wide(&registry_host(&big.reference), "bench/wide", "v1").await?;
    empty_store(containerd, ns, hello)?;
    empty_store(containerd, ns, big)?;
    let size_mib =
        wide.image.layers.iter().map(|l| l.size()).sum::<u64>() as f64 / (1 << 20) as f64;
    let mut berth_pulls = Vec::new();
    let mut ctr_pulls = Vec::new();
    // [berth, ctr] x [client, containerd, registry], CPU seconds summed over the runs.
    let mut cpu = [[0.0f64; 3]; 2];
    for i in 0..WIDE_PULL_RUNS {
        for k in [i % 2, (i + 1) % 2] {
            empty_store(containerd, ns, &wide)?;
            let before = cpu_now(containerd, registry)?;
            let start = Instant::now();
            if k == 0 {
                runtime
                    .pull_image(&wide.reference, &RegistryAuth::Anonymous, None)
                    .await?;
                berth_pulls.push(start.elapsed());
            } else {
                containerd.ctr(&["-n", ns, "images", "pull", "--plain-http", &wide.reference])?;
                ctr_pulls.push(start.elapsed());
            }
            let after = cpu_now(containerd, registry)?;
            // Berth's client is this process; ctr's is the child just waited for.
            let client = if k == 0 { 0 } else { 1 };
            cpu[k][0] += after[client] - before[client];
            cpu[k][1] += after[2] - before[2];
            cpu[k][2] += after[3] - before[3];
        }
    }
    // The unpack alone, for Berth's floor: the layers are in the content store and only the
    // snapshots are removed, so the pull downloads nothing and costs what containerd's apply of
    // each layer on the last costs (one after another: a layer's snapshot needs its parent's
    // committed), which no client can overlap with anything else.
    runtime
        .pull_image(&wide.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let mut unpacks = Vec::new();
    for _ in 0..WIDE_PULL_RUNS {
        remove_snapshots(containerd, ns)?;
        let start = Instant::now();
        runtime
            .pull_image(&wide.reference, &RegistryAuth::Anonymous, None)
            .await?;
        unpacks.push(start.elapsed());
    }
    empty_store(containerd, ns, &wide)?;
    report(
        &format!(
            "pull of a {}-layer {size_mib:.1} MiB image (gzip) into an empty store (goal: berth <= 0.8x ctr)",
            wide.image.layers.len()
        ),
        "berth-runtime",
        &mut berth_pulls,
        "ctr images pull",
        &mut ctr_pulls,
    );
    unpacks.sort();
    let unpack = percentile(&unpacks, 0.5);
    println!(
        "  berth's floor: the same pull with every layer already downloaded (containerd's \
         apply of each layer, in order) p50 {:.1} ms: ratio {:.2} to ctr's p50",
        unpack.as_secs_f64() * 1000.0,
        unpack.as_secs_f64() / percentile(&ctr_pulls, 0.5).as_secs_f64()
    );
    let runs = WIDE_PULL_RUNS as f64;
    println!("  CPU per pull, ms        client   containerd   registry      total");
    for (name, c) in [("berth-runtime", cpu[0]), ("ctr images pull", cpu[1])] {
        println!(
            "  {name:<20} {:>9.0} {:>12.0} {:>10.0} {:>10.0}",
            c[0] * 1000.0 / runs,
            c[1] * 1000.0 / runs,
            c[2] * 1000.0 / runs,
            (c[0] + c[1] + c[2]) * 1000.0 / runs
        );
    }
    Ok(())
}

/// The registry host of a reference (`127.0.0.1:5000/app:1` → `127.0.0.1:5000`).
fn registry_host(reference: &str) -> String {
    reference.split('/').next().unwrap_or_default().to_owned()
}

/// Section 3: create and start of a `sleep` container under the default profile and with
/// `seccomp=unconfined`, one of each in turn (so drift in the machine's load charges both), each
/// step timed on its own. Returns the bundle config.json Berth made under the default profile.
async fn seccomp_steps(
    runtime: &Runtime,
    containerd: &PrivateContainerd,
    ns: &str,
    image: &str,
) -> Result<serde_json::Value> {
    let variants = [
        ("default profile", Seccomp::Default),
        ("seccomp=unconfined", Seccomp::Unconfined),
    ];
    // [variant] -> (create, start, config.json bytes)
    let mut steps: Vec<(Vec<Duration>, Vec<Duration>, u64)> = vec![Default::default(); 2];
    let mut default_config = serde_json::Value::Null;
    for i in 0..=RUNS {
        // Each round starts with the other variant, so neither always follows the other.
        for k in [i % 2, (i + 1) % 2] {
            let seccomp = &variants[k].1;
            let spec = ContainerSpec {
                task_id: format!("bench-seccomp-{k}-{i}"),
                name: "c".into(),
                image: image.into(),
                command: Some(vec!["sleep".into(), "3600".into()]),
                seccomp: seccomp.clone(),
                ..Default::default()
            };
            let start = Instant::now();
            let id = runtime.create_container(&spec).await?;
            let created = start.elapsed();
            let start = Instant::now();
            runtime.start_container(&id).await?;
            let started = start.elapsed();
            let config = containerd
                .state()
                .join("io.containerd.runtime.v2.task")
                .join(ns)
                .join(id.as_str())
                .join("config.json");
            let bytes = std::fs::read(&config)
                .with_context(|| format!("bundle config {}", config.display()))?;
            let size = bytes.len() as u64;
            if k == 0 {
                default_config = serde_json::from_slice(&bytes).context("bundle config.json")?;
            }
            // sleep as PID 1 ignores SIGTERM: kill it at once.
            runtime.stop_container(&id, Duration::ZERO).await?;
            runtime.delete_container(&id).await?;
            // The first round warms both paths and is not counted.
            if i > 0 {
                let (create, start, bytes) = &mut steps[k];
                create.push(created);
                start.push(started);
                *bytes = size;
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = |samples: &mut Vec<Duration>| {
        samples.sort();
        percentile(samples, 0.5)
    };
    println!("\nwhat the default seccomp profile costs a start ({RUNS} runs each, in turn; p50)");
    println!(
        "  {:<20} {:>10} {:>10} {:>10} {:>14}",
        "", "create", "start", "both", "config.json"
    );
    let mut sums = Vec::new();
    for ((name, _), (create, start, bytes)) in variants.iter().zip(steps.iter_mut()) {
        let (c, s) = (p50(create), p50(start));
        sums.push((c, s));
        println!(
            "  {name:<20} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>8} bytes",
            ms(c),
            ms(s),
            ms(c + s),
            bytes,
        );
    }
    let (default, unconfined) = (sums[0], sums[1]);
    println!(
        "  added by the profile: create {:+.1} ms, start {:+.1} ms",
        ms(default.0) - ms(unconfined.0),
        ms(default.1) - ms(unconfined.1)
    );
    Ok(default_config)
}

/// Section 3, runc alone: `runc run` of Berth's config.json for the default profile (its
/// process `true` in a rootfs of busybox alone, no cgroup path or limits, no bind mounts, no
/// namespace joined by path), beside the same config without `linux.seccomp`, in turn.
fn runc_steps(config: &serde_json::Value, dir: &std::path::Path) -> Result<()> {
    let base = dir.join("runc-seccomp");
    let rootfs = base.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(berth_tests::bins::BUSYBOX, rootfs.join("bin/busybox"))
        .with_context(|| format!("copy {}", berth_tests::bins::BUSYBOX))?;
    let mut plain = config.clone();
    plain["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    plain["process"]["args"] = serde_json::json!(["/bin/busybox", "true"]);
    plain["process"]["terminal"] = serde_json::json!(false);
    let linux = &mut plain["linux"];
    if let Some(linux) = linux.as_object_mut() {
        linux.remove("cgroupsPath");
        linux.remove("seccomp");
    }
    // Outside the task's cgroup, the container's CPU shares (2 for a container without a CPU
    // reservation) would starve it beside everything else at the top level.
    let devices = linux["resources"]["devices"].clone();
    linux["resources"] = serde_json::json!({ "devices": devices });
    if let Some(namespaces) = linux["namespaces"].as_array_mut() {
        namespaces.retain(|n| n.get("path").is_none());
    }
    if let Some(mounts) = plain["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "bind" && m["type"] != "none");
    }
    if let Some(object) = plain.as_object_mut() {
        object.remove("hooks");
    }
    let mut filtered = plain.clone();
    filtered["linux"]["seccomp"] = config["linux"]["seccomp"].clone();
    let bundles = [("default profile", filtered), ("no filter", plain)];
    for (k, (_, spec)) in bundles.iter().enumerate() {
        let bundle = base.join(format!("bundle-{k}"));
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(spec)?)?;
    }
    let state = base.join("state");
    let run = |k: usize, i: usize| -> Result<Duration> {
        let start = Instant::now();
        let status = std::process::Command::new(berth_tests::bins::RUNC)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(base.join(format!("bundle-{k}")))
            .arg(format!("seccomp-{k}-{i}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .context("run runc")?;
        let took = start.elapsed();
        if !status.success() {
            bail!("runc run of bundle {k} exited {status}");
        }
        Ok(took)
    };
    run(0, 0)?;
    run(1, 0)?;
    let mut walls: [Vec<Duration>; 2] = Default::default();
    let mut cpu = [Duration::ZERO; 2];
    for i in 1..=RUNS {
        for k in [i % 2, (i + 1) % 2] {
            let before = children_cpu()?;
            walls[k].push(run(k, i)?);
            cpu[k] += children_cpu()?.saturating_sub(before);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("\nrunc run of that config.json alone ({RUNS} runs each, in turn)");
    let mut p50s = Vec::new();
    for ((name, _), (samples, cpu)) in bundles.iter().zip(walls.iter_mut().zip(cpu)) {
        samples.sort();
        let p50 = percentile(samples, 0.5);
        p50s.push((p50, cpu / RUNS as u32));
        println!(
            "  {name:<20} wall p50 {:>7.1} ms   CPU (runc and runc init) {:>6.1} ms a run",
            ms(p50),
            ms(cpu / RUNS as u32)
        );
    }
    println!(
        "  added by the filter: wall {:+.1} ms, CPU {:+.1} ms",
        ms(p50s[0].0) - ms(p50s[1].0),
        ms(p50s[0].1) - ms(p50s[1].1)
    );
    Ok(())
}

/// The CPU time of this process's waited-for children and theirs (`/proc/self/stat` cutime
/// and cstime, in clock ticks of 10 ms; summed over many runs).
fn children_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 after the name.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("/proc/self/stat cutime or cstime")
    };
    Ok(Duration::from_millis((ticks(13)? + ticks(14)?) * 10))
}

async fn one_berth_run(runtime: &Runtime, image: &str, task: &str) -> Result<Duration> {
    let spec = ContainerSpec {
        task_id: format!("bench-{task}"),
        name: "c".into(),
        image: image.into(),
        command: Some(vec!["sh".into(), "-c".into(), "true".into()]),
        ..Default::default()
    };
    let start = Instant::now();
    let id = runtime.create_container(&spec).await?;
    runtime.start_container(&id).await?;
    let status = runtime.wait_container(&id).await?;
    runtime.delete_container(&id).await?;
    let took = start.elapsed();
    if status.code != 0 {
        bail!("sh -c true exited {}", status.code);
    }
    Ok(took)
}

/// Removes the image and collects synchronously, so its blobs and snapshots are gone.
/// Removes every snapshot of namespace `ns`, children before their parents.
fn remove_snapshots(containerd: &PrivateContainerd, ns: &str) -> Result<()> {
    for _ in 0..64 {
        let listed = containerd.ctr(&["-n", ns, "snapshots", "ls"])?;
        // KEY PARENT KIND, after a header line; a snapshot with no parent shows none.
        let rows: Vec<(String, Option<String>)> = listed
            .lines()
            .skip(1)
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                match fields.as_slice() {
                    [key, parent, _kind] => Some((key.to_string(), Some(parent.to_string()))),
                    [key, _kind] => Some((key.to_string(), None)),
                    _ => None,
                }
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let parents: Vec<&str> = rows.iter().filter_map(|(_, p)| p.as_deref()).collect();
        for (key, _) in rows.iter().filter(|(k, _)| !parents.contains(&k.as_str())) {
            containerd.ctr(&["-n", ns, "snapshots", "rm", key])?;
        }
    }
    bail!("the snapshots of namespace {ns} could not all be removed")
}

fn empty_store(
    containerd: &PrivateContainerd,
    ns: &str,
    image: &fixtures::ImageFixture,
) -> Result<()> {
    let _ = containerd.ctr(&["-n", ns, "images", "rm", "--sync", &image.reference]);
    let left = containerd.ctr(&["-n", ns, "content", "ls", "-q"])?;
    // Anything of the image left behind would flatter the next pull.
    if let Some(d) = image
        .layer_digests
        .iter()
        .find(|d| left.contains(d.as_str()))
    {
        bail!(
            "layer {d} still in the content store after removing {}",
            image.reference
        );
    }
    Ok(())
}

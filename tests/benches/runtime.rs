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
//!    and the size of the bundle's config.json each way.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_runtime::{ContainerSpec, RegistryAuth, Runtime, RuntimeConfig, Seccomp};
use berth_tests::bench::{percentile, report};
use berth_tests::{PrivateContainerd, PrivateRegistry, fixtures};

const RUNS: usize = 30;
const PULL_RUNS: usize = 7;

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
    seccomp_steps(&runtime, containerd, ns, &hello.reference).await?;
    // Warm both paths once (shim binary and runc in the page cache).
    one_berth_run(&runtime, &hello.reference, "warm").await?;
    ctr(&[
        "run",
        "--rm",
        &hello.reference,
        "warm-ctr",
        "sh",
        "-c",
        "true",
    ])?;
    let mut berth = Vec::with_capacity(RUNS);
    let mut ctr_runs = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        berth.push(one_berth_run(&runtime, &hello.reference, &format!("run{i}")).await?);
        let id = format!("ctr-run-{i}");
        let start = Instant::now();
        ctr(&["run", "--rm", &hello.reference, &id, "sh", "-c", "true"])?;
        ctr_runs.push(start.elapsed());
    }
    report(
        "start-to-exit of sh -c true",
        "berth-runtime",
        &mut berth,
        "ctr run --rm",
        &mut ctr_runs,
    );

    // 2. pull of ~30 MiB into an emptied content store, alternating the two clients. The
    //    hello image shares the base layer: remove it too, so the store really is empty.
    empty_store(containerd, ns, &hello)?;
    let size_mib = big.image.layers.iter().map(|l| l.size()).sum::<u64>() as f64 / (1 << 20) as f64;
    let mut berth_pulls = Vec::new();
    let mut ctr_pulls = Vec::new();
    for _ in 0..PULL_RUNS {
        empty_store(containerd, ns, &big)?;
        let start = Instant::now();
        runtime
            .pull_image(&big.reference, &RegistryAuth::Anonymous, None)
            .await?;
        berth_pulls.push(start.elapsed());
        empty_store(containerd, ns, &big)?;
        let start = Instant::now();
        ctr(&["images", "pull", "--plain-http", &big.reference])?;
        ctr_pulls.push(start.elapsed());
    }
    empty_store(containerd, ns, &big)?;
    report(
        &format!("pull of a 3-layer {size_mib:.1} MiB image (gzip) into an empty store"),
        "berth-runtime",
        &mut berth_pulls,
        "ctr images pull",
        &mut ctr_pulls,
    );
    Ok(())
}

/// Section 3: create and start of a `sleep` container under the default profile and with
/// `seccomp=unconfined`, one of each in turn (so drift in the machine's load charges both), each
/// step timed on its own.
async fn seccomp_steps(
    runtime: &Runtime,
    containerd: &PrivateContainerd,
    ns: &str,
    image: &str,
) -> Result<()> {
    let variants = [
        ("default profile", Seccomp::Default),
        ("seccomp=unconfined", Seccomp::Unconfined),
    ];
    // [variant] -> (create, start, config.json bytes)
    let mut steps: Vec<(Vec<Duration>, Vec<Duration>, u64)> = vec![Default::default(); 2];
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
            let size = std::fs::metadata(&config)
                .with_context(|| format!("bundle config {}", config.display()))?
                .len();
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
    Ok(())
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

//! `make bench`: the image collector's decision over 500 images, in ms. First the pure
//! decision (`berth_agent::image_gc::decide`) over a synthetic inventory of 500 images in 50
//! repositories with the disk past its high mark, many times; then one real pass as the agent's
//! collector makes it: 500 image records in a private containerd (one pulled image, tagged 499
//! more times with `ctr`), listed with their sizes through berth-runtime, and decided. Prints
//! figures; asserts nothing; removes nothing.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use berth_agent::image_gc::{Candidate, Disk, Policy, decide};
use berth_runtime::{RegistryAuth, Runtime, RuntimeConfig};
use berth_tests::bench::percentile;
use berth_tests::{PrivateContainerd, PrivateRegistry, fixtures};

const IMAGES: usize = 500;
const REPOSITORIES: usize = 50;
const DECISIONS: usize = 200;
const REAL_PASSES: usize = 7;

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

/// The agent's defaults, but for a cap that lets a pass decide on every image.
fn policy(max_removals: u32) -> Policy {
    Policy {
        minimum_age: Duration::from_secs(3600),
        keep_newest: 2,
        max_removals,
        high_percent: 85,
        low_percent: 80,
    }
}

fn run() -> Result<()> {
    synthetic();
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-gc-")
        .tempdir()?;
    let containerd = PrivateContainerd::start(&dir.path().join("containerd"))?;
    let registry = PrivateRegistry::start(&dir.path().join("registry"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(real(&containerd, &registry, dir.path()));
    drop(rt);
    containerd.shutdown();
    registry.shutdown();
    result
}

/// 500 images, ten per repository, each last used a different number of minutes ago; one in
/// ten held by a task.
fn inventory(now: SystemTime) -> Vec<Candidate> {
    (0..IMAGES)
        .map(|i| Candidate {
            name: format!(
                "registry.example:5000/team/app{}:v{}",
                i % REPOSITORIES,
                i / REPOSITORIES
            ),
            size: 20 << 20,
            last_used: now - Duration::from_secs(60 * (7 * i as u64 % 4000)),
            in_use: i % 10 == 0,
        })
        .collect()
}

fn print(what: &str, times: &mut [Duration], removals: usize) {
    times.sort();
    println!(
        "{what}: median {:.3} ms, p95 {:.3} ms over {} runs ({removals} removals decided)",
        percentile(times, 0.5).as_secs_f64() * 1e3,
        percentile(times, 0.95).as_secs_f64() * 1e3,
        times.len()
    );
}

fn synthetic() {
    let now = SystemTime::now();
    let images = inventory(now);
    // 90% of 20 GiB used: pressure removals, then age ones.
    let disk = Some(Disk {
        used: 18 << 30,
        total: 20 << 30,
    });
    println!("image collector decision over {IMAGES} images in {REPOSITORIES} repositories");
    for (label, cap, disk) in [
        ("decide, cap 5, disk at 90%", 5, disk),
        ("decide, no cap, disk at 90%", IMAGES as u32, disk),
        ("decide, no cap, no disk pressure", IMAGES as u32, None),
    ] {
        let mut times = Vec::with_capacity(DECISIONS);
        let mut removals = 0;
        for _ in 0..DECISIONS {
            let started = Instant::now();
            let out = decide(&images, policy(cap), disk, now);
            times.push(started.elapsed());
            removals = out.len();
        }
        print(label, &mut times, removals);
    }
}

async fn real(
    containerd: &PrivateContainerd,
    registry: &PrivateRegistry,
    dir: &std::path::Path,
) -> Result<()> {
    let host = registry.host();
    let image = fixtures::layered(&host, "bench-gc", "v1").await?;
    let ns = "bench-gc";
    let mut config = RuntimeConfig::new(containerd.socket(), dir.join("data"));
    config.namespace = ns.to_owned();
    config.insecure_registries = vec![host.clone()];
    let runtime = Runtime::connect(config).await?;
    runtime
        .pull_image(&image.reference, &RegistryAuth::Anonymous, None)
        .await?;
    for i in 1..IMAGES {
        let tag = format!("{host}/bench-gc{}:v{}", i % REPOSITORIES, i);
        containerd
            .ctr(&["-n", ns, "images", "tag", &image.reference, &tag])
            .with_context(|| format!("tag {tag}"))?;
    }
    let mut times = Vec::with_capacity(REAL_PASSES);
    let mut removals = 0;
    for _ in 0..REAL_PASSES {
        let started = Instant::now();
        let listed = runtime.list_images().await?;
        let now = SystemTime::now();
        let candidates: Vec<Candidate> = listed
            .iter()
            .enumerate()
            .map(|(i, img)| Candidate {
                name: img.name.clone(),
                size: img.size,
                last_used: now - Duration::from_secs(3600 * (1 + i as u64 % 48)),
                in_use: false,
            })
            .collect();
        let out = decide(&candidates, policy(5), None, now);
        times.push(started.elapsed());
        anyhow::ensure!(listed.len() == IMAGES, "listed {} images", listed.len());
        removals = out.len();
    }
    print(
        "real pass: list 500 images in containerd with sizes, then decide",
        &mut times,
        removals,
    );
    Ok(())
}

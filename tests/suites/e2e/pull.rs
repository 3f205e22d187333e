//! Pulls through the real binaries into a containerd that other clients use too, with
//! containerd's default "shared" content policy as most hosts run it: each content-store
//! state of issue 12, then `berthctl run-task`; the task reaches RUNNING and the agent's
//! namespace holds the image with the labels and leases of a clean pull.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::fixtures::{self, ImageFixture};
use berth_tests::pulled::{Pulled, expect_clean_pull};
use berth_tests::{ContentSharing, PrivateContainerd, World};
use serde_json::json;

use super::{Env, taskdef};

/// A containerd of the trial's own with the default content sharing policy, and an agent on
/// it. The daemon is declared first so it outlives the agent.
fn env_on_shared_containerd(w: &World) -> Result<(PrivateContainerd, Env)> {
    let containerd =
        PrivateContainerd::start_with(&w.scratch_dir("shared")?.join("c"), ContentSharing::Shared)?;
    let mut env = Env::new(w, "10800")?;
    env.opts.containerd_socket = containerd.socket().to_path_buf();
    Ok((containerd, env))
}

/// Starts the agent, runs a task of `containers` and waits for RUNNING; the task ID.
fn run(env: &mut Env, family: &str, containers: serde_json::Value) -> Result<String> {
    env.connect()?;
    let (id, _) = env.run_until(
        &taskdef(family, containers),
        "RUNNING",
        Duration::from_secs(90),
    )?;
    Ok(id)
}

/// The agent is still the process it was, and never said it overflowed or panicked.
fn agent_healthy(env: &Env) -> Result<()> {
    let agent = env.agent()?;
    let pid = agent.daemon.pid().context("the agent exited")?;
    ensure!(berth_tests::pid_alive(pid), "the agent died{}", env.logs());
    let log = agent.daemon.log();
    ensure!(
        !log.contains("overflowed its stack") && !log.contains("panicked"),
        "the agent log tells of a crash{}",
        env.logs()
    );
    Ok(())
}

/// The reproduction: the task's image pulled into another namespace of the same
/// containerd with `ctr`, then `berthctl run-task`. Before the fix the agent died of a stack
/// overflow at the first assignment. Now nothing is downloaded again, the task runs, and the
/// other namespace keeps its image and snapshots.
pub(super) fn image_pulled_into_another_namespace(w: &World) -> Result<()> {
    let img = w.block_on(fixtures::layered(
        &w.registry().host(),
        "e2e-pull-other",
        "v1",
    ))?;
    let (containerd, mut env) = env_on_shared_containerd(w)?;
    containerd.ctr(&[
        "-n",
        "other",
        "images",
        "pull",
        "--plain-http",
        &img.reference,
    ])?;
    let before = blob_gets(w, &img)?;
    let id = run(
        &mut env,
        "shared-other",
        json!([{"name": "app", "image": img.reference, "memory": 64, "stopTimeout": 1,
                "command": ["sh", "-c", "cat /data/overwritten.txt; sleep 300"]}]),
    )?;
    agent_healthy(&env)?;
    ensure!(
        blob_gets(w, &img)? == before,
        "the agent downloaded blobs another namespace holds"
    );
    expect_clean_pull(&containerd, &env.opts.namespace, Pulled::Image(&img))?;
    let others = containerd.ctr(&["-n", "other", "images", "ls", "-q"])?;
    ensure!(
        others.contains(&img.reference),
        "other lost its image: {others}"
    );
    env.stop_task(&id, Duration::from_secs(20))?;
    Ok(())
}

/// Every other state in one task of two containers, each with an image of its own: for the
/// first, its middle layer committed in another namespace by a client that fetched it, its
/// first layer left half written in the agent's namespace under the name the agent (and
/// containerd's client) gives it, and its last layer half written there by another client
/// under a name of its own; for the second, its manifest committed in another namespace
/// without its config. The task runs; the registry sent only the missing half of the first
/// layer; the other client's ingest is left as it was.
pub(super) fn partial_content_of_other_clients(w: &World) -> Result<()> {
    let host = w.registry().host();
    let layered = w.block_on(fixtures::layered(&host, "e2e-pull-partial", "v1"))?;
    let hello = w.block_on(fixtures::hello(&host, "e2e-pull-manifest-only", "v1"))?;
    let (containerd, mut env) = env_on_shared_containerd(w)?;
    let ns = env.opts.namespace.clone();
    let layers = &layered.image.layers;
    let middle = &layers[1];
    containerd.commit_blob(
        "other",
        &format!("fetched-{}", middle.digest),
        &middle.digest,
        &middle.blob,
    )?;
    let first = &layers[0];
    let half = first.blob.len() / 2;
    containerd.leave_ingest(
        &ns,
        &format!("layer-{}", first.digest),
        first.blob.len(),
        &first.digest,
        &first.blob[..half],
    )?;
    let last = &layers[2];
    let foreign = format!("other-client-{}", last.digest);
    let foreign_half = last.blob.len() / 2;
    containerd.leave_ingest(
        &ns,
        &foreign,
        last.blob.len(),
        &last.digest,
        &last.blob[..foreign_half],
    )?;
    let manifest = &hello.image.manifest;
    containerd.commit_blob(
        "other",
        &format!("fetched-{}", manifest.digest),
        &manifest.digest,
        &manifest.bytes,
    )?;
    let id = run(
        &mut env,
        "partial",
        json!([
            {"name": "layered", "image": layered.reference, "memory": 64, "stopTimeout": 1,
             "command": ["sleep", "300"]},
            {"name": "hello", "image": hello.reference, "memory": 64, "stopTimeout": 1,
             "command": ["sleep", "300"]}
        ]),
    )?;
    agent_healthy(&env)?;
    let registry = w.registry();
    let sent = registry.blob_bytes_sent(&layered.repo, &first.digest)?;
    ensure!(
        sent == (first.blob.len() - half) as u64,
        "the registry sent {sent} bytes of the first layer, not the {} missing",
        first.blob.len() - half
    );
    ensure!(registry.blob_get_count(&layered.repo, &middle.digest)? == 0);
    ensure!(
        containerd.active_ingests(&ns)? == [foreign.clone()],
        "ingests: {:?}",
        containerd.active_ingests(&ns)?
    );
    ensure!(containerd.ingest_bytes(&ns, &foreign)? == Some(foreign_half as u64));
    expect_clean_pull(&containerd, &ns, Pulled::Image(&layered))?;
    expect_clean_pull(&containerd, &ns, Pulled::Image(&hello))?;
    env.stop_task(&id, Duration::from_secs(20))?;
    Ok(())
}

/// Successful GETs of each of the image's blobs so far.
fn blob_gets(w: &World, img: &ImageFixture) -> Result<Vec<usize>> {
    img.layer_digests
        .iter()
        .chain([&img.config_digest])
        .map(|d| w.registry().blob_get_count(&img.repo, d))
        .collect()
}

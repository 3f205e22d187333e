//! Image management from berthctl (issue 21) through the real binaries: `list-images` shows an
//! instance's images with their size, last use and the tasks holding them; `collect-images`
//! runs the instance's collector now and says what it removed and the bytes freed; an
//! instance whose agent is not connected gets a clear error. And the race of the issue: an
//! image assigned to a task while a collection has chosen it (the collection held between its
//! choice and its removals by the agent's test gate) is kept.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::{World, fixtures, poll};
use serde_json::{Value, json};

use super::{Env, taskdef};

const WITHIN: Duration = Duration::from_secs(60);

/// The collector's rules for these trials: anything unused may go at once, and it runs only
/// when asked.
const COLLECTOR_FLAGS: [&str; 3] = [
    "--image-cleanup-interval=off",
    "--image-minimum-age=0",
    "--image-keep-newest=0",
];

fn sleeper(family: &str, image: &str) -> Value {
    taskdef(
        family,
        json!([{"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
                "command": ["sleep", "600"]}]),
    )
}

/// `list-images --instance` as JSON: the images by name.
fn list(env: &Env, instance: &str) -> Result<Vec<Value>> {
    Ok(
        env.json(&["list-images", "--instance", instance])?["images"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

fn find<'a>(images: &'a [Value], name: &str) -> Option<&'a Value> {
    images.iter().find(|i| i["name"] == name)
}

fn instance_id(env: &Env) -> Result<String> {
    env.wait_instance_connected()?["containerInstanceId"]
        .as_str()
        .map(str::to_owned)
        .context("the instance has no ID")
}

pub(super) fn list_and_collect_from_berthctl(w: &World) -> Result<()> {
    let host = w.registry().host();
    let used = w.block_on(fixtures::hello(&host, &w.unique("img-used"), "1"))?;
    let unused = w.block_on(fixtures::layered(&host, &w.unique("img-unused"), "1"))?;
    let mut env = Env::new(w, "10800")?;
    env.opts
        .extra_args
        .extend(COLLECTOR_FLAGS.map(str::to_owned));
    env.connect()?;
    let instance = instance_id(&env)?;

    let (running, _) = env.start_task(&sleeper("img-running", &used.reference))?;
    let (stopped, _) = env.start_task(&sleeper("img-stopped", &unused.reference))?;
    env.stop_task(&stopped, WITHIN)?;

    // Both images, with their sizes and last uses; the running task holds its own.
    let images = list(&env, &instance)?;
    let (Some(held), Some(free)) = (
        find(&images, &used.reference),
        find(&images, &unused.reference),
    ) else {
        bail!("list-images does not show both images: {images:?}");
    };
    ensure!(
        held["taskIds"] == json!([running]) && held["size"].as_u64().unwrap_or(0) > 0,
        "the running task's image: {held}"
    );
    ensure!(
        free["taskIds"] == json!([])
            && free["lastUsedAt"].is_string()
            && free["digest"] == unused.digest.as_str()
            && free["size"].as_u64().unwrap_or(0) > 0,
        "the stopped task's image: {free}"
    );
    let table = env.ok(&["list-images", "--instance", &instance])?.stdout;
    ensure!(
        table.contains("IN USE BY") && table.contains(&running),
        "list-images' table: {table}"
    );

    // A collection now: the unused image goes, the held one stays.
    let collected = env.json(&["collect-images", "--instance", &instance])?;
    let removed = collected["removed"].as_array().cloned().unwrap_or_default();
    ensure!(
        removed.len() == 1
            && removed[0]["name"] == unused.reference.as_str()
            && removed[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("unused for"))
            && collected["bytesFreed"] == removed[0]["size"]
            && collected["bytesFreed"].as_u64().unwrap_or(0) > 0,
        "collect-images: {collected}{}",
        env.logs()
    );
    let images = list(&env, &instance)?;
    ensure!(
        find(&images, &unused.reference).is_none() && find(&images, &used.reference).is_some(),
        "after the collection: {images:?}"
    );
    let text = env.ok(&["collect-images", "--instance", &instance])?.stdout;
    ensure!(
        text.contains("removed 0 images, freed 0 B"),
        "a collection with nothing to do: {text}"
    );

    // Not this cluster's instance, no instance, or an agent that is not connected: clear errors.
    let unknown = env.ctl(&["list-images", "--instance", "no-such-instance"])?;
    ensure!(
        unknown.status != 0 && unknown.stderr.contains("unknown container instance"),
        "an unknown instance: {unknown:?}"
    );
    env.agent = None;
    let refused = poll(WITHIN, || {
        let out = env.ctl(&["collect-images", "--instance", &instance])?;
        Ok((out.status != 0).then_some(out))
    })?;
    ensure!(
        refused.stderr.contains("is not connected"),
        "collect-images on a disconnected instance: {refused:?}"
    );
    Ok(())
}

/// Waits until the collection held at the gate in `gate` has chosen; the names it chose.
fn wait_decided(env: &Env, gate: &Path) -> Result<Vec<String>> {
    poll(WITHIN, || {
        Ok(std::fs::read_to_string(gate.join("decided"))
            .ok()
            .map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>()))
    })
    .with_context(|| format!("the collection never reached its gate{}", env.logs()))
}

pub(super) fn an_image_assigned_during_a_collection_is_kept(w: &World) -> Result<()> {
    let host = w.registry().host();
    let image = w.block_on(fixtures::hello(&host, &w.unique("img-race"), "1"))?;
    let other = w.block_on(fixtures::layered(&host, &w.unique("img-race-other"), "1"))?;
    let mut env = Env::new(w, "10800")?;
    let gate = env.dir.join("collection-gate");
    std::fs::create_dir_all(&gate).context("create the gate directory")?;
    env.opts
        .extra_args
        .extend(COLLECTOR_FLAGS.map(str::to_owned));
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let gate_env = gate.to_string_lossy().into_owned();
    env.start_agent_with_env(&[("BERTH_E2E_IMAGE_GATE", &gate_env)])?;
    let instance = instance_id(&env)?;

    // Both images used once, then unused: a collection chooses both.
    for (family, reference) in [("race-a", &image.reference), ("race-b", &other.reference)] {
        let (id, _) = env.start_task(&sleeper(family, reference))?;
        env.stop_task(&id, WITHIN)?;
    }
    let collect = berth_tests::berth::ctl_command(&env.scheduler.ctl_config)?
        .args(["--cluster", &env.cluster, "-o", "json", "collect-images"])
        .args(["--instance", &instance])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start berthctl collect-images")?;
    let chosen = wait_decided(&env, &gate)?;
    ensure!(
        chosen.contains(&image.reference) && chosen.contains(&other.reference),
        "the collection chose {chosen:?}"
    );

    // Between the choice and the removals, a task is assigned the image and starts.
    let (racer, _) = env.start_task(&sleeper("race-a", &image.reference))?;
    std::fs::write(gate.join("go"), b"").context("open the gate")?;
    let out = collect
        .wait_with_output()
        .context("wait for collect-images")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "collect-images failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        env.logs()
    );
    let collected: Value = serde_json::from_str(&stdout).context("collect-images' JSON")?;
    let names = |key: &str| -> Vec<String> {
        collected[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    ensure!(
        names("removed") == [other.reference.clone()],
        "only the other image goes: {collected}"
    );
    ensure!(
        names("kept") == [image.reference.clone()]
            && collected["kept"][0]["reason"] == "a task needs it",
        "the assigned image is kept, saying why: {collected}"
    );
    let images = list(&env, &instance)?;
    ensure!(
        find(&images, &image.reference).is_some_and(|i| i["taskIds"] == json!([racer])),
        "the assigned image is still there, held by its task: {images:?}"
    );
    let task = env.task(&racer)?;
    ensure!(task["lastStatus"] == "RUNNING", "the task: {task}");
    Ok(())
}

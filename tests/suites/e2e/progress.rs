//! Pull progress (issue 21) through the real binaries: a task whose image is large (several
//! layers of random bytes, unique to the run, so no content store has any of it) shows
//! `pullProgress` in describe-tasks while it is PENDING, as the agent reports it on its metrics
//! stream, and `berthctl run-task --wait`, its standard output not a terminal, prints plain
//! progress lines on standard error until the task is RUNNING while its standard output keeps
//! only the task ID.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use berth_tests::image::{BuiltImage, Compression, ImageConfig, Layer, ManifestFormat, Platform};
use rand::RngCore as _;
use serde_json::{Value, json};

use super::{Env, RUNNING_WITHIN, taskdef};

/// Layers of random bytes in the trial's image, and the bytes of each: enough that the pull
/// lasts past a progress report or two on any machine, little enough to push in seconds.
const LAYERS: usize = 8;
const LAYER_BYTES: usize = 16 * 1024 * 1024;

/// The trial's image: busybox, then [`LAYERS`] uncompressed layers of fresh random bytes.
fn big_image() -> Result<BuiltImage> {
    let mut layers = vec![Layer::busybox_base(Compression::Gzip)?.build()?];
    let mut rng = rand::rng();
    for n in 0..LAYERS {
        let mut data = vec![0u8; LAYER_BYTES];
        rng.fill_bytes(&mut data);
        layers.push(
            Layer::new(Compression::None)
                .file(&format!("/big/{n}.bin"), data, 0o644)
                .build()?,
        );
    }
    BuiltImage::from_layers(
        layers,
        &ImageConfig {
            platform: Platform::linux("amd64", None),
            cmd: Some(vec!["sh".into()]),
            ..ImageConfig::default()
        },
        ManifestFormat::Oci,
    )
}

/// The pull progress a described PENDING task shows with the image's size known, if any.
fn pending_progress(task: &Value) -> Option<Value> {
    if task["lastStatus"] != "PENDING" {
        return None;
    }
    let p = task["pullProgress"].get(0)?;
    (p["bytesTotal"].as_u64()? > 0).then(|| p.clone())
}

pub(super) fn progress_shows_while_pending_and_run_task_wait_prints_it(w: &World) -> Result<()> {
    let repo = w.unique("progress");
    let image = big_image()?;
    let pushed = w.block_on(berth_tests::push_image(
        &w.registry().host(),
        &repo,
        "1",
        &image,
    ));
    pushed.context("push the trial's image")?;
    let reference = format!("{}/{repo}:1", w.registry().host());
    let env = Env::with_agent(w, "10800")?;
    let def = taskdef(
        "progress",
        json!([{"name": "app", "image": reference, "memory": 32, "stopTimeout": 1,
                "command": ["sleep", "600"]}]),
    );
    env.register(&def)?;

    // run-task --wait with its output on pipes: not a terminal.
    let mut child = berth_tests::berth::ctl_command(&env.scheduler.ctl_config)?
        .args([
            "--cluster",
            &env.cluster,
            "run-task",
            "--task-definition",
            "progress",
        ])
        .args(["--wait", "--timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start berthctl run-task --wait")?;
    let mut stdout = BufReader::new(child.stdout.take().context("run-task's stdout")?);
    let mut stderr = child.stderr.take().context("run-task's stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut id = String::new();
    stdout
        .read_line(&mut id)
        .context("read the task ID run-task printed")?;
    let id = id.trim().to_owned();
    ensure!(!id.is_empty(), "run-task printed no task ID{}", env.logs());

    // describe-tasks shows the pull's progress while the task is PENDING.
    let seen = berth_tests::poll_every(RUNNING_WITHIN, Duration::from_millis(50), || {
        let task = env.task(&id)?;
        if let Some(progress) = pending_progress(&task) {
            return Ok(Some(Ok(progress)));
        }
        // Past PENDING without a reading: the trial failed (not a poll to go on with).
        let status = task["lastStatus"].as_str().unwrap_or_default().to_owned();
        Ok(matches!(
            status.as_str(),
            "PULLED" | "CREATED" | "RUNNING" | "STOPPED"
        )
        .then(|| Err(task)))
    })
    .with_context(|| format!("task {id} never got past PENDING{}", env.logs()))?;
    let progress = match seen {
        Ok(progress) => progress,
        Err(task) => anyhow::bail!(
            "task {id} left PENDING without describe-tasks showing its pull progress: {task}{}",
            env.logs()
        ),
    };
    ensure!(
        progress["image"] == reference.as_str(),
        "the progress names another image: {progress}"
    );
    let total = progress["bytesTotal"].as_u64().unwrap_or_default();
    let layers_total = progress["layersTotal"].as_u64().unwrap_or_default();
    ensure!(
        total >= (LAYERS * LAYER_BYTES) as u64 && layers_total == LAYERS as u64 + 1,
        "the image's size or layer count is wrong: {progress}"
    );
    ensure!(
        progress["bytesDownloaded"].as_u64().unwrap_or(u64::MAX) <= total
            && progress["layersDownloaded"].as_u64().unwrap_or(u64::MAX) <= layers_total,
        "more done than there is: {progress}"
    );

    let status = child.wait().context("wait for run-task --wait")?;
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let lines = stderr_reader.join().unwrap_or_default();
    ensure!(
        status.success(),
        "run-task --wait failed ({status}): {lines}{}",
        env.logs()
    );
    ensure!(
        rest.trim().is_empty(),
        "run-task's standard output holds more than the task ID: {rest:?}"
    );
    ensure!(
        lines.contains(&format!("{id} PENDING: pulled "))
            && lines.contains(&format!("of {} layers", LAYERS + 1)),
        "run-task --wait printed no progress line: {lines}"
    );
    ensure!(
        lines.lines().last() == Some(format!("{id} RUNNING").as_str()),
        "run-task --wait did not end on the RUNNING line: {lines}"
    );
    let running = env.task(&id)?;
    ensure!(
        running["pullProgress"].is_null(),
        "a RUNNING task still shows pull progress: {running}"
    );
    Ok(())
}

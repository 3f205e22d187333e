//! The host-path race through the agent: a task's host volume is checked when the task is
//! assigned and mounted after its pull; a symlink to `/` swapped into the allowed path while
//! the pull is held (by a registry that holds manifest requests until released) must never
//! get the host's root into the container. The task either fails with a reason that names
//! the path or runs with what was checked; the agent stays up and nothing stays mounted.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::{BadMode, BadRegistry, World, fixtures, poll};

use super::{Env, container, hello, taskdef};

/// What the container exits with when it sees the host's root in its volume (an `etc`
/// directory, which the checked directory does not have and every host's root has).
const SAW_THE_HOSTS_ROOT: i64 = 7;

pub(super) fn a_symlink_swapped_in_during_the_pull_never_mounts_the_hosts_root(
    w: &World,
) -> Result<()> {
    let held = BadRegistry::start_serving(BadMode::Hold, fixtures::hello_image()?)?;
    let scratch = w.scratch_dir("e2e-host-path-race")?;
    let allowed = scratch.join("data");
    std::fs::create_dir_all(&allowed)?;
    std::fs::write(allowed.join("checked"), "what the agent checked")?;
    // Resources go as soon as a task stops, so what stays mounted is what leaked.
    let mut env = Env::new(w, "0")?;
    env.opts.insecure_registries.push(held.host());
    env.opts.extra_args = vec![format!("--volume-host-paths={}", scratch.display())];
    env.connect()?;
    race(w, &env, &held, &scratch, &allowed)
}

fn race(w: &World, env: &Env, held: &BadRegistry, scratch: &Path, allowed: &Path) -> Result<()> {
    let mut def = taskdef(
        "host-path-race",
        serde_json::json!([
            {"name": "app", "image": held.reference("race/app"), "memory": 32,
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
             "command": ["sh", "-c", format!(
                 "if test -d /data/etc; then exit {SAW_THE_HOSTS_ROOT}; fi; test -f /data/checked")]}
        ]),
    );
    def["volumes"] = serde_json::json!([
        {"name": "data", "host": {"sourcePath": allowed.display().to_string()}}
    ]);
    env.register(&def)?;
    let id = env.run_task("host-path-race")?;

    // The task was assigned and checked; its pull now waits on the manifest.
    poll(Duration::from_secs(30), || {
        Ok(held
            .requests()
            .iter()
            .any(|r| r.contains("/manifests/"))
            .then_some(()))
    })
    .with_context(|| format!("the pull never reached the registry{}", env.logs()))?;
    ensure!(
        env.task(&id)?["lastStatus"] == "PENDING",
        "the task should wait for its pull: {}",
        env.task(&id)?
    );
    std::fs::rename(allowed, scratch.join("moved"))?;
    std::os::unix::fs::symlink("/", allowed)?;
    held.release();

    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(90))?;
    let app = container(&t, "app")?;
    match app["exitCode"].as_i64() {
        Some(SAW_THE_HOSTS_ROOT) => bail!("the container saw the host's root: {t}"),
        // It ran with what was checked: the directory, wherever it moved.
        Some(0) => eprintln!("host path race: the task ran with the directory that was checked"),
        Some(code) => bail!("the container exited {code}, not with what was checked: {t}"),
        // It never ran: the reason names the path.
        None => {
            let reason = t["stoppedReason"].as_str().unwrap_or_default();
            ensure!(
                reason.contains(&allowed.display().to_string()),
                "the task failed without naming the host path: {t}"
            );
            eprintln!("host path race: the task failed: {reason}");
        }
    }

    // The agent is up and runs the next task; nothing of the task stays mounted.
    let image = hello(w, "e2e-host-path-race")?;
    let (_, next) = env.run_until(
        &taskdef(
            "after-the-race",
            serde_json::json!([{"name": "app", "image": image, "memory": 32,
                                "command": ["true"]}]),
        ),
        "STOPPED",
        Duration::from_secs(90),
    )?;
    ensure!(container(&next, "app")?["exitCode"] == 0, "{next}");
    let data_dir = env.opts.data_dir.display().to_string();
    poll(Duration::from_secs(30), || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok((!mounts
            .lines()
            .any(|l| l.contains(&id) || l.contains(&data_dir)))
        .then_some(()))
    })
    .with_context(|| {
        format!(
            "a mount of the task stayed behind: {}",
            std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
        )
    })?;
    Ok(())
}

//! An agent that starts on a data dir that is full already (it was killed, and the disk
//! filled while it was down): it starts degraded rather than crash-looping, reports the
//! condition on its heartbeat, takes its running task back (the container keeps running and
//! its output is read again), refuses a new task with a reason that names the disk, and
//! recovers by itself once space returns, as it does when the disk fills while it runs.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::diskfull::{Tmpfs, chatty, degraded, fill, progress, ticks};
use super::{Env, RUNNING_WITHIN, hello};

pub(super) fn an_agent_starting_on_a_full_disk_degrades_and_recovers(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    let data_dir = env.opts.data_dir.clone();
    let _tmpfs = Tmpfs::mount(&data_dir, "24m")?;
    env.connect()?;
    let image = hello(w, "e2e-diskfull-start")?;
    let (first, _) = env.start_task(&chatty("diskfull-start-first", &image))?;
    poll(Duration::from_secs(30), || {
        Ok((ticks(&env, &first).len() > 5).then_some(()))
    })
    .context("the first task never logged")?;

    // The agent dies, and the disk fills while it is down.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    let filled = fill(&data_dir.join("fill"))?;
    ensure!(filled > 0, "nothing could be written to the data dir");
    let counted = progress(w, &env, &first)?;
    env.start_agent()?;
    env.agent()?
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))
        .with_context(|| format!("the agent never came back on a full disk{}", env.logs()))?;

    let condition = poll(Duration::from_secs(30), || {
        let d = degraded(&env)?;
        Ok((!d.is_null()).then_some(d))
    })
    .with_context(|| format!("the agent never reported its full data dir{}", env.logs()))?;
    ensure!(condition["errno"] == 28, "{condition}");
    ensure!(
        condition["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(&*data_dir.to_string_lossy())),
        "{condition}"
    );

    // The running task was taken back: its container was never restarted (its own count goes
    // on from where it was) and its output is read again (it would block on a full pipe in
    // seconds otherwise), while the disk stays full.
    poll(Duration::from_secs(60), || {
        Ok((progress(w, &env, &first)? > counted + 400).then_some(()))
    })
    .with_context(|| {
        format!(
            "the first task's container made no progress after the agent came back{}",
            env.logs()
        )
    })?;
    let t = env.task(&first)?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");

    // A new task is refused, and the reason names the disk.
    env.register(&chatty("diskfull-start-second", &image))?;
    let out = env.ctl(&["run-task", "--task-definition", "diskfull-start-second"])?;
    ensure!(
        out.status != 0,
        "a task was placed on a full disk: {}",
        out.stdout
    );
    ensure!(
        out.stderr.contains("errno 28") && out.stderr.contains(&*data_dir.to_string_lossy()),
        "the refusal does not name the disk: {}",
        out.stderr
    );

    // Space returns: the agent recovers by itself and takes new tasks.
    std::fs::remove_file(data_dir.join("fill"))?;
    poll(Duration::from_secs(60), || {
        Ok(degraded(&env)?.is_null().then_some(()))
    })
    .with_context(|| format!("the agent never recovered{}", env.logs()))?;
    let second = env.run_task("diskfull-start-second")?;
    env.wait_status(&second, "RUNNING", RUNNING_WITHIN)?;
    let t = env.task(&first)?;
    ensure!(t["lastStatus"] == "RUNNING", "{t}");
    let app = super::container(&t, "app")?;
    ensure!(
        app["restartCount"].as_u64().unwrap_or(0) == 0,
        "the first task's container restarted: {t}"
    );
    // What happened while degraded was stored once the disk took writes again: the agent
    // killed now comes back to both tasks.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    let before = progress(w, &env, &first)?;
    env.start_agent()?;
    env.agent()?
        .daemon
        .wait_for_log("session established", Duration::from_secs(60))?;
    poll(Duration::from_secs(60), || {
        Ok((progress(w, &env, &first)? > before + 100).then_some(()))
    })
    .context("the first task was not taken back after the recovery")?;
    for task in [&first, &second] {
        let t = env.task(task)?;
        ensure!(t["lastStatus"] == "RUNNING", "{t}");
    }
    Ok(())
}

//! A damaged agent store end to end. A truncated file: the agent says so, moves it aside with
//! a timestamp, starts with an empty store, and the cluster converges (the containers it found
//! are reported, and the scheduler re-adopts the task it still wants: same process, RUNNING
//! throughout, and a stop then leaves nothing). A store
//! with one garbled record: the agent reports that record by table and key and skips it; the
//! other task is taken back and keeps running.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello, taskdef};

fn ticker(image: &str, family: &str) -> serde_json::Value {
    taskdef(
        family,
        serde_json::json!([
            {"name": "app", "image": image, "memory": 32, "stopTimeout": 1,
             "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]}
        ]),
    )
}

/// Kills the agent, damages its store with `damage`, and starts it again with a short grace.
fn restart_with_damage(
    env: &mut Env,
    damage: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<()> {
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5))?;
    damage(&env.opts.data_dir.join("agent.redb"))?;
    env.opts.extra_args = vec!["--orphan-cleanup-grace=2s".to_owned()];
    env.start_agent()?;
    env.wait_instance_connected()?;
    Ok(())
}

/// Polls until containerd no longer has a container of `task`.
fn container_gone(w: &World, env: &Env, task: &str) -> Result<()> {
    poll(Duration::from_secs(60), || {
        let containers = w.ctr(&["-n", &env.opts.namespace, "containers", "ls", "-q"])?;
        Ok((!containers.contains(task)).then_some(()))
    })
    .with_context(|| {
        format!(
            "the container of task {task} was never removed{}",
            env.logs()
        )
    })
}

pub(super) fn a_truncated_store_is_moved_aside_and_the_cluster_converges(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "1")?;
    let image = hello(w, "e2e-store-truncated")?;
    let (task, _) = env.start_task(&ticker(&image, "truncated"))?;
    let pid_line = |out: &str| out.lines().find(|l| l.contains(&task)).map(str::to_owned);
    let pids_before = w.ctr(&["-n", &env.opts.namespace, "tasks", "ls"])?;
    restart_with_damage(&mut env, |store| {
        let len = std::fs::metadata(store)?.len();
        let file = std::fs::OpenOptions::new().write(true).open(store)?;
        file.set_len(len / 3)?;
        Ok(())
    })?;
    let aside: Vec<String> = std::fs::read_dir(&env.opts.data_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("agent.redb.corrupt-"))
        .collect();
    ensure!(
        aside.len() == 1,
        "the damaged store was not moved aside: {aside:?}"
    );
    let log = env.agent()?.daemon.log();
    ensure!(
        log.lines()
            .any(|l| l.contains("the agent database cannot be read") && l.contains(&aside[0])),
        "the agent did not say it moved the store aside{}",
        env.logs()
    );
    // Rebuilt from containerd's labels and the scheduler's view: the task is re-adopted, its
    // process kept, RUNNING throughout.
    poll(Duration::from_secs(30), || {
        let log = env.agent()?.daemon.log();
        Ok(log
            .lines()
            .any(|l| l.contains("re-adopting a task found in containerd") && l.contains(&task))
            .then_some(()))
    })
    .with_context(|| format!("task {task} was never re-adopted{}", env.logs()))?;
    // Past the sweep's grace, it still runs as it did.
    std::thread::sleep(Duration::from_secs(5));
    let t = env.task(&task)?;
    ensure!(
        t["lastStatus"] == "RUNNING" && t["containers"][0]["lastStatus"] == "RUNNING",
        "{t}"
    );
    let pids_now = w.ctr(&["-n", &env.opts.namespace, "tasks", "ls"])?;
    ensure!(
        pid_line(&pids_before).is_some() && pid_line(&pids_before) == pid_line(&pids_now),
        "the adopted task's container was restarted: {pids_before} / {pids_now}"
    );
    // A stop works, and leaves nothing.
    env.stop_task(&task, Duration::from_secs(30))?;
    container_gone(w, &env, &task)?;
    // The agent works on: a new task runs.
    let (next, _) = env.start_task(&ticker(&image, "after-truncation"))?;
    env.stop_task(&next, Duration::from_secs(30))?;
    Ok(())
}

pub(super) fn a_garbled_record_is_reported_and_skipped(w: &World) -> Result<()> {
    let mut env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-store-garbled")?;
    let (garbled, _) = env.start_task(&ticker(&image, "garbled"))?;
    let (intact, _) = env.start_task(&ticker(&image, "intact"))?;
    let pid_before = w.ctr(&["-n", &env.opts.namespace, "tasks", "ls"])?;
    let key = garbled.clone();
    restart_with_damage(&mut env, move |store| {
        let db = redb::Database::open(store).context("open the agent's store")?;
        let tx = db.begin_write()?;
        {
            let table: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new("assignments");
            let mut t = tx.open_table(table)?;
            // No protobuf decoder takes a field of wire type 7.
            t.insert(key.as_str(), &[0xffu8, 0xff, 0xff][..])?;
        }
        tx.commit()?;
        Ok(())
    })?;
    poll(Duration::from_secs(20), || {
        let log = env.agent()?.daemon.log();
        Ok(log
            .lines()
            .any(|l| {
                l.contains("skipping an undecodable record")
                    && l.contains("assignments")
                    && l.contains(&garbled)
            })
            .then_some(()))
    })
    .with_context(|| {
        format!(
            "the garbled record was not reported by table and key{}",
            env.logs()
        )
    })?;
    let t = env.wait_status(&garbled, "STOPPED", Duration::from_secs(60))?;
    ensure!(
        t["stoppedReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{t}"
    );
    container_gone(w, &env, &garbled)?;
    let t = env.task(&intact)?;
    ensure!(
        t["lastStatus"] == "RUNNING",
        "the intact task was not kept: {t}"
    );
    let line = |out: &str| out.lines().find(|l| l.contains(&intact)).map(str::to_owned);
    let now = w.ctr(&["-n", &env.opts.namespace, "tasks", "ls"])?;
    ensure!(
        line(&pid_before).is_some() && line(&pid_before) == line(&now),
        "the intact task's container was restarted: {pid_before} / {now}"
    );
    env.stop_task(&intact, Duration::from_secs(30))?;
    Ok(())
}

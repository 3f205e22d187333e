//! No head-of-line blocking: the scheduler (a debug build, through its test hooks in
//! `BERTH_SCHEDULER_TEST_HOOKS`) holds every metrics stream, open and never read, with a small
//! HTTP/2 window so the agent's sends stop after a few batches. The agent's bounded buffer
//! fills and drops the oldest batches, counted in `berth_agent_metric_batches_dropped_total`,
//! while tasks still reach RUNNING and STOPPED on time and heartbeats keep arriving.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_tests::berth::Scheduler;
use berth_tests::{World, poll};
use serde_json::{Value, json};

use super::telemetry::{get, value};
use super::telemetry_net::env_with;
use super::{Env, RUNNING_WITHIN, hello, taskdef};

/// The hooks: hold metrics streams; a 4 KiB stream window (the default is 1 MiB, a thousand
/// batches or more).
const HOOKS: &str = "hold-metrics-streams,stream-window=4096";

/// The agent's `berth_agent_*` counter `name`.
fn agent_counter(env: &Env, name: &str) -> Result<f64> {
    let (status, text) = get(env.agent()?.metrics, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    value(&text, name, "").with_context(|| format!("no {name} on /metrics"))
}

/// The instance's health as of its latest heartbeat: when it arrived, and when the agent last
/// collected metrics.
fn health(env: &Env) -> Result<(String, String)> {
    let instance = env.wait_instance_connected()?;
    let id = instance["containerInstanceId"]
        .as_str()
        .context("no instance ID")?;
    let d = env.json(&["describe-container-instances", id])?;
    let h = &d["containerInstances"][0]["agentHealth"];
    Ok((
        h["reportedAt"]
            .as_str()
            .context("no heartbeat health yet")?
            .to_owned(),
        h["lastMetricsAt"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Waits until a heartbeat newer than `since` (and a metrics pass newer than `metrics`) has
/// arrived; its health.
fn next_heartbeat(env: &Env, since: &(String, String)) -> Result<(String, String)> {
    // RFC 3339 in UTC with a fixed number of digits: later sorts after.
    poll(Duration::from_secs(30), || {
        let now = health(env)?;
        Ok((now.0 > since.0 && now.1 > since.1).then_some(now))
    })
    .with_context(|| format!("no heartbeat after {since:?}{}", env.logs()))
}

/// Runs a task of `def` and stops it, requiring RUNNING and STOPPED within their usual
/// deadlines; how long each took.
fn start_and_stop(env: &Env, def: &Value) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let (id, _) = env.run_until(def, "RUNNING", RUNNING_WITHIN)?;
    let running = start.elapsed();
    let stop = Instant::now();
    env.stop_task(&id, Duration::from_secs(20))?;
    Ok((running, stop.elapsed()))
}

pub(super) fn held_metrics_stream_blocks_nothing(w: &World) -> Result<()> {
    let mut env = env_with(w, "0", |dir| {
        Scheduler::start_with_env(dir, None, false, &[("BERTH_SCHEDULER_TEST_HOOKS", HOOKS)])
    })?;
    env.opts.extra_args = vec!["--metrics-interval".into(), "1s".into()];
    env.connect()?;
    ensure!(
        env.scheduler.daemon.log().contains("test hooks on"),
        "the scheduler did not take its test hooks:{}",
        env.logs()
    );
    // Batches collected before the agent had registered are dropped too (nothing names the
    // host yet): count from now, when it is connected.
    let dropped_before = agent_counter(&env, "berth_agent_metric_batches_dropped_total")?;
    let image = hello(w, "e2e-telemetry-hold")?;
    let sleeper = |family: &str| {
        taskdef(
            family,
            json!([{"name": "sleeper", "image": image, "memory": 32, "stopTimeout": 1,
                    "command": ["sleep", "3600"]}]),
        )
    };
    // A task while the stream is held but the agent's sends still fit the window.
    let (early_running, early_stopped) = start_and_stop(&env, &sleeper("hold-early"))?;
    let (long_id, _) = env.start_task(&sleeper("hold-long"))?;
    let before = health(&env)?;

    // The agent's buffer fills and drops the oldest batches: the window plus the buffer's
    // sixty batches at one a second.
    poll(Duration::from_secs(180), || {
        Ok(
            (agent_counter(&env, "berth_agent_metric_batches_dropped_total")? > dropped_before)
                .then_some(()),
        )
    })
    .with_context(|| format!("no metric batch was ever dropped{}", env.logs()))?;
    let sent = agent_counter(&env, "berth_agent_metric_batches_sent_total")?;
    // Nothing reached the scheduler's window: the stream was never read.
    let stats = env.ctl(&["-o", "json", "stats", &long_id])?;
    ensure!(
        stats.stdout.contains(&long_id) && stats.stdout.contains("\"missing\""),
        "the scheduler's window has metrics of a held stream: {}",
        stats.stdout
    );

    // With the agent's sends blocked: heartbeats keep coming (and collection goes on), and a
    // task reaches RUNNING and STOPPED as soon as ever.
    let during = next_heartbeat(&env, &before)?;
    let (running, stopped) = start_and_stop(&env, &sleeper("hold-late"))?;
    next_heartbeat(&env, &during)?;
    env.stop_task(&long_id, Duration::from_secs(20))?;
    let dropped = agent_counter(&env, "berth_agent_metric_batches_dropped_total")?;
    ensure!(
        agent_counter(&env, "berth_agent_metric_batches_sent_total")? - sent <= 1.0,
        "batches still went out on the held stream"
    );
    poll(Duration::from_secs(20), || {
        Ok(
            (agent_counter(&env, "berth_agent_metric_batches_dropped_total")? > dropped)
                .then_some(()),
        )
    })
    .context("the drops stopped being counted")?;
    println!(
        "held metrics stream: RUNNING in {:.1} s and STOPPED in {:.1} s before the buffer filled, \
         {:.1} s and {:.1} s after; {sent} batches sent, {dropped} dropped",
        early_running.as_secs_f64(),
        early_stopped.as_secs_f64(),
        running.as_secs_f64(),
        stopped.as_secs_f64(),
    );
    Ok(())
}

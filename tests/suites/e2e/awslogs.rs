//! The awslogs log driver against moto's CloudWatch Logs on 127.0.0.1: events arrive in
//! their group and stream, in order; awslogs-create-group makes the group; a multiline
//! pattern joins lines; with the endpoint stopped, non-blocking mode drops and counts and
//! never stalls the container, and blocking mode stalls the container's writes until the
//! endpoint is back, then delivers everything. `berthctl logs` reads the json-file copy
//! throughout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::moto::{Moto, REGION};
use berth_tests::{World, poll};
use serde_json::{Value, json};

use super::telemetry::{get, value};
use super::{Env, container, hello, taskdef};

/// An agent whose awslogs driver sends to `moto`, with fake credentials.
fn env_with_moto(w: &World, moto: &Moto) -> Result<Env> {
    let mut env = Env::new(w, "10800")?;
    env.opts
        .extra_args
        .push(format!("--awslogs-endpoint={}", moto.endpoint()));
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    env.start_agent_with_env(&Moto::agent_env())?;
    env.wait_instance_connected()?;
    Ok(env)
}

/// An awslogs logConfiguration.
fn awslogs(group: &str, extra: Value) -> Value {
    let mut options = json!({
        "awslogs-group": group,
        "awslogs-region": REGION,
        "awslogs-stream-prefix": "ecs",
    });
    if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json!({"logDriver": "awslogs", "options": options})
}

/// The messages of a stream, once there are at least `count` (or the deadline passes).
fn wait_events(
    moto: &Moto,
    group: &str,
    stream: &str,
    count: usize,
    within: Duration,
) -> Result<Vec<String>> {
    poll(within, || {
        let events = moto.log_events(group, stream)?;
        Ok((events.len() >= count).then(|| events.into_iter().map(|e| e.message).collect()))
    })
    .with_context(|| {
        let have = moto.log_events(group, stream).map(|e| e.len()).unwrap_or(0);
        format!(
            "{stream} in {group}: {have} events, not {count}; streams {:?}; moto log:\n{}",
            moto.log_streams(group).unwrap_or_default(),
            moto.log_tail(20)
        )
    })
}

/// A task with a plain container and a multi-line one: the events of each arrive in their
/// group (made by awslogs-create-group) and stream, in order, stdout and stderr alike; the
/// multiline pattern joins a start line with the lines that follow it; `berthctl logs` still
/// reads the json-file copy.
pub(super) fn awslogs_events_arrive(w: &World) -> Result<()> {
    let dir = w.scratch_dir("moto")?;
    let moto = Moto::start(&dir)?;
    let env = env_with_moto(w, &moto)?;
    let image = hello(w, "e2e-awslogs")?;
    let group = format!("/berth/{}", w.unique("g"));
    ensure!(
        moto.log_streams(&group)?.is_empty(),
        "group exists before the task"
    );
    let lines = 300;
    let script = format!(
        "i=0; while [ $i -lt {lines} ]; do echo \"line $i\"; i=$((i+1)); done; echo 'to stderr' >&2"
    );
    let multi = "printf 'START one\\n  at a\\n  at b\\nSTART two\\n  at c\\n'";
    let def = taskdef(
        "awslogs-arrive",
        json!([
            {"name": "app", "image": image, "memory": 64, "essential": true,
             "command": ["sh", "-c", script],
             "logConfiguration": awslogs(&group, json!({"awslogs-create-group": "true"}))},
            {"name": "multi", "image": image, "memory": 64, "essential": false,
             "command": ["sh", "-c", multi],
             "logConfiguration": awslogs(&group, json!({
                 "awslogs-create-group": "true",
                 "awslogs-multiline-pattern": "^START"}))}
        ]),
    );
    let (id, t) = env.run_until(&def, "STOPPED", Duration::from_secs(90))?;
    ensure!(container(&t, "app")?["exitCode"] == 0, "{t}");
    let stream = format!("ecs/app/{id}");
    let got = wait_events(&moto, &group, &stream, lines + 1, Duration::from_secs(60))?;
    let want: Vec<String> = (0..lines).map(|i| format!("line {i}")).collect();
    // stdout and stderr travel through separate pipes: only stdout's order is fixed.
    let stdout_only: Vec<String> = got
        .iter()
        .filter(|m| m.starts_with("line "))
        .cloned()
        .collect();
    ensure!(stdout_only == want, "events of {stream}: {got:?}");
    ensure!(got.iter().any(|m| m == "to stderr"), "{got:?}");
    let multi_stream = format!("ecs/multi/{id}");
    let joined = wait_events(&moto, &group, &multi_stream, 2, Duration::from_secs(60))?;
    ensure!(
        joined == ["START one\n  at a\n  at b", "START two\n  at c"],
        "multiline events: {joined:?}"
    );
    // The json-file copy is there for berthctl logs.
    let out = env.ok(&["logs", &id, "--container", "app"])?;
    ensure!(
        out.stdout.contains("line 0\n") && out.stdout.contains(&format!("line {}\n", lines - 1)),
        "berthctl logs: {}",
        out.stdout
    );
    let described = env
        .json(&["describe-task-definition", "awslogs-arrive"])?
        .to_string();
    ensure!(
        described.contains("\"awslogs-create-group\":\"true\""),
        "{described}"
    );
    Ok(())
}

/// The endpoint stopped, non-blocking mode with a small buffer: the container writes all its
/// lines and exits promptly; the lines the buffer could not hold are dropped, counted in the
/// agent's metrics and told in the container's reason; the json-file copy has every line.
pub(super) fn awslogs_non_blocking_drops(w: &World) -> Result<()> {
    let dir = w.scratch_dir("moto")?;
    let moto = Moto::start(&dir)?;
    let env = env_with_moto(w, &moto)?;
    moto.stop();
    let image = hello(w, "e2e-awslogs")?;
    let group = format!("/berth/{}", w.unique("g"));
    let lines = 20_000;
    let script = format!(
        "i=0; while [ $i -lt {lines} ]; do echo \"line $i of the non-blocking trial\"; i=$((i+1)); done"
    );
    let def = taskdef(
        "awslogs-nonblocking",
        json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c", script],
             "logConfiguration": awslogs(&group, json!({
                 "awslogs-create-group": "true",
                 "mode": "non-blocking",
                 "max-buffer-size": "16k"}))}
        ]),
    );
    let started = Instant::now();
    let (id, t) = env.run_until(&def, "STOPPED", Duration::from_secs(60))?;
    let took = started.elapsed();
    let app = container(&t, "app")?;
    ensure!(app["exitCode"] == 0, "{t}");
    let log = env.container_log(&id, "app");
    ensure!(
        log.lines().count() == lines,
        "json-file copy has {} lines, not {lines}",
        log.lines().count()
    );
    let metrics = env.agent()?.metrics;
    let dropped = poll(Duration::from_secs(30), || {
        let (_, text) = get(metrics, "/metrics")?;
        Ok(value(&text, "berth_agent_awslogs_lines_dropped_total", "").filter(|n| *n > 0.0))
    })
    .context("no dropped lines counted")?;
    let reason = poll(Duration::from_secs(30), || {
        let t = env.task(&id)?;
        let reason = container(&t, "app")?["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(reason.contains("log lines dropped").then_some(reason))
    })
    .with_context(|| format!("no drop note in the container's reason: {}", env.logs()))?;
    eprintln!(
        "    non-blocking: {lines} lines written in {:.1}s with the endpoint down; {dropped} dropped; {reason}",
        took.as_secs_f64()
    );
    Ok(())
}

/// The endpoint stopped, blocking mode: the container's writes stall once the driver's queue
/// and the pipe are full (its json-file copy stops growing and it keeps running); when the
/// endpoint is back, everything arrives, in order, and the container finishes.
pub(super) fn awslogs_blocking_back_pressures(w: &World) -> Result<()> {
    let dir = w.scratch_dir("moto")?;
    let moto = Moto::start(&dir)?;
    let env = env_with_moto(w, &moto)?;
    moto.stop();
    let image = hello(w, "e2e-awslogs")?;
    let group = format!("/berth/{}", w.unique("g"));
    // 3000 lines of about 1 KiB: three times the driver's 1 MiB queue and the pipe.
    let lines = 3000;
    let script = format!(
        "pad=$(head -c 1000 /dev/zero | tr '\\0' x); i=0; \
         while [ $i -lt {lines} ]; do echo \"line $i $pad\"; i=$((i+1)); done"
    );
    let def = taskdef(
        "awslogs-blocking",
        json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c", script],
             "logConfiguration": awslogs(&group, json!({
                 "awslogs-create-group": "true",
                 "mode": "blocking"}))}
        ]),
    );
    let (id, _) = env.start_task(&def)?;
    // Stalled: the copy stops growing short of every line while the container runs.
    let mut last = (usize::MAX, Instant::now());
    let stalled_at = poll(Duration::from_secs(60), || {
        let count = env.container_log(&id, "app").lines().count();
        if count >= lines {
            bail!("the container wrote all {lines} lines with the endpoint down");
        }
        if count != last.0 {
            last = (count, Instant::now());
            return Ok(None);
        }
        Ok((count > 0 && last.1.elapsed() >= Duration::from_secs(3)).then_some(count))
    })?;
    let t = env.task(&id)?;
    ensure!(
        t["lastStatus"] == "RUNNING",
        "the container did not wait for the endpoint: {t}"
    );
    moto.resume()?;
    let stream = format!("ecs/app/{id}");
    let got = wait_events(&moto, &group, &stream, lines, Duration::from_secs(90))?;
    let numbers: Vec<usize> = got
        .iter()
        .filter_map(|m| m.strip_prefix("line ")?.split(' ').next()?.parse().ok())
        .collect();
    ensure!(
        numbers == (0..lines).collect::<Vec<_>>(),
        "{} events, not lines 0..{lines} in order",
        got.len()
    );
    env.wait_status(&id, "STOPPED", Duration::from_secs(60))?;
    eprintln!(
        "    blocking: stalled at {stalled_at} of {lines} lines until the endpoint came back"
    );
    Ok(())
}

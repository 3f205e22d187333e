//! Telemetry through the scheduler: a CPU burner under its task's CFS quota and a memory
//! holder, whose figures agree within 10 % on the scheduler's window (`berthctl stats -o
//! json`, which reads it through GetTaskStats), the agent's `/metrics`, and the task's own
//! metadata `/task/stats`; a metadata ID that is not the caller's answers 404; and the
//! instance's health and measured use show on `describe-container-instances`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_tests::{World, poll};
use serde_json::{Value, json};

use super::telemetry::{get, value};
use super::{Env, hello, taskdef};

/// The burner's quota: the task's 256 CPU units are a quarter of a core.
const BURNER_PERCENT: f64 = 25.0;
const HELD: f64 = (32u64 << 20) as f64;

fn within_10_percent(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.10
}

pub(super) fn figures_agree_in_every_place(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.opts.extra_args = vec!["--metrics-interval".into(), "1s".into()];
    env.connect()?;
    let image = hello(w, "e2e-telemetry-stream")?;
    let reader = "while :; do wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/task/stats\"; echo; \
                  wget -qO- \"${ECS_CONTAINER_METADATA_URI_V4%/*}/00000000000000000000000000000000/stats\" \
                  || echo OTHER-DENIED; sleep 1; done";
    let mut burner = taskdef(
        "telemetry-burner",
        json!([
            {"name": "burner", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "while :; do :; done"]}
        ]),
    );
    burner["cpu"] = json!("256");
    burner["memory"] = json!("128");
    let mut holder = taskdef(
        "telemetry-holder",
        json!([
            {"name": "holder", "image": image, "memory": 128, "stopTimeout": 1,
             "command": ["sh", "-c", "head -c 33554432 /dev/zero > /dev/shm/hold && exec sleep 300"]},
            {"name": "reader", "image": image, "memory": 32, "stopTimeout": 1, "essential": false,
             "command": ["sh", "-c", reader]}
        ]),
    );
    holder["memory"] = json!("256");
    // The metadata endpoint is for tasks with a network of their own.
    holder["networkMode"] = json!("awsvpc");
    let (burner_id, _) = env.start_task(&burner)?;
    let (holder_id, _) = env.start_task(&holder)?;

    // 1. The scheduler's window, through berthctl: until the burner runs at its quota and the
    //    holder holds its 32 MiB.
    let stats = poll(Duration::from_secs(60), || {
        let v = env.json(&["stats", &burner_id, &holder_id])?;
        let cpu = task_of(&v, &burner_id)?["cpuPercent"]
            .as_f64()
            .unwrap_or(0.0);
        let held = container_of(&v, &holder_id, "holder")?["memoryWorkingSetBytes"]
            .as_f64()
            .unwrap_or(0.0);
        Ok((within_10_percent(cpu, BURNER_PERCENT) && held >= HELD).then_some(v))
    })
    .with_context(|| {
        format!(
            "the window never showed the burner at its quota{}",
            env.logs()
        )
    })?;
    let held_stream = container_of(&stats, &holder_id, "holder")?["memoryWorkingSetBytes"]
        .as_f64()
        .context("no working set")?;
    ensure!(
        within_10_percent(held_stream, HELD),
        "the window says {held_stream} bytes held for {HELD}"
    );

    // 2. The agent's /metrics: the burner's CPU seconds over at least five seconds, and the
    //    holder's working set.
    let metrics = env.agent()?.metrics;
    let labels = |task: &str, family: &str, name: &str| {
        format!(
            "task_id=\"{task}\",container_name=\"{name}\",task_definition_family=\"{family}\",task_definition_revision=\"1\""
        )
    };
    let burner_labels = labels(&burner_id, "telemetry-burner", "burner");
    let cpu_seconds = || -> Result<f64> {
        let (_, text) = get(metrics, "/metrics")?;
        value(&text, "container_cpu_usage_seconds_total", &burner_labels)
            .context("no CPU seconds for the burner")
    };
    // Read each end just after a pass changed the counter, so that both readings are as
    // old as the poll's period, not the metrics interval.
    let fresh = |before: f64| {
        poll(Duration::from_secs(10), || {
            let now = cpu_seconds()?;
            Ok((now != before).then(|| (Instant::now(), now)))
        })
    };
    // The window's cumulative CPU time of the burner, read right after /metrics (the same
    // pass, at one second a pass and the reads a few milliseconds apart).
    let window_cpu = || -> Result<f64> {
        let v = env.json(&["stats", &burner_id])?;
        container_of(&v, &burner_id, "burner")?["cpuUsageNanoseconds"]
            .as_f64()
            .context("no CPU time in the window")
    };
    let (start, first) = fresh(cpu_seconds()?)?;
    let window_first = window_cpu()?;
    poll(Duration::from_secs(30), || {
        Ok((start.elapsed() >= Duration::from_secs(10)).then_some(()))
    })?;
    let (end, last) = fresh(cpu_seconds()?)?;
    let window_last = window_cpu()?;
    let secs = end.duration_since(start).as_secs_f64();
    // On a busy shared host the burner may get less than its quota: what must agree is what
    // each place saw of it over the same ten seconds.
    let percent = (last - first) / secs * 100.0;
    let window_percent = (window_last - window_first) / 1e9 / secs * 100.0;
    ensure!(
        within_10_percent(percent, window_percent) && percent <= BURNER_PERCENT * 1.1,
        "/metrics: the burner used {percent:.1} % of a core, the window says {window_percent:.1} % (quota {BURNER_PERCENT} %)"
    );
    let (_, text) = get(metrics, "/metrics")?;
    let held_metrics = value(
        &text,
        "container_memory_working_set_bytes",
        &labels(&holder_id, "telemetry-holder", "holder"),
    )
    .context("no working set for the holder")?;
    ensure!(
        within_10_percent(held_metrics, held_stream),
        "/metrics says {held_metrics} held, the window {held_stream}"
    );

    // 3. The task's own /task/stats, as the reader container printed it; and another ID's
    //    /stats was refused.
    let task_stats = poll(Duration::from_secs(30), || {
        let log = env.container_log(&holder_id, "reader");
        Ok(log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v.as_object()
                    .is_some_and(|o| o.values().any(|c| c["name"] == "holder"))
            }))
    })
    .with_context(|| {
        format!(
            "the reader never printed its task's stats:\n{}",
            env.container_log(&holder_id, "reader")
        )
    })?;
    let holder_stats = task_stats
        .as_object()
        .and_then(|o| o.values().find(|c| c["name"] == "holder"))
        .context("no holder in /task/stats")?;
    let usage = holder_stats["memory_stats"]["usage"]
        .as_f64()
        .context("no memory usage")?;
    let inactive = holder_stats["memory_stats"]["stats"]["total_inactive_file"]
        .as_f64()
        .unwrap_or(0.0);
    ensure!(
        within_10_percent(usage - inactive, held_stream),
        "/task/stats says {} held, the window {held_stream}",
        usage - inactive
    );
    ensure!(
        holder_stats["precpu_stats"]["cpu_usage"].is_object()
            && holder_stats["cpu_stats"]["system_cpu_usage"]
                .as_u64()
                .unwrap_or(0)
                > 0,
        "{holder_stats}"
    );
    ensure!(
        env.container_log(&holder_id, "reader")
            .contains("OTHER-DENIED"),
        "another metadata ID's /stats was answered:\n{}",
        env.container_log(&holder_id, "reader")
    );

    // 4. The instance: health from the heartbeat, and measured use beside reserved.
    let instance = poll(Duration::from_secs(40), || {
        let i = env.wait_instance_connected()?;
        let id = i["containerInstanceId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let d = env.json(&["describe-container-instances", &id])?;
        let i = d["containerInstances"][0].clone();
        Ok(
            (i["agentHealth"]["containerdReachable"] == true && i["measuredResources"].is_array())
                .then_some(i),
        )
    })
    .with_context(|| format!("no health or measured use on the instance{}", env.logs()))?;
    let measured_cpu = instance["measuredResources"][0]["integerValue"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        (200..=320).contains(&measured_cpu),
        "measured CPU {measured_cpu} units for a burner at 256: {instance}"
    );
    ensure!(
        instance["agentHealth"]["dataDirFreeBytes"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{instance}"
    );

    env.stop_task(&burner_id, Duration::from_secs(20))?;
    env.stop_task(&holder_id, Duration::from_secs(20))?;
    Ok(())
}

fn task_of<'a>(stats: &'a Value, id: &str) -> Result<&'a Value> {
    stats["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["taskId"] == id))
        .with_context(|| format!("no stats of task {id}: {stats}"))
}

fn container_of<'a>(stats: &'a Value, id: &str, name: &str) -> Result<&'a Value> {
    task_of(stats, id)?["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["containerName"] == name))
        .with_context(|| format!("no stats of {name} in task {id}: {stats}"))
}

//! Telemetry of the network: a task sends a known number of bytes to another task over the
//! agent's bridge (inside the trial's own namespace; no outside address), and the sender's
//! transmitted and the receiver's received bytes agree within 10 % with that number in all
//! four places: the stream at the scheduler (`GetTaskStats`, read over gRPC), the agent's
//! `/metrics`, the task's own metadata `/task/stats` and `berthctl stats -o json`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{GetTaskStatsRequest, TaskStats};
use berth_tests::berth::{AgentOptions, Scheduler, attachment_detail};
use berth_tests::netlab::AgentNetns;
use berth_tests::{World, poll};
use serde_json::{Value, json};

use super::telemetry::get;
use super::{Env, hello, taskdef};

/// What the sender sends: 16 MiB, so that the few kilobytes of everything else on the
/// interfaces (ARP, the readers' metadata requests) stay far below the 10 % allowed.
const SENT: u64 = 16 << 20;
const PORT: u16 = 8080;

fn within_10_percent(got: u64, want: u64) -> bool {
    got.abs_diff(want) as f64 <= want as f64 * 0.10
}

/// An [`Env`] whose scheduler `start` starts in the trial's directory (plaintext, or with
/// test hooks): like `Env::new` otherwise.
pub(super) fn env_with(
    w: &World,
    cleanup_wait: &str,
    start: impl FnOnce(&Path) -> Result<Scheduler>,
) -> Result<Env> {
    let dir = w.scratch_dir("e2e")?;
    let scheduler = start(&dir)?;
    let cluster = w.unique("c");
    let net = AgentNetns::create(&dir.join("net"))?;
    let opts = AgentOptions {
        cluster: cluster.clone(),
        endpoint: scheduler.endpoint.clone(),
        data_dir: dir.join("agent-data"),
        containerd_socket: w.containerd().socket().to_path_buf(),
        namespace: w.unique("ns"),
        insecure_registries: vec![w.registry().host()],
        cleanup_wait: cleanup_wait.to_owned(),
        host_netns: net.host.path().to_owned(),
        netns_dir: net.netns_dir.clone(),
        extra_args: Vec::new(),
        join: None,
    };
    Ok(Env {
        dir,
        scheduler,
        agent: None,
        opts,
        cluster,
        net,
    })
}

/// The task's interfaces' received and transmitted bytes, as the scheduler holds them from
/// the stream.
fn streamed(stats: &TaskStats) -> (u64, u64) {
    stats.networks.iter().fold((0, 0), |(rx, tx), i| {
        (rx.saturating_add(i.rx_bytes), tx.saturating_add(i.tx_bytes))
    })
}

/// The sum of a counter over every series of the task (one per interface) on `/metrics`.
fn metrics_sum(text: &str, name: &str, task: &str) -> Option<u64> {
    let label = format!("task_id=\"{task}\"");
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() as u64)
}

/// The latest `/task/stats` the task's reader printed whose `networks` satisfy `done`.
fn task_stats_networks(env: &Env, task: &str, done: impl Fn(u64, u64) -> bool) -> Result<Value> {
    poll(Duration::from_secs(60), || {
        let log = env.container_log(task, "reader");
        Ok(log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v.as_object()?
                    .values()
                    .find(|c| c["name"] == "reader")
                    .map(|c| c["networks"].clone())
            })
            .find(|n| {
                let (rx, tx) = interfaces_json(n);
                done(rx, tx)
            }))
    })
    .with_context(|| {
        format!(
            "the reader of task {task} never printed the expected stats:\n{}",
            env.container_log(task, "reader")
        )
    })
}

/// Docker's `networks` object summed: received and transmitted bytes.
fn interfaces_json(networks: &Value) -> (u64, u64) {
    networks.as_object().map_or((0, 0), |o| {
        o.values().fold((0, 0), |(rx, tx), i| {
            (
                rx + i["rx_bytes"].as_u64().unwrap_or(0),
                tx + i["tx_bytes"].as_u64().unwrap_or(0),
            )
        })
    })
}

pub(super) fn network_bytes_agree_in_every_place(w: &World) -> Result<()> {
    let mut env = env_with(w, "10800", |dir| Scheduler::start_with(dir, None, true))?;
    env.opts.extra_args = vec!["--metrics-interval".into(), "1s".into()];
    env.connect()?;
    let image = hello(w, "e2e-telemetry-net")?;
    // Each task prints its own /task/stats every two seconds (a few kilobytes each).
    let reader = json!({"name": "reader", "image": image, "memory": 32, "stopTimeout": 1,
        "essential": false,
        "command": ["sh", "-c", "while :; do wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/task/stats\"; echo; sleep 2; done"]});
    // The receiver's listener keeps its stdin open (busybox's nc stops at its stdin's end)
    // and logs how many bytes it received.
    let mut receiver = taskdef(
        "telemetry-net-receiver",
        json!([
            {"name": "receiver", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", format!("sleep 3600 | nc -l -p {PORT} | wc -c")]},
            reader.clone()
        ]),
    );
    receiver["networkMode"] = json!("awsvpc");
    let (receiver_id, receiver_task) = env.start_task(&receiver)?;
    let address = attachment_detail(&receiver_task, "privateIPv4Address")
        .with_context(|| format!("no address for the receiver: {receiver_task}"))?;
    ensure!(
        address.starts_with("10."),
        "the receiver's address {address} is not the bridge's private range"
    );
    // Retried until the receiver listens (a refused connection sends a SYN, nothing more).
    let send = format!(
        "until head -c {SENT} /dev/zero | nc {address} {PORT}; do sleep 0.5; done; echo sent; exec sleep 3600"
    );
    let mut sender = taskdef(
        "telemetry-net-sender",
        json!([
            {"name": "sender", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", send]},
            reader
        ]),
    );
    sender["networkMode"] = json!("awsvpc");
    let (sender_id, _) = env.start_task(&sender)?;
    poll(Duration::from_secs(60), || {
        Ok(env
            .container_log(&receiver_id, "receiver")
            .lines()
            .any(|l| l.trim() == SENT.to_string())
            .then_some(()))
    })
    .with_context(|| {
        format!(
            "the receiver never got {SENT} bytes; sender: {}{}",
            env.container_log(&sender_id, "sender"),
            env.logs()
        )
    })?;

    // 1. The stream at the scheduler: GetTaskStats, once a batch after the transfer arrived.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = env.scheduler.endpoint.clone();
    let cluster = env.cluster.clone();
    let tasks = [sender_id.clone(), receiver_id.clone()];
    let (sender_stream, receiver_stream) = poll(Duration::from_secs(60), || {
        let response = rt.block_on(async {
            let mut client = ControlServiceClient::connect(endpoint.clone()).await?;
            let request = GetTaskStatsRequest {
                cluster: cluster.clone(),
                tasks: tasks.to_vec(),
                history: false,
            };
            anyhow::Ok(client.get_task_stats(request).await?.into_inner())
        })?;
        let of = |id: &str| {
            response
                .tasks
                .iter()
                .find(|t| t.task_id == id)
                .map(streamed)
        };
        let (Some(sent), Some(received)) = (of(&sender_id), of(&receiver_id)) else {
            return Ok(None);
        };
        Ok((sent.1 >= SENT && received.0 >= SENT).then_some((sent, received)))
    })
    .with_context(|| {
        format!(
            "the scheduler's window never showed the transfer{}",
            env.logs()
        )
    })?;
    let (_, sender_tx) = sender_stream;
    let (receiver_rx, _) = receiver_stream;
    ensure!(
        within_10_percent(sender_tx, SENT) && within_10_percent(receiver_rx, SENT),
        "the stream: the sender transmitted {sender_tx} bytes, the receiver received {receiver_rx}, for {SENT} sent"
    );

    // 2. berthctl stats -o json (the same window, as an operator reads it).
    let ctl = env.json(&["stats", &sender_id, &receiver_id])?;
    let task_json = |id: &str| {
        ctl["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["taskId"] == id))
            .with_context(|| format!("no stats of task {id}: {ctl}"))
    };
    let ctl_tx = task_json(&sender_id)?["networkTxBytes"]
        .as_u64()
        .context("no networkTxBytes")?;
    let ctl_rx = task_json(&receiver_id)?["networkRxBytes"]
        .as_u64()
        .context("no networkRxBytes")?;
    ensure!(
        within_10_percent(ctl_tx, SENT) && within_10_percent(ctl_rx, SENT),
        "berthctl stats: the sender transmitted {ctl_tx} bytes, the receiver received {ctl_rx}, for {SENT} sent"
    );

    // 3. The agent's /metrics, under cAdvisor's names.
    let (status, text) = get(env.agent()?.metrics, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    let metrics_tx = metrics_sum(&text, "container_network_transmit_bytes_total", &sender_id)
        .with_context(|| format!("no transmitted bytes of the sender:\n{text}"))?;
    let metrics_rx = metrics_sum(&text, "container_network_receive_bytes_total", &receiver_id)
        .with_context(|| format!("no received bytes of the receiver:\n{text}"))?;
    ensure!(
        within_10_percent(metrics_tx, SENT) && within_10_percent(metrics_rx, SENT),
        "/metrics: the sender transmitted {metrics_tx} bytes, the receiver received {metrics_rx}, for {SENT} sent"
    );

    // 4. Each task's own /task/stats, as its reader printed it.
    let sender_networks = task_stats_networks(&env, &sender_id, |_, tx| tx >= SENT)?;
    let receiver_networks = task_stats_networks(&env, &receiver_id, |rx, _| rx >= SENT)?;
    let (_, own_tx) = interfaces_json(&sender_networks);
    let (own_rx, _) = interfaces_json(&receiver_networks);
    ensure!(
        within_10_percent(own_tx, SENT) && within_10_percent(own_rx, SENT),
        "/task/stats: the sender transmitted {own_tx} bytes, the receiver received {own_rx}, for {SENT} sent"
    );

    env.stop_task(&sender_id, Duration::from_secs(20))?;
    env.stop_task(&receiver_id, Duration::from_secs(20))?;
    Ok(())
}

//! Telemetry end to end: a CPU burner under its task's quota and a memory holder, seen on the
//! agent's introspection endpoint (`/metrics` checked by `promtool check metrics`,
//! `/v1/tasks`, `/v1/metadata`, `/healthz`, `/readyz`), and batches sent on `StreamMetrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::{World, poll};
use serde_json::{Value, json};

use super::{Env, hello, taskdef};

pub(super) fn introspection_endpoint(w: &World) -> Result<()> {
    let mut env = Env::new(w, "10800")?;
    env.opts.extra_args = vec!["--metrics-interval".into(), "1s".into()];
    env.connect()?;
    let image = hello(w, "e2e-telemetry")?;
    let mut def = taskdef(
        "telemetry",
        json!([
            {"name": "burner", "image": image, "memory": 64, "stopTimeout": 1,
             "command": ["sh", "-c", "while :; do :; done"]},
            {"name": "holder", "image": image, "memory": 128, "stopTimeout": 1,
             "command": ["sh", "-c", "head -c 33554432 /dev/zero > /dev/shm/hold && exec sleep 300"]}
        ]),
    );
    def["cpu"] = json!("512");
    def["memory"] = json!("256");
    let (id, _) = env.start_task(&def)?;
    let metrics = env.agent()?.metrics;

    let labels = |name: &str| {
        format!(
            "task_id=\"{id}\",container_name=\"{name}\",task_definition_family=\"telemetry\",task_definition_revision=\"1\""
        )
    };
    // Until a pass has seen the holder's 32 MiB and some of the burner's CPU.
    let text = poll(Duration::from_secs(30), || {
        let (status, text) = get(metrics, "/metrics")?;
        ensure!(status == 200, "/metrics answered {status}");
        let held = value(
            &text,
            "container_memory_working_set_bytes",
            &labels("holder"),
        );
        let burnt = value(
            &text,
            "container_cpu_usage_seconds_total",
            &labels("burner"),
        );
        Ok(
            (held.is_some_and(|b| b >= f64::from(32u32 << 20)) && burnt.is_some_and(|s| s > 0.1))
                .then_some(text),
        )
    })
    .with_context(|| env.logs())?;
    let held = value(
        &text,
        "container_memory_working_set_bytes",
        &labels("holder"),
    )
    .context("no working set")?;
    ensure!(
        held < f64::from(48u32 << 20),
        "working set {held} for 32 MiB held"
    );
    ensure!(
        value(
            &text,
            "container_spec_memory_limit_bytes",
            &labels("holder")
        ) == Some(f64::from(128u32 << 20)),
        "holder's limit:\n{text}"
    );
    ensure!(
        value(&text, "berth_agent_tasks", "status=\"RUNNING\"") == Some(1.0),
        "tasks by status:\n{text}"
    );
    ensure!(
        value(&text, "berth_agent_state_changes_sent_total", "").is_some_and(|n| n >= 1.0),
        "state changes sent:\n{text}"
    );
    promtool_accepts(&text)?;
    // Each pass also went to the scheduler on the metrics stream.
    poll(Duration::from_secs(20), || {
        let (_, text) = get(metrics, "/metrics")?;
        Ok(value(&text, "berth_agent_metric_batches_sent_total", "")
            .is_some_and(|n| n >= 1.0)
            .then_some(()))
    })
    .context("no metric batch sent to the scheduler")?;

    let (status, body) = get(metrics, "/v1/tasks")?;
    let tasks: Value = serde_json::from_str(&body).context("/v1/tasks JSON")?;
    ensure!(
        status == 200 && tasks["Tasks"][0]["Arn"] == id.as_str(),
        "{body}"
    );
    ensure!(tasks["Tasks"][0]["Family"] == "telemetry", "{body}");
    let (status, body) = get(metrics, &format!("/v1/tasks?taskarn={id}"))?;
    ensure!(
        status == 200 && body.contains("\"KnownStatus\":\"RUNNING\""),
        "{body}"
    );
    let (_, body) = get(metrics, "/v1/metadata")?;
    let meta: Value = serde_json::from_str(&body).context("/v1/metadata JSON")?;
    ensure!(meta["ContainerInstanceArn"].is_string(), "{body}");
    ensure!(get(metrics, "/healthz")?.0 == 200);
    ensure!(get(metrics, "/readyz")?.0 == 200);

    env.stop_task(&id, Duration::from_secs(20))?;
    Ok(())
}

/// A sample's value: the line `name{labels} value` (or `name value` without labels).
pub(super) fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// One HTTP/1.1 GET; the status and the body.
pub(super) fn get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)?));
    }
    Ok((status, body.to_owned()))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

/// `promtool check metrics` accepts the text without a warning.
fn promtool_accepts(text: &str) -> Result<()> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run promtool (Debian's prometheus package; make deps installs it)")?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        bail!("promtool check metrics: {said}");
    }
    Ok(())
}

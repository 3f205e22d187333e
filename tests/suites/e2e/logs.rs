//! Container logs end to end: json-file rotation set by logConfiguration, `berthctl logs`
//! (follow across rotations, tail, since, timestamps, stderr) and its errors, and log drivers
//! and options Berth refuses (awslogs itself: `awslogs.rs`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::ctl_command;
use berth_tests::{World, poll};
use nix::sys::signal::Signal;

use super::{Env, hello, taskdef};

/// How many numbered lines the chatty container prints.
const CHATTY_LINES: usize = 1500;

/// The numbers of "line N" lines, in the order printed.
fn line_numbers(text: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Requires the lines 0..CHATTY_LINES, each once, in order.
fn ensure_complete(what: &str, text: &str) -> Result<()> {
    let numbers = line_numbers(text);
    let expected: Vec<usize> = (0..CHATTY_LINES).collect();
    if numbers != expected {
        let first_bad = numbers
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(numbers.len().min(expected.len()));
        bail!(
            "{what}: {} lines, first difference at index {first_bad} (got {:?})",
            numbers.len(),
            numbers.get(first_bad)
        );
    }
    Ok(())
}

/// A container prints numbered lines for several seconds into a json-file log rotated every
/// 4 KiB (logConfiguration); `berthctl logs --follow`, started while it runs, sees every line
/// once and in order across the rotations and ends by itself when the container stops; so does
/// a plain `logs` afterwards. Then --tail, --timestamps, stderr, an unknown container, an
/// unknown task and a disconnected instance.
pub(super) fn logs_rotate_and_follow(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-logs")?;
    let script = format!(
        "i=0; while [ $i -lt {CHATTY_LINES} ]; do echo \"line $i\"; i=$((i+1)); \
         if [ $((i % 50)) -eq 0 ]; then sleep 0.2; fi; done; echo 'all done' >&2"
    );
    let (id, _) = env.start_task(&taskdef(
        "chatty",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64,
             "command": ["sh", "-c", script],
             "logConfiguration": {"logDriver": "json-file",
                                  "options": {"max-size": "4k", "max-file": "100"}}}
        ]),
    ))?;
    let described = env
        .json(&["describe-task-definition", "chatty"])?
        .to_string();
    ensure!(
        described.contains(
            r#""logConfiguration":{"logDriver":"json-file","options":{"max-file":"100","max-size":"4096"}}"#
        ),
        "{described}"
    );
    let follow = ctl_command(&env.scheduler.ctl_config)?
        .args(["--cluster", &env.cluster])
        .args(["logs", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("start berthctl logs --follow")?;
    let started = Instant::now();
    let mut follow = Some(follow);
    let exited = poll(Duration::from_secs(90), || {
        let child = follow.as_mut().context("follower gone")?;
        Ok(child.try_wait()?.map(|status| status.code()))
    });
    let child = follow.take().context("follower gone")?;
    let output = match exited {
        Ok(_) => child.wait_with_output()?,
        Err(e) => {
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "logs --follow did not end when the container stopped: {e}; printed {} lines{}",
                line_numbers(&String::from_utf8_lossy(&out.stdout)).len(),
                env.logs()
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "logs --follow failed: {stderr}{}",
        env.logs()
    );
    ensure_complete("logs --follow", &stdout)?;
    ensure!(
        stderr.contains("all done"),
        "stderr line not on stderr: {stderr:?}"
    );
    ensure!(!stdout.contains("all done"), "stderr line on stdout");
    eprintln!(
        "    logs --follow: {CHATTY_LINES} lines in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The log was rotated, several times, and nothing is missing from the files either.
    let dir = env.opts.data_dir.join("logs").join(&id);
    let files = std::fs::read_dir(&dir)?.count();
    ensure!(
        files >= 5,
        "expected several rotated files in {}, found {files}",
        dir.display()
    );
    env.wait_status(&id, "STOPPED", Duration::from_secs(30))?;

    let all = env.ok(&["logs", &id])?;
    ensure_complete("logs", &all.stdout)?;
    ensure!(all.stderr.contains("all done"), "{:?}", all.stderr);

    let tail = env.ok(&["logs", "--tail", "5", &id])?;
    let last: Vec<usize> = (CHATTY_LINES - 4..CHATTY_LINES).collect();
    ensure!(
        line_numbers(&tail.stdout) == last,
        "--tail 5 printed {:?} (and stderr {:?})",
        tail.stdout,
        tail.stderr
    );
    let stamped = env.ok(&[
        "logs",
        "--tail",
        "1",
        "--timestamps",
        "--container",
        "app",
        &id,
    ])?;
    ensure!(
        stamped.stderr.starts_with("20") && stamped.stderr.contains("Z all done"),
        "--timestamps: {:?}",
        stamped.stderr
    );
    let recent = env.ok(&["logs", "--since", "10m", &id])?;
    ensure_complete("logs --since 10m", &recent.stdout)?;
    let future = env.ok(&["logs", "--since", "2099-01-01T00:00:00Z", &id])?;
    ensure!(
        future.stdout.is_empty() && future.stderr.is_empty(),
        "--since in the future: {future:?}"
    );

    let unknown = env.ctl(&["logs", "--container", "nope", &id])?;
    ensure!(
        unknown.status != 0
            && unknown.stderr.contains("no container nope")
            && unknown.stderr.contains("app"),
        "unknown container: {unknown:?}"
    );
    let missing = env.ctl(&["logs", "no-such-task"])?;
    ensure!(
        missing.status != 0 && missing.stderr.contains("no-such-task"),
        "unknown task: {missing:?}"
    );

    // With the agent gone, its host's logs are out of reach: said so, not hung.
    env.agent()?
        .daemon
        .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    let gone = poll(Duration::from_secs(30), || {
        let out = env.ctl(&["logs", &id])?;
        Ok((out.status != 0 && out.stderr.contains("not connected")).then_some(out))
    })
    .context("logs of a disconnected instance's task did not say so")?;
    ensure!(gone.stdout.is_empty(), "{gone:?}");
    Ok(())
}

/// logConfiguration with another driver is refused at registration, by name and JSON path.
pub(super) fn logs_unsupported_driver(w: &World) -> Result<()> {
    let env = Env::new(w, "10800")?;
    env.ok(&["create-cluster", &env.cluster.clone()])?;
    let def = taskdef(
        "splunk",
        serde_json::json!([
            {"name": "app", "image": "busybox", "memory": 64,
             "logConfiguration": {"logDriver": "splunk",
                                  "options": {"splunk-url": "u"}}}
        ]),
    );
    let out = env.try_register(&def)?;
    ensure!(out.status != 0, "registered: {out:?}");
    ensure!(
        out.stderr.contains(
            "containerDefinitions[0].logConfiguration.logDriver splunk is not supported by Berth; supported: json-file, awslogs"
        ) && out.stderr.contains("splunk-url"),
        "{:?}",
        out.stderr
    );
    // awslogs without its region, and with an option it does not know.
    let def = taskdef(
        "awslogs",
        serde_json::json!([
            {"name": "app", "image": "busybox", "memory": 64,
             "logConfiguration": {"logDriver": "awslogs",
                                  "options": {"awslogs-group": "g", "awslogs-endpoint": "x"}}}
        ]),
    );
    let out = env.try_register(&def)?;
    ensure!(out.status != 0, "registered: {out:?}");
    ensure!(
        out.stderr
            .contains("options[\"awslogs-region\"]: required by the awslogs driver")
            && out
                .stderr
                .contains("option awslogs-endpoint is not supported by Berth's awslogs driver"),
        "{:?}",
        out.stderr
    );
    Ok(())
}

//! `berthctl events SERVICE --follow` through the real binaries: it prints the service's
//! history, stays up, and streams an event that happens afterwards within a deadline.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_tests::World;
use berth_tests::berth::ctl_command;
use serde_json::Value;

use super::services::{CONVERGE_WITHIN, Fleet, create, live, steady};
use super::{hello, taskdef};

/// A running `berthctl … events --follow` whose stdout lines arrive on a channel; killed and
/// reaped when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl Follower {
    fn start(fleet: &Fleet, service: &str) -> Result<Follower> {
        let env = &fleet.env;
        let mut child = ctl_command(&env.scheduler.ctl_config)?
            .args(["--cluster", &env.cluster, "-o", "json"])
            .args(["events", service, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start berthctl events --follow")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        // Ends when the process's stdout closes (it is killed at the latest on drop).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Follower {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Reads lines until one is an event whose message `wanted` accepts, within `within`; that
    /// event. Fails when the process exits or the deadline passes first.
    fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "events --follow printed no {what} within {within:?}; it printed {:?}",
                        self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "events --follow ended ({status}) before printing {what}; it printed {:?}",
                        self.seen
                    )
                }
            };
            self.seen.push(line.clone());
            let event: Value = serde_json::from_str(&line).with_context(|| {
                format!("events -o json printed a line that is not JSON: {line}")
            })?;
            ensure!(
                event["id"].is_string() && event["createdAt"].is_string(),
                "an event without its id or time: {line}"
            );
            if event["message"].as_str().is_some_and(&wanted) {
                return Ok(event);
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Already gone is fine: the trial has what it needs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn follow_streams_a_new_event(w: &World) -> Result<()> {
    let fleet = Fleet::start(w, 1, &[])?;
    let image = hello(w, "e2e-svc-events")?;
    fleet.env.register(&taskdef(
        "svc-events",
        serde_json::json!([{"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]),
    ))?;
    create(&fleet.env, "watched", "svc-events", 1, &[])?;
    let (_, tasks) = fleet.wait_for("watched", "1 RUNNING", |s, t| steady(s, t, 1))?;
    let first = live(&tasks)[0]["taskId"]
        .as_str()
        .context("no task ID")?
        .to_owned();

    // The history first: the service reached a steady state.
    let mut follower = Follower::start(&fleet, "watched")?;
    follower.wait_for("history", CONVERGE_WITHIN, |m| {
        m == "(service watched) has reached a steady state."
    })?;
    ensure!(
        follower.child.try_wait()?.is_none(),
        "events --follow exited after the history: {:?}",
        follower.seen
    );

    // Then what happens later: a second task started, named in an event that is not history.
    fleet
        .env
        .ok(&["update-service", "watched", "--desired-count", "2"])?;
    let started = follower.wait_for("new event", CONVERGE_WITHIN, |m| {
        m.starts_with("(service watched) has started 1 tasks: (task ") && !m.contains(&first)
    })?;
    let (_, tasks) = fleet.wait_for("watched", "2 RUNNING", |s, t| steady(s, t, 2))?;
    let second = live(&tasks)
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .find(|id| *id != first)
        .context("no second task")?
        .to_owned();
    ensure!(
        started["message"]
            .as_str()
            .is_some_and(|m| m.contains(&second)),
        "the streamed event names another task than {second}: {started}"
    );
    ensure!(
        follower.child.try_wait()?.is_none(),
        "events --follow exited: {:?}",
        follower.seen
    );
    Ok(())
}

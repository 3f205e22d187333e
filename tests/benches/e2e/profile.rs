//! Where a start's time goes (`cargo bench --bench e2e -- profile`): one timeline a task from
//! `berthctl run-task` to RUNNING observed by the client, built from the phase marks the
//! scheduler and the agent log.
//!
//! Each side marks the end of a phase with a debug event of target `berth::phase` (fields
//! `task.id` or `container.id`, and `phase`). The target is off unless a filter enables it, so
//! a deployment pays one disabled-callsite check a mark; the bench enables it
//! (`berth::phase=debug`) and reads the timestamps of the daemons' logs, which share the
//! host's clock with the bench's own marks (before `run-task`, and when its client sees
//! RUNNING).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use berth_proto::v1::TaskStatus;
use berth_tests::bench::percentile;
use berth_tests::berth::berthctl;

/// The filter that turns the marks on (beside the daemons' usual levels).
pub(crate) const PHASE_FILTER: &str = "berth::phase=debug";

/// Starts profiled.
const RUNS: usize = 30;

/// The marks of a start in order, each with what the phase it ends holds. `state_sent` and
/// `state_committed` count for the RUNNING report only.
const PHASES: [(&str, &str); 11] = [
    ("placed", "CLI call, placement and commit"),
    ("assignment_sent", "queued on the session and sent"),
    ("assignment_received", "delivery to the agent"),
    ("assignment_acked", "agent persist and ack"),
    (
        "image_resolved",
        "task prep (cgroup, volumes, network) and registry resolve",
    ),
    ("snapshot_prepared", "spec checks and snapshot prepare"),
    (
        "container_created",
        "container create (/etc files, spec, record)",
    ),
    ("task_created", "task create (shim start)"),
    ("task_started", "task start"),
    ("state_sent", "agent persists RUNNING and sends it"),
    ("state_committed", "scheduler commits RUNNING"),
];

/// What the profile needs from the bench's setup.
pub(crate) struct Profile<'a> {
    pub(crate) config: &'a Path,
    pub(crate) cluster: &'a str,
    /// A family of one container running `sleep`, network mode none.
    pub(crate) sleeper: &'a str,
    pub(crate) scheduler_log: &'a Path,
    pub(crate) agent_log: &'a Path,
}

impl Profile<'_> {
    /// Starts the tasks one at a time (each stopped, and its resources released, before the
    /// next) and prints each phase's p50 and p95. `in_process` waits for a status through the
    /// bench's client (for STOPPED, until the release too).
    pub(crate) fn run(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<()> {
        let mut starts = Vec::new();
        for _ in 0..RUNS {
            let began = SystemTime::now();
            let args = ["run-task", "--task-definition", self.sleeper];
            let id = berthctl(self.config, self.cluster, &args)?
                .success(&args)?
                .task_ids()
                .into_iter()
                .next()
                .context("run-task printed no task")?;
            in_process(&id, TaskStatus::Running)?;
            let observed = SystemTime::now();
            starts.push((id.clone(), began, observed));
            let stop = ["stop-task", id.as_str()];
            berthctl(self.config, self.cluster, &stop)?.success(&stop)?;
            in_process(&id, TaskStatus::Stopped)?;
        }
        let logs = format!(
            "{}\n{}",
            std::fs::read_to_string(self.scheduler_log)?,
            std::fs::read_to_string(self.agent_log)?
        );
        let marks: Vec<Mark> = logs.lines().filter_map(Mark::parse).collect();
        let mut phases: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len() + 1];
        let mut totals = Vec::new();
        let mut incomplete = 0;
        for (id, began, observed) in &starts {
            let Some(times) = timeline(&marks, id) else {
                incomplete += 1;
                continue;
            };
            let mut last = *began;
            for (i, at) in times.iter().chain(std::iter::once(observed)).enumerate() {
                phases[i].push(at.duration_since(last).unwrap_or_default());
                last = *at;
            }
            totals.push(observed.duration_since(*began).unwrap_or_default());
        }
        println!(
            "\nphase by phase: run-task -> RUNNING observed by the client ({} starts{})",
            totals.len(),
            if incomplete > 0 {
                format!(", {incomplete} without every mark left out")
            } else {
                String::new()
            }
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let names = PHASES
            .iter()
            .map(|(_, what)| *what)
            .chain(std::iter::once("client observes RUNNING"));
        let mut sum = 0.0;
        for (what, samples) in names.zip(phases.iter_mut()) {
            samples.sort();
            sum += ms(percentile(samples, 0.5));
            println!(
                "  {what:<60} p50 {:>7.1} ms  p95 {:>7.1} ms",
                ms(percentile(samples, 0.5)),
                ms(percentile(samples, 0.95))
            );
        }
        totals.sort();
        println!(
            "  {:<60} p50 {:>7.1} ms  p95 {:>7.1} ms  (sum of the p50s {sum:.1} ms)",
            "whole start",
            ms(percentile(&totals, 0.5)),
            ms(percentile(&totals, 0.95))
        );
        Ok(())
    }
}

/// The time of each of [`PHASES`] for the task `id` (the first mark of each), or None when
/// one is missing.
fn timeline(marks: &[Mark], id: &str) -> Option<Vec<SystemTime>> {
    PHASES
        .iter()
        .map(|(phase, _)| {
            marks
                .iter()
                .filter(|m| m.subject.starts_with(id) && m.phase == *phase)
                .map(|m| m.at)
                .min()
        })
        .collect()
}

/// One `berth::phase` line of a daemon's log.
#[derive(Debug, PartialEq)]
struct Mark {
    at: SystemTime,
    /// The task ID, or the container ID (which starts with its task's ID).
    subject: String,
    phase: String,
}

impl Mark {
    /// Reads a plain tracing-subscriber line (`TIMESTAMP LEVEL [spans:] target: fields`),
    /// colours or not. State reports count for RUNNING only.
    fn parse(line: &str) -> Option<Mark> {
        if !line.contains("berth::phase") {
            return None;
        }
        let line = strip_ansi(line);
        let at = humantime::parse_rfc3339(line.split_whitespace().next()?).ok()?;
        let field = |name: &str| {
            let after = line.split(&format!(" {name}=")).nth(1)?;
            Some(
                after
                    .split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_owned(),
            )
        };
        let phase = field("phase")?;
        let running = (TaskStatus::Running as i32).to_string();
        if phase.starts_with("state_")
            && field("status").or_else(|| field("last_status")) != Some(running)
        {
            return None;
        }
        let subject = field("task.id").or_else(|| field("container.id"))?;
        Some(Mark { at, subject, phase })
    }
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

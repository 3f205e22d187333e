//! Start latency as a user sees it (`cargo bench --bench e2e -- start`): Berth's start driven
//! by berthctl processes, beside containerd's own client run the way a person runs it, every
//! command interleaved in each round so that machine noise hits all of them alike.
//!
//! The references are `ctr run --rm IMAGE ID sh -c true` (→ exited and removed) and
//! `ctr run -d IMAGE ID sleep 3600` (create and start: the fair reference for → RUNNING), each
//! its own process with output on /dev/null and waited for with `waitpid`. A check beside them
//! times the same `ctr run --rm` through `sh -c '… >/dev/null 2>&1'` (how a shell runs it) and
//! through the suites' harness (output captured by reader threads, exit polled every 50 ms:
//! the reference the bench used to print, 50–65 ms high).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::v1::TaskStatus;
use berth_tests::bench::{table, timed};
use berth_tests::berth::{berthctl, ctl_command};

use crate::Ctr;

/// Rounds: each runs every command once.
const RUNS: usize = 50;

/// What the start section needs from the bench's setup.
pub(crate) struct Start<'a> {
    /// berthctl's config file (the scheduler's `ctl_config`).
    pub(crate) config: &'a Path,
    pub(crate) cluster: &'a str,
    /// A task definition family: one container running `sleep 3600`, network mode none.
    pub(crate) sleeper: &'a str,
    /// A task definition family: one container running `sh -c true`, network mode none.
    pub(crate) oneshot: &'a str,
    /// `ctr` on the agent's containerd and namespace.
    pub(crate) ctr: &'a Ctr<'a>,
}

impl Start<'_> {
    /// Runs the rounds and prints the tables. `in_process` waits for a task to reach a status
    /// through the bench's own client (DescribeTasks every 2 ms).
    pub(crate) fn run(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<()> {
        let mut ctr_rm = Vec::new();
        let mut ctr_rm_shell = Vec::new();
        let mut ctr_rm_harness = Vec::new();
        let mut ctr_d = Vec::new();
        let mut berth_wait = Vec::new();
        let mut berth_in_process = Vec::new();
        let mut berth_run_wait = Vec::new();
        let mut berth_stopped = Vec::new();
        for i in 0..RUNS {
            // A different command first in each round, so none always follows the same one.
            for k in 0..8 {
                match (i + k) % 8 {
                    0 => ctr_rm.push(self.ctr.run_rm(&format!("rm-{i}"))?),
                    1 => ctr_rm_shell.push(self.ctr_run_rm_shell(&format!("sh-{i}"))?),
                    2 => ctr_rm_harness.push(self.ctr_run_rm_harness(&format!("hn-{i}"))?),
                    3 => ctr_d.push(self.ctr.run_detached(&format!("d-{i}"))?),
                    4 => berth_wait.push(self.berth_running(in_process)?),
                    5 => berth_in_process.push(self.berth_running_in_process(in_process)?),
                    6 => berth_run_wait.push(self.berth_run_task_wait(in_process)?),
                    _ => berth_stopped.push(self.berth_stopped()?),
                }
            }
        }
        table(
            "check: the reference `ctr run --rm` (sh -c true), timed three ways",
            &mut [
                ("ctr run --rm (bench: own process)", ctr_rm.clone()),
                ("ctr run --rm (sh -c '... >/dev/null')", ctr_rm_shell),
                ("ctr run --rm (harness: piped, polled)", ctr_rm_harness),
            ],
        );
        table(
            "run-task -> RUNNING (sleep), as a user sees it",
            &mut [
                ("ctr run -d (create + start)", ctr_d),
                ("berthctl run-task; berthctl wait", berth_wait),
                ("berthctl run-task --wait", berth_run_wait),
                ("berthctl run-task; in-process poll", berth_in_process),
            ],
        );
        table(
            "run-task -> STOPPED (sh -c true), as a user sees it",
            &mut [
                ("ctr run --rm", ctr_rm),
                ("berthctl run-task; wait tasks-stopped", berth_stopped),
            ],
        );
        Ok(())
    }

    fn ctr_run_rm_shell(&self, id: &str) -> Result<Duration> {
        let socket = self.ctr.containerd.socket().to_string_lossy().into_owned();
        let line = format!(
            "{} --address {socket} -n {} run --rm {} {id} sh -c true >/dev/null 2>&1",
            berth_tests::bins::CTR,
            self.ctr.namespace,
            self.ctr.image
        );
        timed(Command::new("sh").args(["-c", &line]))
    }

    fn ctr_run_rm_harness(&self, id: &str) -> Result<Duration> {
        let start = Instant::now();
        self.ctr.containerd.ctr(&[
            "-n",
            self.ctr.namespace,
            "run",
            "--rm",
            self.ctr.image,
            id,
            "sh",
            "-c",
            "true",
        ])?;
        Ok(start.elapsed())
    }

    /// `berthctl run-task`, then `berthctl wait tasks-running`: two processes, as a script
    /// runs them.
    fn berth_running(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let id = self.run_task(self.sleeper)?;
        self.ctl_timed(&["wait", "tasks-running", &id, "--timeout", "60s"])?;
        let took = start.elapsed();
        self.stop(&id, in_process)?;
        Ok(took)
    }

    /// `berthctl run-task --wait`: one process starts the task and waits for RUNNING.
    fn berth_run_task_wait(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<Duration> {
        let args = ["run-task", "--task-definition", self.sleeper, "--wait"];
        let start = Instant::now();
        let out = berthctl(self.config, self.cluster, &args)?.success(&args)?;
        let took = start.elapsed();
        let id = out
            .task_ids()
            .into_iter()
            .next()
            .context("run-task printed no task")?;
        self.stop(&id, in_process)?;
        Ok(took)
    }

    /// `berthctl run-task`, then the bench's own client asking every 2 ms: the figure without
    /// berthctl's second process start.
    fn berth_running_in_process(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let id = self.run_task(self.sleeper)?;
        in_process(&id, TaskStatus::Running)?;
        let took = start.elapsed();
        self.stop(&id, in_process)?;
        Ok(took)
    }

    fn berth_stopped(&self) -> Result<Duration> {
        let start = Instant::now();
        let id = self.run_task(self.oneshot)?;
        self.ctl_timed(&["wait", "tasks-stopped", &id, "--timeout", "60s"])?;
        Ok(start.elapsed())
    }

    /// Stops a task and waits until it is STOPPED and its resources are released (what
    /// `in_process` waits for on STOPPED), outside the timing, so that no stop or cleanup
    /// overlaps the next start.
    fn stop(
        &self,
        id: &str,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<()> {
        self.ctl_timed(&["stop-task", id])?;
        in_process(id, TaskStatus::Stopped)
    }

    /// `berthctl run-task` prints the new task's ID alone on stdout.
    fn run_task(&self, family: &str) -> Result<String> {
        let args = ["run-task", "--task-definition", family];
        berthctl(self.config, self.cluster, &args)?
            .success(&args)?
            .task_ids()
            .into_iter()
            .next()
            .context("run-task printed no task")
    }

    fn ctl_timed(&self, args: &[&str]) -> Result<Duration> {
        timed(
            ctl_command(self.config)?
                .args(["--cluster", self.cluster])
                .args(args),
        )
    }
}

//! Where a start's time goes (`cargo bench --bench e2e -- profile`): one timeline a task from
//! `berthctl run-task` to RUNNING observed by the client, built from the phase marks the
//! scheduler and the agent log, for each family profiled (the default seccomp profile and
//! `seccomp=unconfined`, back to back in each round, each leading in turn), with what the
//! second adds over the first phase by phase; and the CPU each start cost the processes on its
//! path, so a wall-time difference can be told apart from the CPU behind it (on a loaded host
//! a millisecond of CPU takes several of wall time). What a family adds is the median of the
//! rounds' paired differences with p25 and p75, beside the difference of the p50s: noise that
//! hits a round hits both of its starts.
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
use berth_tests::bench::{Paired, stat_seconds};
use berth_tests::berth::berthctl;

/// The filter that turns the marks on (beside the daemons' usual levels).
pub(crate) const PHASE_FILTER: &str = "berth::phase=debug";

/// Starts profiled.
const RUNS: usize = 50;

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
    /// The families profiled, in turn, each `(label, family)`: one container running `sleep`,
    /// network mode none. The first is the reference the others are compared with.
    pub(crate) families: &'a [(&'a str, &'a str)],
    pub(crate) scheduler_log: &'a Path,
    pub(crate) agent_log: &'a Path,
    pub(crate) agent_pid: u32,
    pub(crate) containerd_pid: u32,
}

/// One start: the task, when `run-task` began, when the client saw RUNNING, and the CPU it
/// cost.
struct Start {
    id: String,
    began: SystemTime,
    observed: SystemTime,
    cpu: Cpu,
}

impl Profile<'_> {
    /// Starts the tasks one at a time (each stopped, and its resources released, before the
    /// next; the families in turn, each round led by another) and prints each phase's p50 and
    /// p95, then each family's phases beside the first's, and the CPU of a start.
    /// `in_process` waits for a status through the bench's client (for STOPPED, until the
    /// release too).
    pub(crate) fn run(
        &self,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<()> {
        let n = self.families.len();
        let mut starts: Vec<Vec<Start>> = (0..n).map(|_| Vec::new()).collect();
        for round in 0..RUNS {
            for k in 0..n {
                let i = (round + k) % n;
                let start = self.start(self.families[i].1, in_process)?;
                starts[i].push(start);
            }
        }
        let logs = format!(
            "{}\n{}",
            std::fs::read_to_string(self.scheduler_log)?,
            std::fs::read_to_string(self.agent_log)?
        );
        let marks: Vec<Mark> = logs.lines().filter_map(Mark::parse).collect();
        // Each start's phases in ms, the whole start last (None without every mark).
        let phased: Vec<Vec<Option<Vec<f64>>>> = starts
            .iter()
            .map(|starts| starts.iter().map(|s| phases_of(&marks, s)).collect())
            .collect();
        for ((label, family), phased) in self.families.iter().zip(&phased) {
            phase_table(&format!("{family} ({label})"), phased);
        }
        if let Some(((ref_label, _), reference)) = self.families.first().zip(phased.first()) {
            for ((label, _), theirs) in self.families.iter().zip(&phased).skip(1) {
                paired_phases(label, ref_label, reference, theirs);
            }
        }
        cpu_table(self.families, &starts);
        Ok(())
    }

    /// One start of `family`, timed and charged, then stopped (outside the timing).
    fn start(
        &self,
        family: &str,
        in_process: &mut dyn FnMut(&str, TaskStatus) -> Result<()>,
    ) -> Result<Start> {
        let before = Cpu::now(self, None)?;
        let began = SystemTime::now();
        let args = ["run-task", "--task-definition", family];
        let id = berthctl(self.config, self.cluster, &args)?
            .success(&args)?
            .task_ids()
            .into_iter()
            .next()
            .context("run-task printed no task")?;
        in_process(&id, TaskStatus::Running)?;
        let observed = SystemTime::now();
        let cpu = Cpu::now(self, Some(&id))?.since(&before);
        let stop = ["stop-task", id.as_str()];
        berthctl(self.config, self.cluster, &stop)?.success(&stop)?;
        in_process(&id, TaskStatus::Stopped)?;
        Ok(Start {
            id,
            began,
            observed,
            cpu,
        })
    }
}

/// The phases' names, then the client's.
fn phase_names() -> impl Iterator<Item = &'static str> {
    PHASES
        .iter()
        .map(|(_, what)| *what)
        .chain(std::iter::once("client observes RUNNING"))
}

/// The phases of `start` in ms, then the whole start, from the marks; None when one is
/// missing.
fn phases_of(marks: &[Mark], start: &Start) -> Option<Vec<f64>> {
    let times = timeline(marks, &start.id)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut last = start.began;
    let mut out = Vec::with_capacity(PHASES.len() + 2);
    for at in times.iter().chain(std::iter::once(&start.observed)) {
        out.push(ms(at.duration_since(last).unwrap_or_default()));
        last = *at;
    }
    out.push(ms(start
        .observed
        .duration_since(start.began)
        .unwrap_or_default()));
    Some(out)
}

/// Prints the timeline of the starts phase by phase (p50 and p95) under `what`.
fn phase_table(what: &str, phased: &[Option<Vec<f64>>]) {
    let complete: Vec<&Vec<f64>> = phased.iter().flatten().collect();
    let incomplete = phased.len() - complete.len();
    println!(
        "\nphase by phase, {what}: run-task -> RUNNING observed by the client ({} starts{})",
        complete.len(),
        if incomplete > 0 {
            format!(", {incomplete} without every mark left out")
        } else {
            String::new()
        }
    );
    let quantiles = |i: usize| {
        let mut v: Vec<f64> = complete.iter().map(|p| p[i]).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        (q(0.5), q(0.95))
    };
    let mut sum = 0.0;
    for (i, what) in phase_names().enumerate() {
        let (p50, p95) = quantiles(i);
        sum += p50;
        println!("  {what:<60} p50 {p50:>7.1} ms  p95 {p95:>7.1} ms");
    }
    let (p50, p95) = quantiles(PHASES.len() + 1);
    println!(
        "  {:<60} p50 {p50:>7.1} ms  p95 {p95:>7.1} ms  (sum of the p50s {sum:.1} ms)",
        "whole start"
    );
}

/// Prints what `label`'s starts add over `ref_label`'s phase by phase, paired by round (the
/// two run back to back in each round, each leading in turn): the median of the differences
/// with p25 and p75, beside the difference of the p50s.
fn paired_phases(
    label: &str,
    ref_label: &str,
    reference: &[Option<Vec<f64>>],
    theirs: &[Option<Vec<f64>>],
) {
    let rounds: Vec<(&Vec<f64>, &Vec<f64>)> = reference
        .iter()
        .zip(theirs)
        .filter_map(|(a, b)| a.as_ref().zip(b.as_ref()))
        .collect();
    println!(
        "\n  what {label} adds over {ref_label}, phase by phase, paired by round ({} rounds, \
         the two back to back, each leading in turn; ms)",
        rounds.len()
    );
    println!(
        "    {:<60} {:>8} {:>8} {:>8}   {:>9}",
        "", "median", "p25", "p75", "diff p50s"
    );
    let names = phase_names().chain(std::iter::once("whole start"));
    for (i, what) in names.enumerate() {
        let pairs: Vec<(f64, f64)> = rounds.iter().map(|(a, b)| (a[i], b[i])).collect();
        let p = Paired::of(&pairs);
        println!(
            "    {what:<60} {:>+8.2} {:>+8.2} {:>+8.2}   {:>+9.2}",
            p.median, p.p25, p.p75, p.p50_difference
        );
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

/// The CPU a start cost, by where it ran. Read when the client sees RUNNING, against a
/// reading before `run-task`.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The agent's threads (`/proc/<pid>/task/*/schedstat`, in ns; a thread that exits
    /// between the two readings takes its time with it).
    agent: Duration,
    /// containerd's threads, the same way.
    containerd: Duration,
    /// The task's shim, a process of its own started for the container: its threads.
    shim: Duration,
    /// What the shim reaped: `runc create` and `runc start`, and the `runc init` stages up to
    /// the one that becomes the container (`/proc/<pid>/stat` cutime and cstime, in ticks of
    /// 10 ms: read it as a mean over many starts).
    runc: Duration,
    /// The task's cgroup: `runc init` from the moment it joined the container's cgroup (where
    /// runc 1.1 compiles and loads the seccomp filter) until it became `sleep`.
    cgroup: Duration,
}

impl Cpu {
    /// The CPU so far of the daemons, and (given the task) of its shim and cgroup.
    fn now(profile: &Profile<'_>, task: Option<&str>) -> Result<Cpu> {
        let mut cpu = Cpu {
            agent: threads_cpu(profile.agent_pid)?,
            containerd: threads_cpu(profile.containerd_pid)?,
            ..Cpu::default()
        };
        let Some(task) = task else {
            return Ok(cpu);
        };
        let shim = shim_of(task).with_context(|| format!("no shim runs task {task}"))?;
        cpu.shim = threads_cpu(shim)?;
        let [cutime, cstime] = stat_seconds(&format!("/proc/{shim}/stat"), [16, 17])?;
        cpu.runc = Duration::from_secs_f64(cutime + cstime);
        cpu.cgroup =
            cgroup_cpu(task).with_context(|| format!("no CPU usage of task {task}'s cgroup"))?;
        Ok(cpu)
    }

    /// What was spent since `before` (the shim and the cgroup are new with the task).
    fn since(self, before: &Cpu) -> Cpu {
        Cpu {
            agent: self.agent.saturating_sub(before.agent),
            containerd: self.containerd.saturating_sub(before.containerd),
            ..self
        }
    }

    /// Each part with its name, in the order printed.
    fn parts(&self) -> [(&'static str, Duration); 5] {
        [
            ("agent (its threads)", self.agent),
            ("containerd (its threads)", self.containerd),
            ("shim (its threads)", self.shim),
            (
                "runc create and start, runc init until it joins the cgroup",
                self.runc,
            ),
            (
                "task's cgroup: runc init (seccomp filter compiled and loaded here)",
                self.cgroup,
            ),
        ]
    }
}

/// Prints the mean CPU of a start, part by part, for each family, and what each family spends
/// over the first.
fn cpu_table(families: &[(&str, &str)], starts: &[Vec<Start>]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let means: Vec<Vec<f64>> = starts
        .iter()
        .map(|starts| {
            let mut sums = [0.0; 5];
            for start in starts {
                for (sum, (_, d)) in sums.iter_mut().zip(start.cpu.parts()) {
                    *sum += ms(d);
                }
            }
            let n = starts.len().max(1) as f64;
            sums.iter().map(|s| s / n).collect()
        })
        .collect();
    let names = Cpu::default().parts().map(|(name, _)| name);
    println!("\nCPU of a start, mean over the starts (ms)");
    print!("  {:<68}", "");
    for (label, _) in families {
        print!(" {label:>20}");
    }
    println!();
    for (i, name) in names.iter().enumerate() {
        print!("  {name:<68}");
        for (k, mean) in means.iter().enumerate() {
            let delta = if k == 0 {
                String::new()
            } else {
                format!(" ({:+.2})", mean[i] - means[0][i])
            };
            print!(" {:>20}", format!("{:.2}{delta}", mean[i]));
        }
        println!();
    }
    print!("  {:<68}", "all of the above");
    for (k, mean) in means.iter().enumerate() {
        let total: f64 = mean.iter().sum();
        let delta = if k == 0 {
            String::new()
        } else {
            format!(" ({:+.2})", total - means[0].iter().sum::<f64>())
        };
        print!(" {:>20}", format!("{total:.2}{delta}"));
    }
    println!();
    let Some(((ref_label, _), reference)) = families.first().zip(starts.first()) else {
        return;
    };
    let total = |cpu: &Cpu| cpu.parts().iter().map(|(_, d)| ms(*d)).sum::<f64>();
    for ((label, _), theirs) in families.iter().zip(starts).skip(1) {
        println!(
            "\n  the CPU {label} adds over {ref_label}, paired by round ({} rounds; ms)",
            reference.len().min(theirs.len())
        );
        println!(
            "    {:<66} {:>8} {:>8} {:>8}   {:>10}",
            "", "median", "p25", "p75", "diff means"
        );
        let rows = names
            .iter()
            .copied()
            .enumerate()
            .map(Some)
            .chain(std::iter::once(None));
        for row in rows {
            let value = |cpu: &Cpu| match row {
                Some((i, _)) => ms(cpu.parts()[i].1),
                None => total(cpu),
            };
            let pairs: Vec<(f64, f64)> = reference
                .iter()
                .zip(theirs)
                .map(|(a, b)| (value(&a.cpu), value(&b.cpu)))
                .collect();
            let p = Paired::of(&pairs);
            let mean = |f: fn(&(f64, f64)) -> f64| {
                pairs.iter().map(f).sum::<f64>() / pairs.len().max(1) as f64
            };
            println!(
                "    {:<66} {:>+8.2} {:>+8.2} {:>+8.2}   {:>+10.2}",
                row.map_or("all of the above", |(_, name)| name),
                p.median,
                p.p25,
                p.p75,
                mean(|(_, b)| *b) - mean(|(a, _)| *a)
            );
        }
    }
}

/// The CPU time of every live thread of `pid` (`/proc/<pid>/task/*/schedstat`, whose first
/// field is the time on CPU in ns).
fn threads_cpu(pid: u32) -> Result<Duration> {
    let dir = format!("/proc/{pid}/task");
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns: u64 = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no time on CPU in {}", path.display()))?;
        total += Duration::from_nanos(ns);
    }
    Ok(total)
}

/// The shim of the task `task`: the `containerd-shim-runc-v2` process whose `-id` is one of
/// the task's containers (their IDs start with the task's).
fn shim_of(task: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
            let runs_task = args
                .windows(2)
                .any(|w| w[0] == b"-id" && w[1].starts_with(task.as_bytes()));
            (is_shim && runs_task).then_some(pid)
        })
}

/// The CPU used so far in the task's cgroup, `/berth/<task>` (the agent's default parent):
/// cgroup v1's `cpuacct.usage` (ns), or cgroup v2's `cpu.stat` `usage_usec`.
fn cgroup_cpu(task: &str) -> Option<Duration> {
    let v1 = format!("/sys/fs/cgroup/cpuacct/berth/{task}/cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(v1) {
        return text.trim().parse().ok().map(Duration::from_nanos);
    }
    let v2 = std::fs::read_to_string(format!("/sys/fs/cgroup/berth/{task}/cpu.stat")).ok()?;
    v2.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

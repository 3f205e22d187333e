//! Shared benchmark plumbing: a `main` that skips loudly without prerequisites (and fails in
//! CI), a section filter, whole-process timing, and latency reports (p50, p95 and p99 beside a
//! reference, as ratios).

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::prereq::{Policy, Prereq};

/// Runs a benchmark body that needs containerd and the registry; prints why it could not
/// run, or its error.
pub fn main(run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    main_with(|| Prereq::check().err(), run)
}

/// Runs a benchmark body after its own prerequisite check (`Some(why)` when it cannot run).
pub fn main_with(
    missing: impl FnOnce() -> Option<String>,
    run: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    if let Some(why) = missing() {
        eprintln!("bench SKIPPED: {why}");
        return if Policy::from_env() == Policy::Fail {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The sample at quantile `p` (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Whether the section `name` runs: the bench's first argument that is not a flag (cargo
/// passes `--bench`) names the one section to run; none runs them all
/// (`cargo bench -p berth-tests --bench e2e -- start`).
pub fn wants(name: &str) -> bool {
    match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(only) => only == name,
        None => true,
    }
}

/// Runs `cmd` to completion as a person at a shell would, and returns its wall time: its own
/// process, stdin and stdout on /dev/null, and the parent blocked in `waitpid` (no polling, no
/// reader threads). Stderr goes through a pipe so that a failure says why; a command that
/// succeeds writes nothing there.
pub fn timed(cmd: &mut Command) -> Result<Duration> {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd
        .spawn()
        .with_context(|| format!("spawn {shown}"))?
        .wait_with_output()
        .with_context(|| format!("wait for {shown}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Prints p50, p95 and p99 of each row, and each row's ratio to the first (the reference),
/// under `what`. Rows are (name, samples); the samples are sorted in place.
pub fn table(what: &str, rows: &mut [(&str, Vec<Duration>)]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (_, samples) in rows.iter_mut() {
        samples.sort();
    }
    let runs = rows.first().map_or(0, |(_, s)| s.len());
    println!("\n{what} ({runs} runs)");
    let Some((ref_name, reference)) = rows.first().map(|(n, s)| (*n, s.clone())) else {
        return;
    };
    for (name, samples) in rows.iter() {
        let q = |p| ms(percentile(samples, p));
        let r = |p| q(p) / ms(percentile(&reference, p));
        let ratio = if *name == ref_name {
            String::from("(reference)")
        } else {
            format!("x{:.2} / x{:.2} / x{:.2}", r(0.5), r(0.95), r(0.99))
        };
        println!(
            "  {name:<40} p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  {ratio}",
            q(0.5),
            q(0.95),
            q(0.99)
        );
    }
}

/// Prints p50, p95 and p99 of `ours` beside `reference`, and their ratios.
pub fn report(
    what: &str,
    ours_name: &str,
    ours: &mut [Duration],
    ref_name: &str,
    reference: &mut [Duration],
) {
    ours.sort();
    reference.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |s: &[Duration]| [0.5, 0.95, 0.99].map(|p| ms(percentile(s, p)));
    let (a, b) = (q(ours), q(reference));
    println!("\n{what} ({} runs)", ours.len());
    for (name, v) in [(ours_name, a), (ref_name, b)] {
        println!(
            "  {name:<16} p50 {:>8.1} ms   p95 {:>8.1} ms   p99 {:>8.1} ms",
            v[0], v[1], v[2]
        );
    }
    println!(
        "  ratio {ours_name}/{ref_name}: p50 {:.2}   p95 {:.2}   p99 {:.2}",
        a[0] / b[0],
        a[1] / b[1],
        a[2] / b[2]
    );
}

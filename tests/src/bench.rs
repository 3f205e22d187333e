//! Shared benchmark plumbing: a `main` that skips loudly without prerequisites (and fails in
//! CI), and latency reports (p50 and p95 beside a reference, as ratios).

use std::process::ExitCode;
use std::time::Duration;

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

/// Prints p50 and p95 of `ours` beside `reference`, and their ratios.
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
    let (a50, a95) = (percentile(ours, 0.5), percentile(ours, 0.95));
    let (b50, b95) = (percentile(reference, 0.5), percentile(reference, 0.95));
    println!("\n{what} ({} runs)", ours.len());
    println!(
        "  {ours_name:<16} p50 {:>8.1} ms   p95 {:>8.1} ms",
        ms(a50),
        ms(a95)
    );
    println!(
        "  {ref_name:<16} p50 {:>8.1} ms   p95 {:>8.1} ms",
        ms(b50),
        ms(b95)
    );
    println!(
        "  ratio {ours_name}/{ref_name}: p50 {:.2}   p95 {:.2}",
        ms(a50) / ms(b50),
        ms(a95) / ms(b95)
    );
}

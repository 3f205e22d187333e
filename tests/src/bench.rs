//! Shared benchmark plumbing: a `main` that skips loudly without prerequisites (and fails in
//! CI), the setup the benches share ([`Host`], [`World`]), a section filter, whole-process
//! timing, and latency reports (p50, p95 and p99 beside a reference, as ratios).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::berth::{AgentOptions, Scheduler, berthctl};
use crate::netlab::AgentNetns;
use crate::prereq::{Policy, Prereq};
use crate::{PrivateContainerd, PrivateRegistry, fixtures};

/// What every bench stands on: a temp dir (`berth-bench-NAME-…`), a private containerd in it,
/// and a tokio runtime. Fields drop in order: the runtime, then containerd, then the dir.
#[derive(Debug)]
pub struct Host {
    pub rt: tokio::runtime::Runtime,
    pub containerd: PrivateContainerd,
    pub dir: TempDir,
    name: String,
}

impl Host {
    /// Starts the host of the bench `name`.
    pub fn start(name: &str) -> Result<Host> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-bench-{name}-"))
            .tempdir()?;
        let containerd = PrivateContainerd::start(&dir.path().join("containerd"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Host {
            rt,
            containerd,
            dir,
            name: name.to_owned(),
        })
    }

    /// The temp dir, where the bench keeps its files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A private registry in the temp dir, and the reference of the fixture image
    /// (`bench/NAME:v1`, `sh` and the usual commands) pushed to it.
    pub fn registry(&self) -> Result<(PrivateRegistry, String)> {
        let registry = PrivateRegistry::start(&self.root().join("registry"))?;
        let repo = format!("bench/{}", self.name);
        let image = self
            .rt
            .block_on(fixtures::hello(&registry.host(), &repo, "v1"))?
            .reference;
        Ok((registry, image))
    }

    /// An agent of cluster `bench` on this host's containerd, in containerd namespace
    /// `namespace`, keeping its state in `data_dir`, pulling from `registry` over plain HTTP,
    /// with its bridge and task namespaces in `net`; without a join token.
    pub fn agent_options(
        &self,
        scheduler: &Scheduler,
        registry: &PrivateRegistry,
        net: &AgentNetns,
        data_dir: PathBuf,
        namespace: String,
    ) -> AgentOptions {
        AgentOptions {
            cluster: "bench".into(),
            endpoint: scheduler.endpoint.clone(),
            data_dir,
            containerd_socket: self.containerd.socket().to_path_buf(),
            namespace,
            insecure_registries: vec![registry.host()],
            cleanup_wait: "0".into(),
            host_netns: net.host.path().to_owned(),
            netns_dir: net.netns_dir.clone(),
            extra_args: Vec::new(),
            join: None,
        }
    }
}

/// How the bench's scheduler serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// Plaintext without authentication (`--insecure`): for benches of the task path, not TLS.
    Plaintext,
    /// TLS with API tokens, as deployed; the agent's options carry a join token.
    Tls,
}

/// A [`Host`] with a registry holding the fixture image, a scheduler serving from the temp
/// dir with the cluster `bench` created, a network namespace for the agent (`net`: its bridge and task namespaces live there),
/// and the options of one agent (data dir `agent`, containerd namespace `bench-NAME`) that the
/// bench adjusts before it starts the agent. Fields drop in order, the host last.
#[derive(Debug)]
pub struct World {
    pub opts: AgentOptions,
    pub net: AgentNetns,
    pub scheduler: Scheduler,
    pub image: String,
    pub registry: PrivateRegistry,
    pub host: Host,
}

impl World {
    /// Starts the world of the bench `name`.
    pub fn start(name: &str, serve: Serve) -> Result<World> {
        let host = Host::start(name)?;
        let (registry, image) = host.registry()?;
        let root = host.root();
        let scheduler = Scheduler::start_with(root, None, serve == Serve::Plaintext)?;
        let args = ["create-cluster", "bench"];
        berthctl(&scheduler.ctl_config, "bench", &args)?.success(&args)?;
        let net = AgentNetns::create(&root.join("net"))?;
        let mut opts = host.agent_options(
            &scheduler,
            &registry,
            &net,
            root.join("agent"),
            format!("bench-{name}"),
        );
        if serve == Serve::Tls {
            opts.join = Some(scheduler.join_token("bench")?);
        }
        Ok(World {
            opts,
            net,
            scheduler,
            image,
            registry,
            host,
        })
    }
}

/// Runs a benchmark body that needs containerd and the registry; prints why it could not
/// run, or its error.
/// Registers task definition `def` with `berthctl` (cluster `cluster`, admin config `config`),
/// through a file `<dir>/<family>.json`, as a person would.
pub fn register_definition(
    config: &Path,
    cluster: &str,
    dir: &Path,
    def: &serde_json::Value,
) -> Result<()> {
    let family = def["family"]
        .as_str()
        .context("a task definition without a family")?;
    let path = dir.join(format!("{family}.json"));
    std::fs::write(&path, serde_json::to_vec(def)?)?;
    let args = [
        "register-task-definition",
        "--file",
        &path.to_string_lossy(),
    ];
    berthctl(config, cluster, &args)?.success(&args)?;
    Ok(())
}

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

/// The unit of `/proc`'s tick counts (`sysconf(_SC_CLK_TCK)`): fixed at 100 by Linux's ABI
/// on every architecture Berth builds for.
const USER_HZ: f64 = 100.0;

/// The CPU times, in seconds, in `fields` of a `/proc/<pid>/stat` (or `/proc/thread-self/stat`)
/// file, numbered as proc(5) numbers them: utime is 14, stime 15, cutime 16 and cstime 17.
pub fn stat_seconds<const N: usize>(path: &str, fields: [usize; N]) -> Result<[f64; N]> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The fields after the command (which may hold spaces): field 3 (state) is the first.
    let after: Vec<&str> = stat
        .rsplit_once(')')
        .with_context(|| format!("no command in {path}"))?
        .1
        .split_whitespace()
        .collect();
    let mut seconds = [0.0; N];
    for (out, field) in seconds.iter_mut().zip(fields) {
        let ticks: u64 = field
            .checked_sub(3)
            .and_then(|i| after.get(i))
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {field} in {path}"))?;
        *out = ticks as f64 / USER_HZ;
    }
    Ok(seconds)
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

/// What `b` adds over `a` in paired samples (each pair from one round, the two run back to
/// back): the median of the per-pair differences `b − a` with their p25 and p75, beside the
/// difference of the two p50s. Machine noise that hits one round hits both of its samples,
/// so the paired median holds still where the difference of p50s swings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub pairs: usize,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub p50_difference: f64,
}

impl Paired {
    /// The comparison of `pairs` of (a, b), in any unit.
    pub fn of(pairs: &[(f64, f64)]) -> Paired {
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        let quantile = |v: &[f64], p: f64| {
            if v.is_empty() {
                return 0.0;
            }
            let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
            v[idx.min(v.len() - 1)]
        };
        let diffs = sorted(pairs.iter().map(|(a, b)| b - a).collect());
        let a = sorted(pairs.iter().map(|(a, _)| *a).collect());
        let b = sorted(pairs.iter().map(|(_, b)| *b).collect());
        Paired {
            pairs: pairs.len(),
            median: quantile(&diffs, 0.5),
            p25: quantile(&diffs, 0.25),
            p75: quantile(&diffs, 0.75),
            p50_difference: quantile(&b, 0.5) - quantile(&a, 0.5),
        }
    }

    /// One line: `median +X (p25 +Y, p75 +Z) UNIT over N pairs; difference of the p50s +W`.
    pub fn line(&self, unit: &str) -> String {
        format!(
            "paired median {:+.2} {unit} (p25 {:+.2}, p75 {:+.2}) over {} pairs; difference of \
             the p50s {:+.2} {unit}",
            self.median, self.p25, self.p75, self.pairs, self.p50_difference
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Paired;

    #[test]
    fn paired_differences_are_taken_per_pair() {
        // b is a + 2 in every pair but one, where noise hit b: the p50s differ by 12.
        let pairs = [
            (1.0, 3.0),
            (10.0, 12.0),
            (20.0, 22.0),
            (30.0, 32.0),
            (2.0, 40.0),
        ];
        let p = Paired::of(&pairs);
        assert_eq!((p.pairs, p.median, p.p25, p.p75), (5, 2.0, 2.0, 2.0));
        assert_eq!(p.p50_difference, 12.0);
        let pairs = [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 4.0), (0.0, 5.0)];
        let p = Paired::of(&pairs);
        assert_eq!((p.median, p.p25, p.p75), (3.0, 2.0, 4.0));
        assert_eq!(Paired::of(&[]).pairs, 0);
    }
}

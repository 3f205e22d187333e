//! `make bench`, one collection pass in isolation: berth-runtime's stats sampler over 100 tasks
//! of one container each, on this host's real cgroups (v1 or v2), with no agent around it.
//! Each task gets its cgroup from the runtime (with a CPU quota and a memory limit, as the
//! agent makes them) and one container cgroup beneath it holding a real `sleep` process, as
//! runc would leave it. The first pass (which opens every cgroup's files) is reported apart
//! from the steady passes after it (which read the files they keep open). Per pass: wall time,
//! this thread's CPU time (user and kernel, from `/proc/thread-self/stat`, and on-CPU time
//! from `/proc/thread-self/schedstat`), and the files the sampler opened and read (its own
//! counters). Prints figures; asserts nothing. Run under `strace -c -f` to see the syscalls.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_runtime::{Runtime, RuntimeConfig, StatsSampler, TaskLimits};
use berth_tests::bench::{Host, stat_seconds};

const TASKS: usize = 100;
const PASSES: u32 = 200;

fn main() -> ExitCode {
    berth_tests::bench::main(run)
}

/// The `sleep` processes standing in for containers; killed and reaped when dropped.
struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every cgroup hierarchy's mount point (`/proc/self/mountinfo`) of the version the runtime
/// uses: the one v2 root, or each v1 controller's (a hybrid host's v2 mount is not used).
fn hierarchy_roots(version: &str) -> Result<Vec<PathBuf>> {
    let wanted = if version == "v2" { "cgroup2" } else { "cgroup" };
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            (fstype == wanted).then(|| PathBuf::from(mount))
        })
        .collect())
}

/// This thread's user and kernel CPU seconds and its on-CPU nanoseconds.
fn thread_cpu() -> Result<(f64, f64, u64)> {
    // utime and stime are fields 14 and 15 (proc(5)).
    let [utime, stime] = stat_seconds("/proc/thread-self/stat", [14, 15])?;
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let on_cpu = schedstat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("no on-CPU time in /proc/thread-self/schedstat")?;
    Ok((utime, stime, on_cpu))
}

fn run() -> Result<()> {
    let Host {
        rt,
        containerd,
        dir,
        ..
    } = Host::start("telemetry-pass")?;
    let parent = format!("berth-bench-{}", std::process::id());
    let mut config = RuntimeConfig::new(containerd.socket(), dir.path().join("data"));
    config.namespace = "bench-telemetry-pass".to_owned();
    config.cgroup_parent = parent.clone();
    let runtime = rt.block_on(Runtime::connect(config))?;
    let ids: Vec<String> = (0..TASKS).map(|i| format!("task{i:03}")).collect();
    let mut sleepers = Sleepers(Vec::new());
    let result = bench(&rt, &runtime, &ids, &mut sleepers);
    drop(sleepers);
    // The runtime removes a task's cgroup tree where it made it; the bench made the rest.
    for id in &ids {
        if let Err(error) = rt.block_on(runtime.remove_task_cgroup(id)) {
            eprintln!("cannot remove the cgroup of {id}: {error}");
        }
    }
    for root in hierarchy_roots(&runtime.cgroup_version())? {
        for id in &ids {
            let _ = std::fs::remove_dir(root.join(&parent).join(id).join("c"));
            let _ = std::fs::remove_dir(root.join(&parent).join(id));
        }
        let _ = std::fs::remove_dir(root.join(&parent));
    }
    drop(rt);
    containerd.shutdown();
    result
}

fn bench(
    rt: &tokio::runtime::Runtime,
    runtime: &Runtime,
    ids: &[String],
    sleepers: &mut Sleepers,
) -> Result<()> {
    let limits = TaskLimits {
        cpu_units: Some(256),
        cpu_shares: None,
        memory_mib: Some(64),
    };
    let roots = hierarchy_roots(&runtime.cgroup_version())?;
    for id in ids {
        rt.block_on(runtime.create_task_cgroup(id, &limits))?;
        let rel = runtime.task_cgroup_path(id)?;
        let rel = rel.trim_start_matches('/');
        let child = Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start sleep")?;
        let pid = child.id();
        sleepers.0.push(child);
        for root in &roots {
            let task = root.join(rel);
            if runtime.cgroup_version() == "v2" {
                // v2: the task enables its controllers for its containers.
                let controllers = std::fs::read_to_string(task.join("cgroup.controllers"))?;
                let enable: Vec<String> = controllers
                    .split_whitespace()
                    .map(|c| format!("+{c}"))
                    .collect();
                if !enable.is_empty() {
                    std::fs::write(task.join("cgroup.subtree_control"), enable.join(" "))?;
                }
            }
            // As runc does: the container's cgroup in every hierarchy, with the task's cgroup
            // made where the runtime did not (v1 pids and blkio).
            let container = task.join("c");
            let parent = task.parent().context("a task's cgroup has a parent")?;
            for dir in [parent, &task, &container] {
                if !dir.is_dir() {
                    std::fs::create_dir(dir)?;
                }
                inherit_cpuset(dir)?;
            }
            write_pid(&container, pid)?;
        }
    }
    let sampler = runtime.stats_sampler();
    let containers = ["c".to_owned()];
    println!(
        "\none stats pass over {TASKS} tasks of one container (cgroup {}), {PASSES} passes",
        runtime.cgroup_version()
    );
    println!(
        "{:<8} {:>10} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "pass", "wall ms", "on-CPU ms", "user ms", "sys ms", "opens", "reads"
    );
    let first = measure(&sampler, ids, &containers, 1)?;
    first.print("first");
    let steady = measure(&sampler, ids, &containers, PASSES)?;
    steady.print("steady");
    Ok(())
}

/// v1's cpuset starts empty in a new cgroup, which then takes no process: runc copies the
/// parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        if own.exists() && std::fs::read_to_string(&own)?.trim().is_empty() {
            let parent = dir.parent().context("a cgroup has a parent")?;
            std::fs::write(&own, std::fs::read_to_string(parent.join(file))?)?;
        }
    }
    Ok(())
}

fn write_pid(container: &Path, pid: u32) -> Result<()> {
    let mut procs = std::fs::OpenOptions::new()
        .write(true)
        .open(container.join("cgroup.procs"))?;
    write!(procs, "{pid}")
        .with_context(|| format!("cannot move {pid} into {}", container.display()))?;
    Ok(())
}

/// Means per pass.
struct Figures {
    wall_ms: f64,
    on_cpu_ms: f64,
    user_ms: f64,
    sys_ms: f64,
    opens: f64,
    reads: f64,
}

impl Figures {
    fn print(&self, name: &str) {
        println!(
            "{name:<8} {:>10.3} {:>12.3} {:>10.3} {:>10.3} {:>12.1} {:>12.1}",
            self.wall_ms, self.on_cpu_ms, self.user_ms, self.sys_ms, self.opens, self.reads
        );
    }
}

fn measure(
    sampler: &StatsSampler,
    ids: &[String],
    containers: &[String],
    passes: u32,
) -> Result<Figures> {
    let io_before = sampler.io_counts();
    let (user_before, sys_before, cpu_before) = thread_cpu()?;
    let start = Instant::now();
    for _ in 0..passes {
        let mut sampled = 0;
        for id in ids {
            let sample = sampler.sample_task(id, containers)?;
            sampled += sample.containers.len();
        }
        sampler.retain_tasks(ids);
        anyhow::ensure!(
            sampled == ids.len(),
            "sampled {sampled} containers of {}",
            ids.len()
        );
    }
    let wall = start.elapsed();
    let (user_after, sys_after, cpu_after) = thread_cpu()?;
    let io_after = sampler.io_counts();
    let per = |total: f64| total / f64::from(passes);
    let ms = |d: Duration| per(d.as_secs_f64() * 1000.0);
    Ok(Figures {
        wall_ms: ms(wall),
        on_cpu_ms: per((cpu_after - cpu_before) as f64 / 1e6),
        user_ms: per((user_after - user_before) * 1000.0),
        sys_ms: per((sys_after - sys_before) * 1000.0),
        opens: per((io_after.opens - io_before.opens) as f64),
        reads: per((io_after.reads - io_before.reads) as f64),
    })
}

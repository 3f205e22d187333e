//! The stats sampler on real containers under real cgroup limits: a CPU burner under a CFS
//! quota and a memory holder, read by Berth and by containerd's own client (`ctr tasks
//! metrics`), which must agree within 5 %.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_runtime::{CgroupStats, ContainerLimits, RegistryAuth, StatsSampler, TaskLimits};
use berth_tests::{World, fixtures};

use super::{container, runtime, wait_for_log};

/// How far Berth's figures may be from containerd's.
const TOLERANCE: f64 = 0.05;

pub(crate) async fn cpu_and_memory_agree_with_ctr(w: Arc<World>) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "stats", "v1").await?;
    let (rt, ns) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let task = w.unique("task");
    // Half a core for the task; the burner spins, the holder keeps 32 MiB in /dev/shm (shmem
    // is charged to the cgroup and is never inactive file, so it is in the working set).
    let limits = TaskLimits {
        cpu_units: Some(512),
        cpu_shares: None,
        memory_mib: Some(256),
    };
    rt.create_task_cgroup(&task, &limits).await?;
    let burner = container(
        &task,
        "burner",
        &img.reference,
        &["sh", "-c", "while :; do :; done"],
    );
    let mut holder = container(
        &task,
        "holder",
        &img.reference,
        &[
            "sh",
            "-c",
            "head -c 33554432 /dev/zero > /dev/shm/hold && echo held && exec sleep 3600",
        ],
    );
    holder.limits = ContainerLimits {
        memory_mib: Some(128),
        ..ContainerLimits::default()
    };
    let mut ids = Vec::new();
    let result = async {
        for spec in [&burner, &holder] {
            let id = rt.create_container(spec).await?;
            ids.push(id.clone());
            rt.start_container(&id).await?;
        }
        wait_for_log(&rt.log_path(&task, "holder"), "held").await?;
        let sampler = rt.stats_sampler();
        let names = [
            "burner".to_owned(),
            "holder".to_owned(),
            "never-started".to_owned(),
        ];
        let first = sampler.sample_task(&task, &names)?;
        let got: Vec<&str> = first.containers.iter().map(|c| c.name.as_str()).collect();
        ensure!(got == ["burner", "holder"], "sampled {got:?}");

        // The burner's CPU rate stays under its task's quota (on a busy machine it may get
        // less, so throttling itself is not required).
        let start = (Instant::now(), cpu_ns(&sampler, &task, "burner")?);
        poll_until(Duration::from_secs(20), || {
            Ok(cpu_ns(&sampler, &task, "burner")? > start.1 + 300_000_000)
        })
        .await?;
        let (elapsed, used) = (
            start.0.elapsed(),
            cpu_ns(&sampler, &task, "burner")? - start.1,
        );
        let share = used as f64 / elapsed.as_nanos() as f64;
        ensure!(
            share <= 0.5 * 1.1,
            "the burner used {share:.2} of a core under a 0.5 quota"
        );
        let stats = stats_of(&sampler, &task, "burner")?;
        let cpu = stats.cpu.context("no cpu stats")?;
        ensure!(
            cpu.user_ns + cpu.system_ns > 0,
            "no user or system time: {cpu:?}"
        );
        ensure!(
            stats.pids.map(|p| p.current) >= Some(1),
            "pids {:?}",
            stats.pids
        );
        // The quota is the task's: its cgroup counts the enforcement periods, and its counters
        // cover both containers.
        let whole = sampler.sample_task(&task, &names)?.total();
        let task_cpu = whole.cpu.context("no task cpu stats")?;
        ensure!(
            task_cpu.periods > 0 && task_cpu.throttled_periods <= task_cpu.periods,
            "no CFS periods under a quota: {task_cpu:?}"
        );
        ensure!(
            task_cpu.usage_ns >= cpu.usage_ns,
            "task {task_cpu:?} < burner {cpu:?}"
        );
        ensure!(
            whole.memory.and_then(|m| m.limit_bytes) == Some(256 << 20),
            "the task's limit is its cgroup's: {:?}",
            whole.memory
        );

        // The holder's memory: 32 MiB and a bit, under its 128 MiB limit.
        let memory = stats_of(&sampler, &task, "holder")?
            .memory
            .context("no memory stats")?;
        ensure!(
            memory.limit_bytes == Some(128 << 20),
            "limit {:?}",
            memory.limit_bytes
        );
        ensure!(
            (32 << 20..48 << 20).contains(&memory.working_set_bytes),
            "working set {} for 32 MiB held",
            memory.working_set_bytes
        );

        // containerd's own reading of the same cgroups, between two of Berth's.
        for (name, id) in ["burner", "holder"].iter().zip(&ids) {
            let before = stats_of(&sampler, &task, name)?;
            let out = w
                .containerd()
                .ctr(&["-n", &ns, "tasks", "metrics", id.as_str()])?;
            let after = stats_of(&sampler, &task, name)?;
            let theirs_cpu = metric(&out, &["cpuacct.usage", "cpu.usage_usec"])?;
            let theirs_mem = metric(&out, &["memory.usage_in_bytes", "memory.usage"])?;
            let cpu = |s: &CgroupStats| s.cpu.map(|c| c.usage_ns).unwrap_or(0) as f64;
            let mem = |s: &CgroupStats| s.memory.map(|m| m.usage_bytes).unwrap_or(0) as f64;
            let scale = if out.contains("cpu.usage_usec") {
                1_000.0
            } else {
                1.0
            };
            within(name, "cpu", cpu(&before), theirs_cpu * scale, cpu(&after))?;
            within(name, "memory", mem(&before), theirs_mem, mem(&after))?;
        }
        Ok(())
    }
    .await;
    for id in &ids {
        let _ = rt.stop_container(id, Duration::from_secs(1)).await;
        let _ = rt.delete_container(id).await;
    }
    rt.remove_task_cgroup(&task).await?;
    result
}

fn stats_of(sampler: &StatsSampler, task: &str, name: &str) -> Result<CgroupStats> {
    let sample = sampler.sample_task(task, &[name.to_owned()])?;
    sample
        .containers
        .into_iter()
        .next()
        .map(|c| c.stats)
        .with_context(|| format!("{name} is not in the sample"))
}

fn cpu_ns(sampler: &StatsSampler, task: &str, name: &str) -> Result<u64> {
    stats_of(sampler, task, name)?
        .cpu
        .map(|c| c.usage_ns)
        .context("no cpu stats")
}

/// `theirs` lies within `TOLERANCE` of the range Berth read before and after it.
fn within(name: &str, what: &str, before: f64, theirs: f64, after: f64) -> Result<()> {
    let (low, high) = (before.min(after), before.max(after));
    ensure!(
        theirs >= low * (1.0 - TOLERANCE) && theirs <= high * (1.0 + TOLERANCE),
        "{name} {what}: ctr says {theirs}, Berth read {before} then {after}"
    );
    Ok(())
}

/// The value of the first of `names` in `ctr tasks metrics`' METRIC/VALUE table.
fn metric(out: &str, names: &[&str]) -> Result<f64> {
    for line in out.lines() {
        let mut fields = line.split_whitespace();
        if let (Some(key), Some(value)) = (fields.next(), fields.next())
            && names.contains(&key)
        {
            return value
                .parse()
                .with_context(|| format!("ctr's {key} value {value:?}"));
        }
    }
    bail!("none of {names:?} in ctr's output:\n{out}")
}

async fn poll_until(limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done()? {
        if Instant::now() > deadline {
            bail!("not done within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

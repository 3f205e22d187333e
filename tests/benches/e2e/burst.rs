//! Bursts and density (`cargo bench --bench e2e -- burst`): many tasks on one agent at once.
//!
//! - The burst: 100 tasks asked for at once (ten RunTask calls of ten, concurrently), timed
//!   until every one is RUNNING as the scheduler reports it, beside 100 `ctr run -d` run eight
//!   at a time on the same containerd in the same run; with the agent's CPU time (user and
//!   system, from /proc) and its peak resident memory (VmHWM, reset before the burst), and each
//!   task's own time to RUNNING, whose max over the median shows a task left behind.
//!   Beside them, the runtime's work in each burst: the CPU the whole host spent (`/proc/stat`)
//!   less that of the clients (Berth's agent, scheduler and this process; the `ctr` processes),
//!   that is containerd, the shims, runc and `runc init`, the registry and the kernel's own
//!   threads. Spread over every core it is the shortest either burst could take if its client
//!   cost nothing: Berth's floor, as a ratio to the `ctr` burst, says how far any change to
//!   Berth alone can take the ratio.
//! - Density: 250 running tasks; the agent's resident memory (with its anonymous and
//!   file-backed parts and its thread count, before the tasks and with them), a `berthctl
//!   describe-tasks` of all of them, and a stop of all of them until every one is STOPPED,
//!   timed. Section `density` runs it alone; `BERTH_BENCH_DENSITY` sets how many tasks.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_proto::v1::control_service_client::ControlServiceClient;
use berth_proto::v1::{
    DescribeTasksRequest, RunTaskRequest, StopTaskRequest, TaskStatus, run_task_request,
};
use berth_tests::bench::{percentile, register_definition, stat_seconds, timed};
use berth_tests::berth::ctl_command;
use tonic::transport::Channel;

use crate::Ctr;

/// Tasks in the burst.
const BURST: usize = 100;
/// `ctr run -d` processes at a time in the reference burst.
const CTR_PARALLEL: usize = 8;
/// Running tasks for the density figures.
const DENSITY: usize = 250;
/// What one RunTask call may ask for (the scheduler's limit, as ECS's).
const PER_CALL: usize = 10;
/// How long a burst or a stop of all may take on a loaded host.
const DEADLINE: Duration = Duration::from_secs(600);
/// The family the section registers: one `sleep` container with a small reservation, so 250
/// fit on a small host.
const FAMILY: &str = "burst-sleeper";

/// What the section needs from the bench's setup.
pub(crate) struct Burst<'a> {
    pub(crate) config: &'a Path,
    pub(crate) cluster: &'a str,
    pub(crate) endpoint: &'a str,
    /// `ctr` on the agent's containerd and namespace.
    pub(crate) ctr: &'a Ctr<'a>,
    pub(crate) agent_pid: u32,
    pub(crate) scheduler_pid: u32,
    /// Where the section writes its task definition.
    pub(crate) dir: &'a Path,
}

impl Burst<'_> {
    /// The burst, then (or only, with `density_only`) the density figures.
    pub(crate) fn run(&self, rt: &tokio::runtime::Runtime, density_only: bool) -> Result<()> {
        self.register()?;
        let client = rt.block_on(ControlServiceClient::connect(self.endpoint.to_owned()))?;
        if !density_only {
            self.burst(rt, &client)?;
        }
        self.density(rt, &client)
    }

    fn register(&self) -> Result<()> {
        let def = serde_json::json!({"family": FAMILY, "networkMode": "none",
            "containerDefinitions": [{"name": "c", "image": self.ctr.image, "memory": 8,
                "stopTimeout": 1, "command": ["sleep", "3600"]}]});
        register_definition(self.config, self.cluster, self.dir, &def)
    }

    fn burst(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &ControlServiceClient<Channel>,
    ) -> Result<()> {
        reset_peak_rss(self.agent_pid);
        let cpu_before = cpu_time(self.agent_pid)?;
        let work_before = Work::now(&[self.agent_pid, self.scheduler_pid])?;
        let began = Instant::now();
        let ids = rt.block_on(self.run_tasks(client, BURST))?;
        let mut each = rt.block_on(self.until_all(client, &ids, TaskStatus::Running, began))?;
        let berth = began.elapsed();
        let berth_work = Work::now(&[self.agent_pid, self.scheduler_pid])?.since(&work_before);
        let cpu = cpu_time(self.agent_pid)? - cpu_before;
        let peak = peak_rss_kib(self.agent_pid)?;
        rt.block_on(self.stop_all(client, &ids))?;

        let (ctr, ctr_work) = self.ctr_burst()?;
        each.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = percentile(&each, 0.5);
        let max = each.last().copied().unwrap_or_default();
        println!("\nburst: {BURST} tasks asked for at once, until all RUNNING (one agent)");
        println!(
            "  {:<44} {:>9.1} ms",
            "berth (RunTask x10 of 10)",
            ms(berth)
        );
        println!(
            "  {:<44} {:>9.1} ms",
            format!("ctr run -d, {CTR_PARALLEL} at a time"),
            ms(ctr)
        );
        println!(
            "  ratio berth / ctr {:.2} (goal: at most 0.7)",
            berth.as_secs_f64() / ctr.as_secs_f64()
        );
        println!(
            "  each task to RUNNING: median {:.1} ms, max {:.1} ms, max/median {:.2} (goal: at most 2)",
            ms(median),
            ms(max),
            max.as_secs_f64() / median.as_secs_f64().max(f64::EPSILON)
        );
        println!(
            "  agent CPU (user + system) {:.1} ms, peak RSS {:.1} MiB",
            ms(cpu),
            peak as f64 / 1024.0
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("  CPU of each burst, ms          runtime's work   client   whole host");
        for (name, work) in [("berth", &berth_work), ("ctr run -d", &ctr_work)] {
            println!(
                "    {name:<28} {:>14.0} {:>8.0} {:>12.0}",
                ms(work.runtime()),
                ms(work.clients),
                ms(work.host)
            );
        }
        let floor = berth_work.runtime() / cores as u32;
        println!(
            "  berth's floor (the runtime's work of its burst over {cores} cores, Berth's own CPU \
             at zero) {:.1} ms: ratio {:.2}",
            ms(floor),
            floor.as_secs_f64() / ctr.as_secs_f64()
        );
        Ok(())
    }

    fn density(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &ControlServiceClient<Channel>,
    ) -> Result<()> {
        let density = match std::env::var("BERTH_BENCH_DENSITY") {
            Ok(n) => n
                .parse()
                .context("BERTH_BENCH_DENSITY: a number of tasks")?,
            Err(_) => DENSITY,
        };
        let before = Memory::of(self.agent_pid)?;
        let began = Instant::now();
        let ids = rt.block_on(self.run_tasks(client, density))?;
        rt.block_on(self.until_all(client, &ids, TaskStatus::Running, began))?;
        let started = began.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let with = Memory::of(self.agent_pid)?;
        let mut describe = ctl_command(self.config)?;
        describe
            .args(["--cluster", self.cluster, "describe-tasks"])
            .args(&ids);
        let described = timed(&mut describe)?;
        let stop_began = Instant::now();
        rt.block_on(self.stop_all(client, &ids))?;
        let stopped = stop_began.elapsed();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("\ndensity: {density} running tasks on one agent");
        println!(
            "  {:<44} {:>9.1} ms",
            "all started, until all RUNNING",
            ms(started)
        );
        println!(
            "  {:<44} {:>9.1} MiB (goal: at most 40 at {DENSITY})",
            "agent RSS",
            with.rss as f64 / 1024.0
        );
        println!("  agent before the tasks: {before}");
        println!("  agent with the tasks:   {with}");
        println!(
            "  agent RSS per task {:.1} KiB",
            (with.rss as f64 - before.rss as f64) / density.max(1) as f64
        );
        println!(
            "  {:<44} {:>9.1} ms",
            "berthctl describe-tasks of all",
            ms(described)
        );
        println!(
            "  {:<44} {:>9.1} ms",
            "stop of all, until all STOPPED",
            ms(stopped)
        );
        Ok(())
    }

    /// Asks for `n` tasks in concurrent RunTask calls of up to [`PER_CALL`]; their IDs.
    async fn run_tasks(
        &self,
        client: &ControlServiceClient<Channel>,
        n: usize,
    ) -> Result<Vec<String>> {
        let mut calls = tokio::task::JoinSet::new();
        for first in (0..n).step_by(PER_CALL) {
            let mut client = client.clone();
            let request = RunTaskRequest {
                cluster: self.cluster.to_owned(),
                definition: Some(run_task_request::Definition::TaskDefinition(
                    FAMILY.to_owned(),
                )),
                count: PER_CALL.min(n - first) as u32,
                started_by: "bench".to_owned(),
                ..Default::default()
            };
            calls.spawn(async move { client.run_task(request).await });
        }
        let mut ids = Vec::with_capacity(n);
        while let Some(done) = calls.join_next().await {
            let tasks = done?.context("run task")?.into_inner().tasks;
            ids.extend(tasks.into_iter().map(|t| t.task_id));
        }
        if ids.len() != n {
            bail!("asked for {n} tasks, got {}", ids.len());
        }
        Ok(ids)
    }

    /// Waits until every task in `ids` has reached `status`, asking every 5 ms; each task's
    /// time from `since` to when it was first seen there.
    async fn until_all(
        &self,
        client: &ControlServiceClient<Channel>,
        ids: &[String],
        status: TaskStatus,
        since: Instant,
    ) -> Result<Vec<Duration>> {
        let mut client = client.clone();
        let mut seen: std::collections::HashMap<String, Duration> = Default::default();
        let deadline = Instant::now() + DEADLINE;
        while seen.len() < ids.len() {
            let waiting: Vec<String> = ids
                .iter()
                .filter(|id| !seen.contains_key(*id))
                .cloned()
                .collect();
            for chunk in waiting.chunks(100) {
                let tasks = client
                    .describe_tasks(DescribeTasksRequest {
                        cluster: self.cluster.to_owned(),
                        task_ids: chunk.to_vec(),
                    })
                    .await?
                    .into_inner()
                    .tasks;
                for t in tasks {
                    if t.last_status >= status as i32 {
                        if status == TaskStatus::Running && t.last_status > status as i32 {
                            bail!(
                                "task {} stopped before it was seen RUNNING: {}",
                                t.task_id,
                                t.stopped_reason
                            );
                        }
                        seen.entry(t.task_id).or_insert_with(|| since.elapsed());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} tasks did not reach {status:?} within {}s",
                    ids.len() - seen.len(),
                    ids.len(),
                    DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(seen.into_values().collect())
    }

    /// Stops every task (concurrent StopTask calls) and waits until all are STOPPED.
    async fn stop_all(&self, client: &ControlServiceClient<Channel>, ids: &[String]) -> Result<()> {
        let mut calls = tokio::task::JoinSet::new();
        for id in ids {
            let mut client = client.clone();
            let request = StopTaskRequest {
                cluster: self.cluster.to_owned(),
                task_id: id.clone(),
                ..Default::default()
            };
            calls.spawn(async move { client.stop_task(request).await });
        }
        while let Some(done) = calls.join_next().await {
            done?.context("stop task")?;
        }
        self.until_all(client, ids, TaskStatus::Stopped, Instant::now())
            .await
            .map(|_| ())
    }

    /// 100 `ctr run -d`, each its own process with output on /dev/null, [`CTR_PARALLEL`] at a
    /// time; the wall time of all, and the CPU spent meanwhile. The containers are removed
    /// afterwards, outside both.
    fn ctr_burst(&self) -> Result<(Duration, Work)> {
        let next = AtomicUsize::new(0);
        let work_before = Work::now(&[])?;
        let began = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = (0..CTR_PARALLEL)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= BURST {
                                return Ok(());
                            }
                            self.ctr.start_detached(&format!("burst-{i}"))?;
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a ctr worker panicked"))??;
            }
            Ok(())
        })?;
        let took = began.elapsed();
        let work = Work::now(&[])?.since(&work_before);
        for i in 0..BURST {
            self.ctr.remove(&format!("burst-{i}"))?;
        }
        Ok((took, work))
    }
}

/// A process's resident memory, its parts, and its threads (from /proc/<pid>/status).
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        Ok(Memory {
            rss: status_kib(pid, "VmRSS:")?,
            anon: status_kib(pid, "RssAnon:")?,
            file: status_kib(pid, "RssFile:")?,
            threads: status_kib(pid, "Threads:")?,
        })
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |k: u64| k as f64 / 1024.0;
        write!(
            f,
            "RSS {:.1} MiB (anonymous {:.1}, file {:.1}), {} threads",
            mib(self.rss),
            mib(self.anon),
            mib(self.file),
            self.threads
        )
    }
}

/// A process's CPU time so far (user and system), from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Result<Duration> {
    // utime and stime are fields 14 and 15 (proc(5)).
    let [utime, stime] = stat_seconds(&format!("/proc/{pid}/stat"), [14, 15])?;
    Ok(Duration::from_secs_f64(utime + stime))
}

/// CPU spent so far: by the whole host, and by a burst's clients (the processes given, this
/// process, and the children it has waited for, which are the `ctr` processes of its burst).
struct Work {
    host: Duration,
    clients: Duration,
}

impl Work {
    fn now(daemons: &[u32]) -> Result<Work> {
        let mut clients = Duration::ZERO;
        for pid in daemons {
            clients += cpu_time(*pid)?;
        }
        let [user, system, child_user, child_system] =
            stat_seconds("/proc/self/stat", [14, 15, 16, 17])?;
        clients += Duration::from_secs_f64(user + system + child_user + child_system);
        Ok(Work {
            host: host_busy()?,
            clients,
        })
    }

    fn since(&self, before: &Work) -> Work {
        Work {
            host: self.host.saturating_sub(before.host),
            clients: self.clients.saturating_sub(before.clients),
        }
    }

    /// What the host spent beside the clients: containerd, shims, runc, the kernel's threads.
    fn runtime(&self) -> Duration {
        self.host.saturating_sub(self.clients)
    }
}

/// The time every CPU of the host has spent busy (`/proc/stat`'s first line: all but idle and
/// iowait), in `USER_HZ` ticks of 10 ms.
fn host_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().context("a field of /proc/stat's cpu line"))
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(Duration::from_millis(busy * 10))
}

/// Resets the process's peak resident memory (VmHWM) to its current one.
fn reset_peak_rss(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("cannot reset the agent's peak RSS ({e}); the peak shown is since its start");
    }
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

//! A task driver: runs one task's lifecycle on its own tokio task (pull, create, start, watch,
//! stop, clean up), reporting each step to the engine as a [`TaskEvent`]. It owns nothing the
//! engine owns; it only acts on the host and reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::{HealthStatus, TaskAssignment, TaskDefinition, TaskState};
use berth_runtime::{ContainerId, ContainerInfo, ContainerSpec, ExitStatus, NetworkNamespace};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod finish;
mod net;
mod watch;

use super::deps::{Plan, Progress, Step};
use super::restart::{self, Decision, Policy};
use super::{Command, EngineConfig, TaskEvent};
use crate::backoff::{Backoff, host_retries};
use crate::network::{self, Mode, TaskNetworking};
use crate::runtime::ContainerRuntime;
use crate::{convert, devices, envfile, seccomp, volumes};
use net::{join_network, set_up_namespaces};

/// What the engine tells a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop every container (SIGTERM, then SIGKILL after its stop timeout).
    Stop,
    /// A container's health changed (containers waiting for it to be HEALTHY may start).
    Health { name: String, status: HealthStatus },
}

/// What a driver resuming after an agent restart knows.
#[derive(Debug, Clone)]
pub(super) struct Resume {
    pub(super) state: TaskState,
    pub(super) containers: Vec<ContainerInfo>,
    /// Why the task is taken over when it is not an agent restart (its driver failed): the
    /// reason a task that had not started, or whose containers are gone, fails with.
    pub(super) reason: Option<String>,
}

pub(super) struct Driver<R: ContainerRuntime> {
    pub(super) runtime: Arc<R>,
    pub(super) network: Arc<dyn TaskNetworking>,
    pub(super) config: EngineConfig,
    pub(super) events: mpsc::Sender<Command>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) cancel: CancellationToken,
    pub(super) assignment: TaskAssignment,
    /// Restart counts already reported, by container name (after an agent restart).
    pub(super) restart_counts: HashMap<String, u32>,
}

/// A container the driver created: its name, containerd ID and stop timeout.
#[derive(Debug, Clone)]
struct Created {
    name: String,
    id: ContainerId,
    stop_timeout: Duration,
}

/// A container's wait ended: its index in the task and the outcome.
type Exit = (usize, Result<ExitStatus, berth_runtime::Error>);

/// A restart ended: the container's index, the exit that caused it, and the outcome (None when
/// a stop order or the agent's shutdown came during the backoff and nothing was restarted).
type Restarted = (usize, ExitStatus, Option<Result<(), berth_runtime::Error>>);

/// What the driver tracks of each container's restarts (by index into the created ones).
struct Restarts {
    policies: Vec<Option<Policy>>,
    backoff: restart::Backoff,
    /// When each container's current run started (tokio's clock, so tests can pause it).
    started: Vec<Option<Instant>>,
    /// Restarts so far, reported as the container's restartCount.
    counts: Vec<u32>,
    /// Consecutive restarts, for the backoff.
    streaks: Vec<u32>,
    /// Cancelled when the task stops: restarts waiting out their backoff give up.
    stop: CancellationToken,
}

/// A start sequence that ended early: what it had created and started by then, and why.
struct Stalled {
    created: Vec<Created>,
    /// How many of `created` (from the first) were started.
    started: usize,
    interrupted: Interrupted,
}

impl Stalled {
    fn before_create(interrupted: Interrupted) -> Self {
        Self {
            created: Vec::new(),
            started: 0,
            interrupted,
        }
    }
}

/// Why the start sequence ended early.
enum Interrupted {
    /// The engine asked to stop.
    Stop,
    /// The agent is shutting down: leave everything as it is.
    Shutdown,
    /// A step failed; the reason is for people.
    Failed(String),
}

impl<R: ContainerRuntime> Driver<R> {
    fn task_id(&self) -> &str {
        &self.assignment.task_id
    }

    async fn report(&self, event: TaskEvent) {
        let _ = self
            .events
            .send(Command::Event {
                task_id: self.assignment.task_id.clone(),
                event,
            })
            .await;
    }

    /// Waits until the engine has applied (and persisted) every event reported so far. Events
    /// and the barrier share one queue, which the engine applies in order.
    async fn applied(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.events.send(Command::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub(super) async fn run(mut self, resume: Option<Resume>) {
        let definition = self.assignment.definition.clone().unwrap_or_default();
        match resume {
            Some(r) => {
                if let Some((created, running)) = self.resume(&definition, r).await {
                    self.report(TaskEvent::Resumed).await;
                    // Every container was started before the restart: only watching is left.
                    let plan =
                        Plan::new(&definition).unwrap_or_else(|_| Plan::independent(&definition));
                    let alive: Vec<bool> = created
                        .iter()
                        .map(|c| running.iter().any(|r| r.name == c.name))
                        .collect();
                    let now = Instant::now();
                    let progress = alive
                        .iter()
                        .map(|&a| {
                            if a {
                                Progress::Started(now)
                            } else {
                                Progress::Exited(255)
                            }
                        })
                        .collect();
                    self.supervise(plan, created, progress, alive, false).await;
                }
            }
            None => match self.start(&definition).await {
                Ok((plan, created)) => {
                    let n = created.len();
                    self.supervise(
                        plan,
                        created,
                        vec![Progress::Waiting; n],
                        vec![false; n],
                        true,
                    )
                    .await;
                }
                Err(Stalled {
                    interrupted: Interrupted::Shutdown,
                    ..
                }) => {}
                Err(Stalled {
                    created,
                    started,
                    interrupted: Interrupted::Stop,
                }) => {
                    self.stop_and_clean(created, started).await;
                }
                Err(Stalled {
                    created,
                    started,
                    interrupted: Interrupted::Failed(reason),
                }) => {
                    tracing::warn!(%reason, "task failed to start");
                    self.report(TaskEvent::Failed { reason }).await;
                    self.stop_and_clean(created, started).await;
                }
            },
        }
    }

    /// Pulls and creates; [`Self::supervise`] starts. On failure returns what was created so far.
    async fn start(&mut self, def: &TaskDefinition) -> Result<(Plan, Vec<Created>), Stalled> {
        let task_id = self.task_id().to_owned();
        let plan = Plan::new(def).map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
        let mode = Mode::of(def).map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
        let network_plans = network::plan(
            &task_id,
            def,
            self.assignment.network_attachment.as_ref(),
            &self.config.host_dns,
        )
        .map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
        // Until its network is set up, a container has a namespace of its own (none) or the
        // host's; set_up_network joins the others to theirs.
        let base_network = if mode == Mode::Host {
            NetworkNamespace::Host
        } else {
            NetworkNamespace::New
        };
        if !self.config.allow_privileged
            && let Some(c) = def.containers.iter().find(|c| c.privileged)
        {
            return Err(Stalled::before_create(Interrupted::Failed(format!(
                "container {} asks to run privileged, which this agent does not allow: set \
                 allow_privileged = true (BERTH_ALLOW_PRIVILEGED) in the agent's configuration \
                 to permit it",
                c.name
            ))));
        }
        let mut specs: Vec<_> = def
            .containers
            .iter()
            .map(|c| convert::container_spec(&task_id, c, &base_network))
            .collect();
        for (spec, c) in specs.iter_mut().zip(&def.containers) {
            let failed = |e: String| {
                Stalled::before_create(Interrupted::Failed(format!("container {}: {e}", c.name)))
            };
            let from_files = envfile::load(&c.environment_files).await.map_err(failed)?;
            envfile::apply(&mut spec.environment, from_files);
            if let Some(path) = convert::seccomp_profile_path(c) {
                spec.seccomp = Some(seccomp::load(path).await.map_err(failed)?);
            }
            // Devices are checked against the agent's allow-list before anything is pulled,
            // and mapped as the host resolves them now.
            for mapping in &mut spec.devices {
                let host_path = mapping.host_path.to_string_lossy().into_owned();
                mapping.host_path =
                    devices::allowed_device(&c.name, &host_path, &self.config.allowed_devices)
                        .map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
            }
        }
        let limits = convert::task_limits(def);
        self.runtime.validate_limits(&limits, &specs).map_err(|e| {
            Stalled::before_create(Interrupted::Failed(format!("invalid resource limits: {e}")))
        })?;
        // Host paths are checked against the agent's allow-list before anything is pulled.
        let task_volumes = convert::task_volumes(def);
        let mut volume_paths = BTreeMap::new();
        for (name, source) in &task_volumes.host {
            let path = volumes::allowed_host_path(name, source, &self.config.volume_host_paths)
                .map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
            volume_paths.insert(name.clone(), path);
        }

        // The namespaces need nothing from the images: they are set up beside the pulls, and
        // awaited before any early return, so a cleanup never races a setup in flight.
        let setup = {
            let network = Arc::clone(&self.network);
            let (def, plans) = (def.clone(), network_plans.clone());
            tokio::spawn(
                async move { set_up_namespaces(&*network, &def, &plans).await }
                    .instrument(tracing::Span::current()),
            )
        };
        let pulled = self.pull_images(&specs).await;
        let nets = match setup.await {
            Ok(result) => result,
            Err(e) => Err(format!("the task's network setup ended abnormally: {e}")),
        };
        let digests = pulled?;
        let nets = nets.map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
        self.report(TaskEvent::Pulled { digests }).await;

        // The task's own volumes, removed with the task by the cleanup on every path.
        match self
            .runtime
            .create_task_volumes(&task_id, &task_volumes.task)
            .await
        {
            Ok(made) => volume_paths.extend(made),
            Err(e) => {
                return Err(Stalled::before_create(Interrupted::Failed(format!(
                    "cannot create the task's volumes: {e}"
                ))));
            }
        }
        for (spec, c) in specs.iter_mut().zip(&def.containers) {
            spec.mounts = convert::container_mounts(def, c, &volume_paths)
                .map_err(|r| Stalled::before_create(Interrupted::Failed(r)))?;
        }

        let network = join_network(def, mode, &network_plans, &nets, &mut specs);

        if let Err(e) = self.runtime.create_task_cgroup(&task_id, &limits).await {
            return Err(Stalled::before_create(Interrupted::Failed(format!(
                "cannot create the task's cgroup: {e}"
            ))));
        }
        let notes = self.swap_notes(def);
        let mut created = Vec::new();
        for (spec, def) in specs.iter().zip(&def.containers) {
            match self.runtime.create(spec).await {
                Ok(id) => created.push(Created {
                    name: spec.name.clone(),
                    id,
                    stop_timeout: stop_timeout(def.stop_timeout_seconds, self.config.stop_timeout),
                }),
                Err(e) => {
                    return Err(Stalled {
                        created,
                        started: 0,
                        interrupted: Interrupted::Failed(format!(
                            "CannotCreateContainerError: container {}: {e}",
                            spec.name
                        )),
                    });
                }
            }
        }
        let runtime_ids = created
            .iter()
            .map(|c| (c.name.clone(), c.id.to_string()))
            .collect();
        self.report(TaskEvent::Created {
            runtime_ids,
            network,
        })
        .await;
        for (name, note) in notes {
            self.report(TaskEvent::ContainerNote { name, note }).await;
        }
        // The task endpoint finds a caller's task by its address: the engine must know the
        // addresses (reported with CREATED) before any container can ask, from its very first
        // instruction.
        self.applied().await;
        if let Ok(Control::Stop) = self.control.try_recv() {
            return Err(Stalled {
                created,
                started: 0,
                interrupted: Interrupted::Stop,
            });
        }
        Ok((plan, created))
    }

    /// Pulls every image of the task (each once); the digests by container name.
    async fn pull_images(
        &mut self,
        specs: &[ContainerSpec],
    ) -> Result<HashMap<String, String>, Stalled> {
        self.report(TaskEvent::PullStarted).await;
        let mut digests = HashMap::new();
        let mut pulled: HashMap<String, String> = HashMap::new();
        for spec in specs {
            if let Some(d) = pulled.get(&spec.image) {
                digests.insert(spec.name.clone(), d.clone());
                continue;
            }
            let auth = convert::auth_for(&spec.image, &self.assignment.registry_credentials);
            let runtime = Arc::clone(&self.runtime);
            let image_ref = spec.image.clone();
            let pull = tokio::time::timeout(self.config.pull_timeout, async move {
                runtime.pull(&image_ref, &auth).await
            });
            let outcome = self
                .interruptible(pull)
                .await
                .map_err(Stalled::before_create)?;
            let image = match outcome {
                Ok(Ok(image)) => image,
                Ok(Err(e)) => {
                    return Err(Stalled::before_create(Interrupted::Failed(format!(
                        "CannotPullContainerError: {e}"
                    ))));
                }
                Err(_) => {
                    return Err(Stalled::before_create(Interrupted::Failed(format!(
                        "CannotPullContainerError: pull of {} did not finish within {}s",
                        spec.image,
                        self.config.pull_timeout.as_secs()
                    ))));
                }
            };
            pulled.insert(spec.image.clone(), image.manifest_digest.clone());
            digests.insert(spec.name.clone(), image.manifest_digest);
        }
        Ok(digests)
    }

    /// What the host cannot apply of the containers' swap settings, by container name (see
    /// [`convert::swap_note`]); the containers run without it, as on Docker.
    fn swap_notes(&self, def: &TaskDefinition) -> Vec<(String, String)> {
        let asks = def.containers.iter().any(|c| {
            c.linux_parameters
                .as_ref()
                .is_some_and(|l| l.max_swap_mib.is_some())
        });
        if !asks {
            return Vec::new();
        }
        match self.runtime.swap_support(self.task_id()) {
            Ok(support) => def
                .containers
                .iter()
                .filter_map(|c| convert::swap_note(c, support).map(|n| (c.name.clone(), n)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether this host limits swap");
                Vec::new()
            }
        }
    }

    /// Runs `fut` unless a stop order or shutdown comes first.
    async fn interruptible<F: std::future::Future>(
        &mut self,
        fut: F,
    ) -> Result<F::Output, Interrupted> {
        tokio::select! {
            out = fut => Ok(out),
            Some(Control::Stop) = self.control.recv() => Err(Interrupted::Stop),
            _ = self.cancel.cancelled() => Err(Interrupted::Shutdown),
        }
    }

    /// Starts the containers in dependency order (when `starting`) and watches every started
    /// one from its start, until all have exited; when told to stop, or when the start fails,
    /// stops the running containers in the reverse order of their dependencies. Then reports
    /// STOPPED and cleans up. `progress` and `alive` are by index into `created`.
    ///
    /// A container with a restart policy that exits while the task is not stopping may be
    /// restarted in place (see `restart.rs`): it then stays alive through its backoff, counts
    /// as still started for its dependents, and is reported as restarted rather than exited,
    /// so the essential-container rule only sees exits that end a container for good.
    async fn supervise(
        &mut self,
        plan: Plan,
        created: Vec<Created>,
        mut progress: Vec<Progress>,
        mut alive: Vec<bool>,
        mut starting: bool,
    ) {
        let mut waits: FuturesUnordered<BoxFuture<'static, Exit>> = FuturesUnordered::new();
        for (i, c) in created.iter().enumerate().filter(|(i, _)| alive[*i]) {
            waits.push(self.wait_for(i, c, Duration::ZERO));
        }
        let mut restarts = self.restarts(&created, &alive);
        let checks = self.checks(&created);
        // Each running container's health checks, until it exits or the task stops.
        let mut probing: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        let mut probe_stops: Vec<Option<CancellationToken>> = vec![None; created.len()];
        for i in (0..created.len()).filter(|i| alive[*i]) {
            if let Some(check) = &checks[i] {
                probing.push(self.probe(&created[i], check.clone(), &mut probe_stops[i]));
            }
        }
        let mut restarting: FuturesUnordered<BoxFuture<'static, Restarted>> =
            FuturesUnordered::new();
        let mut retries: HashMap<usize, Backoff> = HashMap::new();
        let mut stops: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        let mut stop_issued = vec![false; created.len()];
        let mut stopping = false;
        loop {
            let mut deadline = None;
            while starting && !stopping {
                match plan.step(&progress, Instant::now()) {
                    Step::Done => {
                        starting = false;
                        self.report(TaskEvent::Started).await;
                    }
                    Step::Fail(reason) => {
                        tracing::warn!(%reason, "task failed to start");
                        self.report(TaskEvent::Failed { reason }).await;
                        stopping = true;
                    }
                    Step::Start { ready, deadline: d } if ready.is_empty() => {
                        if !alive.iter().any(|a| *a) {
                            // Nothing runs that could still meet a condition.
                            let reason = "the containers' dependencies cannot be met".to_owned();
                            self.report(TaskEvent::Failed { reason }).await;
                            stopping = true;
                        }
                        deadline = d;
                        break;
                    }
                    Step::Start { ready, .. } => {
                        for i in ready {
                            let c = &created[i];
                            tracing::info!(container.name = %c.name, "starting container");
                            if let Err(e) = self.runtime.start(&c.id).await {
                                // As on ECS: the container is STOPPED with the reason; the
                                // engine stops the task only for an essential one (which
                                // ends the start here too). Its volumes stay usable through
                                // volumesFrom: it was created.
                                let reason =
                                    format!("CannotStartContainerError: container {}: {e}", c.name);
                                let essential = self.is_essential(&c.name);
                                tracing::warn!(container.name = %c.name, essential, %reason, "container cannot start");
                                progress[i] = Progress::CannotStart;
                                self.report(TaskEvent::ContainerCannotStart {
                                    name: c.name.clone(),
                                    reason,
                                })
                                .await;
                                if essential {
                                    stopping = true;
                                    break;
                                }
                                continue;
                            }
                            progress[i] = Progress::Started(Instant::now());
                            restarts.started[i] = Some(Instant::now());
                            alive[i] = true;
                            waits.push(self.wait_for(i, c, Duration::ZERO));
                            if let Some(check) = &checks[i] {
                                probing.push(self.probe(c, check.clone(), &mut probe_stops[i]));
                            }
                        }
                    }
                }
            }
            if stopping {
                restarts.stop.cancel();
                for token in probe_stops.iter_mut().filter_map(Option::take) {
                    token.cancel();
                }
                for i in plan.stoppable(&alive) {
                    if !std::mem::replace(&mut stop_issued[i], true) {
                        stops.push(self.stop_container(&created[i]));
                    }
                }
            }
            if !starting_or_alive(starting && !stopping, &alive) {
                break;
            }
            let timer = deadline.map(tokio::time::sleep_until);
            tokio::select! {
                Some((i, result)) = waits.next() => {
                    let name = created[i].name.clone();
                    let exit = match result {
                        Ok(exit) => exit,
                        // The container is gone from containerd: nothing runs any more.
                        Err(error @ berth_runtime::Error::NotFound { .. }) => {
                            tracing::warn!(container.name = %name, %error, "container vanished");
                            ExitStatus { code: 255, exited_at: SystemTime::now(), oom_killed: false }
                        }
                        // Anything else (containerd restarting, a broken connection) says
                        // nothing about the container, which the shim keeps running: wait again.
                        Err(error) => {
                            let delay = retries.entry(i).or_insert_with(host_retries).next_delay();
                            tracing::warn!(container.name = %name, %error, retry_in_ms = delay.as_millis() as u64, "waiting for the container failed; retrying");
                            waits.push(self.wait_for(i, &created[i], delay));
                            continue;
                        }
                    };
                    // This run is over: so are its health checks (a restart starts new ones).
                    if let Some(token) = probe_stops[i].take() {
                        token.cancel();
                    }
                    if !stopping && let Some(delay) = restarts.decide(i, &exit, &name) {
                        tracing::info!(container.name = %name, exit.code = exit.code, oom = exit.oom_killed, restart_in_ms = delay.as_millis() as u64, "container exited; restarting it");
                        restarting.push(self.restart_after(i, &created[i], exit, delay, restarts.stop.clone()));
                        continue;
                    }
                    alive[i] = false;
                    progress[i] = Progress::Exited(exit.code);
                    tracing::info!(container.name = %name, exit.code = exit.code, oom = exit.oom_killed, "container exited");
                    self.report(TaskEvent::ContainerExited { name, exit }).await;
                }
                Some((i, exit, outcome)) = restarting.next() => {
                    let name = created[i].name.clone();
                    match outcome {
                        Some(Ok(())) => {
                            restarts.counts[i] += 1;
                            restarts.started[i] = Some(Instant::now());
                            waits.push(self.wait_for(i, &created[i], Duration::ZERO));
                            if let Some(check) = &checks[i] {
                                probing.push(self.probe(&created[i], check.clone(), &mut probe_stops[i]));
                            }
                            // A stop order that came while it was being restarted stops it too.
                            stop_issued[i] = false;
                            let restart_count = restarts.counts[i];
                            tracing::info!(container.name = %name, restart_count, "container restarted");
                            self.report(TaskEvent::ContainerRestarted { name, restart_count }).await;
                        }
                        outcome => {
                            if let Some(Err(error)) = outcome {
                                tracing::warn!(container.name = %name, %error, "cannot restart the container; it stays exited");
                            }
                            alive[i] = false;
                            progress[i] = Progress::Exited(exit.code);
                            self.report(TaskEvent::ContainerExited { name, exit }).await;
                        }
                    }
                }
                Some(control) = self.control.recv() => match control {
                    Control::Stop => stopping = true,
                    Control::Health { name, status } => {
                        if let Some(i) = created.iter().position(|c| c.name == name) {
                            progress[i] = match (progress[i], status) {
                                (Progress::Started(at), HealthStatus::Healthy) => Progress::Healthy(at),
                                (Progress::Healthy(at), HealthStatus::Unhealthy | HealthStatus::Unknown) => Progress::Started(at),
                                (p, _) => p,
                            };
                        }
                    }
                },
                Some(()) = stops.next() => {}
                Some(()) = probing.next() => {}
                () = async { if let Some(t) = timer { t.await } }, if deadline.is_some() => {}
                _ = self.cancel.cancelled() => return,
            }
        }
        // Every container has exited. What is still in flight (a stop waiting out its log
        // drain, a health probe, a restart's backoff) is dropped here, not left unpolled: a
        // pending stop holds the container's log pipes, which the cleanup's delete needs.
        drop((waits, stops, restarting, probing));
        self.finish(created).await;
    }

    /// Whether the definition marks the container essential.
    fn is_essential(&self, name: &str) -> bool {
        self.assignment
            .definition
            .as_ref()
            .and_then(|d| d.containers.iter().find(|c| c.name == name))
            .is_some_and(|c| c.essential)
    }

    /// The restart bookkeeping of a supervision: policies from the definition, counts from the
    /// last reported state (so they survive an agent restart), runs of alive containers
    /// counted from now.
    fn restarts(&self, created: &[Created], alive: &[bool]) -> Restarts {
        let def = self.assignment.definition.as_ref();
        let policies = created
            .iter()
            .map(|c| {
                def.and_then(|d| d.containers.iter().find(|x| x.name == c.name))
                    .and_then(Policy::of)
            })
            .collect();
        let now = Instant::now();
        Restarts {
            policies,
            backoff: restart::Backoff {
                base: self.config.restart_backoff,
                max: self.config.restart_backoff_max,
            },
            started: alive.iter().map(|&a| a.then_some(now)).collect(),
            counts: created
                .iter()
                .map(|c| self.restart_counts.get(&c.name).copied().unwrap_or(0))
                .collect(),
            streaks: vec![0; created.len()],
            stop: CancellationToken::new(),
        }
    }
}

impl Restarts {
    /// Whether container `i`, whose run just ended with `exit`, is restarted, and after what
    /// delay. Records the new streak when it is.
    fn decide(&mut self, i: usize, exit: &ExitStatus, name: &str) -> Option<Duration> {
        let policy = self.policies[i].as_ref()?;
        let ran_for = self.started[i]
            .map(|s| s.elapsed())
            .unwrap_or(Duration::ZERO);
        match restart::decide(policy, self.backoff, exit.code, ran_for, self.streaks[i]) {
            Decision::Restart { delay, streak } => {
                self.streaks[i] = streak;
                Some(delay)
            }
            Decision::Exit(why) => {
                tracing::info!(container.name = %name, exit.code = exit.code, ran_for_s = ran_for.as_secs(), ?why, "container not restarted");
                None
            }
        }
    }
}

/// Whether the supervision goes on: containers are still to start, or some still run.
fn starting_or_alive(starting: bool, alive: &[bool]) -> bool {
    starting || alive.iter().any(|a| *a)
}

fn stop_timeout(seconds: u32, default: Duration) -> Duration {
    if seconds > 0 {
        Duration::from_secs(u64::from(seconds))
    } else {
        default
    }
}

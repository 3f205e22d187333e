//! The supervision of a task's created containers: they are started in dependency order and
//! watched from their start (their waits, health checks and restarts run as one set of
//! in-flight work), until every one has exited; when the engine says stop, or the start
//! fails, the running ones are stopped in the reverse order of their dependencies. Then the
//! task is finished (`finish.rs`). Each container is one [`Watched`], which holds all the
//! supervision knows and runs of it.

use std::time::Duration;

use berth_proto::v1::HealthStatus;
use berth_runtime::ExitStatus;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::TaskEvent;
use super::super::deps::{Plan, Progress, Step};
use super::super::restart::{self, Decision, Policy};
use super::{Control, Created, Driver};
use crate::backoff::{Backoff, host_retries};
use crate::runtime::ContainerRuntime;
use crate::task::{self, Causes, Check};

/// Where a container stands when its supervision begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Initially {
    /// Created, not started yet (a fresh task, or one the agent died while starting).
    Waiting,
    /// Started before an agent restart: watched from now (a container that exited while the
    /// agent was away is reported by its wait, with its real exit code and time).
    Running,
    /// Started before an agent restart, and gone from containerd since, its exit code with
    /// it: reported STOPPED with this reason.
    Vanished(String),
}

/// One container under supervision: what it is, where it stands, and what runs for it.
pub(super) struct Watched {
    pub(super) created: Created,
    essential: bool,
    progress: Progress,
    /// Started and not exited for good (a container waiting out a restart's backoff is).
    alive: bool,
    /// Its stop was sent, and it was not restarted since.
    stop_issued: bool,
    check: Option<Check>,
    /// Cancels the health checks of its current run.
    probes: Option<CancellationToken>,
    restart_policy: Option<Policy>,
    /// When its current run started.
    run_started: Option<Instant>,
    /// Restarts so far, reported as its restartCount (kept across agent restarts).
    restart_count: u32,
    /// Consecutive restarts, for the restart backoff.
    streak: u32,
    /// The delays between waits that failed without saying anything about the container.
    wait_retries: Backoff,
}

/// The reason of a container whose process vanished from containerd while it was watched.
pub(super) const VANISHED_REASON: &str = "the container's process is gone from containerd (its \
     shim or containerd's record of it ended without reporting an exit), so its exit code is \
     unknown";

/// What a container's ended wait says.
enum Ended {
    Exit(ExitStatus),
    Vanished(String),
    Retried,
}

/// What a piece of in-flight work ends with.
pub(super) enum Happened {
    /// Container `i`'s wait ended.
    Exited(usize, Result<ExitStatus, berth_runtime::Error>),
    /// Container `i`'s restart ended: the exit that caused it, and the outcome (None when a
    /// stop order or the agent's shutdown came during the backoff and nothing was restarted).
    Restarted(usize, ExitStatus, Option<Result<(), berth_runtime::Error>>),
    /// A stop or a run's health checks ended; what they found is reported by the container's
    /// wait or as health results.
    Done,
    /// The task's namespace holder is gone (`holder.rs`): found by its watch, or before
    /// container `i` was restarted in place after the exit given (it stays exited).
    HolderGone(Option<(usize, ExitStatus)>),
}

/// The in-flight waits, health checks, restarts and stops of a supervision.
type InFlight = FuturesUnordered<BoxFuture<'static, Happened>>;

impl<R: ContainerRuntime> Driver<R> {
    /// Starts the containers in dependency order (when `starting`) and watches every started
    /// one from its start, until all have exited; when told to stop, or when the start fails,
    /// stops the running containers in the reverse order of their dependencies. Then reports
    /// STOPPED and cleans up. `initially` says where each container of `created` stands: all
    /// waiting for a fresh task; after an agent restart, what containerd showed (a task that
    /// was RUNNING had every container started; one the agent died while starting continues
    /// with those not started yet).
    ///
    /// A container with a restart policy that exits while the task is not stopping may be
    /// restarted in place (see `restart.rs`): it then stays alive through its backoff, counts
    /// as still started for its dependents, and is reported as restarted rather than exited,
    /// so the essential-container rule only sees exits that end a container for good.
    pub(super) async fn supervise(
        &mut self,
        plan: Plan,
        created: Vec<Created>,
        initially: Vec<Initially>,
        mut starting: bool,
    ) {
        let mut vanished = Vec::new();
        let mut containers: Vec<Watched> = created
            .into_iter()
            .zip(
                initially
                    .into_iter()
                    .chain(std::iter::repeat(Initially::Waiting)),
            )
            .map(|(c, state)| {
                if let Initially::Vanished(reason) = &state {
                    vanished.push((c.name.clone(), reason.clone()));
                }
                self.watched(c, &state)
            })
            .collect();
        for (name, reason) in vanished {
            tracing::warn!(container.name = %name, %reason, "container vanished while the agent was away");
            self.report(TaskEvent::ContainerVanished { name, reason })
                .await;
        }
        let mut inflight = InFlight::new();
        // What the task's namespace holder keeps, watched while the task runs.
        let shared = self.shared();
        if let Some(shared) = shared {
            inflight.push(self.watch_holder(shared));
        }
        for (i, w) in containers.iter_mut().enumerate().filter(|(_, w)| w.alive) {
            inflight.push(self.wait_for(i, &w.created, Duration::ZERO));
            self.start_probes(w, &mut inflight);
        }
        // Cancelled when the task stops: restarts waiting out their backoff give up.
        let restarts_stop = CancellationToken::new();
        let backoff = restart::Backoff {
            base: self.config.restart_backoff,
            max: self.config.restart_backoff_max,
        };
        let mut stopping = false;
        loop {
            let mut deadline = None;
            while starting && !stopping {
                let progress: Vec<Progress> = containers.iter().map(|w| w.progress).collect();
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
                        if !containers.iter().any(|w| w.alive) {
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
                            let w = &mut containers[i];
                            if !self.start_container(i, w, &mut inflight).await && w.essential {
                                stopping = true;
                                break;
                            }
                        }
                    }
                }
            }
            if stopping {
                restarts_stop.cancel();
                for token in containers.iter_mut().filter_map(|w| w.probes.take()) {
                    token.cancel();
                }
                let alive: Vec<bool> = containers.iter().map(|w| w.alive).collect();
                for i in plan.stoppable(&alive) {
                    let w = &mut containers[i];
                    if !std::mem::replace(&mut w.stop_issued, true) {
                        inflight.push(done(self.stop_container(&w.created)));
                    }
                }
            }
            if !(starting && !stopping || containers.iter().any(|w| w.alive)) {
                break;
            }
            let timer = deadline.map(tokio::time::sleep_until);
            tokio::select! {
                Some(happened) = inflight.next() => match happened {
                    Happened::Exited(i, result) => {
                        let w = &mut containers[i];
                        let exit = match self.exit_of(i, w, result, &mut inflight) {
                            Ended::Exit(exit) => exit,
                            Ended::Retried => continue,
                            Ended::Vanished(reason) => {
                                if let Some(token) = w.probes.take() {
                                    token.cancel();
                                }
                                self.vanished(w, reason).await;
                                continue;
                            }
                        };
                        // This run is over: so are its health checks (a restart starts new ones).
                        if let Some(token) = w.probes.take() {
                            token.cancel();
                        }
                        // A holder's death kills the containers of its PID namespace: that
                        // exit is the holder's, which ends the task (never a restart).
                        if !stopping
                            && let Some(shared) = shared
                            && self.holder_gone(shared).await
                        {
                            stopping = true;
                            self.report_holder_gone(shared).await;
                            self.exited(&mut containers[i], exit).await;
                            continue;
                        }
                        let w = &mut containers[i];
                        if !stopping && let Some(delay) = w.decide_restart(backoff, &exit) {
                            tracing::info!(container.name = %w.created.name, exit.code = exit.code, oom = exit.oom_killed, restart_in_ms = delay.as_millis() as u64, "container exited; restarting it");
                            inflight.push(self.restart_after(i, &w.created, exit, delay, restarts_stop.clone()));
                            continue;
                        }
                        tracing::info!(container.name = %w.created.name, exit.code = exit.code, oom = exit.oom_killed, "container exited");
                        self.exited(w, exit).await;
                    }
                    Happened::Restarted(i, exit, outcome) => {
                        let w = &mut containers[i];
                        match outcome {
                            Some(Ok(())) => self.restarted(i, w, &mut inflight).await,
                            outcome => {
                                if let Some(Err(error)) = outcome {
                                    tracing::warn!(container.name = %w.created.name, %error, "cannot restart the container; it stays exited");
                                }
                                self.exited(w, exit).await;
                            }
                        }
                    }
                    Happened::HolderGone(restart) => {
                        if !stopping {
                            stopping = true;
                            if let Some(shared) = shared {
                                self.report_holder_gone(shared).await;
                            }
                        }
                        if let Some((i, exit)) = restart {
                            self.exited(&mut containers[i], exit).await;
                        }
                    }
                    Happened::Done => {}
                },
                Some(control) = self.control.recv() => match control {
                    Control::Stop => stopping = true,
                    Control::Health { name, status } => {
                        if let Some(w) = containers.iter_mut().find(|w| w.created.name == name) {
                            w.health_changed(status);
                        }
                    }
                },
                () = async { if let Some(t) = timer { t.await } }, if deadline.is_some() => {}
                _ = self.cancel.cancelled() => return,
            }
        }
        // Every container has exited. What is still in flight (a stop waiting out its log
        // drain, a health probe, a restart's backoff) is dropped here, not left unpolled: a
        // pending stop holds the container's log pipes, which the cleanup's delete needs.
        drop(inflight);
        let created = containers.into_iter().map(|w| w.created).collect();
        self.finish(created).await;
    }

    /// A created container as the supervision first sees it: its policies from the
    /// definition, its restart count from the last reported state (so it survives an agent
    /// restart), a running one's run counted from now.
    fn watched(&self, created: Created, initially: &Initially) -> Watched {
        let def = self
            .assignment
            .definition
            .as_ref()
            .and_then(|d| d.containers.iter().find(|x| x.name == created.name));
        let now = Instant::now();
        let (progress, alive) = match initially {
            Initially::Waiting => (Progress::Waiting, false),
            Initially::Running => (Progress::Started(now), true),
            // Its code is unknown; what depends on its success never starts.
            Initially::Vanished(_) => (Progress::Exited(255), false),
        };
        Watched {
            essential: def.is_some_and(|d| d.essential),
            progress,
            alive,
            stop_issued: false,
            check: def.and_then(task::health_check),
            probes: None,
            restart_policy: def.and_then(Policy::of),
            run_started: alive.then_some(now),
            restart_count: self.restart_counts.get(&created.name).copied().unwrap_or(0),
            streak: 0,
            wait_retries: host_retries(),
            created,
        }
    }

    /// Starts container `i` and watches it; false when its process cannot be started. As on
    /// ECS, such a container is STOPPED with the reason; the engine stops the task only for an
    /// essential one (which ends the start too). Its volumes stay usable through volumesFrom:
    /// it was created.
    async fn start_container(&self, i: usize, w: &mut Watched, inflight: &mut InFlight) -> bool {
        let name = w.created.name.clone();
        tracing::info!(container.name = %name, "starting container");
        if let Err(e) = self.runtime.start(&w.created.id).await {
            let reason = format!(
                "CannotStartContainerError: container {name}: {}",
                Causes(&e)
            );
            tracing::warn!(container.name = %name, essential = w.essential, %reason, "container cannot start");
            w.progress = Progress::CannotStart;
            self.report(TaskEvent::ContainerCannotStart { name, reason })
                .await;
            return false;
        }
        let now = Instant::now();
        w.progress = Progress::Started(now);
        w.run_started = Some(now);
        w.alive = true;
        inflight.push(self.wait_for(i, &w.created, Duration::ZERO));
        self.start_probes(w, inflight);
        true
    }

    /// Runs the container's health checks (if it has any) from now, ending those of its last
    /// run.
    fn start_probes(&self, w: &mut Watched, inflight: &mut InFlight) {
        if let Some(check) = &w.check {
            inflight.push(done(self.probe(&w.created, check.clone(), &mut w.probes)));
        }
    }

    /// What a container's ended wait says: its exit; that it is gone from containerd (its
    /// process ended with its shim, or its record was removed), its exit code with it; or
    /// that the wait is retried (it failed for a reason that says nothing about the
    /// container: containerd restarting, a broken connection; the shim keeps it running).
    fn exit_of(
        &self,
        i: usize,
        w: &mut Watched,
        result: Result<ExitStatus, berth_runtime::Error>,
        inflight: &mut InFlight,
    ) -> Ended {
        let name = &w.created.name;
        match result {
            Ok(exit) => Ended::Exit(exit),
            Err(error @ berth_runtime::Error::NotFound { .. }) => {
                tracing::warn!(container.name = %name, %error, "container vanished");
                Ended::Vanished(VANISHED_REASON.to_owned())
            }
            Err(error) => {
                let delay = w.wait_retries.next_delay();
                tracing::warn!(container.name = %name, %error, retry_in_ms = delay.as_millis() as u64, "waiting for the container failed; retrying");
                inflight.push(self.wait_for(i, &w.created, delay));
                Ended::Retried
            }
        }
    }

    /// A container that is gone from containerd, its exit code unknown: ended for good.
    async fn vanished(&self, w: &mut Watched, reason: String) {
        w.alive = false;
        w.progress = Progress::Exited(255);
        let name = w.created.name.clone();
        self.report(TaskEvent::ContainerVanished { name, reason })
            .await;
    }

    /// A container restarted in place: watched again, with new health checks.
    async fn restarted(&self, i: usize, w: &mut Watched, inflight: &mut InFlight) {
        w.restart_count += 1;
        w.run_started = Some(Instant::now());
        inflight.push(self.wait_for(i, &w.created, Duration::ZERO));
        self.start_probes(w, inflight);
        // A stop order that came while it was being restarted stops it too.
        w.stop_issued = false;
        let (name, restart_count) = (w.created.name.clone(), w.restart_count);
        tracing::info!(container.name = %name, restart_count, "container restarted");
        self.report(TaskEvent::ContainerRestarted {
            name,
            restart_count,
        })
        .await;
    }

    /// A container that exited for good.
    async fn exited(&self, w: &mut Watched, exit: ExitStatus) {
        w.alive = false;
        w.progress = Progress::Exited(exit.code);
        let name = w.created.name.clone();
        self.report(TaskEvent::ContainerExited { name, exit }).await;
    }
}

impl Watched {
    /// Whether this container, whose run just ended with `exit`, is restarted, and after what
    /// delay. Records the new streak when it is.
    fn decide_restart(&mut self, backoff: restart::Backoff, exit: &ExitStatus) -> Option<Duration> {
        let policy = self.restart_policy.as_ref()?;
        let ran_for = self
            .run_started
            .map(|s| s.elapsed())
            .unwrap_or(Duration::ZERO);
        match restart::decide(policy, backoff, exit.code, ran_for, self.streak) {
            Decision::Restart { delay, streak } => {
                self.streak = streak;
                Some(delay)
            }
            Decision::Exit(why) => {
                tracing::info!(container.name = %self.created.name, exit.code = exit.code, ran_for_s = ran_for.as_secs(), ?why, "container not restarted");
                None
            }
        }
    }

    /// The engine's verdict on its health, for dependents waiting for HEALTHY.
    fn health_changed(&mut self, status: HealthStatus) {
        self.progress = match (self.progress, status) {
            (Progress::Started(at), HealthStatus::Healthy) => Progress::Healthy(at),
            (Progress::Healthy(at), HealthStatus::Unhealthy | HealthStatus::Unknown) => {
                Progress::Started(at)
            }
            (p, _) => p,
        };
    }
}

/// Work whose end says nothing by itself.
fn done(work: BoxFuture<'static, ()>) -> BoxFuture<'static, Happened> {
    Box::pin(async move {
        work.await;
        Happened::Done
    })
}

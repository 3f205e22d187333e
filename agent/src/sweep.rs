//! The orphan sweep: at start and then periodically, everything of Berth's on the host
//! (containers with their tasks and snapshots in Berth's containerd namespace, network
//! namespaces, task cgroups, volume and log directories) that belongs to no task the engine
//! knows is reported, and removed once it has stayed an orphan for `orphan_cleanup_grace`
//! (`0`: at once; off: only reported). A store that was lost or reset leaves such orphans.
//!
//! What is Berth's is decided by the host seam ([`Host`], `sweep/host.rs`): the containers that
//! carry Berth's task label in its own namespace (never another client's, nor another
//! namespace's), and only directories whose names can be task IDs. The host is listed before
//! the engine is asked what it knows, so a task assigned in between is never taken for an
//! orphan; an engine that does not answer makes the pass remove nothing.

mod host;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{Command, EngineHandle};

pub(crate) use host::RuntimeHost;

/// What a leftover is, in the order a pass removes them: containers first (their processes
/// hold the cgroup, the namespace and the volumes), logs last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A container in Berth's containerd namespace, with its task, snapshot and FIFOs.
    Container,
    /// A task's network namespace with its interface, address, rules and files.
    Netns,
    /// The PID and IPC namespaces a task's containers shared, with their holder process
    /// (killed before its cgroup is removed) and `/dev/shm`.
    Shared,
    /// A task's volume directory under the volume dir.
    Volumes,
    /// A task's cgroup under the cgroup parent.
    Cgroup,
    /// A task's log directory under the log dir.
    Logs,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Netns => "network namespace",
            Kind::Shared => "shared namespaces",
            Kind::Volumes => "volume directory",
            Kind::Cgroup => "cgroup",
            Kind::Logs => "log directory",
        }
    }
}

/// One thing of Berth's on the host, named as it is removed, with the task it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Leftover {
    pub kind: Kind,
    pub name: String,
    pub task_id: String,
}

/// The host could not be listed or a leftover could not be removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SweepError {
    #[error("cannot list what tasks left on the host")]
    List(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot remove {kind} {name} of task {task_id}")]
    Remove {
        kind: &'static str,
        name: String,
        task_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SweepError {
    pub(crate) fn remove(
        leftover: &Leftover,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SweepError::Remove {
            kind: leftover.kind.label(),
            name: leftover.name.clone(),
            task_id: leftover.task_id.clone(),
            source: Box::new(source),
        }
    }
}

/// What the sweep asks of the host.
#[async_trait]
pub(crate) trait Host: Send + Sync + 'static {
    /// Everything of Berth's on the host, each with the task it belongs to.
    async fn leftovers(&self) -> Result<Vec<Leftover>, SweepError>;
    /// Removes one leftover; idempotent.
    async fn remove(&self, leftover: &Leftover) -> Result<(), SweepError>;
}

/// The tasks the agent knows.
#[async_trait]
pub(crate) trait Known: Send + Sync + 'static {
    /// The IDs of every task the engine holds, and of those found at start that it holds for
    /// re-adoption after a store loss; None when it does not answer.
    async fn task_ids(&self) -> Option<BTreeSet<String>>;
}

#[async_trait]
impl Known for EngineHandle {
    async fn task_ids(&self) -> Option<BTreeSet<String>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.send(Command::FullState(reply)).await {
            return None;
        }
        let states = answer.await.ok()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self
            .send(Command::Found {
                report: false,
                reply,
            })
            .await
        {
            return None;
        }
        let found = answer.await.ok()?;
        Some(
            states
                .into_iter()
                .map(|s| s.task_id)
                .chain(found.into_iter().map(|c| c.task_id))
                .collect(),
        )
    }
}

/// What one pass saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Every orphan found, removed or not.
    pub orphans: usize,
    /// The orphans removed, in the order they were.
    pub removed: Vec<Leftover>,
    /// The removals that failed (retried on the next pass).
    pub failed: usize,
}

/// The sweep's memory between passes: when each orphan was first seen.
#[derive(Debug)]
pub(crate) struct Sweeper<H, K> {
    host: H,
    known: K,
    grace: Option<Duration>,
    first_seen: HashMap<Leftover, Instant>,
}

impl<H: Host, K: Known> Sweeper<H, K> {
    /// A sweep that removes an orphan `grace` after it was first seen; None only reports.
    pub(crate) fn new(host: H, known: K, grace: Option<Duration>) -> Self {
        Sweeper {
            host,
            known,
            grace,
            first_seen: HashMap::new(),
        }
    }

    /// One pass: lists the host, then the known tasks, reports the orphans seen for the first
    /// time and removes those whose grace has run out. None when the engine did not answer.
    pub(crate) async fn pass(&mut self) -> Result<Option<Pass>, SweepError> {
        let found = self.host.leftovers().await?;
        let Some(known) = self.known.task_ids().await else {
            return Ok(None);
        };
        let now = Instant::now();
        let orphans: BTreeSet<Leftover> = found
            .into_iter()
            .filter(|l| !known.contains(&l.task_id))
            .collect();
        self.first_seen.retain(|l, _| orphans.contains(l));
        for orphan in &orphans {
            if self.first_seen.contains_key(orphan) {
                continue;
            }
            self.first_seen.insert(orphan.clone(), now);
            match self.grace {
                Some(grace) => tracing::warn!(
                    kind = orphan.kind.label(),
                    name = %orphan.name,
                    task.id = %orphan.task_id,
                    grace_s = grace.as_secs(),
                    "found a leftover of a task this agent does not know; it is removed once the grace period (orphan_cleanup_grace) has passed"
                ),
                None => tracing::warn!(
                    kind = orphan.kind.label(),
                    name = %orphan.name,
                    task.id = %orphan.task_id,
                    "found a leftover of a task this agent does not know; left in place (orphan_cleanup_grace = off)"
                ),
            }
        }
        let mut pass = Pass {
            orphans: orphans.len(),
            ..Pass::default()
        };
        let Some(grace) = self.grace else {
            return Ok(Some(pass));
        };
        // In `Kind` order: containers before what their processes hold.
        for orphan in orphans {
            let due = self
                .first_seen
                .get(&orphan)
                .is_some_and(|seen| now.saturating_duration_since(*seen) >= grace);
            if !due {
                continue;
            }
            match self.host.remove(&orphan).await {
                Ok(()) => {
                    tracing::info!(
                        kind = orphan.kind.label(),
                        name = %orphan.name,
                        task.id = %orphan.task_id,
                        "removed a leftover of a task this agent does not know"
                    );
                    self.first_seen.remove(&orphan);
                    pass.removed.push(orphan);
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &(dyn std::error::Error + 'static),
                        "orphan removal failed; the next pass retries"
                    );
                    pass.failed += 1;
                }
            }
        }
        Ok(Some(pass))
    }
}

/// How often the sweep runs: twice within the grace period, at least every second and at
/// most every minute (every minute when removal is at once or off).
pub(crate) fn interval(grace: Option<Duration>) -> Duration {
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);
    match grace {
        Some(grace) if !grace.is_zero() => (grace / 2).clamp(MIN, MAX),
        _ => MAX,
    }
}

/// Sweeps at once, then every [`interval`], until cancelled.
pub(crate) async fn run<H: Host, K: Known>(mut sweeper: Sweeper<H, K>, cancel: CancellationToken) {
    let every = interval(sweeper.grace);
    loop {
        match sweeper.pass().await {
            Ok(Some(pass)) if pass.orphans > 0 => tracing::debug!(
                orphans = pass.orphans,
                removed = pass.removed.len(),
                failed = pass.failed,
                "orphan sweep done"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(
                    error = &error as &(dyn std::error::Error + 'static),
                    "orphan sweep failed; the next pass retries"
                );
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

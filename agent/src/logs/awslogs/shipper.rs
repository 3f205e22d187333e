//! One container's shipper: takes the lines its drain forwards, makes events of them, and
//! sends them to its log stream in batches, as the ECS agent's awslogs driver does: every
//! [`FLUSH_INTERVAL`] or as soon as a batch is full, creating the stream (and the group with
//! awslogs-create-group) before the first batch and again when CloudWatch says it is gone.
//!
//! A batch that fails for a reason worth retrying is retried with a capped backoff until it
//! goes through; meanwhile no lines are taken, so the queue fills and the container stalls
//! (blocking) or its lines are dropped and counted (non-blocking). A batch CloudWatch refuses
//! for good (access denied, a bad parameter) is dropped, counted and logged. The shipper ends
//! when the container's output ends (after a last delivery, bounded by [`FINAL_DELIVERY`]),
//! or at once with a last bounded attempt when the agent shuts down.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{DropCount, ForwardedLines};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{ApiError, LogsApi};
use super::batch::Pending;
use super::event::{Event, Joiner};
use crate::backoff::Backoff;
use crate::metrics::AGENT;

/// How often waiting events are sent (Docker's awslogs batch period).
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How long the last events are retried once the container's output ended.
pub(crate) const FINAL_DELIVERY: Duration = Duration::from_secs(5 * 60);
/// How long the last events are tried when the agent shuts down.
pub(crate) const SHUTDOWN_DELIVERY: Duration = Duration::from_secs(5);
/// Most lines taken from the queue between two checks for a full batch.
const LINES_PER_TURN: usize = 1024;
/// Retry delays of a failing batch.
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Tells the container's task something about its logs (a container note of the task).
pub(crate) type Notify = Arc<dyn Fn(String) + Send + Sync>;

/// Where a container's events go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) group: String,
    pub(crate) stream: String,
    pub(crate) create_group: bool,
}

/// How a delivery attempt ended.
enum Delivery {
    Done,
    /// Cancelled or out of time: the events left were dropped.
    GaveUp,
}

pub(crate) struct Shipper {
    api: Arc<dyn LogsApi>,
    target: Target,
    joiner: Joiner,
    pending: Pending,
    /// The stream exists (made, or found there) since the last NotFound.
    ready: bool,
    token: Option<String>,
    backoff: Backoff,
    notify: Notify,
    /// The queue's drop count (from the start of `run`).
    drops: Option<DropCount>,
    /// Lines the queue dropped, as last counted.
    dropped_reported: u64,
    /// When the task was last told of drops (at most once a [`FLUSH_INTERVAL`]), and of how
    /// many.
    last_note: Option<Instant>,
    noted: u64,
    /// Events given up on (refused for good, or undeliverable at the end).
    events_dropped: u64,
    /// An outage is being retried (logged once, when it starts).
    failing: bool,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("target", &self.target)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Shipper {
    pub(crate) fn new(
        api: Arc<dyn LogsApi>,
        target: Target,
        joiner: Joiner,
        notify: Notify,
    ) -> Self {
        Self {
            api,
            target,
            joiner,
            pending: Pending::default(),
            ready: false,
            token: None,
            backoff: Backoff::new(RETRY_BASE, RETRY_MAX).jittered(0.2),
            notify,
            drops: None,
            dropped_reported: 0,
            last_note: None,
            noted: 0,
            events_dropped: 0,
            failing: false,
        }
    }

    /// Ships until the container's output ends or `cancel` fires.
    pub(crate) async fn run(mut self, mut lines: ForwardedLines, cancel: CancellationToken) {
        let drops = lines.drop_count();
        self.drops = Some(drops.clone());
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break false,
                () = drops.changed() => self.report_drops(),
                line = lines.recv() => {
                    let Some(line) = line else { break true };
                    let mut events = Vec::new();
                    self.joiner.push(line, std::time::Instant::now(), &mut events);
                    for _ in 1..LINES_PER_TURN {
                        let Some(line) = lines.try_recv() else { break };
                        self.joiner.push(line, std::time::Instant::now(), &mut events);
                    }
                    self.queue(events);
                    if self.pending.has_full_batch()
                        && let Delivery::GaveUp = self.deliver(true, &cancel, None).await
                    {
                        break false;
                    }
                }
                _ = tick.tick() => {
                    let mut events = Vec::new();
                    self.joiner.flush_idle(std::time::Instant::now(), &mut events);
                    self.queue(events);
                    self.report_drops();
                    if let Delivery::GaveUp = self.deliver(false, &cancel, None).await {
                        break false;
                    }
                }
            }
        };
        // The last events: the open multi-line one too.
        let mut events = Vec::new();
        self.joiner.flush(&mut events);
        self.queue(events);
        let within = if ended {
            FINAL_DELIVERY
        } else {
            SHUTDOWN_DELIVERY
        };
        let never = CancellationToken::new();
        let stop = if ended { &cancel } else { &never };
        self.deliver(false, stop, Some(Instant::now() + within))
            .await;
        self.last_note = None;
        self.report_drops();
        tracing::debug!(
            log.group = %self.target.group,
            log.stream = %self.target.stream,
            "awslogs shipper ended"
        );
    }

    fn queue(&mut self, events: Vec<Event>) {
        for e in events {
            self.pending.push(e);
        }
    }

    /// Counts the lines the queue dropped since the last report, and tells of them (the log
    /// and the task) at most once a [`FLUSH_INTERVAL`].
    fn report_drops(&mut self) {
        let Some(dropped) = self.drops.as_ref().map(DropCount::get) else {
            return;
        };
        if dropped > self.dropped_reported {
            AGENT
                .awslogs_lines_dropped
                .inc_by(dropped - self.dropped_reported);
            self.dropped_reported = dropped;
        }
        let now = Instant::now();
        let recently = self.last_note.is_some_and(|t| now < t + FLUSH_INTERVAL);
        if dropped > self.noted && !recently {
            self.last_note = Some(now);
            self.noted = dropped;
            tracing::warn!(
                log.group = %self.target.group,
                log.stream = %self.target.stream,
                dropped,
                "awslogs buffer full: container log lines dropped (non-blocking mode)"
            );
            (self.notify)(format!(
                "awslogs: {dropped} log lines dropped so far: the non-blocking buffer \
                 (max-buffer-size) was full while CloudWatch Logs did not take them"
            ));
        }
    }

    /// Sends the waiting events (only full batches when `full_only`), retrying each batch until
    /// it goes through, `stop` fires or `deadline` passes; then what is left is dropped.
    async fn deliver(
        &mut self,
        full_only: bool,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Delivery {
        while !self.pending.is_empty() && (!full_only || self.pending.has_full_batch()) {
            let batch = self.pending.next_batch();
            if let Delivery::GaveUp = self.send(&batch, stop, deadline).await {
                let mut left = batch.len() as u64;
                while !self.pending.is_empty() {
                    left += self.pending.next_batch().len() as u64;
                }
                self.give_up(left, "the agent stopped or time ran out before delivery");
                return Delivery::GaveUp;
            }
        }
        Delivery::Done
    }

    fn give_up(&mut self, events: u64, why: &str) {
        if events == 0 {
            return;
        }
        self.events_dropped += events;
        AGENT.awslogs_events_dropped.inc_by(events);
        tracing::warn!(
            log.group = %self.target.group,
            log.stream = %self.target.stream,
            events,
            reason = why,
            "awslogs events dropped"
        );
        (self.notify)(format!(
            "awslogs: {} log events not delivered to CloudWatch Logs: {why}",
            self.events_dropped
        ));
    }

    /// Sends one batch until it goes through or is refused for good.
    async fn send(
        &mut self,
        batch: &[Event],
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Delivery {
        let mut token_retries = 0;
        loop {
            let result = match self.ensure_stream().await {
                Ok(()) => {
                    self.api
                        .put_log_events(
                            &self.target.group,
                            &self.target.stream,
                            batch,
                            self.token.as_deref(),
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(accepted) => {
                    self.token = accepted.next_token;
                    AGENT.awslogs_events_sent.inc_by(batch.len() as u64);
                    self.recovered();
                    if accepted.rejected > 0 {
                        self.give_up(
                            accepted.rejected,
                            "CloudWatch Logs refused them as too old or too new",
                        );
                    }
                    return Delivery::Done;
                }
                Err(ApiError::DataAlreadyAccepted { next_token }) => {
                    self.token = next_token;
                    self.recovered();
                    return Delivery::Done;
                }
                Err(ApiError::InvalidSequenceToken { expected }) if token_retries < 3 => {
                    token_retries += 1;
                    self.token = expected;
                    continue;
                }
                Err(ApiError::NotFound(message)) => {
                    self.ready = false;
                    ApiError::NotFound(message)
                }
                Err(ApiError::Fatal(message)) => {
                    tracing::error!(
                        log.group = %self.target.group,
                        log.stream = %self.target.stream,
                        error = %message,
                        "CloudWatch Logs refused a batch of container logs"
                    );
                    self.give_up(batch.len() as u64, &message);
                    return Delivery::Done;
                }
                Err(other) => other,
            };
            if !self.failing {
                self.failing = true;
                AGENT.awslogs_put_failures.inc();
                tracing::warn!(
                    log.group = %self.target.group,
                    log.stream = %self.target.stream,
                    %error,
                    "cannot deliver container logs to CloudWatch Logs; retrying"
                );
            }
            let delay = self.backoff.next_delay();
            let wake = Instant::now() + delay;
            if deadline.is_some_and(|d| wake > d) {
                return Delivery::GaveUp;
            }
            // Drops are told while the batch waits, not only after it went through.
            let drops = self.drops.clone();
            let sleep = tokio::time::sleep_until(wake);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Delivery::GaveUp,
                    () = &mut sleep => break,
                    () = async {
                        match &drops {
                            Some(d) => d.changed().await,
                            None => std::future::pending().await,
                        }
                    } => self.report_drops(),
                }
            }
        }
    }

    fn recovered(&mut self) {
        self.backoff.reset();
        if self.failing {
            self.failing = false;
            tracing::info!(
                log.group = %self.target.group,
                log.stream = %self.target.stream,
                "container logs reach CloudWatch Logs again"
            );
        }
    }

    /// Makes the stream (and the group, with awslogs-create-group) unless it is known to exist.
    async fn ensure_stream(&mut self) -> Result<(), ApiError> {
        if self.ready {
            return Ok(());
        }
        let Target {
            group,
            stream,
            create_group,
        } = &self.target;
        match self.api.create_log_stream(group, stream).await {
            Ok(()) | Err(ApiError::AlreadyExists) => {}
            Err(ApiError::NotFound(_)) if *create_group => {
                match self.api.create_log_group(group).await {
                    Ok(()) | Err(ApiError::AlreadyExists) => {}
                    Err(e) => return Err(e),
                }
                match self.api.create_log_stream(group, stream).await {
                    Ok(()) | Err(ApiError::AlreadyExists) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.ready = true;
        self.token = None;
        Ok(())
    }
}

#[cfg(test)]
#[path = "shipper_tests.rs"]
mod tests;

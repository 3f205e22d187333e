//! Serving the scheduler's log requests on the session: each `LogRequest` gets its own task that
//! reads the container's log through `berth_runtime::LogReader` and sends `LogChunk`s, then one
//! `LogEnd`. Flow control is by credit: a request may have at most `window` chunks sent and not
//! yet credited back by the scheduler, and a chunk holds at most [`CHUNK_BYTES`] of text, so a
//! chatty container never fills the session's queue (heartbeats and state changes share it) and
//! a slow reader is felt by the log reader only. A `LogCancel`, or the end of the session, stops
//! the task at its next step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use berth_proto::v1::agent_message::Message as Out;
use berth_proto::v1::{AgentMessage, LogChunk, LogEnd, LogEndReason, LogRequest};
use berth_runtime::{LogQuery, LogReadError, LogReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::engine::{EngineHandle, LogTarget};
use crate::task::Causes;

pub(crate) mod awslogs;

/// The most text a chunk carries (a single longer entry travels alone).
pub(crate) const CHUNK_BYTES: usize = 32 * 1024;
/// The window when the scheduler asks for none.
const DEFAULT_WINDOW: u32 = 8;
/// The largest window honoured, whatever the scheduler asks.
const MAX_WINDOW: u32 = 64;
/// How often a follower looks for new lines and for its container's end.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Where logs are and whether their container has stopped: the engine, or a test's fake.
#[async_trait]
pub(crate) trait LogTargets: Send + Sync + 'static {
    async fn log_target(&self, task_id: &str, container: &str) -> Option<LogTarget>;
}

#[async_trait]
impl LogTargets for EngineHandle {
    async fn log_target(&self, task_id: &str, container: &str) -> Option<LogTarget> {
        EngineHandle::log_target(self, task_id, container).await
    }
}

struct Running {
    cancel: CancellationToken,
    credits: Arc<Semaphore>,
}

/// The log requests of one session. Dropping it cancels every one of them.
pub(crate) struct LogRequests<T: LogTargets> {
    targets: Arc<T>,
    tx: mpsc::Sender<AgentMessage>,
    running: Arc<Mutex<HashMap<u64, Running>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl<T: LogTargets> std::fmt::Debug for LogRequests<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRequests")
            .field("running", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl<T: LogTargets> LogRequests<T> {
    /// `tx` is the session's outgoing queue.
    pub(crate) fn new(targets: Arc<T>, tx: mpsc::Sender<AgentMessage>) -> Self {
        Self {
            targets,
            tx,
            running: Arc::default(),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts serving a request.
    pub(crate) fn start(&self, request: LogRequest) {
        let id = request.request_id;
        let window = match request.window {
            0 => DEFAULT_WINDOW,
            w => w.min(MAX_WINDOW),
        };
        let cancel = self.cancel.child_token();
        let credits = Arc::new(Semaphore::new(window as usize));
        if let Some(old) = self.lock().insert(
            id,
            Running {
                cancel: cancel.clone(),
                credits: Arc::clone(&credits),
            },
        ) {
            old.cancel.cancel();
        }
        let span = tracing::info_span!(
            "logs",
            request = id,
            task.id = %request.task_id,
            container.name = %request.container_name
        );
        let (targets, tx, running) = (
            Arc::clone(&self.targets),
            self.tx.clone(),
            Arc::clone(&self.running),
        );
        self.tracker.spawn(
            async move {
                let end = serve(&*targets, &request, &tx, &credits, &cancel).await;
                if !cancel.is_cancelled() {
                    let (reason, message) = match end {
                        Ok(()) => (LogEndReason::Complete, String::new()),
                        Err(ServeError::NotFound(m)) => (LogEndReason::NotFound, m),
                        Err(ServeError::Failed(m)) => (LogEndReason::Failed, m),
                        Err(ServeError::Gone) => (LogEndReason::Failed, String::new()),
                    };
                    if reason != LogEndReason::Complete {
                        tracing::info!(%message, "log request failed");
                    }
                    let end = AgentMessage {
                        message: Some(Out::LogEnd(LogEnd {
                            request_id: id,
                            reason: reason as i32,
                            message,
                        })),
                    };
                    let _ = tx.send(end).await;
                }
                let mut running = running.lock().unwrap_or_else(PoisonError::into_inner);
                if running
                    .get(&id)
                    .is_some_and(|r| Arc::ptr_eq(&r.credits, &credits))
                {
                    running.remove(&id);
                }
            }
            .instrument(span),
        );
    }

    /// Lets a request send `chunks` more chunks.
    pub(crate) fn credit(&self, request_id: u64, chunks: u32) {
        if let Some(r) = self.lock().get(&request_id) {
            // Never more than the largest window outstanding, whatever the scheduler says.
            let room = (MAX_WINDOW as usize).saturating_sub(r.credits.available_permits());
            r.credits.add_permits((chunks as usize).min(room));
        }
    }

    /// Stops a request: its caller went away.
    pub(crate) fn cancel(&self, request_id: u64) {
        if let Some(r) = self.lock().remove(&request_id) {
            r.cancel.cancel();
        }
    }

    /// Whether no request is being served.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<T: LogTargets> Drop for LogRequests<T> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

enum ServeError {
    NotFound(String),
    Failed(String),
    /// Cancelled, or the session's queue closed.
    Gone,
}

async fn serve<T: LogTargets + ?Sized>(
    targets: &T,
    request: &LogRequest,
    tx: &mpsc::Sender<AgentMessage>,
    credits: &Semaphore,
    cancel: &CancellationToken,
) -> Result<(), ServeError> {
    let (task_id, container) = (&request.task_id, &request.container_name);
    let Some(target) = targets.log_target(task_id, container).await else {
        return Err(ServeError::NotFound(format!(
            "this instance does not run task {task_id} with a container {container}"
        )));
    };
    let query = LogQuery {
        tail: request.tail,
        since: request.since.as_ref().map(|t| {
            UNIX_EPOCH
                + Duration::new(
                    u64::try_from(t.seconds).unwrap_or(0),
                    u32::try_from(t.nanos).unwrap_or(0),
                )
        }),
    };
    let mut reader = match LogReader::open(&target.path, &query).await {
        Ok(r) => r,
        Err(LogReadError::NoLog { .. }) => {
            return Err(ServeError::NotFound(format!(
                "container {container} of task {task_id} has no logs yet: it has not been created"
            )));
        }
        Err(e) => return Err(ServeError::Failed(Causes(&e).to_string())),
    };
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    // Set once the container was seen stopped: one more pass reads what it wrote last.
    let mut finishing = !request.follow || target.finished;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Err(ServeError::Gone),
            next = reader.next_entry() => next.map_err(|e| ServeError::Failed(Causes(&e).to_string()))?,
        };
        match next {
            Some(entry) => {
                if bytes > 0 && bytes + entry.text.len() > CHUNK_BYTES {
                    send_chunk(request.request_id, &mut chunk, tx, credits, cancel).await?;
                    bytes = 0;
                }
                bytes += entry.text.len();
                chunk.push(crate::task::log_line(entry));
            }
            None => {
                if !chunk.is_empty() {
                    send_chunk(request.request_id, &mut chunk, tx, credits, cancel).await?;
                    bytes = 0;
                }
                if finishing {
                    if reader.skipped() > 0 {
                        tracing::warn!(
                            skipped = reader.skipped(),
                            "log lines skipped: not json-file entries or too long"
                        );
                    }
                    return Ok(());
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ServeError::Gone),
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
                // Checked before the next pass: what a stopped container wrote is in the file.
                finishing = targets
                    .log_target(task_id, container)
                    .await
                    .is_none_or(|t| t.finished);
            }
        }
    }
}

/// Sends the lines gathered as one chunk, once the scheduler has room for it.
async fn send_chunk(
    request_id: u64,
    lines: &mut Vec<berth_proto::v1::LogLine>,
    tx: &mpsc::Sender<AgentMessage>,
    credits: &Semaphore,
    cancel: &CancellationToken,
) -> Result<(), ServeError> {
    let permit = tokio::select! {
        _ = cancel.cancelled() => return Err(ServeError::Gone),
        p = credits.acquire() => p.map_err(|_| ServeError::Gone)?,
    };
    permit.forget();
    let message = AgentMessage {
        message: Some(Out::LogChunk(LogChunk {
            request_id,
            lines: std::mem::take(lines),
        })),
    };
    tokio::select! {
        _ = cancel.cancelled() => Err(ServeError::Gone),
        r = tx.send(message) => r.map_err(|_| ServeError::Gone),
    }
}

#[cfg(test)]
mod tests;

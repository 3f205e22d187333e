//! `WatchTasks`: what DescribeTasks answers for some tasks, sent at once and again after every
//! committed change to them, as a server stream, so that a waiting client learns of a change
//! within milliseconds instead of at its next poll.
//!
//! The stream holds no task of its own: it is polled by tonic while the caller listens and
//! dropped when the caller hangs up. Each committed write transaction wakes it (the store's
//! commit counter, subscribed to before the first read so that no commit is missed); it reads
//! the tasks again and sends them only when they differ from what it sent last. A new pull
//! progress reading from an agent wakes it too (PENDING tasks show it). Scheduler shutdown
//! ends it.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1 as pb;
use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Shared;
use super::control::failures;

/// The response stream of one `WatchTasks` call.
pub(crate) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::DescribeTasksResponse, Status>> + Send>>;

struct Watch {
    shared: Arc<Shared>,
    cluster: String,
    task_ids: Vec<String>,
    commits: watch::Receiver<u64>,
    /// The agents' pull progress readings (`pulls.rs`), which change what PENDING tasks show.
    readings: watch::Receiver<u64>,
    cancel: CancellationToken,
    /// What was sent last; None before the first answer.
    last: Option<pb::DescribeTasksResponse>,
    /// An error was sent: the stream is over.
    failed: bool,
}

/// Streams `task_ids` of `cluster` (already authorized) until the caller hangs up or the
/// scheduler shuts down. A store error is sent once and ends the stream.
pub(crate) fn watch_tasks(
    shared: Arc<Shared>,
    cluster: String,
    task_ids: Vec<String>,
) -> WatchStream {
    let watch = Watch {
        commits: shared.store.commits(),
        readings: shared.pulls.readings(),
        cancel: shared.cancel.clone(),
        shared,
        cluster,
        task_ids,
        last: None,
        failed: false,
    };
    Box::pin(futures::stream::unfold(watch, |mut w| async move {
        if w.failed {
            return None;
        }
        loop {
            if w.last.is_some() {
                tokio::select! {
                    () = w.cancel.cancelled() => return None,
                    changed = w.commits.changed() => changed.ok()?,
                    changed = w.readings.changed() => changed.ok()?,
                }
            }
            w.commits.borrow_and_update();
            w.readings.borrow_and_update();
            let (cluster, ids) = (w.cluster.clone(), w.task_ids.clone());
            let read = w.shared.db(move |s| s.describe_tasks(&cluster, &ids)).await;
            let response = match read {
                Ok((mut tasks, missing)) => {
                    w.shared.pulls.annotate(&mut tasks);
                    pb::DescribeTasksResponse {
                        tasks,
                        failures: failures(missing),
                    }
                }
                Err(error) => {
                    w.failed = true;
                    return Some((Err(Status::from(error)), w));
                }
            };
            if w.last.as_ref() != Some(&response) {
                w.last = Some(response.clone());
                return Some((Ok(response), w));
            }
        }
    }))
}

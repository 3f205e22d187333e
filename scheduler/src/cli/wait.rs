//! `berthctl wait` and `run-task --wait`: follows the tasks on the scheduler's `WatchTasks`
//! stream until every one reaches a state, on tokio time (so its tests run on paused time). A
//! scheduler without `WatchTasks` is polled with DescribeTasks instead.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use berth_proto::v1 as proto;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::args::WaitCondition;
use super::error::{CliError, check_failures};
use super::names::{stop_reason, task_status_name};

/// What a wait reads: the answers DescribeTasks would give, one after another (from
/// `WatchTasks`, or from polling).
pub(super) type Answers = BoxStream<'static, Result<proto::DescribeTasksResponse, CliError>>;

/// How long after a broken stream (the scheduler unreachable or restarting) the wait opens it
/// again.
const REOPEN_AFTER: Duration = Duration::from_millis(250);

/// How often a scheduler without `WatchTasks` is asked.
const POLL: Duration = Duration::from_millis(100);

/// Reads what `open` streams for the tasks still waited for until every task in `ids` reached
/// `condition`, for at most `timeout`. A scheduler that is unreachable or unavailable, or a
/// stream that ends, is opened again; any other error, a task the scheduler does not know, or
/// (for tasks-running) a task that stopped ends the wait (ECS's waiters: tasks-running fails
/// on a STOPPED task).
#[cfg(test)]
pub(super) async fn wait_for<F, Fut>(
    condition: WaitCondition,
    ids: &[String],
    timeout: Duration,
    open: F,
) -> Result<(), CliError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<Answers, CliError>>,
{
    wait_showing(condition, ids, timeout, open, |_| {}).await
}

/// [`wait_for`], handing each answer to `show` first (`run-task --wait`'s progress).
pub(super) async fn wait_showing<F, Fut>(
    condition: WaitCondition,
    ids: &[String],
    timeout: Duration,
    mut open: F,
    mut show: impl FnMut(&proto::DescribeTasksResponse),
) -> Result<(), CliError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<Answers, CliError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut progress = Progress {
        condition,
        ids,
        reached: HashSet::new(),
        pending: Vec::new(),
    };
    loop {
        let waiting = progress.waiting();
        if waiting.is_empty() {
            return Ok(());
        }
        let answers = match tokio::time::timeout_at(deadline, open(waiting)).await {
            Err(_elapsed) => return Err(progress.timed_out(timeout)),
            Ok(Ok(answers)) => Some(answers),
            Ok(Err(error)) => {
                progress.note_outage(error)?;
                None
            }
        };
        if let Some(mut answers) = answers {
            loop {
                match tokio::time::timeout_at(deadline, answers.next()).await {
                    Err(_elapsed) => return Err(progress.timed_out(timeout)),
                    // The scheduler ended the stream (it is shutting down): open it again.
                    Ok(None) => break,
                    Ok(Some(Err(error))) => {
                        progress.note_outage(error)?;
                        break;
                    }
                    Ok(Some(Ok(response))) => {
                        show(&response);
                        if progress.apply(&response)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
        if tokio::time::timeout_at(deadline, tokio::time::sleep(REOPEN_AFTER))
            .await
            .is_err()
        {
            return Err(progress.timed_out(timeout));
        }
    }
}

/// DescribeTasks called every 100 ms (the first call at once), as a stream of answers: for a
/// scheduler that has no `WatchTasks`.
pub(super) fn polled<F, Fut>(describe: F) -> Answers
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<proto::DescribeTasksResponse, CliError>> + Send,
{
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(
        (interval, describe),
        |(mut interval, mut describe)| async move {
            interval.tick().await;
            let answer = describe().await;
            Some((answer, (interval, describe)))
        },
    )
    .boxed()
}

/// Where a wait stands.
struct Progress<'a> {
    condition: WaitCondition,
    ids: &'a [String],
    reached: HashSet<&'a str>,
    /// What the last answer left pending ("ID (STATUS)"), or why there was none.
    pending: Vec<String>,
}

impl<'a> Progress<'a> {
    /// The tasks not yet at the condition, each once, in order.
    fn waiting(&self) -> Vec<String> {
        unique(self.ids)
            .filter(|id| !self.reached.contains(id))
            .map(str::to_owned)
            .collect()
    }

    fn timed_out(&self, waited: Duration) -> CliError {
        CliError::WaitTimeout {
            condition: match self.condition {
                WaitCondition::TasksRunning => "tasks to be RUNNING",
                WaitCondition::TasksStopped => "tasks to be STOPPED",
                WaitCondition::ServicesStable => "services to be stable",
            },
            waited,
            pending: if self.pending.is_empty() {
                self.waiting()
            } else {
                self.pending.clone()
            },
        }
    }

    /// Keeps an unreachable or unavailable scheduler as the reason the wait is pending (the
    /// caller tries again); any other error ends the wait.
    fn note_outage(&mut self, error: CliError) -> Result<(), CliError> {
        self.pending = match error {
            CliError::Unreachable { reason, .. } => {
                vec![format!("the scheduler is unreachable ({reason})")]
            }
            CliError::Api {
                code: tonic::Code::Unavailable,
                message,
            } => vec![format!("the scheduler is unavailable ({message})")],
            error => return Err(error),
        };
        Ok(())
    }

    /// Takes in one answer; true once every task reached the condition.
    fn apply(&mut self, response: &proto::DescribeTasksResponse) -> Result<bool, CliError> {
        check_failures(&response.failures)?;
        self.pending.clear();
        for task in &response.tasks {
            let Some(id) = self.ids.iter().find(|id| **id == task.task_id) else {
                continue;
            };
            let status = proto::TaskStatus::try_from(task.last_status)
                .unwrap_or(proto::TaskStatus::Unspecified);
            // STOPPED is the last status; a status past it (an early version's) is stopped too.
            let stopped = task.last_status >= proto::TaskStatus::Stopped as i32;
            let done = match self.condition {
                WaitCondition::TasksRunning if stopped => {
                    return Err(CliError::TaskStopped {
                        task_id: task.task_id.clone(),
                        reason: stop_reason(task),
                    });
                }
                WaitCondition::TasksRunning => status == proto::TaskStatus::Running,
                WaitCondition::TasksStopped => stopped,
                // Services are waited for by `wait_services_stable`, never here.
                WaitCondition::ServicesStable => false,
            };
            if done {
                self.reached.insert(id);
            } else {
                self.pending.push(format!(
                    "{} ({})",
                    task.task_id,
                    task_status_name(task.last_status)
                ));
            }
        }
        Ok(self.waiting().is_empty())
    }
}

/// Each ID once, in order.
fn unique(ids: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(move |id| seen.insert(*id))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The task IDs of each opened stream, in order.
    type Calls = Arc<Mutex<Vec<Vec<String>>>>;

    fn task(id: &str, status: proto::TaskStatus) -> proto::Task {
        proto::Task {
            task_id: id.into(),
            last_status: status as i32,
            ..Default::default()
        }
    }

    fn answer(tasks: Vec<proto::Task>) -> Result<proto::DescribeTasksResponse, CliError> {
        Ok(proto::DescribeTasksResponse {
            tasks,
            failures: vec![],
        })
    }

    /// What one opening of the stream does.
    enum Opening {
        /// The call fails.
        Fails(CliError),
        /// The stream sends these answers `apart` from each other, then stays open and quiet.
        Sends {
            answers: Vec<Result<proto::DescribeTasksResponse, CliError>>,
            apart: Duration,
        },
        /// The stream sends these answers, then ends (the scheduler shut down).
        Ends(Vec<Result<proto::DescribeTasksResponse, CliError>>),
    }

    fn sends(answers: Vec<Result<proto::DescribeTasksResponse, CliError>>) -> Opening {
        Opening::Sends {
            answers,
            apart: Duration::ZERO,
        }
    }

    /// A fake WatchTasks that plays back `script` one opening a call and records the IDs
    /// asked for.
    fn scripted(
        script: Vec<Opening>,
    ) -> (
        impl FnMut(Vec<String>) -> std::future::Ready<Result<Answers, CliError>>,
        Calls,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let mut script: VecDeque<Opening> = script.into();
        let open = move |ids: Vec<String>| {
            recorded.lock().unwrap().push(ids);
            let stream = match script.pop_front().expect("an opening left in the script") {
                Opening::Fails(error) => Err(error),
                Opening::Sends { answers, apart } => Ok(futures::stream::iter(answers)
                    .then(move |a| async move {
                        tokio::time::sleep(apart).await;
                        a
                    })
                    .chain(futures::stream::pending())
                    .boxed()),
                Opening::Ends(answers) => Ok(futures::stream::iter(answers).boxed()),
            };
            std::future::ready(stream)
        };
        (open, calls)
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_stream_shows_every_task_running() {
        use proto::TaskStatus::*;
        let (open, calls) = scripted(vec![Opening::Sends {
            answers: vec![
                answer(vec![task("a", Pending), task("b", Provisioning)]),
                answer(vec![task("a", Running), task("b", Pulled)]),
                answer(vec![task("a", Running), task("b", Running)]),
            ],
            apart: Duration::from_millis(7),
        }]);
        let started = tokio::time::Instant::now();
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a", "b", "a"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap();
        // One stream, each ID once; done at the answer that shows it, no poll interval added.
        assert_eq!(*calls.lock().unwrap(), vec![ids(&["a", "b"])]);
        assert_eq!(started.elapsed(), Duration::from_millis(21));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_stops_fails_the_wait_for_running() {
        let stopped = proto::Task {
            stop_code: proto::StopCode::TaskFailedToStart as i32,
            stopped_reason: "CannotPullContainerError: not found".into(),
            ..task("a", proto::TaskStatus::Stopped)
        };
        let (open, _) = scripted(vec![sends(vec![
            answer(vec![task("a", proto::TaskStatus::Pending)]),
            answer(vec![stopped]),
        ])]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "task a stopped before it was running: TaskFailedToStart: CannotPullContainerError: not found"
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_stopped() {
        use proto::TaskStatus::*;
        let released = proto::Task {
            resources_released_at: Some(prost_types::Timestamp::default()),
            ..task("b", Stopped)
        };
        let (open, _) = scripted(vec![sends(vec![
            answer(vec![task("a", Running), task("b", Running)]),
            answer(vec![task("a", Stopped), released]),
        ])]);
        wait_for(
            WaitCondition::TasksStopped,
            &ids(&["a", "b"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_the_tasks_still_pending() {
        let (open, calls) = scripted(vec![sends(vec![answer(vec![task(
            "a",
            proto::TaskStatus::Pending,
        )])])]);
        let started = tokio::time::Instant::now();
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(2),
            open,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 2s waiting for tasks to be RUNNING: a (PENDING)"
        );
        assert_eq!(error.exit_code(), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_again_while_the_scheduler_is_unavailable_or_restarting() {
        use proto::TaskStatus::*;
        let unavailable = || CliError::Api {
            code: tonic::Code::Unavailable,
            message: "restarting".into(),
        };
        let (open, calls) = scripted(vec![
            Opening::Fails(unavailable()),
            // The scheduler shuts down: its stream ends.
            Opening::Ends(vec![answer(vec![task("a", Running), task("b", Pending)])]),
            // The connection breaks mid-stream.
            sends(vec![Err(unavailable())]),
            sends(vec![answer(vec![task("b", Running)])]),
        ]);
        let started = tokio::time::Instant::now();
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a", "b"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap();
        // Each opening after a pause, asking only for the tasks still waited for.
        assert_eq!(
            *calls.lock().unwrap(),
            vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["b"]), ids(&["b"])]
        );
        assert_eq!(started.elapsed(), REOPEN_AFTER * 3);

        let (open, _) = scripted(vec![Opening::Fails(CliError::Api {
            code: tonic::Code::PermissionDenied,
            message: "no".into(),
        })]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "no");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_while_unreachable_says_so() {
        let unreachable = || {
            Opening::Fails(CliError::Unreachable {
                endpoint: "http://127.0.0.1:1".into(),
                reason: "connection refused".into(),
            })
        };
        let (open, calls) = scripted((0..10).map(|_| unreachable()).collect());
        let error = wait_for(
            WaitCondition::TasksStopped,
            &ids(&["a"]),
            Duration::from_secs(1),
            open,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 1s waiting for tasks to be STOPPED: the scheduler is unreachable (connection refused)"
        );
        // At 0, 250, 500, 750 and 1000 ms; the pause after the last runs into the deadline.
        assert_eq!(calls.lock().unwrap().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_task_fails_the_wait() {
        let (open, _) = scripted(vec![sends(vec![Ok(proto::DescribeTasksResponse {
            tasks: vec![],
            failures: vec![proto::Failure {
                arn: "nope".into(),
                reason: "MISSING".into(),
            }],
        })])]);
        let error = wait_for(
            WaitCondition::TasksStopped,
            &ids(&["nope"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "nope: MISSING");
    }

    #[tokio::test(start_paused = true)]
    async fn without_watch_tasks_describe_tasks_is_polled_every_100_ms() {
        use proto::TaskStatus::*;
        let script = Arc::new(Mutex::new(VecDeque::from([
            vec![task("a", Pending)],
            vec![task("a", Pending)],
            vec![task("a", Running)],
        ])));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (script_, asked_) = (Arc::clone(&script), Arc::clone(&asked));
        let open = move |_ids: Vec<String>| {
            let (script, asked) = (Arc::clone(&script_), Arc::clone(&asked_));
            std::future::ready(Ok(polled(move || {
                asked.lock().unwrap().push(tokio::time::Instant::now());
                let tasks = script.lock().unwrap().pop_front().unwrap_or_default();
                std::future::ready(answer(tasks))
            })))
        };
        let started = tokio::time::Instant::now();
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            open,
        )
        .await
        .unwrap();
        let at: Vec<Duration> = asked.lock().unwrap().iter().map(|t| *t - started).collect();
        assert_eq!(
            at,
            [0, 100, 200].map(Duration::from_millis).to_vec(),
            "asked at"
        );
    }
}

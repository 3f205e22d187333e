//! `berthctl wait`: polls DescribeTasks until every task reaches a state, on tokio time (so its
//! tests run on paused time).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use berth_proto::v1 as proto;

use super::args::WaitCondition;
use super::error::{CliError, check_failures};
use super::names::{stop_reason, task_status_name};

/// How often `wait` polls DescribeTasks.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Polls `describe` every 100 ms until every task in `ids` reached `condition`, for at most
/// `timeout`. A scheduler that is briefly unavailable is polled again; any other error, a task
/// the scheduler does not know, or (for tasks-running) a task that stopped ends the wait.
pub(super) async fn wait_for<F, Fut>(
    condition: WaitCondition,
    ids: &[String],
    timeout: Duration,
    mut describe: F,
) -> Result<(), CliError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<proto::DescribeTasksResponse, CliError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reached: HashSet<&str> = HashSet::new();
    let mut interval = tokio::time::interval(WAIT_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<String> = Vec::new();
    let timed_out = |pending: Vec<String>| CliError::WaitTimeout {
        condition: match condition {
            WaitCondition::TasksRunning => "tasks to be RUNNING",
            WaitCondition::TasksStopped => "tasks to be STOPPED",
        },
        waited: timeout,
        pending,
    };
    loop {
        let waiting: Vec<String> = unique(ids)
            .filter(|id| !reached.contains(id))
            .map(str::to_owned)
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            if pending.is_empty() {
                pending = waiting.clone();
            }
            return Err(timed_out(pending));
        }
        interval.tick().await;
        let response = match tokio::time::timeout_at(deadline, describe(waiting.clone())).await {
            Err(_elapsed) => {
                return Err(timed_out(if pending.is_empty() {
                    waiting
                } else {
                    pending
                }));
            }
            Ok(Err(CliError::Unreachable { reason, .. })) => {
                pending = vec![format!("the scheduler is unreachable ({reason})")];
                continue;
            }
            Ok(Err(CliError::Api {
                code: tonic::Code::Unavailable,
                message,
            })) => {
                pending = vec![format!("the scheduler is unavailable ({message})")];
                continue;
            }
            Ok(Err(error)) => return Err(error),
            Ok(Ok(response)) => response,
        };
        check_failures(&response.failures)?;
        pending.clear();
        for task in &response.tasks {
            let Some(id) = ids.iter().find(|id| **id == task.task_id) else {
                continue;
            };
            let status = proto::TaskStatus::try_from(task.last_status)
                .unwrap_or(proto::TaskStatus::Unspecified);
            // STOPPED is the last status; a status past it (an early version's) is stopped too.
            let stopped = task.last_status >= proto::TaskStatus::Stopped as i32;
            let done = match condition {
                WaitCondition::TasksRunning if stopped => {
                    return Err(CliError::TaskStopped {
                        task_id: task.task_id.clone(),
                        reason: stop_reason(task),
                    });
                }
                WaitCondition::TasksRunning => status == proto::TaskStatus::Running,
                WaitCondition::TasksStopped => stopped,
            };
            if done {
                reached.insert(id);
            } else {
                pending.push(format!(
                    "{} ({})",
                    task.task_id,
                    task_status_name(task.last_status)
                ));
            }
        }
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
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The task IDs of each DescribeTasks call, in order.
    type Calls = Arc<Mutex<Vec<Vec<String>>>>;

    fn task(id: &str, status: proto::TaskStatus) -> proto::Task {
        proto::Task {
            task_id: id.into(),
            last_status: status as i32,
            ..Default::default()
        }
    }

    /// A fake DescribeTasks that plays back `script` one response a call (repeating the last)
    /// and records the IDs asked for.
    fn scripted(
        script: Vec<Result<Vec<proto::Task>, CliError>>,
    ) -> (
        impl FnMut(Vec<String>) -> std::future::Ready<Result<proto::DescribeTasksResponse, CliError>>,
        Calls,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let mut script = script
            .into_iter()
            .collect::<std::collections::VecDeque<_>>();
        let mut last: Option<Vec<proto::Task>> = None;
        let describe = move |ids: Vec<String>| {
            recorded.lock().unwrap().push(ids);
            let next = match script.pop_front() {
                Some(Ok(tasks)) => {
                    last = Some(tasks.clone());
                    Ok(tasks)
                }
                Some(Err(error)) => Err(error),
                None => Ok(last.clone().unwrap_or_default()),
            };
            std::future::ready(next.map(|tasks| proto::DescribeTasksResponse {
                tasks,
                failures: vec![],
            }))
        };
        (describe, calls)
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_every_task_runs() {
        use proto::TaskStatus::*;
        let (describe, calls) = scripted(vec![
            Ok(vec![task("a", Pending), task("b", Provisioning)]),
            Ok(vec![task("a", Running), task("b", Pulled)]),
            Ok(vec![task("b", Running)]),
        ]);
        let started = tokio::time::Instant::now();
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a", "b", "a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
        // Three polls, 100 ms apart; tasks already RUNNING are not asked for again.
        assert_eq!(
            *calls.lock().unwrap(),
            vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["b"])]
        );
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_stops_fails_the_wait_for_running() {
        let stopped = proto::Task {
            stop_code: proto::StopCode::TaskFailedToStart as i32,
            stopped_reason: "CannotPullContainerError: not found".into(),
            ..task("a", proto::TaskStatus::Stopped)
        };
        let (describe, _) = scripted(vec![
            Ok(vec![task("a", proto::TaskStatus::Pending)]),
            Ok(vec![stopped]),
        ]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
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
        let (describe, _) = scripted(vec![
            Ok(vec![task("a", Running), task("b", Running)]),
            Ok(vec![task("a", Stopped), released]),
        ]);
        wait_for(
            WaitCondition::TasksStopped,
            &ids(&["a", "b"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_the_tasks_still_pending() {
        let (describe, calls) = scripted(vec![Ok(vec![task("a", proto::TaskStatus::Pending)])]);
        let started = tokio::time::Instant::now();
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(2),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 2s waiting for tasks to be RUNNING: a (PENDING)"
        );
        assert_eq!(error.exit_code(), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Polls at 0, 100, …, 2000 ms.
        assert_eq!(calls.lock().unwrap().len(), 21);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_polling_while_the_scheduler_is_unavailable() {
        let (describe, _) = scripted(vec![
            Err(CliError::Api {
                code: tonic::Code::Unavailable,
                message: "restarting".into(),
            }),
            Ok(vec![task("a", proto::TaskStatus::Running)]),
        ]);
        wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap();
        let (describe, _) = scripted(vec![Err(CliError::Api {
            code: tonic::Code::PermissionDenied,
            message: "no".into(),
        })]);
        let error = wait_for(
            WaitCondition::TasksRunning,
            &ids(&["a"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "no");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_task_fails_the_wait() {
        let describe = |_ids: Vec<String>| {
            std::future::ready(Ok(proto::DescribeTasksResponse {
                tasks: vec![],
                failures: vec![proto::Failure {
                    arn: "nope".into(),
                    reason: "MISSING".into(),
                }],
            }))
        };
        let error = wait_for(
            WaitCondition::TasksStopped,
            &ids(&["nope"]),
            Duration::from_secs(60),
            describe,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "nope: MISSING");
    }
}

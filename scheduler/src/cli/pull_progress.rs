//! What `run-task --wait` shows while it waits: for each task its status and, while it is
//! PENDING, how far the pull of its images got (the scheduler's `pullProgress`). On a terminal
//! (standard output is one) an indicatif progress bar per task, until the task is RUNNING;
//! otherwise a plain line on standard error each time a task's line changes, so standard
//! output keeps only the task IDs (or the JSON) that scripts read.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};

use berth_proto::v1 as proto;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::names::task_status_name;

/// The display of one wait.
pub(super) enum PullDisplay {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        last: HashMap<String, String>,
    },
}

/// A task's pulls together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pulled {
    bytes: u64,
    bytes_total: u64,
    layers: u32,
    layers_total: u32,
}

fn pulled(task: &proto::Task) -> Option<Pulled> {
    if task.pull_progress.is_empty() {
        return None;
    }
    Some(
        task.pull_progress
            .iter()
            .fold(Pulled::default(), |sum, p| Pulled {
                bytes: sum.bytes.saturating_add(p.bytes_downloaded),
                bytes_total: sum.bytes_total.saturating_add(p.bytes_total),
                layers: sum.layers + p.layers_downloaded,
                layers_total: sum.layers_total + p.layers_total,
            }),
    )
}

/// Whether the task is past what `run-task --wait` shows progress for.
fn settled(task: &proto::Task) -> bool {
    task.last_status >= proto::TaskStatus::Running as i32
}

/// The plain line of a task: `TASK_ID PENDING: pulled 1.00 MiB of 4.00 MiB, 1 of 3 layers`.
fn status_line(task: &proto::Task) -> String {
    let status = task_status_name(task.last_status);
    match pulled(task).filter(|_| !settled(task)) {
        Some(p) => format!(
            "{} {status}: pulled {} of {}, {} of {} layers",
            task.task_id,
            HumanBytes(p.bytes),
            HumanBytes(p.bytes_total),
            p.layers,
            p.layers_total
        ),
        None => format!("{} {status}", task.task_id),
    }
}

impl PullDisplay {
    /// Bars when standard output is a terminal, plain lines otherwise.
    pub(super) fn for_stdout() -> Self {
        if std::io::stdout().is_terminal() {
            PullDisplay::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: HashMap::new(),
            }
        } else {
            PullDisplay::Lines {
                last: HashMap::new(),
            }
        }
    }

    /// Shows one answer of the wait.
    pub(super) fn show(&mut self, response: &proto::DescribeTasksResponse) {
        match self {
            PullDisplay::Lines { last } => {
                let mut stderr = std::io::stderr().lock();
                for task in &response.tasks {
                    let line = status_line(task);
                    if last.get(&task.task_id) != Some(&line) {
                        // Progress is for people: a closed standard error stops nothing.
                        let _ = writeln!(stderr, "{line}");
                        last.insert(task.task_id.clone(), line);
                    }
                }
            }
            PullDisplay::Bars { multi, bars } => {
                for task in &response.tasks {
                    let bar = bars.entry(task.task_id.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(0));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        bar.set_prefix(task.task_id.clone());
                        bar
                    });
                    if bar.is_finished() {
                        continue;
                    }
                    let status = task_status_name(task.last_status);
                    if settled(task) {
                        if let Some(len) = bar.length() {
                            bar.set_position(len);
                        }
                        bar.finish_with_message(status);
                        continue;
                    }
                    match pulled(task) {
                        Some(p) => {
                            bar.set_length(p.bytes_total);
                            bar.set_position(p.bytes);
                            bar.set_message(format!(
                                "{status} {}/{} layers",
                                p.layers, p.layers_total
                            ));
                        }
                        None => bar.set_message(status),
                    }
                }
            }
        }
    }

    /// Leaves the bars as they are (the wait ended).
    pub(super) fn finish(self) {
        if let PullDisplay::Bars { bars, .. } = self {
            for bar in bars.values().filter(|b| !b.is_finished()) {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: proto::TaskStatus, pulls: &[(u64, u64, u32, u32)]) -> proto::Task {
        proto::Task {
            task_id: "t-1".into(),
            last_status: status as i32,
            pull_progress: pulls
                .iter()
                .map(
                    |&(done, total, layers, layers_total)| proto::ImagePullProgress {
                        task_id: "t-1".into(),
                        bytes_downloaded: done,
                        bytes_total: total,
                        layers_downloaded: layers,
                        layers_total,
                        ..proto::ImagePullProgress::default()
                    },
                )
                .collect(),
            ..proto::Task::default()
        }
    }

    #[test]
    fn a_line_sums_the_task_pulls_while_pending() {
        let mib = 1024 * 1024;
        let pending = task(
            proto::TaskStatus::Pending,
            &[(mib, 3 * mib, 1, 3), (0, mib, 0, 1)],
        );
        assert_eq!(
            status_line(&pending),
            "t-1 PENDING: pulled 1.00 MiB of 4.00 MiB, 1 of 4 layers"
        );
        assert_eq!(
            status_line(&task(proto::TaskStatus::Provisioning, &[])),
            "t-1 PROVISIONING"
        );
        assert_eq!(
            status_line(&task(proto::TaskStatus::Running, &[(1, 1, 1, 1)])),
            "t-1 RUNNING"
        );
    }
}

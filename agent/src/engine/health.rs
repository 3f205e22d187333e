//! Container health checks (ECS `healthCheck`) as pure logic: how one check's result moves a
//! container's health, and how a task's health follows from its essential containers'. The
//! driver runs the checks (through the runtime's exec) and reports each result; the engine
//! keeps a [`Tracker`] per checked container and applies the results here.
//!
//! Docker's and ECS's semantics: a passing check makes the container HEALTHY and clears its
//! failures; `retries` consecutive failures make it UNHEALTHY. During `startPeriod`, counted
//! from the container's start, failures do not count, until a first check passes (the start
//! period then ends early). Before any result, and without a health check, health is UNKNOWN.

use berth_proto::v1::{ContainerState, HealthStatus};

/// The result of one check, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    /// The check exited with 0 in time.
    pub passed: bool,
    /// It ran within the container's start period.
    pub in_start_period: bool,
    /// What happened, for logs: "exited with 1", "timed out after 2s", the exec error.
    pub detail: String,
}

/// One container's health, as results come in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracker {
    retries: u32,
    /// Consecutive failures that counted.
    failures: u32,
    /// A check has passed since the container (re)started: its start period is over.
    passed_once: bool,
    status: HealthStatus,
}

impl Tracker {
    /// A tracker for a container whose health is `status` (UNKNOWN for a new container; the
    /// last reported one after an agent restart).
    pub(crate) fn new(retries: u32, status: HealthStatus) -> Self {
        Self {
            retries: retries.max(1),
            failures: 0,
            passed_once: status == HealthStatus::Healthy,
            status,
        }
    }

    pub(crate) fn status(&self) -> HealthStatus {
        self.status
    }

    /// Applies one result; returns the new health when it changed.
    pub(crate) fn record(&mut self, probe: &Probe) -> Option<HealthStatus> {
        let next = if probe.passed {
            self.failures = 0;
            self.passed_once = true;
            HealthStatus::Healthy
        } else if probe.in_start_period && !self.passed_once {
            self.status
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.retries {
                HealthStatus::Unhealthy
            } else {
                self.status
            }
        };
        (next != self.status).then(|| {
            self.status = next;
            next
        })
    }

    /// Consecutive failures that counted so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The container was restarted in place: a new process, a new start period.
    pub(crate) fn restarted(&mut self) {
        self.failures = 0;
        self.passed_once = false;
        self.status = HealthStatus::Unknown;
    }
}

/// A task's health, as ECS derives it from its essential containers that have a health check
/// (`checked_essential`, by name): UNHEALTHY when one of them is, HEALTHY when all of them are,
/// else (and without any) UNKNOWN.
pub(crate) fn task_health(
    containers: &[ContainerState],
    checked_essential: &[String],
) -> HealthStatus {
    let mut statuses = containers
        .iter()
        .filter(|c| checked_essential.contains(&c.name))
        .map(|c| HealthStatus::try_from(c.health_status).unwrap_or(HealthStatus::Unknown))
        .peekable();
    if statuses.peek().is_none() {
        return HealthStatus::Unknown;
    }
    let statuses: Vec<HealthStatus> = statuses.collect();
    if statuses.contains(&HealthStatus::Unhealthy) {
        HealthStatus::Unhealthy
    } else if statuses.iter().all(|s| *s == HealthStatus::Healthy) {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> Probe {
        Probe {
            passed: true,
            in_start_period: false,
            detail: "exited with 0".into(),
        }
    }

    fn fail(in_start_period: bool) -> Probe {
        Probe {
            passed: false,
            in_start_period,
            detail: "exited with 1".into(),
        }
    }

    #[test]
    fn retries_consecutive_failures_make_it_unhealthy() {
        let mut t = Tracker::new(3, HealthStatus::Unknown);
        assert_eq!(t.record(&pass()), Some(HealthStatus::Healthy));
        assert_eq!(t.record(&pass()), None, "no change, nothing to report");
        assert_eq!(t.record(&fail(false)), None);
        assert_eq!(t.record(&fail(false)), None);
        assert_eq!(t.status(), HealthStatus::Healthy, "2 of 3 failures");
        assert_eq!(t.record(&pass()), None);
        assert_eq!(t.failures(), 0, "a pass clears the failures");
        assert_eq!(t.record(&fail(false)), None);
        assert_eq!(t.record(&fail(false)), None);
        assert_eq!(t.record(&fail(false)), Some(HealthStatus::Unhealthy));
        assert_eq!(t.record(&fail(false)), None);
        assert_eq!(
            t.record(&pass()),
            Some(HealthStatus::Healthy),
            "it recovers"
        );
    }

    #[test]
    fn one_retry_fails_at_the_first_failure() {
        let mut t = Tracker::new(1, HealthStatus::Unknown);
        assert_eq!(t.record(&fail(false)), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut t = Tracker::new(2, HealthStatus::Unknown);
        for _ in 0..5 {
            assert_eq!(t.record(&fail(true)), None);
        }
        assert_eq!(t.status(), HealthStatus::Unknown);
        assert_eq!(t.failures(), 0);
        assert_eq!(t.record(&fail(false)), None, "the first that counts");
        assert_eq!(t.record(&fail(false)), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn a_pass_ends_the_start_period_early() {
        let mut t = Tracker::new(2, HealthStatus::Unknown);
        assert_eq!(t.record(&pass()), Some(HealthStatus::Healthy));
        assert_eq!(t.record(&fail(true)), None);
        assert_eq!(
            t.record(&fail(true)),
            Some(HealthStatus::Unhealthy),
            "failures count once a check passed, start period or not"
        );
    }

    #[test]
    fn a_restart_starts_over() {
        let mut t = Tracker::new(1, HealthStatus::Unknown);
        assert_eq!(t.record(&pass()), Some(HealthStatus::Healthy));
        t.restarted();
        assert_eq!(t.status(), HealthStatus::Unknown);
        assert_eq!(t.record(&fail(true)), None, "a new start period");
    }

    fn container(name: &str, status: HealthStatus) -> ContainerState {
        ContainerState {
            name: name.into(),
            health_status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn task_health_follows_the_checked_essential_containers() {
        use HealthStatus::{Healthy, Unhealthy, Unknown};
        let checked = vec!["a".to_owned(), "b".to_owned()];
        let task = |a, b, side| {
            task_health(
                &[
                    container("a", a),
                    container("b", b),
                    container("side", side),
                ],
                &checked,
            )
        };
        assert_eq!(
            task(Healthy, Healthy, Unhealthy),
            Healthy,
            "side is not essential"
        );
        assert_eq!(task(Healthy, Unknown, Healthy), Unknown);
        assert_eq!(task(Unknown, Unknown, Unknown), Unknown);
        assert_eq!(task(Healthy, Unhealthy, Healthy), Unhealthy);
        assert_eq!(task(Unhealthy, Unknown, Healthy), Unhealthy);
        assert_eq!(
            task_health(&[container("a", Healthy)], &[]),
            Unknown,
            "no essential container has a health check"
        );
    }
}

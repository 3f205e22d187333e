//! Container dependencies (ECS `dependsOn` and `startTimeout`) as pure logic: which containers
//! may start now, whether the start has failed, and which containers may be stopped now. The
//! driver feeds it what happened and the time (tokio's clock, so tests can pause it); nothing
//! here touches a runtime or reads a clock.
//!
//! ECS semantics: START is met once the dependency was started, COMPLETE once it exited,
//! SUCCESS once it exited with 0 (a non-zero exit fails the task's start), HEALTHY once its
//! health check passed (an exit before that fails the task's start). A dependency whose process
//! could not be started (ECS's CannotStartContainerError) never meets START or HEALTHY and
//! fails COMPLETE and SUCCESS: either way its dependents can never start, and the task's start
//! fails with a reason that says which. A dependency's own
//! `startTimeout`, counted from its start, bounds how long its dependents wait for it to reach
//! COMPLETE, SUCCESS or HEALTHY (ECS: "If a startTimeout value is specified for containerB and it doesn't
//! reach the desired status within that time then containerA gives up and not start").
//! A container's `links` order it as ECS orders them: after the containers it links to have
//! started (START), as if it depended on them.
//! Stopping goes the other way: a container is stopped only once every container that depends
//! on it has exited.

use std::time::Duration;

use berth_proto::v1::{DependencyCondition, TaskDefinition};
use tokio::time::Instant;

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Condition {
    Start,
    Complete,
    Success,
    Healthy,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Success => "SUCCESS",
            Self::Healthy => "HEALTHY",
        }
    }
}

/// Where one container stands, as far as dependencies care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Not started yet.
    Waiting,
    /// Started at this instant and not exited (as far as is known).
    Started(Instant),
    /// Started at this instant, not exited, and its health check says HEALTHY.
    Healthy(Instant),
    /// Started and exited with this code.
    Exited(u32),
    /// Created, but its process could not be started; it never runs.
    CannotStart,
}

/// What one dependency's condition says about its dependent, given the dependency's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Met: as far as this dependency goes, the dependent may start.
    Met,
    /// Not yet; it may still be met (bounded by the dependency's startTimeout, if any).
    Pending,
    /// It can never be met: the dependency will never reach the condition.
    Never,
    /// The condition failed: the dependency ended in a way the condition refuses.
    Failed,
}

impl Condition {
    /// The rule of one condition, ECS's.
    pub(super) fn verdict(self, progress: Progress) -> Verdict {
        match (self, progress) {
            (_, Progress::Waiting) => Verdict::Pending,
            (Self::Start, Progress::Started(_) | Progress::Healthy(_) | Progress::Exited(_)) => {
                Verdict::Met
            }
            (Self::Start | Self::Healthy, Progress::CannotStart) => Verdict::Never,
            (Self::Complete | Self::Success, Progress::CannotStart) => Verdict::Failed,
            (Self::Complete, Progress::Exited(_)) => Verdict::Met,
            (Self::Success, Progress::Exited(0)) => Verdict::Met,
            (Self::Success, Progress::Exited(_)) => Verdict::Failed,
            (Self::Healthy, Progress::Healthy(_)) => Verdict::Met,
            (Self::Healthy, Progress::Exited(_)) => Verdict::Failed,
            (Self::Complete | Self::Success | Self::Healthy, Progress::Started(_))
            | (Self::Complete | Self::Success, Progress::Healthy(_)) => Verdict::Pending,
        }
    }
}

/// A task's dependency graph, by container index (definition order).
#[derive(Debug, Clone)]
pub(super) struct Plan {
    names: Vec<String>,
    /// For each container, what it depends on: (index, condition).
    depends_on: Vec<Vec<(usize, Condition)>>,
    /// For each container, its startTimeout.
    start_timeouts: Vec<Option<Duration>>,
}

/// What to do next during the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Start these containers now (possibly none), then wait for news, at most until the
    /// deadline if there is one.
    Start {
        ready: Vec<usize>,
        deadline: Option<Instant>,
    },
    /// Every container was started.
    Done,
    /// The task cannot start; the reason is for people.
    Fail(String),
}

impl Plan {
    /// The plan of a definition. The scheduler validated it; a dependency on an unknown
    /// container, an unsupported condition or a cycle is refused here again rather than trusted.
    pub(super) fn new(def: &TaskDefinition) -> Result<Self, String> {
        let names: Vec<String> = def.containers.iter().map(|c| c.name.clone()).collect();
        let mut depends_on = Vec::with_capacity(names.len());
        for c in &def.containers {
            let mut deps = Vec::new();
            for d in &c.depends_on {
                let Some(index) = names.iter().position(|n| *n == d.container_name) else {
                    return Err(format!(
                        "container {} depends on {}, which is not in the task",
                        c.name, d.container_name
                    ));
                };
                let condition = match DependencyCondition::try_from(d.condition) {
                    Ok(DependencyCondition::Start) => Condition::Start,
                    Ok(DependencyCondition::Complete) => Condition::Complete,
                    Ok(DependencyCondition::Success) => Condition::Success,
                    Ok(DependencyCondition::Healthy) => Condition::Healthy,
                    _ => {
                        return Err(format!(
                            "container {} depends on {} with an unsupported condition",
                            c.name, d.container_name
                        ));
                    }
                };
                deps.push((index, condition));
            }
            // ECS starts a linked container first (and stops it last): an implicit START.
            for link in &c.links {
                let name = link.split_once(':').map_or(link.as_str(), |(name, _)| name);
                let Some(index) = names.iter().position(|n| n == name) else {
                    return Err(format!(
                        "container {} links to {name}, which is not in the task",
                        c.name
                    ));
                };
                if !deps.iter().any(|(d, _)| *d == index) {
                    deps.push((index, Condition::Start));
                }
            }
            depends_on.push(deps);
        }
        let plan = Self {
            names,
            depends_on,
            start_timeouts: def
                .containers
                .iter()
                .map(|c| {
                    (c.start_timeout_seconds > 0)
                        .then(|| Duration::from_secs(u64::from(c.start_timeout_seconds)))
                })
                .collect(),
        };
        if plan.has_cycle() {
            return Err(
                "the containers' dependencies (dependsOn and links) form a cycle".to_owned(),
            );
        }
        Ok(plan)
    }

    /// A plan where nothing depends on anything (for a definition `new` refuses).
    pub(super) fn independent(def: &TaskDefinition) -> Self {
        let n = def.containers.len();
        Self {
            names: def.containers.iter().map(|c| c.name.clone()).collect(),
            depends_on: vec![Vec::new(); n],
            start_timeouts: vec![None; n],
        }
    }

    fn has_cycle(&self) -> bool {
        // Kahn: repeatedly drop containers whose dependencies are all dropped.
        let mut done = vec![false; self.names.len()];
        loop {
            let next = (0..done.len())
                .find(|&i| !done[i] && self.depends_on[i].iter().all(|(d, _)| done[*d]));
            match next {
                Some(i) => done[i] = true,
                None => return done.iter().any(|d| !d),
            }
        }
    }

    /// What to do next, given each container's progress (by index) and the time now.
    pub(super) fn step(&self, progress: &[Progress], now: Instant) -> Step {
        let mut ready = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut waiting = false;
        for (i, deps) in self.depends_on.iter().enumerate() {
            if progress[i] != Progress::Waiting {
                continue;
            }
            waiting = true;
            let mut met = true;
            for &(d, condition) in deps {
                let (dependency, dependent) = (&self.names[d], &self.names[i]);
                let satisfied = match condition.verdict(progress[d]) {
                    Verdict::Met => true,
                    Verdict::Failed => {
                        let why = match progress[d] {
                            Progress::CannotStart => "could not start".to_owned(),
                            Progress::Exited(code) if condition == Condition::Healthy => {
                                format!("exited with {code} before it was healthy")
                            }
                            Progress::Exited(code) => format!("exited with {code}"),
                            _ => "did not meet it".to_owned(),
                        };
                        return Step::Fail(format!(
                            "dependency {dependency} of container {dependent} {why}; condition {}",
                            condition.name()
                        ));
                    }
                    Verdict::Never => {
                        return Step::Fail(format!(
                            "dependency {dependency} of container {dependent} could not start, so condition {} is never met and {dependent} never starts",
                            condition.name()
                        ));
                    }
                    Verdict::Pending => {
                        if let (Progress::Started(at) | Progress::Healthy(at), Some(timeout)) =
                            (progress[d], self.start_timeouts[d])
                        {
                            let expiry = at + timeout;
                            if now >= expiry {
                                return Step::Fail(format!(
                                    "container {dependent} gave up waiting for dependency {dependency}: it did not reach condition {} within its startTimeout of {}s",
                                    condition.name(),
                                    timeout.as_secs()
                                ));
                            }
                            deadline = Some(deadline.map_or(expiry, |x| x.min(expiry)));
                        }
                        false
                    }
                };
                met &= satisfied;
            }
            if met {
                ready.push(i);
            }
        }
        if !waiting {
            Step::Done
        } else {
            Step::Start { ready, deadline }
        }
    }

    /// The containers that may be stopped now: alive, and no alive container depends on them
    /// (dependents are stopped, and their exit awaited, before what they depend on).
    pub(super) fn stoppable(&self, alive: &[bool]) -> Vec<usize> {
        (0..alive.len())
            .filter(|&i| alive[i])
            .filter(|&i| {
                !self
                    .depends_on
                    .iter()
                    .enumerate()
                    .any(|(k, deps)| alive[k] && deps.iter().any(|(d, _)| *d == i))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerDefinition, ContainerDependency};

    /// A container: name, dependencies (name, condition), startTimeout.
    type Spec<'a> = (&'a str, &'a [(&'a str, DependencyCondition)], u32);

    fn def(containers: &[Spec<'_>]) -> TaskDefinition {
        TaskDefinition {
            containers: containers
                .iter()
                .map(|(name, deps, timeout)| ContainerDefinition {
                    name: (*name).into(),
                    depends_on: deps
                        .iter()
                        .map(|(d, c)| ContainerDependency {
                            container_name: (*d).into(),
                            condition: *c as i32,
                        })
                        .collect(),
                    start_timeout_seconds: *timeout,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    use DependencyCondition as C;
    use Progress::{CannotStart, Exited, Healthy, Started, Waiting};

    fn ready(ready: &[usize]) -> Step {
        Step::Start {
            ready: ready.to_vec(),
            deadline: None,
        }
    }

    #[test]
    fn containers_start_in_dependency_order() {
        // db; init (COMPLETE on nothing); app needs db started and init succeeded; web needs app.
        let plan = Plan::new(&def(&[
            ("db", &[], 0),
            ("init", &[], 0),
            ("app", &[("db", C::Start), ("init", C::Success)], 0),
            ("web", &[("app", C::Complete)], 0),
        ]))
        .unwrap();
        let now = Instant::now();
        assert_eq!(plan.step(&[Waiting; 4], now), ready(&[0, 1]));
        let s = Started(now);
        assert_eq!(plan.step(&[s, s, Waiting, Waiting], now), ready(&[]));
        assert_eq!(
            plan.step(&[s, Exited(0), Waiting, Waiting], now),
            ready(&[2])
        );
        assert_eq!(
            plan.step(&[Exited(1), Exited(0), s, Waiting], now),
            ready(&[])
        );
        assert_eq!(
            plan.step(&[s, Exited(0), Exited(7), Waiting], now),
            ready(&[3]),
            "COMPLETE takes any exit code"
        );
        assert_eq!(plan.step(&[s, Exited(0), Exited(7), s], now), Step::Done);
    }

    #[test]
    fn a_failed_success_dependency_fails_the_start() {
        let plan = Plan::new(&def(&[("db", &[], 0), ("app", &[("db", C::Success)], 0)])).unwrap();
        assert_eq!(
            plan.step(&[Exited(3), Waiting], Instant::now()),
            Step::Fail("dependency db of container app exited with 3; condition SUCCESS".into())
        );
    }

    #[test]
    fn the_dependencys_start_timeout_bounds_the_wait() {
        let plan = Plan::new(&def(&[
            ("init", &[], 5),
            ("app", &[("init", C::Complete)], 0),
            ("side", &[("init", C::Start)], 0),
        ]))
        .unwrap();
        let t0 = Instant::now();
        let state = [Started(t0), Waiting, Waiting];
        assert_eq!(
            plan.step(&state, t0 + Duration::from_secs(1)),
            Step::Start {
                ready: vec![2],
                deadline: Some(t0 + Duration::from_secs(5))
            },
            "START is not bounded by the timeout"
        );
        assert_eq!(
            plan.step(&state, t0 + Duration::from_secs(5)),
            Step::Fail(
                "container app gave up waiting for dependency init: it did not reach condition COMPLETE within its startTimeout of 5s".into()
            )
        );
    }

    #[test]
    fn stop_order_is_the_reverse_of_the_graph() {
        let plan = Plan::new(&def(&[
            ("db", &[], 0),
            ("app", &[("db", C::Start)], 0),
            ("web", &[("app", C::Start)], 0),
            ("side", &[], 0),
        ]))
        .unwrap();
        assert_eq!(plan.stoppable(&[true; 4]), [2, 3]);
        assert_eq!(plan.stoppable(&[true, true, false, false]), [1]);
        assert_eq!(plan.stoppable(&[true, false, false, false]), [0]);
        assert_eq!(plan.stoppable(&[true, false, true, false]), [0, 2]);
    }

    #[test]
    fn unknown_containers_and_cycles_are_refused() {
        assert!(Plan::new(&def(&[("a", &[("zz", C::Start)], 0)])).is_err());
        assert!(
            Plan::new(&def(&[
                ("a", &[("b", C::Start)], 0),
                ("b", &[("a", C::Start)], 0)
            ]))
            .is_err()
        );
        assert!(Plan::new(&def(&[("a", &[], 0), ("b", &[("a", C::Unspecified)], 0)])).is_err());
    }

    #[test]
    fn healthy_waits_for_the_health_check_within_the_start_timeout() {
        let plan = Plan::new(&def(&[
            ("db", &[], 10),
            ("app", &[("db", C::Healthy)], 0),
            ("side", &[("db", C::Start)], 0),
        ]))
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(plan.step(&[Waiting; 3], t0), ready(&[0]));
        assert_eq!(
            plan.step(&[Started(t0), Waiting, Waiting], t0),
            Step::Start {
                ready: vec![2],
                deadline: Some(t0 + Duration::from_secs(10))
            },
            "started is not healthy"
        );
        assert_eq!(
            plan.step(&[Healthy(t0), Waiting, Started(t0)], t0),
            ready(&[1])
        );
        assert_eq!(
            plan.step(&[Healthy(t0), Started(t0), Started(t0)], t0),
            Step::Done
        );
        assert_eq!(
            plan.step(
                &[Started(t0), Waiting, Started(t0)],
                t0 + Duration::from_secs(10)
            ),
            Step::Fail(
                "container app gave up waiting for dependency db: it did not reach condition HEALTHY within its startTimeout of 10s".into()
            )
        );
        assert_eq!(
            plan.step(&[Exited(1), Waiting, Started(t0)], t0),
            Step::Fail(
                "dependency db of container app exited with 1 before it was healthy; condition HEALTHY"
                    .into()
            )
        );
    }

    #[test]
    fn each_condition_rules_on_each_progress_as_ecs_does() {
        use Condition::{Complete, Healthy as H, Start, Success};
        use Verdict::{Failed, Met, Never, Pending};
        let at = Instant::now();
        let table = [
            (Waiting, [Pending, Pending, Pending, Pending]),
            (Started(at), [Met, Pending, Pending, Pending]),
            (Healthy(at), [Met, Pending, Pending, Met]),
            (Exited(0), [Met, Met, Met, Failed]),
            (Exited(2), [Met, Met, Failed, Failed]),
            // A dependency that could not start: START never met, COMPLETE and SUCCESS failed.
            (CannotStart, [Never, Failed, Failed, Never]),
        ];
        for (progress, verdicts) in table {
            for (condition, verdict) in [Start, Complete, Success, H].into_iter().zip(verdicts) {
                assert_eq!(
                    condition.verdict(progress),
                    verdict,
                    "{condition:?} on {progress:?}"
                );
            }
        }
    }

    #[test]
    fn a_dependency_that_could_not_start_fails_its_dependents_start() {
        let plan = Plan::new(&def(&[
            ("data", &[], 0),
            ("app", &[], 0),
            ("side", &[("data", C::Start)], 0),
            ("init", &[("data", C::Complete)], 0),
            ("check", &[("data", C::Success)], 0),
        ]))
        .unwrap();
        let now = Instant::now();
        let alone = Plan::new(&def(&[("data", &[], 0), ("app", &[], 0)])).unwrap();
        assert_eq!(
            alone.step(&[CannotStart, Waiting], now),
            ready(&[1]),
            "a container that could not start holds up only its dependents"
        );
        let s = Started(now);
        assert_eq!(
            plan.step(&[CannotStart, s, Waiting, Exited(0), Exited(0)], now),
            Step::Fail(
                "dependency data of container side could not start, so condition START is never met and side never starts".into()
            )
        );
        assert_eq!(
            plan.step(&[CannotStart, s, Exited(0), Waiting, Exited(0)], now),
            Step::Fail(
                "dependency data of container init could not start; condition COMPLETE".into()
            )
        );
        assert_eq!(
            plan.step(&[CannotStart, s, Exited(0), Exited(0), Waiting], now),
            Step::Fail(
                "dependency data of container check could not start; condition SUCCESS".into()
            )
        );
        assert_eq!(
            plan.step(&[CannotStart, s, s, s, s], now),
            Step::Done,
            "a container that could not start is done starting"
        );
        assert_eq!(
            plan.stoppable(&[false, true, true, true, true]),
            [1, 2, 3, 4],
            "and is never stopped"
        );
    }

    #[test]
    fn links_start_after_what_they_link_to_and_stop_before_it() {
        let mut d = def(&[("web", &[], 0), ("db", &[], 0), ("cache", &[], 0)]);
        d.containers[0].links = vec!["db:database".into(), "cache".into()];
        let plan = Plan::new(&d).unwrap();
        let now = Instant::now();
        assert_eq!(plan.step(&[Waiting; 3], now), ready(&[1, 2]));
        let s = Started(now);
        assert_eq!(plan.step(&[Waiting, s, Waiting], now), ready(&[2]));
        assert_eq!(plan.step(&[Waiting, s, s], now), ready(&[0]));
        assert_eq!(
            plan.stoppable(&[true; 3]),
            [0],
            "the linking container first"
        );
        // A cycle through links and dependsOn together is refused here too.
        d.containers[1].depends_on = vec![ContainerDependency {
            container_name: "web".into(),
            condition: C::Start as i32,
        }];
        assert!(Plan::new(&d).is_err());
        d.containers[1].depends_on.clear();
        d.containers[0].links = vec!["nosuch".into()];
        assert!(Plan::new(&d).is_err());
    }
}

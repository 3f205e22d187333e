//! Container dependencies (ECS `dependsOn` and `startTimeout`) as pure logic: which containers
//! may start now, whether the start has failed, and which containers may be stopped now. The
//! driver feeds it what happened; nothing here touches a runtime or a clock.
//!
//! ECS semantics: START is met once the dependency was started, COMPLETE once it exited,
//! SUCCESS once it exited with 0 (a non-zero exit fails the task's start), HEALTHY once its
//! health check passed (an exit before that fails the task's start). A dependency's own
//! `startTimeout`, counted from its start, bounds how long its dependents wait for it to reach
//! COMPLETE, SUCCESS or HEALTHY (ECS: "If a startTimeout value is specified for containerB and it doesn't
//! reach the desired status within that time then containerA gives up and not start").
//! Stopping goes the other way: a container is stopped only once every container that depends
//! on it has exited.

use std::time::{Duration, Instant};

use berth_proto::v1::{DependencyCondition, TaskDefinition};

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
            return Err("the containers' dependencies form a cycle".to_owned());
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
                let satisfied = match (condition, progress[d]) {
                    (_, Progress::Waiting) => false,
                    (Condition::Start, _) => true,
                    (Condition::Complete, Progress::Exited(_)) => true,
                    (Condition::Success, Progress::Exited(0)) => true,
                    (Condition::Success, Progress::Exited(code)) => {
                        return Step::Fail(format!(
                            "dependency {} of container {} exited with {code}; condition SUCCESS",
                            self.names[d], self.names[i]
                        ));
                    }
                    (Condition::Healthy, Progress::Healthy(_)) => true,
                    (Condition::Healthy, Progress::Exited(code)) => {
                        return Step::Fail(format!(
                            "dependency {} of container {} exited with {code} before it was healthy; condition HEALTHY",
                            self.names[d], self.names[i]
                        ));
                    }
                    (_, Progress::Started(at) | Progress::Healthy(at)) => {
                        if let Some(timeout) = self.start_timeouts[d] {
                            let expiry = at + timeout;
                            if now >= expiry {
                                return Step::Fail(format!(
                                    "container {} gave up waiting for dependency {}: it did not reach condition {} within its startTimeout of {}s",
                                    self.names[i],
                                    self.names[d],
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
    use Progress::{Exited, Healthy, Started, Waiting};

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
}

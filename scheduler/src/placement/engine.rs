//! [`place`]: each task in turn, the checks that keep an instance (in a fixed order, so that an
//! excluded instance is counted once, against the first check it fails), then the strategies
//! that order the instances left.

use std::borrow::Cow;
use std::collections::HashMap;

use rand::Rng;

use super::query::{Facts, Subject};
use super::refusal::{Check, Refusal};
use super::{Candidate, Constraint, Requirements, Resource, SpreadField, Strategy};

/// The instance of each of `count` tasks of `req`, placed one after the other, each seeing the
/// resources and groups the ones before took on `candidates`; all or none (on a refusal the
/// candidates hold what the tasks placed before it took). `rng` decides `random`.
pub fn place(
    candidates: &mut [Candidate],
    req: &Requirements,
    constraints: &[Constraint],
    strategies: &[Strategy],
    count: u32,
    rng: &mut impl Rng,
) -> Result<Vec<String>, Refusal> {
    let mut chosen = Vec::with_capacity(usize::try_from(count).unwrap_or_default());
    for placed in 0..count {
        let index = place_one(candidates, req, constraints, strategies, rng).map_err(|mut r| {
            r.placed = placed;
            r.requested = count;
            r
        })?;
        let instance = &mut candidates[index];
        take(instance, req);
        chosen.push(instance.instance_id.clone());
    }
    Ok(chosen)
}

fn place_one(
    candidates: &[Candidate],
    req: &Requirements,
    constraints: &[Constraint],
    strategies: &[Strategy],
    rng: &mut impl Rng,
) -> Result<usize, Refusal> {
    let mut refusal = Refusal::new(candidates.len());
    let mut passing = Vec::new();
    for (index, candidate) in candidates.iter().enumerate() {
        match first_failure(candidate, req, constraints) {
            None => passing.push(index),
            Some(check) => refusal.exclude(candidate, check),
        }
    }
    if passing.is_empty() {
        return Err(refusal);
    }
    let keys = strategy_keys(candidates, &passing, req, strategies, rng);
    let width = strategies.len();
    let best = (0..passing.len())
        .min_by(|&a, &b| {
            keys[a * width..(a + 1) * width]
                .cmp(&keys[b * width..(b + 1) * width])
                .then_with(|| {
                    candidates[passing[a]]
                        .instance_id
                        .cmp(&candidates[passing[b]].instance_id)
                })
        })
        .unwrap_or_default();
    Ok(passing[best])
}

/// The first check `candidate` fails for a task of `req`, or `None` when it can take it.
fn first_failure(
    candidate: &Candidate,
    req: &Requirements,
    constraints: &[Constraint],
) -> Option<Check> {
    let reports = |name: &str, wanted: &Option<String>| {
        wanted
            .as_deref()
            .is_none_or(|w| candidate.attributes.get(name).map(String::as_str) == Some(w))
    };
    if !reports("berth.cpu-architecture", &req.cpu_architecture)
        || !reports("berth.os-type", &req.os_type)
    {
        return Some(Check::Platform);
    }
    for constraint in constraints {
        match constraint {
            Constraint::MemberOf { expression, parsed } => {
                if !parsed.matches(candidate) {
                    return Some(Check::MemberOf(expression.clone()));
                }
            }
            Constraint::DistinctInstance => {
                if candidate.groups.contains(&req.group) {
                    return Some(Check::DistinctInstance);
                }
            }
        }
    }
    let free = &candidate.free;
    if req.ports.iter().any(|p| free.taken_ports.contains(p)) {
        return Some(Check::Ports);
    }
    if req.awsvpc && free.awsvpc_addresses == Some(0) {
        return Some(Check::AwsvpcAddresses);
    }
    if free.cpu < req.cpu {
        return Some(Check::Cpu);
    }
    if free.memory_mib < req.memory_mib {
        return Some(Check::Memory);
    }
    None
}

/// One key per strategy for each passing instance, row after row: lower goes first.
fn strategy_keys(
    candidates: &[Candidate],
    passing: &[usize],
    req: &Requirements,
    strategies: &[Strategy],
    rng: &mut impl Rng,
) -> Vec<u64> {
    let mut keys = Vec::with_capacity(passing.len() * strategies.len());
    // Tasks of the group in each bucket of each spread attribute, over every candidate.
    let buckets: Vec<Option<HashMap<&str, u64>>> = strategies
        .iter()
        .map(|s| match s {
            Strategy::Spread(SpreadField::Attribute(name)) => {
                let mut counts = HashMap::new();
                for c in candidates {
                    *counts
                        .entry(c.attribute(name).unwrap_or_default())
                        .or_default() += in_group(c, req);
                }
                Some(counts)
            }
            _ => None,
        })
        .collect();
    for &index in passing {
        let c = &candidates[index];
        for (strategy, counts) in strategies.iter().zip(&buckets) {
            keys.push(match (strategy, counts) {
                (Strategy::Binpack(Resource::Memory), _) => c.free.memory_mib,
                (Strategy::Binpack(Resource::Cpu), _) => c.free.cpu,
                (Strategy::Spread(SpreadField::InstanceId), _) => in_group(c, req),
                (Strategy::Spread(SpreadField::Attribute(name)), Some(counts)) => counts
                    .get(c.attribute(name).unwrap_or_default())
                    .copied()
                    .unwrap_or_default(),
                (Strategy::Spread(SpreadField::Attribute(_)), None) => 0,
                (Strategy::Random, _) => rng.random(),
            });
        }
    }
    keys
}

fn in_group(candidate: &Candidate, req: &Requirements) -> u64 {
    candidate.groups.iter().filter(|g| **g == req.group).count() as u64
}

/// A subject's one value, or none when it is empty.
fn one(value: &str) -> Vec<Cow<'_, str>> {
    if value.is_empty() {
        Vec::new()
    } else {
        vec![Cow::Borrowed(value)]
    }
}

/// Reserves a task of `req` on `candidate`, so that the next placement sees it.
fn take(candidate: &mut Candidate, req: &Requirements) {
    let free = &mut candidate.free;
    free.cpu = free.cpu.saturating_sub(req.cpu);
    free.memory_mib = free.memory_mib.saturating_sub(req.memory_mib);
    free.taken_ports.extend(req.ports.iter().copied());
    if req.awsvpc {
        free.awsvpc_addresses = free.awsvpc_addresses.map(|n| n.saturating_sub(1));
    }
    candidate.groups.push(req.group.clone());
    candidate.running_tasks_count = candidate.running_tasks_count.saturating_add(1);
}

impl Facts for Candidate {
    fn values(&self, subject: &Subject) -> Vec<Cow<'_, str>> {
        match subject {
            Subject::Attribute(name) => self
                .attribute(name)
                .map(Cow::Borrowed)
                .into_iter()
                .collect(),
            Subject::Ec2InstanceId => one(&self.ec2_instance_id),
            Subject::InstanceId => vec![Cow::Borrowed(self.instance_id.as_str())],
            // Only connected instances are candidates.
            Subject::AgentConnected => vec![Cow::Borrowed("true")],
            Subject::AgentVersion => one(&self.agent_version),
            Subject::RegisteredAt => one(&self.registered_at),
            Subject::RunningTasksCount => vec![Cow::Owned(self.running_tasks_count.to_string())],
            Subject::TaskGroup => self
                .groups
                .iter()
                .map(|g| Cow::Borrowed(g.as_str()))
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

//! The placement engine, pure (no store, no I/O): which instance each of N tasks goes to.
//!
//! Input: the task's [`Requirements`] (CPU, memory, fixed host ports, an awsvpc address, the
//! platform), the [`Candidate`] instances with their free resources, attributes and the task
//! groups already on them, the [`Constraint`]s and the [`Strategy`]s. Output: the chosen
//! instance of each task, or a [`Refusal`] that names each constraint or resource that failed
//! and how many instances it excluded.
//!
//! As ECS does, an instance must pass every check (platform, constraints, ports, awsvpc
//! addresses, CPU, memory); the strategies then order those that pass, the first strategy
//! first, later ones breaking its ties (the instance ID breaks the last ties). Each task placed
//! takes its resources and joins its group on the chosen instance before the next one is placed.
//!
//! The one entry point is [`place`]; [`Constraint::parse`] and [`Strategy::parse`] read ECS's
//! `type=…,expression=…` / `type=…,field=…` syntax, and [`Constraint::member_of`] a task
//! definition's or service's `memberOf` expression.

mod engine;
mod ports;
pub mod query;
mod refusal;
mod spec;

use std::collections::{BTreeMap, BTreeSet};

pub use engine::place;
pub use ports::{HostPort, Protocol};
pub use query::{Expression, ParseError};
pub use refusal::{Check, Exclusion, Refusal};
pub use spec::{MAX_CONSTRAINTS, MAX_STRATEGIES, SpecError, check_counts};

/// What one task needs of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// CPU in ECS units.
    pub cpu: u64,
    pub memory_mib: u64,
    /// Fixed host ports (bridge and host mode); awsvpc tasks have their own address and none.
    pub ports: Vec<HostPort>,
    /// Whether the task takes one of the instance's awsvpc addresses.
    pub awsvpc: bool,
    /// The `berth.cpu-architecture` the instance must report (amd64, arm64); `None`: any.
    pub cpu_architecture: Option<String>,
    /// The `berth.os-type` the instance must report (linux); `None`: any.
    pub os_type: Option<String>,
    /// The task's group (ECS's task group): `family:NAME` for a task run alone,
    /// `service:NAME` for a service's. `distinctInstance` and `spread` count tasks of this
    /// group; `task:group` in an expression sees the groups on an instance.
    pub group: String,
}

/// What an instance has left, as placement counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Free {
    pub cpu: u64,
    pub memory_mib: u64,
    /// Host ports taken (by the operator's reservations or by tasks).
    pub taken_ports: BTreeSet<HostPort>,
    /// How many more awsvpc tasks the instance can address; `None`: no limit is known.
    pub awsvpc_addresses: Option<u32>,
}

/// One instance a task may go to: connected, ACTIVE, in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Berth's container instance ID (`instanceId` in expressions and `spread`).
    pub instance_id: String,
    /// The host's own identity (its EC2 instance ID on EC2): `ec2InstanceId` in expressions.
    pub ec2_instance_id: String,
    /// What the agent reported (`berth.*`) and the operator's own; ECS's names for the same
    /// facts (`ecs.os-type`, `ecs.cpu-architecture`, `ecs.os-family`) are derived from
    /// Berth's when the agent did not report them (see [`Candidate::attribute`]).
    pub attributes: BTreeMap<String, String>,
    pub agent_version: String,
    /// RFC 3339, for `registeredAt` in expressions.
    pub registered_at: String,
    pub running_tasks_count: u32,
    pub free: Free,
    /// The group of each task on the instance that holds resources (see
    /// [`Requirements::group`]); one entry a task.
    pub groups: Vec<String>,
}

impl Candidate {
    /// The attribute `name`: reported, or ECS's name derived from Berth's.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        if let Some(value) = self.attributes.get(name) {
            return Some(value);
        }
        let berth = |n: &str| self.attributes.get(n).map(String::as_str);
        match name {
            "ecs.os-type" => berth("berth.os-type"),
            "ecs.cpu-architecture" => match berth("berth.cpu-architecture")? {
                "amd64" => Some("x86_64"),
                other => Some(other),
            },
            "ecs.os-family" => (berth("berth.os-type")? == "linux").then_some("LINUX"),
            _ => None,
        }
    }
}

/// A rule every instance a task goes to must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// No two tasks of the same group on one instance.
    DistinctInstance,
    /// Only instances the expression selects; `expression` is the text as given.
    MemberOf {
        expression: String,
        parsed: Expression,
    },
}

impl Constraint {
    /// A `memberOf` constraint with `expression` in the cluster query language.
    pub fn member_of(expression: &str) -> Result<Self, ParseError> {
        Ok(Self::MemberOf {
            parsed: Expression::parse(expression)?,
            expression: expression.to_owned(),
        })
    }
}

/// How the instances that pass every check are ordered; strategies apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// The instance with the least of this resource left first.
    Binpack(Resource),
    /// The instance (or attribute value) with the fewest tasks of the group first.
    Spread(SpreadField),
    /// Any instance, at random.
    Random,
}

/// The resource `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

/// What `spread` balances tasks over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// Each instance (`instanceId`, also spelled `host`).
    InstanceId,
    /// The values of an attribute (`attribute:ecs.availability-zone`); instances without it
    /// share one bucket.
    Attribute(String),
}

/// Today's behaviour when a request names no strategy: binpack on memory.
pub const DEFAULT_STRATEGIES: &[Strategy] = &[Strategy::Binpack(Resource::Memory)];

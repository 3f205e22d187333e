//! Step 3b, validation: the semantic rules over the proto model (names, memory and CPU budgets,
//! limits, dependencies), each problem with its JSON path; `volumes.rs`, `network.rs` and
//! `linux.rs` add the rules of their fields.

use std::collections::HashMap;

use berth_proto::v1 as proto;

use super::error::Problem;
use super::fields::{
    IPC_MODES, MAX_STOP_TIMEOUT_SECONDS, MIN_MEMORY_MIB, NETWORK_MODES, PID_MODES,
    START_TIMEOUT_SECONDS, ULIMIT_NAMES,
};
use super::refs::{container_indexes, find_cycle, name_problem};
use super::{linux, network, suggest, volumes, walk};

pub(super) fn start_timeout_out_of_range(seconds: u32) -> String {
    format!(
        "{seconds} seconds is outside ECS's range of {} to {} seconds",
        START_TIMEOUT_SECONDS.start(),
        START_TIMEOUT_SECONDS.end()
    )
}

/// The semantic checks, each problem with its path. Zero container values mean "not given"
/// here, as in the proto model; a given zero `memory` is below the minimum anyway.
pub(super) fn definition(
    def: &proto::TaskDefinition,
    task_memory_given: bool,
    problems: &mut Vec<Problem>,
) {
    if let Some(message) = name_problem(&def.family) {
        problems.push(Problem::at("family", message));
    }
    if !NETWORK_MODES.contains(&def.network_mode.as_str()) {
        problems.push(Problem::at(
            "networkMode",
            format!(
                "`{}` is not a network mode: use awsvpc, bridge, host or none",
                def.network_mode
            ),
        ));
    }
    namespace_mode("pidMode", &def.pid_mode, PID_MODES, problems);
    namespace_mode("ipcMode", &def.ipc_mode, IPC_MODES, problems);
    if def.memory_mib > 0 && def.memory_mib < MIN_MEMORY_MIB {
        problems.push(Problem::at("memory", below_minimum(def.memory_mib)));
    }
    if def.containers.is_empty() {
        problems.push(Problem::at(
            "containerDefinitions",
            "at least one container is required",
        ));
        return;
    }
    if !def.containers.iter().any(|c| c.essential) {
        problems.push(Problem::at(
            "containerDefinitions",
            "at least one container must be essential",
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, c) in def.containers.iter().enumerate() {
        let path = walk::index("containerDefinitions", i);
        validate_container(def, task_memory_given, c, &path, problems);
        if let Some(first) = names.get(c.name.as_str()) {
            problems.push(Problem::at(
                &walk::child(&path, "name"),
                format!(
                    "`{}` is already the name of containerDefinitions[{first}]",
                    c.name
                ),
            ));
        } else {
            names.insert(&c.name, i);
        }
    }
    validate_dependencies(def, problems);
    volumes::validate(def, problems);
    network::validate(def, problems);
    let (cpu, memory) = container_sums(def);
    if def.cpu > 0 && cpu > u64::from(def.cpu) {
        problems.push(Problem::at(
            "cpu",
            format!(
                "the containers reserve {cpu} CPU units in total, more than the task's {}",
                def.cpu
            ),
        ));
    }
    if def.memory_mib > 0 && memory > def.memory_mib {
        problems.push(Problem::at(
            "memory",
            format!(
                "the containers reserve {memory} MiB in total, more than the task's {} MiB",
                def.memory_mib
            ),
        ));
    }
}

/// Whether an image is a template's placeholder such as CodeDeploy's `<IMAGE1_NAME>` (`<` and
/// `>` cannot appear in an image reference).
fn is_placeholder(image: &str) -> bool {
    image.contains('<') || image.contains('>')
}

fn validate_container(
    def: &proto::TaskDefinition,
    task_memory_given: bool,
    c: &proto::ContainerDefinition,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let field = |name: &str| walk::child(path, name);
    if let Some(message) = name_problem(&c.name) {
        problems.push(Problem::at(&field("name"), message));
    }
    if c.image.trim().is_empty() {
        problems.push(Problem::at(&field("image"), "must not be empty"));
    } else if is_placeholder(&c.image) {
        // A CodeDeploy template (`<IMAGE1_NAME>`): CodeDeploy fills it in when it deploys, so
        // registered as it is, every task of it would fail its pull.
        problems.push(Problem::at(
            &field("image"),
            format!(
                "`{}` is a template placeholder, not an image: replace it with an image \
                 reference before registering, as CodeDeploy does when it deploys",
                c.image
            ),
        ));
    }
    let memory = c.memory_mib;
    let reservation = c.memory_reservation_mib;
    if memory > 0 && memory < MIN_MEMORY_MIB {
        problems.push(Problem::at(&field("memory"), below_minimum(memory)));
    }
    if reservation > 0 && reservation < MIN_MEMORY_MIB {
        problems.push(Problem::at(
            &field("memoryReservation"),
            below_minimum(reservation),
        ));
    }
    if memory > 0 && reservation > memory {
        problems.push(Problem::at(
            &field("memoryReservation"),
            format!("{reservation} MiB is more than the container's memory of {memory} MiB"),
        ));
    }
    if def.memory_mib > 0 && memory > def.memory_mib {
        problems.push(Problem::at(
            &field("memory"),
            format!(
                "{memory} MiB is more than the task's memory of {} MiB",
                def.memory_mib
            ),
        ));
    }
    if !task_memory_given && memory == 0 && reservation == 0 {
        problems.push(Problem::at(
            path,
            "set `memory` or `memoryReservation`, or the task-level `memory`",
        ));
    }
    if c.stop_timeout_seconds > MAX_STOP_TIMEOUT_SECONDS {
        problems.push(Problem::at(
            &field("stopTimeout"),
            format!(
                "{} seconds is more than the maximum of {MAX_STOP_TIMEOUT_SECONDS}",
                c.stop_timeout_seconds
            ),
        ));
    }
    if c.start_timeout_seconds > 0 && !START_TIMEOUT_SECONDS.contains(&c.start_timeout_seconds) {
        problems.push(Problem::at(
            &field("startTimeout"),
            start_timeout_out_of_range(c.start_timeout_seconds),
        ));
    }
    linux::validate_network(&def.network_mode, c, path, problems);
    linux::validate_security_and_swap(c, path, problems);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, u) in c.ulimits.iter().enumerate() {
        let ulimit_path = walk::index(&field("ulimits"), j);
        if !ULIMIT_NAMES.contains(&u.name.as_str()) {
            let hint = match suggest::nearest(&u.name, ULIMIT_NAMES.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("use one of {}", ULIMIT_NAMES.join(", ")),
            };
            problems.push(Problem::at(
                &walk::child(&ulimit_path, "name"),
                format!("`{}` is not a ulimit: {hint}", u.name),
            ));
        } else if let Some(first) = seen.get(u.name.as_str()) {
            problems.push(Problem::at(
                &walk::child(&ulimit_path, "name"),
                format!("`{}` is already set by ulimits[{first}]", u.name),
            ));
        } else {
            seen.insert(&u.name, j);
        }
        if u.soft_limit > u.hard_limit {
            problems.push(Problem::at(
                &ulimit_path,
                format!(
                    "softLimit {} is more than hardLimit {}",
                    u.soft_limit, u.hard_limit
                ),
            ));
        }
    }
}

/// ECS's rules for `dependsOn`: every dependency names another container of the task, a
/// container depended on with COMPLETE or SUCCESS is not essential (ECS: "This condition can't be
/// set on an essential container"), HEALTHY needs a health check on the container depended on,
/// and the dependencies form no cycle (each cycle is reported once, at the dependency that
/// closes it).
fn validate_dependencies(def: &proto::TaskDefinition, problems: &mut Vec<Problem>) {
    let index = container_indexes(def);
    // The graph's edges, dependent → dependency, with the path of the dependency's name.
    let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); def.containers.len()];
    for (i, c) in def.containers.iter().enumerate() {
        for (j, d) in c.depends_on.iter().enumerate() {
            let dep_path = walk::index(
                &walk::child(&walk::index("containerDefinitions", i), "dependsOn"),
                j,
            );
            let name_path = walk::child(&dep_path, "containerName");
            let Some(&target) = index.get(d.container_name.as_str()) else {
                problems.push(Problem::at(
                    &name_path,
                    format!(
                        "no container named {:?} in this task definition",
                        d.container_name
                    ),
                ));
                continue;
            };
            if target == i {
                problems.push(Problem::at(
                    &name_path,
                    format!("container {:?} cannot depend on itself", c.name),
                ));
                continue;
            }
            let condition = proto::DependencyCondition::try_from(d.condition)
                .unwrap_or(proto::DependencyCondition::Unspecified);
            let condition_path = walk::child(&dep_path, "condition");
            let dependency = &def.containers[target];
            match condition {
                proto::DependencyCondition::Complete | proto::DependencyCondition::Success
                    if dependency.essential =>
                {
                    problems.push(Problem::at(
                        &condition_path,
                        format!(
                            "condition {} needs container {} to be non-essential (\"essential\": false), as on ECS",
                            condition_name(condition),
                            dependency.name
                        ),
                    ));
                }
                proto::DependencyCondition::Healthy if dependency.health_check.is_none() => {
                    problems.push(Problem::at(
                        &condition_path,
                        format!(
                            "condition HEALTHY needs a healthCheck on container {}: add one or use START",
                            dependency.name
                        ),
                    ));
                }
                _ => {}
            }
            edges[i].push((target, name_path));
        }
    }
    if let Some(cycle) = find_cycle(def, &edges, "dependsOn") {
        problems.push(cycle);
    }
}

fn condition_name(condition: proto::DependencyCondition) -> &'static str {
    match condition {
        proto::DependencyCondition::Start => "START",
        proto::DependencyCondition::Complete => "COMPLETE",
        proto::DependencyCondition::Success => "SUCCESS",
        proto::DependencyCondition::Healthy => "HEALTHY",
        proto::DependencyCondition::Unspecified => "UNSPECIFIED",
    }
}

pub(super) fn below_minimum(mib: u64) -> String {
    format!("{mib} MiB is less than the minimum of {MIN_MEMORY_MIB} MiB")
}

/// The containers' CPU units and reserved memory (reservation, else hard limit), summed.
fn container_sums(definition: &proto::TaskDefinition) -> (u64, u64) {
    definition
        .containers
        .iter()
        .fold((0u64, 0u64), |(cpu, memory), c| {
            let reserved = if c.memory_reservation_mib > 0 {
                c.memory_reservation_mib
            } else {
                c.memory_mib
            };
            (
                cpu.saturating_add(u64::from(c.cpu)),
                memory.saturating_add(reserved),
            )
        })
}

/// A task's `pidMode` or `ipcMode`: empty (each container has its own namespace) or one of
/// `supported`.
fn namespace_mode(field: &str, mode: &str, supported: &[&str], problems: &mut Vec<Problem>) {
    if mode.is_empty() || supported.contains(&mode) {
        return;
    }
    let message = format!(
        "`{mode}` is not a value of {field}: use {} (or leave it out)",
        supported.join(" or ")
    );
    problems.push(Problem::at(field, message));
}

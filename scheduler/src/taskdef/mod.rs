//! ECS task-definition JSON: parsing with precise errors, validation, and conversion to the
//! proto model (`berth_proto::v1::TaskDefinition`).
//!
//! [`parse`] runs in three steps, each reporting every problem it finds with its JSON path:
//! 1. JSON syntax (serde_json; line and column);
//! 2. structure (`walk.rs` against the tables of `fields.rs`): unknown fields with the nearest
//!    known one suggested, fields Berth does not support yet, missing required fields, wrong
//!    types;
//! 3. semantics (here): names, memory and CPU budgets, limits.
//!
//! Which ECS fields are supported, ignored or refused is decided in `fields.rs` alone.

mod ecs;
mod error;
mod fields;
mod linux;
mod network;
mod suggest;
mod volumes;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use berth_proto::v1 as proto;
use serde_json::Value;

pub use error::{Problem, TaskDefError};
use fields::{
    DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS, DEFAULT_HEALTH_CHECK_RETRIES,
    DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS, DEFAULT_RESTART_ATTEMPT_PERIOD_SECONDS,
    DEPENDENCY_CONDITIONS, HEALTH_CHECK_INTERVAL_SECONDS, HEALTH_CHECK_RETRIES,
    HEALTH_CHECK_START_PERIOD_SECONDS, HEALTH_CHECK_TIMEOUT_SECONDS, LOG_DRIVERS, LOG_OPTIONS,
    MAX_IGNORED_EXIT_CODES, MAX_LOG_FILES, MAX_NAME_LEN, MAX_STOP_TIMEOUT_SECONDS, MIN_MEMORY_MIB,
    NETWORK_MODES, RESTART_ATTEMPT_PERIOD_SECONDS, START_TIMEOUT_SECONDS, TASK_DEFINITION,
    ULIMIT_NAMES,
};

/// The network mode of a definition that does not name one, as on ECS for Linux.
const DEFAULT_NETWORK_MODE: &str = "bridge";

/// Parses and validates ECS RegisterTaskDefinition JSON.
///
/// The result has revision 0 and no `registered_at` (the scheduler assigns both) and keeps
/// `json` as `source_json`. An absent `networkMode` becomes "bridge"; an absent task-level `cpu`
/// or `memory` stays 0 ("the sum of the containers'", see [`budget`]).
pub fn parse(json: &str) -> Result<proto::TaskDefinition, TaskDefError> {
    let value: Value = serde_json::from_str(json).map_err(syntax_error)?;
    let Some(map) = value.as_object() else {
        return Err(TaskDefError::NotAnObject {
            found: json_type(&value),
        });
    };
    let mut problems = Vec::new();
    walk::check_object(map, TASK_DEFINITION, "", &mut problems);
    if !problems.is_empty() {
        return Err(TaskDefError::Invalid { problems });
    }
    let task_memory_given = map.get("memory").is_some_and(|m| !m.is_null());
    let mut value = value;
    remove_nulls(&mut value);
    let ecs: ecs::TaskDefinition =
        serde_json::from_value(value).map_err(|error| TaskDefError::Invalid {
            problems: vec![Problem::with_message("", error.to_string())],
        })?;
    let definition = convert(ecs, json, &mut problems);
    validate(&definition, task_memory_given, &mut problems);
    if problems.is_empty() {
        Ok(definition)
    } else {
        Err(TaskDefError::Invalid { problems })
    }
}

/// What a task of this definition reserves on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// CPU units (1024 = one vCPU).
    pub cpu: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// The task's budget: its task-level `cpu` and `memory` where set, otherwise the sum of its
/// containers' (`cpu`; `memoryReservation` where set, else `memory`), as ECS reserves them.
pub fn budget(definition: &proto::TaskDefinition) -> Budget {
    let (cpu, memory_mib) = container_sums(definition);
    Budget {
        cpu: if definition.cpu > 0 {
            definition.cpu
        } else {
            u32::try_from(cpu).unwrap_or(u32::MAX)
        },
        memory_mib: if definition.memory_mib > 0 {
            definition.memory_mib
        } else {
            memory_mib
        },
    }
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

/// Removes every object member that is `null`: absent and `null` mean the same everywhere.
fn remove_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(remove_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_nulls),
        _ => {}
    }
}

fn syntax_error(error: serde_json::Error) -> TaskDefError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let reason = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    TaskDefError::Syntax {
        reason,
        line,
        column,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The proto model of a structurally valid definition. Task sizes were checked by the walk;
/// should they fail here anyway, that is reported rather than trusted.
fn convert(
    ecs: ecs::TaskDefinition,
    json: &str,
    problems: &mut Vec<Problem>,
) -> proto::TaskDefinition {
    let cpu = match ecs.cpu.as_ref().map(walk::task_cpu).transpose() {
        Ok(cpu) => cpu.unwrap_or(0),
        Err(message) => {
            problems.push(Problem::at("cpu", message));
            0
        }
    };
    let memory_mib = match ecs.memory.as_ref().map(walk::task_memory).transpose() {
        Ok(Some(0)) => {
            problems.push(Problem::at("memory", below_minimum(0)));
            0
        }
        Ok(memory) => memory.unwrap_or(0),
        Err(message) => {
            problems.push(Problem::at("memory", message));
            0
        }
    };
    let volumes = ecs.volumes.unwrap_or_default();
    volumes::autoprovision_problems(&volumes, problems);
    let network_mode = ecs
        .network_mode
        .unwrap_or_else(|| DEFAULT_NETWORK_MODE.to_owned());
    let containers = ecs
        .container_definitions
        .into_iter()
        .enumerate()
        .map(|(i, c)| container(c, i, &network_mode, problems))
        .collect();
    proto::TaskDefinition {
        family: ecs.family,
        revision: 0,
        cpu,
        memory_mib,
        network_mode,
        containers,
        registered_at: None,
        source_json: json.to_owned(),
        volumes: volumes::convert(volumes),
    }
}

fn container(
    c: ecs::ContainerDefinition,
    i: usize,
    network_mode: &str,
    problems: &mut Vec<Problem>,
) -> proto::ContainerDefinition {
    let path = walk::index("containerDefinitions", i);
    let mut environment = HashMap::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for (j, pair) in c.environment.unwrap_or_default().into_iter().enumerate() {
        let pair_path = walk::child(&walk::index(&walk::child(&path, "environment"), j), "name");
        if pair.name.is_empty() {
            problems.push(Problem::at(&pair_path, "must not be empty"));
        } else if pair.name.contains('=') {
            problems.push(Problem::at(
                &pair_path,
                format!("`{}` must not contain `=`", pair.name),
            ));
        } else if let Some(first) = first_seen.get(&pair.name) {
            problems.push(Problem::at(
                &pair_path,
                format!("`{}` is already set by environment[{first}]", pair.name),
            ));
        }
        first_seen.entry(pair.name.clone()).or_insert(j);
        environment.insert(pair.name, pair.value.unwrap_or_default());
    }
    // Zero means "not given" in the proto model, so a given zero is refused here.
    for (name, value) in [
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if value == Some(0) {
            problems.push(Problem::at(&walk::child(&path, name), below_minimum(0)));
        }
    }
    let depends_on = c
        .depends_on
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, d)| {
            let condition = match d.condition.as_str() {
                "START" => proto::DependencyCondition::Start,
                "COMPLETE" => proto::DependencyCondition::Complete,
                "SUCCESS" => proto::DependencyCondition::Success,
                "HEALTHY" => proto::DependencyCondition::Healthy,
                other => {
                    let condition_path = walk::child(
                        &walk::index(&walk::child(&path, "dependsOn"), j),
                        "condition",
                    );
                    problems.push(Problem::at(
                        &condition_path,
                        format!(
                            "`{other}` is not a dependency condition: use one of {}",
                            DEPENDENCY_CONDITIONS.join(", ")
                        ),
                    ));
                    proto::DependencyCondition::Unspecified
                }
            };
            proto::ContainerDependency {
                container_name: d.container_name,
                condition: condition as i32,
            }
        })
        .collect();
    if c.start_timeout == Some(0) {
        // Zero means "not given" in the proto model; checked here since it is lost after.
        problems.push(Problem::at(
            &walk::child(&path, "startTimeout"),
            start_timeout_out_of_range(0),
        ));
    }
    let restart_policy = c
        .restart_policy
        .map(|p| restart_policy(p, &walk::child(&path, "restartPolicy"), problems));
    let log_configuration = c
        .log_configuration
        .map(|l| log_configuration(l, &walk::child(&path, "logConfiguration"), problems));
    let health_check = c
        .health_check
        .map(|h| health_check(h, &walk::child(&path, "healthCheck"), problems));
    let system_controls =
        linux::system_controls(c.system_controls.unwrap_or_default(), &path, problems);
    let environment_files =
        linux::environment_files(c.environment_files.unwrap_or_default(), &path, problems);
    let extra_hosts = linux::extra_hosts(c.extra_hosts.unwrap_or_default(), &path, problems);
    let dns_servers = c.dns_servers.unwrap_or_default();
    linux::dns_servers(&dns_servers, &path, problems);
    let dns_search_domains = c.dns_search_domains.unwrap_or_default();
    linux::dns_search_domains(&dns_search_domains, &path, problems);
    let linux_parameters = c
        .linux_parameters
        .map(|p| linux::linux_parameters(p, &path, problems));
    let port_mappings = network::port_mappings(
        c.port_mappings.unwrap_or_default(),
        network_mode,
        &path,
        problems,
    );
    let security = linux::security_options(
        &c.docker_security_options.unwrap_or_default(),
        &path,
        problems,
    );
    let entry_point_set = c.entry_point.is_some();
    let command_set = c.command.is_some();
    proto::ContainerDefinition {
        name: c.name,
        image: c.image,
        cpu: c.cpu.unwrap_or(0),
        memory_mib: c.memory.unwrap_or(0),
        memory_reservation_mib: c.memory_reservation.unwrap_or(0),
        essential: c.essential.unwrap_or(true),
        entry_point: c.entry_point.unwrap_or_default(),
        command: c.command.unwrap_or_default(),
        environment,
        working_directory: c.working_directory.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        stop_timeout_seconds: c.stop_timeout.unwrap_or(0),
        readonly_root_filesystem: c.readonly_root_filesystem.unwrap_or(false),
        ulimits: c
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| proto::Ulimit {
                name: u.name,
                soft_limit: u.soft_limit,
                hard_limit: u.hard_limit,
            })
            .collect(),
        hostname: c.hostname.unwrap_or_default(),
        docker_labels: c.docker_labels.unwrap_or_default().into_iter().collect(),
        entry_point_set,
        command_set,
        depends_on,
        start_timeout_seconds: c.start_timeout.unwrap_or(0),
        restart_policy,
        log_configuration,
        mount_points: c
            .mount_points
            .unwrap_or_default()
            .into_iter()
            .map(|m| proto::MountPoint {
                source_volume: m.source_volume,
                container_path: m.container_path,
                read_only: m.read_only.unwrap_or(false),
            })
            .collect(),
        volumes_from: c
            .volumes_from
            .unwrap_or_default()
            .into_iter()
            .map(|v| proto::VolumeFrom {
                source_container: v.source_container,
                read_only: v.read_only.unwrap_or(false),
            })
            .collect(),
        health_check,
        system_controls,
        extra_hosts,
        dns_servers,
        dns_search_domains,
        linux_parameters,
        privileged: c.privileged.unwrap_or(false),
        environment_files,
        disable_networking: c.disable_networking.unwrap_or(false),
        port_mappings,
        links: c.links.unwrap_or_default(),
        no_new_privileges: security.no_new_privileges,
        seccomp_profile: security.seccomp_profile,
        interactive: c.interactive.unwrap_or(false),
        pseudo_terminal: c.pseudo_terminal.unwrap_or(false),
    }
}

/// ECS's rules for a `healthCheck`: a command of `["CMD", program, args...]` or
/// `["CMD-SHELL", command]` (several strings after CMD-SHELL are joined with spaces, as Docker
/// does), interval 5 to 300 seconds (default 30), timeout 2 to 60 (default 5), retries 1 to 10
/// (default 3) and startPeriod 0 to 300 (default 0, off). The defaults are filled in.
fn health_check(
    h: ecs::HealthCheck,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::HealthCheck {
    let command_path = walk::child(path, "command");
    match h.command.first().map(String::as_str) {
        None => problems.push(Problem::at(
            &command_path,
            "must not be empty: use [\"CMD\", program, args...] or [\"CMD-SHELL\", command]",
        )),
        Some("CMD" | "CMD-SHELL") if h.command[1..].iter().all(|a| a.trim().is_empty()) => {
            problems.push(Problem::at(
                &command_path,
                format!("`{}` needs a command to run after it", h.command[0]),
            ));
        }
        Some("CMD" | "CMD-SHELL") => {}
        Some(other) => problems.push(Problem::at(
            &walk::index(&command_path, 0),
            format!(
                "`{other}` is not how a health check command starts: use [\"CMD\", program, args...] or [\"CMD-SHELL\", command]"
            ),
        )),
    }
    let mut bounded = |name: &str,
                       value: Option<u32>,
                       default: u32,
                       range: std::ops::RangeInclusive<u32>,
                       unit: &str| {
        let value = value.unwrap_or(default);
        if !range.contains(&value) {
            problems.push(Problem::at(
                &walk::child(path, name),
                format!(
                    "{value}{unit} is outside ECS's range of {} to {}{unit}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        value
    };
    let interval = bounded(
        "interval",
        h.interval,
        DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS,
        HEALTH_CHECK_INTERVAL_SECONDS,
        " seconds",
    );
    let timeout = bounded(
        "timeout",
        h.timeout,
        DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS,
        HEALTH_CHECK_TIMEOUT_SECONDS,
        " seconds",
    );
    let retries = bounded(
        "retries",
        h.retries,
        DEFAULT_HEALTH_CHECK_RETRIES,
        HEALTH_CHECK_RETRIES,
        "",
    );
    let start_period = bounded(
        "startPeriod",
        h.start_period,
        0,
        HEALTH_CHECK_START_PERIOD_SECONDS,
        " seconds",
    );
    proto::HealthCheck {
        command: h.command,
        interval_seconds: interval,
        timeout_seconds: timeout,
        retries,
        start_period_seconds: start_period,
    }
}

/// A `logConfiguration`: the json-file driver, with Docker's `max-size` (bytes, or a number
/// with a k, m or g suffix, binary multiples as Docker's) and `max-file` (a count of at least
/// one) options; other drivers and options are refused by name.
fn log_configuration(
    l: ecs::LogConfiguration,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::LogConfiguration {
    if !LOG_DRIVERS.contains(&l.log_driver.as_str()) {
        let driver_path = walk::child(path, "logDriver");
        problems.push(Problem::with_message(
            &driver_path,
            format!(
                "{driver_path} {} is not supported by Berth; supported: {}",
                l.log_driver,
                LOG_DRIVERS.join(", ")
            ),
        ));
    }
    let options_path = walk::child(path, "options");
    let (mut max_size_bytes, mut max_files) = (0, 0);
    for (name, value) in l.options.unwrap_or_default() {
        let option_path = walk::key_path(&options_path, &name);
        match name.as_str() {
            "max-size" => match parse_size(&value) {
                Some(bytes) if bytes > 0 => max_size_bytes = bytes,
                _ => problems.push(Problem::at(
                    &option_path,
                    format!("`{value}` is not a size: use a positive number of bytes with an optional k, m or g suffix, e.g. 10m"),
                )),
            },
            "max-file" => match value.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_LOG_FILES).contains(&n) => max_files = n,
                _ => problems.push(Problem::at(
                    &option_path,
                    format!("`{value}` is not a file count: use 1 to {MAX_LOG_FILES}"),
                )),
            },
            other => problems.push(Problem::with_message(
                &option_path,
                format!(
                    "{option_path}: option {other} is not supported by Berth; supported: {}",
                    LOG_OPTIONS.join(", ")
                ),
            )),
        }
    }
    proto::LogConfiguration {
        log_driver: l.log_driver,
        max_size_bytes,
        max_files,
    }
}

/// Docker's size syntax (go-units RAMInBytes): a number, optionally with a fraction, then an
/// optional unit k, m, g, t or p (any case, optionally followed by `b` or `ib`), in multiples
/// of 1024. None when it is not a size or does not fit in 64 bits.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = number * 2f64.powi(shift);
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// ECS's rules for a `restartPolicy` (checked whether or not it is enabled): at most 50
/// ignored exit codes, each an exit code (0 to 255), and a restartAttemptPeriod of 60 to 1800
/// seconds, 300 when absent.
fn restart_policy(
    p: ecs::RestartPolicy,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::RestartPolicy {
    let codes = p.ignored_exit_codes.unwrap_or_default();
    let codes_path = walk::child(path, "ignoredExitCodes");
    if codes.len() > MAX_IGNORED_EXIT_CODES {
        problems.push(Problem::at(
            &codes_path,
            format!(
                "{} exit codes are more than ECS's maximum of {MAX_IGNORED_EXIT_CODES}",
                codes.len()
            ),
        ));
    }
    for (j, code) in codes.iter().enumerate() {
        if *code > 255 {
            problems.push(Problem::at(
                &walk::index(&codes_path, j),
                format!("{code} is not an exit code: use 0 to 255"),
            ));
        }
    }
    let period = p
        .restart_attempt_period
        .unwrap_or(DEFAULT_RESTART_ATTEMPT_PERIOD_SECONDS);
    if !RESTART_ATTEMPT_PERIOD_SECONDS.contains(&period) {
        problems.push(Problem::at(
            &walk::child(path, "restartAttemptPeriod"),
            format!(
                "{period} seconds is outside ECS's range of {} to {} seconds",
                RESTART_ATTEMPT_PERIOD_SECONDS.start(),
                RESTART_ATTEMPT_PERIOD_SECONDS.end()
            ),
        ));
    }
    proto::RestartPolicy {
        enabled: p.enabled,
        ignored_exit_codes: codes,
        restart_attempt_period_seconds: period,
    }
}

fn start_timeout_out_of_range(seconds: u32) -> String {
    format!(
        "{seconds} seconds is outside ECS's range of {} to {} seconds",
        START_TIMEOUT_SECONDS.start(),
        START_TIMEOUT_SECONDS.end()
    )
}

/// The semantic checks, each problem with its path. Zero container values mean "not given"
/// here, as in the proto model; a given zero `memory` is below the minimum anyway.
fn validate(def: &proto::TaskDefinition, task_memory_given: bool, problems: &mut Vec<Problem>) {
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

/// The first cycle of a graph between containers (`what`: dependsOn, volumesFrom), found by
/// depth-first search from each container in definition order, reported at the edge that
/// closes it ("a → b → a").
/// Each container's index by name (the first of a duplicated name, which is refused anyway).
pub(super) fn container_indexes(def: &proto::TaskDefinition) -> HashMap<&str, usize> {
    def.containers
        .iter()
        .enumerate()
        .rev()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect()
}

fn find_cycle(
    def: &proto::TaskDefinition,
    edges: &[Vec<(usize, String)>],
    what: &str,
) -> Option<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[Vec<(usize, String)>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, String)> {
        marks[node] = Mark::OnPath;
        path.push(node);
        for (next, json_path) in &edges[node] {
            match marks[*next] {
                Mark::OnPath => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(*next);
                    return Some((cycle, json_path.clone()));
                }
                Mark::New => {
                    if let Some(found) = visit(*next, edges, marks, path) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] == Mark::New {
            let mut path = Vec::new();
            if let Some((cycle, json_path)) = visit(start, edges, &mut marks, &mut path) {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&n| def.containers[n].name.as_str())
                    .collect();
                return Some(Problem::at(
                    &json_path,
                    format!("{what} forms a cycle: {}", names.join(" → ")),
                ));
            }
        }
    }
    None
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

fn below_minimum(mib: u64) -> String {
    format!("{mib} MiB is less than the minimum of {MIN_MEMORY_MIB} MiB")
}

/// Why `name` is not a valid family or container name, if it is not.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let length = name.chars().count();
    if length > MAX_NAME_LEN {
        return Some(format!(
            "is {length} characters long; the maximum is {MAX_NAME_LEN}"
        ));
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))?;
    Some(format!(
        "`{name}` contains `{bad}`: use only letters, digits, hyphens and underscores"
    ))
}

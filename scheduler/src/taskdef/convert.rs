//! Step 3a, conversion: the serde structs of a structurally valid definition (`ecs.rs`) to the
//! proto model. ECS defaults are filled in here, and what the proto model cannot keep is checked
//! here, where it is still seen (a given zero, an unknown dependency condition, the parts of a
//! health check, log configuration or restart policy).

use std::collections::HashMap;

use berth_proto::v1 as proto;

use super::error::Problem;
use super::fields::{
    CPU_ARCHITECTURES, DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS, DEFAULT_HEALTH_CHECK_RETRIES,
    DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS, DEFAULT_RESTART_ATTEMPT_PERIOD_SECONDS,
    DEPENDENCY_CONDITIONS, HEALTH_CHECK_INTERVAL_SECONDS, HEALTH_CHECK_RETRIES,
    HEALTH_CHECK_START_PERIOD_SECONDS, HEALTH_CHECK_TIMEOUT_SECONDS, LOG_DRIVERS, LOG_OPTIONS,
    MAX_IGNORED_EXIT_CODES, MAX_LOG_FILES, OS_FAMILIES, RESTART_ATTEMPT_PERIOD_SECONDS,
};
use super::validate::{below_minimum, start_timeout_out_of_range};
use super::{awslogs, ecs, linux, network, volumes, walk};

/// The network mode of a definition that does not name one, as on ECS for Linux.
const DEFAULT_NETWORK_MODE: &str = "bridge";

/// The proto model of a structurally valid definition. Task sizes were checked by the walk;
/// should they fail here anyway, that is reported rather than trusted.
pub(super) fn definition(
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
    let image_pull_behavior = ecs
        .berth
        .and_then(|b| b.image_pull_behavior)
        .map(|name| match name.parse::<berth_policy::PullBehavior>() {
            Ok(b) => b.name().to_owned(),
            Err(e) => {
                problems.push(Problem::at("berth.imagePullBehavior", e.to_string()));
                String::new()
            }
        })
        .unwrap_or_default();
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
        image_pull_behavior,
        runtime_platform: ecs.runtime_platform.map(|p| runtime_platform(p, problems)),
        pid_mode: ecs.pid_mode.unwrap_or_default(),
        ipc_mode: ecs.ipc_mode.unwrap_or_default(),
        placement_constraints: placement_constraints(
            ecs.placement_constraints.unwrap_or_default(),
            problems,
        ),
    }
}

/// `placementConstraints`: `memberOf` only, as ECS allows in a task definition, each
/// expression parsed now so that a bad one is refused at registration with its column.
fn placement_constraints(
    constraints: Vec<ecs::PlacementConstraint>,
    problems: &mut Vec<Problem>,
) -> Vec<proto::PlacementConstraint> {
    if constraints.len() > crate::placement::MAX_CONSTRAINTS {
        problems.push(Problem::at(
            "placementConstraints",
            format!(
                "{} constraints given; at most {} are allowed",
                constraints.len(),
                crate::placement::MAX_CONSTRAINTS
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, c) in constraints.into_iter().enumerate() {
        let path = walk::index("placementConstraints", i);
        let expression = c.expression.unwrap_or_default();
        if c.kind != "memberOf" {
            let why = if c.kind == "distinctInstance" {
                "a task definition takes only memberOf constraints, as in ECS: give \
                 distinctInstance to run-task (--placement-constraints type=distinctInstance) \
                 or to a service"
                    .to_owned()
            } else {
                format!(
                    "`{}` is not a constraint type a task definition takes: use memberOf",
                    c.kind
                )
            };
            problems.push(Problem::at(&walk::child(&path, "type"), why));
            continue;
        }
        match crate::placement::Constraint::from_parts(&c.kind, &expression) {
            Ok(_) => out.push(proto::PlacementConstraint {
                r#type: c.kind,
                expression,
            }),
            Err(e) => problems.push(Problem::at(
                &walk::child(&path, "expression"),
                e.to_string(),
            )),
        }
    }
    out
}

/// A `runtimePlatform`: LINUX with X86_64 or ARM64; Windows families are refused by name.
fn runtime_platform(
    p: ecs::RuntimePlatform,
    problems: &mut Vec<Problem>,
) -> proto::RuntimePlatform {
    let cpu_architecture = p.cpu_architecture.unwrap_or_default();
    if !cpu_architecture.is_empty()
        && !CPU_ARCHITECTURES
            .iter()
            .any(|(a, _)| *a == cpu_architecture)
    {
        problems.push(Problem::at(
            "runtimePlatform.cpuArchitecture",
            format!("`{cpu_architecture}` is not a CPU architecture: use X86_64 or ARM64"),
        ));
    }
    let family = p.operating_system_family.unwrap_or_default();
    if family.starts_with("WINDOWS") {
        problems.push(Problem::at(
            "runtimePlatform.operatingSystemFamily",
            format!("`{family}`: Berth does not run Windows containers; use LINUX"),
        ));
    } else if !family.is_empty() && !OS_FAMILIES.iter().any(|(f, _)| *f == family) {
        problems.push(Problem::at(
            "runtimePlatform.operatingSystemFamily",
            format!("`{family}` is not an operating system family: use LINUX"),
        ));
    }
    proto::RuntimePlatform {
        cpu_architecture,
        operating_system_family: family,
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
    let secrets = super::secrets::secrets(c.secrets.unwrap_or_default(), &path, problems);
    let repository_credentials = c
        .repository_credentials
        .map(|r| super::secrets::repository_credentials(r, &path, problems));
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
        secrets,
        repository_credentials,
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
/// one) options, or the awslogs driver with its options (`awslogs.rs`); other drivers and
/// options are refused by name.
fn log_configuration(
    l: ecs::LogConfiguration,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::LogConfiguration {
    let options_path = walk::child(path, "options");
    if l.log_driver == "awslogs" {
        let options = awslogs::options(l.options.unwrap_or_default(), &options_path, problems);
        return proto::LogConfiguration {
            log_driver: l.log_driver,
            options: options.into_iter().collect(),
            ..Default::default()
        };
    }
    if !LOG_DRIVERS.contains(&l.log_driver.as_str()) {
        let driver_path = walk::child(path, "logDriver");
        problems.push(Problem::with_message(
            &driver_path,
            format!(
                "{driver_path} {} is not supported by Berth; supported: {} (`berthctl logs` \
                 reads the json-file copy that every driver keeps)",
                l.log_driver,
                LOG_DRIVERS.join(", ")
            ),
        ));
    }
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
        options: Default::default(),
    }
}

/// Docker's size syntax (go-units RAMInBytes): a number, optionally with a fraction, then an
/// optional unit k, m, g, t or p (any case, optionally followed by `b` or `ib`), in multiples
/// of 1024. None when it is not a size or does not fit in 64 bits.
pub(super) fn parse_size(text: &str) -> Option<u64> {
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

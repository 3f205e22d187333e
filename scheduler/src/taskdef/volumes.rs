//! Task volumes (ECS `volumes`) and their use by containers (`mountPoints`, `volumesFrom`):
//! conversion to the proto model and ECS's rules, each problem with its JSON path.
//!
//! Berth supports host bind mounts (`host.sourcePath`), per-task directories (no `host` source
//! path and no `dockerVolumeConfiguration`), and `dockerVolumeConfiguration` with scope `task`
//! and the `local` driver, optionally a tmpfs (`driverOpts` `type: tmpfs`, `device`, `o`).
//! Whether a host path may be mounted is the agent's decision (its `volume_host_paths`), made
//! when the task is assigned.

use std::collections::HashMap;

use berth_proto::v1 as proto;

use super::ecs;
use super::error::Problem;
use super::fields::{
    LOCAL_DRIVER_OPTS, SUPPORTED_LOCAL_TYPE, SUPPORTED_VOLUME_DRIVER, SUPPORTED_VOLUME_SCOPE,
    TMPFS_FLAGS, VOLUME_SCOPES, VOLUME_TMPFS_VALUE_OPTIONS,
};
use super::refs::{container_indexes, find_cycle, name_problem};
use super::walk;

/// The proto volumes. `scope` and `driver` get ECS's defaults (`task`, `local`) when absent;
/// `autoprovision` only matters for the `shared` scope, which is refused, so it is not carried.
pub(super) fn convert(volumes: Vec<ecs::Volume>) -> Vec<proto::Volume> {
    volumes
        .into_iter()
        .map(|v| proto::Volume {
            name: v.name,
            host: v.host.map(|h| proto::HostVolume {
                source_path: h.source_path.unwrap_or_default(),
            }),
            docker_volume_configuration: v.docker_volume_configuration.map(|d| {
                proto::DockerVolumeConfiguration {
                    scope: d.scope.unwrap_or_else(|| SUPPORTED_VOLUME_SCOPE.to_owned()),
                    driver: d
                        .driver
                        .unwrap_or_else(|| SUPPORTED_VOLUME_DRIVER.to_owned()),
                    driver_opts: d.driver_opts.unwrap_or_default().into_iter().collect(),
                    labels: d.labels.unwrap_or_default().into_iter().collect(),
                }
            }),
        })
        .collect()
}

/// Where `autoprovision: true` was given, by volume index: checked on the ECS input because the
/// proto model does not carry the field.
pub(super) fn autoprovision_problems(volumes: &[ecs::Volume], problems: &mut Vec<Problem>) {
    for (i, v) in volumes.iter().enumerate() {
        let given = v
            .docker_volume_configuration
            .as_ref()
            .and_then(|d| d.autoprovision);
        if given == Some(true) {
            problems.push(Problem::at(
                &walk::child(&docker_path(i), "autoprovision"),
                "autoprovision is only for scope `shared`, which Berth does not support: remove it or set it to false",
            ));
        }
    }
}

fn volume_path(i: usize) -> String {
    walk::index("volumes", i)
}

fn docker_path(i: usize) -> String {
    walk::child(&volume_path(i), "dockerVolumeConfiguration")
}

/// ECS's rules for volumes, mount points and volumesFrom.
pub(super) fn validate(def: &proto::TaskDefinition, problems: &mut Vec<Problem>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, v) in def.volumes.iter().enumerate() {
        let path = volume_path(i);
        if let Some(message) = name_problem(&v.name) {
            problems.push(Problem::at(&walk::child(&path, "name"), message));
        } else if let Some(first) = names.get(v.name.as_str()) {
            problems.push(Problem::at(
                &walk::child(&path, "name"),
                format!("`{}` is already the name of volumes[{first}]", v.name),
            ));
        } else {
            names.insert(&v.name, i);
        }
        validate_volume(v, i, problems);
    }
    let containers = container_indexes(def);
    let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); def.containers.len()];
    for (i, c) in def.containers.iter().enumerate() {
        let path = walk::index("containerDefinitions", i);
        validate_mount_points(c, &path, &names, problems);
        for (j, from) in c.volumes_from.iter().enumerate() {
            let source_path = walk::child(
                &walk::index(&walk::child(&path, "volumesFrom"), j),
                "sourceContainer",
            );
            match containers.get(from.source_container.as_str()) {
                None => problems.push(Problem::at(
                    &source_path,
                    format!(
                        "no container named {:?} in this task definition",
                        from.source_container
                    ),
                )),
                Some(&source) if source == i => problems.push(Problem::at(
                    &source_path,
                    format!("container {:?} cannot take volumes from itself", c.name),
                )),
                Some(&source) => edges[i].push((source, source_path)),
            }
        }
    }
    if let Some(cycle) = find_cycle(def, &edges, "volumesFrom") {
        problems.push(cycle);
    }
}

fn validate_volume(v: &proto::Volume, i: usize, problems: &mut Vec<Problem>) {
    let path = volume_path(i);
    let source_path = v.host.as_ref().map_or("", |h| h.source_path.as_str());
    if !source_path.is_empty() {
        let at = walk::child(&walk::child(&path, "host"), "sourcePath");
        if !source_path.starts_with('/') {
            problems.push(Problem::at(
                &at,
                format!("`{source_path}` must be an absolute path"),
            ));
        } else if source_path.contains('\0') {
            problems.push(Problem::at(&at, "must not contain a NUL character"));
        }
    }
    let Some(docker) = &v.docker_volume_configuration else {
        return;
    };
    let docker_at = docker_path(i);
    if v.host.is_some() {
        problems.push(Problem::at(
            &path,
            "set `host` or `dockerVolumeConfiguration`, not both",
        ));
    }
    if docker.scope != SUPPORTED_VOLUME_SCOPE {
        let message = if VOLUME_SCOPES.contains(&docker.scope.as_str()) {
            format!(
                "scope `{}` is not supported by Berth yet: use `{SUPPORTED_VOLUME_SCOPE}`",
                docker.scope
            )
        } else {
            format!(
                "`{}` is not a volume scope: use `{SUPPORTED_VOLUME_SCOPE}` (ECS also has `shared`, which Berth does not support yet)",
                docker.scope
            )
        };
        problems.push(Problem::at(&walk::child(&docker_at, "scope"), message));
    }
    if docker.driver != SUPPORTED_VOLUME_DRIVER {
        problems.push(Problem::at(
            &walk::child(&docker_at, "driver"),
            format!(
                "driver `{}` is not supported by Berth: use `{SUPPORTED_VOLUME_DRIVER}`",
                docker.driver
            ),
        ));
        // The options belong to that driver: nothing more to check.
        return;
    }
    let opts_at = walk::child(&docker_at, "driverOpts");
    let mut keys: Vec<&String> = docker.driver_opts.keys().collect();
    keys.sort();
    for key in keys {
        if !LOCAL_DRIVER_OPTS.contains(&key.as_str()) {
            problems.push(Problem::at(
                &opts_at,
                format!(
                    "`{key}` is not an option of the local driver: use {}",
                    LOCAL_DRIVER_OPTS.join(", ")
                ),
            ));
        }
    }
    match docker.driver_opts.get("type").map(String::as_str) {
        None => {
            if docker.driver_opts.contains_key("device") || docker.driver_opts.contains_key("o") {
                problems.push(Problem::at(
                    &opts_at,
                    format!(
                        "`device` and `o` need `type`: set `type` to `{SUPPORTED_LOCAL_TYPE}`, or remove them for a plain directory"
                    ),
                ));
            }
        }
        Some(SUPPORTED_LOCAL_TYPE) => {
            if let Some(o) = docker.driver_opts.get("o") {
                for message in tmpfs_option_problems(o) {
                    problems.push(Problem::at(&walk::child(&opts_at, "o"), message));
                }
            }
            if docker
                .driver_opts
                .get("device")
                .is_some_and(|d| d.is_empty() || d.contains(['\0', ',']))
            {
                problems.push(Problem::at(
                    &walk::child(&opts_at, "device"),
                    "must be a name without `,`, like `tmpfs`",
                ));
            }
        }
        Some(other) => problems.push(Problem::at(
            &walk::child(&opts_at, "type"),
            format!(
                "type `{other}` is not supported by Berth: use `{SUPPORTED_LOCAL_TYPE}`, or no driverOpts for a plain directory"
            ),
        )),
    }
}

/// What is wrong with a tmpfs `o` option string (comma-separated mount options).
fn tmpfs_option_problems(options: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for option in options.split(',') {
        let ok = match option.split_once('=') {
            None => TMPFS_FLAGS.contains(&option),
            Some((name, value)) => {
                VOLUME_TMPFS_VALUE_OPTIONS.contains(&name) && tmpfs_value_ok(name, value)
            }
        };
        if !ok {
            problems.push(format!(
                "`{option}` is not a tmpfs option: use {}, or name=value with {} (e.g. size=64m)",
                TMPFS_FLAGS.join(", "),
                VOLUME_TMPFS_VALUE_OPTIONS.join(", ")
            ));
        }
    }
    problems
}

fn tmpfs_value_ok(name: &str, value: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name {
        "size" | "nr_blocks" | "nr_inodes" => {
            let number = value.strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', '%']);
            digits(number.unwrap_or(value))
        }
        "mode" => !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b)),
        "uid" | "gid" => digits(value),
        _ => !value.is_empty() && !value.contains('\0'),
    }
}

fn validate_mount_points(
    c: &proto::ContainerDefinition,
    path: &str,
    volumes: &HashMap<&str, usize>,
    problems: &mut Vec<Problem>,
) {
    let mut destinations: HashMap<&str, usize> = HashMap::new();
    for (j, m) in c.mount_points.iter().enumerate() {
        let at = walk::index(&walk::child(path, "mountPoints"), j);
        if !volumes.contains_key(m.source_volume.as_str()) {
            problems.push(Problem::at(
                &walk::child(&at, "sourceVolume"),
                format!(
                    "no volume named {:?} in this task definition's volumes",
                    m.source_volume
                ),
            ));
        }
        let container_path = walk::child(&at, "containerPath");
        let p = m.container_path.as_str();
        if !p.starts_with('/') {
            problems.push(Problem::at(
                &container_path,
                format!("`{p}` must be an absolute path"),
            ));
        } else if p.split('/').any(|part| part == "..") {
            problems.push(Problem::at(
                &container_path,
                format!("`{p}` must not contain `..`"),
            ));
        } else if p.contains('\0') {
            problems.push(Problem::at(
                &container_path,
                "must not contain a NUL character",
            ));
        } else if p.split('/').all(str::is_empty) {
            problems.push(Problem::at(
                &container_path,
                "cannot mount over the container's root `/`",
            ));
        } else {
            let normal = p.trim_end_matches('/');
            if let Some(first) = destinations.get(normal) {
                problems.push(Problem::at(
                    &container_path,
                    format!("`{p}` is already the containerPath of mountPoints[{first}]"),
                ));
            } else {
                destinations.insert(normal, j);
            }
        }
    }
}

//! The one place that converts between proto and runtime types: a task definition's containers
//! become `berth_runtime::ContainerSpec`s, and runtime outcomes become proto states.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::v1::{ContainerDefinition, RegistryCredentials, TaskDefinition};
use berth_runtime::{
    CapabilityChanges, ContainerLimits, ContainerSpec, DeviceMapping, HostEntry, LogRotation,
    Mount, NetworkNamespace, RegistryAuth, SwapSupport, TaskLimits, TaskVolume, TaskVolumeKind,
    TmpfsMount, Ulimit,
};

use crate::engine::Check;

/// The runtime spec of one container of a task. What is read from the host when the task
/// starts (environment files, a seccomp profile) and the task's mounts are filled in by the
/// driver; device host paths are as the definition gives them until the driver resolves them.
pub fn container_spec(
    task_id: &str,
    def: &ContainerDefinition,
    network: &NetworkNamespace,
) -> ContainerSpec {
    let linux = def.linux_parameters.as_ref();
    ContainerSpec {
        task_id: task_id.to_owned(),
        name: def.name.clone(),
        image: def.image.clone(),
        entry_point: (def.entry_point_set || !def.entry_point.is_empty())
            .then(|| def.entry_point.clone()),
        command: (def.command_set || !def.command.is_empty()).then(|| def.command.clone()),
        environment: def
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        working_directory: non_empty(&def.working_directory),
        user: non_empty(&def.user),
        limits: ContainerLimits {
            cpu_units: def.cpu,
            memory_mib: (def.memory_mib > 0).then_some(def.memory_mib),
            memory_reservation_mib: (def.memory_reservation_mib > 0)
                .then_some(def.memory_reservation_mib),
            max_swap_mib: linux.and_then(|l| l.max_swap_mib).map(u64::from),
            swappiness: linux.and_then(|l| l.swappiness).map(u64::from),
        },
        stop_timeout: (def.stop_timeout_seconds > 0)
            .then(|| Duration::from_secs(u64::from(def.stop_timeout_seconds))),
        readonly_root_filesystem: def.readonly_root_filesystem,
        ulimits: def
            .ulimits
            .iter()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: u.soft_limit,
                hard: u.hard_limit,
            })
            .collect(),
        hostname: non_empty(&def.hostname),
        // ECS disableNetworking: a namespace of its own with only loopback.
        network: if def.disable_networking {
            NetworkNamespace::New
        } else {
            network.clone()
        },
        labels: def
            .docker_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: Vec::new(),
        log_rotation: def.log_configuration.as_ref().map(log_rotation),
        sysctls: def
            .system_controls
            .iter()
            .map(|s| (s.namespace.clone(), s.value.clone()))
            .collect(),
        extra_hosts: def
            .extra_hosts
            .iter()
            .map(|h| HostEntry {
                hostname: h.hostname.clone(),
                ip_address: h.ip_address.clone(),
            })
            .collect(),
        dns_servers: def.dns_servers.clone(),
        dns_search_domains: def.dns_search_domains.clone(),
        capabilities: linux
            .and_then(|l| l.capabilities.as_ref())
            .map(|c| CapabilityChanges {
                add: c.add.clone(),
                drop: c.drop.clone(),
            })
            .unwrap_or_default(),
        shm_size_mib: linux
            .map(|l| u64::from(l.shared_memory_size_mib))
            .filter(|mib| *mib > 0),
        tmpfs: linux
            .map(|l| {
                l.tmpfs
                    .iter()
                    .map(|t| TmpfsMount {
                        container_path: t.container_path.clone(),
                        size_mib: u64::from(t.size_mib),
                        mount_options: t.mount_options.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        privileged: def.privileged,
        init_process: linux.is_some_and(|l| l.init_process_enabled),
        devices: linux
            .map(|l| {
                l.devices
                    .iter()
                    .map(|d| DeviceMapping {
                        host_path: PathBuf::from(&d.host_path),
                        container_path: if d.container_path.is_empty() {
                            d.host_path.clone()
                        } else {
                            d.container_path.clone()
                        },
                        permissions: device_access(&d.permissions),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        no_new_privileges: def.no_new_privileges,
        seccomp: None,
        stdin_open: def.interactive,
        terminal: def.pseudo_terminal,
    }
}

/// ECS device permissions as device cgroup access letters, in `rwm` order; none given means
/// all three, ECS's default (the registration fills them in).
fn device_access(permissions: &[String]) -> String {
    let all = [("read", 'r'), ("write", 'w'), ("mknod", 'm')];
    let access: String = all
        .iter()
        .filter(|(word, _)| permissions.is_empty() || permissions.iter().any(|p| p == word))
        .map(|(_, letter)| *letter)
        .collect();
    if access.is_empty() {
        "rwm".to_owned()
    } else {
        access
    }
}

/// The host path of a container's seccomp profile (ECS `dockerSecurityOptions`
/// `seccomp=<path>`), None without one (or with `seccomp=unconfined`).
pub fn seccomp_profile_path(def: &ContainerDefinition) -> Option<&str> {
    Some(def.seccomp_profile.as_str()).filter(|p| !p.is_empty() && *p != "unconfined")
}

/// What the host could not apply of a container's swap settings, for its reason (None when it
/// applied them all). The container runs anyway, as it would on Docker.
pub fn swap_note(def: &ContainerDefinition, support: SwapSupport) -> Option<String> {
    let linux = def.linux_parameters.as_ref()?;
    let max_swap = linux.max_swap_mib?;
    let mut notes = Vec::new();
    if !support.limit {
        notes.push(format!(
            "maxSwap {max_swap} MiB not applied: this host's kernel does not limit swap per \
             cgroup (no memory.memsw.limit_in_bytes on cgroup v1, no memory.swap.max on v2; \
             boot with swapaccount=1 to enable it), so the container uses swap as the host allows"
        ));
    }
    if let Some(swappiness) = linux.swappiness.filter(|_| !support.swappiness) {
        notes.push(format!(
            "swappiness {swappiness} not applied: this host's cgroups have no per-container \
             swappiness (cgroup v2)"
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The json-file rotation of a container's `logConfiguration`; zero values are the defaults.
fn log_rotation(config: &berth_proto::v1::LogConfiguration) -> LogRotation {
    let default = LogRotation::default();
    LogRotation {
        max_size: if config.max_size_bytes > 0 {
            config.max_size_bytes
        } else {
            default.max_size
        },
        max_files: if config.max_files > 0 {
            config.max_files
        } else {
            default.max_files
        },
    }
}

/// A runtime log entry as a proto log line.
pub fn log_line(entry: berth_runtime::LogEntry) -> berth_proto::v1::LogLine {
    let output = match entry.stream {
        berth_runtime::LogStream::Stdout => berth_proto::v1::LogOutput::Stdout,
        berth_runtime::LogStream::Stderr => berth_proto::v1::LogOutput::Stderr,
    };
    berth_proto::v1::LogLine {
        output: output as i32,
        time: Some(timestamp(entry.time)),
        text: entry.text,
    }
}

/// A task's volumes by what backs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskVolumes {
    /// Made by the runtime under the agent's data dir: a directory, or a tmpfs.
    pub task: Vec<TaskVolume>,
    /// Host paths to bind, as the definition gives them: (volume name, `host.sourcePath`).
    pub host: Vec<(String, String)>,
}

/// Splits a definition's volumes: a non-empty `host.sourcePath` is a host path; anything else
/// is a per-task directory, a tmpfs when the local driver's `type` is `tmpfs`.
pub fn task_volumes(def: &TaskDefinition) -> TaskVolumes {
    let mut volumes = TaskVolumes::default();
    for v in &def.volumes {
        if let Some(host) = v.host.as_ref().filter(|h| !h.source_path.is_empty()) {
            volumes
                .host
                .push((v.name.clone(), host.source_path.clone()));
            continue;
        }
        let opts = v
            .docker_volume_configuration
            .as_ref()
            .map(|d| &d.driver_opts);
        let kind = match opts {
            Some(opts) if opts.get("type").map(String::as_str) == Some("tmpfs") => {
                TaskVolumeKind::Tmpfs {
                    device: opts.get("device").cloned().unwrap_or_default(),
                    options: opts
                        .get("o")
                        .map(|o| {
                            o.split(',')
                                .filter(|o| !o.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            }
            _ => TaskVolumeKind::Directory,
        };
        volumes.task.push(TaskVolume {
            name: v.name.clone(),
            kind,
        });
    }
    volumes
}

/// The binds of one container: its own `mountPoints`, then those of the containers it takes
/// volumes from (and theirs, transitively; read-only when the `volumesFrom` entry says so,
/// else as the source mounts them). A destination already mounted keeps its first mount.
/// `paths` are the volumes' host paths by name.
pub fn container_mounts(
    def: &TaskDefinition,
    container: &ContainerDefinition,
    paths: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, String> {
    let mut mounts: Vec<Mount> = Vec::new();
    let mut visited = vec![container.name.as_str()];
    // (container, forced read-only) still to copy mount points from.
    let mut pending = vec![(container, false)];
    while let Some((c, forced_ro)) = pending.pop() {
        for m in &c.mount_points {
            let source = paths.get(&m.source_volume).ok_or_else(|| {
                format!(
                    "container {}: volume {} is not a volume of the task",
                    c.name, m.source_volume
                )
            })?;
            let destination = m.container_path.trim_end_matches('/');
            if mounts
                .iter()
                .any(|x| x.destination.trim_end_matches('/') == destination)
            {
                continue;
            }
            mounts.push(Mount {
                source: source.clone(),
                destination: m.container_path.clone(),
                read_only: forced_ro || m.read_only,
            });
        }
        // Reversed, so that the first entry is taken first.
        for from in c.volumes_from.iter().rev() {
            if visited.contains(&from.source_container.as_str()) {
                continue;
            }
            let source = def
                .containers
                .iter()
                .find(|x| x.name == from.source_container)
                .ok_or_else(|| {
                    format!(
                        "container {}: volumesFrom names {}, which is not a container of the task",
                        c.name, from.source_container
                    )
                })?;
            visited.push(&source.name);
            pending.push((source, forced_ro || from.read_only));
        }
    }
    Ok(mounts)
}

/// A container's health check, ready to exec: `["CMD", program, args...]` runs the program
/// directly, `["CMD-SHELL", command...]` runs `/bin/sh -c` with the command (several strings
/// joined with spaces, as Docker does). None without a check, or with a command the scheduler
/// should have refused.
pub fn health_check(def: &ContainerDefinition) -> Option<Check> {
    let h = def.health_check.as_ref()?;
    let (kind, rest) = h.command.split_first()?;
    let args = match kind.as_str() {
        "CMD" if !rest.is_empty() => rest.to_vec(),
        "CMD-SHELL" if !rest.is_empty() => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.join(" ")]
        }
        _ => return None,
    };
    Some(Check {
        args,
        interval: Duration::from_secs(u64::from(h.interval_seconds.max(1))),
        timeout: Duration::from_secs(u64::from(h.timeout_seconds.max(1))),
        retries: h.retries.max(1),
        start_period: Duration::from_secs(u64::from(h.start_period_seconds)),
    })
}

/// The task-level budget: the definition's, else the sum of its containers' (memory: hard
/// limit, else reservation), as the scheduler placed it.
pub fn task_limits(def: &TaskDefinition) -> TaskLimits {
    let cpu_units = (def.cpu > 0).then_some(def.cpu);
    TaskLimits {
        cpu_units,
        // As the ECS agent on Linux: without a task-level cpu the task is not capped; its
        // cgroup only weighs it against other tasks by its containers' cpu, each at least 2.
        cpu_shares: cpu_units.is_none().then(|| {
            def.containers
                .iter()
                .map(|c| u64::from(c.cpu.max(MIN_CPU_SHARES)))
                .sum::<u64>()
                .max(u64::from(MIN_CPU_SHARES))
        }),
        // Without a task-level memory only the containers' own limits apply (a container with
        // only memoryReservation has none), as on ECS.
        memory_mib: (def.memory_mib > 0).then_some(def.memory_mib),
    }
}

/// The kernel's smallest cpu.shares, which the ECS agent gives a container with cpu 0 or 1.
const MIN_CPU_SHARES: u32 = 2;

/// Registry credentials for an image, by the registry host of its reference.
pub fn auth_for(
    image: &str,
    creds: &std::collections::HashMap<String, RegistryCredentials>,
) -> RegistryAuth {
    let host = image.split('/').next().unwrap_or_default();
    match creds.get(host) {
        Some(c) if !c.token.is_empty() => RegistryAuth::Bearer(c.token.clone()),
        Some(c) if !c.username.is_empty() => RegistryAuth::Basic {
            username: c.username.clone(),
            password: c.password.clone(),
        },
        _ => RegistryAuth::Anonymous,
    }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{DockerVolumeConfiguration, HostVolume, MountPoint, Volume, VolumeFrom};

    fn mount_point(volume: &str, path: &str, read_only: bool) -> MountPoint {
        MountPoint {
            source_volume: volume.into(),
            container_path: path.into(),
            read_only,
        }
    }

    fn volume_from(container: &str, read_only: bool) -> VolumeFrom {
        VolumeFrom {
            source_container: container.into(),
            read_only,
        }
    }

    #[test]
    fn volumes_split_into_host_paths_directories_and_tmpfs() {
        let docker = |opts: &[(&str, &str)]| {
            Some(DockerVolumeConfiguration {
                scope: "task".into(),
                driver: "local".into(),
                driver_opts: opts
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                labels: Default::default(),
            })
        };
        let td = TaskDefinition {
            volumes: vec![
                Volume {
                    name: "data".into(),
                    host: Some(HostVolume {
                        source_path: "/srv/data".into(),
                    }),
                    docker_volume_configuration: None,
                },
                Volume {
                    name: "empty-host".into(),
                    host: Some(HostVolume::default()),
                    docker_volume_configuration: None,
                },
                Volume {
                    name: "plain".into(),
                    host: None,
                    docker_volume_configuration: docker(&[]),
                },
                Volume {
                    name: "fast".into(),
                    host: None,
                    docker_volume_configuration: docker(&[
                        ("type", "tmpfs"),
                        ("device", "tmpfs"),
                        ("o", "size=8m,noexec"),
                    ]),
                },
            ],
            ..Default::default()
        };
        let v = task_volumes(&td);
        assert_eq!(v.host, [("data".to_owned(), "/srv/data".to_owned())]);
        assert_eq!(
            v.task,
            [
                TaskVolume {
                    name: "empty-host".into(),
                    kind: TaskVolumeKind::Directory
                },
                TaskVolume {
                    name: "plain".into(),
                    kind: TaskVolumeKind::Directory
                },
                TaskVolume {
                    name: "fast".into(),
                    kind: TaskVolumeKind::Tmpfs {
                        device: "tmpfs".into(),
                        options: vec!["size=8m".into(), "noexec".into()]
                    }
                },
            ]
        );
    }

    #[test]
    fn mounts_follow_volumes_from_transitively_with_read_only_forced() {
        let mut app = def("app", 0, 64, 0);
        app.mount_points = vec![
            mount_point("data", "/data", false),
            mount_point("conf", "/conf", true),
        ];
        let mut mid = def("mid", 0, 64, 0);
        mid.mount_points = vec![mount_point("cache", "/cache", false)];
        mid.volumes_from = vec![volume_from("app", false)];
        let mut last = def("last", 0, 64, 0);
        last.mount_points = vec![mount_point("cache", "/data/", false)];
        last.volumes_from = vec![volume_from("mid", true), volume_from("app", false)];
        let td = TaskDefinition {
            containers: vec![app, mid, last],
            ..Default::default()
        };
        let paths: BTreeMap<String, PathBuf> = ["data", "conf", "cache"]
            .iter()
            .map(|n| ((*n).to_owned(), PathBuf::from(format!("/v/{n}"))))
            .collect();
        let got = container_mounts(&td, &td.containers[2], &paths).unwrap();
        let summary: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|m| {
                (
                    m.destination.as_str(),
                    m.source.to_str().unwrap(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                // Its own mount point wins over /data from app.
                ("/data/", "/v/cache", false),
                // From mid, read-only as volumesFrom says.
                ("/cache", "/v/cache", true),
                // app reached through mid first: read-only too.
                ("/conf", "/v/conf", true),
            ]
        );
        let mid_mounts = container_mounts(&td, &td.containers[1], &paths).unwrap();
        assert_eq!(mid_mounts.len(), 3);
        assert!(
            mid_mounts
                .iter()
                .any(|m| m.destination == "/data" && !m.read_only)
        );
        assert!(
            mid_mounts
                .iter()
                .any(|m| m.destination == "/conf" && m.read_only)
        );
    }

    #[test]
    fn a_mount_of_an_unknown_volume_is_an_error() {
        let mut app = def("app", 0, 64, 0);
        app.mount_points = vec![mount_point("gone", "/data", false)];
        let td = TaskDefinition {
            containers: vec![app],
            ..Default::default()
        };
        assert_eq!(
            container_mounts(&td, &td.containers[0], &BTreeMap::new()).unwrap_err(),
            "container app: volume gone is not a volume of the task"
        );
    }

    fn def(name: &str, cpu: u32, mem: u64, res: u64) -> ContainerDefinition {
        ContainerDefinition {
            name: name.into(),
            image: "127.0.0.1:5000/app:1".into(),
            cpu,
            memory_mib: mem,
            memory_reservation_mib: res,
            essential: true,
            ..Default::default()
        }
    }

    #[test]
    fn only_task_level_fields_cap_the_task_as_on_ecs() {
        let mut td = TaskDefinition {
            containers: vec![def("a", 256, 128, 0), def("b", 0, 0, 64)],
            ..Default::default()
        };
        assert_eq!(
            task_limits(&td),
            TaskLimits {
                cpu_units: None,
                cpu_shares: Some(258),
                memory_mib: None,
            },
            "weighed by its containers' cpu (b counts 2), no cap, no task memory limit"
        );
        td.cpu = 1024;
        td.memory_mib = 512;
        assert_eq!(
            task_limits(&td),
            TaskLimits {
                cpu_units: Some(1024),
                cpu_shares: None,
                memory_mib: Some(512),
            }
        );
    }

    #[test]
    fn specs_carry_every_field() {
        let mut d = def("web", 128, 64, 32);
        d.command = vec!["sh".into()];
        d.stop_timeout_seconds = 2;
        d.environment.insert("A".into(), "1".into());
        let s = container_spec("t", &d, &NetworkNamespace::New);
        assert_eq!(s.command.as_deref(), Some(&["sh".to_owned()][..]));
        assert_eq!(s.entry_point, None);
        assert_eq!(s.stop_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.limits.memory_reservation_mib, Some(32));
        assert_eq!(s.environment.get("A").map(String::as_str), Some("1"));
        assert_eq!(s.log_rotation, None);
        d.log_configuration = Some(berth_proto::v1::LogConfiguration {
            log_driver: "json-file".into(),
            max_size_bytes: 4096,
            max_files: 0,
        });
        let s = container_spec("t", &d, &NetworkNamespace::New);
        assert_eq!(
            s.log_rotation,
            Some(LogRotation {
                max_size: 4096,
                max_files: LogRotation::default().max_files
            })
        );
    }

    #[test]
    fn health_checks_become_exec_commands() {
        let mut d = def("web", 0, 64, 0);
        assert_eq!(health_check(&d), None);
        d.health_check = Some(berth_proto::v1::HealthCheck {
            command: vec![
                "CMD-SHELL".into(),
                "test -f /ready".into(),
                "|| exit 1".into(),
            ],
            interval_seconds: 5,
            timeout_seconds: 2,
            retries: 3,
            start_period_seconds: 10,
        });
        let check = health_check(&d).unwrap();
        assert_eq!(check.args, ["/bin/sh", "-c", "test -f /ready || exit 1"]);
        assert_eq!(check.interval, Duration::from_secs(5));
        assert_eq!(check.timeout, Duration::from_secs(2));
        assert_eq!(check.retries, 3);
        assert_eq!(check.start_period, Duration::from_secs(10));
        if let Some(h) = d.health_check.as_mut() {
            h.command = vec!["CMD".into(), "/bin/check".into(), "-v".into()];
        }
        assert_eq!(health_check(&d).unwrap().args, ["/bin/check", "-v"]);
        if let Some(h) = d.health_check.as_mut() {
            h.command = vec!["CMD".into()];
        }
        assert_eq!(health_check(&d), None, "nothing to run");
    }

    #[test]
    fn credentials_match_the_registry_host() {
        let mut creds = std::collections::HashMap::new();
        creds.insert(
            "127.0.0.1:5000".to_owned(),
            RegistryCredentials {
                username: "u".into(),
                password: "p".into(),
                token: String::new(),
            },
        );
        assert!(matches!(
            auth_for("127.0.0.1:5000/app:1", &creds),
            RegistryAuth::Basic { .. }
        ));
        assert_eq!(auth_for("other/app", &creds), RegistryAuth::Anonymous);
    }

    #[test]
    fn disable_networking_gives_a_loopback_only_namespace() {
        let task_net = NetworkNamespace::Join("/run/netns/task".into());
        let mut d = def("app", 0, 64, 0);
        assert_eq!(container_spec("t", &d, &task_net).network, task_net);
        d.disable_networking = true;
        assert_eq!(
            container_spec("t", &d, &task_net).network,
            NetworkNamespace::New
        );
    }

    #[test]
    fn security_devices_swap_and_terminal_reach_the_spec() {
        let mut d = def("app", 0, 64, 0);
        let s = container_spec("t", &d, &NetworkNamespace::New);
        assert_eq!(s.no_new_privileges, None, "the runtime's default");
        assert!(s.devices.is_empty() && !s.stdin_open && !s.terminal);
        assert_eq!((s.limits.max_swap_mib, s.limits.swappiness), (None, None));
        d.no_new_privileges = Some(false);
        d.interactive = true;
        d.pseudo_terminal = true;
        d.linux_parameters = Some(berth_proto::v1::LinuxParameters {
            devices: vec![
                berth_proto::v1::Device {
                    host_path: "/dev/fuse".into(),
                    container_path: String::new(),
                    permissions: vec!["mknod".into(), "read".into()],
                },
                berth_proto::v1::Device {
                    host_path: "/dev/snd".into(),
                    container_path: "/dev/sound".into(),
                    permissions: Vec::new(),
                },
            ],
            max_swap_mib: Some(0),
            swappiness: Some(5),
            ..Default::default()
        });
        let s = container_spec("t", &d, &NetworkNamespace::New);
        assert_eq!(s.no_new_privileges, Some(false));
        assert!(s.stdin_open && s.terminal);
        assert_eq!(
            (s.limits.max_swap_mib, s.limits.swappiness),
            (Some(0), Some(5))
        );
        assert_eq!(
            s.devices,
            [
                DeviceMapping {
                    host_path: "/dev/fuse".into(),
                    container_path: "/dev/fuse".into(),
                    permissions: "rm".into()
                },
                DeviceMapping {
                    host_path: "/dev/snd".into(),
                    container_path: "/dev/sound".into(),
                    permissions: "rwm".into()
                }
            ]
        );
        assert_eq!(s.seccomp, None, "the driver reads the profile");
    }

    #[test]
    fn only_a_profile_path_is_read_from_the_host() {
        let mut d = def("app", 0, 64, 0);
        assert_eq!(seccomp_profile_path(&d), None);
        d.seccomp_profile = "unconfined".into();
        assert_eq!(seccomp_profile_path(&d), None);
        d.seccomp_profile = "/etc/berth/p.json".into();
        assert_eq!(seccomp_profile_path(&d), Some("/etc/berth/p.json"));
    }

    #[test]
    fn swap_notes_say_what_the_host_could_not_apply() {
        let all = SwapSupport {
            limit: true,
            swappiness: true,
        };
        let v2 = SwapSupport {
            limit: true,
            swappiness: false,
        };
        let none = SwapSupport {
            limit: false,
            swappiness: false,
        };
        let mut d = def("app", 0, 64, 0);
        assert_eq!(swap_note(&d, none), None, "no maxSwap, nothing asked");
        d.linux_parameters = Some(berth_proto::v1::LinuxParameters {
            max_swap_mib: Some(16),
            ..Default::default()
        });
        assert_eq!(swap_note(&d, all), None);
        assert_eq!(
            swap_note(&d, v2),
            None,
            "ECS's default swappiness is not asked for"
        );
        let note = swap_note(&d, none).unwrap();
        assert!(note.starts_with("maxSwap 16 MiB not applied: "), "{note}");
        if let Some(l) = d.linux_parameters.as_mut() {
            l.swappiness = Some(10);
        }
        assert_eq!(
            swap_note(&d, v2).as_deref(),
            Some(
                "swappiness 10 not applied: this host's cgroups have no per-container swappiness \
                 (cgroup v2)"
            )
        );
        assert!(
            swap_note(&d, none)
                .unwrap()
                .contains("; swappiness 10 not applied")
        );
    }
}

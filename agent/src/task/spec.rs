//! A task definition as the runtime takes it: each container's `ContainerSpec` (with the
//! ECS defaults the runtime does not know), the task's cgroup limits, and the registry
//! credentials of each image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_proto::v1::{ContainerDefinition, RegistryCredentials, TaskDefinition};
use berth_runtime::{
    CapabilityChanges, ContainerLimits, ContainerSpec, DeviceMapping, HostEntry, IpcNamespace,
    LogRotation, NetworkNamespace, PidNamespace, RegistryAuth, Seccomp, SwapSupport, TaskLimits,
    TmpfsMount, Ulimit,
};

/// The runtime spec of one container of a task. What is read from the host when the task
/// starts (environment files, a seccomp profile) and the task's mounts are filled in by the
/// driver; device host paths are as the definition gives them until the driver resolves them.
pub(crate) fn container_spec(
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
        // Task-level (pidMode, ipcMode): the driver sets them for every container.
        pid: PidNamespace::Private,
        ipc: IpcNamespace::Private,
        labels: def
            .docker_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: Vec::new(),
        log_rotation: def.log_configuration.as_ref().map(log_rotation),
        // The awslogs driver's queue, when the container uses it, is made by the driver.
        log_forward: None,
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
        seccomp: Seccomp::Default,
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
pub(crate) fn seccomp_profile_path(def: &ContainerDefinition) -> Option<&str> {
    Some(def.seccomp_profile.as_str()).filter(|p| !p.is_empty() && *p != "unconfined")
}

/// Whether a container asks for no seccomp filter (ECS `dockerSecurityOptions`
/// `seccomp=unconfined`).
pub(crate) fn seccomp_unconfined(def: &ContainerDefinition) -> bool {
    def.seccomp_profile == "unconfined"
}

/// What the host could not apply of a container's swap settings, for its reason (None when it
/// applied them all). The container runs anyway, as it would on Docker.
pub(crate) fn swap_note(def: &ContainerDefinition, support: SwapSupport) -> Option<String> {
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

/// The task-level budget: the definition's, else the sum of its containers' (memory: hard
/// limit, else reservation), as the scheduler placed it.
pub(crate) fn task_limits(def: &TaskDefinition) -> TaskLimits {
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
pub(crate) fn auth_for(
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

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::test_container as def;
    use super::*;

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
            ..Default::default()
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
        assert_eq!(s.seccomp, Seccomp::Default, "the driver reads the profile");
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

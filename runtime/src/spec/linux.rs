//! The Linux-specific parts that vary per container: namespaces, hostname validation and the
//! cgroup resources (cpu shares, memory limit and reservation).

use oci_spec::runtime::{
    LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxResources,
};

use super::{SpecError, defaults};
use crate::model::{
    ContainerLimits, DEFAULT_SWAPPINESS, IpcNamespace, MIN_MEMORY_MIB, NetworkNamespace,
    PidNamespace, SwapSupport,
};

/// The largest swappiness the kernel takes.
const MAX_SWAPPINESS: u64 = 100;

/// Bounds of cgroup v1 `cpu.shares` (the kernel's), which Docker clamps to.
pub(super) const MIN_CPU_SHARES: u64 = 2;
pub(super) const MAX_CPU_SHARES: u64 = 262_144;

const MIB: u64 = 1024 * 1024;

fn namespace(typ: LinuxNamespaceType, path: Option<std::path::PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

/// New uts and mount namespaces, always; the pid and ipc namespaces as asked: a new one
/// (ipc `none` is a namespace of its own too), the host's (`pidMode`/`ipcMode` host: none in
/// the spec), or the task's (`task`: the file the task's namespaces were bound to); the network
/// namespace as asked: a new one, the one at a path (the task's), or none (the host's). No
/// cgroup namespace, as Docker on cgroup v1.
pub(super) fn namespaces(
    network: &NetworkNamespace,
    pid: &PidNamespace,
    ipc: &IpcNamespace,
) -> Vec<LinuxNamespace> {
    let mut namespaces = Vec::with_capacity(5);
    match pid {
        PidNamespace::Private => namespaces.push(namespace(LinuxNamespaceType::Pid, None)),
        PidNamespace::Task(path) => {
            namespaces.push(namespace(LinuxNamespaceType::Pid, Some(path.clone())));
        }
        PidNamespace::Host => {}
    }
    match ipc {
        IpcNamespace::Private | IpcNamespace::None => {
            namespaces.push(namespace(LinuxNamespaceType::Ipc, None));
        }
        IpcNamespace::Task {
            namespace: path, ..
        } => {
            namespaces.push(namespace(LinuxNamespaceType::Ipc, Some(path.clone())));
        }
        IpcNamespace::Host => {}
    }
    namespaces.push(namespace(LinuxNamespaceType::Uts, None));
    namespaces.push(namespace(LinuxNamespaceType::Mount, None));
    match network {
        NetworkNamespace::New => namespaces.push(namespace(LinuxNamespaceType::Network, None)),
        NetworkNamespace::Join(path) => {
            namespaces.push(namespace(LinuxNamespaceType::Network, Some(path.clone())));
        }
        NetworkNamespace::Host => {}
    }
    namespaces
}

/// Checks `hostname` is an RFC 1123 host name: at most 253 characters, dot-separated labels
/// of 1 to 63 ASCII letters, digits and hyphens that neither start nor end with a hyphen.
pub(super) fn validate_hostname(hostname: &str, container: &str) -> Result<(), SpecError> {
    let reason = if hostname.is_empty() {
        Some("it is empty")
    } else if hostname.len() > 253 {
        Some("it is longer than 253 characters")
    } else {
        hostname.split('.').find_map(|label| {
            if label.is_empty() {
                Some("it has an empty label")
            } else if label.len() > 63 {
                Some("a label is longer than 63 characters")
            } else if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                Some("only ASCII letters, digits, '-' and '.' are allowed")
            } else if label.starts_with('-') || label.ends_with('-') {
                Some("a label starts or ends with '-'")
            } else {
                None
            }
        })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(SpecError::InvalidHostname {
            container: container.to_owned(),
            hostname: hostname.to_owned(),
            reason,
        }),
    }
}

/// ECS cpu units as cgroup `cpu.shares` (runc converts shares to `cpu.weight` on cgroup v2),
/// clamped to 2..=262144. 0 (no reservation) gets the minimum too, as the ECS agent passes it:
/// Docker, and the kernel, would give it a full 1024.
pub(super) fn cpu_shares(cpu_units: u32) -> u64 {
    u64::from(cpu_units).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

fn mib_to_bytes(mib: u64, field: &'static str, container: &str) -> Result<i64, SpecError> {
    if mib < MIN_MEMORY_MIB {
        return Err(SpecError::MemoryBelowMinimum {
            container: container.to_owned(),
            field,
            mib,
        });
    }
    mib.checked_mul(MIB)
        .and_then(|bytes| i64::try_from(bytes).ok())
        .ok_or_else(|| SpecError::MemoryTooLarge {
            container: container.to_owned(),
            field,
            mib,
        })
}

/// `linux.resources`: the deny-all device rule, cpu shares, and memory. The hard limit becomes
/// `memory.limit`; the soft limit (`memoryReservation`) becomes `memory.reservation`, which
/// runc writes to `memory.soft_limit_in_bytes` on cgroup v1 and `memory.low` on v2. As Docker
/// does, each must be at least 6 MiB, and the reservation may not exceed the limit; a
/// reservation of 0 means none.
///
/// Swap (ECS `maxSwap`, `swappiness`) is set only when `max_swap_mib` is: `memory.swap` is the
/// memory+swap total, the limit plus `max_swap_mib` (runc writes `memory.memsw.limit_in_bytes`
/// on v1, and the difference to `memory.swap.max` on v2), and `memory.swappiness` is the given
/// one or ECS's 60. What the host's cgroups cannot limit (`swap`) is left out, as Docker leaves
/// it out with a warning, so the container still runs. Without `max_swap_mib` swap is left to
/// the host.
pub(super) fn resources(
    limits: &ContainerLimits,
    swap: SwapSupport,
    container: &str,
) -> Result<LinuxResources, SpecError> {
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(defaults::device_rules()));

    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(cpu_shares(limits.cpu_units)));
    resources.set_cpu(Some(cpu));

    let limit = limits
        .memory_mib
        .map(|mib| mib_to_bytes(mib, "memory limit", container))
        .transpose()?;
    let reservation = limits
        .memory_reservation_mib
        .filter(|mib| *mib != 0)
        .map(|mib| mib_to_bytes(mib, "memory reservation", container))
        .transpose()?;
    if let Some((limit_mib, reservation_mib)) = limits
        .memory_mib
        .zip(limits.memory_reservation_mib)
        .filter(|(limit, reservation)| reservation > limit)
    {
        return Err(SpecError::ReservationAboveLimit {
            container: container.to_owned(),
            reservation_mib,
            limit_mib,
        });
    }
    let (swap_total, swappiness) = match limits.max_swap_mib {
        None => (None, None),
        Some(max_swap_mib) => swap_settings(limits, max_swap_mib, limit, swap, container)?,
    };
    if limit.is_some() || reservation.is_some() || swappiness.is_some() {
        let mut memory = LinuxMemory::default();
        memory.set_limit(limit);
        memory.set_reservation(reservation);
        memory.set_swap(swap_total);
        memory.set_swappiness(swappiness);
        resources.set_memory(Some(memory));
    }
    Ok(resources)
}

/// `memory.swap` (the memory+swap total, in bytes) and `memory.swappiness` of a container with
/// `maxSwap`, each only where `swap` says the host has it.
fn swap_settings(
    limits: &ContainerLimits,
    max_swap_mib: u64,
    limit: Option<i64>,
    swap: SwapSupport,
    container: &str,
) -> Result<(Option<i64>, Option<u64>), SpecError> {
    let limit = limit.ok_or_else(|| SpecError::SwapWithoutMemoryLimit {
        container: container.to_owned(),
    })?;
    let swappiness = limits.swappiness.unwrap_or(DEFAULT_SWAPPINESS);
    if swappiness > MAX_SWAPPINESS {
        return Err(SpecError::InvalidSwappiness {
            container: container.to_owned(),
            swappiness,
        });
    }
    let total = max_swap_mib
        .checked_mul(MIB)
        .and_then(|bytes| i64::try_from(bytes).ok())
        .and_then(|bytes| bytes.checked_add(limit))
        .ok_or_else(|| SpecError::MemoryTooLarge {
            container: container.to_owned(),
            field: "memory limit plus maxSwap",
            mib: max_swap_mib,
        })?;
    Ok((
        swap.limit.then_some(total),
        swap.swappiness.then_some(swappiness),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const P: PidNamespace = PidNamespace::Private;
    const I: IpcNamespace = IpcNamespace::Private;

    fn types(namespaces: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        namespaces
            .iter()
            .map(|ns| (ns.typ(), ns.path().clone()))
            .collect()
    }

    #[test]
    fn namespaces_new_join_host() {
        use LinuxNamespaceType::*;
        let base = vec![(Pid, None), (Ipc, None), (Uts, None), (Mount, None)];

        let mut want = base.clone();
        want.push((Network, None));
        assert_eq!(types(&namespaces(&NetworkNamespace::New, &P, &I)), want);

        let path = PathBuf::from("/run/netns/task-1");
        let mut want = base.clone();
        want.push((Network, Some(path.clone())));
        assert_eq!(
            types(&namespaces(&NetworkNamespace::Join(path), &P, &I)),
            want
        );

        assert_eq!(types(&namespaces(&NetworkNamespace::Host, &P, &I)), base);
    }

    #[test]
    fn pid_and_ipc_modes() {
        use LinuxNamespaceType::*;
        let of = |pid: PidNamespace, ipc: IpcNamespace| {
            types(&namespaces(&NetworkNamespace::Host, &pid, &ipc))
                .into_iter()
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        };
        // pidMode host: no pid namespace of its own, the ipc one stays.
        assert_eq!(of(PidNamespace::Host, I), vec![Ipc, Uts, Mount]);
        // ipcMode host: no ipc namespace of its own.
        assert_eq!(of(P, IpcNamespace::Host), vec![Pid, Uts, Mount]);
        assert_eq!(of(PidNamespace::Host, IpcNamespace::Host), vec![Uts, Mount]);
        // ipcMode none is a private namespace (what differs is /dev/shm).
        assert_eq!(of(P, IpcNamespace::None), vec![Pid, Ipc, Uts, Mount]);
    }

    #[test]
    fn task_modes_join_the_tasks_namespace_files() {
        use LinuxNamespaceType::*;
        let pid = PathBuf::from("/run/berth/taskns/t1/pid");
        let ipc = IpcNamespace::Task {
            namespace: "/run/berth/taskns/t1/ipc".into(),
            shm: "/run/berth/taskns/t1/shm".into(),
        };
        let got = types(&namespaces(
            &NetworkNamespace::Join("/run/berth/netns/t1".into()),
            &PidNamespace::Task(pid.clone()),
            &ipc,
        ));
        assert_eq!(
            got,
            vec![
                (Pid, Some(pid.clone())),
                (Ipc, Some("/run/berth/taskns/t1/ipc".into())),
                (Uts, None),
                (Mount, None),
                (Network, Some("/run/berth/netns/t1".into())),
            ]
        );
        // Each mode alone: the other namespace stays the container's own.
        assert_eq!(
            types(&namespaces(
                &NetworkNamespace::Host,
                &PidNamespace::Task(pid.clone()),
                &I
            ))[..2],
            [(Pid, Some(pid)), (Ipc, None)]
        );
        assert_eq!(
            types(&namespaces(&NetworkNamespace::Host, &P, &ipc))[..2],
            [(Pid, None), (Ipc, Some("/run/berth/taskns/t1/ipc".into()))]
        );
    }

    #[test]
    fn namespaces_serialize_with_oci_names() {
        let json = serde_json::to_value(namespaces(&NetworkNamespace::Join("/n".into()), &P, &I))
            .expect("json");
        assert_eq!(
            json,
            serde_json::json!([
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": "/n"}
            ])
        );
    }

    #[test]
    fn hostnames() {
        let label63 = "a".repeat(63);
        let long = [label63.as_str(); 4].join("."); // 255 characters
        for good in [
            "web",
            "web-1",
            "1web",
            "a.b.c",
            "Task-ABC.example.com",
            label63.as_str(),
        ] {
            assert_eq!(validate_hostname(good, "c"), Ok(()), "{good}");
        }
        let label64 = "a".repeat(64);
        for bad in [
            "",
            "-web",
            "web-",
            "a..b",
            "web.",
            "we_b",
            "wéb",
            "a b",
            label64.as_str(),
            long.as_str(),
        ] {
            let err = validate_hostname(bad, "c").expect_err(bad);
            assert!(
                matches!(&err, SpecError::InvalidHostname { hostname, .. } if hostname == bad),
                "{err}"
            );
        }
    }

    #[test]
    fn cpu_shares_clamp() {
        assert_eq!(cpu_shares(0), 2, "as the ECS agent passes it");
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(2), 2);
        assert_eq!(cpu_shares(512), 512);
        assert_eq!(cpu_shares(262_144), 262_144);
        assert_eq!(cpu_shares(u32::MAX), 262_144);
    }

    fn limits(cpu: u32, memory: Option<u64>, reservation: Option<u64>) -> ContainerLimits {
        ContainerLimits {
            cpu_units: cpu,
            memory_mib: memory,
            memory_reservation_mib: reservation,
            ..ContainerLimits::default()
        }
    }

    fn resources(limits: &ContainerLimits, container: &str) -> Result<LinuxResources, SpecError> {
        super::resources(limits, SwapSupport::default(), container)
    }

    const V1: SwapSupport = SwapSupport {
        limit: true,
        swappiness: true,
    };
    const V2: SwapSupport = SwapSupport {
        limit: true,
        swappiness: false,
    };
    const NO_SWAP_ACCOUNTING: SwapSupport = SwapSupport {
        limit: false,
        swappiness: true,
    };

    fn swap_limits(max_swap: u64, swappiness: Option<u64>) -> ContainerLimits {
        ContainerLimits {
            memory_mib: Some(64),
            max_swap_mib: Some(max_swap),
            swappiness,
            ..ContainerLimits::default()
        }
    }

    fn memory_json(limits: &ContainerLimits, swap: SwapSupport) -> serde_json::Value {
        let r = super::resources(limits, swap, "c").expect("resources");
        serde_json::to_value(r.memory()).expect("json")
    }

    #[test]
    fn max_swap_is_added_to_the_memory_limit_with_swappiness_on_v1() {
        assert_eq!(
            memory_json(&swap_limits(32, Some(10)), V1),
            serde_json::json!({"limit": 64 << 20, "swap": 96 << 20, "swappiness": 10})
        );
        assert_eq!(
            memory_json(&swap_limits(0, None), V1),
            serde_json::json!({"limit": 64 << 20, "swap": 64 << 20, "swappiness": 60}),
            "maxSwap 0: memory+swap equals memory, so no swap; ECS's default swappiness"
        );
    }

    #[test]
    fn cgroup_v2_has_no_swappiness() {
        assert_eq!(
            memory_json(&swap_limits(32, Some(10)), V2),
            serde_json::json!({"limit": 64 << 20, "swap": 96 << 20})
        );
    }

    #[test]
    fn without_swap_accounting_the_limit_is_left_out_not_refused() {
        assert_eq!(
            memory_json(&swap_limits(32, Some(10)), NO_SWAP_ACCOUNTING),
            serde_json::json!({"limit": 64 << 20, "swappiness": 10})
        );
        let neither = SwapSupport {
            limit: false,
            swappiness: false,
        };
        assert_eq!(
            memory_json(&swap_limits(32, None), neither),
            serde_json::json!({"limit": 64 << 20})
        );
    }

    #[test]
    fn swappiness_without_max_swap_is_ignored_as_on_ecs() {
        let limits = ContainerLimits {
            memory_mib: Some(64),
            swappiness: Some(10),
            ..ContainerLimits::default()
        };
        assert_eq!(
            memory_json(&limits, V1),
            serde_json::json!({"limit": 64 << 20})
        );
    }

    #[test]
    fn swap_errors_name_the_container() {
        let no_memory = ContainerLimits {
            max_swap_mib: Some(10),
            ..ContainerLimits::default()
        };
        assert_eq!(
            super::resources(&no_memory, V1, "c"),
            Err(SpecError::SwapWithoutMemoryLimit {
                container: "c".into()
            })
        );
        assert_eq!(
            super::resources(&swap_limits(1, Some(101)), V1, "c"),
            Err(SpecError::InvalidSwappiness {
                container: "c".into(),
                swappiness: 101
            })
        );
        assert!(matches!(
            super::resources(&swap_limits(u64::MAX / 2, None), V1, "c"),
            Err(SpecError::MemoryTooLarge { .. })
        ));
    }

    #[test]
    fn resources_cpu_and_memory() {
        let r = resources(&limits(0, None, None), "c").expect("resources");
        assert_eq!(
            r.cpu().as_ref().and_then(|c| c.shares()),
            Some(2),
            "no reservation: the minimum, as on ECS"
        );
        assert_eq!(r.memory(), &None);
        assert_eq!(r.devices(), &Some(defaults::device_rules()));

        let r = resources(&limits(256, Some(512), Some(128)), "c").expect("resources");
        assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(256));
        let memory = r.memory().as_ref().expect("memory");
        assert_eq!(memory.limit(), Some(512 * 1024 * 1024));
        assert_eq!(memory.reservation(), Some(128 * 1024 * 1024));
        assert_eq!(memory.swap(), None);

        let r = resources(&limits(1, None, Some(64)), "c").expect("resources");
        assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(2));
        let memory = r.memory().as_ref().expect("memory");
        assert_eq!(memory.limit(), None);
        assert_eq!(memory.reservation(), Some(64 * 1024 * 1024));

        let r = resources(&limits(0, Some(6), Some(0)), "c").expect("resources");
        let memory = r.memory().as_ref().expect("memory");
        assert_eq!(memory.limit(), Some(6 * 1024 * 1024));
        assert_eq!(memory.reservation(), None);
    }

    #[test]
    fn resources_memory_errors() {
        assert_eq!(
            resources(&limits(0, Some(5), None), "c"),
            Err(SpecError::MemoryBelowMinimum {
                container: "c".into(),
                field: "memory limit",
                mib: 5
            })
        );
        assert!(matches!(
            resources(&limits(0, None, Some(1)), "c"),
            Err(SpecError::MemoryBelowMinimum {
                field: "memory reservation",
                ..
            })
        ));
        assert!(matches!(
            resources(&limits(0, Some(u64::MAX), None), "c"),
            Err(SpecError::MemoryTooLarge { .. })
        ));
        assert!(matches!(
            resources(&limits(0, Some(1 << 43), None), "c"),
            Err(SpecError::MemoryTooLarge { .. })
        ));
        assert_eq!(
            resources(&limits(0, Some(100), Some(200)), "c"),
            Err(SpecError::ReservationAboveLimit {
                container: "c".into(),
                reservation_mib: 200,
                limit_mib: 100
            })
        );
    }
}

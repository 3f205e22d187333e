//! The one place that converts between proto and runtime types: a task definition's containers
//! become `berth_runtime::ContainerSpec`s, and runtime outcomes become proto states.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::v1::{ContainerDefinition, RegistryCredentials, TaskDefinition};
use berth_runtime::{
    CapabilityChanges, ContainerLimits, ContainerSpec, HostEntry, NetworkNamespace, RegistryAuth,
    TaskLimits, TmpfsMount, Ulimit,
};

/// The runtime spec of one container of a task.
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
    }
}

/// The task-level budget: the definition's, else the sum of its containers' (memory: hard
/// limit, else reservation), as the scheduler placed it.
pub fn task_limits(def: &TaskDefinition) -> TaskLimits {
    let cpu = if def.cpu > 0 {
        def.cpu
    } else {
        def.containers.iter().map(|c| c.cpu).sum()
    };
    let memory = if def.memory_mib > 0 {
        def.memory_mib
    } else {
        def.containers
            .iter()
            .map(|c| {
                if c.memory_mib > 0 {
                    c.memory_mib
                } else {
                    c.memory_reservation_mib
                }
            })
            .sum()
    };
    TaskLimits {
        cpu_units: (cpu > 0).then_some(cpu),
        memory_mib: (memory > 0).then_some(memory),
    }
}

/// The network namespace a task's containers run in, for the modes this agent implements.
pub fn network_for(mode: &str) -> Result<NetworkNamespace, String> {
    match mode {
        "none" => Ok(NetworkNamespace::New),
        "host" => Ok(NetworkNamespace::Host),
        other => Err(format!(
            "network mode {:?} is not supported by this agent yet; supported: none, host",
            if other.is_empty() { "bridge" } else { other }
        )),
    }
}

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
    fn task_budget_is_the_sum_when_unset() {
        let mut td = TaskDefinition {
            containers: vec![def("a", 256, 128, 0), def("b", 0, 0, 64)],
            ..Default::default()
        };
        assert_eq!(
            task_limits(&td),
            TaskLimits {
                cpu_units: Some(256),
                memory_mib: Some(192)
            }
        );
        td.cpu = 1024;
        td.memory_mib = 512;
        assert_eq!(
            task_limits(&td),
            TaskLimits {
                cpu_units: Some(1024),
                memory_mib: Some(512)
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
    fn unsupported_network_modes_are_named() {
        assert!(network_for("none").is_ok());
        assert_eq!(
            network_for("").unwrap_err(),
            "network mode \"bridge\" is not supported by this agent yet; supported: none, host"
        );
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
}

//! The one place that converts between proto and runtime types: a task definition's containers
//! become `berth_runtime::ContainerSpec`s, and runtime outcomes become proto states.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::v1::{ContainerDefinition, RegistryCredentials, TaskDefinition};
use berth_runtime::{
    ContainerLimits, ContainerSpec, NetworkNamespace, RegistryAuth, TaskLimits, Ulimit,
};

use crate::engine::Check;

/// The runtime spec of one container of a task.
pub fn container_spec(
    task_id: &str,
    def: &ContainerDefinition,
    network: &NetworkNamespace,
) -> ContainerSpec {
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
        network: network.clone(),
        labels: def
            .docker_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
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
    fn unsupported_network_modes_are_named() {
        assert!(network_for("none").is_ok());
        assert_eq!(
            network_for("").unwrap_err(),
            "network mode \"bridge\" is not supported by this agent yet; supported: none, host"
        );
    }
}

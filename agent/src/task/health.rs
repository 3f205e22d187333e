//! A container's ECS `healthCheck` as a check the driver can run: the process to exec inside
//! the container and its timing. What a result means is the engine's (`engine/health.rs`).

use std::time::Duration;

use berth_proto::v1::ContainerDefinition;

/// A container's health check, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// The process to exec inside the container (CMD-SHELL already turned into `/bin/sh -c`).
    pub(crate) args: Vec<String>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) start_period: Duration,
}

/// A container's health check, ready to exec: `["CMD", program, args...]` runs the program
/// directly, `["CMD-SHELL", command...]` runs `/bin/sh -c` with the command (several strings
/// joined with spaces, as Docker does). None without a check, or with a command the scheduler
/// should have refused.
pub(crate) fn health_check(def: &ContainerDefinition) -> Option<Check> {
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

#[cfg(test)]
mod tests {
    use super::super::test_container as def;
    use super::*;

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
}

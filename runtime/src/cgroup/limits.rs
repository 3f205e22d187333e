//! Pure limit arithmetic and validation: ECS CPU units and MiB to the kernel's units.

use crate::model::{ContainerLimits, MIN_MEMORY_MIB, TaskLimits};

use super::error::LimitsError;

/// Bytes in a MiB.
const MIB: u64 = 1024 * 1024;
/// CPU units of one whole CPU in ECS.
const CPU_UNITS_PER_CPU: u64 = 1024;
/// The CFS period Berth uses, in microseconds.
pub(crate) const CFS_PERIOD_US: u64 = 100_000;
/// The kernel's smallest CFS quota, in microseconds.
pub(crate) const MIN_CFS_QUOTA_US: u64 = 1_000;

/// The largest memory limit in MiB whose byte count still fits the kernel's and the OCI spec's
/// signed 64-bit byte counters.
pub(crate) const MAX_MEMORY_MIB: u64 = i64::MAX as u64 / MIB;

/// `mib` in bytes, if it fits a signed 64-bit byte counter (which also rules out u64 overflow).
pub(crate) fn mib_to_bytes(mib: u64) -> Option<i64> {
    mib.checked_mul(MIB).and_then(|b| i64::try_from(b).ok())
}

/// The CFS quota for `cpu_units` over a `CFS_PERIOD_US` period, at least the kernel's minimum.
pub(crate) fn cfs_quota_us(cpu_units: u32) -> u64 {
    (u64::from(cpu_units) * CFS_PERIOD_US / CPU_UNITS_PER_CPU).max(MIN_CFS_QUOTA_US)
}

/// cgroup v1 cpu.shares bounds (kernel's MIN_SHARES / MAX_SHARES).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
/// cgroup v2 cpu.weight bounds.
const MIN_WEIGHT: u64 = 1;
const MAX_WEIGHT: u64 = 10_000;

/// cgroup v1 cpu.shares clamped to the kernel's [2, 262144].
pub(crate) fn clamp_shares(shares: u64) -> u64 {
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// cgroup v1 cpu.shares → cgroup v2 cpu.weight, with runc's (and the kubelet's) formula; shares
/// outside [2, 262144] are clamped first, so the result is always in [1, 10000].
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    let weight =
        MIN_WEIGHT + ((shares - MIN_SHARES) * (MAX_WEIGHT - 1)) / (MAX_SHARES - MIN_SHARES);
    weight.clamp(MIN_WEIGHT, MAX_WEIGHT)
}

/// Checks a task's limits against its containers' and reports every problem at once.
///
/// `containers` are `(name, limits)` pairs in the task's order.
pub(crate) fn validate_limits(
    task: &TaskLimits,
    containers: &[(&str, &ContainerLimits)],
) -> Result<(), LimitsError> {
    let mut problems = Vec::new();

    for (name, limits) in containers {
        if let Some(memory) = limits.memory_mib {
            if memory < MIN_MEMORY_MIB {
                problems.push(format!(
                    "container {name}: memory {memory} MiB is below the minimum of \
                     {MIN_MEMORY_MIB} MiB"
                ));
            }
            if memory > MAX_MEMORY_MIB {
                problems.push(too_large(&format!("container {name}: memory"), memory));
            }
        }
        if let Some(max_swap) = limits.max_swap_mib {
            match limits.memory_mib {
                None => problems.push(format!(
                    "container {name}: maxSwap needs a memory limit (the memory+swap limit is \
                     memory plus maxSwap)"
                )),
                Some(memory) if memory.saturating_add(max_swap) > MAX_MEMORY_MIB => {
                    problems.push(too_large(
                        &format!("container {name}: memory plus maxSwap"),
                        memory.saturating_add(max_swap),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(swappiness) = limits.swappiness.filter(|s| *s > 100) {
            problems.push(format!(
                "container {name}: swappiness {swappiness} is outside 0 to 100"
            ));
        }
        if let Some(reservation) = limits.memory_reservation_mib {
            if reservation > MAX_MEMORY_MIB {
                problems.push(too_large(
                    &format!("container {name}: memoryReservation"),
                    reservation,
                ));
            }
            if let Some(memory) = limits.memory_mib
                && reservation > memory
            {
                problems.push(format!(
                    "container {name}: memoryReservation {reservation} MiB is above its \
                         memory limit of {memory} MiB"
                ));
            }
        }
    }

    if let Some(memory) = task.memory_mib {
        if memory < MIN_MEMORY_MIB {
            problems.push(format!(
                "task memory {memory} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"
            ));
        }
        if memory > MAX_MEMORY_MIB {
            problems.push(too_large("task memory", memory));
        }
        // u128: a sum of u64 values cannot overflow it for any realistic container count.
        let asked: u128 = containers
            .iter()
            .filter_map(|(_, l)| l.memory_mib.or(l.memory_reservation_mib))
            .map(u128::from)
            .sum();
        if asked > u128::from(memory) {
            problems.push(format!(
                "containers ask {asked} MiB of memory but the task has {memory} MiB"
            ));
        }
    }

    if let Some(cpu) = task.cpu_units {
        let asked: u64 = containers.iter().map(|(_, l)| u64::from(l.cpu_units)).sum();
        if asked > u64::from(cpu) {
            problems.push(format!(
                "containers ask {asked} cpu units but the task has {cpu}"
            ));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(LimitsError { problems })
    }
}

fn too_large(what: &str, mib: u64) -> String {
    format!("{what} {mib} MiB is too large (at most {MAX_MEMORY_MIB} MiB)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(cpu: u32, memory: Option<u64>, reservation: Option<u64>) -> ContainerLimits {
        ContainerLimits {
            cpu_units: cpu,
            memory_mib: memory,
            memory_reservation_mib: reservation,
            ..ContainerLimits::default()
        }
    }

    #[test]
    fn shares_map_to_weight_as_runc_does() {
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(3), 1);
        assert_eq!(shares_to_weight(1024), 39); // runc: 1 + (1022 * 9999) / 262142
        assert_eq!(shares_to_weight(262_143), 9_999);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
        assert_eq!(clamp_shares(0), 2);
        assert_eq!(clamp_shares(1 << 40), 262_144);
    }

    #[test]
    fn swap_needs_a_memory_limit_and_swappiness_a_percentage() {
        let swap = |memory: Option<u64>, max_swap: u64, swappiness: Option<u64>| ContainerLimits {
            memory_mib: memory,
            max_swap_mib: Some(max_swap),
            swappiness,
            ..ContainerLimits::default()
        };
        let task = TaskLimits::default();
        assert!(validate_limits(&task, &[("a", &swap(Some(64), 0, Some(100)))]).is_ok());
        assert_eq!(
            problems(
                &task,
                &[
                    ("a", &swap(None, 64, None)),
                    ("b", &swap(Some(64), 1, Some(101))),
                    ("c", &swap(Some(64), u64::MAX, None)),
                ]
            ),
            [
                "container a: maxSwap needs a memory limit (the memory+swap limit is memory plus \
                 maxSwap)"
                    .to_owned(),
                "container b: swappiness 101 is outside 0 to 100".to_owned(),
                format!(
                    "container c: memory plus maxSwap {} MiB is too large (at most {MAX_MEMORY_MIB} MiB)",
                    u64::MAX
                ),
            ]
        );
    }

    fn problems(task: &TaskLimits, containers: &[(&str, &ContainerLimits)]) -> Vec<String> {
        match validate_limits(task, containers) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn quota_follows_cpu_units_with_the_kernel_minimum() {
        assert_eq!(cfs_quota_us(1024), 100_000);
        assert_eq!(cfs_quota_us(512), 50_000);
        assert_eq!(cfs_quota_us(2048), 200_000);
        assert_eq!(cfs_quota_us(256), 25_000);
        assert_eq!(cfs_quota_us(10), 1_000); // 976 µs rounds up to the minimum
        assert_eq!(cfs_quota_us(11), 1_074);
        assert_eq!(cfs_quota_us(0), 1_000);
        assert_eq!(cfs_quota_us(u32::MAX), 419_430_399_902);
    }

    #[test]
    fn mib_to_bytes_refuses_overflow() {
        assert_eq!(mib_to_bytes(0), Some(0));
        assert_eq!(mib_to_bytes(512), Some(536_870_912));
        assert_eq!(
            mib_to_bytes(MAX_MEMORY_MIB),
            Some(9_223_372_036_853_727_232)
        );
        assert_eq!(mib_to_bytes(MAX_MEMORY_MIB + 1), None);
        assert_eq!(mib_to_bytes(u64::MAX), None);
    }

    #[test]
    fn valid_limits_pass() {
        let task = TaskLimits {
            cpu_units: Some(1024),
            cpu_shares: None,
            memory_mib: Some(512),
        };
        let a = container(512, Some(256), Some(128));
        let b = container(512, None, Some(256));
        let c = container(0, None, None);
        assert_eq!(
            problems(&task, &[("a", &a), ("b", &b), ("c", &c)]),
            Vec::<String>::new()
        );
        // No task limits: only the per-container rules apply.
        assert!(validate_limits(&TaskLimits::default(), &[("a", &a)]).is_ok());
        // Exactly at the limits.
        let d = container(1024, Some(512), Some(512));
        assert!(validate_limits(&task, &[("d", &d)]).is_ok());
        let e = container(0, Some(MIN_MEMORY_MIB), None);
        assert!(validate_limits(&task, &[("e", &e)]).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let task = TaskLimits {
            cpu_units: Some(1024),
            cpu_shares: None,
            memory_mib: Some(4),
        };
        let app = container(1024, Some(4), Some(8));
        let side = container(512, None, Some(764));
        let err = validate_limits(&task, &[("app", &app), ("side", &side)]).expect_err("bad");
        assert_eq!(
            err.problems,
            [
                "container app: memory 4 MiB is below the minimum of 6 MiB",
                "container app: memoryReservation 8 MiB is above its memory limit of 4 MiB",
                "task memory 4 MiB is below the minimum of 6 MiB",
                "containers ask 768 MiB of memory but the task has 4 MiB",
                "containers ask 1536 cpu units but the task has 1024",
            ]
        );
        assert_eq!(
            err.to_string(),
            "container app: memory 4 MiB is below the minimum of 6 MiB; \
             container app: memoryReservation 8 MiB is above its memory limit of 4 MiB; \
             task memory 4 MiB is below the minimum of 6 MiB; \
             containers ask 768 MiB of memory but the task has 4 MiB; \
             containers ask 1536 cpu units but the task has 1024"
        );
    }

    #[test]
    fn memory_sum_uses_reservation_when_there_is_no_hard_limit() {
        let task = TaskLimits {
            cpu_units: None,
            cpu_shares: None,
            memory_mib: Some(512),
        };
        let app = container(0, Some(512), Some(64));
        let side = container(0, None, Some(256));
        assert_eq!(
            problems(&task, &[("app", &app), ("side", &side)]),
            ["containers ask 768 MiB of memory but the task has 512 MiB"]
        );
    }

    #[test]
    fn huge_values_are_reported_not_overflowed() {
        let task = TaskLimits {
            cpu_units: Some(u32::MAX),
            cpu_shares: None,
            memory_mib: Some(u64::MAX),
        };
        let a = container(u32::MAX, Some(u64::MAX), None);
        let b = container(u32::MAX, Some(u64::MAX), Some(u64::MAX));
        assert_eq!(
            problems(&task, &[("a", &a), ("b", &b)]),
            [
                "container a: memory 18446744073709551615 MiB is too large \
                 (at most 8796093022207 MiB)",
                "container b: memory 18446744073709551615 MiB is too large \
                 (at most 8796093022207 MiB)",
                "container b: memoryReservation 18446744073709551615 MiB is too large \
                 (at most 8796093022207 MiB)",
                "task memory 18446744073709551615 MiB is too large (at most 8796093022207 MiB)",
                "containers ask 36893488147419103230 MiB of memory but the task has \
                 18446744073709551615 MiB",
                "containers ask 8589934590 cpu units but the task has 4294967295",
            ]
        );
    }
}

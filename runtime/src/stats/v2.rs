//! cgroup v2: the unified hierarchy's files mapped onto the sample's fields.
//!
//! - `cpu.stat`: `usage_usec`, `user_usec`, `system_usec` (always there), `nr_periods`,
//!   `nr_throttled`, `throttled_usec` (only with the cpu controller).
//! - memory: `memory.current`, `memory.max`, `memory.stat` (`anon`, `file`, `inactive_file`)
//!   and `memory.events` (`max` as the failure count, `oom_kill`).
//! - pids: `pids.current`, `pids.max`; io: `io.stat` (`MAJ:MIN rbytes=N wbytes=N rios=N
//!   wios=N ...`).

use crate::cgroup::CgroupError;

use super::parse::{error, flat_keyed};
use super::{BlkioStats, CpuStats, MemoryStats};

pub(super) const CPU_STAT: &str = "cpu.stat";
pub(super) const MEMORY_CURRENT: &str = "memory.current";
pub(super) const MEMORY_MAX: &str = "memory.max";
pub(super) const MEMORY_STAT: &str = "memory.stat";
pub(super) const MEMORY_EVENTS: &str = "memory.events";
pub(super) const PIDS_CURRENT: &str = "pids.current";
pub(super) const PIDS_MAX: &str = "pids.max";
pub(super) const IO_STAT: &str = "io.stat";

pub(super) fn cpu(text: &str) -> Result<CpuStats, CgroupError> {
    let [usage, user, system, periods, throttled, throttled_usec] = flat_keyed(
        CPU_STAT,
        text,
        [
            "usage_usec",
            "user_usec",
            "system_usec",
            "nr_periods",
            "nr_throttled",
            "throttled_usec",
        ],
    )?;
    let Some(usage) = usage else {
        return Err(error(CPU_STAT, "no \"usage_usec\" line"));
    };
    let ns = |usec: Option<u64>| usec.unwrap_or(0).saturating_mul(1_000);
    Ok(CpuStats {
        usage_ns: usage.saturating_mul(1_000),
        user_ns: ns(user),
        system_ns: ns(system),
        periods: periods.unwrap_or(0),
        throttled_periods: throttled.unwrap_or(0),
        throttled_ns: ns(throttled_usec),
    })
}

/// `memory.stat` into `memory`: anonymous memory, file pages, and the working set from the
/// usage already there.
pub(super) fn memory_stat(text: &str, memory: &mut MemoryStats) -> Result<(), CgroupError> {
    let [anon, file, inactive_file] =
        flat_keyed(MEMORY_STAT, text, ["anon", "file", "inactive_file"])?;
    memory.rss_bytes = anon.unwrap_or(0);
    memory.cache_bytes = file.unwrap_or(0);
    memory.working_set_bytes = memory
        .usage_bytes
        .saturating_sub(inactive_file.unwrap_or(0));
    Ok(())
}

/// `memory.events` into `memory`: `max` (usage hit the limit) and `oom_kill`.
pub(super) fn memory_events(text: &str, memory: &mut MemoryStats) -> Result<(), CgroupError> {
    let [max, oom_kill] = flat_keyed(MEMORY_EVENTS, text, ["max", "oom_kill"])?;
    memory.failcnt = max.unwrap_or(0);
    memory.oom_kills = oom_kill.unwrap_or(0);
    Ok(())
}

/// Sums `rbytes`, `wbytes`, `rios` and `wios` over the devices; other keys are skipped.
pub(super) fn io(text: &str) -> Result<BlkioStats, CgroupError> {
    let mut io = BlkioStats::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        if fields.next().is_none() {
            continue;
        }
        for field in fields {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| error(IO_STAT, format!("{field:?} is not KEY=VALUE")))?;
            let slot = match name {
                "rbytes" => &mut io.read_bytes,
                "wbytes" => &mut io.write_bytes,
                "rios" => &mut io.read_ops,
                "wios" => &mut io.write_ops,
                _ => continue,
            };
            let value: u64 = value
                .parse()
                .map_err(|_| error(IO_STAT, format!("{name} value {value:?} is not a counter")))?;
            *slot = slot.saturating_add(value);
        }
    }
    Ok(io)
}

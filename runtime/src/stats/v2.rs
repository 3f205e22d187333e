//! cgroup v2: the unified hierarchy's files mapped onto the sample's fields.
//!
//! - `cpu.stat`: `usage_usec`, `user_usec`, `system_usec` (always there), `nr_periods`,
//!   `nr_throttled`, `throttled_usec` (only with the cpu controller).
//! - memory: `memory.current`, `memory.max`, `memory.stat` (`anon`, `file`, `inactive_file`)
//!   and `memory.events` (`max` as the failure count, `oom_kill`).
//! - pids: `pids.current`, `pids.max`; io: `io.stat` (`MAJ:MIN rbytes=N wbytes=N rios=N
//!   wios=N ...`).

use crate::cgroup::CgroupError;

use super::parse::{error, flat_keyed, key, limit, single};
use super::{BlkioStats, CpuStats, MemoryStats, PidsStats};

pub(super) const CPU_STAT: &str = "cpu.stat";
pub(super) const MEMORY_CURRENT: &str = "memory.current";
pub(super) const MEMORY_MAX: &str = "memory.max";
pub(super) const MEMORY_STAT: &str = "memory.stat";
pub(super) const MEMORY_EVENTS: &str = "memory.events";
pub(super) const PIDS_CURRENT: &str = "pids.current";
pub(super) const PIDS_MAX: &str = "pids.max";
pub(super) const IO_STAT: &str = "io.stat";

pub(super) fn cpu(stat: &str) -> Result<CpuStats, CgroupError> {
    let stat = flat_keyed(CPU_STAT, stat)?;
    if !stat.contains_key("usage_usec") {
        return Err(error(CPU_STAT, "no \"usage_usec\" line"));
    }
    let ns = |k| key(&stat, k).saturating_mul(1_000);
    Ok(CpuStats {
        usage_ns: ns("usage_usec"),
        user_ns: ns("user_usec"),
        system_ns: ns("system_usec"),
        periods: key(&stat, "nr_periods"),
        throttled_periods: key(&stat, "nr_throttled"),
        throttled_ns: ns("throttled_usec"),
    })
}

pub(super) fn memory(
    current: &str,
    max: &str,
    stat: &str,
    events: &str,
) -> Result<MemoryStats, CgroupError> {
    let usage_bytes = single(MEMORY_CURRENT, current)?;
    let stat = flat_keyed(MEMORY_STAT, stat)?;
    let events = flat_keyed(MEMORY_EVENTS, events)?;
    Ok(MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(key(&stat, "inactive_file")),
        rss_bytes: key(&stat, "anon"),
        cache_bytes: key(&stat, "file"),
        limit_bytes: limit(MEMORY_MAX, max)?,
        failcnt: key(&events, "max"),
        oom_kills: key(&events, "oom_kill"),
    })
}

pub(super) fn pids(current: &str, max: &str) -> Result<PidsStats, CgroupError> {
    Ok(PidsStats {
        current: single(PIDS_CURRENT, current)?,
        limit: limit(PIDS_MAX, max)?,
    })
}

/// Sums `rbytes`, `wbytes`, `rios` and `wios` over the devices; other keys are skipped.
pub(super) fn io(text: &str) -> Result<BlkioStats, CgroupError> {
    let mut io = BlkioStats::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
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

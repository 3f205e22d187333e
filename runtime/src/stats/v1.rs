//! cgroup v1: each controller's files mapped onto the sample's fields.
//!
//! - cpuacct: `cpuacct.usage` (ns), `cpuacct.stat` (`user`/`system` in USER_HZ ticks);
//!   cpu: `cpu.stat` (`nr_periods`, `nr_throttled`, `throttled_time` in ns).
//! - memory: `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.failcnt`,
//!   `memory.stat` (`total_rss`, `total_cache`, `total_inactive_file`) and
//!   `memory.oom_control` (`oom_kill`, kernel 4.13 and later).
//! - pids: `pids.current`, `pids.max`.
//! - blkio: `blkio.throttle.io_service_bytes_recursive` and `..._serviced_recursive`
//!   (`MAJ:MIN Read N` lines; the throttle files count I/O under every I/O scheduler).

use crate::cgroup::CgroupError;

use super::parse::{error, flat_keyed};
use super::{BlkioStats, CpuStats, MemoryStats};

/// The kernel's USER_HZ: the unit of `cpuacct.stat`, 100 on every architecture Berth runs on
/// (it is part of the user-space ABI, independent of the kernel's CONFIG_HZ).
const USER_HZ: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

pub(super) const CPUACCT_USAGE: &str = "cpuacct.usage";
pub(super) const CPUACCT_STAT: &str = "cpuacct.stat";
pub(super) const CPU_STAT: &str = "cpu.stat";
pub(super) const MEMORY_USAGE: &str = "memory.usage_in_bytes";
pub(super) const MEMORY_LIMIT: &str = "memory.limit_in_bytes";
pub(super) const MEMORY_FAILCNT: &str = "memory.failcnt";
pub(super) const MEMORY_STAT: &str = "memory.stat";
pub(super) const MEMORY_OOM_CONTROL: &str = "memory.oom_control";
pub(super) const PIDS_CURRENT: &str = "pids.current";
pub(super) const PIDS_MAX: &str = "pids.max";
pub(super) const BLKIO_BYTES: &str = "blkio.throttle.io_service_bytes_recursive";
pub(super) const BLKIO_OPS: &str = "blkio.throttle.io_serviced_recursive";

/// `user` and `system` of `cpuacct.stat`, in nanoseconds.
pub(super) fn cpuacct_stat(text: &str) -> Result<(u64, u64), CgroupError> {
    let [user, system] = flat_keyed(CPUACCT_STAT, text, ["user", "system"])?;
    let ns = |ticks: Option<u64>| ticks.unwrap_or(0).saturating_mul(NS_PER_TICK);
    Ok((ns(user), ns(system)))
}

/// The CFS throttling of `cpu.stat` into `cpu`.
pub(super) fn throttling(text: &str, cpu: &mut CpuStats) -> Result<(), CgroupError> {
    let [periods, throttled, time] = flat_keyed(
        CPU_STAT,
        text,
        ["nr_periods", "nr_throttled", "throttled_time"],
    )?;
    cpu.periods = periods.unwrap_or(0);
    cpu.throttled_periods = throttled.unwrap_or(0);
    cpu.throttled_ns = time.unwrap_or(0);
    Ok(())
}

/// `memory.stat` into `memory`: RSS, cache, and the working set from the usage already there.
pub(super) fn memory_stat(text: &str, memory: &mut MemoryStats) -> Result<(), CgroupError> {
    let [rss, cache, inactive_file] = flat_keyed(
        MEMORY_STAT,
        text,
        ["total_rss", "total_cache", "total_inactive_file"],
    )?;
    memory.rss_bytes = rss.unwrap_or(0);
    memory.cache_bytes = cache.unwrap_or(0);
    memory.working_set_bytes = memory
        .usage_bytes
        .saturating_sub(inactive_file.unwrap_or(0));
    Ok(())
}

/// `oom_kill` of `memory.oom_control` (0 before kernel 4.13, which lacks it).
pub(super) fn oom_kills(text: &str) -> Result<u64, CgroupError> {
    let [kills] = flat_keyed(MEMORY_OOM_CONTROL, text, ["oom_kill"])?;
    Ok(kills.unwrap_or(0))
}

/// Read and write bytes summed over devices.
pub(super) fn blkio_bytes(text: &str, blkio: &mut BlkioStats) -> Result<(), CgroupError> {
    (blkio.read_bytes, blkio.write_bytes) = read_write(BLKIO_BYTES, text)?;
    Ok(())
}

/// Read and write operations summed over devices.
pub(super) fn blkio_ops(text: &str, blkio: &mut BlkioStats) -> Result<(), CgroupError> {
    (blkio.read_ops, blkio.write_ops) = read_write(BLKIO_OPS, text)?;
    Ok(())
}

/// Sums the `MAJ:MIN Read N` and `MAJ:MIN Write N` lines; the other operations and the last
/// `Total N` line are not needed.
fn read_write(file: &str, text: &str) -> Result<(u64, u64), CgroupError> {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (op, value) = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(_device), Some(op), Some(value), None) => (op, value),
            (None, ..) | (Some("Total"), Some(_), None, None) => continue,
            _ => return Err(error(file, format!("unexpected line {line:?}"))),
        };
        let value: u64 = value
            .parse()
            .map_err(|_| error(file, format!("{op} value {value:?} is not a counter")))?;
        match op {
            "Read" => read = read.saturating_add(value),
            "Write" => write = write.saturating_add(value),
            _ => {}
        }
    }
    Ok((read, write))
}

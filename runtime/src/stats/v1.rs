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

use super::parse::{error, flat_keyed, key, limit, single};
use super::{BlkioStats, CpuStats, MemoryStats, PidsStats};

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

/// CPU from `cpuacct.usage`, `cpuacct.stat` and (when the cpu controller is there) `cpu.stat`.
pub(super) fn cpu(
    usage: &str,
    stat: &str,
    throttling: Option<&str>,
) -> Result<CpuStats, CgroupError> {
    let usage_ns = single(CPUACCT_USAGE, usage)?;
    let stat = flat_keyed(CPUACCT_STAT, stat)?;
    let mut cpu = CpuStats {
        usage_ns,
        user_ns: key(&stat, "user").saturating_mul(NS_PER_TICK),
        system_ns: key(&stat, "system").saturating_mul(NS_PER_TICK),
        ..CpuStats::default()
    };
    if let Some(text) = throttling {
        let stat = flat_keyed(CPU_STAT, text)?;
        cpu.periods = key(&stat, "nr_periods");
        cpu.throttled_periods = key(&stat, "nr_throttled");
        cpu.throttled_ns = key(&stat, "throttled_time");
    }
    Ok(cpu)
}

/// The memory controller's files; `oom_control` is None when it cannot be read.
pub(super) fn memory(
    usage: &str,
    limit_text: &str,
    failcnt: &str,
    stat: &str,
    oom_control: Option<&str>,
) -> Result<MemoryStats, CgroupError> {
    let usage_bytes = single(MEMORY_USAGE, usage)?;
    let stat = flat_keyed(MEMORY_STAT, stat)?;
    let oom_kills = match oom_control {
        Some(text) => key(&flat_keyed(MEMORY_OOM_CONTROL, text)?, "oom_kill"),
        None => 0,
    };
    Ok(MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(key(&stat, "total_inactive_file")),
        rss_bytes: key(&stat, "total_rss"),
        cache_bytes: key(&stat, "total_cache"),
        limit_bytes: limit(MEMORY_LIMIT, limit_text)?,
        failcnt: single(MEMORY_FAILCNT, failcnt)?,
        oom_kills,
    })
}

pub(super) fn pids(current: &str, max: &str) -> Result<PidsStats, CgroupError> {
    Ok(PidsStats {
        current: single(PIDS_CURRENT, current)?,
        limit: limit(PIDS_MAX, max)?,
    })
}

/// Read and write bytes and operations summed over devices.
pub(super) fn blkio(bytes: &str, ops: &str) -> Result<BlkioStats, CgroupError> {
    let (read_bytes, write_bytes) = read_write(BLKIO_BYTES, bytes)?;
    let (read_ops, write_ops) = read_write(BLKIO_OPS, ops)?;
    Ok(BlkioStats {
        read_bytes,
        write_bytes,
        read_ops,
        write_ops,
    })
}

/// Sums the `MAJ:MIN Read N` and `MAJ:MIN Write N` lines; the other operations and the last
/// `Total N` line are not needed.
fn read_write(file: &str, text: &str) -> Result<(u64, u64), CgroupError> {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (op, value) = match fields.as_slice() {
            [_device, op, value] => (*op, *value),
            [] | ["Total", _] => continue,
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

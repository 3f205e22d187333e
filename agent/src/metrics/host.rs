//! The host's side of a sample: CPU, memory and load (sysinfo), the data dir's filesystem, and
//! the agent's own CPU time and memory (`/proc/self`).

use std::path::{Path, PathBuf};

use berth_runtime::{FilesystemUsage, filesystem_usage};

/// One sample of the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HostSample {
    /// CPU busy across all cores since the previous sample, 0 to 100.
    pub cpu_percent: f64,
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// The filesystem of the agent's data dir; None when it cannot be read.
    pub data_dir: Option<FilesystemUsage>,
    /// The filesystem of containerd's root; None when it cannot be read.
    pub containerd_root: Option<FilesystemUsage>,
    /// The agent's own CPU time (user and system), in seconds.
    pub agent_cpu_seconds: f64,
    /// The agent's resident memory.
    pub agent_rss_bytes: u64,
    /// CPU time of all cores since boot (`/proc/stat`), in nanoseconds: Docker's
    /// `system_cpu_usage`, against which a container's CPU share is computed.
    pub system_cpu_ns: u64,
}

/// Keeps what sysinfo needs between samples (CPU usage is a difference of two readings).
#[derive(Debug)]
pub(crate) struct HostSampler {
    system: Option<sysinfo::System>,
    data_dir: PathBuf,
    containerd_root: PathBuf,
    proc_self: PathBuf,
    proc_stat: PathBuf,
}

impl HostSampler {
    pub(crate) fn new(data_dir: &Path, containerd_root: &Path) -> Self {
        let system = match sysinfo::System::new() {
            Ok(mut system) => {
                system.refresh_cpu_usage();
                Some(system)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the host's CPU and memory; host metrics stay empty");
                None
            }
        };
        HostSampler {
            system,
            data_dir: data_dir.to_path_buf(),
            containerd_root: containerd_root.to_path_buf(),
            proc_self: PathBuf::from("/proc/self"),
            proc_stat: PathBuf::from("/proc/stat"),
        }
    }

    /// Reads the host (blocking file reads).
    pub(crate) fn sample(&mut self) -> HostSample {
        let mut sample = HostSample::default();
        if let Some(system) = self.system.as_mut() {
            system.refresh_cpu_usage();
            system.refresh_memory();
            sample.cpu_percent = f64::from(system.global_cpu_usage());
            sample.cpus = u32::try_from(system.cpus().len()).unwrap_or(u32::MAX);
            sample.memory_total_bytes = system.total_memory();
            sample.memory_used_bytes = system.used_memory();
            sample.memory_available_bytes = system.available_memory();
        }
        if let Ok(load) = sysinfo::System::load_average() {
            sample.load = [load.one, load.five, load.fifteen];
        }
        sample.data_dir = filesystem_usage(&self.data_dir)
            .inspect_err(|error| tracing::debug!(%error, "cannot read the data dir's filesystem"))
            .ok();
        sample.containerd_root = filesystem_usage(&self.containerd_root)
            .inspect_err(
                |error| tracing::debug!(%error, "cannot read containerd's root filesystem"),
            )
            .ok();
        let stat = std::fs::read_to_string(self.proc_self.join("stat")).unwrap_or_default();
        let status = std::fs::read_to_string(self.proc_self.join("status")).unwrap_or_default();
        sample.agent_cpu_seconds = own_cpu_seconds(&stat).unwrap_or(0.0);
        sample.agent_rss_bytes = own_rss_bytes(&status).unwrap_or(0);
        let proc_stat = std::fs::read_to_string(&self.proc_stat).unwrap_or_default();
        sample.system_cpu_ns = system_cpu_ns(&proc_stat).unwrap_or(0);
        sample
    }
}

/// The kernel's USER_HZ, the unit of /proc/<pid>/stat's times (fixed by the user-space ABI).
const USER_HZ: f64 = 100.0;

/// utime + stime of `/proc/self/stat` (fields 14 and 15), in seconds. The command (field 2) is
/// in parentheses and may hold spaces, so fields are counted after its closing parenthesis.
pub(crate) fn own_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, so utime (14) is at index 11 and stime at 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The sum of the `cpu` line of `/proc/stat` (every state, all cores), in nanoseconds, as
/// Docker computes `system_cpu_usage`.
pub(crate) fn system_cpu_ns(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let mut ticks = 0u64;
    for field in line.split_whitespace().skip(1) {
        ticks = ticks.saturating_add(field.parse::<u64>().ok()?);
    }
    Some(ticks.saturating_mul(1_000_000_000 / USER_HZ as u64))
}

/// `VmRSS` of `/proc/self/status`, in bytes.
pub(crate) fn own_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_and_memory_from_proc() {
        let stat = "4242 (berth agent) S 1 4242 4242 0 -1 4194560 2869 0 0 0 150 37 0 0 20 0 \
                    9 0 1234 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 4096 17922";
        assert_eq!(own_cpu_seconds(stat), Some(1.87));
        assert_eq!(own_cpu_seconds("garbage"), None);
        let status = "Name:\tberth-agent\nVmPeak:\t  200000 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(own_rss_bytes(status), Some(10 * 1024 * 1024));
        assert_eq!(own_rss_bytes("Name:\tx\n"), None);
        let stat = "cpu  100 5 50 1000 10 0 5 0 0 0\ncpu0 50 2 25 500 5 0 2 0 0 0\n";
        assert_eq!(system_cpu_ns(stat), Some(1170 * 10_000_000));
        assert_eq!(system_cpu_ns("intr 1 2"), None);
    }

    #[test]
    fn a_real_sample_of_this_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sampler = HostSampler::new(dir.path(), Path::new("/"));
        let sample = sampler.sample();
        assert!(
            sample.memory_total_bytes > 0 && sample.cpus > 0,
            "{sample:?}"
        );
        assert!(
            sample.agent_rss_bytes > 0 && sample.system_cpu_ns > 0,
            "{sample:?}"
        );
        assert!(sample.containerd_root.is_some(), "{sample:?}");
        let fs = sample.data_dir.expect("the tempdir's filesystem");
        assert!(
            fs.total_bytes >= fs.free_bytes && fs.total_bytes > 0,
            "{fs:?}"
        );
    }
}

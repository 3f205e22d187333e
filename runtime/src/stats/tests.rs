//! The sampling pass on fake cgroup and proc trees with the kernel's real file contents.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::files::Reader;
use super::read::read_cgroup;
use super::*;
use crate::cgroup::CgroupLayout;

/// A sampler of tasks under `berth` on a fake tree, that opens every cgroup again at each
/// pass (so a test can change a file between passes).
fn sampler(layout: CgroupLayout, proc_root: &Path) -> StatsSampler {
    let cgroups = Cgroups::new(layout, "berth").expect("valid parent");
    let mut sampler = StatsSampler::with_reader(
        Arc::new(cgroups),
        proc_root.to_path_buf(),
        Reader::with_budget(1024),
    );
    sampler.reopen_after = std::time::Duration::ZERO;
    sampler
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in files {
        fs::write(dir.join(name), text).expect("write");
    }
}

/// What a v2 container cgroup with cpu, memory, pids and io holds (kernel 6.1, trimmed where
/// the lines do not matter).
const V2_CPU_STAT: &str = "usage_usec 2543210\nuser_usec 2012345\nsystem_usec 530865\n\
core_sched.force_idle_usec 0\nnr_periods 254\nnr_throttled 198\nthrottled_usec 9876543\n\
nr_bursts 0\nburst_usec 0\n";
const V2_MEMORY_STAT: &str = "anon 41943040\nfile 8388608\nkernel 1212416\nkernel_stack 49152\n\
pagetables 131072\nsec_pagetables 0\npercpu 1440\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\n\
zswapped 0\nfile_mapped 2097152\nfile_dirty 0\nfile_writeback 0\nswapcached 0\n\
anon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon 41926656\nactive_anon 16384\n\
inactive_file 6291456\nactive_file 2097152\nunevictable 0\nslab_reclaimable 566104\n\
slab_unreclaimable 409128\nslab 975232\nworkingset_refault_anon 0\npgfault 11380\n\
pgmajfault 3\n";
const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n";
const V2_IO_STAT: &str = "259:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n\
8:0 rbytes=2048 wbytes=8192 rios=2 wios=3 dbytes=0 dios=0\n";

fn v2_full(dir: &Path) {
    write(
        dir,
        &[
            ("cgroup.procs", "4242\n4250\n"),
            ("cpu.stat", V2_CPU_STAT),
            ("memory.current", "51855360\n"),
            ("memory.max", "134217728\n"),
            ("memory.stat", V2_MEMORY_STAT),
            ("memory.events", V2_MEMORY_EVENTS),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("io.stat", V2_IO_STAT),
        ],
    );
}

#[test]
fn v2_maps_every_field() {
    let root = tempfile::tempdir().expect("tempdir");
    v2_full(&root.path().join("berth/t1/app"));
    let layout = CgroupLayout::v2(root.path().to_path_buf());
    let (stats, pid) = read_cgroup(&layout, "berth/t1/app")
        .expect("reads")
        .expect("present");
    assert_eq!(pid, Some(4242));
    assert_eq!(
        stats.cpu,
        Some(CpuStats {
            usage_ns: 2_543_210_000,
            user_ns: 2_012_345_000,
            system_ns: 530_865_000,
            periods: 254,
            throttled_periods: 198,
            throttled_ns: 9_876_543_000,
        })
    );
    assert_eq!(
        stats.memory,
        Some(MemoryStats {
            usage_bytes: 51_855_360,
            working_set_bytes: 51_855_360 - 6_291_456,
            rss_bytes: 41_943_040,
            cache_bytes: 8_388_608,
            limit_bytes: Some(134_217_728),
            failcnt: 17,
            oom_kills: 1,
        })
    );
    assert_eq!(
        stats.pids,
        Some(PidsStats {
            current: 3,
            limit: None
        })
    );
    assert_eq!(
        stats.blkio,
        Some(BlkioStats {
            read_bytes: 1_050_624,
            write_bytes: 12_288,
            read_ops: 14,
            write_ops: 4,
        })
    );
}

/// A cgroup whose parent enables only memory in `cgroup.subtree_control`: no pids.* and no
/// io.stat, and cpu.stat with only the core usage lines (no throttling without the cpu
/// controller).
#[test]
fn v2_missing_controllers_leave_their_parts_empty() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("berth/t1/app");
    write(
        &dir,
        &[
            ("cgroup.procs", ""),
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
            ),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 4096\nfile 0\ninactive_file 0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
        ],
    );
    let layout = CgroupLayout::v2(root.path().to_path_buf());
    let (stats, pid) = read_cgroup(&layout, "berth/t1/app")
        .expect("reads")
        .expect("present");
    assert_eq!(pid, None, "an empty cgroup.procs names no process");
    let cpu = stats.cpu.expect("core cpu.stat");
    assert_eq!(
        (cpu.usage_ns, cpu.periods, cpu.throttled_ns),
        (1_500_000, 0, 0)
    );
    let memory = stats.memory.expect("memory");
    assert_eq!((memory.limit_bytes, memory.working_set_bytes), (None, 4096));
    assert_eq!((stats.pids, stats.blkio), (None, None));

    // Without the memory controller either, only CPU remains.
    fs::remove_file(dir.join("memory.current")).expect("rm");
    let (stats, _) = read_cgroup(&layout, "berth/t1/app")
        .expect("reads")
        .expect("present");
    assert!(stats.cpu.is_some() && stats.memory.is_none());
}

#[test]
fn v2_bad_content_names_the_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("berth/t1/app");
    v2_full(&dir);
    fs::write(dir.join("memory.current"), "lots\n").expect("write");
    let layout = CgroupLayout::v2(root.path().to_path_buf());
    let err = read_cgroup(&layout, "berth/t1/app").expect_err("garbage");
    assert_eq!(
        err.to_string(),
        "cannot parse memory.current: \"lots\" is not a counter"
    );
    fs::write(dir.join("memory.current"), "1\n").expect("write");
    fs::write(dir.join("io.stat"), "8:0 rbytes\n").expect("write");
    let err = read_cgroup(&layout, "berth/t1/app").expect_err("no =");
    assert!(err.to_string().starts_with("cannot parse io.stat"), "{err}");
    fs::write(dir.join("io.stat"), "").expect("write");
    fs::write(dir.join("cpu.stat"), "user_usec 1\n").expect("write");
    let err = read_cgroup(&layout, "berth/t1/app").expect_err("no usage");
    assert!(err.to_string().contains("usage_usec"), "{err}");
}

/// A v1 host as this one: each controller on its own hierarchy.
fn v1_layout(root: &Path) -> CgroupLayout {
    let mounts: BTreeMap<String, PathBuf> = ["cpu", "cpuacct", "memory", "pids", "blkio"]
        .iter()
        .map(|c| (c.to_string(), root.join(c)))
        .collect();
    CgroupLayout::V1 { mounts }
}

#[test]
fn v1_maps_every_field() {
    let root = tempfile::tempdir().expect("tempdir");
    let rel = "berth/t1/app";
    let at = |c: &str| root.path().join(c).join(rel);
    write(
        &at("cpuacct"),
        &[
            ("cpuacct.usage", "3012345678\n"),
            ("cpuacct.stat", "user 250\nsystem 48\n"),
        ],
    );
    write(
        &at("cpu"),
        &[(
            "cpu.stat",
            "nr_periods 300\nnr_throttled 120\nthrottled_time 7000000000\n",
        )],
    );
    write(
        &at("memory"),
        &[
            ("cgroup.procs", "977\n"),
            ("memory.usage_in_bytes", "60817408\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "0\n"),
            (
                "memory.stat",
                "cache 8650752\nrss 50331648\nrss_huge 0\nshmem 0\nmapped_file 1081344\n\
                 inactive_anon 50331648\nactive_anon 0\ninactive_file 4325376\n\
                 active_file 4325376\nhierarchical_memory_limit 9223372036854771712\n\
                 total_cache 8650752\ntotal_rss 50331648\ntotal_inactive_file 4325376\n",
            ),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ],
    );
    write(
        &at("pids"),
        &[("pids.current", "2\n"), ("pids.max", "100\n")],
    );
    write(
        &at("blkio"),
        &[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 40960\n8:0 Write 8192\n8:0 Sync 49152\n8:0 Async 0\n\
                 8:0 Discard 0\n8:0 Total 49152\nTotal 49152\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 10\n8:0 Write 2\n8:0 Sync 12\n8:0 Async 0\n8:0 Discard 0\n\
                 8:0 Total 12\nTotal 12\n",
            ),
        ],
    );
    let layout = v1_layout(root.path());
    let (stats, pid) = read_cgroup(&layout, rel).expect("reads").expect("present");
    assert_eq!(pid, Some(977));
    assert_eq!(
        stats.cpu,
        Some(CpuStats {
            usage_ns: 3_012_345_678,
            user_ns: 2_500_000_000,
            system_ns: 480_000_000,
            periods: 300,
            throttled_periods: 120,
            throttled_ns: 7_000_000_000,
        })
    );
    let memory = stats.memory.expect("memory");
    assert_eq!(memory.limit_bytes, None, "v1's huge number means no limit");
    assert_eq!(memory.working_set_bytes, 60_817_408 - 4_325_376);
    assert_eq!(
        (memory.rss_bytes, memory.cache_bytes),
        (50_331_648, 8_650_752)
    );
    assert_eq!(
        stats.pids,
        Some(PidsStats {
            current: 2,
            limit: Some(100)
        })
    );
    assert_eq!(
        stats.blkio,
        Some(BlkioStats {
            read_bytes: 40960,
            write_bytes: 8192,
            read_ops: 10,
            write_ops: 2,
        })
    );
}

#[test]
fn a_container_without_a_cgroup_is_left_out() {
    let root = tempfile::tempdir().expect("tempdir");
    v2_full(&root.path().join("berth/t1/app"));
    let layout = CgroupLayout::v2(root.path().to_path_buf());
    let proc_root = tempfile::tempdir().expect("tempdir");
    let sample = sampler(layout.clone(), proc_root.path())
        .sample_task("t1", &["app".to_owned(), "gone".to_owned()])
        .expect("valid task");
    let names: Vec<&str> = sample.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"]);
    assert!(
        sample.networks.is_empty(),
        "no such process under the fake /proc"
    );
    assert_eq!(read_cgroup(&layout, "berth/t1/gone").expect("reads"), None);
    // v1: no cgroup in the memory hierarchy means no container.
    let v1 = v1_layout(root.path());
    assert_eq!(read_cgroup(&v1, "berth/t1/app").expect("reads"), None);
}

const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  eth0: 1048576     800    1    2    0     0          0         0   524288     400    3    4    0     0       0          0
";

#[test]
fn networks_come_from_each_namespace_once_but_not_the_agents_own() {
    let root = tempfile::tempdir().expect("tempdir");
    v2_full(&root.path().join("berth/t1/app"));
    write(
        &root.path().join("berth/t1/sidecar"),
        &[("cgroup.procs", "4300\n"), ("cpu.stat", "usage_usec 1\n")],
    );
    write(
        &root.path().join("berth/t2/host"),
        &[("cgroup.procs", "5000\n"), ("cpu.stat", "usage_usec 1\n")],
    );
    let proc_root = tempfile::tempdir().expect("tempdir");
    let p = proc_root.path();
    for (pid, ns) in [
        ("4242", "net:[4026532301]"),
        ("4300", "net:[4026532301]"),
        ("5000", "net:[4026531840]"),
        ("self", "net:[4026531840]"),
    ] {
        fs::create_dir_all(p.join(pid).join("ns")).expect("mkdir");
        std::os::unix::fs::symlink(ns, p.join(pid).join("ns/net")).expect("symlink");
    }
    for pid in ["4242", "4300", "5000"] {
        write(&p.join(pid).join("net"), &[("dev", NET_DEV)]);
    }
    let layout = CgroupLayout::v2(root.path().to_path_buf());
    let sampler = sampler(layout, p);
    let sample = sampler
        .sample_task("t1", &["app".to_owned(), "sidecar".to_owned()])
        .expect("valid task");
    assert_eq!(
        sample.networks,
        [InterfaceStats {
            name: "eth0".to_owned(),
            rx_bytes: 1_048_576,
            rx_packets: 800,
            rx_errors: 1,
            rx_dropped: 2,
            tx_bytes: 524_288,
            tx_packets: 400,
            tx_errors: 3,
            tx_dropped: 4,
        }],
        "both containers share one namespace: counted once, loopback left out"
    );
    let total = sample.total();
    assert_eq!(
        total.cpu.map(|c| c.usage_ns),
        Some(2_543_210_000 + 1_000),
        "without the task cgroup's own files, the task's CPU is its containers' sum"
    );
    assert_eq!(total.memory.map(|m| m.usage_bytes), Some(51_855_360));
    // With them, the task cgroup's (hierarchical) figures win, part by part.
    write(
        &root.path().join("berth/t1"),
        &[(
            "cpu.stat",
            "usage_usec 9000000
nr_periods 5
nr_throttled 2
",
        )],
    );
    let total = sampler
        .sample_task("t1", &["app".to_owned()])
        .expect("valid task")
        .total();
    assert_eq!(
        total.cpu.map(|c| (c.usage_ns, c.throttled_periods)),
        Some((9_000_000_000, 2))
    );
    assert_eq!(total.memory.map(|m| m.usage_bytes), Some(51_855_360));

    let host = sampler
        .sample_task("t2", &["host".to_owned()])
        .expect("valid task");
    assert!(
        host.networks.is_empty(),
        "a host-mode task shows no network of its own"
    );
}

#[test]
fn net_dev_garbage_is_an_error() {
    let text = "h1\nh2\n  eth0: 1 2 3\n";
    let err = netdev::parse(text).expect_err("short");
    assert!(err.to_string().contains("expected 16"), "{err}");
    let err = netdev::parse("h1\nh2\neth0 1 2\n").expect_err("no colon");
    assert!(err.to_string().contains("name:"), "{err}");
}

#[test]
fn limits_sum_only_when_every_part_has_one() {
    let limited = CgroupStats {
        memory: Some(MemoryStats {
            usage_bytes: 10,
            limit_bytes: Some(100),
            ..MemoryStats::default()
        }),
        ..CgroupStats::default()
    };
    let mut total = CgroupStats::default();
    total.accumulate(&limited);
    total.accumulate(&limited);
    assert_eq!(total.memory.and_then(|m| m.limit_bytes), Some(200));
    let mut unlimited = limited;
    if let Some(m) = unlimited.memory.as_mut() {
        m.limit_bytes = None;
    }
    total.accumulate(&unlimited);
    assert_eq!(
        total.memory.map(|m| (m.usage_bytes, m.limit_bytes)),
        Some((30, None))
    );
    assert_eq!(total.cpu, None);
}

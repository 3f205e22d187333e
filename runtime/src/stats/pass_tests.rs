//! What a pass costs and what the sampler keeps between passes, on fake cgroup v1 and v2 trees
//! and a fake `/proc`: files opened once and read once a pass, limits read once, files closed
//! for tasks and containers no longer sampled, the budget of open files, a namespace's
//! `net/dev` kept open with its container's handle, and a container's process looked up again
//! when it exits.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::files::Reader;
use super::*;
use crate::cgroup::{CgroupLayout, Cgroups};

fn write(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in files {
        fs::write(dir.join(name), text).expect("write");
    }
}

fn sampler(layout: CgroupLayout, proc_root: &Path, budget: usize) -> StatsSampler {
    let cgroups = Cgroups::new(layout, "berth").expect("valid parent");
    StatsSampler::with_reader(
        Arc::new(cgroups),
        proc_root.to_path_buf(),
        Reader::with_budget(budget),
    )
}

const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "blkio"];

fn v1_layout(root: &Path) -> CgroupLayout {
    CgroupLayout::v1(V1_CONTROLLERS.iter().map(|c| (*c, root.join(c))))
}

/// Every file a v1 cgroup (task or container) has that the sampler reads, in each hierarchy.
fn v1_cgroup(root: &Path, rel: &str, pid: &str, memory_limit: &str) {
    let at = |c: &str| root.join(c).join(rel);
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
            "nr_periods 3\nnr_throttled 1\nthrottled_time 70\n",
        )],
    );
    write(
        &at("memory"),
        &[
            ("cgroup.procs", pid),
            ("memory.usage_in_bytes", "60817408\n"),
            ("memory.limit_in_bytes", memory_limit),
            ("memory.failcnt", "0\n"),
            (
                "memory.stat",
                "cache 8\nrss 50\ntotal_cache 8\ntotal_rss 50\ntotal_inactive_file 4\n",
            ),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ],
    );
    write(
        &at("pids"),
        &[("pids.current", "2\n"), ("pids.max", "max\n")],
    );
    write(
        &at("blkio"),
        &[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 40960\n8:0 Write 8192\nTotal 49152\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 10\n8:0 Write 2\nTotal 12\n",
            ),
        ],
    );
}

const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  eth0: 1048576     800    1    2    0     0          0         0   524288     400    3    4    0     0       0          0
";

/// A process of the fake `/proc` in network namespace `ns`.
fn process(proc_root: &Path, pid: &str, ns: &str) {
    fs::create_dir_all(proc_root.join(pid).join("ns")).expect("mkdir");
    std::os::unix::fs::symlink(ns, proc_root.join(pid).join("ns/net")).expect("symlink");
    write(&proc_root.join(pid).join("net"), &[("dev", NET_DEV)]);
}

/// The fake `/proc` of an agent in the host's namespace and one task process in its own.
fn proc_tree(proc_root: &Path) {
    fs::create_dir_all(proc_root.join("self/ns")).expect("mkdir");
    std::os::unix::fs::symlink("net:[4026531840]", proc_root.join("self/ns/net")).expect("symlink");
    process(proc_root, "977", "net:[4026532301]");
}

#[test]
fn a_steady_pass_opens_nothing_and_reads_each_file_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    v1_cgroup(root.path(), "berth/t1", "", "268435456\n");
    v1_cgroup(root.path(), "berth/t1/app", "977\n", "134217728\n");
    proc_tree(proc_root.path());
    let sampler = sampler(v1_layout(root.path()), proc_root.path(), 1024);
    let names = ["app".to_owned()];

    let first = sampler.sample_task("t1", &names).expect("valid task");
    assert_eq!(first.containers.len(), 1);
    assert_eq!(first.networks.len(), 1, "{first:?}");
    let app = first.containers[0].stats;
    assert_eq!(app.memory.and_then(|m| m.limit_bytes), Some(128 << 20));
    assert_eq!(app.cpu.map(|c| c.throttled_periods), Some(1));
    assert_eq!(
        first
            .task
            .and_then(|t| t.memory)
            .and_then(|m| m.limit_bytes),
        Some(256 << 20)
    );

    let before = sampler.io_counts();
    let second = sampler.sample_task("t1", &names).expect("valid task");
    let after = sampler.io_counts();
    assert_eq!(second, first, "the same files read again");
    // Ten files of the task's cgroup and ten of the container's, one pread each; net/dev
    // kept open and read to its end (two preads).
    assert_eq!(
        (after.opens - before.opens, after.reads - before.reads),
        (0, 22),
        "one steady pass"
    );
}

#[test]
fn limits_are_read_when_a_cgroup_is_opened_and_again_after_reopen_after() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("berth/t1/app");
    write(
        &dir,
        &[
            ("cpu.stat", "usage_usec 1\n"),
            ("memory.current", "4096\n"),
            ("memory.max", "134217728\n"),
            ("pids.current", "1\n"),
            ("pids.max", "10\n"),
        ],
    );
    let mut sampler = sampler(
        CgroupLayout::v2(root.path().to_path_buf()),
        proc_root.path(),
        1024,
    );
    let names = ["app".to_owned()];
    let limits = |sampler: &StatsSampler| {
        let sample = sampler.sample_task("t1", &names).expect("valid task");
        let stats = sample.containers[0].stats;
        (
            stats.memory.and_then(|m| m.limit_bytes),
            stats.pids.and_then(|p| p.limit),
        )
    };
    assert_eq!(limits(&sampler), (Some(128 << 20), Some(10)));
    fs::write(dir.join("memory.max"), "max\n").expect("write");
    fs::write(dir.join("pids.max"), "20\n").expect("write");
    assert_eq!(
        limits(&sampler),
        (Some(128 << 20), Some(10)),
        "not read again within reopen_after"
    );
    sampler.reopen_after = Duration::ZERO;
    assert_eq!(limits(&sampler), (None, Some(20)));
}

#[test]
fn files_of_tasks_and_containers_no_longer_sampled_are_closed() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    for rel in [
        "berth/t1",
        "berth/t1/app",
        "berth/t1/sidecar",
        "berth/t2",
        "berth/t2/app",
    ] {
        v1_cgroup(root.path(), rel, "", "max\n");
    }
    let sampler = sampler(v1_layout(root.path()), proc_root.path(), 1024);
    let open = |s: &StatsSampler| s.cache().reader_open_files();
    let both = ["app".to_owned(), "sidecar".to_owned()];
    sampler.sample_task("t1", &both).expect("valid task");
    sampler.sample_task("t2", &both[..1]).expect("valid task");
    assert_eq!(open(&sampler), 50, "ten files for each of five cgroups");
    let sample = sampler.sample_task("t1", &both[..1]).expect("valid task");
    assert_eq!(sample.containers.len(), 1);
    assert_eq!(open(&sampler), 40, "the sidecar stopped running");
    sampler.retain_tasks(&["t2"]);
    assert_eq!(open(&sampler), 20, "t1 left the pass");
    sampler.retain_tasks::<&str>(&[]);
    assert_eq!(open(&sampler), 0);
}

#[test]
fn over_the_budget_files_are_opened_at_each_read_and_a_removed_cgroup_is_left_out() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    for rel in ["berth/t1", "berth/t1/app", "berth/t1/sidecar"] {
        v1_cgroup(root.path(), rel, "", "max\n");
    }
    let sampler = sampler(v1_layout(root.path()), proc_root.path(), 15);
    let both = ["app".to_owned(), "sidecar".to_owned()];
    let first = sampler.sample_task("t1", &both).expect("valid task");
    assert_eq!(first.containers.len(), 2);
    assert_eq!(
        sampler.cache().reader_open_files(),
        15,
        "the budget is spent"
    );
    let before = sampler.io_counts();
    let second = sampler.sample_task("t1", &both).expect("valid task");
    let after = sampler.io_counts();
    assert_eq!(second, first);
    assert_eq!(
        after.opens - before.opens,
        15 + 2,
        "the files over the budget are opened at each pass (and the containers' cgroup.procs, \
         as they hold no process to remember)"
    );
    // The sidecar's cgroup goes away (its files are over the budget, so it reads as gone).
    for controller in V1_CONTROLLERS {
        fs::remove_dir_all(root.path().join(controller).join("berth/t1/sidecar")).expect("rm");
    }
    let third = sampler.sample_task("t1", &both).expect("valid task");
    let names: Vec<&str> = third.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"]);
}

#[test]
fn net_dev_stays_open_with_its_container_and_a_new_process_stands_in_after_a_reopen() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    v1_cgroup(root.path(), "berth/t1", "", "max\n");
    v1_cgroup(root.path(), "berth/t1/app", "977\n", "max\n");
    proc_tree(proc_root.path());
    let mut sampler = sampler(v1_layout(root.path()), proc_root.path(), 1024);
    let names = ["app".to_owned()];
    let first = sampler.sample_task("t1", &names).expect("valid task");
    assert_eq!(first.networks.len(), 1);
    assert_eq!(
        sampler.cache().reader_open_files(),
        21,
        "ten files for each of two cgroups, and net/dev"
    );
    // The process exits and another takes its place: the open net/dev still reads the
    // namespace, without a lookup.
    fs::remove_dir_all(proc_root.path().join("977")).expect("rm");
    process(proc_root.path(), "981", "net:[4026532301]");
    fs::write(
        root.path().join("memory/berth/t1/app/cgroup.procs"),
        "981\n",
    )
    .expect("write");
    let before = sampler.io_counts();
    let second = sampler.sample_task("t1", &names).expect("valid task");
    assert_eq!(sampler.io_counts().opens, before.opens, "nothing opened");
    assert_eq!(second.networks, first.networks);
    // Opened again (as after a minute), the container's handle finds the new process.
    sampler.reopen_after = Duration::ZERO;
    let third = sampler.sample_task("t1", &names).expect("valid task");
    assert_eq!(third.networks, first.networks);
    assert_eq!(sampler.cache().reader_open_files(), 21);
    // A task leaving the pass lets its namespace go.
    sampler.retain_tasks::<&str>(&[]);
    assert_eq!(sampler.cache().reader_open_files(), 0);
}

#[test]
fn a_process_gone_before_net_dev_is_opened_is_replaced_by_another() {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_root = tempfile::tempdir().expect("tempdir");
    v1_cgroup(root.path(), "berth/t1", "", "max\n");
    v1_cgroup(root.path(), "berth/t1/app", "977\n981\n", "max\n");
    proc_tree(proc_root.path());
    // 977's namespace link is there but its net/dev is not (it exited mid-lookup).
    fs::remove_file(proc_root.path().join("977/net/dev")).expect("rm");
    process(proc_root.path(), "981", "net:[4026532301]");
    let sampler = sampler(v1_layout(root.path()), proc_root.path(), 1024);
    let first = sampler
        .sample_task("t1", &["app".to_owned()])
        .expect("valid task");
    assert_eq!(first.networks.len(), 0, "977 is still listed first");
    fs::write(
        root.path().join("memory/berth/t1/app/cgroup.procs"),
        "981\n",
    )
    .expect("write");
    let second = sampler
        .sample_task("t1", &["app".to_owned()])
        .expect("valid task");
    assert_eq!(second.networks.len(), 1, "{second:?}");
    assert_eq!(second.networks[0].rx_bytes, 1_048_576);
}

//! Tests of `Cgroups` on fake v1 and v2 trees in a tempdir.
//!
//! A plain directory is not cgroupfs: mkdir does not make the interface files and rmdir refuses
//! a directory with files in it. The fixtures do what the kernel would: `kernel_mkdir` creates the
//! interface files cgroups-rs reads before writing, and `kernel_drop_files` removes the files
//! that rmdir would take away with the cgroup.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Removes every regular file under `dir`, as rmdir on cgroupfs takes the interface files along.
fn kernel_drop_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            kernel_drop_files(&path);
        } else {
            fs::remove_file(&path).expect("remove file");
        }
    }
}

fn limits(cpu_units: Option<u32>, memory_mib: Option<u64>) -> TaskLimits {
    TaskLimits {
        cpu_units,
        cpu_shares: None,
        memory_mib,
    }
}

/// A unified hierarchy as a v2 host has it.
struct FakeV2 {
    _tmp: TempDir,
    root: PathBuf,
}

impl FakeV2 {
    fn new(controllers: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("cgroup");
        write(root.join("cgroup.controllers"), &format!("{controllers}\n"));
        write(root.join("cgroup.subtree_control"), "");
        FakeV2 { _tmp: tmp, root }
    }

    fn cgroups(&self) -> Cgroups {
        Cgroups::new(CgroupLayout::v2(self.root.clone()), "berth").expect("manager")
    }

    /// What mkdir of `rel` makes on cgroupfs with cpu and memory enabled in the parent.
    fn kernel_mkdir(&self, rel: &str) {
        let dir = self.root.join(rel);
        write(dir.join("cgroup.controllers"), "cpu memory pids\n");
        write(dir.join("cgroup.subtree_control"), "");
        write(dir.join("cpu.max"), "max 100000\n");
        write(dir.join("memory.max"), "max\n");
        write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        );
    }
}

/// Separately mounted v1 hierarchies under one directory, like this machine's hybrid layout,
/// or with cpu and cpuacct co-mounted.
struct FakeV1 {
    _tmp: TempDir,
    base: PathBuf,
    mounts: BTreeMap<String, PathBuf>,
}

impl FakeV1 {
    fn new(comount_cpu: bool) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("cgroup");
        let mut mounts = BTreeMap::new();
        for (controllers, dir) in [
            (
                &["cpu", "cpuacct"][..],
                if comount_cpu { "cpu,cpuacct" } else { "" },
            ),
            (&["cpuset"][..], "cpuset"),
            (&["memory"][..], "memory"),
            (&["pids"][..], "pids"),
            (&["devices"][..], "devices"),
            (&["freezer"][..], "freezer"),
            (&["name=systemd"][..], "systemd"),
        ] {
            for c in controllers {
                let dir = if dir.is_empty() { *c } else { dir };
                mounts.insert((*c).to_owned(), base.join(dir));
            }
        }
        for dir in mounts.values() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        write(base.join("cpuset/cpuset.cpus"), "0-1\n");
        write(base.join("cpuset/cpuset.mems"), "0\n");
        FakeV1 {
            _tmp: tmp,
            base,
            mounts,
        }
    }

    fn cgroups(&self) -> Cgroups {
        Cgroups::new(CgroupLayout::v1(self.mounts.clone()), "berth").expect("manager")
    }

    fn path(&self, controller: &str, rel: &str) -> PathBuf {
        self.mounts[controller].join(rel)
    }
}

#[test]
fn paths_and_version() {
    let fake = FakeV2::new("cpu memory pids");
    let cg = fake.cgroups();
    assert_eq!(cg.version(), CgroupVersion::V2);
    assert_eq!(cg.task_path("t-1").expect("valid"), "/berth/t-1");
    assert_eq!(
        cg.container_path("t-1", "app").expect("valid"),
        "/berth/t-1/app"
    );
    assert_eq!(
        cg.container_path("t-1", "../x")
            .expect_err("invalid")
            .to_string(),
        "invalid container name \"../x\": must not start with '.'"
    );
    assert_eq!(
        cg.task_path("a/b").expect_err("invalid").to_string(),
        "invalid task id \"a/b\": may contain only ASCII letters, digits, '_', '.' and '-'"
    );

    let nested =
        Cgroups::new(CgroupLayout::v2(fake.root.clone()), "/system/berth/").expect("nested parent");
    assert_eq!(
        nested.container_path("t", "c").expect("valid"),
        "/system/berth/t/c"
    );
    let err = Cgroups::new(CgroupLayout::v2(fake.root.clone()), "berth/..").expect_err("dots");
    assert_eq!(
        err.to_string(),
        "invalid cgroup parent \"..\": must not be \".\" or \"..\""
    );
    assert!(Cgroups::new(CgroupLayout::v2(fake.root.clone()), "").is_err());
    assert_eq!(FakeV1::new(false).cgroups().version().to_string(), "v1");
}

#[test]
fn v2_create_task_enables_controllers_down_to_the_task() {
    let fake = FakeV2::new("cpuset cpu io memory pids");
    let cg = fake.cgroups();
    assert!(!cg.task_exists("t1"));
    cg.create_task("t1", &TaskLimits::default())
        .expect("created");

    assert!(cg.task_exists("t1"));
    for dir in ["", "berth", "berth/t1"] {
        assert_eq!(
            read(fake.root.join(dir).join("cgroup.subtree_control")),
            "+cpu +memory +pids",
            "{dir:?}"
        );
    }
    // No limits given: nothing written, the task inherits.
    let task = fake.root.join("berth/t1");
    assert!(!task.join("cpu.max").exists());
    assert!(!task.join("memory.max").exists());

    // Creating again keeps the controllers as they are (nothing missing, nothing written).
    cg.create_task("t1", &TaskLimits::default())
        .expect("created again");
    assert_eq!(
        read(fake.root.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
}

#[test]
fn v2_create_task_writes_cpu_max_and_memory_max() {
    let fake = FakeV2::new("cpuset cpu io memory pids");
    // The kernel makes cpu.max and memory.max on mkdir; cgroups-rs reads cpu.max before writing.
    fake.kernel_mkdir("berth/t1");
    let cg = fake.cgroups();
    cg.create_task("t1", &limits(Some(512), Some(256)))
        .expect("created");

    let task = fake.root.join("berth/t1");
    assert_eq!(read(task.join("cpu.max")), "50000 100000");
    assert_eq!(read(task.join("memory.max")), "268435456");
    assert_eq!(
        read(fake.root.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(fake.root.join("berth/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(task.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );

    // A tiny task gets the kernel's minimum quota.
    cg.create_task("t1", &limits(Some(1), None))
        .expect("updated");
    assert_eq!(read(task.join("cpu.max")), "1000 100000");
}

#[test]
fn v2_only_enables_what_the_root_offers() {
    let fake = FakeV2::new("cpu io pids");
    let cg = fake.cgroups();
    cg.create_task("t1", &TaskLimits::default())
        .expect("created");
    assert_eq!(read(fake.root.join("cgroup.subtree_control")), "+cpu +pids");

    let err = cg
        .create_task("t2", &limits(None, Some(64)))
        .expect_err("no memory controller");
    assert_eq!(
        err.to_string(),
        "controller memory is not available for cgroup /berth/t2"
    );
    assert!(
        !cg.task_exists("t2"),
        "a failed creation leaves nothing behind"
    );
}

#[test]
fn v2_failure_to_write_a_limit_names_file_cgroup_and_task() {
    let fake = FakeV2::new("cpu memory pids");
    let cg = fake.cgroups();
    // No cpu.max in the (fake) cgroup: cgroups-rs cannot read the current value.
    let err = cg
        .create_task("t1", &limits(Some(1024), None))
        .expect_err("cpu.max missing");
    assert_eq!(
        err.to_string(),
        "cannot set cpu.max of cgroup /berth/t1 for task t1"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn v2_without_cgroup_controllers_file_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cg = Cgroups::new(CgroupLayout::v2(tmp.path().to_path_buf()), "berth").expect("manager");
    let err = cg
        .create_task("t1", &TaskLimits::default())
        .expect_err("not a cgroup2 root");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}",
            tmp.path().join("cgroup.controllers").display()
        )
    );
    assert!(!tmp.path().join("berth").exists());
}

#[test]
fn too_large_limits_are_refused_before_touching_anything() {
    let fake = FakeV2::new("cpu memory pids");
    let cg = fake.cgroups();
    let err = cg
        .create_task("t1", &limits(None, Some(u64::MAX)))
        .expect_err("too large");
    assert_eq!(
        err.to_string(),
        "memory (MiB) 18446744073709551615 of task t1 is too large for the kernel"
    );
    assert!(!fake.root.join("berth").exists());
    let err = cg
        .create_task(".", &TaskLimits::default())
        .expect_err("bad id");
    assert!(
        matches!(
            err,
            CgroupError::InvalidId {
                kind: "task id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn v1_create_task_writes_quota_period_memory_and_cpuset() {
    let fake = FakeV1::new(false);
    let cg = fake.cgroups();
    cg.create_task("t1", &limits(Some(2048), Some(512)))
        .expect("created");

    assert_eq!(
        read(fake.path("cpu", "berth/t1/cpu.cfs_period_us")),
        "100000"
    );
    assert_eq!(
        read(fake.path("cpu", "berth/t1/cpu.cfs_quota_us")),
        "200000"
    );
    assert_eq!(
        read(fake.path("memory", "berth/t1/memory.limit_in_bytes")),
        "536870912"
    );
    for rel in ["berth", "berth/t1"] {
        assert_eq!(
            read(fake.path("cpuset", rel).join("cpuset.cpus")),
            "0-1",
            "{rel}"
        );
        assert_eq!(
            read(fake.path("cpuset", rel).join("cpuset.mems")),
            "0",
            "{rel}"
        );
    }
    for c in ["cpu", "cpuacct", "cpuset", "memory", "pids"] {
        assert!(fake.path(c, "berth/t1").is_dir(), "{c}");
    }
    // Other hierarchies are runc's: it creates /berth/t1/<container> there itself.
    assert!(!fake.path("devices", "berth").exists());
    assert!(cg.task_exists("t1"));
}

/// ECS's task without a task-level cpu: a weight among tasks (the containers' sum), no cap.
fn shares_only(shares: u64) -> TaskLimits {
    TaskLimits {
        cpu_shares: Some(shares),
        ..TaskLimits::default()
    }
}

#[test]
fn v1_shares_weigh_a_task_without_capping_it() {
    let fake = FakeV1::new(false);
    let cg = fake.cgroups();
    cg.create_task("t1", &shares_only(258)).expect("created");
    assert_eq!(read(fake.path("cpu", "berth/t1/cpu.shares")), "258");
    assert!(!fake.path("cpu", "berth/t1/cpu.cfs_quota_us").exists());
    cg.create_task("t2", &shares_only(1)).expect("created");
    assert_eq!(
        read(fake.path("cpu", "berth/t2/cpu.shares")),
        "2",
        "the kernel's minimum"
    );
    // A quota wins: the task is capped, and its shares are left alone.
    let both = TaskLimits {
        cpu_units: Some(512),
        ..shares_only(258)
    };
    cg.create_task("t3", &both).expect("created");
    assert_eq!(read(fake.path("cpu", "berth/t3/cpu.cfs_quota_us")), "50000");
    assert!(!fake.path("cpu", "berth/t3/cpu.shares").exists());
}

#[test]
fn v2_shares_become_a_weight() {
    let fake = FakeV2::new("cpu memory pids");
    fake.kernel_mkdir("berth/t1");
    let cg = fake.cgroups();
    cg.create_task("t1", &shares_only(1024)).expect("created");
    let task = fake.root.join("berth/t1");
    assert_eq!(read(task.join("cpu.weight")), "39", "runc's formula");
    assert_eq!(read(task.join("cpu.max")).trim(), "max 100000", "no cap");
}

#[test]
fn v1_without_limits_writes_no_limit_files() {
    let fake = FakeV1::new(false);
    let cg = fake.cgroups();
    cg.create_task("t1", &TaskLimits::default())
        .expect("created");
    assert!(!fake.path("cpu", "berth/t1/cpu.cfs_quota_us").exists());
    assert!(!fake.path("cpu", "berth/t1/cpu.cfs_period_us").exists());
    assert!(
        !fake
            .path("memory", "berth/t1/memory.limit_in_bytes")
            .exists()
    );
    assert_eq!(read(fake.path("cpuset", "berth/t1/cpuset.cpus")), "0-1");
}

#[test]
fn v1_comounted_cpu_and_cpuacct() {
    let fake = FakeV1::new(true);
    assert_eq!(fake.path("cpu", ""), fake.path("cpuacct", ""));
    let cg = fake.cgroups();
    cg.create_task("t1", &limits(Some(256), None))
        .expect("created");
    let task = fake.base.join("cpu,cpuacct/berth/t1");
    assert_eq!(read(task.join("cpu.cfs_quota_us")), "25000");
    assert_eq!(read(task.join("cpu.cfs_period_us")), "100000");
}

#[test]
fn v1_existing_cpuset_values_are_kept() {
    let fake = FakeV1::new(false);
    write(fake.path("cpuset", "berth/cpuset.cpus"), "1\n");
    write(fake.path("cpuset", "berth/cpuset.mems"), "0\n");
    fake.cgroups()
        .create_task("t1", &TaskLimits::default())
        .expect("created");
    assert_eq!(read(fake.path("cpuset", "berth/cpuset.cpus")), "1\n");
    assert_eq!(read(fake.path("cpuset", "berth/t1/cpuset.cpus")), "1");
}

#[test]
fn v1_empty_root_cpuset_fails_and_cleans_up() {
    let fake = FakeV1::new(false);
    write(fake.path("cpuset", "cpuset.cpus"), "\n");
    let cg = fake.cgroups();
    let err = cg
        .create_task("t1", &TaskLimits::default())
        .expect_err("empty cpuset");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot set up cpuset.cpus of {}: its parent's is empty",
            fake.path("cpuset", "berth").display()
        )
    );
    assert!(
        !cg.task_exists("t1"),
        "the half-made task cgroup was removed"
    );
}

#[test]
fn v1_limits_need_their_controller() {
    let fake = FakeV1::new(false);
    let mut mounts = fake.mounts.clone();
    mounts.remove("memory");
    let cg = Cgroups::new(CgroupLayout::v1(mounts), "berth").expect("manager");
    let err = cg
        .create_task("t1", &limits(None, Some(64)))
        .expect_err("no memory");
    assert_eq!(
        err.to_string(),
        "controller memory is not available for cgroup /berth/t1"
    );
    assert!(!fake.path("cpu", "berth/t1").exists());
    let err = cg.oom_kills("/berth/t1").expect_err("no memory");
    assert_eq!(
        err.to_string(),
        "controller memory is not available for cgroup /berth/t1"
    );
}

#[test]
fn v1_remove_task_removes_it_from_every_hierarchy() {
    let fake = FakeV1::new(false);
    let cg = fake.cgroups();
    cg.create_task("t1", &limits(Some(1024), Some(128)))
        .expect("created");
    cg.create_task("t2", &TaskLimits::default())
        .expect("created");
    // What runc leaves when it removed the containers: empty leftovers are possible, and the
    // task level exists in the hierarchies runc created it in.
    for c in ["memory", "devices", "systemd"] {
        fs::create_dir_all(fake.base.join(c).join("berth/t1/app")).expect("mkdir");
    }
    for dir in fake.mounts.values() {
        kernel_drop_files(&dir.join("berth/t1"));
    }

    cg.remove_task("t1").expect("removed");
    assert!(!cg.task_exists("t1"));
    for dir in fake.mounts.values() {
        assert!(!dir.join("berth/t1").exists(), "{}", dir.display());
    }
    assert!(cg.task_exists("t2"), "other tasks stay");
    assert!(fake.path("memory", "berth").is_dir(), "the parent stays");
    cg.remove_task("t1").expect("removing again is fine");
}

#[test]
fn v2_remove_task_and_failure_naming_the_path() {
    let fake = FakeV2::new("cpu memory pids");
    let cg = fake.cgroups();
    cg.create_task("t1", &TaskLimits::default())
        .expect("created");
    fs::create_dir_all(fake.root.join("berth/t1/app")).expect("mkdir");
    kernel_drop_files(&fake.root.join("berth/t1"));
    cg.remove_task("t1").expect("removed");
    assert!(!cg.task_exists("t1"));
    assert!(fake.root.join("berth").is_dir());
    cg.remove_task("t1").expect("removing again is fine");

    cg.create_task("t2", &TaskLimits::default())
        .expect("created");
    let err = cg
        .remove_task("t2")
        .expect_err("a plain dir with files is not removable");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot remove cgroup {}",
            fake.root.join("berth/t2").display()
        )
    );
    assert!(cg.remove_task("../etc").is_err());
}

#[test]
fn oom_kills_reads_the_counters() {
    let v1 = FakeV1::new(false);
    write(
        v1.path("memory", "berth/t1/app/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    let cg = v1.cgroups();
    let path = cg.container_path("t1", "app").expect("valid");
    assert_eq!(cg.oom_kills(&path).expect("read"), 2);

    let v2 = FakeV2::new("cpu memory pids");
    v2.kernel_mkdir("berth/t1");
    write(
        v2.root.join("berth/t1/memory.events"),
        "low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\noom_group_kill 0\n",
    );
    let cg = v2.cgroups();
    assert_eq!(cg.oom_kills("/berth/t1").expect("read"), 3);
    assert_eq!(cg.oom_kills("berth/t1").expect("read"), 3);

    let err = cg.oom_kills("/berth/t9").expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}",
            v2.root.join("berth/t9/memory.events").display()
        )
    );
    for bad in ["/berth/../../etc", "", "/", "/berth//t1", "/berth/t1/"] {
        let err = cg.oom_kills(bad).expect_err("invalid path");
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn v1_swap_support_follows_the_memory_controllers_files() {
    let fake = FakeV1::new(false);
    let cg = fake.cgroups();
    let none = SwapSupport {
        limit: false,
        swappiness: false,
    };
    // A kernel booted without swap accounting: swappiness, but no memsw files.
    write(fake.path("memory", "memory.swappiness"), "60\n");
    assert_eq!(
        cg.swap_support("t1").expect("support"),
        SwapSupport {
            limit: false,
            swappiness: true
        },
        "before the task cgroup exists, the hierarchy root answers"
    );
    // With swap accounting, in the task's own cgroup.
    write(fake.path("memory", "berth/t1/memory.swappiness"), "60\n");
    write(
        fake.path("memory", "berth/t1/memory.memsw.limit_in_bytes"),
        "9223372036854771712\n",
    );
    assert_eq!(
        cg.swap_support("t1").expect("support"),
        SwapSupport {
            limit: true,
            swappiness: true
        }
    );
    // A layout without a memory hierarchy limits nothing.
    let mut mounts = fake.mounts.clone();
    mounts.remove("memory");
    let no_memory = Cgroups::new(CgroupLayout::v1(mounts), "berth").expect("manager");
    assert_eq!(no_memory.swap_support("t1").expect("support"), none);
    assert!(cg.swap_support("../x").is_err());
}

#[test]
fn v2_swap_support_needs_memory_swap_max_and_never_has_swappiness() {
    let fake = FakeV2::new("cpu memory pids");
    let cg = fake.cgroups();
    let none = SwapSupport {
        limit: false,
        swappiness: false,
    };
    // Only the root exists: it never has memory.swap.max, so nothing can be told.
    assert_eq!(cg.swap_support("t1").expect("support"), none);
    fake.kernel_mkdir("berth/t1");
    assert_eq!(
        cg.swap_support("t1").expect("support"),
        none,
        "a kernel without swap accounting makes no memory.swap.max"
    );
    write(fake.root.join("berth/t1/memory.swap.max"), "max\n");
    assert_eq!(
        cg.swap_support("t1").expect("support"),
        SwapSupport {
            limit: true,
            swappiness: false
        }
    );
    // The parent answers for a task whose cgroup does not exist yet.
    write(fake.root.join("berth/memory.swap.max"), "max\n");
    assert!(cg.swap_support("t2").expect("support").limit);
}

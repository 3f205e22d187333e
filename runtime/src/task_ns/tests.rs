//! The holder's handshake and the bookkeeping that needs no root: paths named from the task
//! ID, a missing holder program, a holder that never says it is ready.

use std::collections::BTreeMap;

use super::*;
use crate::cgroup::CgroupLayout;

fn namespaces(tmp: &Path, holder: Option<HolderCommand>) -> TaskNamespaces {
    let root = tmp.join("cgroup");
    std::fs::create_dir_all(root.join("berth/t1")).expect("mkdir");
    let mut mounts = BTreeMap::new();
    mounts.insert("memory".to_owned(), root);
    let cgroups = Cgroups::new(CgroupLayout::V1 { mounts }, "berth").expect("cgroups");
    TaskNamespaces::new(tmp.join("ns"), holder, Arc::new(cgroups))
}

fn sh(script: &str) -> HolderCommand {
    HolderCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".to_owned(), script.to_owned(), "holder".to_owned()],
    }
}

#[test]
fn paths_are_named_from_the_task_id_and_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns = namespaces(tmp.path(), None);
    let dir = tmp.path().join("ns/t1");
    assert_eq!(
        ns.paths("t1").expect("paths"),
        TaskNamespacePaths {
            pid: dir.join("pid"),
            ipc: dir.join("ipc"),
            shm: dir.join("shm"),
        }
    );
    let err = ns.paths("../etc").expect_err("refused").to_string();
    assert!(err.contains("invalid task id"), "{err}");
}

#[test]
fn nothing_shared_makes_nothing_and_no_holder_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns = namespaces(tmp.path(), None);
    let none = SharedNamespaces {
        pid: false,
        ipc: false,
        shm_size_mib: DEFAULT_SHM_MIB,
    };
    ns.ensure("t1", none).expect("nothing to do");
    assert!(!tmp.path().join("ns/t1").exists());
    let pid = SharedNamespaces { pid: true, ..none };
    let err = ns.ensure("t1", pid).expect_err("no holder").to_string();
    assert_eq!(
        err,
        "task t1 shares its PID or IPC namespace (pidMode or ipcMode task), and this runtime \
         has no namespace holder to run"
    );
    // Removing what was never made is fine, and leaves nothing.
    ns.remove("t1").expect("removed");
    assert!(!tmp.path().join("ns/t1").exists());
}

#[test]
fn the_holder_gets_its_cgroups_and_must_say_it_is_ready() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let procs = [
        tmp.path().join("a/cgroup.procs"),
        tmp.path().join("b/cgroup.procs"),
    ];
    // What the runtime passes: one --cgroup-procs a hierarchy.
    let args = tmp.path().join("args");
    let ready = sh(&format!(
        "echo \"$@\" > {}; echo '{HOLDER_READY}'; exec sleep 60",
        args.display()
    ));
    let mut child = spawn_holder(&ready, CloneFlags::empty(), &procs).expect("ready");
    let got = std::fs::read_to_string(&args).expect("args");
    assert_eq!(
        got.trim(),
        format!(
            "--cgroup-procs {} --cgroup-procs {}",
            procs[0].display(),
            procs[1].display()
        )
    );
    child.kill().expect("kill");
    child.wait().expect("reaped");

    let quits = sh("echo 'cannot join' >&2; exit 3");
    let err = spawn_holder(&quits, CloneFlags::empty(), &procs).expect_err("quit");
    assert!(err.starts_with("it exited before it was ready"), "{err}");
    let wrong = sh("echo hello; exec sleep 60");
    let err = spawn_holder(&wrong, CloneFlags::empty(), &procs).expect_err("wrong word");
    assert_eq!(
        err,
        format!("it said \"hello\" instead of {HOLDER_READY:?}")
    );
    let missing = HolderCommand {
        program: tmp.path().join("no-such-program"),
        args: Vec::new(),
    };
    let err = spawn_holder(&missing, CloneFlags::empty(), &procs).expect_err("missing");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn held_is_false_without_a_holder_and_true_when_nothing_is_shared() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns = namespaces(tmp.path(), None);
    let none = SharedNamespaces {
        pid: false,
        ipc: false,
        shm_size_mib: DEFAULT_SHM_MIB,
    };
    assert!(ns.held("t1", none).expect("nothing to hold"));
    // No holder's cgroup (it never started, or it died and was removed): not held.
    for shared in [
        SharedNamespaces { pid: true, ..none },
        SharedNamespaces { ipc: true, ..none },
    ] {
        assert!(!ns.held("t1", shared).expect("checked"));
    }
    assert!(ns.held("../etc", none).is_err(), "the task ID is checked");
}

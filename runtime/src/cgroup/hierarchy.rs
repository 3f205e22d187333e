//! cgroups-rs `Hierarchy` implementations whose mount points and root are parameters.
//!
//! cgroups-rs's own `V1`/`V2` read /proc/self/mountinfo and /sys/fs/cgroup themselves, and their
//! `parent_control_group` unwraps the parent of the path; these carry what `CgroupLayout` found
//! (or what a test gave) and never panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, Hierarchy, Subsystem};

/// v1 controllers a task cgroup is created in: what limits and metrics need, and what runc nests
/// the container cgroups under. runc creates the other hierarchies' directories itself.
pub(crate) const V1_TASK_CONTROLLERS: &[&str] = &["memory", "pids", "cpuset", "cpuacct", "cpu"];

/// v2 controllers enabled for the task subtree (when the root offers them).
pub(crate) const V2_TASK_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// The v1 hierarchies of the controllers in `V1_TASK_CONTROLLERS` that are mounted.
#[derive(Debug, Clone)]
pub(crate) struct FixedV1 {
    /// Controller name → mount point.
    mounts: BTreeMap<String, PathBuf>,
}

impl FixedV1 {
    pub(crate) fn new(all_mounts: &BTreeMap<String, PathBuf>) -> Self {
        let mounts = all_mounts
            .iter()
            .filter(|(c, _)| V1_TASK_CONTROLLERS.contains(&c.as_str()))
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        FixedV1 { mounts }
    }

    fn point(&self, controller: &str) -> Option<PathBuf> {
        self.mounts.get(controller).cloned()
    }
}

impl Hierarchy for FixedV1 {
    fn subsystems(&self) -> Vec<Subsystem> {
        // Same order as cgroups-rs's V1 (memory before cpu, cpuset before cpu).
        let mut subs = Vec::new();
        if let Some(p) = self.point("memory") {
            subs.push(Subsystem::Mem(MemController::new(p.clone(), p, false)));
        }
        if let Some(p) = self.point("pids") {
            subs.push(Subsystem::Pid(PidController::new(p.clone(), p, false)));
        }
        if let Some(p) = self.point("cpuset") {
            subs.push(Subsystem::CpuSet(CpuSetController::new(
                p.clone(),
                p,
                false,
            )));
        }
        if let Some(p) = self.point("cpuacct") {
            subs.push(Subsystem::CpuAcct(CpuAcctController::new(p.clone(), p)));
        }
        if let Some(p) = self.point("cpu") {
            subs.push(Subsystem::Cpu(CpuController::new(p.clone(), p, false)));
        }
        subs
    }

    fn root(&self) -> PathBuf {
        // Only used by cgroups-rs for v2 operations; the directory holding the mounts is the
        // closest thing v1 has to a root.
        self.mounts
            .values()
            .next()
            .map(|p| p.parent().unwrap_or(p).to_path_buf())
            .unwrap_or_default()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), parent_of(path))
    }

    fn v2(&self) -> bool {
        false
    }
}

/// The unified hierarchy at `root`, with the controllers its cgroup.controllers lists.
#[derive(Debug, Clone)]
pub(crate) struct FixedV2 {
    root: PathBuf,
    controllers: Vec<String>,
}

impl FixedV2 {
    pub(crate) fn new(root: &Path, controllers: &[String]) -> Self {
        FixedV2 {
            root: root.to_path_buf(),
            controllers: controllers.to_vec(),
        }
    }
}

impl Hierarchy for FixedV2 {
    fn subsystems(&self) -> Vec<Subsystem> {
        let root = || self.root.clone();
        let mut subs = Vec::new();
        for c in &self.controllers {
            match c.as_str() {
                "cpu" => subs.push(Subsystem::Cpu(CpuController::new(root(), root(), true))),
                "memory" => subs.push(Subsystem::Mem(MemController::new(root(), root(), true))),
                "pids" => subs.push(Subsystem::Pid(PidController::new(root(), root(), true))),
                _ => {}
            }
        }
        // As in cgroups-rs's V2: the freezer is core v2 functionality, always present, so every
        // cgroup has at least one subsystem (which is what creates its directory).
        subs.push(Subsystem::Freezer(FreezerController::new(
            root(),
            root(),
            true,
        )));
        subs
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), parent_of(path))
    }

    fn v2(&self) -> bool {
        true
    }
}

/// The parent of a relative cgroup path; the root ("") for a top-level path or the root itself.
fn parent_of(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_control_group_never_panics() {
        let v2 = FixedV2::new(Path::new("/nonexistent"), &["memory".to_owned()]);
        for path in ["", "/", "a", "a/b"] {
            let parent = v2.parent_control_group(path);
            assert!(parent.v2());
        }
        assert_eq!(v2.parent_control_group("a/b").path(), "a");
        assert_eq!(v2.parent_control_group("a").path(), "");
        assert_eq!(v2.parent_control_group("").path(), "");

        let v1 = FixedV1::new(&BTreeMap::from([(
            "memory".to_owned(),
            PathBuf::from("/nonexistent/memory"),
        )]));
        assert_eq!(v1.parent_control_group("a/b").path(), "a");
        assert_eq!(v1.parent_control_group("/").path(), "");
        assert_eq!(v1.root(), Path::new("/nonexistent"));
    }

    #[test]
    fn v1_keeps_only_the_task_controllers() {
        let mounts = BTreeMap::from([
            ("cpu".to_owned(), PathBuf::from("/cg/cpu,cpuacct")),
            ("cpuacct".to_owned(), PathBuf::from("/cg/cpu,cpuacct")),
            ("devices".to_owned(), PathBuf::from("/cg/devices")),
            ("name=systemd".to_owned(), PathBuf::from("/cg/systemd")),
        ]);
        let names: Vec<String> = FixedV1::new(&mounts)
            .subsystems()
            .iter()
            .map(Subsystem::controller_name)
            .collect();
        assert_eq!(names, ["cpuacct", "cpu"]);
    }

    #[test]
    fn v2_offers_available_controllers_and_the_freezer() {
        let root = Path::new("/nonexistent");
        let all = ["cpuset", "cpu", "io", "memory", "pids"].map(String::from);
        let names: Vec<String> = FixedV2::new(root, &all)
            .subsystems()
            .iter()
            .map(Subsystem::controller_name)
            .collect();
        assert_eq!(names, ["cpu", "memory", "pids", "freezer"]);
    }
}

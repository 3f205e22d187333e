//! The cgroup of a task's namespace holder (`/<parent>/<task-id>/berth.ns-holder`): a leaf
//! beside the containers' cgroups, so the holder is counted in the task's limits, outlives any
//! restart of the agent (it is in none of the agent's cgroups), and is found again from the
//! task ID alone.

use std::io;
use std::path::PathBuf;

use super::error::CgroupError;
use super::layout::CgroupLayout;
use super::manager::{Cgroups, inherit_cpuset, read_cgroup_file_or_empty};

/// The holder's cgroup, under the task's. A container name never has a '.' (ECS's rule is
/// `[A-Za-z0-9_-]`), so no container's cgroup can be this one.
pub(crate) const HOLDER_CGROUP: &str = "berth.ns-holder";

impl Cgroups {
    /// `<parent>/<task-id>/berth.ns-holder`, relative to each hierarchy's root.
    fn holder_rel(&self, task_id: &str) -> Result<String, CgroupError> {
        Ok(format!("{}/{HOLDER_CGROUP}", self.task_rel(task_id)?))
    }

    /// Creates the holder's cgroup under the task cgroup in every hierarchy that has the
    /// task's (on v1, the controllers Berth manages), with the cpuset of its parent, and
    /// returns the `cgroup.procs` files the holder moves itself into. Idempotent.
    pub(crate) fn create_holder(&self, task_id: &str) -> Result<Vec<PathBuf>, CgroupError> {
        let task = self.task_rel(task_id)?;
        let rel = self.holder_rel(task_id)?;
        let mut procs = Vec::new();
        for root in self.layout().hierarchy_roots() {
            if !root.join(&task).is_dir() {
                continue;
            }
            let dir = root.join(&rel);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::Create {
                        task_id: task_id.to_owned(),
                        path: format!("/{rel}"),
                        source: Box::new(source),
                    });
                }
            }
            procs.push(dir.join("cgroup.procs"));
        }
        if procs.is_empty() {
            return Err(CgroupError::Create {
                task_id: task_id.to_owned(),
                path: format!("/{rel}"),
                source: Box::new(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the task cgroup /{task} is in no hierarchy"),
                )),
            });
        }
        if let CgroupLayout::V1 { mounts } = self.layout()
            && let Some(cpuset) = mounts.get("cpuset")
            && cpuset.join(&task).is_dir()
        {
            inherit_cpuset(cpuset, &rel)?;
        }
        Ok(procs)
    }

    /// The processes in the holder's cgroup (in any hierarchy): the holder, when it runs.
    pub(crate) fn holder_pids(&self, task_id: &str) -> Result<Vec<u32>, CgroupError> {
        let rel = self.holder_rel(task_id)?;
        let mut pids = Vec::new();
        for root in self.layout().hierarchy_roots() {
            let file = root.join(&rel).join("cgroup.procs");
            let text = read_cgroup_file_or_empty(&file)?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let pid = line.parse().map_err(|_| CgroupError::Io {
                    op: "parse",
                    path: file.clone(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{line:?} is not a process ID"),
                    ),
                })?;
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        Ok(pids)
    }

    /// Removes the holder's cgroup from every hierarchy (its process gone); a missing one is
    /// success.
    pub(crate) fn remove_holder(&self, task_id: &str) -> Result<(), CgroupError> {
        let rel = self.holder_rel(task_id)?;
        for root in self.layout().hierarchy_roots() {
            super::remove::remove_cgroup_tree(&root.join(&rel))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn v1(root: &std::path::Path) -> Cgroups {
        let mut mounts = BTreeMap::new();
        for c in ["cpuset", "memory", "pids", "devices"] {
            mounts.insert(c.to_owned(), root.join(c));
        }
        let cpuset = root.join("cpuset");
        std::fs::create_dir_all(cpuset.join("berth/t1")).expect("mkdir");
        std::fs::write(cpuset.join("cpuset.cpus"), "0-1\n").expect("write");
        std::fs::write(cpuset.join("cpuset.mems"), "0\n").expect("write");
        for c in ["memory", "pids"] {
            std::fs::create_dir_all(root.join(c).join("berth/t1")).expect("mkdir");
        }
        Cgroups::new(CgroupLayout::V1 { mounts }, "berth").expect("cgroups")
    }

    #[test]
    fn holder_cgroup_in_every_hierarchy_with_its_cpuset_found_and_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = v1(tmp.path());
        let procs = cgroups.create_holder("t1").expect("created");
        let want: Vec<PathBuf> = ["cpuset", "memory", "pids"]
            .iter()
            .map(|c| {
                tmp.path()
                    .join(c)
                    .join("berth/t1/berth.ns-holder/cgroup.procs")
            })
            .collect();
        // Not in a hierarchy without the task's cgroup (devices here).
        assert_eq!(procs, want);
        assert!(!tmp.path().join("devices/berth").exists());
        let holder = tmp.path().join("cpuset/berth/t1/berth.ns-holder");
        assert_eq!(
            std::fs::read_to_string(holder.join("cpuset.cpus")).expect("cpus"),
            "0-1"
        );
        // Idempotent.
        assert_eq!(cgroups.create_holder("t1").expect("again"), want);

        assert_eq!(
            cgroups.holder_pids("t1").expect("none yet"),
            Vec::<u32>::new()
        );
        std::fs::write(&want[0], "4242\n").expect("write");
        std::fs::write(&want[1], "4242\n").expect("write");
        assert_eq!(cgroups.holder_pids("t1").expect("pids"), vec![4242]);
        std::fs::write(&want[2], "x\n").expect("write");
        assert!(cgroups.holder_pids("t1").is_err(), "garbage is an error");

        for file in &want {
            std::fs::remove_file(file).expect("rm");
        }
        std::fs::remove_file(holder.join("cpuset.cpus")).expect("rm");
        std::fs::remove_file(holder.join("cpuset.mems")).expect("rm");
        cgroups.remove_holder("t1").expect("removed");
        assert!(!holder.exists());
        assert!(
            tmp.path().join("cpuset/berth/t1").is_dir(),
            "the task's stays"
        );
        cgroups.remove_holder("t1").expect("missing is fine");
        assert!(cgroups.create_holder("../x").is_err());
        let err = cgroups.create_holder("t2").expect_err("no task cgroup");
        assert_eq!(
            err.to_string(),
            "cannot create cgroup /berth/t2/berth.ns-holder for task t2"
        );
    }
}

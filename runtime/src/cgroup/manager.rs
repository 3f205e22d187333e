//! `Cgroups`: creates, limits, inspects and removes the per-task parent cgroups.

use std::io;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, Hierarchy};

use crate::model::{SwapSupport, TaskLimits};

use super::error::CgroupError;
use super::hierarchy::{FixedV1, FixedV2, V2_TASK_CONTROLLERS};
use super::ids::validate_id;
use super::layout::{CgroupLayout, CgroupVersion};
use super::limits::{CFS_PERIOD_US, cfs_quota_us, clamp_shares, mib_to_bytes, shares_to_weight};
use super::oom::{V1_OOM_FILE, V2_OOM_FILE, parse_v1_oom_control, parse_v2_memory_events};
use super::remove::remove_cgroup_tree;

/// Manages the task cgroups `/<parent>/<task-id>` in every hierarchy of a layout; runc creates
/// the containers' cgroups `/<parent>/<task-id>/<container>` under them from the OCI spec.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    layout: CgroupLayout,
    /// Relative path of the parent of all task cgroups, without leading or trailing '/'.
    parent: String,
}

/// What create_task writes, computed (and range-checked) before anything is touched.
struct Plan {
    quota_us: Option<i64>,
    /// cgroup v1 shares (converted to a weight on v2).
    shares: Option<u64>,
    memory_bytes: Option<i64>,
}

impl Cgroups {
    /// A manager for `layout` whose task cgroups live under `parent` ("berth", or nested like
    /// "system/berth"); every segment of `parent` must be a valid name.
    pub(crate) fn new(layout: CgroupLayout, parent: &str) -> Result<Self, CgroupError> {
        let trimmed = parent.trim_matches('/');
        for segment in trimmed.split('/') {
            validate_id("cgroup parent", segment)?;
        }
        // cgroups-rs unwraps `to_str()` on controller paths; refuse non-UTF-8 roots up front.
        for root in layout.hierarchy_roots() {
            if root.to_str().is_none() {
                return Err(CgroupError::NonUtf8MountPoint {
                    path: root.to_path_buf(),
                });
            }
        }
        Ok(Cgroups {
            layout,
            parent: trimmed.to_owned(),
        })
    }

    pub(crate) fn version(&self) -> CgroupVersion {
        self.layout.version()
    }

    /// `/<parent>/<task-id>`.
    pub(crate) fn task_path(&self, task_id: &str) -> Result<String, CgroupError> {
        Ok(format!("/{}", self.task_rel(task_id)?))
    }

    /// `/<parent>/<task-id>/<container>`: the OCI spec's `cgroupsPath`, from which runc creates
    /// the container cgroup in every v1 hierarchy or in the v2 tree.
    pub(crate) fn container_path(
        &self,
        task_id: &str,
        container: &str,
    ) -> Result<String, CgroupError> {
        validate_id("container name", container)?;
        Ok(format!("/{}/{container}", self.task_rel(task_id)?))
    }

    /// Whether the task cgroup exists in any hierarchy. An invalid task ID never exists.
    pub(crate) fn task_exists(&self, task_id: &str) -> bool {
        let Ok(rel) = self.task_rel(task_id) else {
            return false;
        };
        self.layout
            .hierarchy_roots()
            .iter()
            .any(|root| root.join(&rel).is_dir())
    }

    /// Creates the task cgroup and applies the task limits: `cpu_units` as a CFS quota over a
    /// 100 ms period (else `cpu_shares` as its weight), `memory_mib` as the hard memory limit.
    /// A limit not given is not written
    /// (inherited from the parent). Already existing cgroups are reused and their limits
    /// rewritten. On failure a cgroup this call created is removed again.
    pub(crate) fn create_task(
        &self,
        task_id: &str,
        limits: &TaskLimits,
    ) -> Result<(), CgroupError> {
        let rel = self.task_rel(task_id)?;
        let plan = plan(task_id, limits)?;
        let existed = self.task_exists(task_id);
        let result = match &self.layout {
            CgroupLayout::V1 { mounts } => create_v1(task_id, &rel, mounts, limits, &plan),
            CgroupLayout::V2 { root } => create_v2(task_id, &rel, root, limits, &plan),
        };
        match &result {
            Ok(()) => tracing::debug!(
                task.id = task_id,
                cgroup.version = %self.version(),
                cpu_units = ?limits.cpu_units,
                cpu_shares = ?limits.cpu_shares,
                memory_mib = ?limits.memory_mib,
                "created task cgroup"
            ),
            Err(error) if !existed => {
                if let Err(cleanup) = self.remove_task(task_id) {
                    tracing::warn!(
                        task.id = task_id,
                        %error,
                        cleanup_error = %cleanup,
                        "cannot remove the task cgroup after a failed creation"
                    );
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Removes the task cgroup from every hierarchy, after runc removed the containers' cgroups.
    /// Leftover empty child cgroups are removed first; a missing cgroup is success; a busy one is
    /// retried for about 150 ms. Every hierarchy is tried; the first failure is returned.
    pub(crate) fn remove_task(&self, task_id: &str) -> Result<(), CgroupError> {
        let rel = self.task_rel(task_id)?;
        let mut first_error = None;
        for root in self.layout.hierarchy_roots() {
            if let Err(error) = remove_cgroup_tree(&root.join(&rel)) {
                tracing::warn!(task.id = task_id, %error, "cannot remove task cgroup");
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            None => {
                tracing::debug!(task.id = task_id, "removed task cgroup");
                Ok(())
            }
            Some(error) => Err(error),
        }
    }

    /// How many processes the kernel's OOM killer killed in the cgroup at `rel_path` (as returned
    /// by `task_path` or `container_path`) and its descendants.
    pub(crate) fn oom_kills(&self, rel_path: &str) -> Result<u64, CgroupError> {
        let rel = checked_rel_path(rel_path)?;
        let file = match &self.layout {
            CgroupLayout::V1 { mounts } => mounts
                .get("memory")
                .ok_or_else(|| unavailable(rel_path, "memory"))?
                .join(rel)
                .join(V1_OOM_FILE),
            CgroupLayout::V2 { root } => root.join(rel).join(V2_OOM_FILE),
        };
        let text = std::fs::read_to_string(&file).map_err(|source| CgroupError::Io {
            op: "read",
            path: file,
            source,
        })?;
        match self.version() {
            CgroupVersion::V1 => parse_v1_oom_control(&text),
            CgroupVersion::V2 => parse_v2_memory_events(&text),
        }
    }

    /// What the containers of a task can limit of swap, read from the interface files of its
    /// cgroup (or, before that exists, of the nearest existing ancestor; on v1 the hierarchy
    /// root has them too): on v1, `memory.memsw.limit_in_bytes` exists only when the kernel
    /// accounts swap (`swapaccount=1`), and `memory.swappiness` whenever the memory controller
    /// is there; on v2, `memory.swap.max` exists when the kernel accounts swap, and there is no
    /// swappiness. A layout without a memory controller can limit neither.
    pub(crate) fn swap_support(&self, task_id: &str) -> Result<SwapSupport, CgroupError> {
        let rel = self.task_rel(task_id)?;
        let none = SwapSupport {
            limit: false,
            swappiness: false,
        };
        Ok(match &self.layout {
            CgroupLayout::V1 { mounts } => {
                let Some(root) = mounts.get("memory") else {
                    return Ok(none);
                };
                let Some(dir) = nearest_existing(root, &rel, true) else {
                    return Ok(none);
                };
                SwapSupport {
                    limit: dir.join(V1_SWAP_LIMIT_FILE).is_file(),
                    swappiness: dir.join(V1_SWAPPINESS_FILE).is_file(),
                }
            }
            CgroupLayout::V2 { root } => SwapSupport {
                limit: nearest_existing(root, &rel, false)
                    .is_some_and(|dir| dir.join(V2_SWAP_LIMIT_FILE).is_file()),
                swappiness: false,
            },
        })
    }

    /// The hierarchies this manager works in.
    pub(crate) fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The parent of all task cgroups, relative to each hierarchy's root.
    pub(crate) fn parent(&self) -> &str {
        &self.parent
    }

    /// `<parent>/<task-id>` after checking the task ID.
    pub(crate) fn task_rel(&self, task_id: &str) -> Result<String, CgroupError> {
        validate_id("task id", task_id)?;
        Ok(format!("{}/{task_id}", self.parent))
    }
}

/// cgroup v1's memory+swap limit, present only when the kernel accounts swap.
const V1_SWAP_LIMIT_FILE: &str = "memory.memsw.limit_in_bytes";
/// cgroup v1's per-cgroup swappiness.
const V1_SWAPPINESS_FILE: &str = "memory.swappiness";
/// cgroup v2's swap limit, in non-root cgroups of a kernel that accounts swap.
const V2_SWAP_LIMIT_FILE: &str = "memory.swap.max";

/// The deepest existing directory among `root/rel` and its ancestors below `root` (and `root`
/// itself when `with_root`).
fn nearest_existing(root: &Path, rel: &str, with_root: bool) -> Option<PathBuf> {
    let mut dir = root.join(rel);
    loop {
        if dir.is_dir() && (with_root || dir != root) {
            return Some(dir);
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return None;
        }
    }
}

fn create_v1(
    task_id: &str,
    rel: &str,
    mounts: &std::collections::BTreeMap<String, PathBuf>,
    limits: &TaskLimits,
    plan: &Plan,
) -> Result<(), CgroupError> {
    let path = format!("/{rel}");
    require(
        mounts.contains_key("cpu") || (limits.cpu_units.is_none() && limits.cpu_shares.is_none()),
        &path,
        "cpu",
    )?;
    require(
        mounts.contains_key("memory") || limits.memory_mib.is_none(),
        &path,
        "memory",
    )?;

    // Creates the directories in the memory, pids, cpuset, cpuacct and cpu hierarchies; on a
    // real cpuset hierarchy cgroups-rs also copies cpuset.cpus/mems down from the parent.
    let cgroup =
        Cgroup::new(Box::new(FixedV1::new(mounts)), rel).map_err(|source| CgroupError::Create {
            task_id: task_id.to_owned(),
            path: path.clone(),
            source: Box::new(source),
        })?;
    // cgroups-rs only logs a failed cpuset copy; an empty cpuset.cpus makes runc fail to put
    // anything under this cgroup, so check (and on failure, do) it here.
    if let Some(cpuset) = mounts.get("cpuset") {
        inherit_cpuset(cpuset, rel)?;
    }
    apply_limits(&cgroup, task_id, &path, plan)
}

fn create_v2(
    task_id: &str,
    rel: &str,
    root: &Path,
    limits: &TaskLimits,
    plan: &Plan,
) -> Result<(), CgroupError> {
    let path = format!("/{rel}");
    let available = read_cgroup_file(&root.join("cgroup.controllers"))?;
    let wanted: Vec<String> = V2_TASK_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| (*c).to_owned())
        .collect();
    let has = |c: &str| wanted.iter().any(|w| w == c);
    require(
        has("cpu") || (limits.cpu_units.is_none() && limits.cpu_shares.is_none()),
        &path,
        "cpu",
    )?;
    require(
        has("memory") || limits.memory_mib.is_none(),
        &path,
        "memory",
    )?;

    // cgroups-rs's Cgroup::create on v2 reads the controller list from the hard-wired
    // /sys/fs/cgroup/cgroup.controllers and blindly writes "+<each>" into every ancestor's
    // subtree_control, ignoring errors. So: create each level's directory through the
    // cgroups-rs controllers of our own hierarchy, and enable the controllers ourselves, from
    // the root down to the task cgroup (whose children are the containers).
    let hierarchy = FixedV2::new(root, &wanted);
    enable_controllers(root, &wanted)?;
    let mut level = String::new();
    for segment in rel.split('/') {
        if !level.is_empty() {
            level.push('/');
        }
        level.push_str(segment);
        let cgroup = Cgroup::load(hierarchy.box_clone(), level.as_str());
        for subsystem in cgroup.subsystems() {
            subsystem
                .to_controller()
                .create()
                .map_err(|source| CgroupError::Create {
                    task_id: task_id.to_owned(),
                    path: format!("/{level}"),
                    source: Box::new(source),
                })?;
        }
        enable_controllers(&root.join(&level), &wanted)?;
    }
    let cgroup = Cgroup::load(hierarchy.box_clone(), rel);
    apply_limits(&cgroup, task_id, &path, plan)
}

impl FixedV2 {
    fn box_clone(&self) -> Box<dyn Hierarchy> {
        Box::new(self.clone())
    }
}

/// Converts the task limits to kernel units, refusing what does not fit.
fn plan(task_id: &str, limits: &TaskLimits) -> Result<Plan, CgroupError> {
    let quota_us = limits
        .cpu_units
        .map(|units| {
            let quota = cfs_quota_us(units);
            i64::try_from(quota).map_err(|_| CgroupError::LimitTooLarge {
                task_id: task_id.to_owned(),
                what: "cpu quota (µs)",
                value: quota,
            })
        })
        .transpose()?;
    let memory_bytes = limits
        .memory_mib
        .map(|mib| {
            mib_to_bytes(mib).ok_or_else(|| CgroupError::LimitTooLarge {
                task_id: task_id.to_owned(),
                what: "memory (MiB)",
                value: mib,
            })
        })
        .transpose()?;
    Ok(Plan {
        quota_us,
        // A quota caps the task; shares only weigh it against others, without a cap.
        shares: limits
            .cpu_shares
            .filter(|_| quota_us.is_none())
            .map(clamp_shares),
        memory_bytes,
    })
}

/// Writes the planned limits through the cgroups-rs controllers' setters. (`Cgroup::apply`
/// would swallow memory errors: its memory controller ignores failed writes.)
fn apply_limits(
    cgroup: &Cgroup,
    task_id: &str,
    path: &str,
    plan: &Plan,
) -> Result<(), CgroupError> {
    let set_limit = |file: &'static str| {
        move |source| CgroupError::SetLimit {
            task_id: task_id.to_owned(),
            path: path.to_owned(),
            file,
            source: Box::new(source),
        }
    };
    if let Some(bytes) = plan.memory_bytes {
        let memory = cgroup
            .controller_of::<MemController>()
            .ok_or_else(|| unavailable(path, "memory"))?;
        let file = if cgroup.v2() {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        memory.set_limit(bytes).map_err(set_limit(file))?;
    }
    if let Some(quota) = plan.quota_us {
        let cpu = cgroup
            .controller_of::<CpuController>()
            .ok_or_else(|| unavailable(path, "cpu"))?;
        if cgroup.v2() {
            cpu.set_cfs_quota_and_period(Some(quota), Some(CFS_PERIOD_US))
                .map_err(set_limit("cpu.max"))?;
        } else {
            cpu.set_cfs_period(CFS_PERIOD_US)
                .map_err(set_limit("cpu.cfs_period_us"))?;
            cpu.set_cfs_quota(quota)
                .map_err(set_limit("cpu.cfs_quota_us"))?;
        }
    }
    if let Some(shares) = plan.shares {
        let cpu = cgroup
            .controller_of::<CpuController>()
            .ok_or_else(|| unavailable(path, "cpu"))?;
        // cgroups-rs writes the value as given: cpu.weight on v2 wants it converted.
        if cgroup.v2() {
            cpu.set_shares(shares_to_weight(shares))
                .map_err(set_limit("cpu.weight"))?;
        } else {
            cpu.set_shares(shares).map_err(set_limit("cpu.shares"))?;
        }
    }
    Ok(())
}

/// Copies cpuset.cpus and cpuset.mems into every level of `rel` under the cpuset `mount` whose
/// value is empty (a new v1 cpuset cgroup starts empty and accepts no task until set).
pub(super) fn inherit_cpuset(mount: &Path, rel: &str) -> Result<(), CgroupError> {
    let mut parent = mount.to_path_buf();
    for segment in rel.split('/') {
        let child = parent.join(segment);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if !read_cgroup_file_or_empty(&child.join(file))?.is_empty() {
                continue;
            }
            let inherited = read_cgroup_file_or_empty(&parent.join(file))?;
            if inherited.is_empty() {
                return Err(CgroupError::CpusetEmpty {
                    path: child.clone(),
                    file,
                });
            }
            write_cgroup_file(&child.join(file), &inherited)?;
        }
        parent = child;
    }
    Ok(())
}

/// Enables `wanted` controllers in `dir`'s cgroup.subtree_control, writing only the missing
/// ones in one write (`+cpu +memory +pids`), so re-running is a no-op.
fn enable_controllers(dir: &Path, wanted: &[String]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let current = read_cgroup_file_or_empty(&file)?;
    let enabled: Vec<&str> = current
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !enabled.contains(&c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_cgroup_file(&file, &missing.join(" "))
}

fn read_cgroup_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })
}

/// A missing file reads as empty: the kernel always has it, a fake tree may not yet.
pub(super) fn read_cgroup_file_or_empty(path: &Path) -> Result<String, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_cgroup_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn require(ok: bool, path: &str, controller: &'static str) -> Result<(), CgroupError> {
    if ok {
        Ok(())
    } else {
        Err(unavailable(path, controller))
    }
}

fn unavailable(path: &str, controller: &'static str) -> CgroupError {
    CgroupError::ControllerUnavailable {
        path: path.to_owned(),
        controller,
    }
}

/// Checks that `path` (`/berth/t1/app`) is made only of valid names, so it cannot leave the
/// hierarchy, and returns it without the leading '/'.
fn checked_rel_path(path: &str) -> Result<&str, CgroupError> {
    let rel = path.strip_prefix('/').unwrap_or(path);
    let valid = !rel.is_empty() && rel.split('/').all(|s| validate_id("", s).is_ok());
    if valid {
        Ok(rel)
    } else {
        Err(CgroupError::InvalidPath {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;

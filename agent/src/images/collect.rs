//! The image collector's decision, pure: given every image with its size, its last use and
//! whether a task needs it, the disk use of containerd's root and the policy, which images go
//! and why, in the order they should go. The rules are the ECS agent's and the kubelet's:
//!
//! - an image a task needs (running, pending or just assigned) never goes, nor one used more
//!   recently than `minimum_age`;
//! - past `high_percent` of the disk, the least recently used go first until the sizes removed
//!   bring the disk under `low_percent` (the newest of a repository included: a full disk is
//!   worse than a pull);
//! - then the unused ones, oldest use first, but for each repository's `keep_newest` most
//!   recently used;
//! - at most `max_removals` in all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// One image as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub size: u64,
    /// When a task last used it (or, never used by a task, when it was last pulled).
    pub last_used: SystemTime,
    /// A task the engine holds needs it.
    pub in_use: bool,
}

/// The collector's rules (the agent's `image_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub minimum_age: Duration,
    pub keep_newest: u32,
    pub max_removals: u32,
    pub high_percent: u8,
    pub low_percent: u8,
}

/// The use of containerd's root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub used: u64,
    pub total: u64,
}

impl Disk {
    /// Whole percent used, rounded up (so 85.2 % counts as past 85).
    pub fn percent(self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        (u128::from(self.used) * 100).div_ceil(u128::from(self.total)) as u64
    }

    /// Bytes to free to be under `percent` of the disk.
    fn over(self, percent: u8) -> u64 {
        let limit = u128::from(self.total) * u128::from(percent) / 100;
        u64::try_from(u128::from(self.used).saturating_sub(limit)).unwrap_or(u64::MAX)
    }
}

/// Why an image goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The disk was past `high_percent` (its use then, in percent).
    DiskPressure { percent: u64 },
    /// Unused this long, and not among the newest of its repository.
    Unused { for_: Duration },
}

impl Reason {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::DiskPressure { .. } => "disk_pressure",
            Reason::Unused { .. } => "unused",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::DiskPressure { percent } => write!(
                f,
                "containerd's root filesystem is {percent}% full: least recently used first"
            ),
            Reason::Unused { for_ } => write!(
                f,
                "unused for {}, not among the newest of its repository",
                humantime::format_duration(Duration::from_secs(for_.as_secs()))
            ),
        }
    }
}

/// One image to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
    pub size: u64,
    pub reason: Reason,
}

/// The repository of a reference: without its digest and tag (`host:5000/app:1` → `host:5000/app`).
pub fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// Which images go, in order (see the module's rules).
pub fn decide(
    images: &[Candidate],
    policy: Policy,
    disk: Option<Disk>,
    now: SystemTime,
) -> Vec<Removal> {
    let unused_for = |c: &Candidate| now.duration_since(c.last_used).unwrap_or(Duration::ZERO);
    let mut eligible: Vec<&Candidate> = images
        .iter()
        .filter(|c| !c.in_use && unused_for(c) >= policy.minimum_age)
        .collect();
    // Oldest use first; the name breaks ties, so the order is the same on every pass.
    eligible.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.name.cmp(&b.name)));
    let max = policy.max_removals as usize;
    let mut out: Vec<Removal> = Vec::new();
    let mut chosen: HashSet<&str> = HashSet::new();

    if let Some(disk) = disk.filter(|d| d.percent() > u64::from(policy.high_percent)) {
        let need = disk.over(policy.low_percent);
        let mut freed = 0u64;
        for c in &eligible {
            if freed >= need || out.len() >= max {
                break;
            }
            freed = freed.saturating_add(c.size);
            chosen.insert(&c.name);
            out.push(Removal {
                name: c.name.clone(),
                size: c.size,
                reason: Reason::DiskPressure {
                    percent: disk.percent(),
                },
            });
        }
    }

    // Each repository's most recently used images, in use or not, are kept.
    let mut by_repo: HashMap<&str, Vec<&Candidate>> = HashMap::new();
    for c in images {
        by_repo.entry(repository(&c.name)).or_default().push(c);
    }
    let mut newest: HashSet<&str> = HashSet::new();
    for list in by_repo.values_mut() {
        list.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.name.cmp(&b.name)));
        newest.extend(
            list.iter()
                .take(policy.keep_newest as usize)
                .map(|c| c.name.as_str()),
        );
    }
    for c in eligible {
        if out.len() >= max {
            break;
        }
        if chosen.contains(c.name.as_str()) || newest.contains(c.name.as_str()) {
            continue;
        }
        out.push(Removal {
            name: c.name.clone(),
            size: c.size,
            reason: Reason::Unused {
                for_: unused_for(c),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests;

//! Why a task could not be placed: each check that excluded instances with how many it
//! excluded, and the closest match in ECS's wording ("The closest matching container-instance
//! … has insufficient memory available").

use std::fmt;

use super::Candidate;

/// A check an instance must pass to take a task, in the order they are made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    /// The task's runtimePlatform (CPU architecture, operating system).
    Platform,
    /// A `memberOf` constraint, with its expression.
    MemberOf(String),
    /// `distinctInstance`: a task of the group is already there.
    DistinctInstance,
    /// One of the task's fixed host ports is taken.
    Ports,
    /// No awsvpc address is left.
    AwsvpcAddresses,
    Cpu,
    Memory,
}

impl Check {
    /// How far an instance that fails this check got: later checks are closer matches.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Self::Platform => 0,
            Self::MemberOf(_) => 1,
            Self::DistinctInstance => 2,
            Self::Ports => 3,
            Self::AwsvpcAddresses => 4,
            Self::Cpu => 5,
            Self::Memory => 6,
        }
    }

    /// What an instance that fails it lacks, after "The closest matching container-instance ID".
    fn lacks(&self) -> String {
        match self {
            Self::Platform => "does not have the task's runtimePlatform".to_owned(),
            Self::MemberOf(e) => format!("does not match memberOf({e})"),
            Self::DistinctInstance => {
                "already runs a task of the group (distinctInstance)".to_owned()
            }
            Self::Ports => "is already using a port required by your task".to_owned(),
            Self::AwsvpcAddresses => "has no awsvpc address left".to_owned(),
            Self::Cpu => "has insufficient CPU units available".to_owned(),
            Self::Memory => "has insufficient memory available".to_owned(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform => f.write_str("runtimePlatform"),
            Self::MemberOf(e) => write!(f, "memberOf({e})"),
            Self::DistinctInstance => f.write_str("distinctInstance"),
            Self::Ports => f.write_str("host ports taken"),
            Self::AwsvpcAddresses => f.write_str("no awsvpc address left"),
            Self::Cpu => f.write_str("insufficient CPU"),
            Self::Memory => f.write_str("insufficient memory"),
        }
    }
}

/// How many instances one check excluded (each instance counts against the first it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub check: Check,
    pub instances: usize,
}

/// Why the tasks of one request were not all placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// How many tasks were placed before the one refused (the caller starts none of them).
    pub placed: u32,
    pub requested: u32,
    /// How many instances were considered.
    pub candidates: usize,
    /// The checks that excluded instances, in the order checks are made.
    pub exclusions: Vec<Exclusion>,
    /// The instance that came closest, with the check it failed.
    pub closest: Option<(String, Check)>,
    /// How close the closest instance came: its check's rank, then its free memory and CPU.
    closest_score: (u8, u64, u64),
}

impl Refusal {
    pub(super) fn new(candidates: usize) -> Self {
        Self {
            placed: 0,
            requested: 0,
            candidates,
            exclusions: Vec::new(),
            closest: None,
            closest_score: (0, 0, 0),
        }
    }

    /// Counts `candidate` against `check`, and keeps it when it is the closest yet.
    pub(super) fn exclude(&mut self, candidate: &Candidate, check: Check) {
        match self.exclusions.iter_mut().find(|e| e.check == check) {
            Some(e) => e.instances += 1,
            None => {
                self.exclusions.push(Exclusion {
                    check: check.clone(),
                    instances: 1,
                });
                self.exclusions.sort_by_key(|e| e.check.rank());
            }
        }
        // The later the check an instance failed, the closer it came; then more memory, more CPU.
        let score = (check.rank(), candidate.free.memory_mib, candidate.free.cpu);
        if self.closest.is_none() || score > self.closest_score {
            self.closest_score = score;
            self.closest = Some((candidate.instance_id.clone(), check));
        }
    }

    /// How many instances `check` excluded.
    pub fn excluded_by(&self, check: &Check) -> usize {
        self.exclusions
            .iter()
            .find(|e| e.check == *check)
            .map_or(0, |e| e.instances)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.candidates == 0 {
            return f.write_str(
                "no container instance met all of its requirements: there is no candidate instance",
            );
        }
        write!(
            f,
            "no container instance met all of its requirements: of {} instance{}, ",
            self.candidates,
            if self.candidates == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.exclusions.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} excluded {}", e.check, e.instances)?;
        }
        if let Some((id, check)) = &self.closest {
            write!(
                f,
                "; the closest matching container-instance {id} {}",
                check.lacks()
            )?;
        }
        if self.placed > 0 {
            write!(
                f,
                " ({} of the {} tasks fitted before; none was started)",
                self.placed, self.requested
            )?;
        }
        Ok(())
    }
}

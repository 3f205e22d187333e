//! Images on the host beyond a single pull: the pull behaviours (`pull.rs`: which pull a task's
//! start does and when the cache serves it), the table of the images tasks need with their last
//! uses (`usage.rs`, shared by the task engine and the collector), and the image collector
//! (`collect.rs` decides, `collector.rs` runs the periodic pass and removes).

mod collect;
mod collector;
mod pull;
mod usage;

pub use collect::{Candidate, Disk, Policy, Reason, Removal, decide, repository};
pub(crate) use collector::{Collector, RuntimeImages};
pub(crate) use pull::{Plan, for_task, plan};
pub(crate) use usage::ImageUse;

//! Images on the host beyond a single pull: the pull behaviours (`pull.rs`: which pull a task's
//! start does and when the cache serves it), the table of the images tasks need with their last
//! uses (`usage.rs`, shared by the task engine and the collector), and the image collector
//! (`collect.rs` decides, `collector.rs` runs the periodic pass and removes), and the progress
//! of the pulls running now, sent to the scheduler (`progress.rs`). The scheduler's image
//! requests (list, collect now) are answered on the session by `requests.rs`.

mod collect;
mod collector;
mod progress;
mod pull;
mod requests;
mod usage;

pub use collect::{Candidate, Disk, Policy, Reason, Removal, decide, repository};
pub(crate) use collector::{Collector, RuntimeImages, test_gate};
pub(crate) use progress::{PUBLISH_EVERY, PullBoard, publish as publish_progress};
pub(crate) use pull::{Plan, for_task, plan};
pub(crate) use requests::{ImageDesk, ImageRequests};
pub(crate) use usage::ImageUse;

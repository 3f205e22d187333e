//! What Berth's components must agree on, kept in one place: the scheduler checks a task
//! definition against these rules when it is registered, and the agent's runtime applies the
//! same rules when the task starts, so a definition the scheduler accepts is never refused by
//! the agent for a name one side knows and the other does not.
//!
//! - [`CAPABILITIES`], [`capability`], [`is_all`]: the Linux capabilities a definition may add
//!   or drop, by the names ECS and Docker use; [`DEFAULT_CAPABILITIES`], Docker's default set.
//! - [`IPC_SYSCTLS`], [`sysctl_namespace`]: the kernel parameters a container may set, because
//!   the kernel scopes them to one of its namespaces.
//! - [`parse_duration`]: the grammar of durations in Berth's flags.
//! - [`PullBehavior`]: the image pull behaviours (ECS's names) of the agent's key and of a
//!   task definition's override.
//! - [`stderr_is_journal`]: whether a daemon logs to journald natively (it runs under systemd).
//! - [`to_prometheus_text`]: the `/metrics` text both daemons serve to scrapers that do not
//!   ask for OpenMetrics.
//!
//! The crate depends on no other workspace crate, so every crate may depend on it without
//! breaking the layering (`runtime` still depends on no crate of Berth's but this one).

mod capabilities;
mod duration;
mod exposition;
mod image_pull;
mod journal;
mod sysctl;

pub use capabilities::{CAPABILITIES, DEFAULT_CAPABILITIES, capability, is_all};
pub use duration::{DurationError, parse_duration};
pub use exposition::to_prometheus_text;
pub use image_pull::{PullBehavior, UnknownPullBehavior};
pub use journal::stderr_is_journal;
pub use sysctl::{IPC_SYSCTLS, SysctlNamespace, sysctl_namespace};

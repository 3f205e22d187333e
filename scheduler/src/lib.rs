//! berth-scheduler and berthctl: the reference control plane and its CLI.
//!
//! - `taskdef`: ECS task-definition JSON: parsing with precise errors, validation, conversion
//!   to the proto model. Shared by the scheduler (which validates) and berthctl.
//! - `store`: the scheduler's embedded database (redb) under its data dir, and placement.
//! - `server`: the ControlService and AgentService implementations and sessions; with
//!   `run_with_hooks`, a scriptable peer for tests of the agent.
//! - `cli`: berthctl.
//! - `daemon_cli`: berth-scheduler's flags (the binary and its man page share them).
//! - `trust`: the cluster CA, agent and client identities, tokens and the authorization table.
//! - `placement`: the placement engine, pure: constraints (distinctInstance, memberOf with
//!   ECS's cluster query language), strategies (binpack, spread, random) and refusals that
//!   count what each check excluded. Used by the store's RunTask.
//! - `secrets`: the key that seals task secrets at rest, and the rules for their names and
//!   sizes.
//! - `attachment`: the ENI a task is run with (awsvpc mode): parsing and checks shared by the
//!   scheduler and berthctl.

mod attachment;
pub mod cli;
pub mod daemon_cli;
pub mod placement;
pub mod secrets;
pub mod server;
pub mod store;
pub mod taskdef;
pub mod trust;

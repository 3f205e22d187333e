//! The shared end-to-end harness of Berth's suites: private containerd and registry, an image
//! builder and pusher, fixtures, a misbehaving registry, and a libtest-mimic suite runner.
//!
//! A suite is a `[[test]]` with `harness = false` whose `main` calls [`run_suite`]:
//!
//! ```no_run
//! use std::{process::ExitCode, sync::Arc};
//! use anyhow::ensure;
//! use berth_tests::{World, fixtures, run_suite};
//!
//! fn main() -> ExitCode {
//!     run_suite("example", |world: &Arc<World>| {
//!         vec![world.async_trial("hello_runs", |w| async move {
//!             let img = fixtures::hello(&w.registry().host(), "example/hello", "v1").await?;
//!             let ns = w.unique("example");
//!             w.ctr(&["-n", &ns, "images", "pull", "--plain-http", &img.reference])?;
//!             let out = w.ctr(&["-n", &ns, "run", "--rm", &img.reference, &w.unique("c"), "echo", "hi"])?;
//!             ensure!(out.trim() == "hi", "got {out:?}");
//!             ensure!(w.registry().blob_get_count("example/hello", &img.layer_digests[0])? == 1);
//!             Ok(())
//!         })]
//!     })
//! }
//! ```

mod bad_registry;
pub mod bench;
pub mod berth;
mod containerd;
mod digest;
pub mod fixtures;
pub mod image;
mod ingest;
pub mod moto;
pub mod netlab;
mod prereq;
mod process;
pub mod pulled;
mod push;
mod registry;
mod trace;
mod world;

pub use bad_registry::{
    AUTH_PASSWORD, AUTH_TOKEN, AUTH_USER, BadMode, BadRegistry, OVERSIZE, UNAVAILABLE_ANSWERS,
};
pub use containerd::{ContentSharing, PrivateContainerd};
pub use digest::{chain_id, chain_ids, sha256_digest};
pub use ingest::HeldIngest;
pub use prereq::{Policy, Prereq, bins, which};
pub use process::{log_tail, pid_alive, poll, poll_every, run_with_timeout};
pub use push::{http_client, push_blob, push_image, push_index, put_manifest};
pub use registry::{AccessLogEntry, PrivateRegistry, RegistryOptions, free_port, parse_access_log};
pub use trace::trace_init;
pub use world::{KEEP_ENV, TMPDIR_ENV, World, run_suite};

/// Re-exported so suites need not depend on libtest-mimic directly.
pub use libtest_mimic::{Failed, Trial};

//! berth-scheduler and berthctl: the reference control plane and its CLI.
//!
//! Arrives with the end-to-end issue. Until then the crate is empty on purpose.

//! The gRPC contract between berth-agent and a scheduler (package `berth.v1`).
//!
//! The `.proto` files and their generated code arrive with the end-to-end issue; until then this
//! crate deliberately exports nothing, so no caller can depend on a contract that does not exist.

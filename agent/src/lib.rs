//! berth-agent: the host daemon (configuration, scheduler session, task engine, state store).
//!
//! Arrives with the end-to-end issue; it builds on `berth-runtime`. Until then the crate is empty
//! on purpose: no binary is shipped that would pretend to run tasks.

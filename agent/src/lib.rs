//! berth-agent: the host daemon (configuration, scheduler session, task engine, state store).

pub mod config;

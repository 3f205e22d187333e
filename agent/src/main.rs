//! berth-agent: the host daemon.

fn main() {}

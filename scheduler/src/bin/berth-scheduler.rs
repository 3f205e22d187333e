//! berth-scheduler: the reference control plane.

fn main() {}

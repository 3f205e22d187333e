//! berthctl: the command-line client of the control plane.

fn main() {}

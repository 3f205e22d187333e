//! Task and container cgroups (v1 and v2).

//! The default filter on the host's own ABI alone, made cheap for runc: the names that ABI
//! does not have are left out, and the rest go in descending syscall-number order.
//!
//! Neither changes the filter the kernel gets: libseccomp resolves a name the ABI lacks (a
//! 32-bit name such as `chown32` on x86_64) to a pseudo-syscall that emits no BPF, and it
//! sorts rules by number itself. What they save is runc's work on each container start,
//! which grows with the number of names: runc turns each into a rule of its own, passes them
//! to `runc init` as JSON, resolves them and adds them to libseccomp one by one, and
//! libseccomp keeps its rules in a list sorted by number, so names that arrive in ascending
//! order each walk the whole list.
//!
//! What is left of the filter's cost is runc's and libseccomp's per name (runc 1.1.5 makes each
//! name a rule of its own, in `runc create` and again in `runc init`), about a third of it page
//! faults on memory touched for the first time: a `runc run` with a filter of no rules costs what
//! one without a filter costs, within the noise, and one with this filter about 3 ms of CPU more.
//! Tried and not kept, as they saved nothing measurable or changed what the filter does: the
//! hottest calls first (the kernel's seccomp action cache answers every unconditional allow without
//! running the filter, wherever its rule stands), fewer `personality` rules (one masked comparison
//! for four values), `defaultErrnoRet` ENOSYS (it skips runc's ENOSYS stub, which costs nothing
//! measurable, and changes the errno of refused calls), and `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (runc
//! 1.1.5 refuses every filter flag).
//!
//! Where a start's extra time goes, measured through containerd alone (`ctr run --config` of
//! the same spec with and without this filter, interleaved, each process's CPU read from a
//! cpuacct cgroup of its own): containerd and the shim +0.2 to +1.6 ms of CPU, `runc create` and
//! `runc start` +0.7 to +2.6 ms (the config runc passes `runc init` and its state.json carry
//! every name as a rule of its own), and `runc init` +2 to +3.7 ms in the container's cgroup,
//! which is where the filter is compiled and loaded, and which the CPU of runc and the shim
//! leaves out (that process becomes the container's; only `runc run` reaps it and counts it).
//! The e2e bench's `profile` section prints the same split for Berth's own starts. On a loaded
//! host each of those milliseconds of CPU takes several of wall time, all of it on the start's
//! path. For the same filter crun adds about half the CPU runc adds (`crun run` and `runc run`
//! of one bundle, each with and without the filter, interleaved). Also tried and not kept: the
//! agent converting the default filter once per capability set instead of twice a container
//! (the agent's CPU a start did not move measurably).

use std::str::FromStr;

use oci_spec::runtime::{Arch, LinuxSyscall};
use syscalls::Sysno;

use super::{go_arch, native_arch};

/// Whether a filter for `host_arch` (Go's spelling) that lists `architectures` covers this
/// build's own ABI alone, the one whose syscall table this binary carries.
pub(super) fn is_this_build_alone(host_arch: &str, architectures: &[Arch]) -> bool {
    let this_build = go_arch(std::env::consts::ARCH);
    host_arch == this_build
        && native_arch(this_build).is_some_and(|native| architectures == [native])
}

/// `syscalls` with each rule's names cut to those this build's ABI has, in descending
/// number order; a rule left with no name is dropped.
pub(super) fn native_names_only(syscalls: Vec<LinuxSyscall>) -> Vec<LinuxSyscall> {
    syscalls
        .into_iter()
        .filter_map(|mut syscall| {
            let mut known: Vec<(i32, String)> = syscall
                .names()
                .iter()
                .filter_map(|name| Sysno::from_str(name).ok().map(|s| (s.id(), name.clone())))
                .collect();
            if known.is_empty() {
                return None;
            }
            known.sort_by(|a, b| b.cmp(a));
            syscall.set_names(known.into_iter().map(|(_, name)| name).collect());
            Some(syscall)
        })
        .collect()
}

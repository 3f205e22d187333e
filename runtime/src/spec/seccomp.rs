//! Docker-format seccomp profiles (`docker run --security-opt seccomp=profile.json`): parsed
//! and checked once ([`SeccompProfile::parse`]), then turned into the OCI `linux.seccomp` of
//! each container the way Docker does: `archMap` picks the host's architecture and its
//! sub-architectures, and a rule's `includes`/`excludes` (capabilities, architectures, minimum
//! kernel) decide whether it applies to this container on this host.
//!
//! Parsing (`parse.rs`) is strict where a slip would silently weaken or tighten a filter:
//! unknown fields, actions, architectures, operators and flags are refused with the place they
//! are at.
//! Unknown syscall names are kept: runc skips the ones the host's kernel does not have, which
//! is what lets one profile serve several architectures (Berth's own profile leaves them out
//! itself on the host's ABI alone, see `native.rs`).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};

/// Why a seccomp profile cannot be used. The messages name the place in the profile (`syscalls[3].action`)
/// and what to write instead; the caller adds which file it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompProfileError {
    #[error("line {line} column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}", problems.join("; "))]
    Invalid { problems: Vec<String> },
}

/// A checked Docker seccomp profile, ready to become a container's OCI seccomp filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProfile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Vec<Arch>,
    /// (architecture, its sub-architectures); only the host's entry is used.
    arch_map: Vec<(Arch, Vec<Arch>)>,
    flags: Vec<LinuxSeccompFilterFlag>,
    rules: Vec<Rule>,
    /// Berth's own profile: on the host's ABI alone, the names that ABI lacks are left out
    /// (see `native.rs`); a profile from a file goes to runc as written.
    native_names_only: bool,
}

/// One `syscalls[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Vec<LinuxSeccompArg>,
    includes: Filter,
    excludes: Filter,
}

/// A rule's `includes` or `excludes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Filter {
    /// Capability names as Docker writes them (`CAP_SYS_ADMIN`).
    caps: Vec<String>,
    /// Go architecture names (`amd64`, `arm64`), as Docker matches them.
    arches: Vec<String>,
    /// (major, minor) of the oldest kernel.
    min_kernel: Option<(u64, u64)>,
}

/// What the host contributes to a profile's conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeccompHost {
    /// The host's architecture in Go's spelling (what `includes.arches` names).
    pub(crate) arch: &'static str,
    /// The running kernel's (major, minor), if known.
    pub(crate) kernel: Option<(u64, u64)>,
}

impl Default for SeccompHost {
    /// This machine's architecture and an unknown kernel.
    fn default() -> Self {
        Self::this_machine(None)
    }
}

impl SeccompHost {
    /// This machine: the architecture this binary was built for and the kernel's release (from
    /// `/proc/sys/kernel/osrelease`, read by the caller).
    pub(crate) fn this_machine(osrelease: Option<&str>) -> Self {
        Self {
            arch: go_arch(std::env::consts::ARCH),
            kernel: osrelease.and_then(kernel_version),
        }
    }
}

/// Rust's name of an architecture in Go's spelling (Docker's `includes.arches`).
fn go_arch(rust_arch: &str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips64" => "mips64",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips" => "mips",
        _ => "unknown",
    }
}

/// The seccomp architecture of a Go architecture name, as Docker's `archMap` matches the host.
fn native_arch(go: &str) -> Option<Arch> {
    Some(match go {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "s390x" => Arch::ScmpArchS390x,
        "s390" => Arch::ScmpArchS390,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "ppc64" => Arch::ScmpArchPpc64,
        "riscv64" => Arch::ScmpArchRiscv64,
        "loong64" => Arch::ScmpArchLoongarch64,
        "mips64le" => Arch::ScmpArchMipsel64,
        "mips64" => Arch::ScmpArchMips64,
        "mipsle" => Arch::ScmpArchMipsel,
        "mips" => Arch::ScmpArchMips,
        _ => return None,
    })
}

/// The (major, minor) of a kernel release like `6.1.0-18-amd64` or a `minKernel` like `4.8`.
fn kernel_version(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_part = parts.next()?;
    let digits_end = minor_part
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor_part.len());
    let minor = minor_part.get(..digits_end)?.parse().ok()?;
    Some((major, minor))
}

impl SeccompProfile {
    /// The OCI filter of a container with capabilities `caps` (`CAP_...` names) on `host`, as
    /// Docker's `setupSeccomp` makes it; an error (for people) when a rule needs the kernel's
    /// version and it is unknown.
    pub(crate) fn to_oci(
        &self,
        host: &SeccompHost,
        caps: &[String],
    ) -> Result<LinuxSeccomp, String> {
        let architectures = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            let native = native_arch(host.arch);
            self.arch_map
                .iter()
                .filter(|(arch, _)| Some(*arch) == native)
                .flat_map(|(arch, subs)| std::iter::once(*arch).chain(subs.iter().copied()))
                .collect()
        };
        let mut syscalls = Vec::new();
        for rule in &self.rules {
            if !rule.applies(host, caps)? {
                continue;
            }
            let mut syscall = LinuxSyscall::default();
            syscall.set_names(rule.names.clone());
            syscall.set_action(rule.action);
            syscall.set_errno_ret(rule.errno_ret);
            syscall.set_args((!rule.args.is_empty()).then(|| rule.args.clone()));
            syscalls.push(syscall);
        }
        if self.native_names_only && native::is_this_build_alone(host.arch, &architectures) {
            syscalls = native::native_names_only(syscalls);
        }
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(self.default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
        seccomp.set_flags((!self.flags.is_empty()).then(|| self.flags.clone()));
        seccomp.set_listener_path(None);
        seccomp.set_listener_metadata(None);
        seccomp.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
        Ok(seccomp)
    }
}

impl Rule {
    /// Docker's rule selection: an exclusion that matches drops the rule, and every inclusion
    /// must match (each listed capability held, the host's architecture listed, the kernel at
    /// least the minimum).
    fn applies(&self, host: &SeccompHost, caps: &[String]) -> Result<bool, String> {
        let has_cap = |cap: &String| caps.iter().any(|c| c.eq_ignore_ascii_case(cap));
        let kernel_at_least = |min: (u64, u64)| {
            host.kernel.map(|k| k >= min).ok_or_else(|| {
                format!(
                    "the seccomp profile's rule for {} needs the kernel's version, which cannot \
                     be read from /proc/sys/kernel/osrelease",
                    self.names.join(", ")
                )
            })
        };
        let ex = &self.excludes;
        if ex.arches.iter().any(|a| a == host.arch) || ex.caps.iter().any(has_cap) {
            return Ok(false);
        }
        if let Some(min) = ex.min_kernel
            && kernel_at_least(min)?
        {
            return Ok(false);
        }
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch) {
            return Ok(false);
        }
        if !inc.caps.iter().all(has_cap) {
            return Ok(false);
        }
        if let Some(min) = inc.min_kernel
            && !kernel_at_least(min)?
        {
            return Ok(false);
        }
        Ok(true)
    }
}

mod default;
mod native;
mod parse;

pub(crate) use default::DEFAULT_PROFILE;

#[cfg(test)]
mod compare;
#[cfg(test)]
mod tests;

//! Reading a Docker seccomp profile's JSON: the profile's own types as moby writes them, the
//! names of actions, architectures, operators and flags, and the checks that refuse what
//! would silently weaken or tighten a filter, each problem with its place in the profile.

use oci_spec::runtime::{
    LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde::Deserialize;

use super::{Arch, Filter, Rule, SeccompProfile, SeccompProfileError, kernel_version};

/// Go's architecture names that `includes.arches` and `excludes.arches` may use.
pub(super) const GO_ARCHES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc",
    "ppc64", "ppc64le", "riscv64", "s390", "s390x",
];

/// Other architecture names Docker's own default profile writes in `arches` (libseccomp's
/// spellings, and `mips3l64n32`, a misspelling in moby's file). Docker compares them with Go's
/// names, which none of them is, so they never match; they are accepted so that Docker's
/// profiles load as Docker loads them.
const DOCKER_ARCH_SPELLINGS: &[&str] = &[
    "x32",
    "x86",
    "mips64n32",
    "mipsel",
    "mipsel64",
    "mipsel64n32",
    "mips3l64n32",
];

/// The profile's JSON, as Docker writes it (moby's `profiles/seccomp` types).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProfile {
    #[serde(default)]
    default_action: Option<String>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<RawSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<RawArg>>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    includes: Option<RawFilter>,
    #[serde(default)]
    excludes: Option<RawFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The seccomp actions by their profile names.
pub(super) const ACTIONS: &[(&str, LinuxSeccompAction)] = &[
    ("SCMP_ACT_KILL", LinuxSeccompAction::ScmpActKill),
    (
        "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillThread,
    ),
    (
        "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActKillProcess,
    ),
    ("SCMP_ACT_TRAP", LinuxSeccompAction::ScmpActTrap),
    ("SCMP_ACT_ERRNO", LinuxSeccompAction::ScmpActErrno),
    ("SCMP_ACT_TRACE", LinuxSeccompAction::ScmpActTrace),
    ("SCMP_ACT_LOG", LinuxSeccompAction::ScmpActLog),
    ("SCMP_ACT_ALLOW", LinuxSeccompAction::ScmpActAllow),
];

/// Needs a seccomp agent on the host (`listenerPath`), which Berth does not run.
const NOTIFY: &str = "SCMP_ACT_NOTIFY";

pub(super) const ARCHES: &[(&str, Arch)] = &[
    ("SCMP_ARCH_NATIVE", Arch::ScmpArchNative),
    ("SCMP_ARCH_X86", Arch::ScmpArchX86),
    ("SCMP_ARCH_X86_64", Arch::ScmpArchX86_64),
    ("SCMP_ARCH_X32", Arch::ScmpArchX32),
    ("SCMP_ARCH_ARM", Arch::ScmpArchArm),
    ("SCMP_ARCH_AARCH64", Arch::ScmpArchAarch64),
    ("SCMP_ARCH_MIPS", Arch::ScmpArchMips),
    ("SCMP_ARCH_MIPS64", Arch::ScmpArchMips64),
    ("SCMP_ARCH_MIPS64N32", Arch::ScmpArchMips64n32),
    ("SCMP_ARCH_MIPSEL", Arch::ScmpArchMipsel),
    ("SCMP_ARCH_MIPSEL64", Arch::ScmpArchMipsel64),
    ("SCMP_ARCH_MIPSEL64N32", Arch::ScmpArchMipsel64n32),
    ("SCMP_ARCH_PPC", Arch::ScmpArchPpc),
    ("SCMP_ARCH_PPC64", Arch::ScmpArchPpc64),
    ("SCMP_ARCH_PPC64LE", Arch::ScmpArchPpc64le),
    ("SCMP_ARCH_S390", Arch::ScmpArchS390),
    ("SCMP_ARCH_S390X", Arch::ScmpArchS390x),
    ("SCMP_ARCH_PARISC", Arch::ScmpArchParisc),
    ("SCMP_ARCH_PARISC64", Arch::ScmpArchParisc64),
    ("SCMP_ARCH_RISCV64", Arch::ScmpArchRiscv64),
    ("SCMP_ARCH_LOONGARCH64", Arch::ScmpArchLoongarch64),
    ("SCMP_ARCH_M68K", Arch::ScmpArchM68k),
    ("SCMP_ARCH_SH", Arch::ScmpArchSh),
    ("SCMP_ARCH_SHEB", Arch::ScmpArchSheb),
];

pub(super) const OPERATORS: &[(&str, LinuxSeccompOperator)] = &[
    ("SCMP_CMP_NE", LinuxSeccompOperator::ScmpCmpNe),
    ("SCMP_CMP_LT", LinuxSeccompOperator::ScmpCmpLt),
    ("SCMP_CMP_LE", LinuxSeccompOperator::ScmpCmpLe),
    ("SCMP_CMP_EQ", LinuxSeccompOperator::ScmpCmpEq),
    ("SCMP_CMP_GE", LinuxSeccompOperator::ScmpCmpGe),
    ("SCMP_CMP_GT", LinuxSeccompOperator::ScmpCmpGt),
    ("SCMP_CMP_MASKED_EQ", LinuxSeccompOperator::ScmpCmpMaskedEq),
];

pub(super) const FLAGS: &[(&str, LinuxSeccompFilterFlag)] = &[
    (
        "SECCOMP_FILTER_FLAG_LOG",
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    ),
    (
        "SECCOMP_FILTER_FLAG_TSYNC",
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    ),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    ),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ),
];

/// The highest syscall argument index (a syscall has six).
const MAX_ARG_INDEX: u32 = 5;

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub(super) fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Collects a profile's problems, each with its place.
struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn push(&mut self, at: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{at}: {message}"));
    }

    fn action(&mut self, at: &str, name: &str) -> LinuxSeccompAction {
        if name == NOTIFY {
            self.push(
                at,
                "SCMP_ACT_NOTIFY needs a seccomp agent listening on the host, which Berth does not \
                 run",
            );
        } else if let Some(action) = lookup(ACTIONS, name) {
            return action;
        } else {
            self.push(
                at,
                format!(
                    "`{name}` is not a seccomp action: use one of {}",
                    names(ACTIONS)
                ),
            );
        }
        LinuxSeccompAction::ScmpActErrno
    }

    fn arch(&mut self, at: &str, name: &str) -> Option<Arch> {
        let arch = lookup(ARCHES, name);
        if arch.is_none() {
            self.push(
                at,
                format!(
                    "`{name}` is not a seccomp architecture: use one of {}",
                    names(ARCHES)
                ),
            );
        }
        arch
    }

    /// `errnoRet` only means something with the actions that return a value.
    fn errno_ret(&mut self, at: &str, action: LinuxSeccompAction, errno_ret: Option<u32>) {
        let returns = matches!(
            action,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        );
        if errno_ret.is_some() && !returns {
            self.push(
                at,
                "only goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE: remove it or change the action",
            );
        }
    }

    fn filter(&mut self, at: &str, raw: Option<RawFilter>) -> Filter {
        let Some(raw) = raw else {
            return Filter::default();
        };
        let arches = raw.arches.unwrap_or_default();
        for (k, arch) in arches.iter().enumerate() {
            if !GO_ARCHES.contains(&arch.as_str())
                && !DOCKER_ARCH_SPELLINGS.contains(&arch.as_str())
            {
                self.push(
                    &format!("{at}.arches[{k}]"),
                    format!(
                        "`{arch}` is not an architecture as Docker names them here: use one of {}",
                        GO_ARCHES.join(", ")
                    ),
                );
            }
        }
        let min_kernel = raw.min_kernel.and_then(|text| {
            let version = kernel_version(&text)
                .filter(|_| text.split('.').count() == 2 && text.split('.').all(|p| !p.is_empty()));
            if version.is_none() {
                self.push(
                    &format!("{at}.minKernel"),
                    format!("{text:?} is not a kernel version like \"4.8\""),
                );
            }
            version
        });
        Filter {
            caps: raw.caps.unwrap_or_default(),
            arches,
            min_kernel,
        }
    }
}

impl SeccompProfile {
    /// Parses and checks a Docker seccomp profile (JSON), reporting every problem at once.
    pub fn parse(json: &str) -> Result<Self, SeccompProfileError> {
        let raw: RawProfile = serde_json::from_str(json).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let full = e.to_string();
            let reason = full
                .strip_suffix(&format!(" at line {line} column {column}"))
                .unwrap_or(&full)
                .to_owned();
            SeccompProfileError::Json {
                line,
                column,
                reason,
            }
        })?;
        let mut c = Checker {
            problems: Vec::new(),
        };
        let default_action = match raw.default_action.as_deref() {
            Some(name) => c.action("defaultAction", name),
            None => {
                c.push(
                    "defaultAction",
                    "is missing: set what happens to syscalls no rule matches, e.g. SCMP_ACT_ERRNO",
                );
                LinuxSeccompAction::ScmpActErrno
            }
        };
        c.errno_ret("defaultErrnoRet", default_action, raw.default_errno_ret);
        if raw.listener_path.is_some() || raw.listener_metadata.is_some() {
            c.push(
                "listenerPath",
                "a seccomp agent listening on the host is not something Berth runs: remove \
                 listenerPath and listenerMetadata",
            );
        }
        let given_architectures = raw.architectures.unwrap_or_default();
        let given_arch_map = raw.arch_map.unwrap_or_default();
        if !given_architectures.is_empty() && !given_arch_map.is_empty() {
            c.push(
                "architectures",
                "architectures and archMap are both set: use one of them, as Docker requires",
            );
        }
        let architectures = given_architectures
            .iter()
            .enumerate()
            .filter_map(|(k, a)| c.arch(&format!("architectures[{k}]"), a))
            .collect();
        let arch_map = given_arch_map
            .iter()
            .enumerate()
            .filter_map(|(k, entry)| {
                let at = format!("archMap[{k}]");
                let arch = c.arch(&format!("{at}.architecture"), &entry.architecture);
                let subs = entry
                    .sub_architectures
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(m, s)| c.arch(&format!("{at}.subArchitectures[{m}]"), s))
                    .collect();
                arch.map(|a| (a, subs))
            })
            .collect();
        let flags = raw
            .flags
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(k, f)| {
                let flag = lookup(FLAGS, f);
                if flag.is_none() {
                    c.push(
                        &format!("flags[{k}]"),
                        format!(
                            "`{f}` is not a seccomp filter flag: use one of {}",
                            names(FLAGS)
                        ),
                    );
                }
                flag
            })
            .collect();
        let rules = raw
            .syscalls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, s)| rule(&mut c, i, s))
            .collect();
        if !c.problems.is_empty() {
            return Err(SeccompProfileError::Invalid {
                problems: c.problems,
            });
        }
        Ok(Self {
            default_action,
            default_errno_ret: raw.default_errno_ret,
            architectures,
            arch_map,
            flags,
            rules,
            native_names_only: false,
        })
    }
}

fn rule(c: &mut Checker, i: usize, s: RawSyscall) -> Rule {
    let at = format!("syscalls[{i}]");
    let syscalls = match (s.name, s.names) {
        (Some(_), Some(_)) => {
            c.push(&at, "name and names are both set: use names");
            Vec::new()
        }
        (Some(name), None) => vec![name],
        (None, Some(names)) => names,
        (None, None) => Vec::new(),
    };
    if syscalls.is_empty() || syscalls.iter().any(String::is_empty) {
        c.push(
            &format!("{at}.names"),
            "must list at least one syscall name, none empty",
        );
    }
    let action = match s.action.as_deref() {
        Some(name) => c.action(&format!("{at}.action"), name),
        None => {
            c.push(&format!("{at}.action"), "is missing");
            LinuxSeccompAction::ScmpActErrno
        }
    };
    c.errno_ret(&format!("{at}.errnoRet"), action, s.errno_ret);
    let args = s
        .args
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(k, a)| {
            let arg_at = format!("{at}.args[{k}]");
            if a.index > MAX_ARG_INDEX {
                c.push(
                    &format!("{arg_at}.index"),
                    format!(
                        "{} is not a syscall argument: use 0 to {MAX_ARG_INDEX}",
                        a.index
                    ),
                );
            }
            let op = lookup(OPERATORS, &a.op).unwrap_or_else(|| {
                c.push(
                    &format!("{arg_at}.op"),
                    format!(
                        "`{}` is not a seccomp operator: use one of {}",
                        a.op,
                        names(OPERATORS)
                    ),
                );
                LinuxSeccompOperator::ScmpCmpEq
            });
            let mut builder = LinuxSeccompArgBuilder::default()
                .index(usize::try_from(a.index).unwrap_or(usize::MAX))
                .value(a.value)
                .op(op);
            if let Some(two) = a.value_two.filter(|v| *v != 0) {
                builder = builder.value_two(two);
            }
            builder.build().unwrap_or_else(|e| {
                c.push(&arg_at, e);
                LinuxSeccompArg::default()
            })
        })
        .collect();
    // A comment is for people reading the profile; it does not reach the filter.
    let _ = s.comment;
    let includes = c.filter(&format!("{at}.includes"), s.includes);
    let excludes = c.filter(&format!("{at}.excludes"), s.excludes);
    Rule {
        names: syscalls,
        action,
        errno_ret: s.errno_ret,
        args,
        includes,
        excludes,
    }
}

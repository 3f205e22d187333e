//! Berth's default profile beside Docker's: moby's own `default.json`, read from Debian's
//! `golang-github-docker-docker-dev` (moby 20.10, installed by `make deps`), rule by rule. Every
//! difference is listed below with the reason for it; any other difference fails the test.

use std::collections::{BTreeMap, BTreeSet};

use super::tests::docker_default_caps;
use super::*;

/// moby's default profile as Debian installs it.
const MOBY_PROFILE: &str =
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json";

/// Each syscall whose rules differ from moby 20.10's, and why.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "io_uring_setup",
        "io_uring is refused, as moby 25 and later refuse it: it bypasses syscall filtering \
         (its operations are not syscalls) and has been the source of many kernel exploits",
    ),
    ("io_uring_enter", "io_uring is refused (see io_uring_setup)"),
    (
        "io_uring_register",
        "io_uring is refused (see io_uring_setup)",
    ),
    (
        "cachestat",
        "Linux 6.5, newer than the profile: page cache state of a file the caller has open, \
         what mincore tells of a mapping",
    ),
    (
        "fchmodat2",
        "Linux 6.6, newer than the profile: fchmodat with flags, which libc uses for \
         lchmod-like calls",
    ),
    (
        "map_shadow_stack",
        "Linux 6.6, newer than the profile: maps the caller's own shadow stack, like mmap",
    ),
    (
        "futex_wait",
        "Linux 6.7, newer than the profile: futex split into calls, like futex",
    ),
    (
        "futex_wake",
        "Linux 6.7, newer than the profile: futex split into calls, like futex",
    ),
    (
        "futex_requeue",
        "Linux 6.7, newer than the profile: futex split into calls, like futex",
    ),
    (
        "mseal",
        "Linux 6.10, newer than the profile: seals the caller's own mappings, only ever \
         removing power",
    ),
    (
        "bpf",
        "also allowed with CAP_BPF, which Linux 5.8 split out of CAP_SYS_ADMIN (moby 23 and \
         later do the same); the capability needs allowed_capabilities",
    ),
    (
        "perf_event_open",
        "also allowed with CAP_PERFMON, which Linux 5.8 split out of CAP_SYS_ADMIN (moby 23 and \
         later do the same); the capability needs allowed_capabilities",
    ),
    (
        "clone3",
        "the MIPS exception names mipsel64n32 where moby's file misspells it mips3l64n32",
    ),
];

/// Why the default profile lists only the host's own ABI where moby's `archMap` also lists
/// its compatibility ABIs (x86_64: x86 and x32).
const ARCHES_DIFFERENCE: &str = "only the host's own ABI is listed, not its compatibility \
    ABIs (x86 and x32 beside x86_64, arm beside aarch64): runc and libseccomp compile the filter \
    once more for each ABI listed, about 10 ms of every container start each on the bench host, \
    and a call through an unlisted ABI kills the caller, so nothing moby refuses is allowed; \
    32-bit programs need seccomp=<file> with moby's profile";

/// Each syscall's rules in a form that compares: action, errno, arguments, and the sorted
/// conditions, one string a rule.
fn by_syscall(profile: &SeccompProfile) -> BTreeMap<String, BTreeSet<String>> {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in &profile.rules {
        let text = format!(
            "{:?} errno={:?} args={} includes=({:?} {:?} {:?}) excludes=({:?} {:?} {:?})",
            rule.action,
            rule.errno_ret,
            serde_json::to_string(&rule.args).unwrap_or_default(),
            sorted(&rule.includes.caps),
            sorted(&rule.includes.arches),
            rule.includes.min_kernel,
            sorted(&rule.excludes.caps),
            sorted(&rule.excludes.arches),
            rule.excludes.min_kernel,
        );
        for name in &rule.names {
            map.entry(name.clone()).or_default().insert(text.clone());
        }
    }
    map
}

#[test]
fn the_default_profile_is_dockers_but_for_the_named_differences() {
    let json = match std::fs::read_to_string(MOBY_PROFILE) {
        Ok(json) => json,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED: cannot read moby's profile {MOBY_PROFILE} ({error}); install \
                 golang-github-docker-docker-dev (make deps)"
            );
            return;
        }
        Err(error) => panic!("cannot read moby's profile {MOBY_PROFILE}: {error}"),
    };
    let moby = SeccompProfile::parse(&json).expect("moby's profile loads as Docker loads it");
    let berth = &*DEFAULT_PROFILE;
    assert_eq!(berth.default_action, moby.default_action);
    assert_eq!(berth.default_errno_ret, moby.default_errno_ret);
    assert_eq!(berth.architectures, moby.architectures);
    println!("archMap: {ARCHES_DIFFERENCE}");
    let natives = |p: &SeccompProfile| p.arch_map.iter().map(|(a, _)| *a).collect::<Vec<_>>();
    assert_eq!(natives(berth), natives(&moby), "the same host ABIs");
    assert!(
        berth.arch_map.iter().all(|(_, subs)| subs.is_empty()),
        "{ARCHES_DIFFERENCE}"
    );
    assert!(
        moby.arch_map.iter().any(|(_, subs)| !subs.is_empty()),
        "moby's profile lists compatibility ABIs: the difference above is real"
    );
    assert_eq!(berth.flags, moby.flags);

    let (ours, theirs) = (by_syscall(berth), by_syscall(&moby));
    let names: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    let mut differing = BTreeSet::new();
    for name in names {
        let (a, b) = (ours.get(name), theirs.get(name));
        if a != b {
            println!("{name}:\n  berth: {a:?}\n  moby:  {b:?}");
            differing.insert(name.as_str());
        }
    }
    let explained: BTreeSet<&str> = DIFFERENCES.iter().map(|(name, _)| *name).collect();
    for (name, why) in DIFFERENCES {
        println!("{name}: {why}");
    }
    assert_eq!(
        differing, explained,
        "every difference from moby's profile is listed in DIFFERENCES with its reason, and \
         nothing else differs"
    );
}

#[test]
fn the_default_profile_refuses_what_docker_refuses_on_this_host() {
    let host = SeccompHost {
        arch: "amd64",
        kernel: Some((6, 1)),
    };
    let default_caps = docker_default_caps();
    let filter = DEFAULT_PROFILE
        .to_oci(&host, &default_caps)
        .expect("filter");
    // The host's own ABI alone: a call through x86 or x32 kills the caller.
    assert_eq!(
        filter.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64][..])
    );
    let allowed_unconditionally = |name: &str| {
        filter.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    };
    for refused in [
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "bpf",
        "kexec_load",
        "init_module",
        "finit_module",
        "reboot",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
    ] {
        assert!(!allowed_unconditionally(refused), "{refused} is allowed");
    }
    for allowed in ["read", "chroot", "ptrace", "openat2", "fchmodat2"] {
        assert!(allowed_unconditionally(allowed), "{allowed} is refused");
    }
    // clone only without namespace flags.
    let clone: Vec<_> = filter
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.names().iter().any(|n| n == "clone"))
        .collect();
    assert_eq!(clone.len(), 1);
    assert_eq!(
        serde_json::to_value(clone[0].args()).unwrap(),
        serde_json::json!([{"index": 0, "value": 0x7E02_0000u64, "op": "SCMP_CMP_MASKED_EQ"}])
    );
    // With CAP_SYS_ADMIN, clone and unshare are open and clone3 is no longer ENOSYS.
    let mut admin = default_caps.clone();
    admin.push("CAP_SYS_ADMIN".to_owned());
    let filter = DEFAULT_PROFILE.to_oci(&host, &admin).expect("filter");
    let names: Vec<&String> = filter
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActErrno)
        .flat_map(|s| s.names())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

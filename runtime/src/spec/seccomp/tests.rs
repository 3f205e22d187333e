//! Unit tests of the Docker seccomp profile conversion: architectures, includes and excludes,
//! conditional rules, and the errors that say where a profile is wrong.

use super::parse::{ACTIONS, ARCHES, FLAGS, GO_ARCHES, OPERATORS, names};
use super::*;

const HOST: SeccompHost = SeccompHost {
    arch: "amd64",
    kernel: Some((5, 10)),
};

fn problems(json: &str) -> Vec<String> {
    match SeccompProfile::parse(json) {
        Err(SeccompProfileError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn oci(json: &str, caps: &[&str]) -> serde_json::Value {
    let profile = SeccompProfile::parse(json).expect("profile");
    let caps: Vec<String> = caps.iter().map(|c| (*c).to_owned()).collect();
    serde_json::to_value(profile.to_oci(&HOST, &caps).expect("oci")).expect("json")
}

#[test]
fn a_docker_profile_becomes_the_oci_filter() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 4294967295, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }"#;
    assert_eq!(
        oci(json, &[]),
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 4294967295u64, "valueTwo": 8,
                           "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })
    );
}

#[test]
fn arch_map_keeps_only_the_hosts_architecture_and_its_sub_architectures() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}]}"#;
    assert_eq!(
        oci(json, &[])["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    let profile = SeccompProfile::parse(json).expect("profile");
    let arm = SeccompHost {
        arch: "arm64",
        kernel: None,
    };
    let value = serde_json::to_value(profile.to_oci(&arm, &[]).expect("oci")).expect("json");
    assert_eq!(
        value["architectures"],
        serde_json::json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    );
}

#[test]
fn includes_and_excludes_select_rules_as_docker_does() {
    let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["b"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["c"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["d"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "386"]}},
        {"names": ["e"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
        {"names": ["f"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.11"}},
        {"names": ["g"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "4.8"}},
        {"names": ["h"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {"names": ["i"], "action": "SCMP_ACT_ALLOW", "includes": {}}
    ]}"#;
    let applied = |caps: &[&str]| -> Vec<String> {
        oci(json, caps)["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .map(|s| s["names"][0].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(applied(&[]), ["b", "d", "e", "i"]);
    assert_eq!(applied(&["CAP_SYS_ADMIN"]), ["a", "d", "e", "i"]);
    let profile = SeccompProfile::parse(json).expect("profile");
    let unknown_kernel = SeccompHost {
        arch: "amd64",
        kernel: None,
    };
    let err = profile.to_oci(&unknown_kernel, &[]).expect_err("kernel");
    assert!(err.contains("needs the kernel's version"), "{err}");
}

#[test]
fn every_problem_is_named_with_its_place() {
    assert_eq!(
        problems(
            r#"{"architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "x86_64"}],
                "defaultErrnoRet": 1, "flags": ["TSYNC"], "listenerPath": "/run/agent.sock",
                "syscalls": [
                    {"name": "a", "names": ["b"], "action": "SCMP_ACT_NOTIFY"},
                    {"names": [], "action": "ALLOW", "errnoRet": 2},
                    {"names": ["c"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 6, "value": 1, "op": "EQ"}],
                     "includes": {"arches": ["x86_64"], "minKernel": "five"}},
                    {"names": ["d"]}
                ]}"#
        ),
        [
            "defaultAction: is missing: set what happens to syscalls no rule matches, e.g. SCMP_ACT_ERRNO".to_owned(),
            "listenerPath: a seccomp agent listening on the host is not something Berth runs: remove listenerPath and listenerMetadata".to_owned(),
            "architectures: architectures and archMap are both set: use one of them, as Docker requires".to_owned(),
            format!("archMap[0].architecture: `x86_64` is not a seccomp architecture: use one of {}", names(ARCHES)),
            format!("flags[0]: `TSYNC` is not a seccomp filter flag: use one of {}", names(FLAGS)),
            "syscalls[0]: name and names are both set: use names".to_owned(),
            "syscalls[0].names: must list at least one syscall name, none empty".to_owned(),
            "syscalls[0].action: SCMP_ACT_NOTIFY needs a seccomp agent listening on the host, which Berth does not run".to_owned(),
            "syscalls[1].names: must list at least one syscall name, none empty".to_owned(),
            format!("syscalls[1].action: `ALLOW` is not a seccomp action: use one of {}", names(ACTIONS)),
            "syscalls[2].args[0].index: 6 is not a syscall argument: use 0 to 5".to_owned(),
            format!("syscalls[2].args[0].op: `EQ` is not a seccomp operator: use one of {}", names(OPERATORS)),
            format!("syscalls[2].includes.arches[0]: `x86_64` is not an architecture as Docker names them here: use one of {}", GO_ARCHES.join(", ")),
            "syscalls[2].includes.minKernel: \"five\" is not a kernel version like \"4.8\"".to_owned(),
            "syscalls[3].action: is missing".to_owned(),
        ]
    );
    assert_eq!(
        problems(r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#),
        [
            "defaultErrnoRet: only goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE: remove it or change the action"
        ]
    );
}

#[test]
fn json_errors_say_where() {
    let err =
        SeccompProfile::parse("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"sycalls\": []\n}")
            .expect_err("typo");
    let SeccompProfileError::Json { line, reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*line, 3);
    assert!(reason.starts_with("unknown field `sycalls`"), "{reason}");
    assert!(err.to_string().starts_with("line 3 column "), "{err}");
    assert!(matches!(
        SeccompProfile::parse("not json"),
        Err(SeccompProfileError::Json { line: 1, .. })
    ));
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
    assert_eq!(kernel_version("5.10"), Some((5, 10)));
    assert_eq!(kernel_version("4.19rc1"), Some((4, 19)));
    assert_eq!(kernel_version("linux"), None);
    assert_eq!(go_arch("x86_64"), "amd64");
    assert_eq!(native_arch("amd64"), Some(Arch::ScmpArchX86_64));
}

/// Docker's default capabilities, which a container without additions holds, as a filter's
/// rules name them (`CAP_CHOWN`); also the comparison's (`compare.rs`).
pub(super) fn docker_default_caps() -> Vec<String> {
    berth_policy::DEFAULT_CAPABILITIES
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect()
}

fn names_of(filter: &LinuxSeccomp) -> Vec<String> {
    filter
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().iter().cloned())
        .collect()
}

#[test]
fn on_this_machine_the_default_filter_names_only_calls_of_its_abi_in_descending_order() {
    use std::str::FromStr;
    let host = SeccompHost::this_machine(Some("6.1.0"));
    if native_arch(host.arch).is_none() {
        eprintln!("SKIPPED: no seccomp architecture for {}", host.arch);
        return;
    }
    let caps = docker_default_caps();
    let trimmed = DEFAULT_PROFILE.to_oci(&host, &caps).expect("filter");
    for syscall in trimmed.syscalls().iter().flatten() {
        let numbers: Vec<i32> = syscall
            .names()
            .iter()
            .map(|n| {
                syscalls::Sysno::from_str(n)
                    .unwrap_or_else(|()| panic!("{n} is not a call of this ABI"))
                    .id()
            })
            .collect();
        assert!(!numbers.is_empty());
        assert!(
            numbers.windows(2).all(|w| w[0] > w[1]),
            "{:?} is not in descending number order",
            syscall.names()
        );
    }
    // What is left out is only what the ABI lacks: the 32-bit ABIs' own calls.
    let mut full_profile = DEFAULT_PROFILE.clone();
    full_profile.native_names_only = false;
    let full = full_profile.to_oci(&host, &caps).expect("filter");
    let kept: std::collections::BTreeSet<String> = names_of(&trimmed).into_iter().collect();
    let left_out: Vec<String> = names_of(&full)
        .into_iter()
        .filter(|n| !kept.contains(n))
        .collect();
    for name in &left_out {
        assert!(
            syscalls::x86::Sysno::from_str(name).is_ok()
                || syscalls::arm::Sysno::from_str(name).is_ok(),
            "{name} was left out but is no 32-bit call"
        );
    }
    if host.arch == "amd64" {
        for name in ["chown32", "_llseek", "socketcall", "mmap2"] {
            assert!(left_out.iter().any(|n| n == name), "{name} is kept");
        }
        for name in [
            "read",
            "openat2",
            "fchmodat2",
            "mseal",
            "arch_prctl",
            "clone",
        ] {
            assert!(kept.contains(name), "{name} is left out");
        }
    }
    // Everything else is as the profile says: the same rules, in the same order.
    assert_eq!(
        trimmed.syscalls().iter().flatten().count(),
        full.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| kept.contains(n)))
            .count()
    );
    assert_eq!(trimmed.architectures(), full.architectures());
    assert_eq!(trimmed.default_action(), full.default_action());
}

#[test]
fn a_profile_from_a_file_and_another_hosts_filter_keep_every_name() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}
        ],
        "syscalls": [{"names": ["read", "chown32", "no_such_call"], "action": "SCMP_ACT_ALLOW"}]
    }"#;
    let profile = SeccompProfile::parse(json).expect("profile");
    let host = SeccompHost::this_machine(Some("6.1.0"));
    let filter = profile.to_oci(&host, &[]).expect("filter");
    assert_eq!(names_of(&filter), ["read", "chown32", "no_such_call"]);
    // Berth's own profile, converted for a host of another architecture than this build's:
    // this build knows only its own ABI's table, so it leaves every name in.
    let other = SeccompHost {
        arch: if host.arch == "arm64" {
            "amd64"
        } else {
            "arm64"
        },
        kernel: Some((6, 1)),
    };
    let filter = DEFAULT_PROFILE
        .to_oci(&other, &docker_default_caps())
        .expect("filter");
    let names = names_of(&filter);
    for name in ["chown32", "_llseek", "read"] {
        assert!(names.iter().any(|n| n == name), "{name} is left out");
    }
}

//! Unit tests of spec building: every field of the OCI spec a container definition and an
//! image configuration lead to, and the errors that name container and image.

use super::*;
use crate::model::{ContainerLimits, NetworkNamespace, Ulimit};
use oci_spec::image::{Config, ImageConfiguration};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType};
use std::collections::BTreeMap;
use std::path::PathBuf;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:root\napp:x:1000:\nstaff:x:50:app\n";

fn image(user: Option<&str>) -> ImageConfiguration {
    let mut config = Config::default();
    config.set_entrypoint(Some(vec!["/entry".into()]));
    config.set_cmd(Some(vec!["serve".into()]));
    config.set_env(Some(vec!["PATH=/app/bin:/bin".into(), "MODE=image".into()]));
    config.set_working_dir(Some("/app".into()));
    config.set_user(user.map(str::to_owned));
    let mut image = ImageConfiguration::default();
    image.set_config(Some(config));
    image
}

fn container() -> ContainerSpec {
    ContainerSpec {
        task_id: "task-1".into(),
        name: "web".into(),
        image: "example.com/app:1".into(),
        ..ContainerSpec::default()
    }
}

fn ctx() -> SpecContext<'static> {
    SpecContext {
        cgroups_path: "/berth/task-1/web".into(),
        passwd: Some(PASSWD),
        group: Some(GROUP),
        init_path: None,
        bounding_capabilities: None,
        host_devices: Vec::new(),
        file_mounts: Vec::new(),
        devices: Vec::new(),
        swap: crate::model::SwapSupport::default(),
        seccomp_host: SeccompHost {
            arch: "amd64",
            kernel: Some((6, 1)),
        },
    }
}

fn build_ok(container: &ContainerSpec, image: &ImageConfiguration) -> Spec {
    build(container, image, &ctx()).expect("build")
}

fn process(spec: &Spec) -> &Process {
    spec.process().as_ref().expect("process")
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux().as_ref().expect("linux")
}

#[test]
fn full_spec_from_image_defaults() {
    let spec = build_ok(&container(), &image(None));
    assert_eq!(spec.version(), "1.1.0");
    let p = process(&spec);
    assert_eq!(
        p.args().as_deref(),
        Some(&["/entry".to_owned(), "serve".to_owned()][..])
    );
    assert_eq!(
        p.env().as_deref(),
        Some(&["PATH=/app/bin:/bin".to_owned(), "MODE=image".to_owned()][..])
    );
    assert_eq!(p.cwd(), &PathBuf::from("/app"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.capabilities(), &Some(defaults::capabilities()));
    assert_eq!(p.oom_score_adj(), None);
    assert_eq!(p.user().uid(), 0);
    assert_eq!(p.user().gid(), 0);
    assert_eq!(p.user().additional_gids(), &Some(vec![0]));
    let rlimits = p.rlimits().as_ref().expect("rlimits");
    assert_eq!(rlimits.len(), 1);
    assert_eq!(rlimits[0].typ(), PosixRlimitType::RlimitNofile);

    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.path(), &PathBuf::from("rootfs"));
    assert_eq!(root.readonly(), Some(false));
    assert_eq!(spec.hostname(), &None);
    assert_eq!(spec.annotations(), &None);
    assert_eq!(spec.mounts(), &Some(defaults::mounts()));

    let l = linux(&spec);
    assert_eq!(l.cgroups_path(), &Some(PathBuf::from("/berth/task-1/web")));
    assert_eq!(
        l.masked_paths(),
        &Some(defaults::strings(&defaults::MASKED_PATHS))
    );
    assert_eq!(
        l.readonly_paths(),
        &Some(defaults::strings(&defaults::READONLY_PATHS))
    );
    assert_eq!(l.devices(), &None);
    // Berth's default seccomp profile: everything not listed fails with EPERM.
    assert_eq!(
        l.seccomp().as_ref().map(|s| s.default_action()),
        Some(oci_spec::runtime::LinuxSeccompAction::ScmpActErrno)
    );
    let resources = l.resources().as_ref().expect("resources");
    assert_eq!(resources.devices(), &Some(defaults::device_rules()));
    assert_eq!(resources.cpu().as_ref().and_then(|c| c.shares()), Some(2));
    assert_eq!(resources.memory(), &None);
    let ns: Vec<_> = l
        .namespaces()
        .as_ref()
        .expect("namespaces")
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        ns,
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network
        ]
    );
}

#[test]
fn definition_overrides_everything() {
    let mut c = container();
    c.entry_point = Some(vec!["/bin/sh".into(), "-c".into()]);
    c.command = Some(vec!["echo hi".into()]);
    c.environment = BTreeMap::from([("MODE".to_owned(), "task".to_owned())]);
    c.working_directory = Some("/work".into());
    c.user = Some("app".into());
    c.readonly_root_filesystem = true;
    c.hostname = Some("web-1".into());
    c.network = NetworkNamespace::Join("/run/netns/task-1".into());
    c.ulimits = vec![Ulimit {
        name: "nofile".into(),
        soft: 4096,
        hard: 8192,
    }];
    c.limits = ContainerLimits {
        cpu_units: 512,
        memory_mib: Some(256),
        memory_reservation_mib: Some(128),
        ..ContainerLimits::default()
    };
    let spec = build_ok(&c, &image(Some("root")));

    let p = process(&spec);
    assert_eq!(
        p.args().as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()][..])
    );
    assert_eq!(
        p.env().as_deref(),
        Some(
            &[
                "PATH=/app/bin:/bin".to_owned(),
                "HOSTNAME=web-1".to_owned(),
                "MODE=task".to_owned()
            ][..]
        )
    );
    assert_eq!(p.cwd(), &PathBuf::from("/work"));
    assert_eq!(
        (p.user().uid(), p.user().gid()),
        (1000, 1000),
        "the definition's user beats the image's"
    );
    assert_eq!(p.user().additional_gids(), &Some(vec![1000, 50]));
    let rlimits = p.rlimits().as_ref().expect("rlimits");
    assert_eq!(
        (rlimits[0].typ(), rlimits[0].soft(), rlimits[0].hard()),
        (PosixRlimitType::RlimitNofile, 4096, 8192)
    );

    assert_eq!(spec.hostname().as_deref(), Some("web-1"));
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
    let l = linux(&spec);
    let net = l
        .namespaces()
        .as_ref()
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
        .expect("network namespace");
    assert_eq!(net.path(), &Some(PathBuf::from("/run/netns/task-1")));
    let resources = l.resources().as_ref().expect("resources");
    assert_eq!(resources.cpu().as_ref().and_then(|c| c.shares()), Some(512));
    let memory = resources.memory().as_ref().expect("memory");
    assert_eq!(memory.limit(), Some(256 << 20));
    assert_eq!(memory.reservation(), Some(128 << 20));
}

#[test]
fn image_user_is_resolved_and_empty_user_falls_back() {
    let mut c = container();
    let img = image(Some("app:staff"));
    let spec = build_ok(&c, &img);
    let u = process(&spec).user();
    assert_eq!((u.uid(), u.gid()), (1000, 50));
    assert_eq!(u.additional_gids(), &Some(vec![50]));

    c.user = Some(String::new());
    assert_eq!(effective_user(&c, &img), Some("app:staff"));
    c.user = Some("1000:1000".into());
    assert_eq!(effective_user(&c, &img), Some("1000:1000"));
    assert_eq!(effective_user(&container(), &image(Some(""))), None);
    assert_eq!(
        effective_user(&container(), &ImageConfiguration::default()),
        None
    );
}

#[test]
fn build_reports_user_errors() {
    let mut c = container();
    c.user = Some("ghost".into());
    let err = build(&c, &image(None), &ctx()).expect_err("unknown user");
    assert_eq!(
        err,
        SpecError::UnknownUser {
            container: "web".into(),
            user: "ghost".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "container web: unable to find user ghost: the image has no such user in /etc/passwd"
    );
    let err = build(&container(), &image(Some("app:nogroup")), &ctx()).expect_err("group");
    assert!(matches!(err, SpecError::UnknownGroup { .. }));
}

#[test]
fn build_reports_every_other_error() {
    let no_cmd = ImageConfiguration::default();
    assert!(matches!(
        build(&container(), &no_cmd, &ctx()),
        Err(SpecError::NoCommand { .. })
    ));

    let mut c = container();
    c.hostname = Some("bad_host".into());
    assert!(matches!(
        build(&c, &image(None), &ctx()),
        Err(SpecError::InvalidHostname { .. })
    ));

    let mut c = container();
    c.working_directory = Some("relative".into());
    assert!(matches!(
        build(&c, &image(None), &ctx()),
        Err(SpecError::RelativeWorkingDirectory { .. })
    ));

    let mut c = container();
    c.ulimits = vec![Ulimit {
        name: "bogus".into(),
        soft: 1,
        hard: 1,
    }];
    assert!(matches!(
        build(&c, &image(None), &ctx()),
        Err(SpecError::UnknownUlimit { .. })
    ));

    let mut c = container();
    c.limits.memory_mib = Some(1);
    assert!(matches!(
        build(&c, &image(None), &ctx()),
        Err(SpecError::MemoryBelowMinimum { .. })
    ));
}

#[test]
fn host_network_has_no_network_namespace() {
    let mut c = container();
    c.network = NetworkNamespace::Host;
    let spec = build_ok(&c, &image(None));
    let has_net = linux(&spec)
        .namespaces()
        .as_ref()
        .expect("namespaces")
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network);
    assert!(!has_net);
}

#[test]
fn errors_are_lowercase_without_trailing_period() {
    let errors = [
        build(&container(), &ImageConfiguration::default(), &ctx()),
        build(
            &ContainerSpec {
                user: Some("a:b:c".into()),
                ..container()
            },
            &image(None),
            &ctx(),
        ),
        build(
            &ContainerSpec {
                user: Some("9999999999".into()),
                ..container()
            },
            &image(None),
            &ctx(),
        ),
    ];
    for err in errors {
        let msg = err.expect_err("error").to_string();
        assert!(msg.starts_with("container web: "), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

#[test]
fn json_has_exactly_the_expected_fields_and_round_trips() {
    let mut c = container();
    c.hostname = Some("web-1".into());
    c.limits.cpu_units = 256;
    c.limits.memory_mib = Some(64);
    let spec = build_ok(&c, &image(None));
    let json = serde_json::to_string(&spec).expect("serialize");
    assert!(json.contains("\"ociVersion\":\"1.1.0\""), "{json}");
    assert!(!json.contains("youki"), "{json}");

    let value: serde_json::Value = serde_json::from_str(&json).expect("value");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&value),
        [
            "hostname",
            "linux",
            "mounts",
            "ociVersion",
            "process",
            "root"
        ]
    );
    assert_eq!(
        keys(&value["process"]),
        [
            "args",
            "capabilities",
            "cwd",
            "env",
            "noNewPrivileges",
            "rlimits",
            "terminal",
            "user"
        ]
    );
    assert_eq!(
        keys(&value["linux"]),
        [
            "cgroupsPath",
            "maskedPaths",
            "namespaces",
            "readonlyPaths",
            "resources",
            "seccomp"
        ]
    );
    assert_eq!(
        keys(&value["process"]["capabilities"]),
        ["bounding", "effective", "permitted"]
    );
    assert_eq!(
        value["process"]["user"],
        serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(
        value["linux"]["resources"],
        serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "cpu": {"shares": 256},
            "memory": {"limit": 64 << 20}
        })
    );
    assert_eq!(
        value["process"]["rlimits"],
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
    );

    let back: Spec = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, spec);
}

#[test]
fn linux_parameters_reach_the_spec() {
    let mut c = container();
    c.sysctls = BTreeMap::from([("kernel.shmmax".to_owned(), "1234".to_owned())]);
    c.capabilities = crate::model::CapabilityChanges {
        add: vec!["SYS_TIME".into()],
        drop: vec!["ALL".into()],
    };
    c.shm_size_mib = Some(100);
    c.tmpfs = vec![crate::model::TmpfsMount {
        container_path: "/scratch".into(),
        size_mib: 8,
        mount_options: vec!["mode=1777".into()],
    }];
    let value = serde_json::to_value(build_ok(&c, &image(None))).expect("json");
    assert_eq!(
        value["linux"]["sysctl"],
        serde_json::json!({"kernel.shmmax": "1234"})
    );
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(
            value["process"]["capabilities"][set],
            serde_json::json!(["CAP_SYS_TIME"])
        );
    }
    let mounts = value["mounts"].as_array().expect("mounts");
    let shm = mounts
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .expect("shm");
    assert_eq!(
        shm["options"],
        serde_json::json!(["nosuid", "noexec", "nodev", "mode=1777", "size=102400k"])
    );
    assert_eq!(
        mounts.last(),
        Some(&serde_json::json!({
            "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=8192k"]
        }))
    );
}

#[test]
fn bad_linux_parameters_are_refused_by_name() {
    let mut c = container();
    c.sysctls = BTreeMap::from([("kernel.panic".to_owned(), "1".to_owned())]);
    let err = build(&c, &image(None), &ctx()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "container web: kernel parameter kernel.panic cannot be set: it is not a namespaced \
         kernel parameter"
    );
    let mut c = container();
    c.capabilities.add = vec!["NOPE".into()];
    assert!(matches!(
        build(&c, &image(None), &ctx()),
        Err(SpecError::UnknownCapability { .. })
    ));
}

#[test]
fn privileged_is_dockers_privileged() {
    let mut c = container();
    c.privileged = true;
    c.capabilities.drop = vec!["ALL".into()];
    let mut null = oci_spec::runtime::LinuxDevice::default();
    null.set_path("/dev/null".into());
    null.set_typ(oci_spec::runtime::LinuxDeviceType::C);
    null.set_major(1);
    null.set_minor(3);
    let mut context = ctx();
    context.host_devices = vec![null.clone()];
    let spec = build(&c, &image(None), &context).expect("build");
    let p = process(&spec);
    let caps = p.capabilities().as_ref().expect("caps");
    assert_eq!(
        caps.effective().as_ref().map(|s| s.len()),
        Some(berth_policy::CAPABILITIES.len()),
        "privileged ignores capability changes"
    );
    let l = linux(&spec);
    assert_eq!(l.devices(), &Some(vec![null]));
    assert_eq!(l.masked_paths(), &None);
    assert_eq!(l.readonly_paths(), &None);
    let rules = serde_json::to_value(l.resources().as_ref().and_then(|r| r.devices().clone()))
        .expect("json");
    assert_eq!(rules, serde_json::json!([{"allow": true, "access": "rwm"}]));
    let sys = spec
        .mounts()
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.destination().as_os_str() == "/sys"))
        .and_then(|m| m.options().clone())
        .expect("sys");
    assert!(!sys.contains(&"ro".to_owned()), "{sys:?}");

    let unprivileged = build(&container(), &image(None), &context).expect("build");
    assert_eq!(
        linux(&unprivileged).devices(),
        &None,
        "devices only when privileged"
    );
}

#[test]
fn init_runs_first_from_a_read_only_bind_mount() {
    let mut c = container();
    c.init_process = true;
    c.command = Some(vec!["serve".into()]);
    let mut context = ctx();
    assert_eq!(
        build(&c, &image(None), &context),
        Err(SpecError::NoInit {
            container: "web".into()
        })
    );
    context.init_path = Some("/usr/bin/tini-static".into());
    let value =
        serde_json::to_value(build(&c, &image(None), &context).expect("build")).expect("json");
    assert_eq!(
        value["process"]["args"],
        serde_json::json!(["/sbin/docker-init", "--", "/entry", "serve"])
    );
    assert_eq!(
        value["mounts"].as_array().and_then(|m| m.last()),
        Some(
            &serde_json::json!({"destination": "/sbin/docker-init", "type": "bind",
            "source": "/usr/bin/tini-static", "options": ["rbind", "ro"]})
        )
    );
}

fn device(path: &str, major: i64, minor: i64) -> oci_spec::runtime::LinuxDevice {
    let mut d = oci_spec::runtime::LinuxDevice::default();
    d.set_path(path.into());
    d.set_typ(oci_spec::runtime::LinuxDeviceType::C);
    d.set_major(major);
    d.set_minor(minor);
    d
}

#[test]
fn no_new_privileges_is_off_unless_the_definition_sets_it() {
    let nnp = |value: Option<bool>| {
        let mut c = container();
        c.no_new_privileges = value;
        process(&build_ok(&c, &image(None))).no_new_privileges()
    };
    assert_eq!(nnp(None), Some(false), "Docker's and ECS's default");
    assert_eq!(nnp(Some(true)), Some(true));
    assert_eq!(nnp(Some(false)), Some(false));
}

#[test]
fn a_terminal_is_asked_for_with_dockers_term() {
    let mut c = container();
    c.terminal = true;
    let spec = build_ok(&c, &image(None));
    let p = process(&spec);
    assert_eq!(p.terminal(), Some(true));
    assert!(
        p.env()
            .as_ref()
            .is_some_and(|e| e.contains(&"TERM=xterm".to_owned())),
        "{:?}",
        p.env()
    );
    c.environment = BTreeMap::from([("TERM".to_owned(), "dumb".to_owned())]);
    let spec = build_ok(&c, &image(None));
    let env = process(&spec).env().clone().unwrap_or_default();
    assert!(env.contains(&"TERM=dumb".to_owned()) && !env.contains(&"TERM=xterm".to_owned()));
}

#[test]
fn mapped_devices_get_a_node_and_a_cgroup_rule_each() {
    let mut context = ctx();
    context.devices = vec![
        (device("/dev/fuse", 10, 229), "rw".to_owned()),
        (device("/dev/mine", 1, 3), "rwm".to_owned()),
    ];
    let spec = build(&container(), &image(None), &context).expect("build");
    let value = serde_json::to_value(&spec).expect("json");
    assert_eq!(
        value["linux"]["devices"],
        serde_json::json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/mine", "type": "c", "major": 1, "minor": 3}
        ])
    );
    assert_eq!(
        value["linux"]["resources"]["devices"],
        serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ])
    );

    // Privileged: every host device, the mapping winning at its path, and one allow-all rule.
    let mut c = container();
    c.privileged = true;
    context.host_devices = vec![device("/dev/fuse", 10, 229), device("/dev/null", 1, 3)];
    context.devices = vec![(device("/dev/fuse", 10, 230), "r".to_owned())];
    let value =
        serde_json::to_value(build(&c, &image(None), &context).expect("build")).expect("json");
    assert_eq!(
        value["linux"]["devices"],
        serde_json::json!([
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 230}
        ])
    );
    assert_eq!(
        value["linux"]["resources"]["devices"],
        serde_json::json!([{"allow": true, "access": "rwm"}])
    );
}

const PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_BOOT"]}}
]}"#;

#[test]
fn a_seccomp_profile_becomes_the_filter_except_when_privileged() {
    let mut c = container();
    c.seccomp = crate::Seccomp::Profile(crate::SeccompProfile::parse(PROFILE).expect("profile"));
    let value = serde_json::to_value(build_ok(&c, &image(None))).expect("json");
    assert_eq!(
        value["linux"]["seccomp"],
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["reboot"], "action": "SCMP_ACT_ERRNO"}
        ]})
    );
    // A capability the container holds drops the rule that excludes it.
    c.capabilities.add = vec!["SYS_BOOT".into()];
    let value = serde_json::to_value(build_ok(&c, &image(None))).expect("json");
    assert_eq!(
        value["linux"]["seccomp"]["syscalls"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    c.privileged = true;
    assert_eq!(linux(&build_ok(&c, &image(None))).seccomp(), &None);
    c.privileged = false;
    c.seccomp = crate::Seccomp::Unconfined;
    assert_eq!(linux(&build_ok(&c, &image(None))).seccomp(), &None);
}

#[test]
fn swap_follows_what_the_host_can_limit() {
    let mut c = container();
    c.limits.memory_mib = Some(64);
    c.limits.max_swap_mib = Some(16);
    let mut context = ctx();
    let value =
        serde_json::to_value(build(&c, &image(None), &context).expect("build")).expect("json");
    assert_eq!(
        value["linux"]["resources"]["memory"],
        serde_json::json!({"limit": 64 << 20, "swap": 80 << 20, "swappiness": 60})
    );
    context.swap = crate::model::SwapSupport {
        limit: false,
        swappiness: false,
    };
    let value =
        serde_json::to_value(build(&c, &image(None), &context).expect("build")).expect("json");
    assert_eq!(
        value["linux"]["resources"]["memory"],
        serde_json::json!({"limit": 64 << 20})
    );
}

/// `pidMode` and `ipcMode` through the whole spec: each mode's namespaces and `/dev/shm`.
#[test]
fn pid_and_ipc_modes_shape_the_namespaces_and_dev_shm() {
    use crate::model::{IpcNamespace, PidNamespace};
    let img = image(None);
    let shape = |pid, ipc| {
        let mut c = container();
        (c.pid, c.ipc) = (pid, ipc);
        let spec = build_ok(&c, &img);
        let namespaces: Vec<_> = linux(&spec)
            .namespaces()
            .as_ref()
            .expect("namespaces")
            .iter()
            .map(|n| n.typ())
            .collect();
        let shm = spec
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .find(|m| m.destination() == std::path::Path::new("/dev/shm"))
            .map(|m| m.typ().clone().unwrap_or_default());
        (namespaces, shm)
    };
    use LinuxNamespaceType::{Ipc, Mount, Network, Pid, Uts};
    assert_eq!(
        shape(PidNamespace::Private, IpcNamespace::Private),
        (
            vec![Pid, Ipc, Uts, Mount, Network],
            Some("tmpfs".to_owned())
        )
    );
    assert_eq!(
        shape(PidNamespace::Host, IpcNamespace::Host),
        (vec![Uts, Mount, Network], Some("bind".to_owned()))
    );
    assert_eq!(
        shape(PidNamespace::Private, IpcNamespace::None),
        (vec![Pid, Ipc, Uts, Mount, Network], None)
    );
    // task: both namespaces joined by path, the task's /dev/shm bound in.
    assert_eq!(
        shape(
            PidNamespace::Task("/run/berth/taskns/t1/pid".into()),
            IpcNamespace::Task {
                namespace: "/run/berth/taskns/t1/ipc".into(),
                shm: "/run/berth/taskns/t1/shm".into(),
            }
        ),
        (vec![Pid, Ipc, Uts, Mount, Network], Some("bind".to_owned()))
    );
}

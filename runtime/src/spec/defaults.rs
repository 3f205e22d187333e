//! The fixed parts of every container's spec: default mounts, capabilities, masked and
//! read-only paths, and the device cgroup rule (containerd's and Docker's Linux defaults).

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, Mount,
};

/// Default mounts as `(destination, type, source, options)`, in mount order: containerd's
/// default Linux mounts without its `/run` tmpfs, plus a read-only `/sys/fs/cgroup`, which is
/// the set Docker (and nerdctl) give a container.
pub(super) const MOUNTS: [(&str, &str, &str, &[&str]); 7] = [
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
    (
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

/// Docker's default capabilities (also containerd's `defaultUnixCaps`).
pub(super) const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container (Docker's list; containerd's plus `/sys/devices/virtual/powercap`).
pub(super) const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container (containerd's and Docker's list).
pub(super) const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub(super) fn mounts() -> Vec<Mount> {
    MOUNTS
        .iter()
        .map(|(destination, typ, source, options)| {
            let mut mount = Mount::default();
            mount.set_destination((*destination).into());
            mount.set_typ(Some((*typ).to_owned()));
            mount.set_source(Some((*source).into()));
            mount.set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()));
            mount
        })
        .collect()
}

/// Bounding, effective and permitted hold the default set; inheritable and ambient are empty
/// (Docker 20.10.14+ and containerd 1.6.2+ dropped the inheritable set, CVE-2022-24769).
pub(super) fn capabilities() -> LinuxCapabilities {
    let set: Capabilities = CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}

/// containerd's default device rule: deny everything (`a *:* rwm`). runc appends its own
/// allow-list (null, zero, full, tty, random, urandom, /dev/pts, /dev/ptmx, ...) after the
/// spec's rules and creates those device nodes, so the spec lists no devices itself.
pub(super) fn device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_access(Some("rwm".to_owned()));
    vec![deny_all]
}

/// A privileged container's device rule: every device, read, write and mknod.
pub(super) fn allow_all_devices() -> Vec<LinuxDeviceCgroup> {
    let mut allow_all = LinuxDeviceCgroup::default();
    allow_all.set_allow(true);
    allow_all.set_access(Some("rwm".to_owned()));
    vec![allow_all]
}

/// The rule that lets a container use one mapped device with `access` (`rwm` or a subset).
pub(super) fn allow_device(node: &LinuxDevice, access: &str) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(node.typ()));
    rule.set_major(Some(node.major()));
    rule.set_minor(Some(node.minor()));
    rule.set_access(Some(access.to_owned()));
    rule
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_the_default_list_in_order() {
        let got: Vec<_> = mounts()
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap_or_default(),
                    m.source()
                        .as_ref()
                        .map(|s| s.display().to_string())
                        .unwrap_or_default(),
                    m.options().clone().unwrap_or_default().join(","),
                )
            })
            .collect();
        let want: Vec<_> = [
            ("/proc", "proc", "proc", "nosuid,noexec,nodev"),
            (
                "/dev",
                "tmpfs",
                "tmpfs",
                "nosuid,strictatime,mode=755,size=65536k",
            ),
            (
                "/dev/pts",
                "devpts",
                "devpts",
                "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
            ),
            (
                "/dev/shm",
                "tmpfs",
                "shm",
                "nosuid,noexec,nodev,mode=1777,size=65536k",
            ),
            ("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"),
            ("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"),
            (
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                "nosuid,noexec,nodev,relatime,ro",
            ),
        ]
        .iter()
        .map(|(d, t, s, o)| (d.to_string(), t.to_string(), s.to_string(), o.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_default_set_is_the_policys() {
        let ours: Vec<String> = CAPABILITIES
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .expect("json")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let policy: Vec<String> = berth_policy::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        assert_eq!(ours, policy);
    }

    #[test]
    fn capabilities_are_dockers_defaults() {
        let caps = capabilities();
        let want: Capabilities = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ]
        .iter()
        .map(|name| {
            serde_json::from_value(serde_json::Value::String((*name).into())).expect("capability")
        })
        .collect();
        assert_eq!(want.len(), 14);
        assert_eq!(caps.bounding().as_ref(), Some(&want));
        assert_eq!(caps.effective().as_ref(), Some(&want));
        assert_eq!(caps.permitted().as_ref(), Some(&want));
        assert_eq!(caps.inheritable(), &None);
        assert_eq!(caps.ambient(), &None);
    }

    #[test]
    fn masked_and_readonly_paths() {
        assert!(MASKED_PATHS.contains(&"/proc/kcore"));
        assert!(MASKED_PATHS.contains(&"/sys/devices/virtual/powercap"));
        assert_eq!(READONLY_PATHS.len(), 5);
        assert!(MASKED_PATHS.iter().all(|p| !READONLY_PATHS.contains(p)));
    }

    #[test]
    fn device_rules_deny_all() {
        let json = serde_json::to_value(device_rules()).expect("json");
        assert_eq!(
            json,
            serde_json::json!([{ "allow": false, "access": "rwm" }])
        );
    }
}

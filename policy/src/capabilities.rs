//! The Linux capabilities, by the names a task definition uses for them.

/// Every capability the kernel knows (5.9 and later), without `CAP_`, in the kernel's numbering:
/// a capability's index here is its bit in a capability set.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities (containerd's `defaultUnixCaps`), which every container gets
/// unless it drops them: a host agent allows any of these without asking its operator.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The capability `name` stands for, read as Docker reads `--cap-add` (any case, with or
/// without `CAP_`): its entry in [`CAPABILITIES`], or `None` when the kernel has no such
/// capability. `ALL` is not one: see [`is_all`].
pub fn capability(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.into_iter().find(|known| *known == bare)
}

/// Whether `name` is `ALL` (in any case), which stands for every capability.
pub fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_docker_reads_them() {
        assert_eq!(capability("NET_ADMIN"), Some("NET_ADMIN"));
        assert_eq!(capability("cap_net_admin"), Some("NET_ADMIN"));
        assert_eq!(capability("Sys_Time"), Some("SYS_TIME"));
        assert_eq!(capability("NET_ADMINS"), None);
        assert_eq!(capability("ALL"), None);
        assert_eq!(capability(""), None);
        assert!(is_all("all") && is_all("ALL"));
        assert!(!is_all("CAP_ALL"));
        assert!(
            DEFAULT_CAPABILITIES
                .iter()
                .all(|c| capability(c) == Some(*c))
        );
    }

    #[test]
    fn the_index_is_the_kernel_bit() {
        // include/uapi/linux/capability.h
        assert_eq!(CAPABILITIES[0], "CHOWN");
        assert_eq!(CAPABILITIES[12], "NET_ADMIN");
        assert_eq!(CAPABILITIES[21], "SYS_ADMIN");
        assert_eq!(CAPABILITIES[24], "SYS_RESOURCE");
        assert_eq!(CAPABILITIES[40], "CHECKPOINT_RESTORE");
        let mut unique = CAPABILITIES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), CAPABILITIES.len());
    }
}

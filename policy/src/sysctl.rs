//! The kernel parameters (sysctls) a container may set: those the kernel scopes to one of the
//! container's own namespaces, as Docker allows them. A parameter of the host is never one.

/// The IPC kernel parameters scoped to an IPC namespace (Docker's list); every `fs.mqueue.*`
/// parameter is too.
pub const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespace of the container that a kernel parameter it may set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    /// The container's IPC namespace: [`IPC_SYSCTLS`] and `fs.mqueue.*`.
    Ipc,
    /// The container's network namespace: `net.*`, which needs a namespace of its own (not the
    /// host's).
    Network,
}

/// The namespace the kernel parameter `name` belongs to, or `None` when a container may not
/// set it (it is the host's). The name is matched as written; whether it is well formed
/// beyond its prefix is for the caller to check.
pub fn sysctl_namespace(name: &str) -> Option<SysctlNamespace> {
    if name.starts_with("net.") {
        Some(SysctlNamespace::Network)
    } else if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(SysctlNamespace::Ipc)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_parameters_only() {
        assert_eq!(
            sysctl_namespace("kernel.shmmax"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(
            sysctl_namespace("fs.mqueue.msg_max"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(
            sysctl_namespace("net.ipv4.ip_forward"),
            Some(SysctlNamespace::Network)
        );
        for host in [
            "kernel.hostname",
            "kernel.panic",
            "vm.swappiness",
            "net",
            "fs.mqueue",
        ] {
            assert_eq!(sysctl_namespace(host), None, "{host}");
        }
    }
}

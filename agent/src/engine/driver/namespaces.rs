//! A task's `pidMode` and `ipcMode` (ECS's and Docker's semantics) as the runtime takes them:
//! `host` only where the agent's allow_host_pid_ipc says so, `task` as the namespace files the
//! runtime makes for the task (held by its holder process), which every container joins.

use berth_proto::v1::TaskDefinition;
use berth_runtime::{
    ContainerSpec, DEFAULT_SHM_MIB, IpcNamespace, PidNamespace, SharedNamespaces,
    TaskNamespacePaths,
};

/// Why a task's `pidMode` or `ipcMode` cannot run on this agent.
#[derive(Debug, thiserror::Error)]
pub(super) enum NamespaceModeError {
    /// `host` on an agent that does not allow it.
    #[error(
        "the task asks for {0} host (the host's namespace), which this agent does not allow: \
         set allow_host_pid_ipc = true (BERTH_ALLOW_HOST_PID_IPC) in the agent's \
         configuration to permit it"
    )]
    Host(&'static str),
    /// A mode this agent does not run (the scheduler refuses it at registration too).
    #[error(
        "the task asks for {field} `{value}`, which this agent does not run: leave {field} \
         out, or use {supported}"
    )]
    Unsupported {
        field: &'static str,
        value: String,
        supported: &'static str,
    },
}

/// The task's `pidMode` and `ipcMode` for each of its containers: `host` only where
/// `allow_host` (the agent's allow_host_pid_ipc) says so; `task` joins `paths`.
pub(super) fn namespace_modes(
    def: &TaskDefinition,
    allow_host: bool,
    paths: &TaskNamespacePaths,
) -> Result<(PidNamespace, IpcNamespace), NamespaceModeError> {
    let host = |field| {
        if allow_host {
            Ok(())
        } else {
            Err(NamespaceModeError::Host(field))
        }
    };
    let unknown = |field, value: &str, supported| NamespaceModeError::Unsupported {
        field,
        value: value.to_owned(),
        supported,
    };
    let pid = match def.pid_mode.as_str() {
        "" => PidNamespace::Private,
        "host" => host("pidMode").map(|()| PidNamespace::Host)?,
        "task" => PidNamespace::Task(paths.pid.clone()),
        other => return Err(unknown("pidMode", other, "host or task")),
    };
    let ipc = match def.ipc_mode.as_str() {
        "" => IpcNamespace::Private,
        "none" => IpcNamespace::None,
        "host" => host("ipcMode").map(|()| IpcNamespace::Host)?,
        "task" => IpcNamespace::Task {
            namespace: paths.ipc.clone(),
            shm: paths.shm.clone(),
        },
        other => return Err(unknown("ipcMode", other, "host, task or none")),
    };
    Ok((pid, ipc))
}

/// What of the task its containers share (`pidMode`/`ipcMode` task), read from its definition:
/// what its holder keeps while the task runs (the size of `/dev/shm` does not matter here).
pub(super) fn shared_by(def: &TaskDefinition) -> Option<SharedNamespaces> {
    let (pid, ipc) = (def.pid_mode == "task", def.ipc_mode == "task");
    (pid || ipc).then_some(SharedNamespaces {
        pid,
        ipc,
        shm_size_mib: DEFAULT_SHM_MIB,
    })
}

/// The stop reason of a task whose namespace holder died while it ran. It starts with ECS's
/// words for an essential container's exit: the holder is the task's essential pause
/// container there.
pub(super) fn holder_gone_reason(shared: SharedNamespaces) -> String {
    let held = if shared.pid {
        "it was PID 1 of the PID namespace its containers share (pidMode task), and the \
         kernel killed every process of that namespace with it"
    } else {
        "it held the IPC namespace its containers share (ipcMode task)"
    };
    format!(
        "Essential container in task exited: the task's namespace holder (berth-ns-holder, \
         berth-agent task-holder) is gone; {held}"
    )
}

/// What the runtime makes for the task before its containers are created, when they share a
/// namespace: the shared `/dev/shm` as large as the largest any container asks for
/// (`sharedMemorySize`), Docker's 64 MiB when none does.
pub(super) fn shared_namespaces(specs: &[ContainerSpec]) -> Option<SharedNamespaces> {
    let first = specs.first()?;
    let pid = matches!(first.pid, PidNamespace::Task(_));
    let ipc = matches!(first.ipc, IpcNamespace::Task { .. });
    (pid || ipc).then(|| SharedNamespaces {
        pid,
        ipc,
        shm_size_mib: specs
            .iter()
            .filter_map(|s| s.shm_size_mib)
            .max()
            .unwrap_or(DEFAULT_SHM_MIB),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(pid_mode: &str, ipc_mode: &str) -> TaskDefinition {
        TaskDefinition {
            pid_mode: pid_mode.to_owned(),
            ipc_mode: ipc_mode.to_owned(),
            ..TaskDefinition::default()
        }
    }

    fn paths() -> TaskNamespacePaths {
        TaskNamespacePaths {
            pid: "/ns/t1/pid".into(),
            ipc: "/ns/t1/ipc".into(),
            shm: "/ns/t1/shm".into(),
        }
    }

    #[test]
    fn pid_and_ipc_modes_map_to_the_runtime_and_host_needs_the_key() {
        let modes = |pid, ipc, allow| namespace_modes(&def(pid, ipc), allow, &paths());
        assert_eq!(
            modes("", "", false).unwrap(),
            (PidNamespace::Private, IpcNamespace::Private)
        );
        assert_eq!(
            modes("", "none", false).unwrap(),
            (PidNamespace::Private, IpcNamespace::None)
        );
        assert_eq!(
            modes("host", "host", true).unwrap(),
            (PidNamespace::Host, IpcNamespace::Host)
        );
        // task needs no key: the namespaces are the task's own.
        assert_eq!(
            modes("task", "task", false).unwrap(),
            (
                PidNamespace::Task("/ns/t1/pid".into()),
                IpcNamespace::Task {
                    namespace: "/ns/t1/ipc".into(),
                    shm: "/ns/t1/shm".into(),
                }
            )
        );
        for (pid, ipc, field) in [("host", "", "pidMode"), ("", "host", "ipcMode")] {
            let refused = modes(pid, ipc, false).unwrap_err().to_string();
            assert_eq!(
                refused,
                format!(
                    "the task asks for {field} host (the host's namespace), which this agent \
                     does not allow: set allow_host_pid_ipc = true (BERTH_ALLOW_HOST_PID_IPC) \
                     in the agent's configuration to permit it"
                )
            );
        }
        assert_eq!(
            modes("none", "", true).unwrap_err().to_string(),
            "the task asks for pidMode `none`, which this agent does not run: leave pidMode \
             out, or use host or task"
        );
        assert_eq!(
            modes("", "shareable", true).unwrap_err().to_string(),
            "the task asks for ipcMode `shareable`, which this agent does not run: leave \
             ipcMode out, or use host, task or none"
        );
    }

    #[test]
    fn what_the_holder_keeps_follows_the_modes_and_its_loss_is_named() {
        assert_eq!(shared_by(&def("", "")), None);
        assert_eq!(shared_by(&def("host", "none")), None);
        let pid = shared_by(&def("task", "")).unwrap();
        assert!(pid.pid && !pid.ipc);
        let ipc = shared_by(&def("host", "task")).unwrap();
        assert!(!ipc.pid && ipc.ipc);
        assert_eq!(
            holder_gone_reason(pid),
            "Essential container in task exited: the task's namespace holder (berth-ns-holder, \
             berth-agent task-holder) is gone; it was PID 1 of the PID namespace its containers \
             share (pidMode task), and the kernel killed every process of that namespace with it"
        );
        assert!(
            holder_gone_reason(ipc).ends_with(
                "is gone; it held the IPC namespace its containers share (ipcMode task)"
            )
        );
    }

    #[test]
    fn shared_namespaces_follow_the_modes_and_the_largest_shm() {
        let spec = |pid: PidNamespace, ipc: IpcNamespace, shm| ContainerSpec {
            pid,
            ipc,
            shm_size_mib: shm,
            ..ContainerSpec::default()
        };
        let task_ipc = IpcNamespace::Task {
            namespace: "/ns/t1/ipc".into(),
            shm: "/ns/t1/shm".into(),
        };
        assert_eq!(shared_namespaces(&[]), None);
        assert_eq!(
            shared_namespaces(&[spec(PidNamespace::Host, IpcNamespace::None, Some(9))]),
            None
        );
        assert_eq!(
            shared_namespaces(&[
                spec(PidNamespace::Task("/p".into()), IpcNamespace::Private, None),
                spec(PidNamespace::Task("/p".into()), IpcNamespace::Private, None),
            ]),
            Some(SharedNamespaces {
                pid: true,
                ipc: false,
                shm_size_mib: 64
            })
        );
        assert_eq!(
            shared_namespaces(&[
                spec(PidNamespace::Private, task_ipc.clone(), Some(128)),
                spec(PidNamespace::Private, task_ipc, Some(256)),
            ]),
            Some(SharedNamespaces {
                pid: false,
                ipc: true,
                shm_size_mib: 256
            })
        );
    }
}

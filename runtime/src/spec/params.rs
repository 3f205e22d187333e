//! The ECS Linux parameters that change a spec's fixed parts: capabilities added and dropped
//! (Docker's rules, `ALL` included), namespaced sysctls, the size of `/dev/shm`, and tmpfs
//! mounts.

use std::collections::HashMap;

use berth_policy::{CAPABILITIES, SysctlNamespace, is_all, sysctl_namespace};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Mount};

use super::{SpecError, defaults};
use crate::model::{CapabilityChanges, IpcNamespace, NetworkNamespace, TmpfsMount};

/// Where a container's POSIX shared memory lives.
const SHM: &str = "/dev/shm";

/// The options Docker gives every tmpfs unless the definition says otherwise.
const TMPFS_DEFAULT_OPTIONS: [&str; 3] = ["nosuid", "nodev", "noexec"];

fn capability(name: &str, container: &str) -> Result<Capability, SpecError> {
    let unknown = || SpecError::UnknownCapability {
        container: container.to_owned(),
        name: name.to_owned(),
    };
    let known = berth_policy::capability(name).ok_or_else(unknown)?;
    serde_json::from_value(serde_json::Value::String(format!("CAP_{known}"))).map_err(|_| unknown())
}

/// The capabilities `ALL` stands for: the known ones whose bit is set in `bounding` (the agent's
/// own bounding set, as containerd's `WithAllCurrentCapabilities`; a container cannot get more),
/// or every known one when `bounding` is `None`.
fn all_of(bounding: Option<u64>, container: &str) -> Result<Capabilities, SpecError> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding.is_none_or(|mask| mask & (1u64 << bit) != 0))
        .map(|(_, n)| capability(n, container))
        .collect()
}

/// The `CapBnd` mask of a `/proc/<pid>/status` text.
pub(crate) fn parse_bounding_set(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The capability set after Docker's `--cap-add`/`--cap-drop` rules: start from every
/// capability (see [`all_of`]) when `add` holds ALL, from none when `drop` holds ALL, else from the defaults;
/// then drop the named ones (unless `drop` is ALL) and add the named ones (unless `add` is
/// ALL). The set goes to the bounding, effective and permitted sets alike.
pub(super) fn capabilities(
    changes: &CapabilityChanges,
    bounding: Option<u64>,
    container: &str,
) -> Result<LinuxCapabilities, SpecError> {
    if changes.add.is_empty() && changes.drop.is_empty() {
        return Ok(defaults::capabilities());
    }
    let add_all = changes.add.iter().any(|n| is_all(n));
    let drop_all = changes.drop.iter().any(|n| is_all(n));
    let mut set: Capabilities = if add_all {
        all_of(bounding, container)?
    } else if drop_all {
        Capabilities::new()
    } else {
        defaults::CAPABILITIES.into_iter().collect()
    };
    if !drop_all {
        for name in &changes.drop {
            set.remove(&capability(name, container)?);
        }
    }
    if !add_all {
        for name in &changes.add {
            set.insert(capability(name, container)?);
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    Ok(caps)
}

/// Every capability in every set, for a privileged container.
pub(super) fn all_capabilities(
    bounding: Option<u64>,
    container: &str,
) -> Result<LinuxCapabilities, SpecError> {
    capabilities(
        &CapabilityChanges {
            add: vec!["ALL".to_owned()],
            drop: Vec::new(),
        },
        bounding,
        container,
    )
}

/// A privileged container's mounts: `/sys` and `/sys/fs/cgroup` lose their `ro`, as Docker's.
pub(super) fn make_writable(mounts: &mut [Mount]) {
    for m in mounts.iter_mut().filter(|m| {
        let d = m.destination().as_os_str();
        d == "/sys" || d == "/sys/fs/cgroup"
    }) {
        let options = m
            .options()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o != "ro")
            .collect();
        m.set_options(Some(options));
    }
}

/// `linux.sysctl`: only parameters the kernel scopes to the container's own IPC or network
/// namespace; `net.*` is refused in the host's network namespace, where it would change the
/// host. `None` when there are none.
pub(super) fn sysctls(
    sysctls: &std::collections::BTreeMap<String, String>,
    network: &NetworkNamespace,
    container: &str,
) -> Result<Option<HashMap<String, String>>, SpecError> {
    for name in sysctls.keys() {
        let reason = match sysctl_namespace(name) {
            Some(SysctlNamespace::Network) => (*network == NetworkNamespace::Host)
                .then_some("net.* parameters need the container's own network namespace"),
            Some(SysctlNamespace::Ipc) => None,
            None => Some("it is not a namespaced kernel parameter"),
        };
        if let Some(reason) = reason {
            return Err(SpecError::InvalidSysctl {
                container: container.to_owned(),
                name: name.clone(),
                reason,
            });
        }
    }
    Ok((!sysctls.is_empty()).then(|| {
        sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }))
}

/// The container's mounts: the defaults with `/dev/shm` sized as asked (Docker's: the host's
/// `/dev/shm` bound in with `ipcMode` host, the task's with `ipcMode` task, none at all with
/// `ipcMode` none), then the tmpfs
/// mounts (Docker's `nosuid,nodev,noexec` unless an option says the opposite, the
/// definition's options, and the size).
pub(super) fn mounts(
    shm_size_mib: Option<u64>,
    ipc: &IpcNamespace,
    tmpfs: &[TmpfsMount],
    container: &str,
) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = defaults::mounts();
    let shared_shm = match ipc {
        IpcNamespace::Private => None,
        IpcNamespace::None => {
            mounts.retain(|m| m.destination().as_os_str() != SHM);
            None
        }
        IpcNamespace::Host => Some(std::path::Path::new(SHM)),
        IpcNamespace::Task { shm, .. } => Some(shm.as_path()),
    };
    if let Some(source) = shared_shm {
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination().as_os_str() == SHM)
        {
            m.set_typ(Some("bind".to_owned()));
            m.set_source(Some(source.to_path_buf()));
            m.set_options(Some(
                ["rbind", "rw", "nosuid", "nodev", "noexec"]
                    .map(str::to_owned)
                    .to_vec(),
            ));
        }
    }
    // The host's /dev/shm, and the task's, keep their own size.
    if let Some(mib) = shm_size_mib.filter(|_| *ipc == IpcNamespace::Private) {
        let kib = kib(mib, SHM, container)?;
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination().as_os_str() == SHM)
        {
            let options = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("size="))
                .chain(std::iter::once(format!("size={kib}k")))
                .collect();
            m.set_options(Some(options));
        }
    }
    for t in tmpfs {
        if !t.container_path.starts_with('/') {
            return Err(SpecError::InvalidTmpfs {
                container: container.to_owned(),
                path: t.container_path.clone(),
                reason: "the path is not absolute".to_owned(),
            });
        }
        let kib = kib(t.size_mib, &t.container_path, container)?;
        let opposite = |o: &str| -> String {
            match o.strip_prefix("no") {
                Some(rest) => rest.to_owned(),
                None => format!("no{o}"),
            }
        };
        let mut options: Vec<String> = TMPFS_DEFAULT_OPTIONS
            .iter()
            .filter(|d| !t.mount_options.contains(&opposite(d)))
            .map(|d| (*d).to_owned())
            .collect();
        for o in &t.mount_options {
            if o != "defaults" && !options.contains(o) {
                options.push(o.clone());
            }
        }
        options.retain(|o| !o.starts_with("size="));
        options.push(format!("size={kib}k"));
        let mut mount = Mount::default();
        mount.set_destination(t.container_path.clone().into());
        mount.set_typ(Some("tmpfs".to_owned()));
        mount.set_source(Some("tmpfs".into()));
        mount.set_options(Some(options));
        mounts.push(mount);
    }
    Ok(mounts)
}

fn kib(mib: u64, path: &str, container: &str) -> Result<u64, SpecError> {
    if mib == 0 {
        return Err(SpecError::InvalidTmpfs {
            container: container.to_owned(),
            path: path.to_owned(),
            reason: "the size is 0 MiB".to_owned(),
        });
    }
    mib.checked_mul(1024)
        .ok_or_else(|| SpecError::InvalidTmpfs {
            container: container.to_owned(),
            path: path.to_owned(),
            reason: format!("{mib} MiB is too large"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn names(set: &Option<Capabilities>) -> Vec<String> {
        let mut names: Vec<String> = set
            .as_ref()
            .expect("set")
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .expect("json")
                    .as_str()
                    .expect("string")
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn changes(add: &[&str], drop: &[&str]) -> CapabilityChanges {
        CapabilityChanges {
            add: add.iter().map(|s| (*s).to_owned()).collect(),
            drop: drop.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn no_changes_are_the_defaults() {
        let caps = capabilities(&CapabilityChanges::default(), None, "c").expect("caps");
        assert_eq!(caps, defaults::capabilities());
    }

    #[test]
    fn add_and_drop_with_or_without_prefix() {
        let caps = capabilities(
            &changes(&["NET_ADMIN", "cap_sys_time"], &["CAP_CHOWN", "mknod"]),
            None,
            "c",
        )
        .expect("caps");
        let got = names(caps.effective());
        assert!(got.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(got.contains(&"CAP_SYS_TIME".to_owned()));
        assert!(!got.contains(&"CAP_CHOWN".to_owned()));
        assert!(!got.contains(&"CAP_MKNOD".to_owned()));
        assert_eq!(got.len(), 14);
        assert_eq!(caps.bounding(), caps.effective());
        assert_eq!(caps.permitted(), caps.effective());
        assert_eq!(caps.inheritable(), &None);
    }

    #[test]
    fn privileged_has_every_capability_and_writable_sys() {
        let caps = all_capabilities(None, "c").expect("caps");
        assert_eq!(names(caps.bounding()).len(), CAPABILITIES.len());
        // Within the agent's own bounding set: here without CAP_SYS_RESOURCE (bit 24).
        let caps = all_capabilities(Some(0x1ff_feff_ffff), "c").expect("caps");
        let got = names(caps.bounding());
        assert_eq!(got.len(), CAPABILITIES.len() - 1);
        assert!(!got.contains(&"CAP_SYS_RESOURCE".to_owned()));
        assert_eq!(CAPABILITIES[24], "SYS_RESOURCE");
        assert_eq!(CAPABILITIES[40], "CHECKPOINT_RESTORE");
        assert_eq!(
            parse_bounding_set("Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"),
            Some(0x1ff_feff_ffff)
        );
        assert_eq!(parse_bounding_set("Name:\tx\n"), None);
        let mut mounts = defaults::mounts();
        make_writable(&mut mounts);
        assert_eq!(options_of(&mounts, "/sys").join(","), "nosuid,noexec,nodev");
        assert_eq!(
            options_of(&mounts, "/sys/fs/cgroup").join(","),
            "nosuid,noexec,nodev,relatime"
        );
        assert_eq!(
            options_of(&mounts, "/proc").join(","),
            "nosuid,noexec,nodev",
            "other mounts are untouched"
        );
    }

    #[test]
    fn drop_all_then_add() {
        let caps =
            capabilities(&changes(&["NET_BIND_SERVICE"], &["ALL"]), None, "c").expect("caps");
        assert_eq!(names(caps.effective()), ["CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn add_all_then_drop() {
        let caps = capabilities(&changes(&["ALL"], &["SYS_ADMIN"]), None, "c").expect("caps");
        let got = names(caps.effective());
        assert_eq!(got.len(), CAPABILITIES.len() - 1);
        assert!(!got.contains(&"CAP_SYS_ADMIN".to_owned()));
    }

    #[test]
    fn unknown_capability_is_named() {
        assert_eq!(
            capabilities(&changes(&["NET_ADMN"], &[]), None, "web"),
            Err(SpecError::UnknownCapability {
                container: "web".into(),
                name: "NET_ADMN".into()
            })
        );
    }

    #[test]
    fn sysctls_are_namespaced_only() {
        let map = |k: &str| BTreeMap::from([(k.to_owned(), "1".to_owned())]);
        assert_eq!(
            sysctls(&BTreeMap::new(), &NetworkNamespace::New, "c"),
            Ok(None)
        );
        for ok in [
            "kernel.shmmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
        ] {
            let got = sysctls(&map(ok), &NetworkNamespace::New, "c").expect(ok);
            assert_eq!(got.and_then(|m| m.get(ok).cloned()).as_deref(), Some("1"));
        }
        assert!(matches!(
            sysctls(&map("kernel.hostname"), &NetworkNamespace::New, "c"),
            Err(SpecError::InvalidSysctl { .. })
        ));
        assert!(matches!(
            sysctls(&map("net.ipv4.ip_forward"), &NetworkNamespace::Host, "c"),
            Err(SpecError::InvalidSysctl { .. })
        ));
    }

    fn options_of<'a>(mounts: &'a [Mount], dest: &str) -> &'a [String] {
        mounts
            .iter()
            .find(|m| m.destination().as_os_str() == dest)
            .and_then(|m| m.options().as_deref())
            .expect("mount")
    }

    #[test]
    fn shm_size_replaces_the_default() {
        let mounts = mounts(Some(128), &IpcNamespace::Private, &[], "c").expect("mounts");
        assert_eq!(
            options_of(&mounts, "/dev/shm").join(","),
            "nosuid,noexec,nodev,mode=1777,size=131072k"
        );
        assert_eq!(mounts.len(), defaults::MOUNTS.len());
        assert_eq!(
            super::mounts(None, &IpcNamespace::Private, &[], "c"),
            Ok(defaults::mounts())
        );
    }

    #[test]
    fn ipc_modes_decide_dev_shm() {
        // none: no /dev/shm at all (Docker's --ipc=none), whatever size was asked.
        let none = mounts(Some(128), &IpcNamespace::None, &[], "c").expect("mounts");
        assert!(
            none.iter()
                .all(|m| m.destination().as_os_str() != "/dev/shm")
        );
        assert_eq!(none.len(), defaults::MOUNTS.len() - 1);
        // host: the host's /dev/shm bound in, its size the host's.
        let host = mounts(Some(128), &IpcNamespace::Host, &[], "c").expect("mounts");
        let shm = host
            .iter()
            .find(|m| m.destination().as_os_str() == "/dev/shm")
            .expect("/dev/shm");
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(std::path::Path::new("/dev/shm"))
        );
        assert_eq!(
            options_of(&host, "/dev/shm").join(","),
            "rbind,rw,nosuid,nodev,noexec"
        );
        assert_eq!(host.len(), defaults::MOUNTS.len());
        // task: the task's /dev/shm bound in, as the host's is, its size the task's.
        let task = IpcNamespace::Task {
            namespace: "/run/berth/taskns/t1/ipc".into(),
            shm: "/run/berth/taskns/t1/shm".into(),
        };
        let shared = mounts(Some(128), &task, &[], "c").expect("mounts");
        let shm = shared
            .iter()
            .find(|m| m.destination().as_os_str() == "/dev/shm")
            .expect("/dev/shm");
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(std::path::Path::new("/run/berth/taskns/t1/shm"))
        );
        assert_eq!(
            options_of(&shared, "/dev/shm").join(","),
            "rbind,rw,nosuid,nodev,noexec"
        );
        assert_eq!(shared.len(), defaults::MOUNTS.len());
    }

    #[test]
    fn tmpfs_gets_dockers_defaults_and_its_options() {
        let t = |path: &str, opts: &[&str]| TmpfsMount {
            container_path: path.into(),
            size_mib: 16,
            mount_options: opts.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mounts = mounts(
            None,
            &IpcNamespace::Private,
            &[
                t("/scratch", &[]),
                t("/run", &["exec", "mode=1777", "defaults"]),
            ],
            "c",
        )
        .expect("mounts");
        let scratch = mounts
            .iter()
            .find(|m| m.destination().as_os_str() == "/scratch");
        let scratch = scratch.expect("scratch");
        assert_eq!(scratch.typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            options_of(&mounts, "/scratch").join(","),
            "nosuid,nodev,noexec,size=16384k"
        );
        assert_eq!(
            options_of(&mounts, "/run").join(","),
            "nosuid,nodev,exec,mode=1777,size=16384k"
        );
        assert!(matches!(
            super::mounts(None, &IpcNamespace::Private, &[t("relative", &[])], "c"),
            Err(SpecError::InvalidTmpfs { .. })
        ));
    }
}

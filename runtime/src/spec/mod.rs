//! OCI runtime spec building: turns a [`ContainerSpec`] and its image's configuration into
//! the `config.json` containerd hands to runc, with Docker's merge rules and defaults.
//!
//! Pure: no file is read here. The caller reads the image's `/etc/passwd` and `/etc/group`
//! when [`needs_user_database`] says so and passes their text in [`SpecContext`].

mod defaults;
mod error;
pub(crate) mod etc;
mod linux;
mod mounts;
pub(crate) mod params;
mod process;
mod rlimits;
mod seccomp;
mod user;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Linux, Process, Root, Spec, User, VERSION};

use crate::model::{ContainerSpec, Seccomp};

pub use error::SpecError;
pub(crate) use seccomp::SeccompHost;
pub use seccomp::{SeccompProfile, SeccompProfileError};
pub(crate) use user::needs_user_database;

/// Where the init of `initProcessEnabled` appears in the container (Docker's path).
const INIT_IN_CONTAINER: &str = "/sbin/docker-init";

/// What [`build`] needs besides the container definition and the image configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecContext<'a> {
    /// The container's cgroup, `/berth/<task-id>/<container>`; becomes `linux.cgroupsPath`.
    pub(crate) cgroups_path: String,
    /// The image's `/etc/passwd`, if the caller read it (`None`: resolves like an empty file).
    pub(crate) passwd: Option<&'a str>,
    /// The image's `/etc/group`, if the caller read it.
    pub(crate) group: Option<&'a str>,
    /// The init binary on the host for `initProcessEnabled`.
    pub(crate) init_path: Option<std::path::PathBuf>,
    /// The agent's own capability bounding set (`CapBnd`), which bounds what `ALL` and
    /// privileged give; `None` means every capability the kernel knows.
    pub(crate) bounding_capabilities: Option<u64>,
    /// The host's device nodes, given to a privileged container (ignored otherwise).
    pub(crate) host_devices: Vec<oci_spec::runtime::LinuxDevice>,
    /// Bind mounts of the container's own files (`/etc/hosts`, `/etc/resolv.conf`, see
    /// [`etc`]), added after every other mount.
    pub(crate) file_mounts: Vec<oci_spec::runtime::Mount>,
    /// The nodes of the container's mapped devices (ECS `devices`), as the caller found them on
    /// the host, each with its device cgroup access (`rwm` or a subset).
    pub(crate) devices: Vec<(oci_spec::runtime::LinuxDevice, String)>,
    /// What the container's cgroups can limit of swap.
    pub(crate) swap: crate::model::SwapSupport,
    /// The host's architecture and kernel, for a seccomp profile's conditional rules.
    pub(crate) seccomp_host: SeccompHost,
}

/// The user the container runs as before resolution: the definition's `user`, else the
/// image's `User`; `None` means root. An empty string counts as unset, as in Docker. Pass it
/// to [`needs_user_database`] to learn whether to read the image's passwd and group files.
pub(crate) fn effective_user<'a>(
    container: &'a ContainerSpec,
    image: &'a ImageConfiguration,
) -> Option<&'a str> {
    container
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            image
                .config()
                .as_ref()
                .and_then(|c| c.user().as_deref())
                .filter(|u| !u.is_empty())
        })
}

/// Builds the OCI runtime spec for one container.
///
/// Every field is set here explicitly (oci-spec's `Default` impls carry youki's sample values,
/// which must not leak in): process (args, env, cwd, user, capabilities, rlimits,
/// noNewPrivileges), root (`rootfs`, read-only on request), hostname, the default mounts, and
/// the Linux section (namespaces, resources, cgroupsPath, masked and read-only paths).
pub(crate) fn build(
    container: &ContainerSpec,
    image: &ImageConfiguration,
    ctx: &SpecContext<'_>,
) -> Result<Spec, SpecError> {
    let name = container.name.as_str();
    let config = image.config().as_ref();

    let mut args = process::args(container, config)?;
    if container.init_process {
        args.splice(0..0, [INIT_IN_CONTAINER.to_owned(), "--".to_owned()]);
    }
    let env = process::env(container, config)?;
    let cwd = process::cwd(container, config)?;
    let resolved = user::resolve(
        effective_user(container, image).unwrap_or_default(),
        ctx.passwd,
        ctx.group,
        name,
    )?;
    let rlimits = rlimits::rlimits(&container.ulimits, name)?;
    if let Some(hostname) = &container.hostname {
        linux::validate_hostname(hostname, name)?;
    }
    let mut resources = linux::resources(&container.limits, ctx.swap, name)?;
    let capabilities = if container.privileged {
        params::all_capabilities(ctx.bounding_capabilities, name)?
    } else {
        params::capabilities(&container.capabilities, ctx.bounding_capabilities, name)?
    };
    let sysctls = params::sysctls(&container.sysctls, &container.network, name)?;
    let base = params::mounts(
        container.shm_size_mib,
        &container.ipc,
        &container.tmpfs,
        name,
    )?;
    let mut mounts = mounts::mounts(base, &container.mounts, name)?;
    mounts.extend(ctx.file_mounts.iter().cloned());
    if container.init_process {
        let source = ctx.init_path.clone().ok_or_else(|| SpecError::NoInit {
            container: name.to_owned(),
        })?;
        let mut init = oci_spec::runtime::Mount::default();
        init.set_destination(INIT_IN_CONTAINER.into());
        init.set_typ(Some("bind".to_owned()));
        init.set_source(Some(source));
        init.set_options(Some(vec!["rbind".to_owned(), "ro".to_owned()]));
        mounts.push(init);
    }
    // Docker's --privileged: every device (nodes and cgroup access), nothing masked or
    // read-only, /sys and the cgroup tree writable. Mapped devices come on top, as with
    // Docker's --device (a mapping wins over the host node at the same path).
    let mapped = ctx.devices.iter().map(|(node, _)| node.clone());
    let (devices, masked_paths, readonly_paths) = if container.privileged {
        params::make_writable(&mut mounts);
        resources.set_devices(Some(defaults::allow_all_devices()));
        let mut nodes: Vec<_> = ctx
            .host_devices
            .iter()
            .filter(|h| ctx.devices.iter().all(|(m, _)| m.path() != h.path()))
            .cloned()
            .collect();
        nodes.extend(mapped);
        (Some(nodes), None, None)
    } else {
        if !ctx.devices.is_empty() {
            let mut rules = resources.devices().clone().unwrap_or_default();
            rules.extend(
                ctx.devices
                    .iter()
                    .map(|(node, access)| defaults::allow_device(node, access)),
            );
            resources.set_devices(Some(rules));
        }
        (
            (!ctx.devices.is_empty()).then(|| mapped.collect()),
            Some(defaults::strings(&defaults::MASKED_PATHS)),
            Some(defaults::strings(&defaults::READONLY_PATHS)),
        )
    };
    // Docker gives a privileged container no seccomp filter, whatever it asks for.
    let profile = match &container.seccomp {
        _ if container.privileged => None,
        Seccomp::Default => Some(&*seccomp::DEFAULT_PROFILE),
        Seccomp::Unconfined => None,
        Seccomp::Profile(profile) => Some(profile),
    };
    let seccomp = match profile {
        Some(profile) => {
            let caps: Vec<String> = capabilities
                .bounding()
                .iter()
                .flatten()
                .filter_map(|c| serde_json::to_value(c).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let filter =
                profile
                    .to_oci(&ctx.seccomp_host, &caps)
                    .map_err(|reason| SpecError::Seccomp {
                        container: name.to_owned(),
                        reason,
                    })?;
            Some(filter)
        }
        None => None,
    };

    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(resolved.gid);
    user.set_additional_gids(Some(resolved.additional_gids));
    user.set_umask(None);
    user.set_username(None);

    let mut process = Process::default();
    process.set_terminal(Some(container.terminal));
    process.set_console_size(None);
    process.set_user(user);
    process.set_args(Some(args));
    process.set_command_line(None);
    process.set_env(Some(env));
    process.set_cwd(cwd);
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(Some(rlimits));
    // Docker's and so ECS's default: off (setuid binaries in images keep working).
    process.set_no_new_privileges(Some(container.no_new_privileges.unwrap_or(false)));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);
    process.set_selinux_label(None);
    process.set_io_priority(None);
    process.set_scheduler(None);
    process.set_exec_cpu_affinity(None);

    let mut root = Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(container.readonly_root_filesystem));

    let mut linux = Linux::default();
    linux.set_net_devices(None);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(sysctls);
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(ctx.cgroups_path.clone().into()));
    linux.set_namespaces(Some(linux::namespaces(
        &container.network,
        &container.pid,
        &container.ipc,
    )));
    linux.set_devices(devices);
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(None);
    linux.set_masked_paths(masked_paths);
    linux.set_readonly_paths(readonly_paths);
    linux.set_mount_label(None);
    linux.set_intel_rdt(None);
    linux.set_memory_policy(None);
    linux.set_personality(None);
    linux.set_time_offsets(None);

    let mut spec = Spec::default();
    spec.set_version(VERSION.to_owned());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    spec.set_hostname(container.hostname.clone());
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    spec.set_solaris(None);
    spec.set_windows(None);
    spec.set_vm(None);
    spec.set_zos(None);
    Ok(spec)
}

#[cfg(test)]
mod tests;

//! The Linux-level container fields: `systemControls`, `extraHosts`, `dnsServers`,
//! `dnsSearchDomains`, `dockerSecurityOptions` and `linuxParameters`, converted with ECS's and
//! Docker's rules; every problem is reported with its JSON path.

use std::collections::HashMap;
use std::net::IpAddr;

use berth_proto::v1 as proto;

use super::error::Problem;
use berth_policy::IPC_SYSCTLS;

use super::fields::{
    DEVICE_PERMISSIONS, SECURITY_OPTIONS, SWAPPINESS, TMPFS_MOUNT_OPTIONS, TMPFS_VALUE_OPTIONS,
    UNSUPPORTED_SECURITY_OPTIONS,
};
use super::{ecs, suggest, walk};

/// `systemControls`: each namespace a namespaced kernel parameter, named once.
pub(super) fn system_controls(
    controls: Vec<ecs::SystemControl>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<proto::SystemControl> {
    let list = walk::child(path, "systemControls");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, c) in controls.iter().enumerate() {
        let at = walk::child(&walk::index(&list, j), "namespace");
        if let Some(message) = sysctl_problem(&c.namespace) {
            problems.push(Problem::at(&at, message));
        } else if let Some(first) = seen.get(&c.namespace) {
            problems.push(Problem::at(
                &at,
                format!(
                    "`{}` is already set by systemControls[{first}]",
                    c.namespace
                ),
            ));
        } else {
            seen.insert(c.namespace.clone(), j);
        }
        if c.value.contains('\n') || c.value.contains('\0') {
            problems.push(Problem::at(
                &walk::child(&walk::index(&list, j), "value"),
                "must be one line without NUL bytes",
            ));
        }
    }
    controls
        .into_iter()
        .map(|c| proto::SystemControl {
            namespace: c.namespace,
            value: c.value,
        })
        .collect()
}

/// Why `name` is not a kernel parameter a container may set: only the ones the kernel scopes to
/// a container's IPC or network namespace (Docker's rule), never the host's.
fn sysctl_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if berth_policy::sysctl_namespace(name).is_some() {
        let rest = name.split('.').skip(1);
        if rest.clone().count() == 0 || rest.clone().any(str::is_empty) {
            return Some(format!("`{name}` is not a kernel parameter name"));
        }
        return None;
    }
    Some(format!(
        "`{name}` is not a namespaced kernel parameter: a container may set only {}, fs.mqueue.* \
         and net.* (in its own network namespace)",
        IPC_SYSCTLS.join(", ")
    ))
}

/// `environmentFiles`: type `file` with an absolute path on the host; `s3` is refused by name.
pub(super) fn environment_files(
    files: Vec<ecs::EnvironmentFile>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let list = walk::child(path, "environmentFiles");
    files
        .into_iter()
        .enumerate()
        .map(|(j, f)| {
            let entry = walk::index(&list, j);
            match f.typ.as_str() {
                "file" => {}
                "s3" => problems.push(Problem::at(
                    &walk::child(&entry, "type"),
                    "type `s3` needs AWS credentials, which a Berth host does not have: copy the \
                     file to the host and use type `file` with its path",
                )),
                other => problems.push(Problem::at(
                    &walk::child(&entry, "type"),
                    format!("`{other}` is not an environment file type: use `file`"),
                )),
            }
            if !f.value.starts_with('/') || f.value.contains('\0') {
                problems.push(Problem::at(
                    &walk::child(&entry, "value"),
                    format!("{:?} is not an absolute path on the host", f.value),
                ));
            }
            f.value
        })
        .collect()
}

/// `extraHosts`: a host name without whitespace and an IP address each.
pub(super) fn extra_hosts(
    hosts: Vec<ecs::HostEntry>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<proto::HostEntry> {
    let list = walk::child(path, "extraHosts");
    for (j, h) in hosts.iter().enumerate() {
        let entry = walk::index(&list, j);
        if h.hostname.is_empty()
            || h.hostname
                .chars()
                .any(|c| c.is_whitespace() || c == '#' || c.is_control())
        {
            problems.push(Problem::at(
                &walk::child(&entry, "hostname"),
                format!(
                    "{:?} is not a host name: it must be non-empty, without spaces or `#`",
                    h.hostname
                ),
            ));
        }
        if h.ip_address.parse::<IpAddr>().is_err() {
            problems.push(Problem::at(
                &walk::child(&entry, "ipAddress"),
                format!("{:?} is not an IPv4 or IPv6 address", h.ip_address),
            ));
        }
    }
    hosts
        .into_iter()
        .map(|h| proto::HostEntry {
            hostname: h.hostname,
            ip_address: h.ip_address,
        })
        .collect()
}

/// `dnsServers`: IP addresses.
pub(super) fn dns_servers(servers: &[String], path: &str, problems: &mut Vec<Problem>) {
    let list = walk::child(path, "dnsServers");
    for (j, s) in servers.iter().enumerate() {
        if s.parse::<IpAddr>().is_err() {
            problems.push(Problem::at(
                &walk::index(&list, j),
                format!("{s:?} is not an IPv4 or IPv6 address"),
            ));
        }
    }
}

/// `dnsSearchDomains`: ECS's pattern, letters, digits, '-' and '.', at most 254 characters,
/// ending in a letter or digit.
pub(super) fn dns_search_domains(domains: &[String], path: &str, problems: &mut Vec<Problem>) {
    let list = walk::child(path, "dnsSearchDomains");
    for (j, d) in domains.iter().enumerate() {
        let valid = !d.is_empty()
            && d.len() <= 254
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && d.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
        if !valid {
            problems.push(Problem::at(
                &walk::index(&list, j),
                format!(
                    "{d:?} is not a search domain: use letters, digits, '-' and '.', up to 254 \
                     characters, ending in a letter or digit"
                ),
            ));
        }
    }
}

/// The network-mode rules of ECS and Docker for these fields: DNS settings are not valid in
/// awsvpc (the task's resolv.conf) nor host mode (the host's), extra hosts and a hostname not
/// in awsvpc (the task's hosts and hostname), and
/// `net.*` parameters need the container's own network namespace (not host mode).
pub(super) fn validate_network(
    network_mode: &str,
    c: &proto::ContainerDefinition,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let refuse = |field: &str, modes: &[&str], problems: &mut Vec<Problem>| {
        if modes.contains(&network_mode) {
            problems.push(Problem::at(
                &walk::child(path, field),
                format!("is not valid with networkMode {network_mode}, as on ECS"),
            ));
        }
    };
    if !c.dns_servers.is_empty() {
        refuse("dnsServers", &["awsvpc", "host"], problems);
    }
    if !c.dns_search_domains.is_empty() {
        refuse("dnsSearchDomains", &["awsvpc", "host"], problems);
    }
    if !c.extra_hosts.is_empty() {
        refuse("extraHosts", &["awsvpc"], problems);
    }
    if !c.hostname.is_empty() {
        refuse("hostname", &["awsvpc"], problems);
    }
    if c.disable_networking {
        refuse("disableNetworking", &["awsvpc", "host"], problems);
    }
    if network_mode == "host" {
        for (j, s) in c.system_controls.iter().enumerate() {
            if s.namespace.starts_with("net.") {
                problems.push(Problem::at(
                    &walk::child(
                        &walk::index(&walk::child(path, "systemControls"), j),
                        "namespace",
                    ),
                    format!(
                        "`{}` would change the host's network stack: net.* parameters need the \
                         task's own network namespace (not networkMode host)",
                        s.namespace
                    ),
                ));
            }
        }
    }
}

/// What `dockerSecurityOptions` ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SecurityOptions {
    /// `no-new-privileges[=bool]`; None when not given.
    pub(super) no_new_privileges: Option<bool>,
    /// `seccomp=...`: "unconfined" or an absolute host path; empty when not given.
    pub(super) seccomp_profile: String,
}

/// The value of a profile-less `seccomp=unconfined`.
pub(super) const SECCOMP_UNCONFINED: &str = "unconfined";

/// `dockerSecurityOptions`, Docker's `--security-opt` syntax: `no-new-privileges` alone or with
/// `=true`/`=false`, and `seccomp=unconfined` or `seccomp=<absolute path>` (a profile the agent
/// reads from the host). A key and its value are separated by `=`, or by `:` as Docker still
/// accepts (and as ECS's documentation writes them). Each key may be given once; what Berth
/// cannot honour (AppArmor, SELinux labels, credential specs) is refused by name.
pub(super) fn security_options(
    options: &[String],
    path: &str,
    problems: &mut Vec<Problem>,
) -> SecurityOptions {
    let list = walk::child(path, "dockerSecurityOptions");
    let mut parsed = SecurityOptions::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, option) in options.iter().enumerate() {
        let at = walk::index(&list, j);
        let (key, value) = split_security_option(option);
        if let Some(first) = seen.get(key) {
            problems.push(Problem::at(
                &at,
                format!("`{key}` is already set by dockerSecurityOptions[{first}]"),
            ));
            continue;
        }
        let problems_before = problems.len();
        match (key, value) {
            ("no-new-privileges", None) => parsed.no_new_privileges = Some(true),
            ("no-new-privileges", Some(value)) => match docker_bool(value) {
                Some(b) => parsed.no_new_privileges = Some(b),
                None => problems.push(Problem::at(
                    &at,
                    format!("`{option}`: the value of no-new-privileges must be true or false"),
                )),
            },
            ("seccomp", None | Some("")) => problems.push(Problem::at(
                &at,
                "seccomp needs a value: seccomp=unconfined, or seccomp=<absolute path of a Docker \
                 seccomp profile on the host>",
            )),
            ("seccomp", Some(SECCOMP_UNCONFINED)) => {
                parsed.seccomp_profile = SECCOMP_UNCONFINED.to_owned();
            }
            ("seccomp", Some(profile)) if profile.starts_with('/') && !profile.contains('\0') => {
                parsed.seccomp_profile = profile.to_owned();
            }
            ("seccomp", Some(profile)) => problems.push(Problem::at(
                &at,
                format!(
                    "`{profile}` is not an absolute path: the agent reads a seccomp profile from \
                     the host (Berth has no built-in profile); use seccomp=unconfined or \
                     seccomp=/path/to/profile.json"
                ),
            )),
            (key, _) => {
                let message = match UNSUPPORTED_SECURITY_OPTIONS.iter().find(|(k, _)| *k == key) {
                    Some((_, why)) => format!("`{option}` is not supported by Berth: {why}"),
                    None => format!(
                        "`{option}` is not a Docker security option Berth supports: use \
                         no-new-privileges[=true|false], seccomp=unconfined or \
                         seccomp=<absolute path of a seccomp profile on the host>"
                    ),
                };
                problems.push(Problem::at(&at, message));
            }
        }
        // Only a valid option counts as set: a bad one is reported on its own.
        if SECURITY_OPTIONS.contains(&key) && problems.len() == problems_before {
            seen.insert(key, j);
        }
    }
    parsed
}

/// Docker's split of a security option: at the first `=`, else at the first `:`.
fn split_security_option(option: &str) -> (&str, Option<&str>) {
    let split = option.split_once('=').or_else(|| option.split_once(':'));
    match split {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    }
}

/// Go's `strconv.ParseBool`, which Docker uses for `no-new-privileges=...`.
fn docker_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The rules across a container's fields for these options: a seccomp profile has no effect on
/// a privileged container (Docker runs those unconfined), and `maxSwap` adds to the container's
/// hard `memory` (ECS: `--memory-swap` is memory + maxSwap), so it needs one.
pub(super) fn validate_security_and_swap(
    c: &proto::ContainerDefinition,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if c.privileged && !c.seccomp_profile.is_empty() && c.seccomp_profile != SECCOMP_UNCONFINED {
        problems.push(Problem::at(
            &walk::child(path, "dockerSecurityOptions"),
            format!(
                "`seccomp={}` has no effect on a privileged container (Docker runs privileged \
                 containers without a seccomp filter): remove the profile or privileged",
                c.seccomp_profile
            ),
        ));
    }
    let max_swap = c.linux_parameters.as_ref().and_then(|l| l.max_swap_mib);
    if max_swap.is_some() && c.memory_mib == 0 {
        problems.push(Problem::at(
            &walk::child(&walk::child(path, "linuxParameters"), "maxSwap"),
            "needs the container's `memory` (its hard limit): the memory+swap limit is memory + \
             maxSwap, as on ECS; set memory",
        ));
    }
}

/// `linuxParameters.devices`: an absolute host path each, an absolute container path (the host
/// path when absent) given once, and permissions among read, write and mknod (all three when
/// absent), kept in that order without repeats.
fn devices(
    devices: Vec<ecs::Device>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<proto::Device> {
    let list = walk::child(path, "devices");
    let mut seen: HashMap<String, usize> = HashMap::new();
    devices
        .into_iter()
        .enumerate()
        .map(|(j, d)| {
            let entry = walk::index(&list, j);
            if !d.host_path.starts_with('/') || d.host_path.contains('\0') {
                problems.push(Problem::at(
                    &walk::child(&entry, "hostPath"),
                    format!("{:?} is not an absolute path on the host", d.host_path),
                ));
            }
            let given = d.container_path.is_some();
            let container_path = d.container_path.unwrap_or_else(|| d.host_path.clone());
            let at = walk::child(&entry, if given { "containerPath" } else { "hostPath" });
            if given && (!container_path.starts_with('/') || container_path.contains('\0')) {
                problems.push(Problem::at(
                    &at,
                    format!("{container_path:?} is not an absolute path"),
                ));
            } else if container_path.split('/').any(|part| part == "..") {
                problems.push(Problem::at(
                    &at,
                    format!("{container_path:?} must not contain `..`"),
                ));
            } else {
                let key = container_path.trim_end_matches('/').to_owned();
                if let Some(first) = seen.get(&key) {
                    problems.push(Problem::at(
                        &at,
                        format!("{container_path:?} is already the device of devices[{first}]"),
                    ));
                } else {
                    seen.insert(key, j);
                }
            }
            let permissions = match d.permissions {
                None => DEVICE_PERMISSIONS.iter().map(|p| (*p).to_owned()).collect(),
                Some(given) => {
                    // `[]` never gets here: it asks for nothing, so it is absent (all three).
                    let perms_path = walk::child(&entry, "permissions");
                    for (k, p) in given.iter().enumerate() {
                        if !DEVICE_PERMISSIONS.contains(&p.as_str()) {
                            problems.push(Problem::at(
                                &walk::index(&perms_path, k),
                                format!(
                                    "`{p}` is not a device permission: use read, write or mknod"
                                ),
                            ));
                        }
                    }
                    DEVICE_PERMISSIONS
                        .iter()
                        .filter(|p| given.iter().any(|g| g == *p))
                        .map(|p| (*p).to_owned())
                        .collect()
                }
            };
            proto::Device {
                host_path: d.host_path,
                container_path,
                permissions,
            }
        })
        .collect()
}

/// `linuxParameters`.
pub(super) fn linux_parameters(
    p: ecs::LinuxParameters,
    path: &str,
    problems: &mut Vec<Problem>,
) -> proto::LinuxParameters {
    let path = walk::child(path, "linuxParameters");
    let capabilities = p.capabilities.map(|caps| {
        let caps_path = walk::child(&path, "capabilities");
        proto::KernelCapabilities {
            add: capability_names(caps.add.unwrap_or_default(), &caps_path, "add", problems),
            drop: capability_names(caps.drop.unwrap_or_default(), &caps_path, "drop", problems),
        }
    });
    if p.shared_memory_size == Some(0) {
        problems.push(Problem::at(
            &walk::child(&path, "sharedMemorySize"),
            "0 MiB is less than the minimum of 1 MiB",
        ));
    }
    let tmpfs_path = walk::child(&path, "tmpfs");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let tmpfs = p
        .tmpfs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, t)| {
            let entry = walk::index(&tmpfs_path, j);
            let dest_path = walk::child(&entry, "containerPath");
            if !t.container_path.starts_with('/') {
                problems.push(Problem::at(
                    &dest_path,
                    format!("{:?} is not an absolute path", t.container_path),
                ));
            } else if t.container_path.split('/').any(|part| part == "..") {
                problems.push(Problem::at(
                    &dest_path,
                    format!("{:?} must not contain `..`", t.container_path),
                ));
            } else if let Some(first) = seen.get(&t.container_path) {
                problems.push(Problem::at(
                    &dest_path,
                    format!(
                        "{:?} is already mounted by tmpfs[{first}]",
                        t.container_path
                    ),
                ));
            } else {
                seen.insert(t.container_path.clone(), j);
            }
            if t.size == 0 {
                problems.push(Problem::at(
                    &walk::child(&entry, "size"),
                    "0 MiB is less than the minimum of 1 MiB",
                ));
            }
            let options = t.mount_options.unwrap_or_default();
            for (k, option) in options.iter().enumerate() {
                if let Some(message) = tmpfs_option_problem(option) {
                    problems.push(Problem::at(
                        &walk::index(&walk::child(&entry, "mountOptions"), k),
                        message,
                    ));
                }
            }
            proto::TmpfsMount {
                container_path: t.container_path,
                size_mib: t.size,
                mount_options: options,
            }
        })
        .collect();
    if let Some(swappiness) = p.swappiness
        && !SWAPPINESS.contains(&swappiness)
    {
        problems.push(Problem::at(
            &walk::child(&path, "swappiness"),
            format!(
                "{swappiness} is outside ECS's range of {} to {}",
                SWAPPINESS.start(),
                SWAPPINESS.end()
            ),
        ));
    }
    proto::LinuxParameters {
        capabilities,
        shared_memory_size_mib: p.shared_memory_size.unwrap_or(0),
        tmpfs,
        init_process_enabled: p.init_process_enabled.unwrap_or(false),
        devices: devices(p.devices.unwrap_or_default(), &path, problems),
        max_swap_mib: p.max_swap,
        swappiness: p.swappiness,
    }
}

/// Capability names as ECS writes them (`NET_ADMIN`, or `ALL`); a `CAP_` prefix and lower case
/// are accepted as Docker does, and stored without the prefix in upper case.
fn capability_names(
    names: Vec<String>,
    caps_path: &str,
    list: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let list_path = walk::child(caps_path, list);
    names
        .into_iter()
        .enumerate()
        .map(|(j, name)| {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
            if !berth_policy::is_all(&bare) && berth_policy::capability(&bare).is_none() {
                let mut known = berth_policy::CAPABILITIES;
                known.sort_unstable();
                let hint = match suggest::nearest(&bare, known) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "use a capability name such as NET_ADMIN, or ALL".to_owned(),
                };
                problems.push(Problem::at(
                    &walk::index(&list_path, j),
                    format!("`{name}` is not a Linux capability: {hint}"),
                ));
            }
            bare
        })
        .collect()
}

/// Why `option` is not one of Docker's tmpfs mount options, if it is not.
fn tmpfs_option_problem(option: &str) -> Option<String> {
    let known = match option.split_once('=') {
        Some((key, value)) => TMPFS_VALUE_OPTIONS.contains(&key) && !value.is_empty(),
        None => TMPFS_MOUNT_OPTIONS.contains(&option),
    };
    (!known).then(|| {
        format!(
            "`{option}` is not a tmpfs mount option: use one of {}, or {} with `=value`",
            TMPFS_MOUNT_OPTIONS.join(", "),
            TMPFS_VALUE_OPTIONS.join(", ")
        )
    })
}

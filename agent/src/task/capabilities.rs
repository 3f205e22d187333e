//! What a container may get beyond Docker's defaults, checked when the task starts, before
//! anything is pulled:
//! - capabilities beyond Docker's default set: only those in the agent's
//!   `allowed_capabilities`, or any with `allow_privileged`. `ALL` asks for every capability,
//!   so it needs every one of them allowed. Names the scheduler would not accept are left to
//!   the runtime's check;
//! - tmpfs options `suid` and `dev` (setuid programs and device nodes in a mount the container
//!   writes): only with `allow_privileged`.

use berth_policy::{CAPABILITIES, DEFAULT_CAPABILITIES, capability, is_all};

use super::error::InputError;

/// Refuses `add` (a container's `linuxParameters.capabilities.add`) when it asks for a
/// capability outside Docker's defaults and `allowed` (the agent's `allowed_capabilities`).
pub(crate) fn check_added(
    container: &str,
    add: &[String],
    allowed: &[String],
    allow_privileged: bool,
) -> Result<(), InputError> {
    if allow_privileged || allowed.iter().any(|a| is_all(a)) {
        return Ok(());
    }
    let permitted =
        |name: &str| DEFAULT_CAPABILITIES.contains(&name) || allowed.iter().any(|a| a == name);
    let asks_all = add.iter().any(|n| is_all(n));
    let asked: Vec<&str> = if asks_all {
        CAPABILITIES.to_vec()
    } else {
        add.iter().filter_map(|n| capability(n)).collect()
    };
    let mut refused: Vec<String> = Vec::new();
    for name in asked.into_iter().filter(|n| !permitted(n)) {
        if !refused.iter().any(|r| r == name) {
            refused.push(name.to_owned());
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(InputError::CapabilitiesNotAllowed {
            container: container.to_owned(),
            all: asks_all,
            refused,
        })
    }
}

/// The tmpfs mount options that give a container what only a privileged one may have.
const PRIVILEGED_TMPFS_OPTIONS: [&str; 2] = ["suid", "dev"];

/// Refuses `options` of the tmpfs at `path` (a container's `linuxParameters.tmpfs`, or a task
/// volume's) when they hold `suid` or `dev` and the agent does not allow privileged containers.
pub(crate) fn check_tmpfs_options(
    path: &str,
    options: &[String],
    allow_privileged: bool,
) -> Result<(), InputError> {
    match options
        .iter()
        .find(|o| PRIVILEGED_TMPFS_OPTIONS.contains(&o.as_str()))
    {
        Some(option) if !allow_privileged => Err(InputError::TmpfsOption {
            path: path.to_owned(),
            option: option.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn defaults_need_nothing_and_others_need_the_key() {
        assert!(check_added("app", &names(&["CHOWN", "cap_kill"]), &[], false).is_ok());
        let err = check_added("app", &names(&["SYS_ADMIN", "NET_RAW"]), &[], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container app: capability SYS_ADMIN is beyond Docker's default set, and this \
             agent's allowed_capabilities does not list it: add it to allowed_capabilities \
             (BERTH_ALLOWED_CAPABILITIES), or set allow_privileged = true"
        );
        assert!(
            check_added(
                "app",
                &names(&["cap_sys_admin"]),
                &names(&["SYS_ADMIN"]),
                false
            )
            .is_ok()
        );
        assert!(check_added("app", &names(&["SYS_ADMIN"]), &[], true).is_ok());
    }

    #[test]
    fn suid_and_dev_on_a_tmpfs_need_allow_privileged() {
        let opts = names(&["rw", "dev"]);
        assert_eq!(
            check_tmpfs_options("/scratch", &opts, false)
                .unwrap_err()
                .to_string(),
            "tmpfs /scratch: option dev is allowed only where privileged containers are: remove \
             it, or set allow_privileged = true (BERTH_ALLOW_PRIVILEGED)"
        );
        assert!(check_tmpfs_options("/scratch", &opts, true).is_ok());
        assert!(check_tmpfs_options("/scratch", &names(&["exec", "nodev"]), false).is_ok());
    }

    #[test]
    fn all_counts_as_every_capability() {
        let err = check_added("app", &names(&["ALL"]), &names(&["SYS_ADMIN"]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "container app: capabilities.add ALL asks for every capability, and this \
                 agent's allowed_capabilities does not list DAC_READ_SEARCH, LINUX_IMMUTABLE,"
            ),
            "{err}"
        );
        assert!(!err.contains("SYS_ADMIN,"), "{err}");
        assert!(check_added("app", &names(&["all"]), &names(&["ALL"]), false).is_ok());
        let every: Vec<String> = CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
        assert!(check_added("app", &names(&["ALL"]), &every, false).is_ok());
    }
}

//! The one allow-list check of host paths a task names (a volume's `host.sourcePath`, a
//! device to map), so that a task definition reaches nothing on the host the operator did not
//! hand out.
//!
//! Both sides are compared as the host resolves them at that moment (`..` and symlinks, so
//! `/dev/disk/by-id/...` is the disk it names), and a path is allowed when it is one of the
//! allowed paths or lies below one, component by component (`/srv/data2` is not below
//! `/srv/data`; `/dev/snd/pcmC0D0p` is below `/dev/snd`).

use std::path::PathBuf;

use super::error::{HostPath, InputError};

/// The host path `subject` names, resolved, when it lies in one of `allowed`.
pub(super) fn resolve_allowed(
    subject: HostPath,
    allowed: &[PathBuf],
) -> Result<PathBuf, InputError> {
    let path = subject.path();
    if !path.is_absolute() {
        return Err(InputError::NotAbsolute(subject));
    }
    if allowed.is_empty() {
        return Err(InputError::NoneAllowed(subject));
    }
    let resolved = match std::fs::canonicalize(path) {
        Ok(resolved) => resolved,
        Err(error) => return Err(InputError::Unresolvable { subject, error }),
    };
    let inside = allowed
        .iter()
        .any(|a| std::fs::canonicalize(a).is_ok_and(|a| resolved.starts_with(&a)));
    if inside {
        Ok(resolved)
    } else {
        Err(InputError::NotAllowed {
            subject,
            resolved,
            allowed: allowed.to_vec(),
        })
    }
}

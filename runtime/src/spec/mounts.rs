//! The container's mounts: the default ones, then the task's volumes bound in (ECS
//! `mountPoints` and `volumesFrom`), as Docker orders them.

use oci_spec::runtime::Mount;

use super::SpecError;
#[cfg(test)]
use super::defaults;
use crate::model::Mount as VolumeMount;

/// `base` (the default mounts, as the container's own parameters shaped them) without those a
/// volume replaces (same destination), then the volume binds sorted by depth so that a parent directory is mounted before what is mounted inside
/// it (Docker's order). Each bind is recursive with private propagation, read-only on request.
pub(super) fn mounts(
    base: Vec<Mount>,
    binds: &[VolumeMount],
    container: &str,
) -> Result<Vec<Mount>, SpecError> {
    let mut volumes = Vec::with_capacity(binds.len());
    for bind in binds {
        let destination = normalise(&bind.destination).ok_or_else(|| SpecError::InvalidMount {
            container: container.to_owned(),
            destination: bind.destination.clone(),
        })?;
        if !bind.source.is_absolute() {
            return Err(SpecError::RelativeMountSource {
                container: container.to_owned(),
                path: bind.source.display().to_string(),
            });
        }
        if volumes
            .iter()
            .any(|(d, _): &(String, &VolumeMount)| *d == destination)
        {
            return Err(SpecError::DuplicateMount {
                container: container.to_owned(),
                destination,
            });
        }
        volumes.push((destination, bind));
    }
    volumes.sort_by_key(|(destination, _)| destination.matches('/').count());
    let mut all: Vec<Mount> = base
        .into_iter()
        .filter(|m| {
            let d = m.destination().to_string_lossy();
            !volumes.iter().any(|(v, _)| *v == d)
        })
        .collect();
    for (destination, bind) in volumes {
        let mut mount = Mount::default();
        mount.set_destination(destination.into());
        mount.set_typ(Some("bind".to_owned()));
        mount.set_source(Some(bind.source.clone()));
        let mode = if bind.read_only { "ro" } else { "rw" };
        mount.set_options(Some(
            // A task's volumes never carry setuid programs or device nodes into the container.
            ["rbind", "rprivate", "nosuid", "nodev", mode]
                .iter()
                .map(|o| (*o).to_owned())
                .collect(),
        ));
        all.push(mount);
    }
    Ok(all)
}

/// An absolute destination without `.`/`..` components, repeated or trailing slashes; `None`
/// when it is relative, is `/`, climbs with `..` or holds a NUL.
fn normalise(destination: &str) -> Option<String> {
    if !destination.starts_with('/') || destination.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for part in destination.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn bind(source: &str, destination: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            source: PathBuf::from(source),
            destination: destination.to_owned(),
            read_only,
        }
    }

    fn summary(mounts: &[Mount]) -> Vec<(String, String, String, String)> {
        mounts
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
            .collect()
    }

    #[test]
    fn no_volumes_means_the_defaults() {
        assert_eq!(
            mounts(defaults::mounts(), &[], "web").unwrap(),
            defaults::mounts()
        );
    }

    #[test]
    fn volumes_are_recursive_private_binds_after_the_defaults_parents_first() {
        let got = mounts(
            defaults::mounts(),
            &[
                bind("/var/lib/berth/volumes/t/cache", "/data/cache/", false),
                bind("/srv/config", "/data", true),
            ],
            "web",
        )
        .unwrap();
        let defaults = defaults::mounts().len();
        assert_eq!(got.len(), defaults + 2);
        assert_eq!(
            summary(&got[defaults..]),
            [
                (
                    "/data".to_owned(),
                    "bind".to_owned(),
                    "/srv/config".to_owned(),
                    "rbind,rprivate,nosuid,nodev,ro".to_owned()
                ),
                (
                    "/data/cache".to_owned(),
                    "bind".to_owned(),
                    "/var/lib/berth/volumes/t/cache".to_owned(),
                    "rbind,rprivate,nosuid,nodev,rw".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_volume_replaces_the_default_mount_at_its_destination() {
        let got = mounts(
            defaults::mounts(),
            &[bind("/srv/shm", "/dev/shm", false)],
            "web",
        )
        .unwrap();
        let shm: Vec<_> = summary(&got)
            .into_iter()
            .filter(|m| m.0 == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].1, "bind");
        assert_eq!(got.len(), defaults::mounts().len());
    }

    #[test]
    fn bad_destinations_and_sources_are_refused_naming_the_container() {
        for destination in ["data", "/", "/a/../etc", "/a\0b"] {
            assert_eq!(
                mounts(
                    defaults::mounts(),
                    &[bind("/srv", destination, false)],
                    "web"
                )
                .unwrap_err(),
                SpecError::InvalidMount {
                    container: "web".into(),
                    destination: destination.into()
                }
            );
        }
        let err = mounts(defaults::mounts(), &[bind("srv", "/data", false)], "web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "container web: volume source srv is not an absolute host path"
        );
        let err = mounts(
            defaults::mounts(),
            &[bind("/a", "/data", false), bind("/b", "/data/", true)],
            "web",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "container web: two volumes are mounted at /data"
        );
    }
}

//! A task's volumes: which of them the runtime makes for the task (a directory, or a tmpfs)
//! and which bind a host path, the binds of each container (`mountPoints` and `volumesFrom`),
//! and which host paths a task may bind-mount: a `host.sourcePath` must lie in one of the
//! agent's `volume_host_paths` (see `allow.rs`), checked when the task starts, before
//! anything is pulled, so that a task definition cannot mount the host's root or any
//! directory the operator did not hand out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_proto::v1::{ContainerDefinition, TaskDefinition};
use berth_runtime::{Mount, TaskVolume, TaskVolumeKind};

use super::allow::resolve_allowed;
use super::error::{HostPath, InputError};

/// A task's volumes by what backs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskVolumes {
    /// Made by the runtime under the agent's data dir: a directory, or a tmpfs.
    pub(crate) task: Vec<TaskVolume>,
    /// Host paths to bind, as the definition gives them: (volume name, `host.sourcePath`).
    pub(crate) host: Vec<(String, String)>,
}

/// Splits a definition's volumes: a non-empty `host.sourcePath` is a host path; anything else
/// is a per-task directory, a tmpfs when the local driver's `type` is `tmpfs`.
pub(crate) fn task_volumes(def: &TaskDefinition) -> TaskVolumes {
    let mut volumes = TaskVolumes::default();
    for v in &def.volumes {
        if let Some(host) = v.host.as_ref().filter(|h| !h.source_path.is_empty()) {
            volumes
                .host
                .push((v.name.clone(), host.source_path.clone()));
            continue;
        }
        let opts = v
            .docker_volume_configuration
            .as_ref()
            .map(|d| &d.driver_opts);
        let kind = match opts {
            Some(opts) if opts.get("type").map(String::as_str) == Some("tmpfs") => {
                TaskVolumeKind::Tmpfs {
                    device: opts.get("device").cloned().unwrap_or_default(),
                    options: opts
                        .get("o")
                        .map(|o| {
                            o.split(',')
                                .filter(|o| !o.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            }
            _ => TaskVolumeKind::Directory,
        };
        volumes.task.push(TaskVolume {
            name: v.name.clone(),
            kind,
        });
    }
    volumes
}

/// The binds of one container: its own `mountPoints`, then those of the containers it takes
/// volumes from (and theirs, transitively; read-only when the `volumesFrom` entry says so,
/// else as the source mounts them). A destination already mounted keeps its first mount.
/// `paths` are the volumes' host paths by name.
pub(crate) fn container_mounts(
    def: &TaskDefinition,
    container: &ContainerDefinition,
    paths: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, InputError> {
    let mut mounts: Vec<Mount> = Vec::new();
    let mut visited = vec![container.name.as_str()];
    // (container, forced read-only) still to copy mount points from.
    let mut pending = vec![(container, false)];
    while let Some((c, forced_ro)) = pending.pop() {
        for m in &c.mount_points {
            let source = paths
                .get(&m.source_volume)
                .ok_or_else(|| InputError::UnknownVolume {
                    container: c.name.clone(),
                    volume: m.source_volume.clone(),
                })?;
            let destination = m.container_path.trim_end_matches('/');
            if mounts
                .iter()
                .any(|x| x.destination.trim_end_matches('/') == destination)
            {
                continue;
            }
            mounts.push(Mount {
                source: source.clone(),
                destination: m.container_path.clone(),
                read_only: forced_ro || m.read_only,
            });
        }
        // Reversed, so that the first entry is taken first.
        for from in c.volumes_from.iter().rev() {
            if visited.contains(&from.source_container.as_str()) {
                continue;
            }
            let source = def
                .containers
                .iter()
                .find(|x| x.name == from.source_container)
                .ok_or_else(|| InputError::UnknownVolumesFrom {
                    container: c.name.clone(),
                    from: from.source_container.clone(),
                })?;
            visited.push(&source.name);
            pending.push((source, forced_ro || from.read_only));
        }
    }
    Ok(mounts)
}

/// The host path to bind for `source`, resolved, when it lies in one of `allowed`.
pub(crate) fn allowed_host_path(
    volume: &str,
    source: &str,
    allowed: &[PathBuf],
) -> Result<PathBuf, InputError> {
    let subject = HostPath::Volume {
        volume: volume.to_owned(),
        path: source.to_owned(),
    };
    resolve_allowed(subject, allowed)
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{DockerVolumeConfiguration, HostVolume, MountPoint, Volume, VolumeFrom};

    use super::super::test_container as def;
    use super::*;

    fn mount_point(volume: &str, path: &str, read_only: bool) -> MountPoint {
        MountPoint {
            source_volume: volume.into(),
            container_path: path.into(),
            read_only,
        }
    }

    fn volume_from(container: &str, read_only: bool) -> VolumeFrom {
        VolumeFrom {
            source_container: container.into(),
            read_only,
        }
    }

    #[test]
    fn volumes_split_into_host_paths_directories_and_tmpfs() {
        let docker = |opts: &[(&str, &str)]| {
            Some(DockerVolumeConfiguration {
                scope: "task".into(),
                driver: "local".into(),
                driver_opts: opts
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                labels: Default::default(),
            })
        };
        let td = TaskDefinition {
            volumes: vec![
                Volume {
                    name: "data".into(),
                    host: Some(HostVolume {
                        source_path: "/srv/data".into(),
                    }),
                    docker_volume_configuration: None,
                },
                Volume {
                    name: "empty-host".into(),
                    host: Some(HostVolume::default()),
                    docker_volume_configuration: None,
                },
                Volume {
                    name: "plain".into(),
                    host: None,
                    docker_volume_configuration: docker(&[]),
                },
                Volume {
                    name: "fast".into(),
                    host: None,
                    docker_volume_configuration: docker(&[
                        ("type", "tmpfs"),
                        ("device", "tmpfs"),
                        ("o", "size=8m,noexec"),
                    ]),
                },
            ],
            ..Default::default()
        };
        let v = task_volumes(&td);
        assert_eq!(v.host, [("data".to_owned(), "/srv/data".to_owned())]);
        assert_eq!(
            v.task,
            [
                TaskVolume {
                    name: "empty-host".into(),
                    kind: TaskVolumeKind::Directory
                },
                TaskVolume {
                    name: "plain".into(),
                    kind: TaskVolumeKind::Directory
                },
                TaskVolume {
                    name: "fast".into(),
                    kind: TaskVolumeKind::Tmpfs {
                        device: "tmpfs".into(),
                        options: vec!["size=8m".into(), "noexec".into()]
                    }
                },
            ]
        );
    }

    #[test]
    fn mounts_follow_volumes_from_transitively_with_read_only_forced() {
        let mut app = def("app", 0, 64, 0);
        app.mount_points = vec![
            mount_point("data", "/data", false),
            mount_point("conf", "/conf", true),
        ];
        let mut mid = def("mid", 0, 64, 0);
        mid.mount_points = vec![mount_point("cache", "/cache", false)];
        mid.volumes_from = vec![volume_from("app", false)];
        let mut last = def("last", 0, 64, 0);
        last.mount_points = vec![mount_point("cache", "/data/", false)];
        last.volumes_from = vec![volume_from("mid", true), volume_from("app", false)];
        let td = TaskDefinition {
            containers: vec![app, mid, last],
            ..Default::default()
        };
        let paths: BTreeMap<String, PathBuf> = ["data", "conf", "cache"]
            .iter()
            .map(|n| ((*n).to_owned(), PathBuf::from(format!("/v/{n}"))))
            .collect();
        let got = container_mounts(&td, &td.containers[2], &paths).unwrap();
        let summary: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|m| {
                (
                    m.destination.as_str(),
                    m.source.to_str().unwrap(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                // Its own mount point wins over /data from app.
                ("/data/", "/v/cache", false),
                // From mid, read-only as volumesFrom says.
                ("/cache", "/v/cache", true),
                // app reached through mid first: read-only too.
                ("/conf", "/v/conf", true),
            ]
        );
        let mid_mounts = container_mounts(&td, &td.containers[1], &paths).unwrap();
        assert_eq!(mid_mounts.len(), 3);
        assert!(
            mid_mounts
                .iter()
                .any(|m| m.destination == "/data" && !m.read_only)
        );
        assert!(
            mid_mounts
                .iter()
                .any(|m| m.destination == "/conf" && m.read_only)
        );
    }

    #[test]
    fn a_mount_of_an_unknown_volume_is_an_error() {
        let mut app = def("app", 0, 64, 0);
        app.mount_points = vec![mount_point("gone", "/data", false)];
        let td = TaskDefinition {
            containers: vec![app],
            ..Default::default()
        };
        assert_eq!(
            container_mounts(&td, &td.containers[0], &BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "container app: volume gone is not a volume of the task"
        );
    }

    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        /// `allowed/data/file`, `allowed2/`, `secret/` and a few symlinks.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join("allowed/data")).unwrap();
            std::fs::write(root.join("allowed/data/file"), "x").unwrap();
            std::fs::create_dir_all(root.join("allowed2")).unwrap();
            std::fs::create_dir_all(root.join("secret")).unwrap();
            std::os::unix::fs::symlink(root.join("secret"), root.join("allowed/escape")).unwrap();
            std::os::unix::fs::symlink(root.join("allowed/data"), root.join("link-in")).unwrap();
            Host { dir }
        }

        fn path(&self, rel: &str) -> String {
            format!("{}/{rel}", self.dir.path().display())
        }

        fn allowed(&self) -> Vec<PathBuf> {
            vec![PathBuf::from(self.path("allowed"))]
        }
    }

    #[test]
    fn paths_inside_an_allowed_directory_are_resolved_and_allowed() {
        let host = Host::new();
        let resolved = std::fs::canonicalize(host.path("allowed/data")).unwrap();
        assert_eq!(
            allowed_host_path("v", &host.path("allowed/data"), &host.allowed()).unwrap(),
            resolved.clone()
        );
        assert_eq!(
            allowed_host_path("v", &host.path("allowed"), &host.allowed()).unwrap(),
            std::fs::canonicalize(host.path("allowed")).unwrap()
        );
        assert_eq!(
            allowed_host_path("v", &host.path("allowed/data/file"), &host.allowed()).unwrap(),
            resolved.join("file")
        );
        // A symlink outside that points inside is what it points to.
        assert_eq!(
            allowed_host_path("v", &host.path("link-in"), &host.allowed()).unwrap(),
            resolved
        );
    }

    #[test]
    fn dot_dot_and_symlink_escapes_are_refused() {
        let host = Host::new();
        for escape in [
            "allowed/../secret",
            "allowed/data/../../secret",
            "allowed/escape",
        ] {
            let err = allowed_host_path("v", &host.path(escape), &host.allowed())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("is outside the directories this agent allows (resolved to")
                    && err.contains("secret"),
                "{escape}: {err}"
            );
        }
    }

    #[test]
    fn a_sibling_with_the_same_prefix_is_not_inside() {
        let host = Host::new();
        let err = allowed_host_path("v", &host.path("allowed2"), &host.allowed())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is outside the directories"), "{err}");
    }

    #[test]
    fn the_host_root_is_refused_with_what_is_allowed() {
        let host = Host::new();
        assert_eq!(
            allowed_host_path("data", "/", &host.allowed())
                .unwrap_err()
                .to_string(),
            format!(
                "volume data: host path / is outside the directories this agent allows; volume_host_paths: {}",
                host.path("allowed")
            )
        );
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert_eq!(
            allowed_host_path("data", "/srv/data", &[])
                .unwrap_err()
                .to_string(),
            "volume data: host path /srv/data cannot be mounted: this agent allows no host paths (set volume_host_paths to the directories tasks may mount)"
        );
    }

    #[test]
    fn missing_and_relative_paths_are_refused() {
        let host = Host::new();
        let err = allowed_host_path("v", &host.path("allowed/missing"), &host.allowed())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be resolved on this host"), "{err}");
        assert_eq!(
            allowed_host_path("v", "srv", &host.allowed())
                .unwrap_err()
                .to_string(),
            "volume v: host path srv is not an absolute path"
        );
    }
}

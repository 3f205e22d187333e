//! What a task names on the host: volumes and host paths, privileged containers, environment
//! files, devices, seccomp profiles and swap settings.

use super::*;
use berth_runtime::{IpcNamespace, PidNamespace};

/// A task of two containers: `writer` mounts every given volume at `/<name>`, `reader` takes
/// volumes from `writer`, read-only.
fn with_volumes(task: &str, volumes: Vec<berth_proto::v1::Volume>) -> TaskAssignment {
    let mut a = assignment(
        task,
        &[("writer", false, "img:1"), ("reader", true, "img:1")],
    );
    if let Some(def) = a.definition.as_mut() {
        def.containers[0].mount_points = volumes
            .iter()
            .map(|v| berth_proto::v1::MountPoint {
                source_volume: v.name.clone(),
                container_path: format!("/{}", v.name),
                read_only: false,
            })
            .collect();
        def.containers[1].volumes_from = vec![berth_proto::v1::VolumeFrom {
            source_container: "writer".into(),
            read_only: true,
        }];
        def.volumes = volumes;
    }
    a
}

fn volume(name: &str, source_path: Option<&str>) -> berth_proto::v1::Volume {
    berth_proto::v1::Volume {
        name: name.into(),
        host: source_path.map(|p| berth_proto::v1::HostVolume {
            source_path: p.into(),
        }),
        docker_volume_configuration: None,
    }
}

fn mounts_of(fake: &Fake, name: &str) -> Vec<Mount> {
    fake.specs
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.mounts.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn task_volumes_are_made_bound_into_containers_and_removed_with_the_task() {
    let h = start();
    h.run(with_volumes("tv", vec![volume("shared", None)]))
        .await;
    let calls = h.fake.calls();
    let made = calls.iter().position(|c| c == "volumes tv shared");
    let created = calls.iter().position(|c| c.starts_with("create"));
    assert!(made.is_some() && made < created, "{calls:?}");
    let host = PathBuf::from("/fake/volumes/tv/shared");
    assert_eq!(
        mounts_of(&h.fake, "writer"),
        [Mount {
            source: host.clone(),
            destination: "/shared".into(),
            read_only: false
        }]
    );
    assert_eq!(
        mounts_of(&h.fake, "reader"),
        [Mount {
            source: host,
            destination: "/shared".into(),
            read_only: true
        }],
        "volumesFrom with readOnly binds the same directory read-only"
    );
    h.fake.exit(&ContainerId::for_container("tv", "reader"), 0);
    until_released(&h.store, "tv").await;
    let calls = h.fake.calls();
    let deleted = calls.iter().rposition(|c| c.starts_with("delete"));
    let removed = calls.iter().position(|c| c == "rmvolumes tv");
    assert!(
        removed.is_some() && removed > deleted,
        "volumes are removed after the containers: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_host_path_outside_the_allowed_directories_fails_the_task_before_pulling() {
    let allowed = tempfile::tempdir().unwrap();
    let h = start_allowing(vec![allowed.path().to_path_buf()]);
    h.assign(with_volumes(
        "th",
        vec![volume("scratch", None), volume("root", Some("/"))],
    ))
    .await;
    let stopped = until(&h.store, "th", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        format!(
            "volume root: host path / is outside the directories this agent allows; volume_host_paths: {}",
            allowed.path().display()
        )
    );
    until_released(&h.store, "th").await;
    let calls = h.fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("pull") || c.starts_with("volumes")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"rmvolumes th".to_owned()),
        "the cleanup runs on the failure path too: {calls:?}"
    );
    h.cancel.cancel();
}

/// The runtime gets the host path as it was resolved when allowed, and the containers bind the
/// staging point it bound that path to (opened without following symlinks), never the path.
#[tokio::test]
async fn an_allowed_host_path_is_bound_as_resolved() {
    let allowed = tempfile::tempdir().unwrap();
    std::fs::create_dir(allowed.path().join("data")).unwrap();
    let h = start_allowing(vec![allowed.path().to_path_buf()]);
    let source = format!("{}/data/../data", allowed.path().display());
    h.run(with_volumes("ta", vec![volume("data", Some(&source))]))
        .await;
    let resolved = std::fs::canonicalize(allowed.path().join("data")).unwrap();
    assert_eq!(
        mounts_of(&h.fake, "writer"),
        [Mount {
            source: "/fake/volumes/ta/.host/data".into(),
            destination: "/data".into(),
            read_only: false
        }]
    );
    let calls = h.fake.calls();
    assert!(
        calls.contains(&format!("bind ta data {}", resolved.display())),
        "the host path is bound from what was checked: {calls:?}"
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_task_stopped_before_an_agent_restart_has_its_volumes_removed_on_resume() {
    let dir = stored_as_stopped(&with_volumes("tr", vec![volume("shared", None)]));
    let h = start_on(dir, Vec::new(), false);
    until_released(&h.store, "tr").await;
    let calls = h.fake.calls();
    assert!(
        calls.contains(&"rmvolumes tr".to_owned()),
        "the cleanup after a restart removes the task's volumes: {calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("volumes")), "{calls:?}");
    h.cancel.cancel();
}

fn privileged(task: &str) -> TaskAssignment {
    let mut a = assignment(task, &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].privileged = true;
    }
    a
}

#[tokio::test]
async fn privileged_is_refused_unless_the_agent_allows_it() {
    let h = start();
    h.assign(privileged("t-priv")).await;
    let stopped = until(&h.store, "t-priv", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app asks to run privileged, which this agent does not allow: set \
         allow_privileged = true (BERTH_ALLOW_PRIVILEGED) in the agent's configuration to permit it"
    );
    assert!(
        h.fake
            .calls()
            .iter()
            .all(|c| !c.starts_with("pull") && !c.starts_with("create")),
        "nothing is pulled or created: {:?}",
        h.fake.calls()
    );
    h.cancel.cancel();

    let allowed = start_with(true);
    allowed
        .handle
        .send(Command::Assign(Box::new(privileged("t-priv-ok"))))
        .await;
    until(&allowed.store, "t-priv-ok", TaskStatus::Running).await;
    allowed.cancel.cancel();
}

/// A task of two containers with these task-level `pidMode` and `ipcMode`.
fn namespaced(task: &str, pid_mode: &str, ipc_mode: &str) -> TaskAssignment {
    let mut a = assignment(task, &[("app", true, "img:1"), ("side", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.pid_mode = pid_mode.to_owned();
        d.ipc_mode = ipc_mode.to_owned();
    }
    a
}

#[tokio::test]
async fn host_pid_and_ipc_are_refused_unless_the_agent_allows_them() {
    let h = start();
    h.assign(namespaced("t-hostpid", "host", "")).await;
    let stopped = until(&h.store, "t-hostpid", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "the task asks for pidMode host (the host's namespace), which this agent does not \
         allow: set allow_host_pid_ipc = true (BERTH_ALLOW_HOST_PID_IPC) in the agent's \
         configuration to permit it"
    );
    assert!(
        h.fake
            .calls()
            .iter()
            .all(|c| !c.starts_with("pull") && !c.starts_with("create")),
        "nothing is pulled or created: {:?}",
        h.fake.calls()
    );
    // ipcMode none needs no permission: no /dev/shm, a namespace of its own.
    h.assign(namespaced("t-ipcnone", "", "none")).await;
    until(&h.store, "t-ipcnone", TaskStatus::Running).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs.len(), 2);
    for spec in &specs {
        assert_eq!(
            (&spec.pid, &spec.ipc),
            (&PidNamespace::Private, &IpcNamespace::None)
        );
    }
    h.cancel.cancel();

    let allowed = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allow_host_pid_ipc = true;
    });
    allowed
        .handle
        .send(Command::Assign(Box::new(namespaced(
            "t-host-ok",
            "host",
            "host",
        ))))
        .await;
    until(&allowed.store, "t-host-ok", TaskStatus::Running).await;
    // Every container of the task is in the host's namespaces.
    let specs = allowed.fake.specs.lock().unwrap().clone();
    assert_eq!(specs.len(), 2);
    for spec in &specs {
        assert_eq!(
            (&spec.pid, &spec.ipc),
            (&PidNamespace::Host, &IpcNamespace::Host)
        );
    }
    allowed.cancel.cancel();
}

#[tokio::test]
async fn task_pid_and_ipc_join_the_tasks_namespaces_made_before_any_create() {
    let h = start();
    h.assign(namespaced("t-shared", "task", "task")).await;
    until(&h.store, "t-shared", TaskStatus::Running).await;
    let calls = h.fake.calls();
    let cgroup = calls.iter().position(|c| c == "cgroup t-shared");
    let made = calls
        .iter()
        .position(|c| c == "namespaces t-shared pid=true ipc=true shm=64");
    let created = calls.iter().position(|c| c.starts_with("create"));
    assert!(
        cgroup.is_some() && made > cgroup && created > made,
        "made in the task's cgroup, before any container: {calls:?}"
    );
    let dir = PathBuf::from("/fake/namespaces/t-shared");
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs.len(), 2);
    for spec in &specs {
        assert_eq!(spec.pid, PidNamespace::Task(dir.join("pid")));
        assert_eq!(
            spec.ipc,
            IpcNamespace::Task {
                namespace: dir.join("ipc"),
                shm: dir.join("shm"),
            }
        );
    }
    h.fake
        .exit(&ContainerId::for_container("t-shared", "app"), 0);
    until_released(&h.store, "t-shared").await;
    let calls = h.fake.calls();
    let deleted = calls.iter().rposition(|c| c.starts_with("delete"));
    let removed = calls.iter().position(|c| c == "rmnamespaces t-shared");
    let cgroup_removed = calls.iter().position(|c| c == "rmcgroup t-shared");
    assert!(
        removed.is_some() && removed > deleted && cgroup_removed > removed,
        "the holder goes after the containers, before the cgroup: {calls:?}"
    );

    // A task that shares nothing makes and removes no shared namespaces.
    h.assign(namespaced("t-own", "", "")).await;
    until(&h.store, "t-own", TaskStatus::Running).await;
    h.fake.exit(&ContainerId::for_container("t-own", "app"), 0);
    until_released(&h.store, "t-own").await;
    assert!(
        h.fake
            .calls()
            .iter()
            .all(|c| !c.contains("namespaces t-own")),
        "{:?}",
        h.fake.calls()
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn environment_files_are_read_only_below_the_allowed_paths_before_any_pull() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("env");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("app.env"), "FROM_FILE=1\n").unwrap();
    let with_files = |task: &str, files: Vec<String>| {
        let mut a = assignment(task, &[("app", true, "img:1")]);
        if let Some(d) = a.definition.as_mut() {
            d.containers[0].environment_files = files;
        }
        a
    };
    let h = start();
    h.assign(with_files("t-envfile", vec!["/etc/shadow".into()]))
        .await;
    let stopped = until(&h.store, "t-envfile", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app: environment file /etc/shadow cannot be read: this agent allows no \
         environment files (set environment_file_paths, BERTH_ENVIRONMENT_FILE_PATHS, to the \
         directories they may be read from)"
    );
    assert!(h.fake.calls().iter().all(|c| !c.starts_with("pull")));
    h.cancel.cancel();

    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.environment_file_paths = vec![allowed.clone()];
    });
    let file = allowed.join("app.env").to_string_lossy().into_owned();
    h.run(with_files("t-envfile-ok", vec![file])).await;
    let spec = h.fake.specs.lock().unwrap()[0].clone();
    assert_eq!(
        spec.environment.get("FROM_FILE").map(String::as_str),
        Some("1")
    );
    h.cancel.cancel();
}

fn with_device(host_path: &str) -> impl FnOnce(&mut ContainerDefinition) + '_ {
    move |c| {
        c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
            devices: vec![berth_proto::v1::Device {
                host_path: host_path.into(),
                container_path: "/dev/in-container".into(),
                permissions: vec!["read".into()],
            }],
            ..Default::default()
        });
    }
}

#[tokio::test]
async fn a_device_outside_allowed_devices_fails_the_task_before_pulling() {
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allowed_devices = vec![PathBuf::from("/dev/null")];
    });
    h.assign(one_container("t-dev", with_device("/dev/zero")))
        .await;
    let stopped = until(&h.store, "t-dev", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app: device /dev/zero is not among the devices this agent allows; \
         allowed_devices: /dev/null"
    );
    assert!(h.fake.calls().iter().all(|c| !c.starts_with("pull")));
    h.cancel.cancel();
}

#[tokio::test]
async fn an_allowed_device_reaches_the_runtime_resolved() {
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("my-null");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let h = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allowed_devices = vec![PathBuf::from("/dev/null")];
    });
    let link_text = link.to_string_lossy().into_owned();
    h.run(one_container("t-dev-ok", with_device(&link_text)))
        .await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(
        specs[0].devices,
        [berth_runtime::DeviceMapping {
            host_path: PathBuf::from("/dev/null"),
            container_path: "/dev/in-container".into(),
            permissions: "r".into(),
        }]
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_seccomp_profile_is_read_when_the_task_starts_and_a_bad_one_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
    let h = start();
    let good_path = good.to_string_lossy().into_owned();
    h.run(one_container("t-sec", |c| {
        c.seccomp_profile = good_path;
        c.no_new_privileges = Some(false);
    }))
    .await;
    let spec = h.fake.specs.lock().unwrap()[0].clone();
    assert!(matches!(spec.seccomp, berth_runtime::Seccomp::Profile(_)));
    assert_eq!(spec.no_new_privileges, Some(false));

    let bad_path = bad.to_string_lossy().into_owned();
    h.assign(one_container("t-sec-bad", |c| {
        c.seccomp_profile = bad_path;
    }))
    .await;
    let stopped = until(&h.store, "t-sec-bad", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.starts_with(&format!(
            "container app: seccomp profile {} is not usable: defaultAction: `SCMP_ACT_NOPE` is not a seccomp action",
            bad.display()
        )),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn swap_the_host_cannot_limit_is_noted_and_the_container_runs() {
    let h = start();
    *h.fake.swap.lock().unwrap() = Some(SwapSupport {
        limit: false,
        swappiness: true,
    });
    let running = h
        .run(one_container("t-swap", |c| {
            c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
                max_swap_mib: Some(32),
                swappiness: Some(10),
                ..Default::default()
            });
        }))
        .await;
    assert!(
        running.containers[0]
            .reason
            .starts_with("maxSwap 32 MiB not applied: this host's kernel does not limit swap"),
        "{:?}",
        running.containers[0]
    );
    let spec = h.fake.specs.lock().unwrap()[0].clone();
    assert_eq!(
        (spec.limits.max_swap_mib, spec.limits.swappiness),
        (Some(32), Some(10)),
        "the runtime decides what reaches the spec"
    );
    h.cancel.cancel();
}

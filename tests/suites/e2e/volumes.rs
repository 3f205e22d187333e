//! Task volumes end to end: a volume shared between containers, read-only host binds, host
//! paths outside the agent's allowed directories, tmpfs docker volumes, and the cleanup.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::{World, poll};

use super::{Env, container, hello, taskdef};

/// Like [`Env::with_agent`], with an agent that lets tasks bind-mount `allowed` host paths.
fn env_allowing(w: &World, cleanup_wait: &str, allowed: &[&std::path::Path]) -> Result<Env> {
    let mut env = Env::new(w, cleanup_wait)?;
    if !allowed.is_empty() {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        env.opts.extra_args = vec![format!("--volume-host-paths={}", list.join(","))];
    }
    env.connect()?;
    Ok(env)
}

/// `writer` writes into a task volume; `reader` starts once it succeeded, takes its volumes
/// (read-only) and exits 0 only when it reads what was written and cannot write itself.
pub(super) fn volume_shared(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "shared-volume",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared"}],
             "command": ["sh", "-c", "echo hello > /shared/msg"]},
            {"name": "reader", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}],
             "volumesFrom": [{"sourceContainer": "writer", "readOnly": true}],
             "command": ["sh", "-c",
                 "test \"$(cat /shared/msg)\" = hello || exit 3; if touch /shared/other; then exit 4; fi; exit 0"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "shared"}]);
    let (_, t) = env.run_until(&def, "STOPPED", Duration::from_secs(90))?;
    let described = env
        .json(&["describe-task-definition", "shared-volume"])?
        .to_string();
    ensure!(
        described.contains(r#""volumes":[{"name":"shared"}]"#)
            && (described
                .contains(r#""volumesFrom":[{"readOnly":true,"sourceContainer":"writer"}]"#)
                || described
                    .contains(r#""volumesFrom":[{"sourceContainer":"writer","readOnly":true}]"#)),
        "{described}"
    );
    ensure!(t["stopCode"] == "EssentialContainerExited", "{t}");
    ensure!(container(&t, "writer")?["exitCode"] == 0, "{t}");
    ensure!(
        container(&t, "reader")?["exitCode"] == 0,
        "reader exit 3: it did not read what writer wrote; 4: it could write: {t}"
    );
    Ok(())
}

/// A host directory mounted read-only: a write fails (non-zero exit), a read succeeds, and
/// nothing reaches the host.
pub(super) fn volume_read_only_bind(w: &World) -> Result<()> {
    let scratch = w.scratch_dir("e2e-host-data")?;
    let host_data = scratch.join("data");
    std::fs::create_dir_all(&host_data)?;
    std::fs::write(host_data.join("greeting"), "hi from the host")?;
    let env = env_allowing(w, "10800", &[&scratch])?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "ro-bind",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
             "command": ["sh", "-c", "echo x > /data/new"]},
            {"name": "reader", "image": image, "memory": 64,
             "dependsOn": [{"containerName": "writer", "condition": "COMPLETE"}],
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
             "command": ["sh", "-c", "test \"$(cat /data/greeting)\" = 'hi from the host'"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "data", "host": {"sourcePath": host_data.display().to_string()}}]);
    let (_, t) = env.run_until(&def, "STOPPED", Duration::from_secs(90))?;
    let writer = container(&t, "writer")?["exitCode"].as_i64();
    ensure!(
        writer.is_some_and(|code| code != 0),
        "a write to a read-only mount must fail: {t}"
    );
    ensure!(
        container(&t, "reader")?["exitCode"] == 0,
        "the read failed: {t}"
    );
    ensure!(
        !host_data.join("new").exists(),
        "the write reached the host"
    );
    Ok(())
}

/// A host path outside `volume_host_paths`, directly or through a symlink inside an allowed
/// directory, stops the task before it starts, saying why.
pub(super) fn volume_host_path_refused(w: &World) -> Result<()> {
    let scratch = w.scratch_dir("e2e-host-allowed")?;
    std::os::unix::fs::symlink("/etc", scratch.join("etc-link"))?;
    let env = env_allowing(w, "10800", &[&scratch])?;
    let image = hello(w, "e2e-volumes")?;
    for (family, source, resolved) in [
        ("host-etc", "/etc".to_owned(), ""),
        (
            "host-link",
            scratch.join("etc-link").display().to_string(),
            " (resolved to /etc)",
        ),
    ] {
        let mut def = taskdef(
            family,
            serde_json::json!([
                {"name": "app", "image": image, "memory": 64,
                 "mountPoints": [{"sourceVolume": "etc", "containerPath": "/host-etc"}],
                 "command": ["cat", "/host-etc/shadow"]}
            ]),
        );
        def["volumes"] = serde_json::json!([{"name": "etc", "host": {"sourcePath": source}}]);
        let t = env.run_failing(&def)?;
        let expected = format!(
            "volume etc: host path {source} is outside the directories this agent allows{resolved}; volume_host_paths: {}",
            scratch.display()
        );
        ensure!(
            t["stoppedReason"] == expected.as_str(),
            "expected {expected:?}: {t}"
        );
        ensure!(
            container(&t, "app")?["exitCode"].is_null(),
            "the container must never have run: {t}"
        );
    }
    Ok(())
}

/// The task's volume directory exists on the host while it runs and is gone once the task is
/// cleaned up (cleanup wait 0).
pub(super) fn volume_cleanup(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "volume-clean",
        serde_json::json!([
            {"name": "app", "image": image, "memory": 64, "stopTimeout": 1,
             "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}],
             "command": ["sh", "-c", "echo x > /scratch/f; exec sleep 300"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "scratch", "host": {}}]);
    let (id, _) = env.start_task(&def)?;
    let task_dir = env.opts.data_dir.join("volumes").join(&id);
    poll(Duration::from_secs(20), || {
        Ok(task_dir.join("scratch/f").exists().then_some(()))
    })
    .with_context(|| format!("{} never appeared{}", task_dir.display(), env.logs()))?;
    env.ok(&["stop-task", &id])?;
    env.wait_released(&id, Duration::from_secs(60))?;
    poll(Duration::from_secs(20), || {
        Ok((!task_dir.exists()).then_some(()))
    })
    .with_context(|| format!("{} is left behind{}", task_dir.display(), env.logs()))?;
    Ok(())
}

/// A tmpfs docker volume is mounted once on the host and shared: `writer` writes, `reader`
/// sees the file on a tmpfs, the host sees the tmpfs with its size, and the cleanup unmounts
/// and removes it.
pub(super) fn volume_tmpfs(w: &World) -> Result<()> {
    let env = Env::with_agent(w, "0")?;
    let image = hello(w, "e2e-volumes")?;
    let mut def = taskdef(
        "tmpfs-volume",
        serde_json::json!([
            {"name": "writer", "image": image, "memory": 64, "essential": false,
             "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}],
             "command": ["sh", "-c", "echo fast > /fast/f"]},
            {"name": "reader", "image": image, "memory": 64, "stopTimeout": 1,
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}],
             "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}],
             "command": ["sh", "-c",
                 "grep -q ' /fast tmpfs ' /proc/mounts || exit 3; test \"$(cat /fast/f)\" = fast || exit 4; touch /fast/ok; exec sleep 300"]}
        ]),
    );
    def["volumes"] = serde_json::json!([{"name": "fast", "dockerVolumeConfiguration": {
        "scope": "task", "driver": "local",
        "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}}}]);
    env.register(&def)?;
    let id = env.run_task("tmpfs-volume")?;
    let host_dir = env.opts.data_dir.join("volumes").join(&id).join("fast");
    poll(Duration::from_secs(60), || {
        if env.task(&id)?["lastStatus"] == "STOPPED" {
            bail!("the task stopped: reader exit 3 = no tmpfs, 4 = file not shared");
        }
        Ok(host_dir.join("ok").exists().then_some(()))
    })
    .with_context(|| {
        format!(
            "reader never confirmed the shared tmpfs: {}{}",
            env.task(&id).map(|t| t.to_string()).unwrap_or_default(),
            env.logs()
        )
    })?;
    let mount_line = |dir: &std::path::Path| -> Result<Option<String>> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let dir = dir.display().to_string();
        Ok(mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dir.as_str()))
            .map(str::to_owned))
    };
    let line = mount_line(&host_dir)?.context("the tmpfs is not mounted on the host")?;
    ensure!(
        line.contains(" - tmpfs ") && line.contains("size=8192k"),
        "not an 8 MiB tmpfs: {line}"
    );
    env.ok(&["stop-task", &id])?;
    env.wait_released(&id, Duration::from_secs(60))?;
    poll(Duration::from_secs(20), || {
        Ok((mount_line(&host_dir)?.is_none() && !host_dir.exists()).then_some(()))
    })
    .with_context(|| {
        format!(
            "the tmpfs at {} outlived its task{}",
            host_dir.display(),
            env.logs()
        )
    })?;
    Ok(())
}

//! Host-path volumes are bound from what was checked: the runtime opens the path the agent
//! resolved without following any symlink and binds what it opened onto a staging point of the
//! task's. A symlink to `/` swapped in after the check fails the bind, and one swapped in after
//! the bind changes nothing a container sees. The race is made deterministic by doing the swap
//! between the check (resolving the path, as the agent does) and the runtime's bind, and again
//! after it. Nothing stays mounted after the task's volumes are removed, and the removal never
//! touches the host directory's content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use berth_runtime::{Mount, RegistryAuth, Runtime, RuntimeConfig, TaskVolume, TaskVolumeKind};
use berth_tests::{World, fixtures};

use super::{container, run_to_exit};

/// A runtime in its own namespace; returns it with its volume directory.
async fn runtime_and_volumes(w: &World) -> Result<(Runtime, PathBuf)> {
    let ns = w.unique("bind");
    let dir = w.scratch_dir(&ns)?;
    let mut config = RuntimeConfig::new(w.containerd().socket(), &dir);
    config.namespace = ns;
    config.insecure_registries = vec![w.registry().host()];
    let volumes = config.volume_dir.clone();
    let rt = Runtime::connect(config).await.context("connect runtime")?;
    Ok((rt, volumes))
}

/// An allowed directory holding `data/marker`; returns `data` as the agent resolves it.
fn allowed_data(w: &World, name: &str) -> Result<PathBuf> {
    let allowed = w.scratch_dir(&w.unique(name))?;
    let data = allowed.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("marker"), "the checked directory\n")?;
    Ok(std::fs::canonicalize(&data)?)
}

/// Replaces `path` by a symlink to `/`, keeping what was there at `<path>.orig`.
fn swap_in_root_symlink(path: &Path) -> Result<PathBuf> {
    let orig = path.with_extension("orig");
    std::fs::rename(path, &orig)?;
    std::os::unix::fs::symlink("/", path)?;
    Ok(orig)
}

/// The mount points below `dir`, from this process's mount table.
fn mounts_below(dir: &Path) -> Result<Vec<String>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dir = dir.display().to_string();
    Ok(table
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|mount_point| mount_point.starts_with(&dir))
        .map(str::to_owned)
        .collect())
}

fn host_volume(path: &Path) -> TaskVolume {
    TaskVolume {
        name: "data".to_owned(),
        kind: TaskVolumeKind::HostPath {
            path: path.to_path_buf(),
        },
    }
}

pub(super) async fn a_symlink_swapped_in_after_the_check_is_never_bound(
    w: Arc<World>,
) -> Result<()> {
    let (rt, volumes) = runtime_and_volumes(&w).await?;
    let checked = allowed_data(&w, "swap-before")?;
    let orig = swap_in_root_symlink(&checked)?;
    let task = w.unique("task");
    let err = rt
        .create_task_volumes(&task, &[host_volume(&checked)])
        .await
        .err()
        .context("a host path swapped for a symlink to / was bound")?;
    ensure!(
        err.to_string()
            .contains("is a symbolic link, which is not followed here"),
        "{err}"
    );
    ensure!(
        mounts_below(&volumes)?.is_empty(),
        "mounted: {:?}",
        mounts_below(&volumes)?
    );
    rt.remove_task_volumes(&task).await?;
    ensure!(orig.join("marker").exists());
    Ok(())
}

pub(super) async fn a_symlink_swapped_in_after_the_bind_changes_nothing(
    w: Arc<World>,
) -> Result<()> {
    let img = fixtures::hello(&w.registry().host(), "host-bind", "1.0").await?;
    let (rt, volumes) = runtime_and_volumes(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let checked = allowed_data(&w, "swap-after")?;
    let task = w.unique("task");
    let staged = rt
        .create_task_volumes(&task, &[host_volume(&checked)])
        .await?;
    let staging = staged.get("data").context("no staging point")?.clone();
    ensure!(
        staging.starts_with(volumes.join(&task)) && staging != checked,
        "containers would bind {} itself",
        staging.display()
    );
    let orig = swap_in_root_symlink(&checked)?;
    let mut spec = container(
        &task,
        "app",
        &img.reference,
        &["sh", "-c", "cat /data/marker; ls /data"],
    );
    spec.mounts = vec![Mount {
        source: staging.clone(),
        destination: "/data".into(),
        read_only: false,
    }];
    let (status, logs) = run_to_exit(&rt, &spec).await?;
    ensure!(status.code == 0, "exit {}: {logs:?}", status.code);
    ensure!(
        logs == ["the checked directory", "marker"],
        "the container saw {logs:?}"
    );
    rt.remove_task_volumes(&task).await?;
    ensure!(
        mounts_below(&volumes)?.is_empty(),
        "left mounted: {:?}",
        mounts_below(&volumes)?
    );
    ensure!(!volumes.join(&task).exists(), "the task's volumes are left");
    ensure!(
        orig.join("marker").exists(),
        "removing the task's volumes touched the host directory"
    );
    Ok(())
}

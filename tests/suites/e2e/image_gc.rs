//! The image collector (issue 21) through the real binaries, on a containerd whose root is a
//! small tmpfs of the trial's own: with the disk under its high mark, the unused images of a
//! repository go but its newest, and an image a running task uses stays; with the disk filled
//! past the high mark, the newest of the repository goes too, and the running task's image
//! still stays. Removals reclaim content and snapshots (containerd's synchronous collection).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_tests::fixtures;
use berth_tests::{PrivateContainerd, World};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::json;

use super::{Env, taskdef};

const WITHIN: Duration = Duration::from_secs(60);

/// A tmpfs mounted for the trial, detached when dropped (after the containerd on it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mib: u64) -> Result<Tmpfs> {
        std::fs::create_dir_all(at).with_context(|| format!("create {}", at.display()))?;
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={size_mib}m").as_str()),
        )
        .with_context(|| format!("mount a tmpfs on {}", at.display()))?;
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// The images in the agent's namespace.
fn images(containerd: &PrivateContainerd, ns: &str) -> Result<Vec<String>> {
    let out = containerd.ctr(&["-n", ns, "images", "ls", "-q"])?;
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    Ok(names)
}

/// Waits until the agent's namespace holds exactly `want`.
fn wait_images(env: &Env, containerd: &PrivateContainerd, want: &[&str]) -> Result<()> {
    let ns = env.opts.namespace.clone();
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    berth_tests::poll(WITHIN, || {
        let now = images(containerd, &ns)?;
        Ok((now == want).then_some(()))
    })
    .with_context(|| {
        format!(
            "the images never became {want:?}: {:?}{}",
            images(containerd, &ns),
            env.logs()
        )
    })
}

pub(super) fn the_right_images_go_and_the_rest_stay(w: &World) -> Result<()> {
    let dir = w.scratch_dir("gc")?;
    let root = dir.join("containerd").join("root");
    let tmpfs = Tmpfs::mount(&root, 48)?;
    let containerd = PrivateContainerd::start(&dir.join("containerd"))?;
    let host = w.registry().host();
    let repo = w.unique("gc-a");
    let mut tags = Vec::new();
    let mut hello_digest = String::new();
    for tag in ["1", "2", "3"] {
        let pushed = w.block_on(fixtures::hello(&host, &repo, tag))?;
        hello_digest = pushed.digest;
        tags.push(pushed.reference);
    }
    let kept = w.block_on(fixtures::layered(&host, &w.unique("gc-b"), "1"))?;
    let mut env = Env::new(w, "10800")?;
    env.opts.containerd_socket = containerd.socket().to_path_buf();
    env.opts.extra_args.extend(
        [
            "--image-cleanup-interval=1s",
            "--image-minimum-age=0",
            "--image-keep-newest=1",
            "--image-removals-per-cycle=10",
            "--image-gc-high-percent=85",
            "--image-gc-low-percent=80",
        ]
        .map(str::to_owned),
    );
    env.opts
        .extra_args
        .push(format!("--containerd-root={}", root.display()));
    env.connect()?;

    // The running task's image, in use throughout.
    env.start_task(&taskdef(
        "gc-running",
        json!([{"name": "app", "image": kept.reference, "memory": 32, "stopTimeout": 1,
                "command": ["sleep", "600"]}]),
    ))?;
    // Each tag of the repository used by a task in turn: its last use is that task's stop.
    for (i, tag) in tags.iter().enumerate() {
        let (id, _) = env.start_task(&taskdef(
            &format!("gc-used-{i}"),
            json!([{"name": "app", "image": tag, "memory": 32, "stopTimeout": 1,
                    "command": ["sleep", "600"]}]),
        ))?;
        env.stop_task(&id, WITHIN)?;
    }
    // Under the high mark: the repository's older tags go, its newest stays, as does the
    // running task's image.
    wait_images(&env, &containerd, &[&tags[2], &kept.reference])?;

    // Past the high mark: the newest of the repository goes too; the running task's stays.
    let stat = nix::sys::statvfs::statvfs(&root).context("statvfs the tmpfs")?;
    let total = stat.blocks() * stat.fragment_size();
    let used = total - stat.blocks_free() * stat.fragment_size();
    let fill = (total * 92 / 100).saturating_sub(used);
    std::fs::write(root.join("filler"), vec![0u8; fill as usize]).context("fill the tmpfs")?;
    wait_images(&env, &containerd, &[&kept.reference])?;
    let log = env.agent()?.daemon.log();
    ensure!(
        log.contains("image removed") && log.contains("% full: least recently used first"),
        "the agent did not log the removals with their reasons{}",
        env.logs()
    );
    // What the removed images alone held is gone from the content store.
    let content = containerd.ctr(&["-n", &env.opts.namespace, "content", "ls", "-q"])?;
    ensure!(
        !content.contains(&hello_digest),
        "the removed image's manifest is still in the content store: {content}"
    );
    drop(env);
    drop(containerd);
    drop(tmpfs);
    Ok(())
}

//! Pulls into content stores that already hold things: another namespace's image (containerd's
//! default "shared" policy lets a namespace adopt those blobs), some blobs but not others, half
//! written ingests, a locked ingest; and the pull of the largest fixtures under a small stack.

use std::sync::Arc;

use anyhow::{Context, Result};
use berth_runtime::{RegistryAuth, Runtime, RuntimeConfig};
use berth_tests::{ContentSharing, PrivateContainerd, World, fixtures};

/// A containerd of the trial's own with containerd's default content sharing, as most hosts
/// run it, and a runtime on it.
struct Host {
    containerd: PrivateContainerd,
    rt: Runtime,
    ns: String,
}

impl Host {
    async fn start(w: &World) -> Result<Host> {
        let dir = w.scratch_dir("cd")?;
        let containerd = PrivateContainerd::start_with(&dir.join("c"), ContentSharing::Shared)?;
        let ns = w.unique("berth");
        let mut config = RuntimeConfig::new(containerd.socket(), dir.join("data"));
        config.namespace = ns.clone();
        config.insecure_registries = vec![w.registry().host()];
        let rt = Runtime::connect(config).await.context("connect runtime")?;
        Ok(Host { containerd, rt, ns })
    }
}

pub(super) async fn after_ctr_pull_into_another_namespace(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "shared-other", "v1").await?;
    let host = Host::start(&w).await?;
    host.containerd.ctr(&[
        "-n",
        "other",
        "images",
        "pull",
        "--plain-http",
        &img.reference,
    ])?;
    host.rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let _ = &host.ns;
    Ok(())
}

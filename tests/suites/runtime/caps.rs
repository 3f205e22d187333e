//! Registry answers held in memory are capped (4 MiB by default): a hostile registry that
//! answers with a 100 MiB manifest (declared, or with no length at all), a 100 MiB index or a
//! manifest naming a 100 MiB config fails the pull with the size and the cap, without the
//! runtime reading the answer, and leaves nothing in containerd.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use berth_runtime::{PullError, RegistryAuth};
use berth_tests::{BadMode, BadRegistry, OVERSIZE, World};

use super::{assert_nothing_left, runtime_for};

/// More than the loopback socket buffers can hold between the two ends, far less than the
/// answer: a runtime that had read the body would have let the whole of it through.
const READ_BOUND: u64 = 32 << 20;

/// Pulls from a registry in `mode`; returns the error, the registry and its reference.
async fn refused(w: &World, mode: BadMode) -> Result<(PullError, BadRegistry)> {
    let reg = BadRegistry::start(mode)?;
    let reference = reg.reference("huge/app");
    let (rt, ns) = runtime_for(w, &reg.host()).await?;
    let err = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
        .err()
        .with_context(|| format!("pull of an oversized answer ({mode:?}) succeeded"))?;
    ensure!(
        matches!(err, PullError::TooLarge { .. }),
        "{mode:?}: {err:?}"
    );
    let text = err.to_string();
    ensure!(
        text.contains(&reg.host())
            && text.contains("over the cap of 4 MiB on manifests, indexes and image configs"),
        "{mode:?}: {text}"
    );
    assert_nothing_left(w, &ns)?;
    Ok((err, reg))
}

pub(super) async fn a_100_mib_manifest_is_refused(w: Arc<World>) -> Result<()> {
    let (err, reg) = refused(&w, BadMode::HugeManifest).await?;
    ensure!(
        err.to_string().contains(&format!(
            "the manifest of {} from registry {} is {OVERSIZE} bytes (100 MiB)",
            reg.reference("huge/app"),
            reg.host()
        )),
        "{err}"
    );
    let sent = reg.oversize_sent();
    ensure!(
        sent < READ_BOUND,
        "{sent} bytes of the manifest were let through"
    );
    Ok(())
}

pub(super) async fn a_manifest_without_a_length_is_stopped_at_the_cap(w: Arc<World>) -> Result<()> {
    let (err, reg) = refused(&w, BadMode::UnsizedManifest).await?;
    match &err {
        PullError::TooLarge { size, counted, .. } => ensure!(
            *counted && *size > 4 << 20 && *size <= (4 << 20) + (1 << 20),
            "stopped at {size} bytes (counted: {counted})"
        ),
        other => anyhow::bail!("{other:?}"),
    }
    ensure!(err.to_string().contains(" is at least "), "{err}");
    let sent = reg.oversize_sent();
    ensure!(
        sent < READ_BOUND,
        "{sent} bytes of the manifest were let through"
    );
    Ok(())
}

pub(super) async fn a_100_mib_index_is_refused(w: Arc<World>) -> Result<()> {
    let (err, reg) = refused(&w, BadMode::HugeIndex).await?;
    ensure!(
        err.to_string().contains("is 104857600 bytes (100 MiB)"),
        "{err}"
    );
    let sent = reg.oversize_sent();
    ensure!(
        sent < READ_BOUND,
        "{sent} bytes of the index were let through"
    );
    Ok(())
}

pub(super) async fn a_100_mib_config_is_refused_before_it_is_fetched(w: Arc<World>) -> Result<()> {
    let (err, reg) = refused(&w, BadMode::HugeConfig).await?;
    let config = &reg.image().config.digest;
    ensure!(
        err.to_string()
            .contains(&format!("the image config {config} of ")),
        "{err}"
    );
    let requests = reg.requests();
    ensure!(
        !requests
            .iter()
            .any(|r| r.ends_with(&format!("/blobs/{config}"))),
        "the config was asked for: {requests:?}"
    );
    ensure!(reg.oversize_sent() == 0);
    Ok(())
}

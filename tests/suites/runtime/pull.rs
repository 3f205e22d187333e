//! Pulls into content stores that already hold things, on a containerd of the trial's own with
//! containerd's default "shared" content policy, as most hosts run it: another namespace's
//! image (its blobs are adopted, not downloaded again), some blobs and not others, a manifest
//! without its config, half-written ingests (resumed; a foreign one is left alone), an ingest
//! another writer holds (waited for); and the largest fixtures pulled on worker threads with a
//! small stack. After each, the labels and leases are those of a clean pull.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use berth_runtime::{PulledImage, RegistryAuth, Runtime, RuntimeConfig};
use berth_tests::fixtures::{self, ImageFixture};
use berth_tests::pulled::{Pulled, expect_clean_pull};
use berth_tests::{ContentSharing, PrivateContainerd, World};

use super::{container, run_to_exit};

/// Worker stack of the small-stack trial: twice what a debug build needs, an eighth of tokio's
/// default (2 MiB). Measured: the trial passes with 128 KiB and overflows with 112 KiB (in
/// tonic's connection handshake, below the runtime's connect); before the pull's steps were
/// boxed, the pull alone overflowed 256 KiB.
const SMALL_STACK: usize = 256 << 10;

/// A containerd of the trial's own with the default content sharing policy.
struct Host {
    containerd: PrivateContainerd,
    dir: std::path::PathBuf,
}

impl Host {
    fn start(w: &World) -> Result<Host> {
        let dir = w.scratch_dir("shared")?;
        let containerd = PrivateContainerd::start_with(&dir.join("c"), ContentSharing::Shared)?;
        Ok(Host { containerd, dir })
    }

    /// The configuration of a runtime in a namespace of its own on this containerd.
    fn config(&self, w: &World) -> (RuntimeConfig, String) {
        let ns = w.unique("berth");
        let mut config = RuntimeConfig::new(self.containerd.socket(), self.dir.join(&ns));
        config.namespace = ns.clone();
        config.insecure_registries = vec![w.registry().host()];
        (config, ns)
    }

    async fn runtime(&self, w: &World) -> Result<(Runtime, String)> {
        let (config, ns) = self.config(w);
        let rt = Runtime::connect(config).await.context("connect runtime")?;
        Ok((rt, ns))
    }

    fn ctr(&self, args: &[&str]) -> Result<String> {
        self.containerd.ctr(args)
    }
}

/// Successful blob GETs of each of the image's blobs so far, by digest.
fn blob_gets(w: &World, img: &ImageFixture) -> Result<BTreeMap<String, usize>> {
    img.layer_digests
        .iter()
        .chain([&img.config_digest])
        .map(|d| Ok((d.clone(), w.registry().blob_get_count(&img.repo, d)?)))
        .collect()
}

/// How many times each blob was downloaded since `before`.
fn gets_since(
    w: &World,
    img: &ImageFixture,
    before: &BTreeMap<String, usize>,
) -> Result<BTreeMap<String, usize>> {
    Ok(blob_gets(w, img)?
        .into_iter()
        .map(|(d, n)| {
            let was = before.get(&d).copied().unwrap_or(0);
            (d, n - was)
        })
        .collect())
}

/// Runs the layered image: its three layers applied in order (whiteouts included).
async fn runs_layered(w: &World, rt: &Runtime, img: &ImageFixture) -> Result<()> {
    let task = w.unique("task");
    let script = "test ! -e /data/deleted.txt && cat /data/overwritten.txt /data/l2.txt";
    let spec = container(&task, "check", &img.reference, &["sh", "-c", script]);
    let (status, logs) = run_to_exit(rt, &spec).await?;
    ensure!(
        status.code == 0 && logs == ["newl2"],
        "exit {} logs {logs:?}",
        status.code
    );
    Ok(())
}

fn layer_sizes(img: &ImageFixture) -> Vec<u64> {
    img.image.layers.iter().map(|l| l.size()).collect()
}

/// The reproduction: `ctr images pull` of the image into another namespace (blobs and
/// snapshots there), then Berth's pull. Before the fix the runtime recursed until the worker's
/// stack overflowed. Now nothing is downloaded again, the blobs are labelled in Berth's
/// namespace, its own snapshots are unpacked, and the other namespace keeps its image.
pub(super) async fn reuses_an_image_another_namespace_pulled(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "pull-other-ns", "v1").await?;
    let host = Host::start(&w)?;
    host.ctr(&[
        "-n",
        "other",
        "images",
        "pull",
        "--plain-http",
        &img.reference,
    ])?;
    let before = blob_gets(&w, &img)?;
    let (rt, ns) = host.runtime(&w).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(
        pulled.downloaded == 0,
        "downloaded {} bytes",
        pulled.downloaded
    );
    let gets = gets_since(&w, &img, &before)?;
    ensure!(
        gets.values().all(|n| *n == 0),
        "blobs downloaded again: {gets:?}"
    );
    expect_clean_pull(&host.containerd, &ns, Pulled::Image(&img))?;
    runs_layered(&w, &rt, &img).await?;
    let others = host.ctr(&["-n", "other", "images", "ls", "-q"])?;
    ensure!(
        others.contains(&img.reference),
        "other lost its image: {others}"
    );
    let snaps = host.ctr(&["-n", "other", "snapshots", "ls"])?;
    ensure!(
        snaps.contains(&img.chain_id),
        "other lost its snapshots:\n{snaps}"
    );
    Ok(())
}

/// One layer (the middle one) committed in another namespace by a client that fetched it
/// itself: only the two others are downloaded.
pub(super) async fn downloads_only_the_layers_containerd_lacks(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "pull-some-layers", "v1").await?;
    let host = Host::start(&w)?;
    let middle = &img.image.layers[1];
    host.containerd.commit_blob(
        "other",
        &format!("fetched-{}", middle.digest),
        &middle.digest,
        &middle.blob,
    )?;
    let before = blob_gets(&w, &img)?;
    let (rt, ns) = host.runtime(&w).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let sizes = layer_sizes(&img);
    ensure!(
        pulled.downloaded == sizes[0] + sizes[2],
        "downloaded {} bytes, not the first and last layers' {} + {}",
        pulled.downloaded,
        sizes[0],
        sizes[2]
    );
    let gets = gets_since(&w, &img, &before)?;
    let expected: BTreeMap<String, usize> = [
        (img.layer_digests[0].clone(), 1),
        (img.layer_digests[1].clone(), 0),
        (img.layer_digests[2].clone(), 1),
        (img.config_digest.clone(), 1),
    ]
    .into();
    ensure!(
        gets == expected,
        "blob downloads {gets:?}, wanted {expected:?}"
    );
    expect_clean_pull(&host.containerd, &ns, Pulled::Image(&img))?;
    runs_layered(&w, &rt, &img).await
}

/// A manifest present without its config: committed unlabelled in another namespace, and in
/// Berth's own (as a client writing into it leaves it). Config and layers are downloaded, the
/// manifest is not rewritten but gets its garbage-collection references, so the collector
/// keeps config and layers.
pub(super) async fn manifest_present_config_missing(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "pull-manifest-only", "v1").await?;
    let manifest = &img.image.manifest;
    for own_namespace in [false, true] {
        let host = Host::start(&w)?;
        let (config, ns) = host.config(&w);
        let holder = if own_namespace { ns.as_str() } else { "other" };
        host.containerd.commit_blob(
            holder,
            &format!("fetched-{}", manifest.digest),
            &manifest.digest,
            &manifest.bytes,
        )?;
        let rt = Runtime::connect(config).await?;
        let pulled = rt
            .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
            .await
            .with_context(|| format!("manifest in {holder}"))?;
        let all: u64 = layer_sizes(&img).iter().sum();
        ensure!(
            pulled.downloaded == all,
            "manifest in {holder}: downloaded {} of {all}",
            pulled.downloaded
        );
        expect_clean_pull(&host.containerd, &ns, Pulled::Image(&img))
            .with_context(|| format!("manifest in {holder}"))?;
        runs_layered(&w, &rt, &img).await?;
    }
    Ok(())
}

/// Ingests left half written in Berth's namespace: the first layer's under the name Berth (and
/// containerd's own client) gives it, as a crashed pull leaves it, is resumed (the registry
/// sends only the rest); the last layer's holds bytes that are not the layer's, so containerd
/// refuses it at commit and it is written once more from the start; another client's ingest of
/// the middle layer under a name of its own, and one in another namespace, are left alone.
pub(super) async fn resumes_half_written_ingests(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "pull-half-written", "v1").await?;
    let host = Host::start(&w)?;
    let (config, ns) = host.config(&w);
    let layers = &img.image.layers;
    let sizes = layer_sizes(&img);
    let half = |i: usize| layers[i].blob.len() / 2;
    let cd = &host.containerd;
    let first = format!("layer-{}", layers[0].digest);
    cd.leave_ingest(
        &ns,
        &first,
        layers[0].blob.len(),
        &layers[0].digest,
        &layers[0].blob[..half(0)],
    )?;
    let last = format!("layer-{}", layers[2].digest);
    let garbage = vec![0x5a; half(2)];
    cd.leave_ingest(
        &ns,
        &last,
        layers[2].blob.len(),
        &layers[2].digest,
        &garbage,
    )?;
    let middle = &layers[1];
    let foreign = format!("other-client-{}", middle.digest);
    for holder in [ns.as_str(), "other"] {
        cd.leave_ingest(
            holder,
            &foreign,
            middle.blob.len(),
            &middle.digest,
            &middle.blob[..half(1)],
        )?;
    }
    let rt = Runtime::connect(config).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let resumed = sizes[0] - half(0) as u64;
    ensure!(
        pulled.downloaded == resumed + sizes[1] + sizes[2],
        "downloaded {}: wanted {resumed} (the first layer's rest) + {} + {}",
        pulled.downloaded,
        sizes[1],
        sizes[2]
    );
    let registry = w.registry();
    let sent = |i: usize| registry.blob_bytes_sent(&img.repo, &img.layer_digests[i]);
    ensure!(
        sent(0)? == resumed,
        "the registry sent {} bytes of the first layer, not the {resumed} missing",
        sent(0)?
    );
    // The refused resume asked for the rest, then for the whole layer.
    let refused = sizes[2] - half(2) as u64 + sizes[2];
    ensure!(
        sent(2)? == refused,
        "the registry sent {} bytes of the last layer, wanted {refused}",
        sent(2)?
    );
    ensure!(
        cd.active_ingests(&ns)? == [foreign.clone()],
        "ingests in {ns}: {:?}",
        cd.active_ingests(&ns)?
    );
    for holder in [ns.as_str(), "other"] {
        ensure!(
            cd.ingest_bytes(holder, &foreign)? == Some(half(1) as u64),
            "the foreign ingest in {holder} was touched"
        );
    }
    expect_clean_pull(cd, &ns, Pulled::Image(&img))?;
    runs_layered(&w, &rt, &img).await
}

/// Another writer holds the first layer's ingest (it wrote half and waits for more): the pull
/// writes the other blobs and waits for that one; once the writer goes, it resumes from what
/// the writer left.
pub(super) async fn waits_for_an_ingest_another_writer_holds(w: Arc<World>) -> Result<()> {
    let img = fixtures::layered(&w.registry().host(), "pull-held-ingest", "v1").await?;
    let host = Host::start(&w)?;
    let (config, ns) = host.config(&w);
    let first = &img.image.layers[0];
    let half = first.blob.len() / 2;
    let held = host.containerd.hold_ingest(
        &ns,
        &format!("layer-{}", first.digest),
        first.blob.len(),
        &first.digest,
        &first.blob[..half],
    )?;
    let rt = Arc::new(Runtime::connect(config).await?);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pull = {
        let (rt, reference) = (Arc::clone(&rt), img.reference.clone());
        tokio::spawn(async move {
            rt.pull_image(&reference, &RegistryAuth::Anonymous, Some(tx))
                .await
        })
    };
    // Every other blob lands while the first layer waits for its writer.
    let mut done = BTreeMap::new();
    let others = [&img.layer_digests[1], &img.layer_digests[2]];
    while !others.iter().all(|d| done.get(*d) == Some(&true)) {
        let p = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
            .await
            .context("no progress for 30 s")?
            .context("the pull ended before its other layers were written")?;
        done.insert(p.digest.clone(), p.done == p.total);
    }
    ensure!(
        !pull.is_finished(),
        "the pull finished while another writer held its first layer: {:?}",
        pull.await
    );
    held.release()?;
    let pulled: PulledImage = pull.await.context("pull task")??;
    let sizes = layer_sizes(&img);
    let resumed = sizes[0] - half as u64;
    ensure!(
        pulled.downloaded == resumed + sizes[1] + sizes[2],
        "downloaded {}, wanted {resumed} + {} + {}",
        pulled.downloaded,
        sizes[1],
        sizes[2]
    );
    ensure!(host.containerd.active_ingests(&ns)?.is_empty());
    expect_clean_pull(&host.containerd, &ns, Pulled::Image(&img))
}

/// The multi-arch index and the three-layer image pulled on worker threads with a
/// [`SMALL_STACK`] stack, into an empty store, then into a store prepared as the other trials
/// prepare it: the index pulled into another namespace (blobs and snapshots), one layer of the
/// other image committed there, another left half written in Berth's namespace, and a config
/// committed there without the pull's labels. A stack overflow aborts the whole suite.
pub(super) fn largest_fixtures_fit_a_small_stack(w: &World) -> Result<()> {
    let host_addr = w.registry().host();
    let index = w.block_on(fixtures::multiarch(&host_addr, "small-stack-index", "v1"))?;
    let layered = w.block_on(fixtures::layered(&host_addr, "small-stack-layered", "v1"))?;
    let amd64 = index.platform("linux/amd64").context("no amd64 entry")?;
    for prepared in [false, true] {
        let host = Host::start(w)?;
        let (config, ns) = host.config(w);
        if prepared {
            host.ctr(&[
                "-n",
                "other",
                "images",
                "pull",
                "--plain-http",
                &index.reference,
            ])?;
            let l2 = &layered.image.layers[1];
            host.containerd.commit_blob(
                "other",
                &format!("fetched-{}", l2.digest),
                &l2.digest,
                &l2.blob,
            )?;
            let l1 = &layered.image.layers[0];
            host.containerd.leave_ingest(
                &ns,
                &format!("layer-{}", l1.digest),
                l1.blob.len(),
                &l1.digest,
                &l1.blob[..l1.blob.len() / 2],
            )?;
            let c = &layered.image.config;
            host.containerd.commit_blob(
                &ns,
                &format!("fetched-{}", c.digest),
                &c.digest,
                &c.bytes,
            )?;
        }
        let small = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(SMALL_STACK)
            .thread_name("small-stack")
            .enable_all()
            .build()?;
        let refs = [index.reference.clone(), layered.reference.clone()];
        let pulls = small.spawn(async move {
            let rt = Runtime::connect(config).await?;
            for r in refs {
                rt.pull_image(&r, &RegistryAuth::Anonymous, None).await?;
            }
            Ok::<(), anyhow::Error>(())
        });
        small
            .block_on(pulls)
            .context("the pull task ended abnormally")?
            .with_context(|| format!("pull with {} KiB stacks", SMALL_STACK >> 10))?;
        small.shutdown_timeout(std::time::Duration::from_secs(5));
        expect_clean_pull(&host.containerd, &ns, Pulled::Index(&index, amd64))?;
        expect_clean_pull(&host.containerd, &ns, Pulled::Image(&layered))?;
    }
    Ok(())
}

//! Ready-made images the suites pull: built deterministically, pushed to a given registry.
//!
//! Each async function builds its image (on a blocking thread), pushes it under `repo:tag` and
//! returns what a test needs to know about it. The `*_image`/`*_index` functions only build.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use rand::{RngCore, SeedableRng, rngs::StdRng};

use crate::image::{
    BuiltImage, BuiltIndex, BuiltLayer, Compression, Image, ImageConfig, Layer, ManifestFormat,
    Platform, build_index,
};
use crate::push::{push_image, push_index};

/// A pushed image (or one platform of a pushed index).
#[derive(Debug, Clone)]
pub struct ImageFixture {
    /// `127.0.0.1:PORT/repo:tag`, or `127.0.0.1:PORT/repo@sha256:...` for an index child.
    pub reference: String,
    /// Registry host, `127.0.0.1:PORT`.
    pub host: String,
    /// Repository name.
    pub repo: String,
    /// Tag (the manifest digest for an index child).
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Config blob digest (containerd's image ID).
    pub config_digest: String,
    /// Layer blob digests, bottom first.
    pub layer_digests: Vec<String>,
    /// Layer diff IDs, bottom first.
    pub diff_ids: Vec<String>,
    /// Chain ID of the top layer (`sha256:<hex>`), the name of the top snapshot in containerd.
    pub chain_id: String,
    /// Platform of the config.
    pub platform: Platform,
    /// Everything that was pushed.
    pub image: BuiltImage,
}

impl ImageFixture {
    fn new(
        host: &str,
        repo: &str,
        tag: &str,
        reference: String,
        image: BuiltImage,
    ) -> Result<ImageFixture> {
        let chain_id = image.chain_id().context("image has no layers")?;
        Ok(ImageFixture {
            reference,
            host: host.to_owned(),
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            digest: image.manifest.digest.clone(),
            media_type: image.manifest.media_type.clone(),
            config_digest: image.config.digest.clone(),
            layer_digests: image.layer_digests(),
            diff_ids: image.diff_ids(),
            chain_id,
            platform: image.platform.clone(),
            image,
        })
    }

    /// `127.0.0.1:PORT/repo@<manifest digest>`.
    pub fn reference_by_digest(&self) -> String {
        format!("{}/{}@{}", self.host, self.repo, self.digest)
    }
}

/// A pushed index.
#[derive(Debug, Clone)]
pub struct IndexFixture {
    /// `127.0.0.1:PORT/repo:tag`.
    pub reference: String,
    /// Registry host.
    pub host: String,
    /// Repository name.
    pub repo: String,
    /// Tag.
    pub tag: String,
    /// Index digest.
    pub digest: String,
    /// Index media type.
    pub media_type: String,
    /// One entry per platform, in index order.
    pub manifests: Vec<ImageFixture>,
}

impl IndexFixture {
    /// The entry for `os/arch[/variant]` (as in [`Platform::spec`]).
    pub fn platform(&self, spec: &str) -> Option<&ImageFixture> {
        self.manifests.iter().find(|m| m.platform.spec() == spec)
    }
}

async fn push_built_image(
    host: &str,
    repo: &str,
    tag: &str,
    image: BuiltImage,
) -> Result<ImageFixture> {
    push_image(host, repo, tag, &image)
        .await
        .with_context(|| format!("push {host}/{repo}:{tag}"))?;
    ImageFixture::new(host, repo, tag, format!("{host}/{repo}:{tag}"), image)
}

async fn push_built_index(
    host: &str,
    repo: &str,
    tag: &str,
    index: BuiltIndex,
) -> Result<IndexFixture> {
    let digest = push_index(host, repo, tag, &index)
        .await
        .with_context(|| format!("push index {host}/{repo}:{tag}"))?;
    let manifests = index
        .manifests
        .iter()
        .map(|m| {
            let d = &m.manifest.digest;
            ImageFixture::new(host, repo, d, format!("{host}/{repo}@{d}"), m.clone())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IndexFixture {
        reference: format!("{host}/{repo}:{tag}"),
        host: host.to_owned(),
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        digest,
        media_type: index.index.media_type.clone(),
        manifests,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("image build task panicked")?
}

/// The busybox base layer, gzip, built once per process.
pub fn base_layer() -> Result<BuiltLayer> {
    static BASE: OnceLock<BuiltLayer> = OnceLock::new();
    if let Some(b) = BASE.get() {
        return Ok(b.clone());
    }
    let built = Layer::busybox_base(Compression::Gzip)?.build()?;
    Ok(BASE.get_or_init(|| built).clone())
}

/// Label naming the fixture in every fixture config, so no two fixtures share a config blob
/// (containerd downloads a blob once per content store, whatever the repository).
pub const FIXTURE_LABEL: &str = "dev.berth.test.fixture";

fn sh_config(fixture: &str, platform: Platform) -> ImageConfig {
    let labels = [(FIXTURE_LABEL.to_owned(), fixture.to_owned())].into();
    ImageConfig {
        platform,
        cmd: Some(vec!["sh".into()]),
        labels,
        ..ImageConfig::default()
    }
}

/// `hello`: the base layer (gzip), OCI manifest, linux/amd64, `Cmd ["sh"]`.
///
/// All fixtures share that base layer blob; each config carries [`FIXTURE_LABEL`].
pub fn hello_image() -> Result<BuiltImage> {
    BuiltImage::from_layers(
        vec![base_layer()?],
        &sh_config("hello", Platform::linux("amd64", None)),
        ManifestFormat::Oci,
    )
}

/// Builds and pushes [`hello_image`].
pub async fn hello(host: &str, repo: &str, tag: &str) -> Result<ImageFixture> {
    let image = blocking(hello_image).await?;
    push_built_image(host, repo, tag, image).await
}

/// `layered`, Docker v2 media types, `Cmd ["sh"]`:
/// - L1 (gzip): base + `/data/deleted.txt` ("gone"), `/data/overwritten.txt` ("old"),
///   `/data/dir/keep.txt` ("keep");
/// - L2 (uncompressed): `/data/l2.txt` ("l2");
/// - L3 (gzip): whiteout of `/data/deleted.txt`, `/data/overwritten.txt` = "new", opaque
///   `/data/dir` with `/data/dir/fresh.txt` ("fresh").
///
/// Result: no deleted.txt, overwritten.txt reads "new", /data/dir holds only fresh.txt.
pub fn layered_image() -> Result<BuiltImage> {
    let l1 = Layer::busybox_base(Compression::Gzip)?
        .dir("/data", 0o755)
        .file("/data/deleted.txt", "gone", 0o644)
        .file("/data/overwritten.txt", "old", 0o644)
        .file("/data/dir/keep.txt", "keep", 0o644);
    let l2 = Layer::new(Compression::None).file("/data/l2.txt", "l2", 0o644);
    let l3 = Layer::new(Compression::Gzip)
        .whiteout("/data/deleted.txt")
        .file("/data/overwritten.txt", "new", 0o644)
        .opaque_whiteout("/data/dir")
        .file("/data/dir/fresh.txt", "fresh", 0o644);
    Image {
        layers: vec![l1, l2, l3],
        config: sh_config("layered", Platform::linux("amd64", None)),
        format: ManifestFormat::Docker,
    }
    .build()
}

/// Builds and pushes [`layered_image`].
pub async fn layered(host: &str, repo: &str, tag: &str) -> Result<ImageFixture> {
    let image = blocking(layered_image).await?;
    push_built_image(host, repo, tag, image).await
}

fn index_of(fixture: &str, platforms: &[Platform]) -> Result<BuiltIndex> {
    let base = base_layer()?;
    let images = platforms
        .iter()
        .map(|p| {
            BuiltImage::from_layers(
                vec![base.clone()],
                &sh_config(fixture, p.clone()),
                ManifestFormat::Oci,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    build_index(images, ManifestFormat::Oci)
}

/// `multiarch`: OCI index of linux/amd64 and linux/arm64/v8 (same busybox layer; the arm64
/// entry is pullable, not runnable).
pub fn multiarch_index() -> Result<BuiltIndex> {
    index_of(
        "multiarch",
        &[
            Platform::linux("amd64", None),
            Platform::linux("arm64", Some("v8")),
        ],
    )
}

/// Builds and pushes [`multiarch_index`].
pub async fn multiarch(host: &str, repo: &str, tag: &str) -> Result<IndexFixture> {
    let index = blocking(multiarch_index).await?;
    push_built_index(host, repo, tag, index).await
}

/// `arm_only`: OCI index of linux/arm64/v8 and linux/s390x, nothing for amd64.
pub fn arm_only_index() -> Result<BuiltIndex> {
    index_of(
        "arm_only",
        &[
            Platform::linux("arm64", Some("v8")),
            Platform::linux("s390x", None),
        ],
    )
}

/// Builds and pushes [`arm_only_index`].
pub async fn arm_only(host: &str, repo: &str, tag: &str) -> Result<IndexFixture> {
    let index = blocking(arm_only_index).await?;
    push_built_index(host, repo, tag, index).await
}

/// Bytes of random data in each of the three `big` layers.
pub const BIG_LAYER_BYTES: usize = 10 * 1024 * 1024;

/// `big`: base + three gzip layers of [`BIG_LAYER_BYTES`] seeded random (incompressible)
/// bytes each, at `/big/<n>.bin` (n = 1..=3). OCI manifest, `Cmd ["sh"]`.
pub fn big_image() -> Result<BuiltImage> {
    let mut layers = vec![base_layer()?];
    for n in 1..=3u64 {
        let mut rng = StdRng::seed_from_u64(0xBE27_0000 + n);
        let mut data = vec![0u8; BIG_LAYER_BYTES];
        rng.fill_bytes(&mut data);
        layers.push(
            Layer::new(Compression::Gzip)
                .file(&format!("/big/{n}.bin"), data, 0o644)
                .build()?,
        );
    }
    BuiltImage::from_layers(
        layers,
        &sh_config("big", Platform::linux("amd64", None)),
        ManifestFormat::Oci,
    )
}

/// Builds and pushes [`big_image`].
pub async fn big(host: &str, repo: &str, tag: &str) -> Result<ImageFixture> {
    let image = blocking(big_image).await?;
    push_built_image(host, repo, tag, image).await
}

/// Bytes of random data in each of the ten `wide` layers (ten of them: about 200 MiB).
pub const WIDE_LAYER_BYTES: usize = 20 * 1024 * 1024;

/// `wide`: base + ten gzip layers of [`WIDE_LAYER_BYTES`] seeded random (incompressible)
/// bytes each, at `/wide/<n>.bin` (n = 1..=10), about 200 MiB in all: the pull benchmark's
/// image. OCI manifest, `Cmd ["sh"]`.
pub fn wide_image() -> Result<BuiltImage> {
    let mut layers = vec![base_layer()?];
    for n in 1..=10u64 {
        let mut rng = StdRng::seed_from_u64(0x71DE_0000 + n);
        let mut data = vec![0u8; WIDE_LAYER_BYTES];
        rng.fill_bytes(&mut data);
        layers.push(
            Layer::new(Compression::Gzip)
                .file(&format!("/wide/{n}.bin"), data, 0o644)
                .build()?,
        );
    }
    BuiltImage::from_layers(
        layers,
        &sh_config("wide", Platform::linux("amd64", None)),
        ManifestFormat::Oci,
    )
}

/// Builds and pushes [`wide_image`].
pub async fn wide(host: &str, repo: &str, tag: &str) -> Result<ImageFixture> {
    let image = blocking(wide_image).await?;
    push_built_image(host, repo, tag, image).await
}

/// `sysprobe` (tests/fixtures/sysprobe.c) built static with the host's gcc, once per process:
/// it makes the syscalls a seccomp test names and prints each result.
pub fn sysprobe_binary() -> Result<Vec<u8>> {
    static BINARY: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(b) = BINARY.get() {
        return Ok(b.clone());
    }
    let dir = tempfile::tempdir().context("temp dir for sysprobe")?;
    let source = dir.path().join("sysprobe.c");
    let binary = dir.path().join("sysprobe");
    std::fs::write(&source, include_str!("../fixtures/sysprobe.c"))?;
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .context(
            "run gcc (Debian's gcc and libc6-dev, installed by make deps) to build sysprobe",
        )?;
    anyhow::ensure!(
        out.status.success(),
        "gcc could not build sysprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = std::fs::read(&binary)?;
    Ok(BINARY.get_or_init(|| built).clone())
}

/// `probe`: the base layer plus /bin/sysprobe (see [`sysprobe_binary`]), `Cmd ["sh"]`.
pub fn probe_image() -> Result<BuiltImage> {
    let probe = Layer::new(Compression::Gzip).file("/bin/sysprobe", sysprobe_binary()?, 0o755);
    BuiltImage::from_layers(
        vec![base_layer()?, probe.build()?],
        &sh_config("probe", Platform::linux("amd64", None)),
        ManifestFormat::Oci,
    )
}

/// Builds and pushes [`probe_image`].
pub async fn probe(host: &str, repo: &str, tag: &str) -> Result<ImageFixture> {
    let image = blocking(probe_image).await?;
    push_built_image(host, repo, tag, image).await
}

/// How a hostile image's `/etc/passwd` is made (see [`hostile_image`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostilePasswd {
    /// A symlink to `/dev/zero`, which the image also has as a device node (1:5).
    SymlinkToDevZero,
    /// A FIFO: a reader that opens it blocks until a writer comes.
    Fifo,
    /// A symlink whose `..`s climb out of the image's root to the host's `/etc/passwd`.
    SymlinkOutsideRoot,
}

/// `hostile`: the base layer, then a layer whose `/etc/passwd` is what `kind` says.
pub fn hostile_image(kind: HostilePasswd) -> Result<BuiltImage> {
    // A later layer's entry replaces the base layer's file.
    let layer = Layer::new(Compression::Gzip);
    let layer = match kind {
        HostilePasswd::SymlinkToDevZero => layer
            .char_device("/dev/zero", 1, 5)
            .symlink("/etc/passwd", "/dev/zero"),
        HostilePasswd::Fifo => layer.fifo("/etc/passwd"),
        HostilePasswd::SymlinkOutsideRoot => {
            layer.symlink("/etc/passwd", "../../../../../../../../etc/passwd")
        }
    };
    BuiltImage::from_layers(
        vec![base_layer()?, layer.build()?],
        &sh_config(&format!("hostile-{kind:?}"), Platform::linux("amd64", None)),
        ManifestFormat::Oci,
    )
}

/// Builds and pushes [`hostile_image`].
pub async fn hostile(
    host: &str,
    repo: &str,
    tag: &str,
    kind: HostilePasswd,
) -> Result<ImageFixture> {
    let image = blocking(move || hostile_image(kind)).await?;
    push_built_image(host, repo, tag, image).await
}

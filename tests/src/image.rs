//! A small, deterministic OCI/Docker image builder: tar layers from entries, config, manifest, index.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use flate2::write::GzEncoder;
use serde_json::json;

use crate::digest::{chain_id, sha256_digest};
use crate::prereq::bins;

/// Every tar entry gets this mtime (2024-01-01T00:00:00Z) so builds are reproducible.
pub const FIXED_MTIME: u64 = 1_704_067_200;
/// The `created` timestamp written into every image config.
const CREATED: &str = "2024-01-01T00:00:00Z";
/// `PATH` in every default config.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// busybox applets linked as `/bin/<applet>` in the base layer.
pub const BASE_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "ls", "id", "env", "hostname", "head", "dd",
    "tail", "test", "mkdir", "rm", "touch", "wc", "grep", "seq", "yes", "printf", "kill", "stat",
    "date", "tr",
];

/// Media types used by the builder.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// Docker image manifest v2 schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker uncompressed layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (the usual case).
    Gzip,
    /// A plain tar.
    None,
}

/// The media-type family of manifests, configs and layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// `application/vnd.oci.image.*`.
    Oci,
    /// Docker v2 schema 2 and manifest lists.
    Docker,
}

/// One thing a layer adds or removes. Paths are absolute or relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Path in the image.
        path: String,
        /// Contents.
        data: Bytes,
        /// Permission bits (e.g. 0o755).
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Path in the image.
        path: String,
        /// Permission bits (e.g. 0o1777).
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Path in the image.
        path: String,
        /// What it points to.
        target: String,
    },
    /// A FIFO (named pipe).
    Fifo {
        /// Path in the image.
        path: String,
    },
    /// A character device node.
    CharDevice {
        /// Path in the image.
        path: String,
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
    /// Deletes `path` from lower layers (`.wh.<name>`).
    Whiteout {
        /// The deleted path.
        path: String,
    },
    /// Hides everything lower layers put in `dir` (`dir/.wh..wh..opq`).
    OpaqueWhiteout {
        /// The opaque directory.
        dir: String,
    },
}

/// A layer under construction.
#[derive(Debug, Clone)]
pub struct Layer {
    entries: Vec<Entry>,
    compression: Compression,
}

/// A layer turned into a blob.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// The blob as stored in the registry (compressed or not).
    pub blob: Bytes,
    /// sha256 of `blob`.
    pub digest: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Length of the uncompressed tar.
    pub uncompressed_size: u64,
    /// How `blob` is compressed.
    pub compression: Compression,
}

impl BuiltLayer {
    /// Size of the blob.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    /// The layer media type in `format`.
    pub fn media_type(&self, format: ManifestFormat) -> &'static str {
        match (format, self.compression) {
            (ManifestFormat::Oci, Compression::Gzip) => media::OCI_LAYER_GZIP,
            (ManifestFormat::Oci, Compression::None) => media::OCI_LAYER,
            (ManifestFormat::Docker, Compression::Gzip) => media::DOCKER_LAYER_GZIP,
            (ManifestFormat::Docker, Compression::None) => media::DOCKER_LAYER,
        }
    }
}

fn clean(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

impl Layer {
    /// An empty layer.
    pub fn new(compression: Compression) -> Layer {
        Layer {
            entries: Vec::new(),
            compression,
        }
    }

    /// The base layer: `/bin/busybox` (0755) with `/bin/<applet>` symlinks for [`BASE_APPLETS`],
    /// `/etc/passwd`, `/etc/group` and `/tmp` (1777).
    pub fn busybox_base(compression: Compression) -> Result<Layer> {
        let busybox = fs::read(bins::BUSYBOX).with_context(|| format!("read {}", bins::BUSYBOX))?;
        let mut layer =
            Layer::new(compression)
                .dir("/bin", 0o755)
                .file("/bin/busybox", busybox, 0o755);
        for applet in BASE_APPLETS {
            layer = layer.symlink(&format!("/bin/{applet}"), "busybox");
        }
        Ok(layer
            .dir("/etc", 0o755)
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                0o644,
            )
            .file("/etc/group", "root:x:0:\napp:x:1000:\nextra:x:1500:app\nnogroup:x:65534:\n", 0o644)
            .dir("/root", 0o700)
            .dir("/tmp", 0o1777))
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: Entry) -> Layer {
        self.entries.push(entry);
        self
    }

    /// Adds a regular file.
    pub fn file(self, path: &str, data: impl Into<Bytes>, mode: u32) -> Layer {
        self.entry(Entry::File {
            path: clean(path),
            data: data.into(),
            mode,
        })
    }

    /// Adds a directory.
    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.entry(Entry::Dir {
            path: clean(path),
            mode,
        })
    }

    /// Adds a symlink `path -> target`.
    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.entry(Entry::Symlink {
            path: clean(path),
            target: target.to_owned(),
        })
    }

    /// Adds a FIFO.
    pub fn fifo(self, path: &str) -> Layer {
        self.entry(Entry::Fifo { path: clean(path) })
    }

    /// Adds a character device node `major:minor`.
    pub fn char_device(self, path: &str, major: u32, minor: u32) -> Layer {
        self.entry(Entry::CharDevice {
            path: clean(path),
            major,
            minor,
        })
    }

    /// Deletes `path` from the layers below.
    pub fn whiteout(self, path: &str) -> Layer {
        self.entry(Entry::Whiteout { path: clean(path) })
    }

    /// Makes `dir` opaque: only what this layer puts in it remains visible.
    pub fn opaque_whiteout(self, dir: &str) -> Layer {
        self.entry(Entry::OpaqueWhiteout { dir: clean(dir) })
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The uncompressed tar: parents created as needed (0755 unless declared), fixed mtime,
    /// uid/gid 0.
    pub fn tar(&self) -> Result<Vec<u8>> {
        let declared: BTreeMap<&str, u32> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Dir { path, mode } => Some((path.as_str(), *mode)),
                _ => None,
            })
            .collect();
        let mut tar = TarWriter {
            builder: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
            declared,
        };
        for e in &self.entries {
            match e {
                Entry::File { path, data, mode } => {
                    tar.parents(path)?;
                    tar.file(path, data, *mode)?;
                }
                Entry::Dir { path, .. } => {
                    tar.parents(path)?;
                    tar.dir(path)?;
                }
                Entry::Symlink { path, target } => {
                    tar.parents(path)?;
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    tar.builder
                        .append_link(&mut h, path, target)
                        .with_context(|| format!("tar symlink {path}"))?;
                }
                Entry::Fifo { path } => {
                    tar.parents(path)?;
                    let mut h = header(tar::EntryType::Fifo, 0o644, 0);
                    tar.builder
                        .append_data(&mut h, path, std::io::empty())
                        .with_context(|| format!("tar fifo {path}"))?;
                }
                Entry::CharDevice { path, major, minor } => {
                    tar.parents(path)?;
                    let mut h = header(tar::EntryType::Char, 0o666, 0);
                    h.set_device_major(*major)
                        .and_then(|()| h.set_device_minor(*minor))
                        .with_context(|| format!("tar device numbers of {path}"))?;
                    tar.builder
                        .append_data(&mut h, path, std::io::empty())
                        .with_context(|| format!("tar device {path}"))?;
                }
                Entry::Whiteout { path } => {
                    let (parent, name) = match path.rsplit_once('/') {
                        Some((p, n)) => (Some(p), n),
                        None => (None, path.as_str()),
                    };
                    if name.is_empty() {
                        bail!("whiteout of an empty path");
                    }
                    let wh = match parent {
                        Some(p) => format!("{p}/.wh.{name}"),
                        None => format!(".wh.{name}"),
                    };
                    tar.parents(&wh)?;
                    tar.file(&wh, &[], 0o600)?;
                }
                Entry::OpaqueWhiteout { dir } => {
                    if dir.is_empty() {
                        bail!("opaque whiteout of the root directory");
                    }
                    tar.parents(dir)?;
                    tar.dir(dir)?;
                    tar.file(&format!("{dir}/.wh..wh..opq"), &[], 0o600)?;
                }
            }
        }
        tar.builder.into_inner().context("finish tar")
    }

    /// Builds the tar, compresses it and computes its digests.
    pub fn build(&self) -> Result<BuiltLayer> {
        let tar = self.tar()?;
        let diff_id = sha256_digest(&tar);
        let uncompressed_size = tar.len() as u64;
        let blob = match self.compression {
            Compression::None => tar,
            Compression::Gzip => {
                // flate2 writes mtime 0 and no file name: the output is deterministic.
                let mut gz = GzEncoder::new(
                    Vec::with_capacity(tar.len() / 2),
                    flate2::Compression::default(),
                );
                gz.write_all(&tar).context("gzip layer")?;
                gz.finish().context("gzip layer")?
            }
        };
        let digest = sha256_digest(&blob);
        Ok(BuiltLayer {
            blob: Bytes::from(blob),
            digest,
            diff_id,
            uncompressed_size,
            compression: self.compression,
        })
    }
}

struct TarWriter<'a> {
    builder: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
    declared: BTreeMap<&'a str, u32>,
}

impl TarWriter<'_> {
    fn parents(&mut self, path: &str) -> Result<()> {
        let parts: Vec<&str> = path.split('/').collect();
        for n in 1..parts.len() {
            self.dir(&parts[..n].join("/"))?;
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        if path.is_empty() || !self.dirs.insert(path.to_owned()) {
            return Ok(());
        }
        let mode = self.declared.get(path).copied().unwrap_or(0o755);
        let mut h = header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .with_context(|| format!("tar dir {path}"))
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .with_context(|| format!("tar file {path}"))
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME);
    h
}

/// An OS/architecture pair as used in configs and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>[/<variant>]`.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// `os/arch[/variant]`, the form `ctr --platform` takes.
    pub fn spec(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = json!({ "os": self.os, "architecture": self.architecture });
        if let (Some(variant), Some(map)) = (&self.variant, v.as_object_mut()) {
            map.insert("variant".into(), json!(variant));
        }
        v
    }
}

/// The parts of the image config the tests care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// Target platform.
    pub platform: Platform,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `config.Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `config.WorkingDir`.
    pub working_dir: Option<String>,
    /// `config.User`.
    pub user: Option<String>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
}

impl Default for ImageConfig {
    /// linux/amd64 with `PATH` set and nothing else.
    fn default() -> Self {
        ImageConfig {
            platform: Platform::linux("amd64", None),
            env: vec![DEFAULT_PATH_ENV.to_owned()],
            entrypoint: None,
            cmd: None,
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
        }
    }
}

impl ImageConfig {
    /// The config JSON for these layers (keys sorted: deterministic).
    pub fn to_json(&self, diff_ids: &[String]) -> serde_json::Value {
        let mut config = serde_json::Map::new();
        config.insert("Env".into(), json!(self.env));
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(e));
        }
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), json!(c));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), json!(u));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), json!(self.labels));
        }
        let mut v = self.platform.to_json();
        if let Some(map) = v.as_object_mut() {
            map.insert("created".into(), json!(CREATED));
            map.insert("config".into(), serde_json::Value::Object(config));
            map.insert(
                "rootfs".into(),
                json!({ "type": "layers", "diff_ids": diff_ids }),
            );
        }
        v
    }
}

/// A content-addressed JSON document or blob.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// The content.
    pub bytes: Bytes,
}

impl Blob {
    fn json(media_type: &str, value: &serde_json::Value) -> Result<Blob> {
        let bytes = serde_json::to_vec(value).context("serialize json")?;
        Ok(Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes: Bytes::from(bytes),
        })
    }

    /// Length of the content.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size() })
    }
}

/// An image to build.
#[derive(Debug, Clone)]
pub struct Image {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// Config.
    pub config: ImageConfig,
    /// Media-type family.
    pub format: ManifestFormat,
}

impl Image {
    /// Builds every layer, the config and the manifest.
    pub fn build(&self) -> Result<BuiltImage> {
        let layers = self
            .layers
            .iter()
            .map(Layer::build)
            .collect::<Result<Vec<_>>>()?;
        BuiltImage::from_layers(layers, &self.config, self.format)
    }
}

/// A built image: layer blobs, config blob and manifest.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Layers, bottom first.
    pub layers: Vec<BuiltLayer>,
    /// The config blob.
    pub config: Blob,
    /// The manifest.
    pub manifest: Blob,
    /// The platform from the config.
    pub platform: Platform,
    /// Media-type family.
    pub format: ManifestFormat,
}

impl BuiltImage {
    /// Assembles config and manifest around already built layers (e.g. to reuse layers for
    /// several platforms).
    pub fn from_layers(
        layers: Vec<BuiltLayer>,
        config: &ImageConfig,
        format: ManifestFormat,
    ) -> Result<BuiltImage> {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let (manifest_type, config_type) = match format {
            ManifestFormat::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
            ManifestFormat::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
        };
        let config_blob = Blob::json(config_type, &config.to_json(&diff_ids))?;
        let layer_descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| json!({ "mediaType": l.media_type(format), "digest": l.digest, "size": l.size() }))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_blob.descriptor(),
            "layers": layer_descs,
        });
        Ok(BuiltImage {
            manifest: Blob::json(manifest_type, &manifest)?,
            config: config_blob,
            layers,
            platform: config.platform.clone(),
            format,
        })
    }

    /// Layer blob digests, bottom first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// Layer diff IDs, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Chain ID of the top layer (the name of the top committed snapshot in containerd).
    pub fn chain_id(&self) -> Option<String> {
        chain_id(&self.diff_ids())
    }
}

/// An index (OCI index or Docker manifest list) and the images it lists.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    /// The listed images, in index order.
    pub manifests: Vec<BuiltImage>,
    /// The index document.
    pub index: Blob,
}

/// Builds an index of `manifests`, each entry carrying its image's platform.
pub fn build_index(manifests: Vec<BuiltImage>, format: ManifestFormat) -> Result<BuiltIndex> {
    if manifests.is_empty() {
        bail!("an index needs at least one manifest");
    }
    let index_type = match format {
        ManifestFormat::Oci => media::OCI_INDEX,
        ManifestFormat::Docker => media::DOCKER_LIST,
    };
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            let mut d = m.manifest.descriptor();
            if let Some(map) = d.as_object_mut() {
                map.insert("platform".into(), m.platform.to_json());
            }
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": index_type, "manifests": entries });
    Ok(BuiltIndex {
        index: Blob::json(index_type, &index)?,
        manifests,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn names(tar_bytes: &[u8]) -> Vec<(String, u32)> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            out.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().mode().unwrap(),
            ));
        }
        out
    }

    #[test]
    fn parents_whiteouts_and_determinism() {
        let l = Layer::new(Compression::Gzip)
            .file("/data/dir/keep.txt", "k", 0o644)
            .whiteout("/data/gone.txt")
            .opaque_whiteout("/data/dir")
            .dir("/tmp", 0o1777);
        let t = l.tar().unwrap();
        let n = names(&t);
        let paths: Vec<&str> = n.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "data/",
                "data/dir/",
                "data/dir/keep.txt",
                "data/.wh.gone.txt",
                "data/dir/.wh..wh..opq",
                "tmp/"
            ]
        );
        assert_eq!(n[5].1, 0o1777);
        let (a, b) = (l.build().unwrap(), l.build().unwrap());
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, sha256_digest(&t));
        let mut un = Vec::new();
        flate2::read::GzDecoder::new(&a.blob[..])
            .read_to_end(&mut un)
            .unwrap();
        assert_eq!(un, t);
    }

    #[test]
    fn uncompressed_blob_is_the_tar() {
        let l = Layer::new(Compression::None)
            .file("a", "x", 0o644)
            .build()
            .unwrap();
        assert_eq!(l.digest, l.diff_id);
        assert_eq!(l.media_type(ManifestFormat::Docker), media::DOCKER_LAYER);
    }

    #[test]
    fn manifest_and_index_shape() {
        let l = Layer::new(Compression::Gzip)
            .file("a", "x", 0o644)
            .build()
            .unwrap();
        let cfg = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..ImageConfig::default()
        };
        let img = BuiltImage::from_layers(vec![l.clone()], &cfg, ManifestFormat::Oci).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(m["layers"][0]["digest"], l.digest);
        assert_eq!(m["config"]["digest"], img.config.digest);
        let c: serde_json::Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], l.diff_id);
        assert_eq!(c["config"]["Cmd"][0], "sh");
        let arm = ImageConfig {
            platform: Platform::linux("arm64", Some("v8")),
            ..cfg
        };
        let arm = BuiltImage::from_layers(vec![l], &arm, ManifestFormat::Oci).unwrap();
        let idx = build_index(vec![img, arm], ManifestFormat::Oci).unwrap();
        let i: serde_json::Value = serde_json::from_slice(&idx.index.bytes).unwrap();
        assert_eq!(i["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(i["manifests"].as_array().unwrap().len(), 2);
    }
}

//! Pure parsing of what a registry answers: manifests, indexes and image configs in OCI and
//! Docker v2 media types, platform selection, and chain IDs.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::PullError;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Media types Berth asks the registry for, in order of preference.
pub(crate) const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Layer media types containerd's Diff service can apply.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// A content descriptor as manifests carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: i64,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
}

/// An OS/architecture pair with an optional variant, as indexes name their entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl Platform {
    /// The platform this process runs on, in OCI's names.
    pub(crate) fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry for `other` can run here. arm64 treats an absent variant as v8,
    /// as containerd's platform matcher does.
    pub(crate) fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let normalize = |p: &Platform| -> Option<String> {
            match (p.architecture.as_str(), p.variant.as_deref()) {
                ("arm64", None | Some("")) => Some("v8".to_owned()),
                (_, Some("")) => None,
                (_, v) => v.map(str::to_owned),
            }
        };
        match (normalize(self), normalize(other)) {
            (_, None) => true,
            (Some(a), Some(b)) => a == b,
            (None, Some(_)) => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A parsed image manifest: its config and layers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
}

/// What a manifest fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    Index(Vec<Descriptor>),
    Manifest(Manifest),
}

/// Parses manifest bytes. `content_type` is the registry's Content-Type (may be empty); the
/// document's own mediaType wins when present.
pub(crate) fn parse(bytes: &[u8], content_type: &str, what: &str) -> Result<Fetched, PullError> {
    let bad = |reason: String| PullError::BadManifest {
        what: what.to_owned(),
        reason,
    };
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let media_type = env
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| content_type.to_owned());
    if media_type == DOCKER_SCHEMA1 || env.schema_version == Some(1) {
        return Err(bad(
            "Docker schema 1 manifests are not supported; push the image again with a current client"
                .into(),
        ));
    }
    if env.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion is {:?}, expected 2",
            env.schema_version
        )));
    }
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_MANIFEST_LIST
        || (media_type.is_empty() && env.manifests.is_some());
    if is_index {
        let manifests = env
            .manifests
            .ok_or_else(|| bad("index has no manifests".into()))?;
        return Ok(Fetched::Index(manifests));
    }
    if !(media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST || media_type.is_empty()) {
        return Err(bad(format!("unsupported media type {media_type}")));
    }
    let config = env
        .config
        .ok_or_else(|| bad("manifest has no config".into()))?;
    let layers = env.layers.unwrap_or_default();
    for layer in &layers {
        if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(bad(format!(
                "layer {} has unsupported media type {:?}",
                layer.digest, layer.media_type
            )));
        }
    }
    for d in std::iter::once(&config).chain(&layers) {
        validate_digest(&d.digest).map_err(bad)?;
        if d.size < 0 {
            return Err(bad(format!("{} has negative size {}", d.digest, d.size)));
        }
    }
    Ok(Fetched::Manifest(Manifest { config, layers }))
}

/// Picks the entry of an index that runs on `want`; the error lists what the index offers.
pub(crate) fn select_platform<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
    index_name: &str,
) -> Result<&'a Descriptor, PullError> {
    entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| PullError::NoMatchingPlatform {
            wanted: want.to_string(),
            index: index_name.to_owned(),
            available: entries
                .iter()
                .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                .collect(),
        })
}

/// The parts of an image config the pull needs: the layers' uncompressed digests.
#[derive(Debug, Deserialize)]
struct ConfigRootfs {
    rootfs: Rootfs,
}

#[derive(Debug, Deserialize)]
struct Rootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Reads `rootfs.diff_ids` from an image config and checks they match the manifest's layers.
pub(crate) fn diff_ids(config: &[u8], layers: usize, what: &str) -> Result<Vec<String>, PullError> {
    let bad = |reason: String| PullError::BadManifest {
        what: what.to_owned(),
        reason,
    };
    let parsed: ConfigRootfs =
        serde_json::from_slice(config).map_err(|e| bad(format!("image config: {e}")))?;
    let ids = parsed.rootfs.diff_ids;
    if ids.len() != layers {
        return Err(bad(format!(
            "image config lists {} diff IDs but the manifest has {} layers",
            ids.len(),
            layers
        )));
    }
    for id in &ids {
        validate_digest(id).map_err(|r| bad(format!("image config: {r}")))?;
    }
    Ok(ids)
}

/// Chain IDs as the OCI image spec defines them: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for id in diff_ids {
        let next = match out.last() {
            None => id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {id}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// Checks a digest is `sha256:` followed by 64 lowercase hex characters.
pub(crate) fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some(("sha512", hex)) if hex.len() == 128 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(())
        }
        _ => Err(format!("{d:?} is not a valid digest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sha256:<hex>` of some bytes.
    fn sha256_digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest_json(media: &str, layer_media: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":10}},"layers":[{{"mediaType":"{layer_media}","digest":"{D2}","size":20}}]}}"#
        )
    }

    #[test]
    fn parses_oci_and_docker_manifests() {
        for (media, layer) in [
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ] {
            let Fetched::Manifest(m) =
                parse(manifest_json(media, layer).as_bytes(), "", "x").unwrap()
            else {
                panic!("expected a manifest");
            };
            assert_eq!(m.config.digest, D1);
            assert_eq!(m.layers.len(), 1);
            assert_eq!(m.layers[0].size, 20);
        }
    }

    #[test]
    fn refuses_foreign_layers_and_schema1() {
        let json = manifest_json(
            DOCKER_MANIFEST,
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        );
        let err = parse(json.as_bytes(), "", "app:1").unwrap_err().to_string();
        assert!(err.contains("unsupported media type"), "{err}");
        let err = parse(br#"{"schemaVersion":1,"name":"x"}"#, "", "app:1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema 1"), "{err}");
        let err = parse(b"not json", "", "app:1").unwrap_err().to_string();
        assert!(err.starts_with("bad manifest for app:1"), "{err}");
    }

    #[test]
    fn parses_index_and_selects_platform() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Fetched::Index(entries) = parse(json.as_bytes(), "", "x").unwrap() else {
            panic!("expected an index");
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&entries, &amd64, "x").unwrap().digest, D2);
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&entries, &arm64, "x").unwrap().digest, D1);
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let err = select_platform(&entries, &s390, "127.0.0.1:5000/app:1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no linux/s390x entry in index 127.0.0.1:5000/app:1; available: linux/arm64/v8, linux/amd64"
        );
    }

    #[test]
    fn arm_variants_must_match() {
        let v7 = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
        };
        let v6 = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v6".into()),
        };
        assert!(!v7.matches(&v6));
        assert!(v7.matches(&Platform {
            variant: None,
            ..v7.clone()
        }));
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn diff_ids_must_match_layer_count() {
        let cfg = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{D1}"]}}}}"#);
        assert_eq!(
            diff_ids(cfg.as_bytes(), 1, "x").unwrap(),
            vec![D1.to_owned()]
        );
        assert!(diff_ids(cfg.as_bytes(), 2, "x").is_err());
        assert!(diff_ids(br#"{"rootfs":{"diff_ids":["md5:00"]}}"#, 1, "x").is_err());
    }

    #[test]
    fn digests_are_validated() {
        assert!(validate_digest(D1).is_ok());
        assert!(validate_digest("sha256:abc").is_err());
        assert!(validate_digest("sha256:../../etc/passwd").is_err());
        assert!(validate_digest(&D1.to_uppercase()).is_err());
    }
}

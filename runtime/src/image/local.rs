//! Reading a pulled image back from containerd: image record → (index →) manifest → config,
//! and the chain ID of its top layer, which containers' snapshots are prepared from.

use super::manifest::{self, Fetched, Platform};
use crate::containerd::{Containerd, ContainerdError};

/// What creating a container needs to know about its image.
#[derive(Debug, Clone)]
pub(crate) struct LocalImage {
    pub(crate) config: oci_spec::image::ImageConfiguration,
    pub(crate) chain_id: String,
}

/// Why a local image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalImageError {
    #[error("image {image} is not in containerd namespace {namespace}; pull it first")]
    NotPulled { image: String, namespace: String },
    #[error("image {image} in containerd is unusable: {reason}")]
    Corrupt { image: String, reason: String },
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
}

pub(crate) async fn load(
    client: &dyn Containerd,
    image: &str,
) -> Result<LocalImage, LocalImageError> {
    let corrupt = |reason: String| LocalImageError::Corrupt {
        image: image.to_owned(),
        reason,
    };
    let target = match client.image_get(image).await {
        Ok(target) => target,
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let target = target.ok_or_else(|| LocalImageError::NotPulled {
        image: image.to_owned(),
        namespace: client.namespace().to_owned(),
    })?;
    let mut bytes = client.content_read(&target.digest).await?;
    let mut parsed =
        manifest::parse(&bytes, &target.media_type, image).map_err(|e| corrupt(e.to_string()))?;
    if let Fetched::Index(entries) = &parsed {
        let chosen = manifest::select_platform(entries, &Platform::host(), image)
            .map_err(|e| corrupt(e.to_string()))?;
        bytes = client.content_read(&chosen.digest).await?;
        parsed = manifest::parse(&bytes, &chosen.media_type, image)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    let Fetched::Manifest(m) = parsed else {
        return Err(corrupt("an index entry points to another index".into()));
    };
    let config_bytes = client.content_read(&m.config.digest).await?;
    let diff_ids = manifest::diff_ids(&config_bytes, m.layers.len(), image)
        .map_err(|e| corrupt(e.to_string()))?;
    let chain_id = manifest::chain_ids(&diff_ids)
        .pop()
        .ok_or_else(|| corrupt("the image has no layers".into()))?;
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| corrupt(format!("image config: {e}")))?;
    Ok(LocalImage { config, chain_id })
}

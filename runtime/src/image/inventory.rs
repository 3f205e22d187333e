//! The images already in containerd, for the agent's pull behaviours and its image collector:
//! whether a reference can start a container as it is (record, manifest, config and unpacked
//! snapshot all present), every image with its size, and removal, which waits for containerd's
//! garbage collector so the content and snapshots only that image held are gone when it
//! answers.

use std::time::SystemTime;

use super::PulledImage;
use super::manifest::{self, Fetched, Manifest, Platform};
use super::unpack;
use crate::containerd::{Blob, Containerd, ContainerdError};

/// One image in containerd's namespace, as the image collector and `list-images` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The record's name: the reference as it was pulled.
    pub name: String,
    /// Digest of what the record targets (an index or a manifest).
    pub target_digest: String,
    /// Bytes of the image's blobs: the target, and for this host's platform the manifest, the
    /// config and the compressed layers (only the target when they cannot be read).
    pub size: u64,
    /// When containerd last changed the record (created or re-pointed by a pull).
    pub updated_at: Option<SystemTime>,
}

/// The image as a pull would have left it, when `reference` is usable without the registry:
/// its record, its (platform's) manifest and config, and the snapshot of its top layer are in
/// containerd. None when anything is missing or unreadable: a pull then repairs it.
pub(crate) async fn cached(
    client: &dyn Containerd,
    reference: &str,
) -> Result<Option<PulledImage>, ContainerdError> {
    let target = match client.image_get(reference).await {
        Ok(Some(target)) => target,
        Ok(None) => return Ok(None),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((manifest_digest, manifest)) = platform_manifest(client, reference, &target).await?
    else {
        return Ok(None);
    };
    let config = match read(client, &manifest.config.digest).await? {
        Some(bytes) => bytes,
        None => return Ok(None),
    };
    let Ok(diff_ids) = manifest::diff_ids(&config, manifest.layers.len(), reference) else {
        return Ok(None);
    };
    let Some(chain_id) = manifest::chain_ids(&diff_ids).pop() else {
        return Ok(None);
    };
    if !unpack::snapshot_exists(client, &chain_id).await? {
        return Ok(None);
    }
    Ok(Some(PulledImage {
        name: reference.to_owned(),
        target_digest: target.digest,
        manifest_digest,
        config_digest: manifest.config.digest.clone(),
        chain_id,
        size: layers_size(&manifest),
        downloaded: 0,
    }))
}

/// Every image of the namespace with its size.
pub(crate) async fn list(client: &dyn Containerd) -> Result<Vec<ImageSummary>, ContainerdError> {
    let records = client.image_list().await?;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let mut size = u64::try_from(record.target.size).unwrap_or(0);
        // A record whose blobs are gone or unreadable still lists, with its target's size.
        if let Ok(Some((_, m))) = platform_manifest(client, &record.name, &record.target).await {
            let manifest_size = if record.target.digest == m.config.digest {
                0
            } else {
                u64::try_from(m.config.size).unwrap_or(0)
            };
            size += manifest_size + layers_size(&m);
        }
        out.push(ImageSummary {
            name: record.name,
            target_digest: record.target.digest,
            size,
            updated_at: record.updated_at,
        });
    }
    Ok(out)
}

/// Deletes the image record `name` and waits for containerd's garbage collector. An image that
/// is already gone is not an error.
pub(crate) async fn remove(client: &dyn Containerd, name: &str) -> Result<(), ContainerdError> {
    match client.image_delete(name, true).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

fn layers_size(m: &Manifest) -> u64 {
    m.layers
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0))
        .sum()
}

/// A blob's bytes, None when containerd does not have it.
async fn read(client: &dyn Containerd, digest: &str) -> Result<Option<Vec<u8>>, ContainerdError> {
    match client.content_read(digest).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The manifest of this host's platform (through the index when the record targets one), with
/// its digest; None when a blob is missing or does not parse.
async fn platform_manifest(
    client: &dyn Containerd,
    name: &str,
    target: &Blob,
) -> Result<Option<(String, Manifest)>, ContainerdError> {
    let Some(bytes) = read(client, &target.digest).await? else {
        return Ok(None);
    };
    match manifest::parse(&bytes, &target.media_type, name) {
        Ok(Fetched::Manifest(m)) => Ok(Some((target.digest.clone(), m))),
        Ok(Fetched::Index(entries)) => {
            let Ok(chosen) = manifest::select_platform(&entries, &Platform::host(), name) else {
                return Ok(None);
            };
            let Some(bytes) = read(client, &chosen.digest).await? else {
                return Ok(None);
            };
            match manifest::parse(&bytes, &chosen.media_type, name) {
                Ok(Fetched::Manifest(m)) => Ok(Some((chosen.digest.clone(), m))),
                _ => Ok(None),
            }
        }
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests;

//! Pushes built images and indexes to a registry through the distribution HTTP API.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::{Client, StatusCode, Url, header};

use crate::image::{Blob, BuiltImage, BuiltIndex};

/// Deadline of one HTTP request (a 30 MiB blob over loopback takes well under a second).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client for plain-HTTP registries. Installs the ring rustls provider on first use.
pub fn http_client() -> Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build http client")
}

/// Pushes the layers, config and manifest of `image` to `http://<registry_host>/v2/<repo>`
/// and tags the manifest `tag`. Returns the manifest digest (checked against the registry's
/// `Docker-Content-Digest`).
pub async fn push_image(
    registry_host: &str,
    repo: &str,
    tag: &str,
    image: &BuiltImage,
) -> Result<String> {
    let client = http_client()?;
    push_image_with(&client, registry_host, repo, tag, image).await
}

/// Pushes every image of `index` by digest, then the index as `tag`. Returns the index digest.
pub async fn push_index(
    registry_host: &str,
    repo: &str,
    tag: &str,
    index: &BuiltIndex,
) -> Result<String> {
    let client = http_client()?;
    for m in &index.manifests {
        push_image_with(&client, registry_host, repo, &m.manifest.digest, m).await?;
    }
    put_manifest(&client, registry_host, repo, tag, &index.index).await
}

async fn push_image_with(
    client: &Client,
    host: &str,
    repo: &str,
    reference: &str,
    image: &BuiltImage,
) -> Result<String> {
    for layer in &image.layers {
        push_blob(client, host, repo, &layer.digest, layer.blob.clone()).await?;
    }
    push_blob(
        client,
        host,
        repo,
        &image.config.digest,
        image.config.bytes.clone(),
    )
    .await?;
    put_manifest(client, host, repo, reference, &image.manifest).await
}

/// Uploads one blob unless the registry already has it (HEAD, then POST + monolithic PUT).
pub async fn push_blob(
    client: &Client,
    host: &str,
    repo: &str,
    digest: &str,
    bytes: bytes::Bytes,
) -> Result<()> {
    let blob_url = format!("http://{host}/v2/{repo}/blobs/{digest}");
    let head = client
        .head(&blob_url)
        .send()
        .await
        .with_context(|| format!("HEAD {blob_url}"))?;
    if head.status() == StatusCode::OK {
        return Ok(());
    }
    let start_url = format!("http://{host}/v2/{repo}/blobs/uploads/");
    let resp = client
        .post(&start_url)
        .send()
        .await
        .with_context(|| format!("POST {start_url}"))?;
    if resp.status() != StatusCode::ACCEPTED {
        bail!(
            "POST {start_url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("POST {start_url}: no Location header"))?;
    let base = Url::parse(&format!("http://{host}/")).context("registry url")?;
    let mut put_url = base
        .join(location)
        .with_context(|| format!("bad upload Location {location:?}"))?;
    put_url.query_pairs_mut().append_pair("digest", digest);
    let resp = client
        .put(put_url.clone())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("PUT {put_url}"))?;
    if resp.status() != StatusCode::CREATED {
        bail!(
            "PUT blob {digest} to {repo}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// PUTs a manifest or index under `reference` (tag or digest) with its media type.
pub async fn put_manifest(
    client: &Client,
    host: &str,
    repo: &str,
    reference: &str,
    manifest: &Blob,
) -> Result<String> {
    let url = format!("http://{host}/v2/{repo}/manifests/{reference}");
    let resp = client
        .put(&url)
        .header(header::CONTENT_TYPE, &manifest.media_type)
        .body(manifest.bytes.clone())
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    if resp.status() != StatusCode::CREATED {
        bail!(
            "PUT {url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let returned = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match returned {
        Some(d) if d != manifest.digest => {
            bail!(
                "registry stored {repo}:{reference} as {d}, but its content digest is {}",
                manifest.digest
            )
        }
        _ => Ok(manifest.digest.clone()),
    }
}

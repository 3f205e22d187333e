//! Mirrors' credentials and per-host client certificates against Debian's docker-registry, on
//! 127.0.0.1 only:
//! - a mirror is never sent the upstream's credentials: a mirror that would take them (the
//!   same htpasswd file) is asked anonymously, refuses, and the upstream serves the pull; once
//!   the agent's sources hold the mirror's own credentials (a token command for the mirror's
//!   host), the mirror serves it;
//! - a registry that demands a client certificate (`http.tls.clientcas`) is pulled from with
//!   the `client` pair its hosts.toml names, and refused without it; the pair belongs to the
//!   host whose table names it: on a mirror's table the mirror serves, on the upstream's only
//!   the mirror's handshake fails and the upstream serves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use berth_runtime::{CredentialSources, RegistryAuth};
use berth_tests::{PrivateRegistry, RegistryOptions, World, fixtures, parse_access_log};

use super::registry_hosts::{PASSWORD, USER, certificates, htpasswd_line, runtime, write};

/// Successful GETs of `/v2/<repository>/<kind>/...` in an htpasswd registry's log, once at
/// least `want` are there or after 5 s. (`PrivateRegistry::requests` syncs on a marker request,
/// which such a registry refuses unlogged.)
async fn served(
    registry: &PrivateRegistry,
    repository: &str,
    kind: &str,
    want: usize,
) -> Result<usize> {
    let prefix = format!("/v2/{repository}/{kind}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(registry.log_path())?;
        let n = parse_access_log(&text)
            .iter()
            .filter(|e| {
                e.method == "GET" && (200..300).contains(&e.status) && e.uri.starts_with(&prefix)
            })
            .count();
        if n >= want || std::time::Instant::now() >= deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn a_mirror_gets_its_own_credentials_never_the_upstreams(
    w: Arc<World>,
) -> Result<()> {
    let dir = w.scratch_dir("mirror-credentials")?;
    let plain = PrivateRegistry::start(&dir.join("plain"))?;
    let img = fixtures::hello(&plain.host(), "private/app", "v1").await?;
    let htpasswd = dir.join("htpasswd");
    write(&htpasswd, &htpasswd_line(USER, PASSWORD)?)?;
    // Both demand the same credentials and hold the same image.
    let locked = |name: &str| {
        PrivateRegistry::start_with(
            &dir.join(name),
            &RegistryOptions {
                htpasswd: Some(htpasswd.clone()),
                data: Some(plain.data_dir()),
                ..RegistryOptions::default()
            },
        )
    };
    let (upstream, mirror) = (locked("upstream")?, locked("mirror")?);
    let reference = format!("{}/private/app:v1", upstream.host());
    let certs = dir.join("certs.d");
    write(
        &certs.join(upstream.host()).join("hosts.toml"),
        &format!(
            "server = \"http://{up}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            up = upstream.host(),
            mirror = mirror.host()
        ),
    )?;
    let given = RegistryAuth::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    };

    // The task's credentials are the upstream's: the mirror, asked without them, refuses.
    let rt = runtime(&w, &certs, |_| {}).await?;
    let pulled = rt.pull_image(&reference, &given, None).await?;
    ensure!(pulled.manifest_digest == img.digest);
    ensure!(
        served(&mirror, "private/app", "manifests", 0).await? == 0
            && served(&mirror, "private/app", "blobs", 0).await? == 0,
        "the mirror served a pull it was given no credentials for"
    );
    let upstream_blobs = served(&upstream, "private/app", "blobs", 2).await?;
    ensure!(
        upstream_blobs >= 2,
        "the upstream served {upstream_blobs} blobs"
    );

    // The agent's sources hold the mirror's own credentials: the mirror serves the pull, the
    // upstream is not asked for the layer again.
    let command = dir.join("mirror-token-command");
    write(
        &command,
        &format!("#!/bin/sh\necho '{{\"username\": \"{USER}\", \"password\": \"{PASSWORD}\"}}'\n"),
    )?;
    std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755))?;
    let rt = runtime(&w, &certs, |c| {
        c.credentials = CredentialSources {
            token_commands: [(mirror.host(), command.clone())].into_iter().collect(),
            ..CredentialSources::default()
        };
    })
    .await?;
    let pulled = rt.pull_image(&reference, &given, None).await?;
    ensure!(pulled.manifest_digest == img.digest);
    let mirror_blobs = served(&mirror, "private/app", "blobs", upstream_blobs).await?;
    ensure!(
        mirror_blobs == upstream_blobs,
        "the mirror served {mirror_blobs} blobs"
    );
    ensure!(served(&upstream, "private/app", "blobs", 0).await? == upstream_blobs);
    Ok(())
}

/// A client CA and a client certificate it signed, as PEM files in `dir`: `client-ca.crt`,
/// `client.pem`, `client-key.pem` (not Docker's `*.cert`/`*.key` names, which would make them
/// the upstream's in any directory they are copied to).
fn client_certificate(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth-tests client CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth-agent");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("client-ca.crt"),
        dir.join("client.pem"),
        dir.join("client-key.pem"),
    );
    write(&paths.0, &ca.pem())?;
    write(&paths.1, &cert.pem())?;
    write(&paths.2, &key.serialize_pem())?;
    Ok(paths)
}

/// `dir/hosts.toml` with `text`, beside copies of the server CA and the client pair.
fn host_dir(dir: &Path, text: &str, files: &[&Path]) -> Result<()> {
    for file in files {
        if let Some(name) = file.file_name() {
            std::fs::create_dir_all(dir)?;
            std::fs::copy(file, dir.join(name))?;
        }
    }
    write(&dir.join("hosts.toml"), text)
}

pub(super) async fn a_client_certificate_is_presented_to_its_own_host_only(
    w: Arc<World>,
) -> Result<()> {
    let dir = w.scratch_dir("registry-mtls")?;
    let plain = PrivateRegistry::start(&dir.join("plain"))?;
    let img = fixtures::hello(&plain.host(), "secure/app", "v1").await?;
    let layer = &img.layer_digests[0];
    let (ca, cert, key) = certificates(&dir.join("pki"))?;
    let (client_ca, client_cert, client_key) = client_certificate(&dir.join("pki"))?;
    let mtls = PrivateRegistry::start_with(
        &dir.join("mtls"),
        &RegistryOptions {
            tls: Some((cert, key)),
            client_cas: vec![client_ca],
            data: Some(plain.data_dir()),
            ..RegistryOptions::default()
        },
    )?;
    let files = [ca.as_path(), client_cert.as_path(), client_key.as_path()];
    let client_pair = "[[\"client.pem\", \"client-key.pem\"]]";

    // The registry itself, with its client pair: pulled.
    let reference = format!("{}/secure/app:v1", mtls.host());
    let certs = dir.join("certs.d");
    host_dir(
        &certs.join(mtls.host()),
        &format!("ca = \"ca.crt\"\nclient = {client_pair}\n"),
        &files,
    )?;
    let rt = runtime(&w, &certs, |_| {}).await?;
    let pulled = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);

    // Without it: refused.
    let bare = dir.join("certs.d-without-client");
    host_dir(&bare.join(mtls.host()), "ca = \"ca.crt\"\n", &[&ca])?;
    let rt = runtime(&w, &bare, |c| c.pull_timeout = Duration::from_secs(5)).await?;
    if let Ok(pulled) = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
    {
        bail!("a registry that demands a client certificate served {pulled:?} without one");
    }

    // As a mirror of the plain registry, the pair in the mirror's table: the mirror serves.
    let upstream = plain.host();
    let reference = format!("{upstream}/secure/app:v1");
    // `top` is the upstream's settings, `own` the mirror's.
    let mirror_table = |top: &str, own: &str| {
        format!(
            "server = \"http://{upstream}\"\n{top}\n[host.\"https://{mirror}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n  ca = \"ca.crt\"\n{own}",
            mirror = mtls.host(),
        )
    };
    let with_pair = format!("client = {client_pair}\n");
    let mirrored = dir.join("certs.d-mirror");
    host_dir(
        &mirrored.join(&upstream),
        &mirror_table("", &format!("  {with_pair}")),
        &files,
    )?;
    let before = plain.blob_get_count("secure/app", layer)?;
    let rt = runtime(&w, &mirrored, |_| {}).await?;
    let pulled = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);
    ensure!(
        plain.blob_get_count("secure/app", layer)? == before,
        "the upstream served the layer the mutual-TLS mirror holds"
    );

    // The pair in the upstream's table (top level) is not the mirror's: its handshake fails
    // and the upstream serves.
    let upstream_only = dir.join("certs.d-upstream-client");
    host_dir(
        &upstream_only.join(&upstream),
        &mirror_table(&with_pair, ""),
        &files,
    )?;
    let rt = runtime(&w, &upstream_only, |_| {}).await?;
    let pulled = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);
    ensure!(
        plain.blob_get_count("secure/app", layer)? == before + 1,
        "the mirror served a pull without the client certificate it demands"
    );
    Ok(())
}

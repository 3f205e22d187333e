//! Registry TLS, mirrors and credentials against Debian's docker-registry through the real
//! runtime, on 127.0.0.1 only: a certs.d `hosts.toml` whose first mirror refuses connections
//! and whose second lacks the image falls through to the upstream (and a mirror that holds
//! the image serves it alone); a registry with its own CA is trusted through `ca.crt` in its
//! certs.d directory and refused, naming the file to add, without it; a registry demanding
//! htpasswd basic credentials is pulled from with a task's own credentials and with a token
//! command's, and refused without any.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use berth_runtime::{CredentialSources, PullError, RegistryAuth, Runtime, RuntimeConfig};
use berth_tests::{PrivateRegistry, RegistryOptions, World, fixtures, free_port};

pub(super) const USER: &str = "mirror-user";
pub(super) const PASSWORD: &str = "htpasswd-secret-0451";

/// A runtime in a namespace of its own, with `certs` as its certs.d directory.
pub(super) async fn runtime(
    w: &World,
    certs: &Path,
    edit: impl FnOnce(&mut RuntimeConfig),
) -> Result<Runtime> {
    let ns = w.unique("reghosts");
    let dir = w.scratch_dir(&ns)?;
    let mut config = RuntimeConfig::new(w.containerd().socket(), &dir);
    config.namespace = ns;
    config.registry_certs_dir = Some(certs.to_owned());
    edit(&mut config);
    Runtime::connect(config).await.context("connect runtime")
}

pub(super) fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

pub(super) async fn a_failing_mirror_falls_through_to_the_upstream(w: Arc<World>) -> Result<()> {
    let dir = w.scratch_dir("mirrors")?;
    let upstream = PrivateRegistry::start(&dir.join("upstream"))?;
    let img = fixtures::hello(&upstream.host(), "team/app", "v1").await?;
    let mirror = PrivateRegistry::start(&dir.join("mirror"))?;
    let refused = free_port()?;
    let certs = dir.join("certs.d");
    write(
        &certs.join(upstream.host()).join("hosts.toml"),
        &format!(
            "server = \"http://{up}\"\n\n\
             [host.\"http://127.0.0.1:{refused}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
             [host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            up = upstream.host(),
            mirror = mirror.host()
        ),
    )?;

    // The first mirror refuses the connection, the second has no such repository: the
    // upstream serves the image.
    let rt = runtime(&w, &certs, |_| {}).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);
    let asked: Vec<_> = mirror
        .requests()?
        .into_iter()
        .filter(|r| r.uri.starts_with("/v2/team/app/manifests/v1"))
        .collect();
    ensure!(
        asked.len() == 1
            && asked[0].status == 404
            && asked[0].uri.ends_with(&format!("?ns={}", upstream.host())),
        "the mirror was asked {asked:?}"
    );
    ensure!(upstream.manifest_get_count("team/app")? >= 1);
    ensure!(upstream.blob_get_count("team/app", &img.layer_digests[0])? == 1);

    // Once the mirror holds the image, it serves all of it; the upstream is not asked.
    fixtures::hello(&mirror.host(), "team/app", "v1").await?;
    let before = upstream.manifest_get_count("team/app")?;
    let rt = runtime(&w, &certs, |_| {}).await?;
    let pulled = rt
        .pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);
    ensure!(upstream.manifest_get_count("team/app")? == before);
    ensure!(upstream.blob_get_count("team/app", &img.layer_digests[0])? == 1);
    ensure!(mirror.blob_get_count("team/app", &img.layer_digests[0])? == 1);
    Ok(())
}

/// A CA, and a server certificate it signed for 127.0.0.1, as PEM files in `dir`: `ca.crt`,
/// `server.crt`, `server.key`.
pub(super) fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth-tests registry CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::new())?;
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::IpAddr::from([
        127, 0, 0, 1,
    ]))];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    write(&paths.0, &ca.pem())?;
    write(&paths.1, &cert.pem())?;
    write(&paths.2, &key.serialize_pem())?;
    Ok(paths)
}

pub(super) async fn a_registry_with_its_own_ca_is_trusted_through_certs_d(
    w: Arc<World>,
) -> Result<()> {
    let dir = w.scratch_dir("registry-tls")?;
    let plain = PrivateRegistry::start(&dir.join("plain"))?;
    let img = fixtures::hello(&plain.host(), "secure/app", "v1").await?;
    let (ca, cert, key) = certificates(&dir.join("pki"))?;
    let tls = PrivateRegistry::start_with(
        &dir.join("tls"),
        &RegistryOptions {
            tls: Some((cert, key)),
            data: Some(plain.data_dir()),
            ..RegistryOptions::default()
        },
    )?;
    let reference = format!("{}/secure/app:v1", tls.host());

    // Trusted through certs.d/<host:port>/ca.crt.
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(certs.join(tls.host()))?;
    std::fs::copy(&ca, certs.join(tls.host()).join("ca.crt"))?;
    let rt = runtime(&w, &certs, |_| {}).await?;
    let pulled = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);

    // Without it: refused at once (never retried), saying where the CA goes.
    let bare = dir.join("certs.d-without-ca");
    std::fs::create_dir_all(&bare)?;
    let rt = runtime(&w, &bare, |_| {}).await?;
    let err = match rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
    {
        Ok(_) => bail!("a registry signed by an unknown CA was trusted"),
        Err(e) => e,
    };
    let text = err.to_string();
    ensure!(
        matches!(
            err,
            PullError::Registry {
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
    ensure!(
        text.contains("TLS handshake failed")
            && text.contains("UnknownIssuer")
            && text.contains(&format!("{}/ca.crt", bare.join(tls.host()).display())),
        "{text}"
    );
    Ok(())
}

/// An htpasswd line for `user`, bcrypt as docker-registry requires.
pub(super) fn htpasswd_line(user: &str, password: &str) -> Result<String> {
    let hashed = bcrypt::hash_with_result(password, 5)?;
    Ok(format!(
        "{user}:{}\n",
        hashed.format_for_version(bcrypt::Version::TwoA)
    ))
}

pub(super) async fn credentials_from_each_source_against_htpasswd(w: Arc<World>) -> Result<()> {
    let dir = w.scratch_dir("registry-htpasswd")?;
    let plain = PrivateRegistry::start(&dir.join("plain"))?;
    let img = fixtures::hello(&plain.host(), "private/app", "v1").await?;
    let htpasswd = dir.join("htpasswd");
    write(&htpasswd, &htpasswd_line(USER, PASSWORD)?)?;
    let locked = PrivateRegistry::start_with(
        &dir.join("locked"),
        &RegistryOptions {
            htpasswd: Some(htpasswd),
            data: Some(plain.data_dir()),
            ..RegistryOptions::default()
        },
    )?;
    let reference = format!("{}/private/app:v1", locked.host());
    let certs = dir.join("certs.d");
    let insecure = |c: &mut RuntimeConfig| c.insecure_registries = vec![locked.host()];

    // No credentials: refused, and the error says to check them.
    let rt = runtime(&w, &certs, insecure).await?;
    let err = match rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await
    {
        Ok(_) => bail!("an htpasswd registry served an anonymous pull"),
        Err(e) => e,
    };
    ensure!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");

    // A task's own credentials (what a repositoryCredentials secret becomes).
    let given = RegistryAuth::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    };
    let pulled = rt.pull_image(&reference, &given, None).await?;
    ensure!(pulled.manifest_digest == img.digest);

    // A wrong password is refused, and never quoted.
    let rt = runtime(&w, &certs, insecure).await?;
    let wrong = RegistryAuth::Basic {
        username: USER.to_owned(),
        password: "not-the-password".to_owned(),
    };
    let err = match rt.pull_image(&reference, &wrong, None).await {
        Ok(_) => bail!("a wrong password was accepted"),
        Err(e) => e,
    };
    ensure!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    ensure!(
        !format!("{err:?} {err}").contains("not-the-password"),
        "{err:?}"
    );

    // A token command: ECR-style JSON with basic credentials.
    let command = dir.join("token-command");
    write(
        &command,
        &format!("#!/bin/sh\necho '{{\"username\": \"{USER}\", \"password\": \"{PASSWORD}\"}}'\n"),
    )?;
    std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755))?;
    let rt = runtime(&w, &certs, |c| {
        insecure(c);
        c.credentials = CredentialSources {
            token_commands: [(locked.host(), command.clone())].into_iter().collect(),
            ..CredentialSources::default()
        };
    })
    .await?;
    let pulled = rt
        .pull_image(&reference, &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == img.digest);
    Ok(())
}

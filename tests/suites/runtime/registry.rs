//! A registry that misbehaves, and credentials from the agent's sources, through the real
//! runtime: a registry answering 503 is tried again until it answers; a layer download reset
//! halfway resumes where containerd's ingest got to, which the registry sees as a Range
//! request; a registry that cannot be reached fails the pull once its deadline has passed,
//! naming the registry, the tries and the last error; a Docker config's `auths` and a token
//! command give credentials for basic and bearer registries, and no secret reaches an error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use berth_runtime::{CredentialSources, PullError, RegistryAuth, Runtime, RuntimeConfig};
use berth_tests::{
    AUTH_PASSWORD, AUTH_USER, BadMode, BadRegistry, UNAVAILABLE_ANSWERS, World, fixtures,
};

use super::assert_nothing_left;

/// A runtime in its own namespace reaching `host` over plain HTTP, configured by `edit`.
async fn runtime_configured(
    w: &World,
    host: &str,
    edit: impl FnOnce(&mut RuntimeConfig),
) -> Result<(Runtime, String)> {
    let ns = w.unique("registry");
    let dir = w.scratch_dir(&ns)?;
    let mut config = RuntimeConfig::new(w.containerd().socket(), &dir);
    config.namespace = ns.clone();
    config.insecure_registries = vec![host.to_owned()];
    edit(&mut config);
    let rt = Runtime::connect(config).await.context("connect runtime")?;
    Ok((rt, ns))
}

pub(super) async fn a_registry_answering_503_is_tried_again(w: Arc<World>) -> Result<()> {
    let reg = BadRegistry::start_serving(BadMode::Unavailable, fixtures::hello_image()?)?;
    let (rt, _) = runtime_configured(&w, &reg.host(), |_| {}).await?;
    let pulled = rt
        .pull_image(&reg.reference("flaky/app"), &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == reg.manifest_digest());
    let manifest_gets = reg
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/flaky/app/manifests/"))
        .count();
    ensure!(
        manifest_gets == UNAVAILABLE_ANSWERS + 1,
        "{manifest_gets} manifest requests: {:?}",
        reg.requests()
    );
    Ok(())
}

pub(super) async fn a_layer_reset_halfway_resumes_with_a_range_request(
    w: Arc<World>,
) -> Result<()> {
    let reg = BadRegistry::start_serving(BadMode::ResetMidBlob, fixtures::hello_image()?)?;
    let (rt, ns) = runtime_configured(&w, &reg.host(), |_| {}).await?;
    let pulled = rt
        .pull_image(&reg.reference("reset/app"), &RegistryAuth::Anonymous, None)
        .await?;
    ensure!(pulled.manifest_digest == reg.manifest_digest());
    let layer = reg.layer_digest();
    let gets = reg
        .requests()
        .iter()
        .filter(|r| r.ends_with(&layer))
        .count();
    ensure!(gets == 2, "{gets} layer requests: {:?}", reg.requests());
    let ranges = reg.ranges();
    let resumed = ranges.iter().find_map(|r| {
        r.strip_prefix(&format!("/v2/reset/app/blobs/{layer} bytes="))
            .and_then(|rest| rest.strip_suffix('-'))
            .and_then(|start| start.parse::<u64>().ok())
    });
    let size = reg.image().layers[0].blob.len() as u64;
    ensure!(
        resumed.is_some_and(|start| start > 0 && start <= size / 2),
        "no Range request resuming the layer after the bytes that arrived: {ranges:?}"
    );
    // containerd verified the whole layer at commit: the image unpacked and is recorded.
    let images = w.ctr(&["-n", &ns, "images", "ls", "-q"])?;
    ensure!(images.contains("reset/app"), "{images}");
    Ok(())
}

pub(super) async fn an_unreachable_registry_fails_after_its_tries(w: Arc<World>) -> Result<()> {
    let host = format!("127.0.0.1:{}", berth_tests::free_port()?);
    let (rt, ns) = runtime_configured(&w, &host, |c| {
        c.pull_timeout = Duration::from_secs(3);
    })
    .await?;
    let started = Instant::now();
    let err = rt
        .pull_image(&format!("{host}/app:1"), &RegistryAuth::Anonymous, None)
        .await
        .err()
        .context("pull from nothing succeeded")?;
    let took = started.elapsed();
    ensure!(took < Duration::from_secs(10), "gave up after {took:?}");
    let PullError::GaveUp { tries, last, .. } = &err else {
        anyhow::bail!("{err:?}");
    };
    ensure!(*tries >= 2, "{err}");
    ensure!(
        matches!(**last, PullError::RegistryUnreachable { .. }),
        "{err}"
    );
    let text = err.to_string();
    ensure!(
        text.starts_with(&format!(
            "registry {host} failed {tries} tries of {host}/app:1 within 3s; last error: registry {host} is unreachable: "
        )),
        "{text}"
    );
    assert_nothing_left(&w, &ns)
}

fn executable(path: &Path, script: &str) -> Result<()> {
    std::fs::write(path, format!("#!/bin/sh\n{script}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

pub(super) async fn credentials_from_a_docker_config_and_a_token_command(
    w: Arc<World>,
) -> Result<()> {
    let dir = w.scratch_dir("registry-creds")?;
    // Basic: the Docker config's `auths`, as `docker login` leaves it.
    let basic = BadRegistry::start(BadMode::BasicAuth)?;
    let docker = dir.join("config.json");
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    std::fs::write(
        &docker,
        serde_json::json!({ "auths": { format!("http://{}", basic.host()): { "auth": auth } } })
            .to_string(),
    )?;
    let (rt, _) = runtime_configured(&w, &basic.host(), |c| {
        c.credentials = CredentialSources {
            docker_config: Some(docker.clone()),
            ..CredentialSources::default()
        };
    })
    .await?;
    let pulled = rt
        .pull_image(
            &basic.reference("private/app"),
            &RegistryAuth::Anonymous,
            None,
        )
        .await?;
    ensure!(pulled.manifest_digest == basic.manifest_digest());

    // Bearer: a token command prints ECR-style JSON; the basic credentials are exchanged at
    // the registry's realm for the bearer token.
    let bearer = BadRegistry::start(BadMode::TokenAuth)?;
    let count = dir.join("token-runs");
    let command = dir.join("token-command");
    executable(
        &command,
        &format!(
            "echo \"$1\" >> {}\necho '{{\"username\": \"{AUTH_USER}\", \"password\": \"{AUTH_PASSWORD}\", \"expires_at\": \"2999-01-01T00:00:00Z\"}}'",
            count.display()
        ),
    )?;
    let broken = dir.join("broken-command");
    executable(&broken, "echo 'session expired' >&2\nexit 3")?;
    let other = BadRegistry::start(BadMode::TokenAuth)?;
    let (rt, _) = runtime_configured(&w, &bearer.host(), |c| {
        c.insecure_registries.push(other.host());
        c.credentials = CredentialSources {
            token_commands: [(bearer.host(), command.clone()), (other.host(), broken)]
                .into_iter()
                .collect(),
            ..CredentialSources::default()
        };
    })
    .await?;
    for repo in ["private/app", "private/other"] {
        let pulled = rt
            .pull_image(&bearer.reference(repo), &RegistryAuth::Anonymous, None)
            .await?;
        ensure!(pulled.manifest_digest == bearer.manifest_digest());
    }
    ensure!(
        bearer
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /token")),
        "the realm was never asked: {:?}",
        bearer.requests()
    );
    // Kept until its stated expiry: one run for both pulls, given the registry host.
    let runs = std::fs::read_to_string(&count)?;
    ensure!(runs == format!("{}\n", bearer.host()), "{runs:?}");

    let err = rt
        .pull_image(
            &other.reference("private/app"),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .err()
        .context("a pull whose token command failed succeeded")?;
    let text = err.to_string();
    ensure!(
        matches!(err, PullError::Credentials { .. })
            && text.contains(&format!("for registry {}", other.host()))
            && text.ends_with("it failed (exit status: 3): session expired"),
        "{text}"
    );
    ensure!(!text.contains(AUTH_PASSWORD), "{text}");
    Ok(())
}

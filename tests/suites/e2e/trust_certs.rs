//! Certificates over the real wire against the TLS scheduler: a client certificate made with
//! `berthctl create-client-certificate` carries its role and cluster scope; an agent's
//! certificate used on ControlService is refused (PermissionDenied, naming why); a forged
//! certificate (self-signed with an admin's URI SAN), an expired one of the cluster CA and one
//! of another CA are refused at the handshake, which the scheduler logs with the peer and the
//! reason; an admin revokes a client certificate by its serial and every call with it is then
//! refused; an expired join token keeps an agent out. None of the refusals changes what the
//! scheduler holds, and the client's key appears in no log or list output.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use berth_tests::World;
use berth_tests::berth::{Agent, JoinCredentials, ctl_command};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair, SanType};

use super::Env;

/// berthctl with no config file: the scheduler's endpoint and CA, and this certificate.
fn with_cert(env: &Env, cert: &Path, key: &Path, args: &[&str]) -> Result<(i32, String)> {
    let empty = env.dir.join("no-credential.toml");
    std::fs::write(&empty, "")?;
    let out = ctl_command(&empty)?
        .env("BERTH_ENDPOINT", &env.scheduler.endpoint)
        .env("BERTH_CA_FILE", env.scheduler.data_dir.join("pki/ca.crt"))
        .env("BERTH_CERT_FILE", cert)
        .env("BERTH_KEY_FILE", key)
        .env_remove("BERTH_TOKEN")
        .args(["--cluster", &env.cluster])
        .args(args)
        .output()
        .context("run berthctl")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A certificate for `uri` valid from `not_before` to `not_after`, signed by `issuer` (or
/// self-signed); its PEM files under `dir`.
fn make_cert(
    dir: &Path,
    name: &str,
    uri: &str,
    validity: (SystemTime, SystemTime),
    issuer: Option<&Issuer<'_, KeyPair>>,
) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.not_before = validity.0.into();
    params.not_after = validity.1.into();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer)?,
        None => params.self_signed(&key)?,
    };
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((cert_path, key_path))
}

/// What the scheduler holds that a refusal must leave alone: instances (without their
/// heartbeat times), tasks, API tokens, and the join tokens but `except`.
fn holdings(env: &Env, except: Option<&str>) -> Result<Vec<String>> {
    let mut instances = env.instances()?;
    for i in &mut instances {
        // Live observations, not what a call writes: heartbeats, the agent's health and the
        // measured use change on their own.
        if let Some(o) = i.as_object_mut() {
            for live in ["lastHeartbeatAt", "agentHealth", "measuredResources"] {
                o.remove(live);
            }
        }
    }
    let mut joins = env.json(&["list-join-tokens"])?["joinTokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    joins.retain(|t| except.is_none_or(|id| t["id"] != id));
    Ok(vec![
        serde_json::to_string(&instances)?,
        env.json(&["list-tasks"])?.to_string(),
        env.json(&["list-api-tokens"])?.to_string(),
        serde_json::to_string(&joins)?,
    ])
}

pub(super) fn client_certificates_carry_a_role_and_forged_ones_are_refused(
    w: &World,
) -> Result<()> {
    let env = Env::with_agent(w, "10800")?;
    let certs = env.dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let path = |n: &str| certs.join(n).to_string_lossy().into_owned();

    // An operator certificate scoped to this cluster, its key made by berthctl (0600).
    let made = env.json(&[
        "create-client-certificate",
        "--name",
        "ci@ops",
        "--role",
        "operator",
        "--cert-out",
        &path("op.crt"),
        "--key-out",
        &path("op.key"),
    ])?;
    ensure!(made["role"] == "operator", "{made}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(certs.join("op.key"))?
        .permissions()
        .mode()
        & 0o777;
    ensure!(mode == 0o600, "the client key has mode {mode:o}");
    let (op_cert, op_key) = (certs.join("op.crt"), certs.join("op.key"));
    let (status, err) = with_cert(&env, &op_cert, &op_key, &["list-tasks"])?;
    ensure!(status == 0, "an operator certificate cannot list: {err}");
    let (status, err) = with_cert(
        &env,
        &op_cert,
        &op_key,
        &["create-api-token", "--role", "admin"],
    )?;
    ensure!(
        status != 0 && err.contains("client certificate ci@ops has role operator"),
        "an operator certificate making a token: {err}"
    );

    // Listed by serial (never with a key), revoked by an admin, then refused on every call.
    let serial = made["serial"].as_str().context("no serial")?.to_owned();
    let listed = env.json(&["list-client-certificates"])?;
    let entry = listed["clientCertificates"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["serial"] == serial.as_str()))
        .with_context(|| format!("{serial} is not listed: {listed}"))?;
    ensure!(
        entry["name"] == "ci@ops"
            && entry["role"] == "operator"
            && entry.get("revokedAt").is_none(),
        "{entry}"
    );
    let (status, err) = with_cert(
        &env,
        &op_cert,
        &op_key,
        &["revoke-client-certificate", &serial],
    )?;
    ensure!(
        status != 0 && err.contains("has role operator"),
        "an operator revoking a certificate: {err}"
    );
    let revoked = env.json(&["revoke-client-certificate", &serial])?;
    ensure!(revoked["revokedAt"].is_string(), "{revoked}");
    let (status, err) = with_cert(&env, &op_cert, &op_key, &["list-tasks"])?;
    ensure!(
        status != 0
            && err.contains(&format!(
                "client certificate {serial} of ci@ops was revoked at"
            )),
        "a revoked certificate listing tasks: {err}"
    );
    env.scheduler
        .daemon
        .wait_for_log("was revoked at", Duration::from_secs(10))?;
    // A fresh operator certificate for what follows.
    std::fs::remove_file(certs.join("op.crt"))?;
    std::fs::remove_file(certs.join("op.key"))?;
    env.json(&[
        "create-client-certificate",
        "--name",
        "ci@ops",
        "--role",
        "operator",
        "--cert-out",
        &path("op.crt"),
        "--key-out",
        &path("op.key"),
    ])?;

    let other = w.unique("b");
    env.ok(&["create-cluster", &other])?;
    let empty = env.dir.join("no-credential.toml");
    let out = ctl_command(&empty)?
        .env("BERTH_ENDPOINT", &env.scheduler.endpoint)
        .env("BERTH_CA_FILE", env.scheduler.data_dir.join("pki/ca.crt"))
        .args([
            "--cert-file",
            &path("op.crt"),
            "--key-file",
            &path("op.key"),
        ])
        .args(["--cluster", &other, "list-tasks"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("is scoped to cluster"),
        "a certificate of one cluster on another: {err}"
    );

    let before = holdings(&env, None)?;

    // The agent's own certificate on ControlService.
    let tls = env.opts.data_dir.join("tls");
    let (status, err) = with_cert(
        &env,
        &tls.join("agent.crt"),
        &tls.join("agent.key"),
        &["list-tasks"],
    )?;
    ensure!(
        status != 0 && err.contains("is an agent's and cannot call ControlService"),
        "an agent certificate on ControlService: {err}"
    );
    ensure!(
        env.scheduler.daemon.log().contains("control call refused"),
        "the scheduler did not log the refusal"
    );

    // Forged, expired and foreign certificates naming an admin: refused at the handshake.
    let admin_uri = "spiffe://berth/client/mallory/role/admin";
    let now = SystemTime::now();
    let valid = (
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let (forged, forged_key) = make_cert(&certs, "forged", admin_uri, valid, None)?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(
        env.scheduler.data_dir.join("pki/ca.key"),
    )?)?;
    let ca_pem = std::fs::read_to_string(env.scheduler.data_dir.join("pki/ca.crt"))?;
    let ca = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let expired_window = (
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    let (expired, expired_key) =
        make_cert(&certs, "expired", admin_uri, expired_window, Some(&ca))?;
    let mut foreign_ca = CertificateParams::default();
    foreign_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign_key = KeyPair::generate()?;
    let foreign = Issuer::new(foreign_ca, foreign_key);
    let (other_ca, other_ca_key) = make_cert(&certs, "other-ca", admin_uri, valid, Some(&foreign))?;
    for (what, cert, key) in [
        ("a self-signed certificate", &forged, &forged_key),
        ("an expired certificate", &expired, &expired_key),
        ("another CA's certificate", &other_ca, &other_ca_key),
    ] {
        let (status, err) = with_cert(&env, cert, key, &["create-api-token", "--role", "admin"])?;
        ensure!(status != 0, "{what} was accepted");
        ensure!(
            err.contains("cannot reach the scheduler") || err.contains("certificate"),
            "{what}: an unclear error: {err}"
        );
    }
    // The scheduler's side: each refused handshake logged with the peer and the reason
    // (logged once the connection is dropped, so maybe after berthctl has exited).
    let refusals = |log: &str, reason: &str| {
        log.lines()
            .filter(|l| {
                l.contains("TLS handshake refused: bad client certificate")
                    && l.contains("127.0.0.1:")
                    && l.contains(reason)
            })
            .count()
    };
    berth_tests::poll(Duration::from_secs(20), || {
        let log = env.scheduler.daemon.log();
        Ok((refusals(&log, "not issued by this cluster's CA") >= 2
            && refusals(&log, "has expired") >= 1)
            .then_some(()))
    })
    .with_context(|| {
        format!(
            "the scheduler did not log the refused handshakes:\n{}",
            env.scheduler.daemon.log()
        )
    })?;

    // An expired join token keeps a new agent out.
    let short = env.json(&["create-join-token", "--ttl", "1s"])?;
    let short_token = short["token"].as_str().context("no token")?.to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let mut late = env.opts.clone();
    late.data_dir = env.dir.join("late-agent");
    late.join = Some(JoinCredentials {
        token: short_token.clone(),
        ca_pin: short["caPin"].as_str().context("no pin")?.to_owned(),
    });
    let refused = Agent::start(&late, env.dir.join("late-agent.log"))?;
    refused
        .daemon
        .wait_for_log("expired at", Duration::from_secs(20))?;
    drop(refused);

    // Nothing of it was written (but the join token made here).
    let new_id = short_token
        .split('.')
        .next()
        .context("a token without an ID")?;
    let after = holdings(&env, Some(new_id))?;
    ensure!(
        before == after,
        "a refused call changed what the scheduler holds:\nbefore {before:?}\nafter {after:?}"
    );
    super::trust::secrets_absent(&env, &[&short_token])?;
    key_absent(&env, &certs.join("op.key"))
}

/// No line of the private key at `key` in any log of the trial nor in describe output.
fn key_absent(env: &Env, key: &Path) -> Result<()> {
    let pem = std::fs::read_to_string(key)?;
    let mut text = env.logs();
    for entry in std::fs::read_dir(&env.dir)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text.push_str(&env.scheduler.daemon.log());
    text.push_str(&env.json(&["list-client-certificates"])?.to_string());
    text.push_str(&env.json(&["list-container-instances"])?.to_string());
    for line in pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 32)
    {
        ensure!(
            !text.contains(line),
            "a line of the client key appears in a log or in list output"
        );
    }
    Ok(())
}
